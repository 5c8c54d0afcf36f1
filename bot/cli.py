"""spx-bot command line: run | status | kill | resume | check-config | logs.

User errors (bad config, missing data, another instance running) print one line naming the
cause and exit 2; no tracebacks for them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

EXIT_USAGE = 2
EXIT_FATAL = 3


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit 2."""


def parse_duration(text: str) -> timedelta:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if not m:
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: use e.g. 90s, 30m, 12h, 5d, 2w")
    n, unit = float(m.group(1)), m.group(2)
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[unit]: n})


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad date {text!r}: use YYYY-MM-DD") from None


def parse_start(text: str) -> tuple[date, str]:
    """YYYY-MM-DD (the clock starts at 09:00 New York) or YYYY-MM-DDTHH:MM (New York)."""
    day, _, hhmm = text.partition("T")
    try:
        if hhmm:
            datetime.strptime(hhmm, "%H:%M")
        return date.fromisoformat(day), hhmm or "09:00"
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad date {text!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None


def _load(path: str, **overrides):
    from bot.config import ConfigError, load_config

    try:
        cfg = load_config(path)
        return cfg.with_overrides(**{k: v for k, v in overrides.items() if v is not None}) if overrides else cfg
    except ConfigError as e:
        raise UserError(str(e)) from None


def _data_dir(cfg, cli_value: str | None) -> Path:
    return Path(cli_value or os.environ.get("SPX_BOT_DATA") or cfg.market.data_dir)


# --- run -----------------------------------------------------------------------------------
def cmd_run(args) -> int:
    start_day = args.start[0] if args.start else None
    cfg = _load(args.config, **{"sim.speed": args.speed, "sim.start": start_day})
    return asyncio.run(_run(cfg, args))


async def _run(cfg, args) -> int:
    """Wire the daemon for the configured broker and run it until it ends or is signalled."""
    from bot.broker.base import BrokerError, FatalBrokerError
    from bot.calendar import TradingCalendar
    from bot.clock import SystemClock, wall_now
    from bot.control import ControlServer, ControlUnavailable, request
    from bot.engine import Engine
    from bot.log import get_logger, setup_logging
    from bot.store import Store
    from bot.wiring import ib_broker

    socket_path = cfg.bot.control_socket
    try:
        await request(socket_path, {"cmd": "status"}, timeout=1.0)
        raise UserError(f"another spx-bot is already running (control socket {socket_path} answers)")
    except ControlUnavailable:
        pass
    run_id = uuid.uuid4().hex[:12]
    if cfg.broker.kind == "ib":
        if args.duration or args.start or args.data:
            raise UserError("--for, --start and --data apply to the simulator, not to broker.kind = \"ib\"")
        clock = SystemClock()
        setup_logging(cfg.bot.log_path, cfg.bot.log_level, cfg.bot.console_log, bind={"run_id": run_id})
        log = get_logger("bot")
        b = cfg.broker
        broker = ib_broker(cfg, log, clock)
        cal = TradingCalendar()
        started = {"broker": "ib", "host": b.host, "port": b.port, "client_id": b.client_id}
        until, sim = None, None
    else:
        sim = await _simulator(cfg, args, run_id)
        clock, cal, broker, log, until, started = sim.clock, sim.calendar, sim.broker, sim.log, sim.until, sim.info
    store = Store(cfg.bot.store_path)
    engine = Engine(cfg, clock, cal, broker, store, log, until=until)
    server = ControlServer(engine, socket_path)
    await server.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, engine.stop)
    halted, why = store.halted()
    log.info("bot.started", config=str(args.config), halted=halted, halt_reason=why, pid=os.getpid(),
             wall_started=wall_now().isoformat(), **started)
    code, reason = 0, "stopped"
    try:
        if await engine.start():
            reason = await engine.run()
    except FatalBrokerError as e:
        log.error("bot.fatal", error=str(e))
        code, reason = EXIT_FATAL, str(e)
    except BrokerError as e:
        log.error("bot.fatal", error=str(e), error_type=type(e).__name__)
        code, reason = EXIT_FATAL, str(e)
    finally:
        await engine.shutdown()
        await server.close()
        log.info("bot.stopped", reason=reason, sim_time=clock.now().isoformat())
        store.close()
        if sim is not None:
            await sim.close()
    return code


@dataclass
class _Simulator:
    """The simulated market, exchange and clock of a run, and the broker that trades them."""

    clock: object
    calendar: object
    exchange: object
    market: object
    gateway: object | None
    broker: object
    log: object
    until: datetime | None
    info: dict

    async def close(self) -> None:
        if self.gateway is not None:
            await self.gateway.close()
        self.exchange.close()


async def _simulator(cfg, args, run_id: str) -> _Simulator:
    from bot.broker.sim import SimBroker
    from bot.calendar import TradingCalendar, ny_time
    from bot.clock import SimClock, wall_now
    from bot.data import DataError
    from bot.log import get_logger, setup_logging
    from bot.sim.gateway import SimGateway
    from bot.sim.market import build_market
    from bot.wiring import ib_broker, open_exchange

    s = cfg.sim
    horizon = max(s.start or date.min, wall_now().date()) + (args.duration or timedelta(0)) + timedelta(days=400)
    cal = TradingCalendar(end=max(horizon, date(wall_now().year + 2, 12, 31)))
    exchange = open_exchange(cfg, cal)
    if s.start is not None:
        start = ny_time(s.start, args.start[1] if args.start else "09:00")
    else:  # just before the next open, so that `make run` shows trading at once
        start = cal.open_close(cal.next_session(wall_now().date(), include=True))[0] - timedelta(minutes=5)
        if wall_now() > start and cal.is_open(wall_now()):
            start = wall_now()
    resumed = exchange.sim_time is not None and exchange.sim_time > start
    if resumed:
        start = exchange.sim_time
    until = start + args.duration if args.duration else None
    data_dir = _data_dir(cfg, args.data)
    end = until.date() if until else None
    try:
        market = build_market(cfg.market.source, data_dir, cal, start.date(), end, s.seed, s.step_minutes)
    except DataError as e:
        exchange.close()
        raise UserError(str(e)) from None
    exchange.market = market

    clock = SimClock(start, s.speed)
    setup_logging(cfg.bot.log_path, cfg.bot.log_level, cfg.bot.console_log, clock=clock, bind={"run_id": run_id})
    log = get_logger("bot")
    gateway, broker_note = None, ""
    if cfg.broker.kind == "sim-gateway" and s.speed == "max":
        # a clock that jumps from event to event cannot wait for socket round trips
        broker_note = "--speed max replays through SimBroker (the gateway needs a finite speed)"
    if cfg.broker.kind == "sim-gateway" and s.speed != "max":
        gateway = SimGateway(exchange, clock, cal, port=0, account=s.account)
        await gateway.start()
        broker = ib_broker(cfg, log, clock, gateway_port=gateway.port)
    else:
        broker = SimBroker(exchange, clock)
    info = dict(broker=broker.name, market=market.source, market_reason=getattr(market, "reason", ""),
                data_dir=str(data_dir), speed=str(s.speed), start=start.isoformat(),
                until=until.isoformat() if until else None, resumed=resumed,
                gateway_port=gateway.port if gateway else None, broker_note=broker_note or None)
    return _Simulator(clock=clock, calendar=cal, exchange=exchange, market=market, gateway=gateway, broker=broker,
                      log=log, until=until, info=info)


# --- control commands ---------------------------------------------------------------------
def _ask(cfg, payload: dict):
    """The daemon's answer, or None when it is not running / does not answer."""
    from bot.control import ControlUnavailable, request_sync

    try:
        response = request_sync(cfg.bot.control_socket, payload, timeout=3.0)
    except ControlUnavailable:
        return None
    if not response.get("ok"):
        raise UserError(f"daemon refused {payload['cmd']}: {response.get('error')}")
    return response["result"]


def cmd_status(args) -> int:
    cfg = _load(args.config)
    result = _ask(cfg, {"cmd": "status"})
    if result is None:
        result = _offline_status(cfg)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        _print_status(result)
    return 0


def _offline_status(cfg) -> dict:
    from bot.store import Store

    if not Path(cfg.bot.store_path).exists():
        return {"daemon": "not running", "halted": False, "open_condors": [], "positions": {}}
    from bot.engine import MISMATCH_KEY

    with Store(cfg.bot.store_path) as store:
        halted, reason = store.halted()
        mismatch = store.get_control(MISMATCH_KEY)
        return {
            "daemon": "not running",
            "halted": halted,
            "halt_reason": reason,
            "position_mismatch": ({k: {"store": a, "broker": b} for k, (a, b) in json.loads(mismatch).items()}
                                  if mismatch else None),
            "store_positions": store.positions(),
            "open_condors": [
                {"condor_id": c.condor_id, "expiry": str(c.expiry), "quantity": c.quantity, "credit": str(c.credit),
                 "strikes": [str(c.put_long), str(c.put_short), str(c.call_short), str(c.call_long)]}
                for c in store.open_condors()
            ],
            "pnl": {"realized": str(store.realized_pnl()), "unrealized": None},
            "working_orders": [r.intent.order_ref for r in store.live_intents()],
        }


def _print_status(s: dict) -> None:
    print(f"daemon:   {s.get('daemon', 'running')}   time: {s.get('time', '-')}")
    print(f"halted:   {s.get('halted')}" + (f" ({s.get('halt_reason')})" if s.get("halted") else ""))
    if s.get("position_mismatch"):
        print("entries:  BLOCKED: store positions differ from the broker's (broker is the truth; clears when they"
              " agree again, or `spx-bot resume`)")
        for k, d in s["position_mismatch"].items():
            print(f"  {k:28s} store {d['store']:+d}  broker {d['broker']:+d}")
    if "account" in s:
        a = s["account"]
        print(f"account:  {a['id']} paper={a['paper']} net_liq={a['net_liquidation']} cash={a['cash']}")
    pnl = s.get("pnl", {})
    print(f"pnl:      realized={pnl.get('realized')} unrealized={pnl.get('unrealized')}")
    print(f"condors:  {len(s.get('open_condors', []))} open")
    for c in s.get("open_condors", []):
        print(f"  {c['condor_id']}  exp {c['expiry']}  x{c['quantity']}  {'/'.join(c['strikes'])}  credit {c['credit']}"
              f"  upnl {c.get('unrealized_pnl')}")
    positions = s.get("positions", s.get("store_positions", {}))
    print(f"positions: {len(positions)}")
    for k, q in positions.items():
        print(f"  {k:28s} {q:+d}")
    if s.get("working_orders"):
        print(f"working:  {', '.join(s['working_orders'])}")
    hedge = s.get("hedge")
    if hedge and "layers" in hedge:
        print(f"hedge:    tier {hedge['tier']} activated={hedge['activated']} halted={hedge['halted']}"
              f" total_pnl={hedge['total_pnl']} annualized_cost={hedge['annualized_cost_pct_nl']}% of NL")
        for layer, b in hedge["layers"].items():
            print(f"  {layer:5s} long {b['held']:3d} short {b['short']:3d}  paid {b['premium_paid']}"
                  f"  collected {b['premium_collected']}  realized {b['realized_pnl']}  unrealized {b['unrealized_pnl']}")
        for lot in hedge.get("lots", []):
            print(f"    {lot['layer']:5s} {lot['option']:28s} {lot['quantity']:+d} @ {lot['cost']}")


def cmd_kill(args) -> int:
    cfg = _load(args.config)
    result = _ask(cfg, {"cmd": "kill", "flatten": args.flatten, "reason": args.reason})
    if result is None:
        if args.flatten:
            print("spx-bot kill: daemon not answering; halting and cancelling (no --flatten without the daemon)",
                  file=sys.stderr)
        result = _offline_kill(cfg, args.reason)
    print(json.dumps(result, indent=2, default=str))
    return 0


def _offline_kill(cfg, reason: str) -> dict:
    """The daemon is not running or does not answer: store the halt ourselves, then cancel at
    the broker with our own connection."""
    from bot.clock import wall_now
    from bot.log import get_logger, setup_logging
    from bot.store import Store
    from bot.wiring import open_exchange

    setup_logging(cfg.bot.log_path, cfg.bot.log_level, console=False, bind={"source": "kill-command"})
    log = get_logger("kill")
    reason = reason or "operator (daemon not answering)"
    with Store(cfg.bot.store_path) as store:
        store.set_halted(True, reason, wall_now())
        live = [r.intent.order_ref for r in store.live_intents()]
    cancelled: list[str] = []
    if cfg.broker.kind == "ib":
        cancelled, remaining = asyncio.run(_ib_global_cancel(cfg, live, log))
    elif Path(cfg.sim.state_path).exists():
        exchange = open_exchange(cfg, None)
        try:
            cancelled = exchange.cancel_all(exchange.sim_time or wall_now())
            remaining = [o.order_ref for o in exchange.open_orders()]
        finally:
            exchange.close()
    else:
        remaining = live
    log.warning("killswitch.engaged", reason=reason, cancelled=cancelled, remaining=remaining, daemon=False)
    return {"halted": True, "reason": reason, "daemon": "not answering", "cancelled": cancelled, "remaining": remaining}


async def _ib_global_cancel(cfg, live: list[str], log) -> tuple[list[str], list[str]]:
    """Connect with the kill switch's own client id and send a global cancel."""
    from bot.broker.base import BrokerError
    from bot.wiring import ib_broker

    broker = ib_broker(cfg, log, kill=True)
    try:
        await broker.connect()
        await broker.cancel_all()
        remaining = [o.order_ref for o in await broker.open_orders()]
        return [ref for ref in live if ref not in remaining], remaining
    except BrokerError as e:
        log.error("killswitch.cancel_failed", error=str(e), note="halt stored; cancels go first after reconnect")
        return [], live
    finally:
        await broker.disconnect()


def cmd_resume(args) -> int:
    cfg = _load(args.config)
    result = _ask(cfg, {"cmd": "resume"})
    if result is None:
        from bot.clock import wall_now
        from bot.log import get_logger, setup_logging
        from bot.store import Store

        setup_logging(cfg.bot.log_path, cfg.bot.log_level, console=False, bind={"source": "resume-command"})
        from bot.engine import MISMATCH_KEY

        with Store(cfg.bot.store_path) as store:
            store.set_halted(False, "", wall_now())
            store.set_control(MISMATCH_KEY, "")
        get_logger("kill").warning("killswitch.released", daemon=False)
        result = {"halted": False, "daemon": "not running"}
    print(json.dumps(result, indent=2))
    return 0


def cmd_sim_gateway(args) -> int:
    from bot.sim.gateway import run_gateway

    cfg = _load(args.config)
    return run_gateway(cfg, port=args.port, speed=args.speed, start=args.start, data_dir=_data_dir(cfg, args.data))


def cmd_backtest(args) -> int:
    from bot.backtest import run_backtest

    cfg = _load(args.config)
    return run_backtest(cfg, args.start, args.end, Path(args.out), _data_dir(cfg, args.data), sweep=args.sweep,
                        progress=not args.no_progress, workers=args.workers, commissions=args.commissions)


def cmd_data(args) -> int:
    from bot.backtest import data_check, data_fetch

    cfg = _load(args.config)
    directory = Path(args.dir) if args.dir else _data_dir(cfg, None)
    if args.action == "check":
        return data_check(directory)
    return data_fetch(directory, source=args.source)


def cmd_check_config(args) -> int:
    from bot.config import check_config

    code, line = check_config(args.path)
    print(line, file=sys.stdout if code == 0 else sys.stderr)
    return code


def cmd_logs(args) -> int:
    from bot.logview import show_logs

    path = args.path
    if path is None:
        path = _load(args.config).bot.log_path
    return show_logs(path, follow=args.follow, event_glob=args.event)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spx-bot", description="SPX iron condors with a layered VIX hedge (IB paper)")
    sub = p.add_subparsers(dest="command", required=True)
    default_cfg = "config/sim.toml"

    r = sub.add_parser("run", help="run the daemon")
    r.add_argument("--config", default=default_cfg)
    r.add_argument("--speed", help="simulated seconds per real second, or 'max'")
    r.add_argument("--start", type=parse_start, help="simulated start: YYYY-MM-DD (09:00) or YYYY-MM-DDTHH:MM, New York")
    r.add_argument("--for", dest="duration", type=parse_duration, help="simulated duration of entries, e.g. 5d")
    r.add_argument("--data", help="directory of history files (or SPX_BOT_DATA)")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("status", help="show the book of the running daemon (or the stored one)")
    s.add_argument("--config", default=default_cfg)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    k = sub.add_parser("kill", help="kill switch: halt, cancel working orders")
    k.add_argument("--config", default=default_cfg)
    k.add_argument("--flatten", action="store_true", help="also close every position")
    k.add_argument("--reason", default="")
    k.set_defaults(func=cmd_kill)

    u = sub.add_parser("resume", help="release the kill switch")
    u.add_argument("--config", default=default_cfg)
    u.set_defaults(func=cmd_resume)

    c = sub.add_parser("check-config", help="validate a config file")
    c.add_argument("path")
    c.set_defaults(func=cmd_check_config)

    w = sub.add_parser("sim-gateway", help="run the simulated IB paper gateway alone, for any TWS API client")
    w.add_argument("--config", default=default_cfg)
    w.add_argument("--port", type=int, default=4002)
    w.add_argument("--speed", help="simulated seconds per real second (max = 3600)")
    w.add_argument("--start", type=parse_date, help="simulated start date YYYY-MM-DD")
    w.add_argument("--data", help="directory of history files (or SPX_BOT_DATA)")
    w.set_defaults(func=cmd_sim_gateway)

    bt = sub.add_parser("backtest", help="replay history: condors unhedged, + ALVH, + VIX tail hedge, SPX")
    bt.add_argument("--config", default=default_cfg)
    bt.add_argument("--from", dest="start", type=parse_date, default=date(2004, 3, 26))
    bt.add_argument("--to", dest="end", type=parse_date, default=date(2026, 7, 23))
    bt.add_argument("--out", default="backtest-out")
    bt.add_argument("--data", help="directory of history files (default: market.data_dir or SPX_BOT_DATA)")
    bt.add_argument("--sweep", action="store_true", help="also sweep the hedge size (cost against drawdown cut)")
    bt.add_argument("--workers", type=int, help="processes for the variants (default: the cores)")
    bt.add_argument("--commissions", choices=("ib", "flat"), default="ib")
    bt.add_argument("--no-progress", action="store_true")
    bt.set_defaults(func=cmd_backtest)

    dt = sub.add_parser("data", help="check or fetch the daily history files")
    dt.add_argument("action", choices=("check", "fetch"))
    dt.add_argument("dir", nargs="?", help="the data directory (default: market.data_dir or SPX_BOT_DATA)")
    dt.add_argument("--config", default=default_cfg)
    dt.add_argument("--source", choices=("cboe", "ib"), default="cboe")
    dt.set_defaults(func=cmd_data)

    g = sub.add_parser("logs", help="print the JSON log readably")
    g.add_argument("--config", default=default_cfg)
    g.add_argument("--path")
    g.add_argument("-f", "--follow", action="store_true")
    g.add_argument("--event", help="only events matching this glob, e.g. 'condor.*'")
    g.set_defaults(func=cmd_logs)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"spx-bot: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
