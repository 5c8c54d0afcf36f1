"""Conformance with IB's own Python client (`ibapi` 10.51, installed from the `ibapi-latest`
package, a republication of IB's TWS API source; dev dependency, pinned): a standalone
`spx-bot sim-gateway` is driven through every kind of request the gateway serves or refuses,
and the test fails on any decoder error ibapi logs, any request left unanswered, or a
connection the client's message loop dropped (an exception in its decoder ends that loop).

ibapi is threaded: its message loop runs in a thread and calls the wrapper from there; each
request here waits on a threading.Event set by its end callback."""

from __future__ import annotations

import logging
import math
import threading
import time

import pytest
from test_sim_gateway_cli import gateway  # noqa: F401 - fixture: a standalone sim-gateway process

ibapi_client = pytest.importorskip("ibapi.client")
from ibapi.contract import Contract  # noqa: E402
from ibapi.order import Order  # noqa: E402
from ibapi.order_cancel import OrderCancel  # noqa: E402
from ibapi.tag_value import TagValue  # noqa: E402
from ibapi.wrapper import EWrapper  # noqa: E402

TIMEOUT = 15.0
FARM_CODES = {2104, 2106, 2158}


class ErrorLog(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record):
        if record.name.split(".")[0] == "ibapi":
            self.records.append(record.getMessage())


class App(EWrapper, ibapi_client.EClient):
    """Records every callback by name; `wait(name, key)` blocks until it arrives."""

    def __init__(self):
        EWrapper.__init__(self)
        ibapi_client.EClient.__init__(self, wrapper=self)
        self.calls: dict[str, list[tuple]] = {}
        self.errors: list[tuple[int, int, str]] = []
        self.cond = threading.Condition()
        self.next_id = None

    def _record(self, name: str, *args) -> None:
        with self.cond:
            self.calls.setdefault(name, []).append(args)
            self.cond.notify_all()

    def wait(self, name: str, predicate=lambda args: True, timeout: float = TIMEOUT) -> tuple:
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for args in self.calls.get(name, []):
                    if predicate(args):
                        return args
                left = end - time.monotonic()
                if left <= 0 or not self.isConnected():
                    raise AssertionError(f"no {name} (connected: {self.isConnected()}; errors: {self.errors[-5:]})")
                self.cond.wait(min(left, 0.2))

    def error_for(self, req_id: int, timeout: float = TIMEOUT) -> int:
        return self.wait("error", lambda a: a[0] == req_id and a[1] not in FARM_CODES, timeout)[1]

    # callbacks -------------------------------------------------------------------------------
    def error(self, reqId, errorTime, errorCode, errorString, advancedOrderRejectJson=""):
        self.errors.append((reqId, errorCode, errorString))
        self._record("error", reqId, errorCode, errorString)

    def nextValidId(self, orderId):
        self.next_id = orderId
        self._record("nextValidId", orderId)

    def __getattribute__(self, name):
        attr = object.__getattribute__(self, name)
        recorded = ("contractDetails", "contractDetailsEnd", "tickPrice", "tickSize", "tickSnapshotEnd",
                    "tickOptionComputation", "tickGeneric", "accountSummary", "accountSummaryEnd", "position",
                    "positionEnd", "openOrder", "openOrderEnd", "orderStatus", "execDetails", "execDetailsEnd",
                    "completedOrder", "completedOrdersEnd", "historicalData", "historicalDataEnd", "pnl",
                    "pnlSingle", "symbolSamples", "marketRule", "headTimestamp", "securityDefinitionOptionParameter",
                    "securityDefinitionOptionParameterEnd", "currentTime", "familyCodes", "newsProviders",
                    "smartComponents", "userInfo", "accountUpdateMulti", "accountUpdateMultiEnd",
                    "positionMultiEnd", "updateAccountValue", "accountDownloadEnd", "managedAccounts",
                    "commissionAndFeesReport")
        if name in recorded:
            return lambda *args: self._record(name, *args)
        return attr


def spx_index() -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "SPX", "IND", "CBOE", "USD"
    return c


def spy_stock() -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "SPY", "STK", "SMART", "USD"
    return c


def spxw(expiry: str, strike: float, right: str) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "SPX", "OPT", "SMART", "USD"
    c.lastTradeDateOrContractMonth, c.strike, c.right, c.tradingClass, c.multiplier = expiry, strike, right, "SPXW", "100"
    return c


@pytest.fixture
def app(gateway):  # noqa: F811 - the fixture above
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    a = App()
    a.connect("127.0.0.1", gateway, clientId=41)
    thread = threading.Thread(target=a.run, daemon=True)
    thread.start()
    a.wait("nextValidId")
    yield a
    assert a.isConnected(), "ibapi's message loop ended: a message it could not decode?"
    a.disconnect()
    thread.join(5)
    logging.getLogger().removeHandler(errors)
    assert not errors.records, errors.records


def test_ibapi_session_through_every_served_kind_of_request(app):
    assert app.serverVersion() == 178
    app.reqContractDetails(1, spx_index())
    app.wait("contractDetailsEnd", lambda a: a[0] == 1)
    [(_, details)] = [c for c in app.calls["contractDetails"] if c[0] == 1]
    assert details.contract.conId == 416904
    app.reqSecDefOptParams(2, "SPX", "", "IND", 416904)
    app.wait("securityDefinitionOptionParameterEnd", lambda a: a[0] == 2)
    expiry = sorted(next(c[5] for c in app.calls["securityDefinitionOptionParameter"] if c[3] == "SPXW"))[1]
    app.reqMktData(3, spx_index(), "", True, False, [])
    app.wait("tickSnapshotEnd", lambda a: a[0] == 3)
    spot = next(a[2] for a in app.calls["tickPrice"] if a[0] == 3 and a[1] == 4)
    k = round(spot * 0.97 / 5) * 5
    put = spxw(expiry, k, "P")
    app.reqContractDetails(4, put)
    app.wait("contractDetailsEnd", lambda a: a[0] == 4)
    put = next(c[1].contract for c in app.calls["contractDetails"] if c[0] == 4)
    app.reqMktData(5, put, "100,101,104,106", False, False, [])
    app.wait("tickOptionComputation", lambda a: a[0] == 5)
    app.wait("tickSize", lambda a: a[0] == 5 and a[1] == 28)  # put open interest
    app.wait("tickGeneric", lambda a: a[0] == 5 and a[1] == 24)  # implied volatility
    app.cancelMktData(5)
    app.reqAccountSummary(6, "All", "NetLiquidation,Cushion,Leverage,LookAheadExcessLiquidity,SMA")
    app.wait("accountSummaryEnd", lambda a: a[0] == 6)
    assert {a[2] for a in app.calls["accountSummary"] if a[0] == 6} >= {"Cushion", "SMA", "LookAheadExcessLiquidity"}
    app.reqPositions()
    app.wait("positionEnd")
    app.reqPnL(7, "", "")
    app.wait("pnl", lambda a: a[0] == 7)
    app.cancelPnL(7)
    app.reqMatchingSymbols(8, "SP")
    app.wait("symbolSamples", lambda a: a[0] == 8)
    app.reqMarketRule(110)
    app.wait("marketRule", lambda a: a[0] == 110)
    app.reqHeadTimeStamp(9, spx_index(), "TRADES", 1, 1)
    app.wait("headTimestamp", lambda a: a[0] == 9)
    app.calculateImpliedVolatility(10, put, 5.0, spot, [])
    app.wait("tickOptionComputation", lambda a: a[0] == 10)
    app.reqHistoricalData(11, spx_index(), "", "5 D", "1 day", "TRADES", 1, 1, False, [])
    app.wait("historicalDataEnd", lambda a: a[0] == 11)
    app.reqFamilyCodes()
    app.wait("familyCodes")
    app.reqNewsProviders()
    app.wait("newsProviders")
    app.reqUserInfo(12)
    app.wait("userInfo", lambda a: a[0] == 12)
    app.reqAccountUpdatesMulti(13, "", "", False)
    app.wait("accountUpdateMultiEnd", lambda a: a[0] == 13)
    app.reqPositionsMulti(14, "", "")
    app.wait("positionMultiEnd", lambda a: a[0] == 14)
    app.reqAccountUpdates(True, "")
    app.wait("accountDownloadEnd")
    app.reqCurrentTime()
    app.wait("currentTime")


def test_ibapi_order_cancel_and_refusals(app):
    app.reqSecDefOptParams(1, "SPX", "", "IND", 416904)
    app.wait("securityDefinitionOptionParameterEnd", lambda a: a[0] == 1)
    expiry = sorted(next(c[5] for c in app.calls["securityDefinitionOptionParameter"] if c[3] == "SPXW"))[1]
    app.reqMktData(2, spx_index(), "", True, False, [])
    app.wait("tickSnapshotEnd", lambda a: a[0] == 2)
    spot = next(a[2] for a in app.calls["tickPrice"] if a[0] == 2 and a[1] == 4)
    put = spxw(expiry, round(spot * 0.95 / 5) * 5, "P")
    order = Order()
    order.action, order.orderType, order.totalQuantity, order.lmtPrice = "BUY", "LMT", 1, 0.05
    order.orderRef = "ibapi-conformance"
    order_id = app.next_id
    app.placeOrder(order_id, put, order)
    app.wait("orderStatus", lambda a: a[0] == order_id)
    app.cancelOrder(order_id, OrderCancel())
    app.wait("orderStatus", lambda a: a[0] == order_id and a[1] == "Cancelled")
    app.reqOpenOrders()
    app.wait("openOrderEnd")
    app.reqCompletedOrders(False)
    app.wait("completedOrdersEnd")
    app.reqExecutions(3, ibapi_client.ExecutionFilter())
    app.wait("execDetailsEnd", lambda a: a[0] == 3)
    app.reqMktDepth(4, spx_index(), 5, False, [])
    assert app.error_for(4) == 10092
    app.reqRealTimeBars(5, spx_index(), 5, "TRADES", True, [])
    assert app.error_for(5) == 420
    assert not math.isnan(spot)


def test_ibapi_stock_and_etf_option_orders(app):
    """A SPY market order under IB's Adaptive algo (algoParams adaptivePriority), a limit sale
    of a SPY put, a what-if on shares: executions, commission reports, positions, no decoder
    error."""
    app.reqMktData(1, spy_stock(), "", True, False, [])
    app.wait("tickSnapshotEnd", lambda a: a[0] == 1)
    bid = next(a[2] for a in app.calls["tickPrice"] if a[0] == 1 and a[1] == 1)
    buy = Order()
    buy.action, buy.orderType, buy.totalQuantity = "BUY", "MKT", 200
    buy.algoStrategy, buy.algoParams = "Adaptive", [TagValue("adaptivePriority", "Urgent")]
    buy_id = app.next_id
    app.placeOrder(buy_id, spy_stock(), buy)
    app.wait("orderStatus", lambda a: a[0] == buy_id and a[1] == "Filled")
    [_, contract, execution] = app.wait("execDetails", lambda a: a[2].orderId == buy_id)
    assert contract.secType == "STK" and execution.shares == 200 and execution.exchange == "ARCA"
    report = app.wait("commissionAndFeesReport", lambda a: a[0].execId == execution.execId)[0]
    assert report.commissionAndFees == pytest.approx(0.70)  # 200 x $0.0035 (IB tiered, the default schedule)

    app.reqSecDefOptParams(2, "SPY", "", "STK", 756733)
    app.wait("securityDefinitionOptionParameterEnd", lambda a: a[0] == 2)
    expiry = sorted(next(c[5] for c in app.calls["securityDefinitionOptionParameter"] if c[3] == "SPY"))[1]
    put = Contract()
    put.symbol, put.secType, put.exchange, put.currency = "SPY", "OPT", "SMART", "USD"
    put.lastTradeDateOrContractMonth, put.strike, put.right = expiry, float(round(bid * 0.97)), "P"
    app.reqMktData(3, put, "", True, False, [])
    app.wait("tickSnapshotEnd", lambda a: a[0] == 3)
    put_bid = next(a[2] for a in app.calls["tickPrice"] if a[0] == 3 and a[1] == 1)
    sell = Order()
    sell.action, sell.orderType, sell.totalQuantity, sell.lmtPrice = "SELL", "LMT", 2, round(put_bid - 0.05, 2)
    sell_id = buy_id + 1
    app.placeOrder(sell_id, put, sell)
    app.wait("orderStatus", lambda a: a[0] == sell_id and a[1] == "Filled")
    [_, contract, execution] = app.wait("execDetails", lambda a: a[2].orderId == sell_id)
    assert contract.secType == "OPT" and contract.tradingClass == "SPY" and execution.side == "SLD"
    report = app.wait("commissionAndFeesReport", lambda a: a[0].execId == execution.execId)[0]
    assert execution.price >= 0.10
    assert report.commissionAndFees == pytest.approx(1.416)  # 2 x ($0.65 + ORF $0.033 + OCC $0.025); no Cboe fee on ETF options

    what_if = Order()
    what_if.action, what_if.orderType, what_if.totalQuantity, what_if.whatIf = "BUY", "MKT", 100, True
    app.placeOrder(sell_id + 1, spy_stock(), what_if)
    [_, _, _, state] = app.wait("openOrder", lambda a: a[0] == sell_id + 1)
    assert float(state.initMarginChange) == pytest.approx(0.5 * 100 * bid, rel=0.01)
    app.reqPositions()
    app.wait("positionEnd")
    held = {(c.secType, c.symbol): float(q) for _, c, q, _ in app.calls["position"]}
    assert held[("STK", "SPY")] == 200 and held[("OPT", "SPY")] == -2
