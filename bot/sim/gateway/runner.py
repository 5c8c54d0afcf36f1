"""Running the simulated gateway on its own: `spx-bot sim-gateway` (and `python -m
bot.sim.gateway`) build the calendar, the market, the exchange on its state file and a SimClock,
serve until SIGINT/SIGTERM, then close everything.

    params = params_from_config(load_config("config/sim.toml"), port=4002, speed="600")
    raise SystemExit(run_gateway(params))
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable

from bot.clock import wall_now

from .server import SimGateway

MAX_SPEED_STANDIN = 3600.0  # "max" means "jump to the next event": a server has none to jump to


class GatewayStartError(Exception):
    """A problem the user can fix (missing data, bad start date): one line, exit 2."""


@dataclass(frozen=True)
class GatewayParams:
    state_path: Path = Path("state/sim_account.sqlite")
    port: int = 4002
    host: str = "127.0.0.1"
    account: str = "DU0000001"
    speed: float | str = 300.0
    start: date | None = None
    data_dir: Path | None = None
    source: str = "auto"  # history | synthetic | auto
    seed: int = 7
    step_minutes: int = 5
    starting_cash: float = 1_000_000.0
    commission_per_contract: float = 0.65
    fill_fraction: float = 0.25
    commissions: str = "ib"  # bot.sim.commissions: sim.commissions, as the daemon's exchange charges
    restart_at: str | None = None  # HH:MM New York: the gateway restarts itself daily (restarts.py)
    restart_days: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    restart_down_s: float = 120.0


def params_from_config(cfg, *, port: int | None = None, speed: float | str | None = None,
                       start: date | None = None, data_dir: str | Path | None = None) -> GatewayParams:
    """Gateway parameters from a validated `bot.config.Config` ([sim], [market], [broker]),
    with the command-line overrides of `spx-bot sim-gateway`."""
    s = cfg.sim
    return GatewayParams(
        state_path=Path(s.state_path),
        port=_port(port if port is not None else cfg.broker.port),
        host="127.0.0.1",
        account=s.account,
        speed=_speed(speed if speed is not None else s.speed),
        start=start if start is not None else s.start,
        data_dir=Path(data_dir) if data_dir is not None else Path(cfg.market.data_dir),
        source=cfg.market.source,
        seed=s.seed,
        step_minutes=s.step_minutes,
        starting_cash=s.starting_cash,
        commission_per_contract=s.commission_per_contract,
        fill_fraction=s.fill_fraction,
        commissions=s.commissions,
        restart_at=cfg.sim_gateway.restart_at,
        restart_days=cfg.sim_gateway.restart_days,
        restart_down_s=cfg.sim_gateway.restart_down_s,
    )


MIN_SPEED, MAX_SPEED = 0.01, 100_000.0  # below: a clock that hardly moves; above: use "max"


def _speed(value: float | str) -> float | str:
    if isinstance(value, str) and value.strip().lower() == "max":
        return "max"
    try:
        speed = float(value)
    except (TypeError, ValueError):
        raise GatewayStartError(f"--speed: expected a number or 'max', not {value!r}") from None
    if not MIN_SPEED <= speed <= MAX_SPEED:  # also refuses nan and inf
        raise GatewayStartError(f"--speed: must be between {MIN_SPEED:g} and {MAX_SPEED:g} or 'max', not {value!r}")
    return speed


def _port(value: int) -> int:
    if not isinstance(value, int) or not 0 <= value <= 65535:
        raise GatewayStartError(f"--port: must be 0..65535, not {value!r}")
    return value


def _start_time(calendar, start: date | None, resumed_at: datetime | None) -> datetime:
    """09:25 New York on the start date (just before the open), else just before the next
    open; a state file that already went further resumes where it stopped."""
    from bot.calendar import ny_time

    if start is not None:
        t = ny_time(start, "09:25")
    else:
        today = wall_now().date()
        t = calendar.open_close(calendar.next_session(today, include=True))[0] - timedelta(minutes=5)
        if wall_now() > t and calendar.is_open(wall_now()):
            t = wall_now()
    if resumed_at is not None and resumed_at > t:
        t = resumed_at
    return t


async def serve(params: GatewayParams, *, ready: Callable[[SimGateway], None] | None = None,
                stop: asyncio.Event | None = None) -> int:
    """Build everything, serve until `stop` is set (or SIGINT/SIGTERM), close cleanly."""
    from bot.calendar import TradingCalendar
    from bot.clock import SimClock
    from bot.data import DataError
    from bot.sim.exchange import ExchangeSettings, SimExchange
    from bot.sim.market import build_market

    first = params.start or wall_now().date()
    calendar = TradingCalendar(end=date(max(first.year, wall_now().year) + 2, 12, 31))
    settings = ExchangeSettings(params.account, params.starting_cash, params.commission_per_contract,
                                params.fill_fraction, params.commissions)
    exchange = SimExchange(None, calendar, settings, params.state_path)
    try:
        start = _start_time(calendar, params.start, exchange.sim_time)
        try:
            exchange.market = build_market(params.source, params.data_dir, calendar, start.date(), None,
                                           params.seed, params.step_minutes)
        except DataError as e:
            raise GatewayStartError(str(e)) from None
        speed = MAX_SPEED_STANDIN if params.speed == "max" else float(params.speed)
        clock = SimClock(start, speed)
        gateway = SimGateway(exchange, clock, calendar, params.host, params.port, params.account)
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await gateway.start()
        restarts = None
        if params.restart_at:
            from .restarts import ScheduledRestart

            holder = [gateway]
            restarts = ScheduledRestart(lambda: holder[0], lambda g: holder.__setitem__(0, g), params.restart_at,
                                        params.restart_days, params.restart_down_s)
            restarts.start()
        try:
            if ready is not None:
                ready(gateway)
            await stop.wait()
        finally:
            if restarts is not None:
                await restarts.close()
                gateway = holder[0]
            await gateway.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
    finally:
        exchange.close()
    return 0


def run_gateway(params_or_config, **overrides) -> int:
    """Blocking entry for the CLI: a `GatewayParams`, or a `Config` plus the overrides of
    `params_from_config` (port, speed, start, data_dir). Returns the exit code; a user error
    prints one line and returns 2."""
    try:
        if isinstance(params_or_config, GatewayParams):
            params = replace(params_or_config, **{k: v for k, v in overrides.items() if v is not None})
            params = replace(params, port=_port(params.port), speed=_speed(params.speed))
        else:
            params = params_from_config(params_or_config, **overrides)

        def announce(gw: SimGateway) -> None:
            print(f"sim-gateway: listening on {gw.host}:{gw.port}, account {gw.account}, "
                  f"simulated time {gw.clock.now().isoformat()} (speed {params.speed}); Ctrl-C stops",
                  file=sys.stderr, flush=True)

        return asyncio.run(serve(params, ready=announce))
    except GatewayStartError as e:
        print(f"sim-gateway: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # port in use
        print(f"sim-gateway: cannot listen: {e}", file=sys.stderr)
        return 2
