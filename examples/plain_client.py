"""A plain TWS API script, nothing of spx-bot imported: run it against `spx-bot sim-gateway`
(or an IB paper account) to see the simulated gateway behave like IB Gateway.

    spx-bot sim-gateway --port 4102 --speed 60 &
    python examples/plain_client.py --lib ib_async --port 4102     # or --lib ib_insync

It connects with client id 7, qualifies SPX and an SPXW option, gets a quote with greeks,
places a 4-leg iron condor BAG limit order at the natural price (so it fills), and prints the
fill as the executions and positions report it. Exit 0 when all of that happened.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import math
import sys


def strike(x: float) -> float:
    return float(round(x / 5) * 5)


async def main(lib, port: int, client_id: int) -> int:
    ib = lib.IB()
    await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=10)
    print(f"connected: server version {ib.client.serverVersion()}, accounts {ib.managedAccounts()}")
    spx = lib.Index("SPX", "CBOE", "USD")
    await ib.qualifyContractsAsync(spx)
    print(f"SPX conId {spx.conId}")
    for _ in range(60):  # the simulated session may open a few seconds after start
        [t] = await ib.reqTickersAsync(spx)
        value = t.last if t.last == t.last and t.last > 0 else t.close
        chains = await ib.reqSecDefOptParamsAsync("SPX", "", "IND", spx.conId)
        spxw = next(c for c in chains if c.tradingClass == "SPXW")
        expiry = sorted(spxw.expirations)[1]  # the next session: 1DTE
        put = lib.Option("SPX", expiry, strike(value * 0.985), "P", "SMART", tradingClass="SPXW")
        await ib.qualifyContractsAsync(put)
        [q] = await ib.reqTickersAsync(put)
        if q.bid == q.bid and q.bid > 0 and q.modelGreeks is not None:
            break
        await asyncio.sleep(0.5)
    else:
        print("no option quote: is the simulated market open?", file=sys.stderr)
        return 1
    g = q.modelGreeks
    print(f"{put.localSymbol or put.conId}: bid {q.bid} ask {q.ask} delta {g.delta:.3f} iv {g.impliedVol:.3f} "
          f"gamma {g.gamma:.5f} vega {g.vega:.3f} theta {g.theta:.3f}")

    ps, cs = strike(value * 0.985), strike(value * 1.015)
    legs = [lib.Option("SPX", expiry, k, r, "SMART", tradingClass="SPXW")
            for k, r in ((ps, "P"), (ps - 25, "P"), (cs, "C"), (cs + 25, "C"))]
    await ib.qualifyContractsAsync(*legs)
    bag = lib.Bag(symbol="SPX", exchange="SMART", currency="USD", comboLegs=[
        lib.ComboLeg(conId=c.conId, ratio=1, action=a, exchange="SMART")
        for c, a in zip(legs, ("SELL", "BUY", "SELL", "BUY"))])
    [cq] = await ib.reqTickersAsync(bag)
    natural = cq.ask  # buying the combo as its legs say: a negative price is a credit
    limit = round(math.ceil(round(natural / 0.05, 6)) * 0.05, 2)
    ref = f"plain-{lib.__name__}-{client_id}"
    trade = ib.placeOrder(bag, lib.LimitOrder("BUY", 1, limit, orderRef=ref))
    for _ in range(200):
        if trade.orderStatus.status == "Filled":
            break
        await asyncio.sleep(0.05)
    print(f"order {trade.order.orderId} {trade.orderStatus.status} at {trade.orderStatus.avgFillPrice} "
          f"(limit {limit}, a credit when negative)")
    await asyncio.sleep(0.3)
    executions = [f for f in ib.fills() if f.execution.orderRef == ref]
    for f in executions:
        print(f"execution {f.execution.execId} {f.execution.side} {f.execution.shares:g} {f.contract.secType} "
              f"{f.contract.localSymbol or f.contract.symbol} @ {f.execution.price} commission "
              f"{f.commissionReport.commission if f.commissionReport else '-'}")
    positions = {p.contract.conId: p.position for p in ib.positions()}
    for c in legs:
        print(f"position {c.localSymbol or c.conId}: {positions.get(c.conId, 0):g}")
    ok = trade.orderStatus.status == "Filled" and len([f for f in executions if f.contract.secType == "OPT"]) == 4 \
        and all(positions.get(c.conId, 0) != 0 for c in legs)
    ib.disconnect()
    return 0 if ok else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lib", choices=("ib_async", "ib_insync"), default="ib_async")
    ap.add_argument("--port", type=int, default=4102)
    ap.add_argument("--client-id", type=int, default=7)
    a = ap.parse_args()
    sys.exit(asyncio.run(main(importlib.import_module(a.lib), a.port, a.client_id)))
