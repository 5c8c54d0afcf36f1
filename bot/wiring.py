"""Wiring: the simulated exchange, the brokers and the engine for a config, built in one place.

The CLI (`spx-bot run`, `kill`), the parity check (bot/backtest/parity.py) and the benchmarks
(bench/engine.py, bench/latency.py) build what they run here, so a setting added to the
exchange or the broker reaches all of them at once.

- `exchange_settings` / `open_exchange`: the simulated paper account of `sim.*`;
- `ib_broker`: IBBroker on `broker.*` (a real gateway), on the embedded simulated gateway
  (`gateway_port`), or with the kill switch's own client id (`kill`);
- `SimDaemon` / `sim_daemon`: the daemon as `spx-bot run --speed max` wires it (SimClock "max",
  the exchange on `sim.state_path`, Store, SimBroker, Engine), run to its end.

The engine checks the broker's optional live capabilities once, when it is built
(`bot.broker.base.live_feed`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from bot.broker.ib import IBBroker
from bot.broker.sim import SimBroker
from bot.calendar import TradingCalendar
from bot.clock import SimClock
from bot.config import Config
from bot.engine import Engine
from bot.log import get_logger, setup_logging
from bot.sim.exchange import ExchangeSettings, SimExchange
from bot.sim.market import MarketModel
from bot.store import Store


def exchange_settings(cfg: Config) -> ExchangeSettings:
    s = cfg.sim
    return ExchangeSettings(s.account, s.starting_cash, s.commission_per_contract, s.fill_fraction, s.commissions)


def open_exchange(cfg: Config, calendar: TradingCalendar | None, market: MarketModel | None = None) -> SimExchange:
    """The simulated paper account (its SQLite file at `sim.state_path`; ":memory:" allowed)."""
    return SimExchange(market, calendar, exchange_settings(cfg), cfg.sim.state_path)


def ib_broker(cfg: Config, log=None, clock=None, *, gateway_port: int | None = None, kill: bool = False) -> IBBroker:
    """IBBroker for `broker.*`; on the embedded simulated gateway with `gateway_port` (loopback,
    the gateway's own account); with `kill`, the kill switch's client id and no reconnect."""
    b = cfg.broker
    host, port, account = ("127.0.0.1", gateway_port, "") if gateway_port is not None else (b.host, b.port, b.account)
    if kill:
        return IBBroker(host, port, b.kill_client_id, timeout=b.connect_timeout_s, account=account, reconnect=False,
                        log=log)
    return IBBroker(host, port, b.client_id, timeout=b.connect_timeout_s, account=account,
                    market_data_type=b.market_data_type, max_messages_per_s=b.max_messages_per_s, log=log, clock=clock,
                    market_data_lines=b.market_data_lines)


@dataclass
class SimDaemon:
    """The daemon on the in-process simulated exchange, as `spx-bot run --speed max` runs it."""

    cfg: Config
    calendar: TradingCalendar
    clock: SimClock
    exchange: SimExchange
    store: Store
    broker: SimBroker
    engine: Engine
    log: object

    async def run(self) -> str:
        """Start, run until the engine ends (`until` passed and the book flat), shut down."""
        reason = "stopped"
        try:
            if await self.engine.start():
                reason = await self.engine.run()
        finally:
            await self.engine.shutdown()
            self.log.info("bot.stopped", reason=reason, sim_time=self.clock.now().isoformat())
        return reason

    def close(self) -> None:
        self.store.close()
        self.exchange.close()


def sim_daemon(cfg: Config, calendar: TradingCalendar, market: MarketModel, start: datetime,
               until: datetime | None, run_id: str | None = None) -> SimDaemon:
    """Wire the daemon on a simulated clock that jumps from event to event ("max"), logging
    to `bot.log_path` with the simulated time."""
    exchange = open_exchange(cfg, calendar, market)
    clock = SimClock(start, "max")
    setup_logging(cfg.bot.log_path, cfg.bot.log_level, console=cfg.bot.console_log, clock=clock,
                  bind={"run_id": run_id or uuid.uuid4().hex[:12]})
    log = get_logger("bot")
    store = Store(cfg.bot.store_path)
    broker = SimBroker(exchange, clock)
    engine = Engine(cfg, clock, calendar, broker, store, log, until=until, next_price=market.next_step_time)
    return SimDaemon(cfg, calendar, clock, exchange, store, broker, engine, log)
