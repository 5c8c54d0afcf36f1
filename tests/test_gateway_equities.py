"""SPY and QQQ on the gateway (issue 13): listed, quoted, with chains, bars, generic ticks and
calculations; stock orders (MKT, LMT, Adaptive) and ETF option orders filled, with IB's
commissions, positions and Reg T / Cboe margin in what-if orders and account values."""

from __future__ import annotations

import asyncio

import pytest
from test_gateway_support import connect, ib_errors, lib, make_sim, sim, wait_for  # noqa: F401 - fixtures

TIMEOUT = 10.0


async def test_stock_details_quotes_and_bars(sim, connect, lib):
    ib = await connect(sim)
    spy, qqq = lib.Stock("SPY", "SMART", "USD"), lib.Stock("QQQ", "SMART", "USD")
    [d_spy] = await ib.reqContractDetailsAsync(spy)
    assert d_spy.contract.conId == 756733 and d_spy.contract.primaryExchange == "ARCA"
    await ib.qualifyContractsAsync(spy, qqq)
    tickers = await ib.reqTickersAsync(spy, qqq)
    spx = sim.spot()
    assert tickers[0].last == pytest.approx(spx / 10, abs=0.02)
    assert tickers[0].bid < tickers[0].ask and tickers[1].last > 0
    bars = await asyncio.wait_for(ib.reqHistoricalDataAsync(spy, "", "2 D", "5 mins", "TRADES", True), TIMEOUT)
    assert bars and all(b.low <= b.high for b in bars)
    samples = await ib.reqMatchingSymbolsAsync("QQ")
    assert [s.contract.symbol for s in samples] == ["QQQ"]


async def test_etf_option_chain_quotes_and_a_sold_put(sim, connect, lib):
    ib = await connect(sim)
    spy = lib.Stock("SPY", "SMART", "USD")
    await ib.qualifyContractsAsync(spy)
    [chain] = [c for c in await ib.reqSecDefOptParamsAsync("SPY", "", "STK", spy.conId) if c.exchange == "SMART"]
    assert chain.tradingClass == "SPY" and chain.multiplier == "100" and len(chain.expirations) >= 8
    price = sim.spot() / 10
    k = float(round(price * 0.97))
    put = lib.Option("SPY", chain.expirations[1], k, "P", "SMART")
    await ib.qualifyContractsAsync(put)
    assert put.conId and put.tradingClass == "SPY"
    [details] = await ib.reqContractDetailsAsync(put)
    assert details.underConId == spy.conId and details.marketRuleIds.startswith("26")
    [ticker] = await ib.reqTickersAsync(put)
    assert 0 < ticker.bid < ticker.ask and ticker.modelGreeks and -1 < ticker.modelGreeks.delta < 0
    priced = await asyncio.wait_for(ib.calculateOptionPriceAsync(put, 0.2, price), TIMEOUT)
    assert priced.optPrice > 0
    trade = ib.placeOrder(put, lib.LimitOrder("SELL", 1, round(max(0.01, ticker.bid - 0.05), 2)))
    await wait_for(lambda: trade.orderStatus.status == "Filled" and trade.fills
                   and trade.fills[0].commissionReport.commission, TIMEOUT, "the put's fill")
    fill = trade.fills[0]
    assert fill.execution.side == "SLD" and fill.execution.exchange == "CBOE"
    # IB's $1.00 order minimum (1 contract) + ORF $0.033 + OCC $0.025; Cboe charges customers nothing on ETF options
    assert fill.commissionReport.commission == pytest.approx(1.058)
    await wait_for(lambda: any(p.contract.conId == put.conId and p.position == -1 for p in ib.positions()),
                   TIMEOUT, "the short put position")


async def test_stock_orders_market_limit_and_adaptive(sim, connect, lib, ib_errors):
    ib = await connect(sim)
    spy = lib.Stock("SPY", "SMART", "USD")
    await ib.qualifyContractsAsync(spy)
    [t] = await ib.reqTickersAsync(spy)
    buy = ib.placeOrder(spy, lib.MarketOrder("BUY", 300))
    await wait_for(lambda: buy.orderStatus.status == "Filled", TIMEOUT, "the market buy")
    assert buy.fills[0].execution.exchange == "ARCA" and buy.fills[0].execution.shares == 300
    await wait_for(lambda: buy.fills[0].commissionReport.commission, TIMEOUT, "its commission")
    assert buy.fills[0].commissionReport.commission == pytest.approx(1.05)  # 300 x $0.0035 (IB tiered, the default)
    adaptive = lib.LimitOrder("SELL", 100, round(t.bid - 0.50, 2), algoStrategy="Adaptive",
                              algoParams=[lib.TagValue("adaptivePriority", "Normal")])
    sell = ib.placeOrder(spy, adaptive)
    await wait_for(lambda: sell.orderStatus.status == "Filled", TIMEOUT, "the Adaptive sell")
    await wait_for(lambda: sell.fills and sell.fills[0].commissionReport.commission, TIMEOUT, "its commission")
    assert sell.fills[0].commissionReport.commission == pytest.approx(0.35)  # the tiered $0.35 minimum
    resting = ib.placeOrder(spy, lib.LimitOrder("BUY", 10, round(t.bid * 0.9, 2)))
    await wait_for(lambda: resting.orderStatus.status == "Submitted", TIMEOUT, "the resting limit")
    ib.cancelOrder(resting.order)
    await wait_for(lambda: resting.orderStatus.status == "Cancelled", TIMEOUT, "the cancel")
    await wait_for(lambda: any(p.contract.conId == spy.conId and p.position == 200 for p in ib.positions()),
                   TIMEOUT, "200 shares")
    ib_errors.allow("Error 202", "Error 110", "Error 387")
    errors: list[int] = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append(code)
    ib.placeOrder(spy, lib.LimitOrder("BUY", 1, round(t.bid, 2) + 0.005))
    ib.placeOrder(spy, lib.LimitOrder("BUY", 1, round(t.bid, 2), algoStrategy="Vwap"))
    await wait_for(lambda: 110 in errors and 387 in errors, TIMEOUT, "tick and algo refusals")


async def test_what_if_margins_on_etf_positions(sim, connect, lib):
    """IB's margin (bot.sim.margin) in what-if: 100 SPY shares at Reg T 50% / 25%, a naked SPY
    call and a cash-secured (in a margin account: naked) SPY put at 20% of the underlying less
    the out-of-the-money amount, at least 10%, plus the premium."""
    ib = await connect(sim)
    spy = lib.Stock("SPY", "SMART", "USD")
    await ib.qualifyContractsAsync(spy)
    [chain] = [c for c in await ib.reqSecDefOptParamsAsync("SPY", "", "STK", spy.conId) if c.exchange == "SMART"]
    price = sim.spot() / 10
    put = lib.Option("SPY", chain.expirations[2], float(round(price * 0.95)), "P", "SMART")
    call = lib.Option("SPY", chain.expirations[2], float(round(price * 1.05)), "C", "SMART")
    await ib.qualifyContractsAsync(put, call)
    shares = await ib.whatIfOrderAsync(spy, lib.MarketOrder("BUY", 100))
    assert float(shares.initMarginChange) == pytest.approx(0.5 * 100 * price, rel=0.01)
    assert float(shares.maintMarginChange) == pytest.approx(0.25 * 100 * price, rel=0.01)
    for opt in (put, call):
        [q] = await ib.reqTickersAsync(opt)
        state = await ib.whatIfOrderAsync(opt, lib.LimitOrder("SELL", 1, q.bid))
        k = opt.strike
        otm = k - price if opt.right == "C" else price - k
        floor = 0.10 * (price if opt.right == "C" else k)
        expected = 100 * ((q.bid + q.ask) / 2 + max(0.20 * price - otm, floor))
        assert float(state.initMarginChange) == pytest.approx(expected, rel=0.02)
        assert float(state.maintMarginChange) == float(state.initMarginChange)
    assert not ib.openTrades()
