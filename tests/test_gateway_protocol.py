"""The wire protocol without a socket: framing, the handshake, every request parser fed by the
clients' own encoders (ib_async at server versions 176..178, ib_insync at 176; a parser must
consume the message exactly), and every message builder fed to the clients' own decoders
(which must decode it without logging an error and hand the wrapper the right values)."""

from __future__ import annotations

import importlib
from datetime import date, datetime, timezone
from decimal import Decimal
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from test_gateway_support import ib_errors  # noqa: F401 - fixture

from bot.domain import Action, Leg, OptionSpec, Right
from bot.sim.gateway import mapping
from bot.sim.gateway import messages as msg
from bot.sim.gateway.protocol import (
    UNSET_DOUBLE,
    In,
    ProtocolError,
    encode_field,
    frame,
    handshake_reply,
    negotiate_version,
    parse_hello,
    parse_request,
    split_frames,
)

NY = ZoneInfo("America/New_York")
CLIENT_VERSIONS = [("ib_async", 176), ("ib_async", 177), ("ib_async", 178), ("ib_insync", 176)]
PUT = OptionSpec("SPX", date(2022, 3, 2), Decimal(4300), Right.PUT, "SPXW")
CALL = OptionSpec("SPX", date(2022, 3, 2), Decimal(4500), Right.CALL, "SPXW")


# --------------------------------------------------------------------------- framing, handshake


def test_frame_and_split_round_trip_with_partial_data():
    data = frame([1, "a", 2.5, None, True, Decimal("4300.00")]) + frame(["x"])
    messages, rest = split_frames(data[:7])
    assert messages == [] and rest == data[:7]
    messages, rest = split_frames(data)
    assert messages == [["1", "a", "2.5", "", "1", "4300"], ["x"]] and rest == b""


def test_encode_field_unset_values():
    assert encode_field(UNSET_DOUBLE) == "1.7976931348623157E308"
    assert encode_field(float("nan")) == "" and encode_field(None) == ""
    assert encode_field(False) == "0" and encode_field(Decimal("-1.50")) == "-1.5"


def test_handshake_offer_and_version_choice():
    assert parse_hello(b"v157..178") == parse_hello(b"v157..178\0")
    hello = parse_hello(b"v157..176 +PACEAPI")
    assert (hello.min_version, hello.max_version, hello.options) == (157, 176, "+PACEAPI")
    assert negotiate_version(parse_hello(b"v157..178")) == 178
    assert negotiate_version(parse_hello(b"v157..190")) == 178
    assert negotiate_version(parse_hello(b"v100..151")) is None
    with pytest.raises(ProtocolError):
        parse_hello(b"hello")


def test_handshake_reply_has_exactly_two_fields():
    [[version, when]], _ = split_frames(handshake_reply(178, datetime(2022, 3, 1, 20, 0, tzinfo=timezone.utc), NY))
    assert version == "178" and when == "20220301 15:00:00 EST"


# --------------------------------------------------------------------------- requests


@pytest.fixture(params=CLIENT_VERSIONS, ids=[f"{n}-{v}" for n, v in CLIENT_VERSIONS])
def client(request):
    """A real client of the library whose encoder writes into a list instead of a socket."""
    name, version = request.param
    lib = importlib.import_module(name)
    c = importlib.import_module(f"{name}.client").Client(SimpleNamespace())
    c.connState = c.CONNECTED
    c._serverVersion = version
    c.clientId = 7
    c.MaxRequests = 0  # no throttling in a unit test
    sent: list[bytes] = []
    c.conn.sendMsg = sent.append

    def last(strict: bool = True):
        [fields], rest = split_frames(sent[-1])
        assert rest == b""
        return parse_request(fields, version, strict=strict)

    return SimpleNamespace(lib=lib, c=c, version=version, last=last)


def _bag(lib):
    return lib.Bag(symbol="SPX", exchange="SMART", currency="USD", comboLegs=[
        lib.ComboLeg(conId=11, ratio=1, action="SELL", exchange="SMART"),
        lib.ComboLeg(conId=12, ratio=2, action="BUY", exchange="CBOE"),
    ])


async def test_parse_place_order_bag_limit(client):
    lib = client.lib
    order = lib.LimitOrder("BUY", 3, -1.45, orderRef="ic-42", tif="DAY", account="DU1")
    client.c.placeOrder(17, _bag(lib), order)
    r = client.last()
    assert (r.msg_id, r.order_id) == (In.PLACE_ORDER, 17)
    assert r.contract.sec_type == "BAG" and r.contract.symbol == "SPX"
    assert [(leg.con_id, leg.ratio, leg.action, leg.exchange) for leg in r.contract.combo_legs] == [
        (11, 1, "SELL", "SMART"), (12, 2, "BUY", "CBOE")]
    o = r.order
    assert (o.action, o.total_quantity, o.order_type, o.lmt_price) == ("BUY", 3.0, "LMT", -1.45)
    assert (o.order_ref, o.tif, o.account, o.transmit, o.what_if) == ("ic-42", "DAY", "DU1", True, False)
    assert o.aux_price is None


async def test_parse_place_order_with_conditions_algo_and_what_if(client):
    lib = client.lib
    order = lib.LimitOrder("SELL", 1, 2.35, orderRef="x", whatIf=True, transmit=False,
                           algoStrategy="Adaptive", algoParams=[lib.TagValue("adaptivePriority", "Normal")])
    order.conditions = [lib.PriceCondition(price=4000.0, conId=416904, exch="CBOE"),
                        lib.TimeCondition(time="20220301 15:30:00 US/Eastern")]
    option = lib.Option("SPX", "20220302", 4300, "P", "SMART", tradingClass="SPXW")
    client.c.placeOrder(5, option, order)
    r = client.last()
    assert r.contract.strike == 4300 and r.contract.trading_class == "SPXW" and r.contract.right == "P"
    assert r.order.what_if and not r.order.transmit and r.order.algo_strategy == "Adaptive"
    assert (r.order.action, r.order.lmt_price, r.order.order_ref) == ("SELL", 2.35, "x")


async def test_parse_market_data_requests(client):
    lib = client.lib
    client.c.reqMktData(3, _bag(lib), "", True, False, [])
    r = client.last()
    assert (r.req_id, r.snapshot, r.contract.sec_type, len(r.contract.combo_legs)) == (3, True, "BAG", 2)
    client.c.reqMktData(4, lib.Index("SPX", "CBOE"), "106", False, False, [])
    r = client.last()
    assert (r.req_id, r.generic_ticks, r.snapshot, r.contract.symbol) == (4, "106", False, "SPX")
    client.c.cancelMktData(4)
    assert client.last().req_id == 4
    client.c.reqMarketDataType(3)
    assert client.last().value == 3


async def test_parse_the_other_requests(client):
    lib, c = client.lib, client.c
    c.startApi()
    assert client.last().client_id == 7
    c.reqContractDetails(9, lib.Option("SPX", "20220302", 4300, "P", "SMART", tradingClass="SPXW"))
    r = client.last()
    assert (r.msg_id, r.req_id, r.contract.last_trade_date) == (In.REQ_CONTRACT_DATA, 9, "20220302")
    c.reqHistoricalData(10, lib.Index("SPX", "CBOE"), "20220301 16:00:00 US/Eastern", "2 D", "1 hour", "TRADES",
                        1, 2, False, [])
    r = client.last()
    assert (r.req_id, r.end, r.duration, r.bar_size, r.use_rth, r.format_date) == (
        10, "20220301 16:00:00 US/Eastern", "2 D", "1 hour", True, 2)
    c.reqExecutions(11, lib.ExecutionFilter(clientId=7, secType="BAG"))
    r = client.last()
    assert (r.req_id, r.client_id, r.sec_type) == (11, 7, "BAG")
    c.reqSecDefOptParams(12, "SPX", "", "IND", 416904)
    r = client.last()
    assert (r.req_id, r.underlying_symbol, r.underlying_con_id) == (12, "SPX", 416904)
    c.reqAccountUpdates(True, "DU1")
    assert client.last().subscribe is True
    c.reqAccountUpdatesMulti(13, "DU1", "", False)
    assert client.last().req_id == 13
    c.reqAccountSummary(14, "All", "NetLiquidation,BuyingPower")
    assert client.last().tags == "NetLiquidation,BuyingPower"
    c.cancelOrder(15)
    assert client.last().order_id == 15
    c.reqIds(1)
    assert client.last().num_ids == 1
    c.reqCompletedOrders(False)
    assert client.last().api_only is False
    for call, msg_id in ((c.reqOpenOrders, In.REQ_OPEN_ORDERS), (c.reqAllOpenOrders, In.REQ_ALL_OPEN_ORDERS),
                         (c.reqPositions, In.REQ_POSITIONS), (c.reqGlobalCancel, In.REQ_GLOBAL_CANCEL),
                         (c.reqCurrentTime, In.REQ_CURRENT_TIME), (c.reqManagedAccts, In.REQ_MANAGED_ACCTS)):
        call()
        assert client.last().msg_id == msg_id


def test_unknown_and_malformed_requests():
    assert parse_request(["10", "5", "1"], 178).msg_id == 10  # reqMktDepth: ignored politely
    with pytest.raises(ProtocolError):
        parse_request(["3", "1"], 178)  # a placeOrder cut short
    with pytest.raises(ProtocolError):
        parse_request(["x"], 178)


# --------------------------------------------------------------------------- messages


class Recorder:
    """A wrapper stand-in that records every call the decoder makes."""

    def __init__(self):
        self.calls: list[tuple[str, tuple]] = []
        self.defaultTimezone = timezone.utc
        self.ib = SimpleNamespace(TimezoneTWS="")

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args: self.calls.append((name, args))


@pytest.fixture(params=CLIENT_VERSIONS, ids=[f"{n}-{v}" for n, v in CLIENT_VERSIONS])
def decode(request, ib_errors):
    """decode(fields) -> the wrapper calls the client's decoder made (no error may be logged)."""
    name, version = request.param
    decoder_cls = importlib.import_module(f"{name}.decoder").Decoder

    def _decode(fields: list):
        recorder = Recorder()
        [wire], _ = split_frames(frame(fields))
        decoder_cls(recorder, version).interpret(wire)
        return recorder.calls

    _decode.version = version
    _decode.lib = name
    return _decode


def _bag_fields():
    bag = mapping.Bag("SPX", (Leg(PUT, Action.SELL), Leg(CALL, Action.BUY, 2)))
    legs = tuple(msg.ComboLegView(mapping.encode_con_id(leg.option), leg.ratio, leg.action.value, "SMART")
                 for leg in bag.legs)
    return bag, legs


def test_open_order_decodes_with_identity_and_legs(decode):
    bag, legs = _bag_fields()
    view = msg.OrderView(12, 7, 1000005, "BUY", 2.0, "LMT", -1.45, None, "DAY", "DU1", "ic-9")
    state = msg.OrderStateView("Submitted", None, "", legs, mapping.combo_legs_description(bag))
    [(name, (order_id, contract, order, st))] = decode(msg.open_order(view, mapping.contract_fields(bag), state,
                                                                      decode.version))
    assert name == "openOrder" and order_id == 12
    assert (order.orderId, order.clientId, order.permId, order.orderRef) == (12, 7, 1000005, "ic-9")
    assert (order.lmtPrice, order.totalQuantity, order.whatIf, st.status) == (-1.45, 2.0, False, "Submitted")
    assert contract.secType == "BAG" and [leg.ratio for leg in contract.comboLegs] == [1, 2]
    assert contract.comboLegs[0].conId == mapping.encode_con_id(PUT)


def test_what_if_open_order_carries_numeric_margins(decode):
    view = msg.OrderView(3, 7, 0, "BUY", 1.0, "LMT", -1.0, None, "", "DU1", "")
    margins = msg.WhatIfMargins(0, 0, 1e6, 2400, 2400, -2.6, 2400, 2400, 999997.4, 2.6)
    state = msg.OrderStateView("PreSubmitted", margins)
    [(_, (_, _, order, st))] = decode(msg.open_order(view, mapping.contract_fields(PUT), state, decode.version,
                                                     what_if=True))
    assert order.whatIf and float(st.initMarginChange) == 2400.0 and float(st.commission) == 2.6


def test_completed_order_decodes(decode):
    view = msg.OrderView(0, 0, 1000001, "SELL", 1.0, "LMT", 2.5, None, "DAY", "DU1", "ref-1")
    state = msg.OrderStateView("Filled")
    [(name, (contract, order, st))] = decode(msg.completed_order(view, mapping.contract_fields(PUT), state, 1.0,
                                                                 "20220301 15:00:00 US/Eastern", "Filled",
                                                                 decode.version))
    assert name == "completedOrder" and order.permId == 1000001 and order.orderRef == "ref-1"
    assert st.status == "Filled" and contract.localSymbol == "SPXW  220302P04300000"


def test_execution_and_commission_decode(decode):
    view = msg.ExecutionView("0001.01", "20220301 15:00:03 US/Eastern", "DU1", "CBOE", "SLD", 2.0, 1.25,
                             1000001, 7, 12, 2.0, 1.25, "ic-9")
    [(name, (req_id, contract, ex))] = decode(msg.exec_details(-1, mapping.contract_fields(PUT), view,
                                                               decode.version))
    assert name == "execDetails" and req_id == -1 and contract.conId == mapping.encode_con_id(PUT)
    assert (ex.orderId, ex.clientId, ex.permId, ex.side, ex.shares, ex.orderRef) == (12, 7, 1000001, "SLD", 2.0, "ic-9")
    assert ex.time == datetime(2022, 3, 1, 20, 0, 3, tzinfo=timezone.utc)  # 15:00:03 New York
    [(name, (report,))] = decode(msg.commission_report("0001.01", 1.3))
    assert name == "commissionReport" and report.commission == 1.3 and report.execId == "0001.01"


def test_market_data_messages_decode(decode):
    assert decode(msg.tick_price(4, 1, 2.35, 10.0)) == [("priceSizeTick", (4, 1, 2.35, 10.0))]
    assert decode(msg.tick_size(4, 0, 10.0)) == [("tickSize", (4, 0, 10.0))]
    [(name, args)] = decode(msg.tick_option_computation(4, 13, 0.2, -0.3, 2.4, 1.0, 0.001, 1.5, -2.0, 4400.0))
    assert name == "tickOptionComputation" and args == (4, 13, 1, 0.2, -0.3, 2.4, 1.0, 0.001, 1.5, -2.0, 4400.0)
    assert decode(msg.market_data_type(4, 3)) == [("marketDataType", (4, 3))]
    assert decode(msg.tick_snapshot_end(4)) == [("tickSnapshotEnd", (4,))]


def test_contract_details_and_option_chain_decode(decode):
    details = msg.DetailsInfo(market_name="SPXW", min_tick=0.05, under_con_id=416904, long_name="S&P 500 Stock Index",
                              contract_month="202203", trading_hours="20220301:0930-20220301:1600")
    [(name, (req_id, cd))] = decode(msg.contract_data(8, mapping.contract_fields(PUT), details, decode.version))
    assert name == "contractDetails" and req_id == 8
    assert cd.contract.conId == mapping.encode_con_id(PUT) and cd.contract.lastTradeDateOrContractMonth == "20220302"
    assert cd.minTick == 0.05 and cd.underConId == 416904 and cd.contract.tradingClass == "SPXW"
    [(name, args)] = decode(msg.sec_def_opt_params(9, "SMART", 416904, "SPXW", "100", ["20220302"], [4300.0, 4305.0]))
    assert name == "securityDefinitionOptionParameter" and args[-2:] == (["20220302"], [4300.0, 4305.0])
    assert decode(msg.sec_def_opt_params_end(9)) == [("securityDefinitionOptionParameterEnd", (9,))]


def test_account_messages_decode(decode):
    [(name, (account, contract, qty, avg))] = decode(msg.position("DU1", mapping.contract_fields(PUT), -2.0, 125.0))
    assert name == "position" and (account, qty, avg) == ("DU1", -2.0, 125.0) and contract.right == "P"
    [(name, args)] = decode(msg.portfolio_value(mapping.contract_fields(PUT), -2.0, 1.2, -240.0, 125.0, 10.0, 0.0, "DU1"))
    assert name == "updatePortfolio" and args[1:] == (-2.0, 1.2, -240.0, 125.0, 10.0, 0.0, "DU1")
    assert decode(msg.account_value("NetLiquidation", "1000.00", "USD", "DU1")) == [
        ("updateAccountValue", ("NetLiquidation", "1000.00", "USD", "DU1"))]
    assert decode(msg.account_update_multi(3, "DU1", "", "NetLiquidation", "1.00", "USD"))[0][0] == "accountUpdateMulti"
    assert decode(msg.account_summary(4, "DU1", "NetLiquidation", "1.00", "USD"))[0][0] == "accountSummary"
    for fields, name in ((msg.position_end(), "positionEnd"), (msg.account_download_end("DU1"), "accountDownloadEnd"),
                         (msg.open_order_end(), "openOrderEnd"), (msg.completed_orders_end(), "completedOrdersEnd"),
                         (msg.exec_details_end(5), "execDetailsEnd"), (msg.contract_data_end(5), "contractDetailsEnd"),
                         (msg.account_update_multi_end(5), "accountUpdateMultiEnd"),
                         (msg.account_summary_end(5), "accountSummaryEnd"), (msg.account_time("15:00"), "updateAccountTime"),
                         (msg.current_time(1646164800), "currentTime"), (msg.next_valid_id(3), "nextValidId"),
                         (msg.managed_accounts(["DU1"]), "managedAccounts")):
        assert decode(fields)[0][0] == name


def test_order_status_error_and_history_decode(decode):
    [(name, args)] = decode(msg.order_status(12, "Filled", 2.0, 0.0, -1.45, 1000005, 0, -1.45, 7))
    assert name == "orderStatus" and args == (12, "Filled", 2.0, 0.0, -1.45, 1000005, 0, -1.45, 7, "", 0.0)
    assert decode(msg.error(12, 201, "Order rejected", decode.version)) == [("error", (12, 201, "Order rejected", ""))]
    calls = decode(msg.historical_data(6, "a", "b", [("20220301", 1.0, 2.0, 0.5, 1.5, 0, 1.25, 0)]))
    assert [c[0] for c in calls] == ["historicalData", "historicalDataEnd"]
    assert calls[0][1][1].close == 1.5 and calls[0][1][1].date == "20220301"
