"""SPY and QQQ on the gateway (issue 13, partial): listed, quoted, with chains, bars, generic
ticks and calculations; orders on them are refused with 201 (the exchange books SPX and VIX
options only)."""

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


async def test_etf_option_chain_quotes_and_refused_orders(sim, connect, lib, ib_errors):
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
    ib_errors.allow("Error 201")
    errors = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append(code)
    trade = ib.placeOrder(put, lib.LimitOrder("SELL", 1, round(ticker.bid, 2)))
    await wait_for(lambda: 201 in errors, TIMEOUT, "the 201 refusal")
    assert trade.orderStatus.status in ("Cancelled", "Inactive", "PendingSubmit")
