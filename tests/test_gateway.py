"""The simulated IB paper gateway end to end, with unmodified ib_async AND ib_insync clients in
the same event loop: connect and startup sync, contracts, quotes with greeks, a 4-leg iron
condor BAG that fills (executions, commissions, positions), state seen by the next client,
what-if margin, cancel and global cancel, historical bars, errors 200 / 326 / 201 and a
dropped connection. Every test fails on any ERROR the clients log (decode errors included)
unless the test expects that error (`ib_errors.allow`)."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta, timezone

import pytest
from test_gateway_support import (  # noqa: F401 - fixtures
    EXPIRY,
    START,
    condor,
    connect,
    ib_errors,
    lib,
    make_sim,
    marketable_buy,
    resting_buy,
    sim,
    wait_for,
)

from bot.calendar import ny_time
from bot.domain import OrderStatus

UTC = timezone.utc


async def test_connect_performs_the_startup_sync(sim, connect):
    loop = asyncio.get_running_loop()
    started = loop.time()
    ib = await connect(sim, client_id=7)
    assert loop.time() - started < 2.0  # every end message came: no sync request timed out
    assert ib.managedAccounts() == ["DU0000001"]
    assert ib.positions() == [] and ib.openTrades() == []
    values = {v.tag: v.value for v in ib.accountValues() if v.currency in ("USD", "")}
    assert float(values["NetLiquidation"]) == pytest.approx(1_000_000.0)
    assert values["AccountCode"] == "DU0000001"
    now = await ib.reqCurrentTimeAsync()
    assert abs((now - sim.clock.now()).total_seconds()) < 120  # simulated time, not the wall


async def test_qualify_and_quote_with_greeks(sim, connect, lib):
    ib = await connect(sim)
    spx, vix = lib.Index("SPX", "CBOE"), lib.Index("VIX", "CBOE")
    await ib.qualifyContractsAsync(spx, vix)
    assert (spx.conId, vix.conId) == (416904, 13455763)
    k = int(round(sim.spot() * 0.98 / 5) * 5)
    put = lib.Option("SPX", f"{EXPIRY:%Y%m%d}", k, "P", "SMART", tradingClass="SPXW")
    await ib.qualifyContractsAsync(put)
    assert put.conId and put.multiplier == "100" and put.tradingClass == "SPXW"
    assert put.localSymbol == f"SPXW  {EXPIRY:%y%m%d}P{k * 1000:08d}"

    t_spx, t_put = await ib.reqTickersAsync(spx, put)  # snapshots end with tickSnapshotEnd
    assert t_spx.last == pytest.approx(sim.spot(), abs=50)
    assert 0 < t_put.bid < t_put.ask
    greeks = t_put.modelGreeks
    assert greeks is not None and -1 < greeks.delta < 0 and greeks.impliedVol > 0.05
    assert greeks.undPrice == pytest.approx(sim.spot(), abs=50) and greeks.gamma > 0

    streaming = ib.reqMktData(put)
    await wait_for(lambda: streaming.modelGreeks is not None and streaming.bid == streaming.bid, what="streaming quote")
    assert streaming.bidGreeks is not None and streaming.askGreeks is not None
    ib.cancelMktData(put)


async def test_iron_condor_bag_fills_with_executions_and_positions(sim, connect, lib):
    ib = await connect(sim)
    combo, legs = await condor(ib, lib, sim)
    limit = await marketable_buy(ib, combo)
    assert limit < 0  # buying an iron condor at a negative limit = a net credit
    trade = ib.placeOrder(combo, lib.LimitOrder("BUY", 2, limit, orderRef="ic-fill-1"))
    await wait_for(lambda: trade.orderStatus.status == "Filled", what="the condor to fill")
    assert trade.orderStatus.filled == 2 and trade.orderStatus.remaining == 0
    assert trade.orderStatus.avgFillPrice <= limit + 1e-9
    await wait_for(lambda: len(trade.fills) == 5, what="4 leg executions and the BAG line")

    bag_fills = [f for f in trade.fills if f.contract.secType == "BAG"]
    leg_fills = [f for f in trade.fills if f.contract.secType == "OPT"]
    assert len(bag_fills) == 1 and bag_fills[0].execution.shares == 2
    assert bag_fills[0].execution.price == pytest.approx(trade.orderStatus.avgFillPrice)
    assert trade.filled() == 2  # the client counts the BAG line only
    sides = {f.contract.conId: f.execution.side for f in leg_fills}
    assert sides == {legs[0].conId: "SLD", legs[1].conId: "BOT", legs[2].conId: "SLD", legs[3].conId: "BOT"}
    net = sum((1 if f.execution.side == "BOT" else -1) * f.execution.price for f in leg_fills)
    assert net == pytest.approx(trade.orderStatus.avgFillPrice, abs=1e-6)
    def leg_cost(price: float) -> float:
        """2 contracts x (IB's tiered $0.65 / $0.50 / $0.25 + Cboe's SPX fee $0.36 below a $1
        premium, $0.45 from $1 + ORF $0.033 + OCC $0.025), bot/sim/commissions.py"""
        ib = 0.65 if price >= 0.10 else 0.50 if price >= 0.05 else 0.25
        return 2 * (ib + (0.45 if price >= 1 else 0.36) + 0.058)

    await wait_for(lambda: all(f.commissionReport.commission == pytest.approx(leg_cost(f.execution.price))
                               for f in leg_fills), what="commission reports")
    assert all(f.execution.orderRef == "ic-fill-1" for f in trade.fills)
    # execution times are the simulated ones, correctly placed in time (US/Eastern labels)
    fill_time = leg_fills[0].execution.time
    assert fill_time.tzinfo is not None
    assert ny_time(START, "15:00") <= fill_time.astimezone(UTC) <= sim.clock.now()
    assert {f.execution.execId for f in ib.fills()} >= {f.execution.execId for f in trade.fills}

    await wait_for(lambda: len(ib.positions()) == 4, what="positions")
    held = {p.contract.conId: p.position for p in ib.positions()}
    assert held == {legs[0].conId: -2, legs[1].conId: 2, legs[2].conId: -2, legs[3].conId: 2}
    assert sorted(p.quantity for p in sim.exchange.positions()) == [-2, -2, 2, 2]


async def test_a_later_client_sees_positions_and_the_working_order(sim, connect, lib):
    first = await connect(sim, client_id=7)
    combo, _ = await condor(first, lib, sim)
    filled = first.placeOrder(combo, lib.LimitOrder("BUY", 1, await marketable_buy(first, combo), orderRef="ic-a"))
    await wait_for(lambda: filled.orderStatus.status == "Filled", what="fill")
    working = first.placeOrder(combo, lib.LimitOrder("BUY", 1, await resting_buy(first, combo), orderRef="ic-b"))
    await wait_for(lambda: working.orderStatus.status == "Submitted", what="ack")
    first.disconnect()
    await asyncio.sleep(0.05)

    second = await connect(sim, client_id=8)
    assert len(second.positions()) == 4  # from the startup sync
    everyone = await second.reqAllOpenOrdersAsync()
    found = [t for t in everyone if t.order.orderRef == "ic-b"]
    assert found and found[0].order.clientId == 7 and found[0].order.permId == working.order.permId
    assert found[0].contract.secType == "BAG" and len(found[0].contract.comboLegs) == 4
    assert any(f.execution.orderRef == "ic-a" for f in second.fills())  # today's executions
    done = await second.reqCompletedOrdersAsync(False)
    assert any(t.order.orderRef == "ic-a" and t.orderStatus.status == "Filled" for t in done)

    again = await connect(sim, client_id=7)  # the owner sees it as its own open order
    mine = [t for t in again.openTrades() if t.order.orderRef == "ic-b"]
    assert mine and mine[0].order.orderId == working.order.orderId
    assert mine[0].orderStatus.status == "Submitted"


async def test_what_if_returns_margin_and_places_nothing(sim, connect, lib):
    ib = await connect(sim)
    combo, _ = await condor(ib, lib, sim, width=25)
    state = await ib.whatIfOrderAsync(combo, lib.LimitOrder("BUY", 2, await marketable_buy(ib, combo)))
    change = float(state.initMarginChange)
    assert 0 < change <= 2 * 25 * 100  # max loss of two 25-wide condors, less the credit
    assert float(state.maintMarginAfter) == pytest.approx(change)
    assert ib.openTrades() == [] and sim.exchange.open_orders() == []


async def test_cancel_and_global_cancel(sim, connect, lib, ib_errors):
    ib_errors.allow("Error 202")  # ib_async logs IB's "Order Canceled" as an error
    ib = await connect(sim)
    combo, _ = await condor(ib, lib, sim)
    limit = await resting_buy(ib, combo)
    a = ib.placeOrder(combo, lib.LimitOrder("BUY", 1, limit, orderRef="ic-c1"))
    b = ib.placeOrder(combo, lib.LimitOrder("BUY", 1, limit, orderRef="ic-c2"))
    await wait_for(lambda: a.orderStatus.status == b.orderStatus.status == "Submitted", what="acks")
    assert len(sim.exchange.open_orders()) == 2

    ib.cancelOrder(a.order)
    await wait_for(lambda: a.orderStatus.status == "Cancelled", what="cancel")
    assert sim.exchange.order("ic-c1").status is OrderStatus.CANCELLED

    ib.reqGlobalCancel()
    await wait_for(lambda: b.orderStatus.status == "Cancelled", what="global cancel")
    assert sim.exchange.open_orders() == []
    await wait_for(lambda: ib.openTrades() == [], what="no open trades")


async def test_modify_a_working_order(sim, connect, lib):
    ib = await connect(sim)
    combo, _ = await condor(ib, lib, sim)
    order = lib.LimitOrder("BUY", 1, await resting_buy(ib, combo), orderRef="ic-walk")
    trade = ib.placeOrder(combo, order)
    await wait_for(lambda: trade.orderStatus.status == "Submitted", what="ack")
    order.lmtPrice = await marketable_buy(ib, combo)  # walk the price to natural
    ib.placeOrder(combo, order)
    await wait_for(lambda: trade.orderStatus.status == "Filled", what="fill after the modification")
    assert sim.exchange.order("ic-walk").status is OrderStatus.FILLED


async def test_historical_bars_for_the_indexes(sim, connect, lib):
    ib = await connect(sim)
    spx, vix = lib.Index("SPX", "CBOE"), lib.Index("VIX", "CBOE")
    await ib.qualifyContractsAsync(spx, vix)
    daily = await ib.reqHistoricalDataAsync(spx, "", "5 D", "1 day", "TRADES", True)
    assert [b.date for b in daily][-1] == START and all(isinstance(b.date, date) for b in daily)
    assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in daily)
    five = await ib.reqHistoricalDataAsync(vix, "", "1 D", "5 mins", "TRADES", True)
    assert five and all(b.date.tzinfo is not None for b in five)
    first = five[0].date.astimezone(ny_time(START, "09:30").tzinfo)
    assert first == ny_time(START, "09:30")  # labelled US/Eastern, at the open
    assert five[-1].date.astimezone(UTC) <= sim.clock.now()  # nothing from the future
    hourly = await ib.reqHistoricalDataAsync(spx, "", "2 D", "1 hour", "TRADES", True, formatDate=2)
    starts = [b.date.astimezone(UTC) for b in hourly]
    assert starts == sorted(starts) and starts[1] - starts[0] == timedelta(minutes=30)  # 9:30, 10:00


async def test_unknown_contract_is_error_200(sim, connect, lib, ib_errors):
    ib_errors.allow("Error 200")
    ib = await connect(sim)
    bogus = lib.Option("SPX", f"{EXPIRY:%Y%m%d}", 4302, "P", "SMART", tradingClass="SPXW")
    errors = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append(code)
    assert await ib.reqContractDetailsAsync(bogus) == []
    assert 200 in errors
    weekend = lib.Option("SPX", "20220305", 4300, "P", "SMART", tradingClass="SPXW")
    assert await ib.reqContractDetailsAsync(weekend) == []


async def test_duplicate_client_id_is_refused_with_326(sim, connect, lib, ib_errors):
    ib_errors.allow("326", "already in use", "API connection failed", "Peer closed connection", "timed out")
    first = await connect(sim, client_id=7)
    with pytest.raises((asyncio.TimeoutError, ConnectionError, OSError)):
        await connect(sim, client_id=7, timeout=1.0)
    assert any("326" in m for m in ib_errors.messages())
    assert first.isConnected()
    assert await first.reqCurrentTimeAsync()


async def test_security_definition_option_parameters(sim, connect, lib):
    ib = await connect(sim)
    chains = await ib.reqSecDefOptParamsAsync("SPX", "", "IND", 416904)
    classes = {(c.exchange, c.tradingClass) for c in chains}
    assert {("SMART", "SPXW"), ("SMART", "SPX"), ("CBOE", "SPXW")} <= classes
    spxw = next(c for c in chains if c.exchange == "SMART" and c.tradingClass == "SPXW")
    assert f"{EXPIRY:%Y%m%d}" in spxw.expirations and spxw.multiplier == "100"
    assert min(spxw.strikes) < sim.spot() < max(spxw.strikes)


# --------------------------------------------------------------------------- scenarios


async def test_dropped_connection_then_reconnect_finds_the_order(sim, connect, lib, ib_errors):
    ib_errors.allow("Peer closed connection")
    ib = await connect(sim)
    combo, _ = await condor(ib, lib, sim)
    trade = ib.placeOrder(combo, lib.LimitOrder("BUY", 1, await resting_buy(ib, combo), orderRef="ic-keep"))
    await wait_for(lambda: trade.orderStatus.status == "Submitted", what="ack")
    assert sim.scenario.drop(7)
    await wait_for(lambda: not ib.isConnected(), what="the client to notice the drop")
    back = await connect(sim, client_id=7)
    kept = [t for t in back.openTrades() if t.order.orderRef == "ic-keep"]
    assert kept and kept[0].order.permId == trade.order.permId


async def test_rejected_order_201(sim, connect, lib, ib_errors):
    ib_errors.allow("Error 201")
    ib = await connect(sim)
    combo, _ = await condor(ib, lib, sim)
    codes = []
    ib.errorEvent += lambda req_id, code, text, contract: codes.append(code)
    sim.scenario.reject_next(201, "Order rejected - reason: simulated margin check")
    trade = ib.placeOrder(combo, lib.LimitOrder("BUY", 1, await marketable_buy(ib, combo), orderRef="ic-rej"))
    await wait_for(lambda: trade.orderStatus.status == "Cancelled", what="the rejection")
    assert codes == [201]
    assert sim.exchange.order("ic-rej") is None
