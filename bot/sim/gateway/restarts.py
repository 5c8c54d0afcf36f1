"""The simulated gateway's own nightly restart, like IB Gateway's (IBC's AUTO_RESTART_TIME):
at a time of day on the simulated clock every client connection closes, nothing listens for
`down_s` simulated seconds, then a new gateway serves the same account on the same port (order
ids start again; orders live on at the exchange, as at IB)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Callable

import structlog

from .server import SimGateway

log = structlog.get_logger(__name__)


class ScheduledRestart:
    def __init__(self, get: Callable[[], SimGateway], put: Callable[[SimGateway], None], at: str,
                 days: tuple[str, ...], down_s: float, timezone: str = "America/New_York"):
        self.get, self.put = get, put
        self.at, self.days, self.down_s, self.timezone = at, tuple(days), float(down_s), timezone
        self.restarts = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sim-gateway-restarts")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        from bot.ops.maintenance import next_daily

        while True:
            clock = self.get().clock
            await clock.sleep_until(next_daily(clock.now(), self.at, self.days, self.timezone))
            await self.restart_once()

    async def restart_once(self) -> SimGateway:
        old = self.get()
        port, clock = old.port, old.clock
        log.info("gateway.restarting", port=port, down_s=self.down_s, sim_time=clock.now().isoformat())
        await old.close()
        await clock.sleep_until(clock.now() + timedelta(seconds=self.down_s))
        new = SimGateway(old.exchange, clock, old.calendar, old.host, port, old.account)
        await new.start()
        self.put(new)
        self.restarts += 1
        return new
