"""The only module that reads the time or sleeps.

`SystemClock` is wall time. `SimClock` is simulated time in one of three modes:
- manual: time moves only when a test calls `advance()` / `advance_to()`;
- accelerated: `speed` simulated seconds pass per real second;
- max: `sleep_until` jumps straight to the wake-up time (the engine is the only task that
  waits on the clock, so jumping is safe); it still yields to the event loop so that the
  control channel (status / kill) is served during the run.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time as _time
from datetime import datetime, timedelta, timezone
from typing import Protocol

UTC = timezone.utc


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC datetime."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    async def sleep_until(self, t: datetime) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, t: datetime) -> None:
        await asyncio.sleep(max(0.0, (t - self.now()).total_seconds()))


def wall_now() -> datetime:
    """Wall-clock time, for log lines and measuring; never for trading logic."""
    return datetime.now(UTC)


def monotonic() -> float:
    return _time.monotonic()


class SimClock:
    """Simulated time. `speed`: None = manual, a float = accelerated, "max" = jump."""

    def __init__(self, start: datetime, speed: float | str | None = None):
        if start.tzinfo is None:
            raise ValueError("SimClock needs an aware datetime")
        if speed is not None and speed != "max" and float(speed) <= 0:
            raise ValueError("speed must be > 0 or 'max'")
        self._now = start.astimezone(UTC)
        self.speed = speed
        # manual mode: waiters ordered by wake time
        self._waiters: list[tuple[datetime, int, asyncio.Future]] = []
        self._seq = itertools.count()
        # accelerated mode: simulated time is anchored to a real monotonic instant
        self._anchor_real = _time.monotonic()
        self._anchor_sim = self._now

    def now(self) -> datetime:
        if self.speed is None or self.speed == "max":
            return self._now
        elapsed = (_time.monotonic() - self._anchor_real) * float(self.speed)
        return self._anchor_sim + timedelta(seconds=elapsed)

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self.now() + timedelta(seconds=max(0.0, seconds)))

    async def sleep_until(self, t: datetime) -> None:
        if self.speed == "max":
            if t > self._now:
                self._now = t
            await asyncio.sleep(0)
            return
        if self.speed is None:
            if t <= self._now:
                await asyncio.sleep(0)
                return
            fut = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (t, next(self._seq), fut))
            await fut
            return
        real = (t - self.now()).total_seconds() / float(self.speed)
        await asyncio.sleep(max(0.0, real))

    # --- manual mode ---------------------------------------------------------------------
    def next_wake(self) -> datetime | None:
        """Manual mode: the earliest time a sleeper still waits for (None: nobody sleeps). A
        driver that moves time itself (bench/soak.py) advances to it once the loop is quiet."""
        while self._waiters and self._waiters[0][2].done():
            heapq.heappop(self._waiters)
        return self._waiters[0][0] if self._waiters else None

    async def advance(self, seconds: float) -> None:
        await self.advance_to(self._now + timedelta(seconds=seconds))

    async def advance_to(self, t: datetime) -> None:
        """Move manual time forward, waking sleepers in time order (each gets to run)."""
        while self._waiters and self._waiters[0][0] <= t:
            wake, _, fut = heapq.heappop(self._waiters)
            self._now = max(self._now, wake)
            if not fut.done():
                fut.set_result(None)
            for _ in range(5):  # let the woken task run until it blocks again
                await asyncio.sleep(0)
        self._now = max(self._now, t)
        await asyncio.sleep(0)

    def jump_to(self, t: datetime) -> None:
        """Re-anchor time (accelerated/max): used to skip a closed market quickly."""
        t = t.astimezone(UTC)
        self._now = t
        self._anchor_sim = t
        self._anchor_real = _time.monotonic()
