"""Issue 13: every request id a v178 client can send is served or answered with IB's error for
it, through the clients' own calls; every account tag; IB's margin in what-if orders."""

from __future__ import annotations

import asyncio
import math
from datetime import timezone

import pytest
from test_gateway_limits import RawClient, spx_contract
from test_gateway_support import EXPIRY, condor, connect, ib_errors, lib, make_sim, sim, strike, wait_for  # noqa: F401

from bot.sim.gateway.protocol import GENERIC_IDS, REQUEST_PARSERS
from bot.sim.gateway.services import ACCEPTED, REFUSALS

TIMEOUT = 10.0
UTC = timezone.utc
STANDARD_TAGS = (
    "AccountType,NetLiquidation,TotalCashValue,SettledCash,AccruedCash,BuyingPower,EquityWithLoanValue,"
    "PreviousDayEquityWithLoanValue,GrossPositionValue,RegTEquity,RegTMargin,SMA,InitMarginReq,MaintMarginReq,"
    "AvailableFunds,ExcessLiquidity,Cushion,FullInitMarginReq,FullMaintMarginReq,FullAvailableFunds,"
    "FullExcessLiquidity,LookAheadNextChange,LookAheadInitMarginReq,LookAheadMaintMarginReq,"
    "LookAheadAvailableFunds,LookAheadExcessLiquidity,HighestSeverity,DayTradesRemaining,Leverage"
).split(",")


def spxw(lib, k: float, right: str = "C"):
    return lib.Option("SPX", f"{EXPIRY:%Y%m%d}", k, right, "SMART", tradingClass="SPXW")


def test_every_client_request_id_has_a_parser():
    sent = {*range(1, 26), *range(49, 60), *range(61, 105)}  # ib_async 2.1 client.py, server 176..178
    assert sent <= set(REQUEST_PARSERS), sorted(sent - set(REQUEST_PARSERS))
    assert set(REFUSALS) | ACCEPTED <= set(GENERIC_IDS)


def expected_request_id(msg_id: int, fields: list) -> int:
    """Where each message carries its request id: none (-1), last (replaceFA), after the
    version field, or right after the id (the unversioned requests)."""
    if msg_id in (18, 65, 66, 72, 73):
        return -1
    if msg_id == 19:
        return fields[-1]
    return fields[2] if msg_id in (10, 21, 50, 52) else fields[1]


async def test_refused_requests_get_ibs_error_on_their_request_id(sim):
    """Each refused id, sent as the client encodes it, is answered on its own request id."""
    raw = await RawClient.open(sim.port)
    await raw.start()
    c = spx_contract(strike=4300)
    messages = {
        10: [10, 5, 1010, *c, 5, 0, ""],
        18: [18, 1, 1],
        19: [19, 1, 1, "<xml/>", 1019],
        21: [21, 2, 1021, *c[:8], *c[9:], 1, 1, "", 0],
        22: [22, 1022, 10, "STK", "STK.US", "TOP_PERC_GAIN", *[""] * 17, "", "", ""],
        50: [50, 3, 1050, *c, 5, "TRADES", 1, ""],
        52: [52, 2, 1052, 416904, "SPX", "IND", "CBOE", "", "USD", "", "ReportSnapshot", 0, ""],
        65: [65, 1, "x", "1"],
        66: [66, 1, "x"],
        72: [72, 1, "x", "1", "key"],
        73: [73, 1, "x", "y"],
        84: [84, 1084, "BZ", "BZ$1", ""],
        88: [88, 1088, *c, 0, 1, "3 days"],
        96: [96, 1096, *c, 0, "", "20220301 15:00:00", 10, "TRADES", 1, 0, ""],
        97: [97, 1097, *c, "Last", 0, 0],
        100: [100, 1100],
        102: [102, 1102, 416904, "", 0, 0, 0, "", "", 10],
    }
    assert set(messages) == set(REFUSALS)
    for msg_id, fields in messages.items():
        raw.send(fields)
        code, _ = await raw.error_for(expected_request_id(msg_id, fields))
        assert code == REFUSALS[msg_id][0], msg_id
    raw.send([49, 1])
    await raw.until(lambda f: f[0] == "49")
    raw.close()


async def test_served_requests_through_the_clients(sim, connect, lib):
    ib = await connect(sim)
    samples = await asyncio.wait_for(ib.reqMatchingSymbolsAsync("SP"), TIMEOUT)
    assert [d.contract.symbol for d in samples] == ["SPX", "SPY"] and "OPT" in samples[0].derivativeSecTypes
    [details] = await ib.reqContractDetailsAsync(spxw(lib, strike(sim.spot()) + 50))
    rule_id = int(details.marketRuleIds.split(",")[0])
    increments = await asyncio.wait_for(ib.reqMarketRuleAsync(rule_id), TIMEOUT)
    assert [(i.lowEdge, i.increment) for i in increments] == [(0.0, 0.05), (3.0, 0.10)]
    head = await asyncio.wait_for(ib.reqHeadTimeStampAsync(lib.Index("SPX", "CBOE"), "TRADES", True, 1), TIMEOUT)
    assert head.year in (2022, 2021)
    assert await asyncio.wait_for(ib.reqNewsProvidersAsync(), TIMEOUT) == []
    assert await asyncio.wait_for(ib.reqMktDepthExchangesAsync(), TIMEOUT) == []
    assert [c.exchange for c in await asyncio.wait_for(ib.reqSmartComponentsAsync("a6"), TIMEOUT)] == ["CBOE"]
    assert "ScanParameterResponse" in await asyncio.wait_for(ib.reqScannerParametersAsync(), TIMEOUT)
    if hasattr(ib, "reqUserInfoAsync"):  # ib_async only; it answers (the id has no white branding)
        await asyncio.wait_for(ib.reqUserInfoAsync(), TIMEOUT)
    codes, tiers = [], []
    ib.wrapper.familyCodes = codes.extend  # the clients decode it but keep nothing: catch the callback
    ib.wrapper.softDollarTiers = lambda req_id, rows: tiers.append(req_id)
    ib.client.reqFamilyCodes()
    ib.client.reqSoftDollarTiers(77)
    await wait_for(lambda: codes and tiers, TIMEOUT, "family codes and soft-dollar tiers")
    assert [c.accountID for c in codes] == [sim.gateway.account] and tiers == [77]


async def test_option_calculations_invert_each_other(sim, connect, lib):
    ib = await connect(sim)
    opt = spxw(lib, strike(sim.spot()) + 25)
    await ib.qualifyContractsAsync(opt)
    under = sim.spot()
    priced = await asyncio.wait_for(ib.calculateOptionPriceAsync(opt, 0.20, under), TIMEOUT)
    assert priced.optPrice > 0 and 0 < priced.delta < 1 and priced.undPrice == pytest.approx(under, abs=0.01)
    implied = await asyncio.wait_for(ib.calculateImpliedVolatilityAsync(opt, priced.optPrice, under), TIMEOUT)
    assert implied.impliedVol == pytest.approx(0.20, abs=1e-3)


async def test_pnl_streams_for_the_account_and_a_position(sim, connect, lib):
    ib = await connect(sim)
    combo, legs = await condor(ib, lib, sim)
    from test_gateway_support import marketable_buy

    trade = ib.placeOrder(combo, lib.LimitOrder("BUY", 1, await marketable_buy(ib, combo)))
    await wait_for(lambda: trade.orderStatus.status == "Filled", TIMEOUT, "the fill")
    account = sim.gateway.account
    pnl = ib.reqPnL(account)
    single = ib.reqPnLSingle(account, "", legs[0].conId)
    await wait_for(lambda: not math.isnan(pnl.unrealizedPnL) and not math.isnan(single.unrealizedPnL), TIMEOUT,
                   "P&L values")
    assert single.position == -1 and single.value < 0
    assert not math.isnan(pnl.dailyPnL) and not math.isnan(pnl.realizedPnL)
    ib.cancelPnL(account)
    ib.cancelPnLSingle(account, "", legs[0].conId)


async def test_positions_multi_and_account_updates_multi(sim, connect, lib):
    ib = await connect(sim)
    combo, _ = await condor(ib, lib, sim)
    from test_gateway_support import marketable_buy

    trade = ib.placeOrder(combo, lib.LimitOrder("BUY", 1, await marketable_buy(ib, combo)))
    await wait_for(lambda: trade.orderStatus.status == "Filled", TIMEOUT, "the fill")
    got = []
    ib.wrapper.positionMulti = lambda req_id, account, model, contract, pos, avg: got.append((req_id, pos))
    ib.client.reqPositionsMulti(4242, sim.gateway.account, "")
    await wait_for(lambda: len(got) == 4, TIMEOUT, "four positions")
    assert {q for _, q in got} == {1.0, -1.0}


async def test_every_standard_account_tag_and_their_consistency(sim, connect, lib):
    ib = await connect(sim)
    values = {v.tag: v.value for v in await ib.accountSummaryAsync()}
    missing = [t for t in STANDARD_TAGS if t not in values]
    assert not missing, missing
    nlv = float(values["NetLiquidation"])
    excess = float(values["ExcessLiquidity"])
    assert float(values["Cushion"]) == pytest.approx(excess / nlv, rel=1e-4)
    assert float(values["Leverage"]) == pytest.approx(float(values["GrossPositionValue"]) / nlv, abs=1e-4)
    keys = {v.tag for v in ib.accountValues()}
    assert "Cushion" in keys and "LookAheadExcessLiquidity" in keys


async def test_what_if_margin_is_ibs_index_option_rule(sim, connect, lib):
    """Naked short SPXW call: premium + 15% of the index less the OTM amount (floor 10%);
    a put spread: its width; no order is placed."""
    ib = await connect(sim)
    spot = sim.spot()
    call = spxw(lib, strike(spot * 1.02))
    short_put, long_put = spxw(lib, strike(spot * 0.98), "P"), spxw(lib, strike(spot * 0.98) - 25, "P")
    await ib.qualifyContractsAsync(call, short_put, long_put)
    state = await ib.whatIfOrderAsync(call, lib.LimitOrder("SELL", 1, 1.0))
    [ticker] = await ib.reqTickersAsync(call)
    premium = (ticker.bid + ticker.ask) / 2
    otm = call.strike - spot
    expected = (premium + max(0.15 * spot - otm, 0.10 * spot)) * 100
    assert float(state.initMarginChange) == pytest.approx(expected, rel=0.01)
    assert float(state.initMarginChange) < 100_000
    spread = lib.Bag(symbol="SPX", exchange="SMART", currency="USD", comboLegs=[
        lib.ComboLeg(conId=short_put.conId, ratio=1, action="SELL", exchange="SMART"),
        lib.ComboLeg(conId=long_put.conId, ratio=1, action="BUY", exchange="SMART")])
    state = await ib.whatIfOrderAsync(spread, lib.LimitOrder("BUY", 1, -1.0))  # the legs as written: a credit
    assert float(state.initMarginChange) == pytest.approx(2500.0)
    assert not ib.openTrades()


async def test_generic_ticks_open_interest_volume_and_volatility(sim, connect, lib):
    ib = await connect(sim)
    opt = spxw(lib, strike(sim.spot()), "P")
    await ib.qualifyContractsAsync(opt)
    ticker = ib.reqMktData(opt, "100,101,104,106")
    await wait_for(lambda: ticker.putOpenInterest == ticker.putOpenInterest and ticker.impliedVolatility
                   == ticker.impliedVolatility and ticker.histVolatility == ticker.histVolatility, TIMEOUT,
                   "open interest and volatility ticks")
    assert ticker.putOpenInterest > 1000  # at the money: near the SPXW base of 4,000
    assert 0 < ticker.impliedVolatility < 2 and 0 < ticker.histVolatility < 2
    assert ticker.volume == ticker.volume and ticker.volume >= 0
    spx = lib.Index("SPX", "CBOE")
    await ib.qualifyContractsAsync(spx)
    index = ib.reqMktData(spx, "100,101,104,106")
    await wait_for(lambda: index.callOpenInterest == index.callOpenInterest and index.putVolume == index.putVolume
                   and index.impliedVolatility == index.impliedVolatility, TIMEOUT, "the index's chain totals")
    assert index.callOpenInterest > ticker.putOpenInterest
    ib.cancelMktData(opt)
    ib.cancelMktData(spx)


async def test_bars_keep_up_to_date_and_option_bars(sim, connect, lib):
    ib = await connect(sim)
    spx = lib.Index("SPX", "CBOE")
    opt = spxw(lib, strike(sim.spot()), "P")
    await ib.qualifyContractsAsync(spx, opt)
    bars = await asyncio.wait_for(ib.reqHistoricalDataAsync(spx, "", "1 D", "1 min", "TRADES", True,
                                                             keepUpToDate=True), TIMEOUT)
    updates = []
    bars.updateEvent += lambda b, has_new_bar: updates.append(b[-1].close)
    await wait_for(lambda: len(updates) >= 2, TIMEOUT, "historicalDataUpdate as the minute bars form")
    assert bars[-1].date.astimezone(UTC) <= sim.clock.now()
    ib.cancelHistoricalData(bars)
    for what in ("MIDPOINT", "TRADES", "BID"):
        option_bars = await asyncio.wait_for(ib.reqHistoricalDataAsync(opt, "", "2 D", "30 mins", what, True),
                                             TIMEOUT)
        assert option_bars and all(0 < b.low <= b.high for b in option_bars), what
    daily = await asyncio.wait_for(ib.reqHistoricalDataAsync(opt, "", "5 D", "1 day", "MIDPOINT", True), TIMEOUT)
    assert daily and all(b.close > 0 for b in daily)


async def test_intraday_bars_reach_back_before_the_simulated_start(sim, connect, lib):
    """Look-back sessions have only a close: their intraday bars follow a seeded bridge from
    the previous close to that close, the same on every request."""
    ib = await connect(sim)
    spx = lib.Index("SPX", "CBOE")
    await ib.qualifyContractsAsync(spx)
    first = sim.market.first_session
    bars = await asyncio.wait_for(ib.reqHistoricalDataAsync(spx, "", "10 D", "30 mins", "TRADES", True), TIMEOUT)
    days = sorted({b.date.astimezone(UTC).date() for b in bars})
    assert len(days) == 10 and days[0] < first
    early = [b for b in bars if b.date.astimezone(UTC).date() < first]
    assert len({b.close for b in early}) > 5
    again = await asyncio.wait_for(ib.reqHistoricalDataAsync(spx, "", "10 D", "30 mins", "TRADES", True), TIMEOUT)
    assert [b.close for b in again][: len(early)] == [b.close for b in early]
    daily = {b.date: b for b in await ib.reqHistoricalDataAsync(spx, "", "10 D", "1 day", "TRADES", True)}
    last_early = max(d for d in daily if d < first)
    assert [b.close for b in early][-1] == pytest.approx(daily[last_early].close, abs=0.01)
