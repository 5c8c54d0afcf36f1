"""Structured logging: the JSON-lines log is an interface operators and tests depend on.

One event per state change, named `noun.verb` (`EVENTS` lists the ones users rely on). Each
line carries `timestamp` (ISO-8601 UTC), `level` and `event`. In the simulator the bot runs
accelerated, so `timestamp` is the injected clock's time (what the strategy saw) and
`wall_time` records when the line was actually written.

Lines are written and flushed one by one, so `tail -f` sees them at once and a `kill -9`
loses nothing already logged. Tests read events with `structlog.testing.capture_logs()`.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Protocol

import structlog
from structlog.typing import EventDict, WrappedLogger

EVENTS: tuple[str, ...] = (
    "bot.started",
    "bot.stopped",
    "broker.connected",
    "broker.disconnected",
    "schedule.fired",
    "signal.evaluated",
    "condor.opened",
    "condor.closed",
    "hedge.target",
    "hedge.bought",
    "hedge.rolled",
    "hedge.written",
    "hedge.bought_back",
    "hedge.monetized",
    "order.submitted",
    "order.filled",
    "order.cancelled",
    "order.rejected",
    "killswitch.engaged",
    "killswitch.released",
    "reconcile.done",
)

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


class Clock(Protocol):
    """What logging needs of the injected clock (bot.clock's clocks fit)."""

    def now(self) -> datetime: ...


def iso_utc(moment: datetime) -> str:
    """`2022-03-01T20:30:00.000Z`; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Timestamper:
    """Stamps events with the injected clock's time (and the wall time), or the wall time."""

    def __init__(self, clock: Clock | None) -> None:
        self._clock = clock

    def __call__(self, _logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        wall = iso_utc(datetime.now(timezone.utc))  # the real time on purpose: when it was written
        if self._clock is None:
            event["timestamp"] = wall
        else:
            event["timestamp"] = iso_utc(self._clock.now())
            event["wall_time"] = wall
        return event


class _BindStatic:
    """Adds values bound for the whole run (e.g. run_id) without overriding per-event ones.

    Not contextvars: asyncio tasks copy the context when created, so values bound after
    start-up would miss tasks that already exist."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __call__(self, _logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        for key, value in self._values.items():
            event.setdefault(key, value)
        return event


class _Sinks:
    """The structlog "logger": writes each event as a JSON line to the file and, optionally,
    as a readable line to stderr.

    One instance for the process, retargeted by `setup_logging`: loggers bound before a
    reconfiguration then write to the new file instead of a closed one."""

    def __init__(self) -> None:
        self._file: IO[str] | None = None
        self._path: Path | None = None
        self._console: structlog.dev.ConsoleRenderer | None = None
        self._lock = threading.Lock()  # structlog's `ainfo` & co. log from executor threads
        self.taps: list[Callable[[dict[str, Any]], None]] = []
        self.write_failures = 0

    def open(self, path: Path, console: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # 0600: the log names positions, orders and the account
        new_file = open(path, "a", buffering=1, encoding="utf-8",  # line-buffered: one write per event
                        opener=lambda p, flags: os.open(p, flags, 0o600))
        if stat.S_IMODE(os.fstat(new_file.fileno()).st_mode) & 0o077:
            os.fchmod(new_file.fileno(), 0o600)
        with self._lock:
            if self._file is not None:
                self._file.close()
            self._file, self._path = new_file, path
            self._console = structlog.dev.ConsoleRenderer(colors=False) if console else None

    def reopen(self) -> bool:
        """Close the log file and open its path again (logrotate moved it away: SIGHUP). Under
        the lock, so no line is split between the old file and the new one. True when a new
        file was opened."""
        with self._lock:
            if self._path is None:
                return False
            self._path.parent.mkdir(parents=True, exist_ok=True)
            new_file = open(self._path, "a", buffering=1, encoding="utf-8")
            if self._file is not None:
                self._file.close()
            self._file = new_file
            return True

    def write(self, **event: Any) -> None:
        # timestamp, level and event first: the line reads well under `tail -f`.
        head = {key: event.pop(key) for key in ("timestamp", "level", "event") if key in event}
        event = {**head, **event}
        line = json.dumps(event, default=str, ensure_ascii=False)
        with self._lock:
            if self._file is not None:
                try:
                    self._file.write(line + "\n")
                except OSError:  # a full disk must not stop trading through a log line
                    self.write_failures += 1
            if self._console is not None:
                # From the JSON, so values print as they are stored (1.25, not Decimal('1.25')).
                text = self._console(None, event.get("level", ""), json.loads(line))
                try:
                    print(text, file=sys.stderr, flush=True)  # sys.stderr now, not at import
                except (OSError, ValueError):  # `spx-bot run 2>&1 | head`: the reader left; keep trading
                    self._console = None
        for tap in list(self.taps):  # observers of events (notifications, metrics): must not block
            try:
                tap(event)
            except Exception:  # noqa: BLE001 - an observer never stops logging or trading
                pass

    # The level names structlog's filtering loggers call (`exception` arrives as `error`).
    debug = info = warning = error = critical = write


_SINKS = _Sinks()


def setup_logging(
    path: str | Path,
    level: str = "info",
    console: bool = True,
    clock: Clock | None = None,
    bind: Mapping[str, Any] | None = None,
) -> None:
    """Configure structlog for the process. Calling it again replaces the configuration
    (and closes the previous log file), so tests and the CLI can each set it up."""
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(LEVELS)})")
    _SINKS.open(Path(path), console)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _BindStatic(bind or {}),
            structlog.processors.add_log_level,
            _Timestamper(clock),
            # Last processor returns the dict itself: structlog then calls the sinks with it as
            # keyword arguments, and they render it once per destination.
            structlog.processors.format_exc_info,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=lambda *_args: _SINKS,
        # Loggers made at import time, before setup, must pick up this configuration.
        cache_logger_on_first_use=False,
    )


def reopen_log() -> bool:
    """Reopen the JSON log at its path (after logrotate renamed it); see `_Sinks.reopen`."""
    return _SINKS.reopen()


def add_tap(tap: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
    """Call `tap(event_dict)` after every event written (in the logging thread: it must only
    record or enqueue). Returns the function that removes it."""
    _SINKS.taps.append(tap)
    return lambda: _SINKS.taps.remove(tap) if tap in _SINKS.taps else None


def get_logger(name: str | None = None) -> Any:
    """A logger; `name` (usually `__name__`) is added to every event as `logger_name`.

    Lazy: a module-level logger made before `setup_logging` still uses its configuration."""
    return structlog.get_logger(logger_name=name) if name else structlog.get_logger()
