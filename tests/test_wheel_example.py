"""examples/wheel.py against the simulated gateway with ib_async: a SPY put sold on an expiry
Friday before the close, assigned at the close (100 shares at the strike, executions from no
order, zero commission, the cash paying the strike), a covered call sold at Monday's open.

Time is a manual SimClock that this test moves only when the example waits for the market:
to just after Friday's close once the put is sold, to just after Monday's open once the shares
are there and the example has looked at them. Everything the example does in between happens
at one simulated instant."""

from __future__ import annotations

import asyncio
import importlib.util
from datetime import date, timedelta
from pathlib import Path

import ib_async
import pytest
from test_gateway_support import ib_errors  # noqa: F401 - fixture

from bot.calendar import ny_time
from bot.clock import SimClock
from bot.sim.exchange import ExchangeSettings, SimExchange
from bot.sim.gateway import SimGateway
from bot.sim.market import SyntheticMarket

FRIDAY = date(2022, 3, 4)  # a weekly SPY expiry
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "wheel.py"


def load_example():
    spec = importlib.util.spec_from_file_location("wheel_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def move_time(exchange: SimExchange, clock: SimClock, calendar, lines: list[str], stop: asyncio.Event) -> None:
    """Friday's close once a short SPY put is held; Monday's open once the example has looked
    at its shares (IB answers executions of today only: Friday's assignment is gone Monday)."""
    close = calendar.open_close(FRIDAY)[1]
    monday_open = calendar.open_close(calendar.next_session(FRIDAY))[0]
    while not stop.is_set():
        held = {p.option.key: p.quantity for p in exchange.positions()}
        now = clock.now()
        if now < close and any(k.startswith("SPY ") and k.endswith(" P") and q < 0 for k, q in held.items()):
            await clock.advance_to(close + timedelta(minutes=1))
        elif now < monday_open and held.get("STK SPY", 0) >= 100 and any(x.startswith("position:") for x in lines):
            await clock.advance_to(monday_open + timedelta(minutes=1))
        await asyncio.sleep(0.05)


@pytest.fixture
async def friday_sim(calendar, short_tmp):
    market = SyntheticMarket(calendar, seed=3, start=FRIDAY - timedelta(days=8), vix0=20.0)
    exchange = SimExchange(market, calendar, ExchangeSettings(), short_tmp / "wheel.sqlite")
    clock = SimClock(ny_time(FRIDAY, "15:30"), None)
    gateway = SimGateway(exchange, clock, calendar, port=0)
    await gateway.start()
    yield exchange, clock, gateway
    await gateway.close()
    exchange.close()


async def test_wheel_sells_a_put_is_assigned_and_sells_a_covered_call(friday_sim, calendar, ib_errors):
    exchange, clock, gateway = friday_sim
    wheel = load_example()
    stop = asyncio.Event()
    lines: list[str] = []
    driver = asyncio.create_task(move_time(exchange, clock, calendar, lines, stop))
    ib = ib_async.IB()
    try:
        await ib.connectAsync("127.0.0.1", gateway.port, clientId=8, timeout=5)
        seen = await asyncio.wait_for(wheel.wheel(ib, ib_async, timeout=20, say=lines.append), 60)
    finally:
        stop.set()
        await driver
        ib.disconnect()
        await asyncio.sleep(0.05)
    print("\n".join(lines))

    put, sold = seen["put"]
    assert put.lastTradeDateOrContractMonth == f"{FRIDAY:%Y%m%d}"
    assert sold.execution.side == "SLD" and sold.execution.shares == 1 and sold.execution.exchange == "CBOE"
    assert sold.commissionReport.commission == pytest.approx(1.058)  # IB's $1 minimum + ORF + OCC (ETF option)
    premium = sold.execution.price

    # the assignment: the option closed at 0, the shares bought at the strike, no order, no commission
    by_type = {f.contract.secType: f for f in seen["assigned"]}
    assert set(by_type) == {"OPT", "STK"}
    opt, stk = by_type["OPT"], by_type["STK"]
    assert opt.contract.conId == put.conId and opt.execution.side == "BOT" and opt.execution.price == 0.0
    assert stk.execution.side == "BOT" and stk.execution.shares == 100 and stk.execution.price == put.strike
    for f in (opt, stk):
        assert f.execution.orderId == 0 and f.execution.permId == 0 and f.execution.orderRef == "assignment"
        assert f.commissionReport.commission == 0.0
    assert seen["shares"].position == 100 and seen["shares"].avgCost == pytest.approx(put.strike)
    before, after = seen["cash"]
    # and the T-bill interest booked at Friday's close (through Monday)
    assert after == pytest.approx(before + 100 * premium - 1.058 - 100 * put.strike + float(exchange.interest), abs=0.01)

    # the covered call: next expiry, strike above the shares' cost, sold at Monday's open
    call, sold_call = seen["call"]
    assert call.right == "C" and call.strike > put.strike and call.lastTradeDateOrContractMonth > f"{FRIDAY:%Y%m%d}"
    assert sold_call.execution.side == "SLD" and sold_call.commissionReport.commission == pytest.approx(1.058)
    assert sold_call.execution.time.date() == calendar.next_session(FRIDAY)
    held = {(p.contract.secType, p.contract.conId): p.position for p in seen["positions"]}
    assert held == {("STK", 756733): 100, ("OPT", call.conId): -1}

    # the account agrees: covered, the call needs no margin of its own (Reg T 50% of the shares)
    spy_value = exchange.price_options([p.option for p in exchange.positions()], clock.now())["STK SPY"].mid
    values = {k: float(v) for k, v, cur in gateway.services.account_values(clock.now()) if cur == "USD" and k != "Currency"}
    assert values["InitMarginReq"] == pytest.approx(0.5 * 100 * float(spy_value), rel=1e-6)
    assert values["MaintMarginReq"] == pytest.approx(0.25 * 100 * float(spy_value), rel=1e-6)
    assert any(line.startswith("assignment: BOT 100 SPY at") for line in lines)
