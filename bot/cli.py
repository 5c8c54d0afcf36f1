"""spx-bot command line: run | status | kill | resume | check-config | logs.

User errors (bad config, missing data, another instance running) print one line naming the
cause and exit 2; no tracebacks for them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
EXIT_NO_DAEMON = 1  # `status`: no daemon answered; what the store holds was printed
CONFIG_ENV = "SPX_BOT_CONFIG"
MAX_DURATION = timedelta(days=3660)  # ten years of simulated entries: longer is a typo, not a plan


class UserError(Exception):
    """A problem the user can fix; printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (no usage block), exit 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: {' '.join(message.split())} (see {self.prog} --help)\n")


def parse_duration(text: str) -> timedelta:
    m = re.fullmatch(r"\s*(\d{1,12}(?:\.\d{1,6})?)\s*([smhdw])\s*", text or "")
    if not m:
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: use e.g. 90s, 30m, 12h, 5d, 2w")
    n, unit = float(m.group(1)), m.group(2)
    seconds = n * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: must be more than zero")
    if seconds > MAX_DURATION.total_seconds():
        raise argparse.ArgumentTypeError(f"bad duration {text!r}: at most {MAX_DURATION.days}d")
    return timedelta(seconds=seconds)


def _bounded_day(text: str, day: date) -> date:
    from bot.config import FIRST_START, LAST_START

    if not FIRST_START <= day <= LAST_START:
        raise argparse.ArgumentTypeError(f"date {text!r} out of range: {FIRST_START} to {LAST_START}")
    return day


def parse_date(text: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad date {text!r}: use YYYY-MM-DD") from None
    return _bounded_day(text, day)


def parse_start(text: str) -> tuple[date, str]:
    """YYYY-MM-DD (the clock starts at 09:00 New York) or YYYY-MM-DDTHH:MM (New York)."""
    day, _, hhmm = text.partition("T")
    try:
        if hhmm:
            from bot.config import hh_mm

            hh_mm(hhmm)
        parsed = date.fromisoformat(day)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad date {text!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
    return _bounded_day(text, parsed), hhmm or "09:00"


def parse_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port {text!r}: a number 0-65535") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"bad port {text!r}: a number 0-65535")
    return port


def parse_speed(text: str) -> str:
    """Checked like `sim.speed` in a file; the config override then applies it."""
    from pydantic import ValidationError

    from bot.config import SimConfig

    try:
        SimConfig(speed=text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(f"bad speed {text!r}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}")
    return text


def parse_workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 256:
        raise argparse.ArgumentTypeError(f"bad number of workers {text!r}: 1-256")
    return n


def parse_seeds(text: str) -> int:
    from bot.backtest.seeds import MAX_SEEDS

    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"bad number of seeds {text!r}: 1-{MAX_SEEDS}")
    return n


def parse_seed_list(text: str) -> list[int]:
    from bot.backtest.seeds import parse_seed_list as parse

    try:
        return parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _load(path: str, prices: bool = True, **overrides):
    """The config; with `prices`, also the SPX surface it names (`sim.surface`). The control
    commands (status, health, kill, resume, logs) price nothing and pass prices=False: a bad
    surface file must never stand between an operator and the kill switch."""
    from bot.config import ConfigError, load_config

    try:
        cfg = load_config(path)
        cfg = cfg.with_overrides(**{k: v for k, v in overrides.items() if v is not None}) if overrides else cfg
    except ConfigError as e:
        raise UserError(str(e)) from None
    if prices and cfg.sim.surface and not _surface_from_cli:
        _use_surface(cfg.sim.surface)
    return cfg


_surface_from_cli = False


def _use_surface(path: str) -> None:
    """Price SPX options on the surface in `path` (--surface, else sim.surface); exit 2 on a bad file."""
    from bot import pricing
    from bot.surface import SurfaceError

    try:
        pricing.use_surface(path)
    except SurfaceError as e:
        raise UserError(f"surface: {e}") from None


def _preflight(cfg, source: str) -> None:
    """What `run` checks before it touches anything: the config's paths (the same check as
    `check-config`) and the state files (FAILURES.md 29)."""
    from bot.config import ConfigError, check_files
    from bot.statefiles import StateFileError, check_pair

    try:
        check_files(cfg, source)
        check_pair(cfg.bot.store_path, _partner(cfg))
    except (ConfigError, StateFileError) as e:
        raise UserError(str(e)) from None


def _control_config(args) -> str:
    """The config a control command means (FAILURES.md 27): --config, else $SPX_BOT_CONFIG,
    else the one daemon running for this user. Never a silent default: with none or several
    running, refuse and name the candidates."""
    from bot import registry

    if args.config:
        return args.config
    if os.environ.get(CONFIG_ENV):
        return os.environ[CONFIG_ENV]
    try:
        daemons = registry.running()
    except registry.RegistryError as e:
        raise UserError(str(e)) from None
    if len(daemons) == 1:
        return daemons[0].config
    if not daemons:
        raise UserError(f"no spx-bot daemon runs for this user and neither --config nor {CONFIG_ENV} is set:"
                        " say which config (e.g. --config config/sim.toml)")
    raise UserError(f"{len(daemons)} spx-bot daemons run; say which with --config: "
                    + "; ".join(d.describe() for d in daemons))


def _data_dir(cfg, cli_value: str | None) -> Path:
    return Path(cli_value or os.environ.get("SPX_BOT_DATA") or cfg.market.data_dir)


# --- run -----------------------------------------------------------------------------------
def cmd_run(args) -> int:
    start_day = args.start[0] if args.start else None
    cfg = _load(args.config, **{"sim.speed": args.speed, "sim.start": start_day})
    if cfg.broker.kind == "ib" and (args.duration or args.start or args.data):
        raise UserError("--for, --start and --data apply to the simulator, not to broker.kind = \"ib\"")
    _preflight(cfg, args.config)
    lock = _StateLock(cfg)
    try:
        return asyncio.run(_run(cfg, args))
    finally:
        lock.release()


class _StateLock:
    """One daemon per store and simulated account (FAILURES.md 20): an advisory lock on a file
    beside each, held for the life of the process (the kernel drops it on kill -9)."""

    def __init__(self, cfg):
        import fcntl

        self._fds: list[int] = []
        paths = [cfg.bot.store_path] + ([cfg.sim.state_path] if cfg.broker.kind != "ib" else [])
        for path in paths:
            lock_path = f"{path}.lock"
            try:
                Path(lock_path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as e:
                self.release()
                raise UserError(f"cannot use {path}: cannot create its lock file {lock_path}: {e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                self.release()
                raise UserError(f"another spx-bot (pid {holder}) runs on {path}; stop it first, or give this run"
                                " its own bot.store_path and sim.state_path") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            self._fds.append(fd)

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


async def _run(cfg, args, store_factory=None) -> int:
    """Wire the daemon for the configured broker and run it until it ends or is signalled.
    `store_factory` (default `Store`) lets tests give the daemon a store that fails to write."""
    from bot.broker.base import BrokerError, FatalBrokerError
    from bot.calendar import TradingCalendar
    from bot.clock import SystemClock, wall_now
    from bot.control import ControlServer, ControlUnavailable, request
    from bot.engine import Engine
    from bot.log import get_logger, reopen_log, setup_logging
    from bot.ops.wiring import Ops, OpsConfigError
    from bot.store import Store
    from bot.wiring import ib_broker

    import sqlite3

    from bot import registry
    from bot.control import AlreadyRunning
    from bot.store import StoreError, StoreWriteError

    socket_path = cfg.bot.control_socket
    try:
        await request(socket_path, {"cmd": "status"}, timeout=1.0)
        raise UserError(f"another spx-bot is already running (control socket {socket_path} answers)")
    except ControlUnavailable:
        pass
    run_id = uuid.uuid4().hex[:12]
    if cfg.broker.kind == "ib":
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
    try:
        store = (store_factory or Store)(cfg.bot.store_path)
    except StoreError as e:
        if sim is not None:
            await sim.close()
        raise UserError(str(e)) from None
    engine = Engine(cfg, clock, cal, broker, store, log, until=until,
                    next_price=getattr(getattr(sim, "market", None), "next_step_time", None))
    try:
        ops = Ops.build(cfg, engine, broker, clock, log)
    except OpsConfigError as e:
        store.close()
        if sim is not None:
            await sim.close()
        raise UserError(f"{args.config}: {e}") from None
    server = ControlServer(ops.surface, socket_path)
    try:
        await server.start()
    except (AlreadyRunning, OSError, ValueError) as e:
        store.close()
        if sim is not None:
            await sim.close()
        raise UserError(f"control socket {socket_path}: {e}") from None
    try:
        await ops.start(watch=getattr(clock, "speed", None) != "max")
    except OSError as e:
        await ops.close()
        await server.close()
        store.close()
        if sim is not None:
            await sim.close()
        raise UserError(f"{args.config}: http: cannot listen on {cfg.http.host}:{cfg.http.port}: "
                        f"{e.strerror or e}") from None
    try:
        entry = registry.register(args.config, socket_path, cfg.bot.store_path)
    except (registry.RegistryError, OSError) as e:  # control commands then need --config
        log.warning("registry.failed", error=str(e))
        entry = None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, engine.stop)
    loop.add_signal_handler(signal.SIGHUP, lambda: reopen_log() and log.info("log.reopened", path=cfg.bot.log_path))
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
    except StoreWriteError as e:
        engine.store_failed(e)
    except sqlite3.Error as e:  # the simulated account's file: on a full disk it fails like the store
        engine.store_failed(StoreWriteError(f"simulated account {cfg.sim.state_path}: {e}"))
    finally:
        if engine.fatal is not None:  # FAILURES.md 28: no new order; shutdown cancels every working one
            log.error("bot.fatal", error=str(engine.fatal), cause="state write failed",
                      note="trading halted; working orders are cancelled")
            code, reason = EXIT_FATAL, f"state write failed: {engine.fatal}"
        await engine.shutdown()
        await server.close()
        if entry is not None:
            registry.unregister(entry)
        log.info("bot.stopped", reason=reason, sim_time=clock.now().isoformat())
        await ops.close()
        store.close()
        if sim is not None:
            await sim.close()
    if code == EXIT_FATAL:
        print(f"spx-bot: stopped: {reason}", file=sys.stderr)
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

    restarts: object | None = None  # the gateway's scheduled restarts ([sim_gateway] restart_at)

    async def close(self) -> None:
        if self.restarts is not None:
            await self.restarts.close()
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
    # an explicit --data is a request for that history: unusable, it is an error, not the model
    source = "history" if args.data is not None and cfg.market.source == "auto" else cfg.market.source
    try:
        market = build_market(source, data_dir, cal, start.date(), end, s.seed, s.step_minutes)
    except DataError as e:
        exchange.close()
        raise UserError(f"--data {args.data}: {e}" if args.data is not None else str(e)) from None
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
    sim = _Simulator(clock=clock, calendar=cal, exchange=exchange, market=market, gateway=gateway, broker=broker,
                     log=log, until=until, info=info)
    if gateway is not None and cfg.sim_gateway.restart_at:
        from bot.sim.gateway.restarts import ScheduledRestart

        g = cfg.sim_gateway
        sim.restarts = ScheduledRestart(lambda: sim.gateway, lambda new: setattr(sim, "gateway", new),
                                        g.restart_at, g.restart_days, g.restart_down_s)
        sim.restarts.start()
    return sim


# --- control commands ---------------------------------------------------------------------
_NOT_RUNNING, _NOT_ANSWERING = "not running", "not answering"


def _ask(cfg, payload: dict, timeout: float = 3.0) -> tuple[dict | None, str]:
    """(the daemon's result, "") or (None, why): not running, or not answering (a socket that
    accepts but no answer in time: a hung or stopped daemon)."""
    from bot.control import ControlNotAnswering, ControlUnavailable, request_sync

    try:
        response = request_sync(cfg.bot.control_socket, payload, timeout=timeout)
    except ControlNotAnswering:
        return None, _NOT_ANSWERING
    except ControlUnavailable:
        return None, _NOT_RUNNING
    except ValueError as e:  # a socket path no unix socket can have
        raise UserError(f"bot.control_socket: {e}") from None
    if not response.get("ok"):
        raise UserError(f"daemon refused {payload['cmd']}: {response.get('error')}")
    return response["result"], ""


def _daemon_note(cfg, why: str) -> str:
    from bot import registry

    try:
        entry = registry.by_socket(cfg.bot.control_socket)
    except registry.RegistryError:
        entry = None
    if why == _NOT_ANSWERING:
        return f"not answering (pid {entry.pid})" if entry else "not answering"
    return why


def cmd_status(args) -> int:
    config = _control_config(args)
    cfg = _load(config, prices=False)
    result, why = _ask(cfg, {"cmd": "status"})
    if result is None:
        result = _offline_status(cfg, _daemon_note(cfg, why))
    else:
        result = {"daemon": "running", **result}
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        _print_status(result)
    if why == _NOT_ANSWERING:
        return EXIT_FATAL  # a daemon is there but hung: see `kill`
    return 0 if result is not None and result.get("daemon") == "running" else EXIT_NO_DAEMON


def cmd_health(args) -> int:
    """The daemon's health through the control socket (no HTTP, no token): for container
    health checks and scripts. 0 healthy, 1 unhealthy or no daemon answered."""
    cfg = _load(_control_config(args), prices=False)
    result, _ = _ask(cfg, {"cmd": "status"})
    if result is None or "health" not in result:
        print(json.dumps({"healthy": False, "reasons": ["no daemon answered"]}))
        return EXIT_NO_DAEMON
    print(json.dumps(result["health"], default=str))
    return 0 if result["health"].get("healthy") else 1


def _partner(cfg) -> str | None:
    """The store's witness file for check_pair: the simulated account, none with a real broker."""
    return cfg.sim.state_path if cfg.broker.kind != "ib" else None


def _offline_status(cfg, daemon: str) -> dict:
    from bot.statefiles import StateFileError, check_pair
    from bot.store import Store, StoreError

    if not Path(cfg.bot.store_path).exists():
        return {"daemon": daemon, "halted": False, "open_condors": [], "positions": {}}
    from bot.engine import MISMATCH_KEY

    try:
        check_pair(cfg.bot.store_path, _partner(cfg))
        with Store(cfg.bot.store_path, timeout=5.0) as store:
            halted, reason = store.halted()
            mismatch = store.get_control(MISMATCH_KEY)
            return {
                "daemon": daemon,
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
    except (StateFileError, StoreError) as e:
        raise UserError(str(e)) from None


def _print_status(s: dict) -> None:
    print(f"daemon:   {s.get('daemon', 'running')}   time: {s.get('time', '-')}")
    print(f"halted:   {s.get('halted')}" + (f" ({s.get('halt_reason')})" if s.get("halted") else ""))
    if s.get("position_mismatch"):
        print("entries:  BLOCKED: store positions differ from the broker's (broker is the truth; clears when they"
              " agree again, or `spx-bot resume`)")
        for k, d in s["position_mismatch"].items():
            print(f"  {k:28s} store {d['store']:+d}  broker {d['broker']:+d}")
    if "health" in s:
        h = s["health"]
        print(f"health:   {'healthy' if h['healthy'] else 'UNHEALTHY: ' + '; '.join(h['reasons'])}"
              f"  connected={h['connected']} maintenance_window={h['in_maintenance_window']}"
              + (f"  entries blocked: {'; '.join(h['entries_blocked'].values())}" if h.get("entries_blocked") else ""))
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
    """Exit 0 only when no order of ours is confirmed working; 3 (with the reason on stderr)
    when the kill could not confirm it: the operator must know a cancel may be missing."""
    config = _control_config(args)
    cfg = _load(config, prices=False)
    refused = ""
    try:
        result, why = _ask(cfg, {"cmd": "kill", "flatten": args.flatten, "reason": args.reason}, timeout=5.0)
    except UserError as e:  # the daemon answered but its kill failed: act on our own as well
        result, why, refused = None, "answering, but its kill failed", str(e)
    if result is None:
        if args.flatten:
            print(f"spx-bot kill: daemon {why}; halting and cancelling (no --flatten without the daemon)",
                  file=sys.stderr)
        result = _offline_kill(cfg, args.reason, _daemon_note(cfg, why))
        if refused:
            result["errors"] = [refused, *result["errors"]]
    result = {"config": os.path.abspath(config), **result}
    print(json.dumps(result, indent=2, default=str))
    problems = list(result.get("errors") or [])
    if result.get("remaining"):
        problems.append(f"still working: {', '.join(map(str, result['remaining']))}")
    if problems:
        print(f"spx-bot kill: not confirmed: {'; '.join(problems)}", file=sys.stderr)
        return EXIT_FATAL
    return 0


def _offline_kill(cfg, reason: str, daemon: str) -> dict:
    """The daemon is not running or does not answer: store the halt ourselves, then cancel at
    the broker with our own connection. Every step is tried even when an earlier one failed
    (a hung daemon may hold the store's write lock); each failure is reported in `errors`."""
    import sqlite3

    from bot.clock import wall_now
    from bot.log import get_logger, setup_logging
    from bot.statefiles import StateFileError, check_pair
    from bot.store import Store, StoreError

    errors: list[str] = []
    try:
        setup_logging(cfg.bot.log_path, cfg.bot.log_level, console=False, bind={"source": "kill-command"})
    except OSError as e:
        errors.append(f"log {cfg.bot.log_path}: {e.strerror or e}")
        setup_logging(os.devnull, cfg.bot.log_level, console=False, bind={"source": "kill-command"})
    log = get_logger("kill")
    reason = reason or f"operator (daemon {daemon})"
    live: list[str] = []
    halted = False
    try:
        check_pair(cfg.bot.store_path, _partner(cfg))
        with Store(cfg.bot.store_path, timeout=KILL_BUSY_TIMEOUT_S) as store:
            try:
                live = [r.intent.order_ref for r in store.live_intents()]
            except sqlite3.Error as e:
                errors.append(f"working orders unreadable from the store: {e}")
            store.set_halted(True, reason, wall_now())
            halted = True
    except (StateFileError, StoreError, sqlite3.Error) as e:
        errors.append(f"halt not stored: {e}")
    cancelled: list[str] = []
    remaining: list[str] = list(live)
    if cfg.broker.kind == "ib":
        cancelled, remaining, error = asyncio.run(_ib_global_cancel(cfg, live, log))
        if error:
            errors.append(error)
    elif Path(cfg.sim.state_path).exists():
        cancelled, remaining, error = _sim_cancel(cfg)
        if error:
            errors.append(error)
    log.warning("killswitch.engaged", reason=reason, cancelled=cancelled, remaining=remaining, daemon=False,
                halted=halted, errors=errors)
    return {"halted": halted, "reason": reason, "daemon": daemon, "cancelled": cancelled, "remaining": remaining,
            "errors": errors}


KILL_BUSY_TIMEOUT_S = 5.0  # the offline kill waits this long for a write lock a hung daemon holds


def _sim_cancel(cfg) -> tuple[list[str], list[str], str]:
    """Cancel every working order of the simulated account, straight in its file."""
    import sqlite3

    from bot.clock import wall_now
    from bot.sim.exchange import ExchangeSettings, SimExchange
    from bot.statefiles import StateFileError

    s = cfg.sim
    if Path(s.state_path).stat().st_size == 0:
        return [], [], f"simulated account {s.state_path} is empty: nothing to cancel there, and not recreated"
    try:
        exchange = SimExchange(None, None, ExchangeSettings(s.account, s.starting_cash), s.state_path,
                               busy_timeout=KILL_BUSY_TIMEOUT_S)
    except (StateFileError, sqlite3.Error, OSError) as e:
        return [], [], f"simulated account {s.state_path} not reachable: {e}"
    try:
        cancelled = exchange.cancel_all(exchange.sim_time or wall_now())
        remaining = [o.order_ref for o in exchange.open_orders()]
        return cancelled, remaining, ""
    except (sqlite3.Error, OSError) as e:
        return [], [], f"cancels in the simulated account {s.state_path} failed: {e}"
    finally:
        exchange.close()


async def _ib_global_cancel(cfg, live: list[str], log) -> tuple[list[str], list[str], str]:
    """Connect with the kill switch's own client id and send a global cancel."""
    from bot.broker.base import BrokerError
    from bot.wiring import ib_broker

    import logging

    # ib_async's own warnings would print beside our one line; our log has the cause
    logging.getLogger("ib_async").addHandler(logging.NullHandler())
    logging.getLogger("ib_async").propagate = False
    broker = ib_broker(cfg, log, kill=True)
    try:
        await broker.connect()
        await broker.cancel_all()
        remaining = [o.order_ref for o in await broker.open_orders()]
        return [ref for ref in live if ref not in remaining], remaining, ""
    except BrokerError as e:
        log.error("killswitch.cancel_failed", error=str(e), note="halt stored; cancels go first after reconnect")
        return [], live, f"gateway {cfg.broker.host}:{cfg.broker.port} not reachable, nothing cancelled: {e}"
    finally:
        await broker.disconnect()


def cmd_resume(args) -> int:
    config = _control_config(args)
    cfg = _load(config, prices=False)
    result, why = _ask(cfg, {"cmd": "resume"})
    if result is None:
        import sqlite3

        from bot.clock import wall_now
        from bot.engine import MISMATCH_KEY
        from bot.log import get_logger, setup_logging
        from bot.statefiles import StateFileError, check_pair
        from bot.store import Store, StoreError

        if why == _NOT_ANSWERING:
            raise UserError(f"the daemon on {cfg.bot.control_socket} is {_daemon_note(cfg, why)}: resume refused"
                            " (it would not see the release); restart it first")
        try:
            check_pair(cfg.bot.store_path, _partner(cfg))
            with Store(cfg.bot.store_path, timeout=KILL_BUSY_TIMEOUT_S) as store:
                store.set_halted(False, "", wall_now())
                store.set_control(MISMATCH_KEY, "")
        except (StateFileError, StoreError, sqlite3.Error) as e:
            raise UserError(f"resume not stored: {e}") from None
        setup_logging(cfg.bot.log_path, cfg.bot.log_level, console=False, bind={"source": "resume-command"})
        get_logger("kill").warning("killswitch.released", daemon=False)
        result = {"halted": False, "daemon": why}
    print(json.dumps(result, indent=2))
    return 0


def cmd_sim_gateway(args) -> int:
    from bot.sim.gateway import run_gateway

    overrides = {"sim_gateway.restart_at": args.restart_at, "sim_gateway.restart_down_s": args.restart_down}
    cfg = _load(args.config, **overrides)
    return run_gateway(cfg, port=args.port, speed=args.speed, start=args.start, data_dir=_data_dir(cfg, args.data))


def cmd_backtest(args) -> int:
    from bot.backtest import run_backtest

    from bot.backtest.seeds import DEFAULT_SEEDS, seeds_from

    cfg = _load(args.config)
    try:
        seeds = args.seed_list or seeds_from(cfg.sim.seed, args.seeds or DEFAULT_SEEDS)
    except ValueError as e:
        raise UserError(f"backtest: {e}") from None
    # the bar only where someone watches it (a terminal) or when asked: logs and tests stay clean
    progress = args.progress or (not args.no_progress and sys.stderr.isatty())
    return run_backtest(cfg, args.start, args.end, Path(args.out), _data_dir(cfg, args.data), sweep=args.sweep,
                        progress=progress, workers=args.workers,
                        commissions=args.commissions or cfg.sim.commissions, seeds=seeds)


def cmd_export(args) -> int:
    from bot.export import ExportError, export
    from bot.store import StoreError

    cfg = _load(args.config)
    try:
        counts = export(cfg.bot.store_path, args.out, args.start, args.end)
    except (ExportError, StoreError) as e:
        raise UserError(str(e)) from None
    print(" ".join(f"{name}={n}" for name, n in counts.items()) + f" -> {args.out}")
    return 0


def cmd_report(args) -> int:
    from bot.paper_report import ReportError, paper_report
    from bot.store import StoreError

    cfg = _load(args.config)
    if args.start > args.end:
        raise UserError(f"--from {args.start} is after --to {args.end}")
    try:
        return paper_report(cfg, args.start, args.end, Path(args.out), _data_dir(cfg, args.data),
                            commissions=args.commissions or cfg.sim.commissions)
    except (ReportError, StoreError) as e:
        raise UserError(str(e)) from None


def cmd_data(args) -> int:
    from bot.backtest import data_check, data_fetch

    cfg = _load(args.config)
    directory = Path(args.dir) if args.dir else _data_dir(cfg, None)
    if args.action == "check":
        return data_check(directory)
    return data_fetch(directory, source=args.source)


def cmd_replicate(args) -> int:
    from bot.data import DataError
    from bot.replicate import ReplicationError, replicate_command, table

    try:
        doc = replicate_command(args.index, args.start, args.end, Path(args.out), _history_dir(args.data),
                                entry=args.entry)
    except (ReplicationError, DataError) as e:
        raise UserError(f"replicate {args.index}: {e}") from None
    print(table(doc))
    print(f"wrote {Path(args.out) / 'replication.csv'}, replication.json, replication.png, rolls.csv")
    return 0


def cmd_calibrate(args) -> int:
    from bot.calibrate import CalibrationError, calibrate_command
    from bot.surface import Surface, SurfaceError, load_surface

    if args.start > args.end:
        raise UserError(f"--from {args.start} is after --to {args.end}")
    try:
        start = load_surface(args.start_surface) if args.start_surface else Surface()
        calibrate_command(Path(args.out), _history_dir(args.data), args.start, args.end, start, args.max_evals,
                          args.max_seconds, show_progress=not args.no_progress)
    except (CalibrationError, SurfaceError) as e:
        raise UserError(f"calibrate: {e}") from None
    return 0


def cmd_quote(args) -> int:
    from bot.quote_cli import QuoteError, quote_command

    try:
        return quote_command(args, _history_dir(args.data))
    except QuoteError as e:
        raise UserError(f"quote: {e}") from None


def _parse_seed(text: str) -> int:
    if not re.fullmatch(r"\d{1,10}", text or "") or int(text) > 2**32 - 1:
        raise argparse.ArgumentTypeError(f"bad seed {text!r}: a whole number from 0 to {2**32 - 1}")
    return int(text)


def _history_dir(cli_value: str | None) -> Path:
    """--data, else $SPX_BOT_DATA, else ../shared/data (this workplace's history)."""
    return Path(cli_value or os.environ.get("SPX_BOT_DATA") or "../shared/data")


def cmd_check_config(args) -> int:
    from bot.config import check_config

    code, line = check_config(args.path)
    print(line, file=sys.stdout if code == 0 else sys.stderr)
    return code


def cmd_logs(args) -> int:
    from bot.logview import show_logs

    path = args.path
    if path is None:
        path = _load(_control_config(args), prices=False).bot.log_path
    return show_logs(path, follow=args.follow, event_glob=args.event)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="spx-bot", description="SPX iron condors with a layered VIX hedge (IB paper)",
        epilog="exit codes: 0 done; 1 `status`/`health`: no daemon answered (the stored state was printed); "
               "2 user error (one line); 3 fatal broker or state condition, or a daemon that does not answer")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}", help="print the version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    default_cfg = "config/sim.toml"
    cfg_help = f"the bot's config file (default: {default_cfg})"
    # status, kill, resume, health and logs never default to a config: they find the daemon (_control_config)
    which = f"config of the daemon (default: ${CONFIG_ENV}, else the one daemon running for this user)"

    r = sub.add_parser("run", help="run the daemon")
    r.add_argument("--config", default=default_cfg, help=cfg_help)
    r.add_argument("--speed", type=parse_speed, help="simulated seconds per real second, or 'max'")
    r.add_argument("--start", type=parse_start, help="simulated start: YYYY-MM-DD (09:00) or YYYY-MM-DDTHH:MM, New York")
    r.add_argument("--for", dest="duration", type=parse_duration, help="simulated duration of entries, e.g. 5d")
    r.add_argument("--data", help="directory of history files (or SPX_BOT_DATA)")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("status", help="show the book of the running daemon (or the stored one)",
                       description="Exit 0 when the daemon answered, 1 when none runs (the stored state is "
                                   "printed), 3 when one runs but does not answer, 2 on a user error.")
    s.add_argument("--config", help=which)
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(func=cmd_status)

    h = sub.add_parser("health", help="the daemon's health as JSON (exit 0 healthy, 1 not or no daemon)")
    h.add_argument("--config", help=which)
    h.set_defaults(func=cmd_health)

    k = sub.add_parser("kill", help="kill switch: halt, cancel working orders")
    k.add_argument("--config", help=which)
    k.add_argument("--flatten", action="store_true", help="also close every position")
    k.add_argument("--reason", default="", help="why (stored with the halt, logged, notified)")
    k.set_defaults(func=cmd_kill)

    u = sub.add_parser("resume", help="release the kill switch")
    u.add_argument("--config", help=which)
    u.set_defaults(func=cmd_resume)

    c = sub.add_parser("check-config", help="validate a config file")
    c.add_argument("path", help="the config file to check (exit 0 valid, 2 invalid)")
    c.set_defaults(func=cmd_check_config)

    w = sub.add_parser("sim-gateway", help="run the simulated IB paper gateway alone, for any TWS API client")
    w.add_argument("--config", default=default_cfg, help=cfg_help)
    w.add_argument("--port", type=parse_port, default=4002, help="TCP port on 127.0.0.1 (default 4002, IB Gateway paper)")
    w.add_argument("--speed", type=parse_speed, help="simulated seconds per real second (max = 3600)")
    w.add_argument("--start", type=parse_date, help="simulated start date YYYY-MM-DD")
    w.add_argument("--data", help="directory of history files (or SPX_BOT_DATA)")
    w.add_argument("--restart-at", metavar="HH:MM", help="restart daily at this New York time, like IB Gateway")
    w.add_argument("--restart-down", type=float, metavar="SECONDS", help="simulated seconds away on a restart")
    w.set_defaults(func=cmd_sim_gateway)

    bt = sub.add_parser("backtest", help="replay history: condors unhedged, + ALVH, + VIX tail hedge, SPX")
    bt.add_argument("--config", default=default_cfg, help=cfg_help)
    bt.add_argument("--from", dest="start", type=parse_date, default=date(2004, 3, 26), help="first day, YYYY-MM-DD")
    bt.add_argument("--to", dest="end", type=parse_date, default=date(2026, 7, 23), help="last day, YYYY-MM-DD")
    bt.add_argument("--out", default="backtest-out", help="directory for report.md, report.json, charts")
    bt.add_argument("--data", help="directory of history files (default: market.data_dir or SPX_BOT_DATA)")
    bt.add_argument("--sweep", action="store_true", help="also sweep the hedge size (cost against drawdown cut)")
    bt.add_argument("--workers", type=parse_workers, help="processes for the variants or seeds (default: the cores)")
    bt.add_argument("--commissions", choices=("ib", "flat"),
                    help="IB's tiered schedule plus fees, or flat (default: sim.commissions, what the daemon charges)")
    seeds = bt.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=parse_seeds, metavar="N",
                       help="intraday paths: sim.seed and the N-1 after it (default: bot.backtest.seeds.DEFAULT_SEEDS, "
                            "10); the report gives each headline figure's median and range")
    seeds.add_argument("--seed-list", type=parse_seed_list, metavar="S,S,...", help="these seeds instead, e.g. 7,8,9")
    bar = bt.add_mutually_exclusive_group()
    bar.add_argument("--progress", action="store_true", help="a progress bar on stderr even when it is not a terminal")
    bar.add_argument("--no-progress", action="store_true", help="no progress bar (default: one when stderr is a terminal)")
    bt.set_defaults(func=cmd_backtest)

    ex = sub.add_parser("export", help="write fills, orders, condors and hedge lots as CSV and JSON (read-only)")
    ex.add_argument("--config", default=default_cfg, help=cfg_help + "; its bot.store_path is read")
    ex.add_argument("--out", required=True, help="directory for fills/orders/condors/hedge_lots .csv and .json")
    ex.add_argument("--from", dest="start", type=parse_date, help="first session day, YYYY-MM-DD (New York)")
    ex.add_argument("--to", dest="end", type=parse_date, help="last session day, YYYY-MM-DD (inclusive)")
    ex.set_defaults(func=cmd_export)

    rp = sub.add_parser("report", help="the bot's own trading as the backtest's report, beside a backtest")
    rp.add_argument("--config", default=default_cfg, help=cfg_help + "; its bot.store_path is read")
    rp.add_argument("--from", dest="start", type=parse_date, required=True, help="first day, YYYY-MM-DD")
    rp.add_argument("--to", dest="end", type=parse_date, required=True, help="last day, YYYY-MM-DD")
    rp.add_argument("--out", required=True, help="directory for report.md, report.json, charts")
    rp.add_argument("--data", help="directory of history files (default: market.data_dir or SPX_BOT_DATA)")
    rp.add_argument("--commissions", choices=("ib", "flat"), default=None,
                    help="the backtest's commissions: IB's tiered schedule plus fees, or flat "
                         "sim.commission_per_contract (default: sim.commissions, what the daemon charges)")
    rp.set_defaults(func=cmd_report)

    dt = sub.add_parser("data", help="check or fetch the daily history files")
    dt.add_argument("action", choices=("check", "fetch"), help="check: validate the files; fetch: download them")
    dt.add_argument("dir", nargs="?", help="the data directory (default: market.data_dir or SPX_BOT_DATA)")
    dt.add_argument("--config", default=default_cfg, help=cfg_help)
    dt.add_argument("--source", choices=("cboe", "ib"), default="cboe", help="where `fetch` downloads from")
    dt.set_defaults(func=cmd_data)

    rp = sub.add_parser("replicate", help="run Cboe's CNDR or PUT rules on the simulator's SPX prices, against the real index")
    rp.add_argument("index", choices=("cndr", "put"), help="cndr: S&P 500 Iron Condor; put: S&P 500 PutWrite")
    rp.add_argument("--from", dest="start", type=parse_date, default=date(2007, 1, 3), help="first day, YYYY-MM-DD")
    rp.add_argument("--to", dest="end", type=parse_date, default=date(2026, 7, 31), help="last day, YYYY-MM-DD")
    rp.add_argument("--out", default="replication-out", help="directory for replication.csv/.json/.png")
    rp.add_argument("--entry", choices=("midday", "close", "open"), default="midday",
                    help="price a roll's new options in Cboe's 11:30-12:00 window (default), at the close or the open")
    rp.add_argument("--data", help="history + cboe_*_daily.csv (default: SPX_BOT_DATA, else ../shared/data)")
    rp.set_defaults(func=cmd_replicate)

    cb = sub.add_parser("calibrate", help="fit the SPX surface to Cboe's CNDR and PUT and write it (README: Calibration)")
    cb.add_argument("--out", required=True, help="the surface file to write (JSON; bot/params/surface.json ships)")
    cb.add_argument("--from", dest="start", type=parse_date, default=date(2007, 1, 3), help="first day, YYYY-MM-DD")
    cb.add_argument("--to", dest="end", type=parse_date, default=date(2026, 7, 31), help="last day, YYYY-MM-DD")
    cb.add_argument("--data", help="history + cboe_*_daily.csv (default: SPX_BOT_DATA, else ../shared/data)")
    cb.add_argument("--start-surface", metavar="FILE", help="start the search here (default: the pre-calibration model)")
    cb.add_argument("--max-evals", type=int, default=900, help="objective evaluations (default 900; the same count "
                                                                 "gives the same file on any machine)")
    cb.add_argument("--max-seconds", type=float, help="also stop searching after this long (default: no limit)")
    cb.add_argument("--no-progress", action="store_true", help="no progress bar")
    cb.set_defaults(func=cmd_calibrate)

    q = sub.add_parser("quote", help="the simulator's quote (bid, ask, mid, iv, delta) of an option at a past moment")
    q.add_argument("--at", help="New York time YYYY-MM-DDTHH:MM (a date alone: its 16:00 close)")
    q.add_argument("--symbol", type=str.upper, choices=("SPX", "SPXW", "VIX", "VIXW"), help="trading class")
    q.add_argument("--expiry", type=parse_date, help="expiry date YYYY-MM-DD")
    q.add_argument("--strike", help="strike, e.g. 2400")
    q.add_argument("--right", type=str.upper, choices=("P", "C"), help="P or C")
    q.add_argument("--batch", metavar="IN.csv", help="quote every row of a CSV (at,symbol,expiry,strike,right)")
    q.add_argument("--out", metavar="OUT.csv", help="with --batch: where to write the quotes (default: stdout)")
    q.add_argument("--seed", type=_parse_seed, default=7, help="seed of the intraday path (default 7, as sim.seed)")
    q.add_argument("--json", action="store_true", help="one quote as JSON")
    q.add_argument("--data", help="history files (default: SPX_BOT_DATA, else ../shared/data)")
    q.set_defaults(func=cmd_quote)

    g = sub.add_parser("logs", help="print the JSON log readably")
    g.add_argument("--config", help=which + "; its bot.log_path is read")
    g.add_argument("--path", help="a log file to read instead of the config's")
    g.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (across rotation)")
    g.add_argument("--event", help="only events matching this glob, e.g. 'condor.*'")
    g.set_defaults(func=cmd_logs)

    for priced in (r, w, bt, rp, q, sub.choices["report"]):  # every command that prices SPX options
        priced.add_argument("--surface", metavar="FILE",
                            help="SPX surface file (default: sim.surface, else the shipped fit)")

    sh = sub.add_parser("completion", help="print a shell completion script",
                        description="e.g. spx-bot completion bash > /etc/bash_completion.d/spx-bot")
    sh.add_argument("shell", choices=("bash", "zsh", "tcsh"), help="the shell to complete for")
    sh.set_defaults(func=lambda a: cmd_completion(a, p))
    return p


def cmd_completion(args, parser) -> int:
    import shtab

    print(shtab.complete(parser, shell=args.shell))
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spx-bot")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    global _surface_from_cli
    args = build_parser().parse_args(argv)
    try:
        _surface_from_cli = bool(getattr(args, "surface", None))
        if _surface_from_cli:
            _use_surface(args.surface)
        return args.func(args)
    except UserError as e:
        print(f"spx-bot: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `spx-bot status | head`: the reader left; what is unread is not an error. Point stdout
        # at /dev/null so that the interpreter's final flush does not raise again.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
