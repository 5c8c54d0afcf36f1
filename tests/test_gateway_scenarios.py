"""Fault injection and the less common paths of the simulated gateway (docs/FAILURES.md):
partial fills, a cancel that loses the race (10148), held and delayed fills, leg-by-leg
reports, orders placed while the market is closed, DAY orders expiring at the close, a
gateway restart, lost connectivity (1100/1101/1102), a broken data farm, single-leg orders and
their sign convention, tick-size rejection (110), market orders, delayed data, VX futures."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from test_gateway_support import (  # noqa: F401 - fixtures
    EXPIRY,
    condor,
    connect,
    ib_errors,
    lib,
    make_sim,
    marketable_buy,
    resting_buy,
    sim,
    strike,
    wait_for,
)

from bot.domain import OrderStatus
from bot.sim.gateway import SimGateway


@pytest.fixture(params=["ib_async"])
def lib(request):  # noqa: F811 - these paths are client-independent: one client is enough
    import importlib

    return importlib.import_module(request.param)


async def test_partial_fill_then_the_rest(sim, connect, lib):
    ib = await connect(sim)
    combo, _ = await condor(ib, lib, sim)
    sim.scenario.partial_next(1, rest_after=30)  # the other 2 reach the exchange 30 sim s later
    trade = ib.placeOrder(combo, lib.LimitOrder("BUY", 3, await marketable_buy(ib, combo) + 0.5, orderRef="ic-part"))
    await wait_for(lambda: trade.orderStatus.filled == 1, what="the first part")
    assert trade.orderStatus.status == "Submitted" and trade.orderStatus.remaining == 2
    await wait_for(lambda: trade.orderStatus.status == "Filled", what="the rest", timeout=5)
    assert trade.orderStatus.filled == 3 and trade.filled() == 3
    assert sorted(p.quantity for p in sim.exchange.positions()) == [-3, -3, 3, 3]


async def test_cancel_that_loses_the_race_is_refused_10148(sim, connect, lib, ib_errors):
    ib_errors.allow("10148")
    ib = await connect(sim)
    combo, _ = await condor(ib, lib, sim)
    trade = ib.placeOrder(combo, lib.LimitOrder("BUY", 1, await resting_buy(ib, combo), orderRef="ic-race"))
    await wait_for(lambda: trade.orderStatus.status == "Submitted", what="ack")
    codes = []
    ib.errorEvent += lambda req_id, code, text, contract: codes.append(code)
    sim.scenario.fill_on_cancel()
    ib.cancelOrder(trade.order)
    await wait_for(lambda: 10148 in codes, what="10148")
    await wait_for(lambda: trade.orderStatus.status == "Filled", what="the fill that won")
    assert trade.orderStatus.avgFillPrice == pytest.approx(trade.order.lmtPrice)  # at its limit
    assert sim.exchange.order("ic-race").status is OrderStatus.FILLED


async def test_held_fills_are_released(sim, connect, lib):
    ib = await connect(sim)
    combo, _ = await condor(ib, lib, sim)
    sim.scenario.hold_fills()
    trade = ib.placeOrder(combo, lib.LimitOrder("BUY", 1, await marketable_buy(ib, combo), orderRef="ic-held"))
    await wait_for(lambda: trade.orderStatus.status == "PreSubmitted", what="ack")
    await asyncio.sleep(0.2)
    assert trade.orderStatus.status == "PreSubmitted" and sim.exchange.order("ic-held") is None
    sim.scenario.release_fills()
    await wait_for(lambda: trade.orderStatus.status == "Filled", what="fill after release")


async def test_delayed_fills_and_legs_reported_one_by_one(sim, connect, lib):
    ib = await connect(sim)
    combo, _ = await condor(ib, lib, sim)
    sim.scenario.delay_fills(20)  # simulated seconds: a third of a real second at 60x
    sim.scenario.stagger_legs(0.1)
    trade = ib.placeOrder(combo, lib.LimitOrder("BUY", 1, await marketable_buy(ib, combo) + 0.5, orderRef="ic-slow"))
    await wait_for(lambda: trade.orderStatus.status == "PreSubmitted", what="ack")
    seen = set()
    for _ in range(200):
        seen.add(len(trade.fills))
        if trade.orderStatus.status == "Filled":
            break
        await asyncio.sleep(0.01)
    assert trade.orderStatus.status == "Filled" and len(trade.fills) == 5
    assert {1, 2, 3} & seen  # executions arrived one by one, not all at once


async def test_order_placed_before_the_open_waits_for_it(make_sim, connect, lib, ib_errors):
    sim = await make_sim(start_time="09:29:00")  # one real second before the open: room for a loaded machine
    ib = await connect(sim)
    combo, _ = await condor(ib, lib, sim)
    codes = []
    ib.errorEvent += lambda req_id, code, text, contract: codes.append(code)
    trade = ib.placeOrder(combo, lib.LimitOrder("BUY", 1, 0.5, orderRef="ic-early"))  # a generous debit
    await wait_for(lambda: 399 in codes, what="the 'not until the open' warning")
    await wait_for(lambda: trade.orderStatus.status == "Filled", what="the fill after the open", timeout=15)
    assert sim.exchange.order("ic-early").status is OrderStatus.FILLED


async def test_day_order_expires_at_the_close(make_sim, connect, lib):
    sim = await make_sim(start_time="15:59:45")
    ib = await connect(sim)
    combo, _ = await condor(ib, lib, sim)
    trade = ib.placeOrder(combo, lib.LimitOrder("BUY", 1, await resting_buy(ib, combo), orderRef="ic-day"))
    await wait_for(lambda: trade.orderStatus.status == "Cancelled", what="expiry at the close", timeout=5)
    assert sim.exchange.order("ic-day").status is OrderStatus.CANCELLED


async def test_orders_survive_a_gateway_restart_but_untransmitted_ones_vanish(sim, connect, lib):
    ib = await connect(sim)
    combo, _ = await condor(ib, lib, sim)
    limit = await resting_buy(ib, combo)
    kept = ib.placeOrder(combo, lib.LimitOrder("BUY", 1, limit, orderRef="ic-live"))
    parked = ib.placeOrder(combo, lib.LimitOrder("BUY", 1, limit, orderRef="ic-parked", transmit=False))
    await wait_for(lambda: kept.orderStatus.status == "Submitted" and parked.orderStatus.status == "PreSubmitted",
                   what="acks")
    ib.disconnect()
    await asyncio.sleep(0.05)
    await sim.gateway.close()
    await sim.gateway.close()  # idempotent
    sim.gateway = SimGateway(sim.exchange, sim.clock, sim.calendar, port=0)
    await sim.gateway.start()
    back = await connect(sim)
    refs = {t.order.orderRef: t.orderStatus.status for t in back.openTrades()}
    assert refs == {"ic-live": "Submitted"}


async def test_connectivity_lost_then_restored(sim, connect, lib, ib_errors):
    ib_errors.allow("Error 1100", "Error 1101", "Error 1102")
    ib = await connect(sim)
    combo, _ = await condor(ib, lib, sim)
    codes = []
    ib.errorEvent += lambda req_id, code, text, contract: codes.append(code)
    limit = await resting_buy(ib, combo)
    sim.scenario.connectivity_lost()
    trade = ib.placeOrder(combo, lib.LimitOrder("BUY", 1, limit, orderRef="ic-gap"))
    await wait_for(lambda: trade.orderStatus.status == "PreSubmitted", what="TWS's local acknowledgement")
    await asyncio.sleep(0.1)
    assert sim.exchange.order("ic-gap") is None  # IB has not got it
    sim.scenario.connectivity_restored(data_lost=False)
    await wait_for(lambda: 1102 in codes, what="1102")
    assert codes[:1] == [1100]
    await wait_for(lambda: trade.orderStatus.status == "Submitted", what="the order to reach IB")
    assert sim.exchange.order("ic-gap").status is OrderStatus.WORKING
    assert [t.order.orderRef for t in await ib.reqOpenOrdersAsync()] == ["ic-gap"]


async def test_broken_data_farm_stops_ticks(sim, connect, lib, ib_errors):
    ib = await connect(sim)
    spx = lib.Index("SPX", "CBOE")
    await ib.qualifyContractsAsync(spx)
    codes = []
    ib.errorEvent += lambda req_id, code, text, contract: codes.append(code)
    sim.scenario.farm_broken()
    ticker = ib.reqMktData(spx)
    await wait_for(lambda: 2103 in codes, what="2103")
    await asyncio.sleep(0.3)
    assert ticker.last != ticker.last  # nan: no data
    sim.scenario.farm_ok()
    await wait_for(lambda: ticker.last == ticker.last, what="ticks after 2104")
    assert 2104 in codes


async def test_single_leg_sell_and_sign_convention(sim, connect, lib):
    ib = await connect(sim)
    put = lib.Option("SPX", f"{EXPIRY:%Y%m%d}", strike(sim.spot() * 0.99), "P", "SMART", tradingClass="SPXW")
    await ib.qualifyContractsAsync(put)
    [ticker] = await ib.reqTickersAsync(put)
    trade = ib.placeOrder(put, lib.MarketOrder("SELL", 2, orderRef="put-sell"))
    await wait_for(lambda: trade.orderStatus.status == "Filled", what="market sell")
    assert trade.orderStatus.avgFillPrice == pytest.approx(ticker.bid)  # a sale at the bid: positive
    [fill] = trade.fills
    assert fill.execution.side == "SLD" and fill.execution.shares == 2
    await wait_for(lambda: [p.position for p in ib.positions()] == [-2], what="short position")


async def test_single_leg_limit_off_the_tick_grid_is_110(sim, connect, lib, ib_errors):
    ib_errors.allow("Error 110")
    ib = await connect(sim)
    put = lib.Option("SPX", f"{EXPIRY:%Y%m%d}", strike(sim.spot()), "P", "SMART", tradingClass="SPXW")
    await ib.qualifyContractsAsync(put)
    trade = ib.placeOrder(put, lib.LimitOrder("BUY", 1, 3.05, orderRef="put-110"))  # $3 and up: 0.10 ticks
    await wait_for(lambda: trade.orderStatus.status == "Cancelled", what="the 110 rejection")
    assert sim.exchange.order("put-110") is None


async def test_delayed_market_data(sim, connect, lib):
    ib = await connect(sim)
    spx = lib.Index("SPX", "CBOE")
    await ib.qualifyContractsAsync(spx)
    ib.reqMarketDataType(3)
    ticker = ib.reqMktData(spx)
    await wait_for(lambda: ticker.last == ticker.last, what="delayed ticks")
    assert ticker.marketDataType == 3
    fifteen_ago = sim.market.state_at(sim.clock.now() - timedelta(minutes=15)).spx
    assert ticker.last == pytest.approx(fifteen_ago, abs=0.01)


async def test_vx_futures_and_vix_options(sim, connect, lib, ib_errors):
    ib_errors.allow("Error 200")
    ib = await connect(sim)
    futures = await ib.reqContractDetailsAsync(lib.Future("VIX", exchange="CFE"))
    assert len(futures) >= 2
    front = futures[0].contract
    assert front.secType == "FUT" and front.multiplier == "1000" and front.localSymbol.startswith("VX")
    [ticker] = await ib.reqTickersAsync(front)
    assert 0 < ticker.bid < ticker.ask
    vix_call = lib.Option("VIX", front.lastTradeDateOrContractMonth, 25, "C", "SMART", tradingClass="VIX")
    details = await ib.reqContractDetailsAsync(vix_call)
    # listed only when the exchange prices VIX options; error 200 until then
    assert len(details) == (1 if sim.gateway.listing.vix_options_supported() else 0)


async def test_account_summary_and_executions_filter(sim, connect, lib):
    ib = await connect(sim)
    summary = {v.tag: v.value for v in await ib.accountSummaryAsync()}
    assert float(summary["NetLiquidation"]) == pytest.approx(1_000_000.0)
    combo, _ = await condor(ib, lib, sim)
    trade = ib.placeOrder(combo, lib.LimitOrder("BUY", 1, await marketable_buy(ib, combo), orderRef="ic-x"))
    await wait_for(lambda: trade.orderStatus.status == "Filled", what="fill")
    bag_only = await ib.reqExecutionsAsync(lib.ExecutionFilter(secType="BAG"))
    assert [f.contract.secType for f in bag_only] == ["BAG"]
    others = await ib.reqExecutionsAsync(lib.ExecutionFilter(clientId=99))
    assert others == []
