"""Putting the unattended-operation pieces around one daemon run (used by `spx-bot run`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.log import add_tap
from bot.ops.dashboard import DashboardHub
from bot.ops.http import HttpConfigError, HttpServer
from bot.ops.notify import Notifier, NotifyError
from bot.ops.supervisor import ControlSurface, Supervisor
from bot.ops.systemd import SdNotifier


class OpsConfigError(Exception):
    """A configured file or URL that cannot be used: one line, exit 2."""


@dataclass
class Ops:
    supervisor: Supervisor
    surface: ControlSurface
    notifier: Notifier
    http: HttpServer | None
    dashboard: DashboardHub | None = None
    _untap: list = field(default_factory=list)

    @classmethod
    def build(cls, cfg, engine, broker, clock, log, environ=None) -> Ops:
        """Raises OpsConfigError (a bad notification target, an unreadable token file) before
        anything starts."""
        try:
            notifier = Notifier(cfg.notify, log)
            supervisor = Supervisor(cfg, engine, broker, clock, log, notifier, SdNotifier(environ))
            surface = ControlSurface(engine, supervisor)
            bounds = sorted({float(b) for t in cfg.hedge.tiers for b in (t.lower, t.upper) if b is not None and 0 < b < 100})
            dashboard = (DashboardHub(surface, engine.store, cfg.http.dashboard_interval_s, {"tier_bounds": bounds})
                         if cfg.http.enabled else None)
            http = HttpServer(cfg.http, surface, log, dashboard) if cfg.http.enabled else None
        except (NotifyError, HttpConfigError) as exc:
            raise OpsConfigError(str(exc)) from None
        return cls(supervisor, surface, notifier, http, dashboard)

    async def start(self, watch: bool = True) -> None:
        """Taps on the event stream, the notification worker, the HTTP endpoint (OSError when
        its port is taken), the supervisor's tasks; then READY=1 to systemd."""
        self._untap = [add_tap(self.supervisor), add_tap(self.notifier)]
        if self.dashboard is not None:
            self._untap.append(add_tap(self.dashboard))
        self.notifier.start()
        if self.http is not None:
            await self.http.start()
        self.supervisor.start(watch=watch)
        self.supervisor.ready()

    async def close(self) -> None:
        """After `bot.stopped`: the last notifications (a `bot.fatal`) go out first. Idempotent."""
        await self.supervisor.close()
        if self.http is not None:
            await self.http.close()
        await self.notifier.close()
        for untap in self._untap:
            untap()
        self._untap = []
