"""Watching the daemon from the side: IB's maintenance windows, broker outages that alert or
halt entries, counters for metrics, the systemd heartbeat, and the control surface that adds
`health` to the engine's status.

The supervisor learns what happened from the event stream (`bot.log.add_tap`) and from the
broker's `connected` flag, checked every `maintenance.check_interval_s` on the bot's clock
(simulated time in the simulator, so an outage of simulated minutes plays out in real seconds).
The one thing it does to the engine is put a reason into `Engine.entry_blockers` while the
broker has been away too long, and take it out once the connection is back and reconciled.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any

from bot.clock import SystemClock, monotonic
from bot.ops.maintenance import window_at
from bot.ops.systemd import SdNotifier

BROKER_DOWN = "broker_down"
ORDER_OUTCOMES = {"order.submitted": "submitted", "order.filled": "filled", "order.cancelled": "cancelled",
                  "order.rejected": "rejected", "order.abandoned": "abandoned", "order.adopted": "adopted",
                  "order.blocked": "blocked"}


class Supervisor:
    def __init__(self, cfg, engine, broker, clock, log, notifier=None, sd: SdNotifier | None = None):
        self.cfg = cfg
        self.m = cfg.maintenance
        self.engine = engine
        self.broker = broker
        self.clock = clock
        self.log = log
        self.notifier = notifier
        self.sd = sd or SdNotifier()
        self.down_since: datetime | None = None  # the broker went away (bot clock)
        self.outside_since: datetime | None = None  # ...and this outage has been outside any window since
        self.window: tuple[datetime, datetime] | None = None  # the window the current outage was seen in
        self.alerted = False
        self._was_connected = False  # before the first connection there is nothing to restore
        self.fatal: str | None = None
        self.orders: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.reconnects = 0
        self.disconnects = 0
        self.signal: dict[str, Any] = {}
        self.messages_sent = 0
        self.messages_per_s = 0.0
        self._last_msg_count: int | None = None
        self._last_msg_time: float | None = None
        self._heartbeat_at = monotonic()
        self._status_line = ""
        self._tasks: list[asyncio.Task] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- lifecycle -----------------------------------------------------------------------------------
    def start(self, watch: bool = True) -> None:
        """`watch=False` for a clock that jumps (`--speed max`): a sleeper there would move time."""
        self._loop = asyncio.get_running_loop()
        self._tasks = [asyncio.create_task(self._heartbeat(), name="ops.heartbeat")]
        if watch:
            self._tasks.append(asyncio.create_task(self._watch(), name="ops.watch"))

    def ready(self) -> None:
        """The daemon is up (control socket and HTTP listening; the broker may still be
        connecting, which can take a weekend): tell systemd (READY=1). Liveness from here on is
        the watchdog's business."""
        self._status_line = self.status_line()
        self.sd.ready(self._status_line)

    async def close(self) -> None:
        self.sd.stopping()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)
        self._tasks = []

    # --- events (called by the log for every event; only records) -------------------------------------
    def __call__(self, event: dict[str, Any]) -> None:
        name = event.get("event")
        if name in ORDER_OUTCOMES:
            self.orders[ORDER_OUTCOMES[name]] += 1
        elif name == "broker.error":
            self.errors[str(event.get("code"))] += 1
        elif name == "broker.connected" and event.get("reconnected"):
            self.reconnects += 1
        elif name == "broker.disconnected" and event.get("reason") != "shutdown":
            self.disconnects += 1
        elif name == "signal.evaluated":
            self.signal = {k: event.get(k) for k in ("vix", "rsi", "macd", "signal_line", "tier", "multiplier",
                                                     "activation")}
        elif name == "bot.fatal":
            self.fatal = str(event.get("error"))
        elif name == "reconcile.done" and BROKER_DOWN in self.engine.entry_blockers and self._loop is not None:
            self._loop.call_soon_threadsafe(self._release_entries)  # not from inside the logger

    def _release_entries(self) -> None:
        if self._up() and self.engine.entry_blockers.pop(BROKER_DOWN, None) is not None:
            self.log.warning("broker.entries_resumed", note="reconnected and reconciled")

    # --- the broker's connection against IB's schedule -----------------------------------------------
    async def _watch(self) -> None:
        # on an accelerated clock at most four checks per real second (300x: every 75 s simulated)
        speed = getattr(self.clock, "speed", None)
        floor = 0.25 * float(speed) if isinstance(speed, (int, float)) else 0.0
        step = timedelta(seconds=max(self.m.check_interval_s, floor))
        while True:
            try:
                self.check(self.clock.now())
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive a bug in one check
                self.log.error("ops.check_failed", error=repr(exc))
            await self.clock.sleep_until(self.clock.now() + step)

    def _up(self) -> bool:
        """Connected and not DEGRADED (IB 1100: the socket is up but IB is not behind it)."""
        return bool(self.broker.connected) and not getattr(self.broker, "degraded", False)

    def check(self, now: datetime) -> None:
        if self._up():
            if self.down_since is not None and self._was_connected:
                self.log.info("broker.restored", down_s=round((now - self.down_since).total_seconds(), 1),
                              expected=self.outside_since is None and self.window is not None,
                              entries_halted=BROKER_DOWN in self.engine.entry_blockers)
            self.down_since = self.outside_since = self.window = None
            self.alerted = False
            self._was_connected = True
            return
        if self.down_since is None:
            self.down_since = now
        window = window_at(now, self.m.windows, self.m.timezone)
        if window is not None:
            if window != self.window:
                self.window = window
                self.log.info("broker.maintenance", expected=True, window_start=window[0].isoformat(),
                              window_end=window[1].isoformat(), down_since=self.down_since.isoformat(),
                              note="IB's scheduled restart: no alert inside the window")
            self.outside_since = None
            return
        if self.outside_since is None:
            self.outside_since = now
        down_s = (now - self.outside_since).total_seconds()
        if down_s >= self.m.alert_after_s and not self.alerted:
            self.alerted = True
            self.log.error("broker.down", down_s=round(down_s, 1), since=self.outside_since.isoformat(),
                           alert_after_s=self.m.alert_after_s, broker=getattr(self.broker, "name", ""))
        if down_s >= self.m.halt_entries_after_s and BROKER_DOWN not in self.engine.entry_blockers:
            self.engine.entry_blockers[BROKER_DOWN] = (
                f"broker down since {self.outside_since.isoformat()} (over {self.m.halt_entries_after_s:g}s)")
            self.log.error("broker.entries_halted", down_s=round(down_s, 1),
                           halt_entries_after_s=self.m.halt_entries_after_s,
                           until="the connection is back and reconciled")

    # --- systemd heartbeat (real time: the service manager's watchdog is) ----------------------------
    async def _heartbeat(self) -> None:
        wall = SystemClock()
        interval = self.sd.watchdog_s / 3 if self.sd.watchdog_s else 5.0
        while True:
            self._heartbeat_at = monotonic()
            self._sample_messages()
            self.sd.watchdog()
            line = self.status_line()
            if line != self._status_line:
                self._status_line = line
                self.sd.status(line)
            await wall.sleep(interval)

    def _sample_messages(self) -> None:
        conn = getattr(getattr(getattr(self.broker, "ib", None), "client", None), "conn", None)
        count = getattr(conn, "numMsgSent", None)
        now = monotonic()
        if not isinstance(count, int):
            return
        last, last_t = self._last_msg_count, self._last_msg_time
        new = count - last if last is not None and count >= last else count  # a new connection counts from 0
        self.messages_sent += new
        if last_t is not None and now > last_t:
            self.messages_per_s = new / (now - last_t)
        self._last_msg_count, self._last_msg_time = count, now

    def status_line(self) -> str:
        if self._up():
            parts = ["connected"]
        elif not self._was_connected:
            parts = ["connecting"]
        else:
            parts = ["broker down (maintenance window)" if self.window is not None else "broker down"]
        if self.engine.entry_blockers:
            parts.append("entries halted: " + "; ".join(self.engine.entry_blockers.values()))
        with suppress(Exception):
            halted, why = self.engine.store.halted()
            if halted:
                parts.append(f"kill switch: {why}")
        return ", ".join(parts)

    # --- health ----------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        from bot.engine import MISMATCH_KEY

        now = self.clock.now()
        connected = bool(self.broker.connected)
        degraded = bool(getattr(self.broker, "degraded", False))
        window = window_at(now, self.m.windows, self.m.timezone)
        halted, why = self.engine.store.halted()
        tick = getattr(self.broker, "last_tick_at", None)
        last_loop = getattr(self.engine, "last_loop", None)
        reasons = []
        if not connected and window is None:
            reasons.append("broker disconnected outside a maintenance window")
        elif degraded and window is None:
            reasons.append("IB link lost (1100) outside a maintenance window")
        if self.fatal:
            reasons.append(f"fatal: {self.fatal}")
        return {
            "healthy": not reasons,
            "reasons": reasons,
            "time": now.isoformat(),
            "connected": connected,
            "degraded": degraded,
            "in_maintenance_window": window is not None,
            "broker_down_s": None if self.down_since is None else round((now - self.down_since).total_seconds(), 1),
            "last_tick": tick.isoformat() if tick else None,
            "last_tick_age_s": round((now - tick).total_seconds(), 1) if tick else None,
            "last_loop": last_loop.isoformat() if last_loop else None,
            "last_loop_age_s": round((now - last_loop).total_seconds(), 1) if last_loop else None,
            "heartbeat_age_s": round(monotonic() - self._heartbeat_at, 3),
            "halted": halted,
            "halt_reason": why,
            "entries_blocked": dict(self.engine.entry_blockers),
            "position_mismatch": bool(self.engine.store.get_control(MISMATCH_KEY)),
            "pid": os.getpid(),
        }

    def counters(self) -> dict[str, Any]:
        n = self.notifier
        return {
            "orders": dict(self.orders),
            "broker_errors": dict(self.errors),
            "reconnects": self.reconnects,
            "disconnects": self.disconnects,
            "ib_messages_sent": self.messages_sent,
            "ib_messages_per_s": round(self.messages_per_s, 3),
            "signal": dict(self.signal),
            "notifications": {} if n is None else {"sent": dict(n.sent), "failed": dict(n.failed),
                                                   "dropped": dict(n.dropped)},
        }


class ControlSurface:
    """The engine's control functions plus the supervisor's health: what the control socket,
    `spx-bot status` and the HTTP endpoint all call (one control surface)."""

    def __init__(self, engine, supervisor: Supervisor):
        self.engine = engine
        self.supervisor = supervisor

    async def status(self) -> dict[str, Any]:
        out = await self.engine.status()
        out["health"] = self.supervisor.health()
        out["ops"] = self.supervisor.counters()
        return out

    def health(self) -> dict[str, Any]:
        return self.supervisor.health()

    async def kill(self, flatten: bool = False, reason: str = "") -> dict[str, Any]:
        return await self.engine.kill(flatten=flatten, reason=reason)

    async def resume(self) -> dict[str, Any]:
        return await self.engine.resume()
