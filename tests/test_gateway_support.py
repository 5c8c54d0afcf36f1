"""Fixtures and helpers shared by the simulated-gateway tests (no tests here).

- `ib_errors`: collects every ERROR logged by the clients (loggers ib_async* / ib_insync*:
  decoders, wrappers, clients) and fails the test at teardown unless the test declared the
  error expected with `ib_errors.allow("Error 202", ...)`. The decoders swallow decode errors
  and only log them, so this is what proves every message is well formed.
- `lib`: the client library under test, ib_async and ib_insync.
- `make_sim` / `sim`: a SimExchange over a seeded SyntheticMarket on a temporary file, a
  SimClock at 60x from 2022-03-01 15:00 New York (inside the session), a SimGateway on a free
  port of 127.0.0.1; closed at teardown.
- `connect`: connects clients to the gateway and disconnects them before it closes.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest

from bot.calendar import TradingCalendar, ny_time
from bot.clock import SimClock
from bot.sim.exchange import ExchangeSettings, SimExchange
from bot.sim.gateway import SimGateway
from bot.sim.market import SyntheticMarket

START = date(2022, 3, 1)  # a Tuesday
EXPIRY = date(2022, 3, 2)  # the 1-DTE SPXW expiry
SPEED = 60.0  # one simulated minute per real second: the session stays open for the tests


class IbErrorLog(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.allowed: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in ("ib_async", "ib_insync"):
            self.records.append(record)

    def allow(self, *fragments: str) -> None:
        self.allowed.extend(fragments)

    def unexpected(self) -> list[logging.LogRecord]:
        return [r for r in self.records if not any(f in r.getMessage() for f in self.allowed)]

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture
def ib_errors():
    handler = IbErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
    bad = handler.unexpected()
    assert not bad, "client logged errors:\n" + "\n".join(f"{r.name}: {r.getMessage()}" for r in bad)


@pytest.fixture(params=["ib_async", "ib_insync"])
def lib(request):
    return importlib.import_module(request.param)


@dataclass
class Sim:
    gateway: SimGateway
    exchange: SimExchange
    clock: SimClock
    market: SyntheticMarket
    calendar: TradingCalendar
    path: Path

    @property
    def port(self) -> int:
        return self.gateway.port

    @property
    def scenario(self):
        return self.gateway.scenario

    def spot(self) -> float:
        return self.market.state_at(self.clock.now()).spx


@pytest.fixture
async def make_sim(calendar, short_tmp):
    made: list[Sim] = []

    async def make(start_time: str = "15:00", speed: float = SPEED, path: Path | None = None, **gw_kwargs) -> Sim:
        market = SyntheticMarket(calendar, seed=3, start=START - timedelta(days=5), vix0=24.0)
        state = path or short_tmp / "sim.sqlite"
        exchange = SimExchange(market, calendar, ExchangeSettings(), state)
        clock = SimClock(ny_time(START, start_time), speed)
        gateway = SimGateway(exchange, clock, calendar, port=0, **gw_kwargs)
        await gateway.start()
        sim = Sim(gateway, exchange, clock, market, calendar, state)
        made.append(sim)
        return sim

    yield make
    for sim in made:
        await sim.gateway.close()
        sim.exchange.close()


@pytest.fixture
async def sim(make_sim):
    return await make_sim()


@pytest.fixture
async def connect(ib_errors, lib, make_sim):
    """connect(sim, client_id=7) -> a connected IB of the library under test."""
    made = []

    async def _connect(sim: Sim, client_id: int = 7, timeout: float = 5.0):
        ib = lib.IB()
        made.append(ib)
        await ib.connectAsync("127.0.0.1", sim.port, clientId=client_id, timeout=timeout)
        return ib

    yield _connect
    for ib in made:
        if ib.isConnected():
            ib.disconnect()
    await asyncio.sleep(0.05)  # let the gateway see the EOFs before it closes


async def wait_for(predicate, timeout: float = 5.0, what: str = "condition"):
    """Poll `predicate` until it is truthy; fail with `what` after `timeout` real seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def strike(x: float) -> int:
    return int(round(x / 5.0) * 5)


async def condor(ib, lib, sim: Sim, width: int = 25, distance: float = 0.015):
    """A qualified 1-DTE SPXW iron condor as a BAG (sell put, buy lower put, sell call, buy
    higher call) and its four leg contracts."""
    s = sim.spot()
    ps, cs = strike(s * (1 - distance)), strike(s * (1 + distance))
    exp = f"{EXPIRY:%Y%m%d}"
    legs = [
        lib.Option("SPX", exp, ps, "P", "SMART", tradingClass="SPXW"),
        lib.Option("SPX", exp, ps - width, "P", "SMART", tradingClass="SPXW"),
        lib.Option("SPX", exp, cs, "C", "SMART", tradingClass="SPXW"),
        lib.Option("SPX", exp, cs + width, "C", "SMART", tradingClass="SPXW"),
    ]
    await ib.qualifyContractsAsync(*legs)
    assert all(c.conId for c in legs)
    actions = ["SELL", "BUY", "SELL", "BUY"]
    combo = lib.Bag(symbol="SPX", exchange="SMART", currency="USD", comboLegs=[
        lib.ComboLeg(conId=c.conId, ratio=1, action=a, exchange="SMART") for c, a in zip(legs, actions)
    ])
    return combo, legs


def up_to_tick(x: float, tick: float = 0.05) -> float:
    return round(math.ceil(round(x / tick, 6)) * tick, 2)


def down_to_tick(x: float, tick: float = 0.05) -> float:
    return round(math.floor(round(x / tick, 6)) * tick, 2)


async def combo_quote(ib, combo) -> tuple[float, float]:
    [ticker] = await ib.reqTickersAsync(combo)
    assert ticker.bid == ticker.bid and ticker.ask == ticker.ask, "combo quote missing"
    return ticker.bid, ticker.ask


async def marketable_buy(ib, combo) -> float:
    """A BUY limit at (or beyond) the combo's natural price: it fills at once."""
    _, ask = await combo_quote(ib, combo)
    return up_to_tick(ask + 0.10)


async def resting_buy(ib, combo) -> float:
    """A BUY limit far below the bid: it stays working."""
    bid, _ = await combo_quote(ib, combo)
    return down_to_tick(bid - 2.0)
