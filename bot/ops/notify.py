"""Push notifications through Apprise (Telegram, Discord, Slack, ntfy, e-mail, webhooks: one
URL per target), fed by the log: the notifier is a tap on the event stream (`bot.log.add_tap`),
so trading code only logs, as it always did.

Never in the way of trading: `submit` only classifies, rate-limits and enqueues (a bounded
queue; when full the message is dropped and counted); one worker task delivers in a thread of
its own with a timeout; a failed delivery is logged (`notify.failed`) and counted, never raised.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.clock import monotonic
from bot.config import NotifyConfig

# event name -> event class (the `events` of a target select classes)
EVENT_CLASS: dict[str, str] = {
    "condor.opened": "condor",
    "condor.closed": "condor",
    "hedge.bought": "hedge",
    "hedge.sold": "hedge",
    "hedge.rolled": "hedge",
    "hedge.written": "hedge",
    "hedge.bought_back": "hedge",
    "hedge.monetized": "hedge",
    "hedge.alert": "alert",
    "killswitch.engaged": "killswitch",
    "killswitch.released": "killswitch",
    "reconcile.mismatch": "mismatch",
    "bot.fatal": "fatal",
    "broker.down": "broker",
    "broker.entries_halted": "broker",
    "broker.entries_resumed": "broker",
    "account.summary": "summary",
}
_FAILURE = {"hedge.alert", "reconcile.mismatch", "bot.fatal", "broker.down", "broker.entries_halted"}
_WARNING = {"killswitch.engaged", "killswitch.released"}
_NOISE = {"timestamp", "level", "event", "wall_time", "run_id", "logger_name"}


class NotifyError(Exception):
    """A target that cannot be used (unknown URL scheme, unreadable URL file)."""


@dataclass
class Message:
    event: str
    klass: str
    title: str
    body: str
    kind: str  # apprise notify type: info | success | warning | failure


def render(event: dict[str, Any], title_prefix: str = "spx-bot") -> tuple[str, str, str]:
    """(title, body, notify type) for one event: a line a phone shows well."""
    name = event.get("event", "")
    e = event
    if name == "condor.opened":
        body = (f"Condor {e.get('condor_id')} opened: {e.get('quantity')}x {e.get('expiry')} "
                f"{e.get('put_long')}/{e.get('put_short')}P {e.get('call_short')}/{e.get('call_long')}C, "
                f"credit {e.get('credit')}, max loss {e.get('max_loss')}")
    elif name == "condor.closed":
        body = (f"Condor {e.get('condor_id')} closed ({e.get('reason')}): P&L {e.get('pnl')} "
                f"(credit {e.get('credit')}, closed at {e.get('close_price')}, x{e.get('quantity')})")
    elif name == "killswitch.engaged":
        body = (f"KILL SWITCH ENGAGED: {e.get('reason')}; cancelled {e.get('cancelled')}, "
                f"still working {e.get('remaining')}" + (", flattening" if e.get("flatten") else ""))
    elif name == "killswitch.released":
        body = "Kill switch released: entries allowed again"
    elif name == "account.summary":
        body = (f"Daily summary: net liquidation {e.get('net_liquidation')}, cash {e.get('cash')}, "
                f"realized P&L {e.get('realized_pnl')}, open condors {e.get('open_condors')}")
    else:
        details = ", ".join(f"{k}={v}" for k, v in e.items() if k not in _NOISE)
        body = f"{name}: {details}" if details else name
    kind = "failure" if name in _FAILURE else "warning" if name in _WARNING else "info"
    if name == "condor.closed":
        with suppress(ValueError, TypeError):
            kind = "success" if float(e.get("pnl")) >= 0 else "warning"
    return f"{title_prefix}: {name}", body, kind


class _Target:
    def __init__(self, url: str, events: tuple[str, ...], label: str):
        import apprise

        self.apprise = apprise.Apprise()
        if not self.apprise.add(url):
            raise NotifyError(f"notify target {label}: not a URL Apprise understands")
        self.events = frozenset(events)
        self.label = label


class Notifier:
    def __init__(self, cfg: NotifyConfig, log):
        self.cfg = cfg
        self.log = log
        self.targets: list[_Target] = []
        for i, t in enumerate(cfg.targets):
            url = t.url
            if t.url_file:
                try:
                    url = Path(t.url_file).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise NotifyError(f"notify.targets[{i}].url_file: cannot read {t.url_file}: {exc.strerror}") from None
            self.targets.append(_Target(url, t.events, f"#{i} ({url.split('://', 1)[0]}://...)"))
        self._queue: asyncio.Queue[Message] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._worker: asyncio.Task | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._recent: dict[str, deque[float]] = {}
        self.sent: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()  # rate-limited or queue full, by class

    @property
    def enabled(self) -> bool:
        return bool(self.targets)

    def start(self) -> None:
        if not self.enabled or self._worker is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._queue = asyncio.Queue(self.cfg.queue_size)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notify")
        self._worker = asyncio.create_task(self._work(), name="notify.worker")

    # --- the tap: called for every event, in the logging thread --------------------------------
    def __call__(self, event: dict[str, Any]) -> None:
        name = event.get("event")
        klass = EVENT_CLASS.get(name) if isinstance(name, str) else None
        if klass is None or self._queue is None or not any(klass in t.events for t in self.targets):
            return
        if threading.get_ident() == self._thread:
            self._offer(klass, dict(event))
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(self._offer, klass, dict(event))

    def _offer(self, klass: str, event: dict[str, Any]) -> None:
        now = monotonic()
        recent = self._recent.setdefault(klass, deque())
        while recent and now - recent[0] > 3600:
            recent.popleft()
        if len(recent) >= self.cfg.max_per_hour:
            self.dropped[klass] += 1
            return
        title, body, kind = render(event, self.cfg.title)
        try:
            self._queue.put_nowait(Message(event["event"], klass, title, body, kind))
        except asyncio.QueueFull:
            self.dropped[klass] += 1
            return
        recent.append(now)

    # --- delivery ------------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            message = await self._queue.get()
            try:
                await self._deliver(message)
            finally:
                self._queue.task_done()

    async def _deliver(self, message: Message) -> None:
        loop = asyncio.get_running_loop()
        for target in self.targets:
            if message.klass not in target.events:
                continue
            try:
                ok = await asyncio.wait_for(
                    loop.run_in_executor(self._pool, lambda t=target: t.apprise.notify(
                        body=message.body, title=message.title, notify_type=message.kind)),
                    self.cfg.timeout_s)
                error = "" if ok else "the service refused it or could not be reached"
            except TimeoutError:
                ok, error = False, f"no answer within {self.cfg.timeout_s:g}s"
            except Exception as exc:  # noqa: BLE001 - a notification never stops the bot
                ok, error = False, f"{type(exc).__name__}: {exc}"
            if ok:
                self.sent[message.klass] += 1
            else:
                self.failed[message.klass] += 1
                self.log.warning("notify.failed", target=target.label, about=message.event, error=error)

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until queued messages are delivered (a `bot.fatal` should reach the phone
        before the process exits). False on timeout."""
        if self._queue is None:
            return True
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
            return True
        except TimeoutError:
            return False

    async def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (within `timeout`), then stop. Idempotent."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        if not await self.flush(timeout):
            self.log.warning("notify.unsent", count=self._queue.qsize())
        worker.cancel()
        with suppress(asyncio.CancelledError):
            await worker
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
