"""A wheel on SPY with ib_async, nothing of spx-bot imported: sell a put, get assigned, sell a
covered call. Run it against `spx-bot sim-gateway` (or an IB paper account) started on an
expiry day (a Friday) before the close:

    spx-bot sim-gateway --port 4102 --speed 3600 --start 2022-03-04 &
    python examples/wheel.py --port 4102

(about a minute and a quarter: the weekend passes at 3600x; the gateway resumes its account
file, `state/sim_account.sqlite`, so remove it first to start from a fresh account).

1. Sells one SPY put of the nearest expiry (today's on a Friday), its strike `--moneyness`
   above the price (2%: in the money, so that the demo is assigned; a real wheel sells out of
   the money), at the bid.
2. Waits for the assignment at the close: 100 SPY shares appear among the positions; the
   executions show the option closed at 0.00 and the shares bought at the strike, from no
   order of the client's (orderId 0), with a zero commission; the cash pays the strike.
3. Waits for the next session (market data turns live again: `reqMarketDataType(2)` shows
   frozen data while the market is closed) and sells one call against the shares, at a strike
   above what they cost, of the nearest later expiry whose bid pays something, at the bid.

Exit 0 when all of that happened; `wheel()` returns what it saw, for tests.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import math
import sys
import time

POLL_S = 0.2


async def until(predicate, timeout: float, what: str):
    """Poll `predicate` (real seconds) until it is truthy; TimeoutError naming `what`."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_S)


def shares_held(ib, conid: int) -> float:
    return sum(p.position for p in ib.positions() if p.contract.conId == conid)


def cash(ib) -> float:
    """The account's cash as account updates (subscribed at connect) last reported it."""
    return next(float(v.value) for v in ib.accountValues() if v.tag == "TotalCashValue" and v.currency == "USD")


async def quote(ib, contract):
    [t] = await ib.reqTickersAsync(contract)
    return t


async def sell_at_bid(ib, lib, contract, timeout: float):
    """Sell one contract at the bid; wait until it is filled and its commission reported."""
    t = await quote(ib, contract)
    if not t.bid > 0:  # a sale at a price nobody bids would wait forever
        raise TimeoutError(f"no bid for {contract.localSymbol}")
    trade = ib.placeOrder(contract, lib.LimitOrder("SELL", 1, round(t.bid, 2)))
    await until(lambda: trade.orderStatus.status == "Filled" and trade.fills
                and all(f.commissionReport.execId for f in trade.fills), timeout, f"the sale of {contract.localSymbol}")
    return trade


async def wheel(ib, lib, *, moneyness: float = 0.02, timeout: float = 600.0, say=print) -> dict:
    seen: dict = {}
    spy = lib.Stock("SPY", "SMART", "USD")
    await ib.qualifyContractsAsync(spy)
    ib.reqMarketDataType(2)  # frozen while closed: the ticker's marketDataType tells live from closed
    spot = (await quote(ib, spy)).marketPrice()
    [chain] = [c for c in await ib.reqSecDefOptParamsAsync("SPY", "", "STK", spy.conId) if c.exchange == "SMART"]
    expiries = sorted(chain.expirations)
    put = lib.Option("SPY", expiries[0], float(math.ceil(spot * (1 + moneyness))), "P", "SMART", tradingClass="SPY")
    await ib.qualifyContractsAsync(put)
    cash_before = cash(ib)

    # 1. sell the put
    trade = await sell_at_bid(ib, lib, put, timeout)
    fill = trade.fills[0]
    say(f"sold 1 {put.localSymbol} at {fill.execution.price:.2f} (SPY {spot:.2f}), "
        f"commission {fill.commissionReport.commission:.2f}")
    seen["put"] = (put, fill)

    # 2. assignment at the close
    await until(lambda: shares_held(ib, spy.conId) >= 100, timeout, "the assignment")
    fills = await ib.reqExecutionsAsync(lib.ExecutionFilter(symbol="SPY"))
    assigned = [f for f in fills if f.execution.orderId == 0]
    for f in assigned:
        say(f"assignment: {f.execution.side} {f.execution.shares:g} {f.contract.localSymbol or f.contract.symbol} "
            f"at {f.execution.price:.2f} (orderRef {f.execution.orderRef!r}, commission "
            f"{f.commissionReport.commission:.2f})")
    position = next(p for p in ib.positions() if p.contract.conId == spy.conId)
    cash_assigned = cash(ib)
    say(f"position: {position.position:g} SPY at {position.avgCost:.2f}; cash {cash_before:,.2f} -> {cash_assigned:,.2f}")
    seen.update(assigned=assigned, shares=position, cash=(cash_before, cash_assigned))

    # 3. the next session: a covered call above the shares' cost
    await until_live(ib, spy, timeout)
    spot = (await quote(ib, spy)).marketPrice()
    call = await covered_call(ib, lib, [e for e in expiries if e > put.lastTradeDateOrContractMonth],
                              float(math.floor(max(position.avgCost, spot)) + 1))
    trade = await sell_at_bid(ib, lib, call, timeout)
    fill = trade.fills[0]
    say(f"sold 1 {call.localSymbol} covered at {fill.execution.price:.2f} (SPY {spot:.2f}), "
        f"commission {fill.commissionReport.commission:.2f}")
    await until(lambda: any(p.contract.conId == call.conId for p in ib.positions()), timeout, "the call position")
    for p in sorted(ib.positions(), key=lambda p: p.contract.secType, reverse=True):
        say(f"  {p.contract.localSymbol or p.contract.symbol}: {p.position:g} at {p.avgCost:.2f}")
    seen["call"] = (call, fill)
    seen["positions"] = list(ib.positions())
    return seen


async def covered_call(ib, lib, expiries: list[str], strike: float):
    """The call at `strike` of the nearest expiry whose bid pays something: a call far above
    the price can be bid at nothing this week and at a few cents next month."""
    for expiry in expiries[:6]:
        call = lib.Option("SPY", expiry, strike, "C", "SMART", tradingClass="SPY")
        await ib.qualifyContractsAsync(call)
        if call.conId and (await quote(ib, call)).bid > 0:
            return call
    raise TimeoutError(f"no SPY {strike:g} call bid above 0.00 in the next {min(len(expiries), 6)} expiries")


async def until_live(ib, contract, timeout: float) -> None:
    async def live() -> bool:
        return (await quote(ib, contract)).marketDataType == 1

    end = time.monotonic() + timeout
    while not await live():
        if time.monotonic() > end:
            raise TimeoutError("timed out waiting for the market to open")
        await asyncio.sleep(POLL_S)


async def main(port: int, client_id: int, lib_name: str = "ib_async", moneyness: float = 0.02) -> int:
    lib = importlib.import_module(lib_name)
    ib = lib.IB()
    await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=10)
    try:
        await wheel(ib, lib, moneyness=moneyness)
    except TimeoutError as e:
        print(e, file=sys.stderr)
        return 1
    finally:
        ib.disconnect()
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=4002)
    ap.add_argument("--client-id", type=int, default=8)
    ap.add_argument("--lib", default="ib_async", choices=("ib_async", "ib_insync"))
    ap.add_argument("--moneyness", type=float, default=0.02, help="put strike above the price, as a fraction")
    args = ap.parse_args()
    sys.exit(asyncio.run(main(args.port, args.client_id, args.lib, args.moneyness)))
