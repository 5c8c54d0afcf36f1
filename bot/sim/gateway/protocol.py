"""TWS API wire protocol: framing, the handshake, message ids, field encoding and one parser
per request type. Pure functions and small dataclasses: no sockets, no clock.

Every message is a 4-byte big-endian length followed by NUL-terminated text fields. The field
orders below mirror the encoders of ib_async 2.1.0 / ib_insync 0.9.86 (`client.py`) for the
server versions this gateway speaks (MIN_VERSION..MAX_VERSION); when in doubt, those files
are the authority (docs/IB-PROTOCOL.md).
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Callable, Iterable

# The versions we answer. 176 is where both clients decode identically; 177 drops faProfile
# from openOrder/completedOrder/placeOrder, 178 adds pendingPriceRevision to execDetails.
MIN_VERSION = 176
MAX_VERSION = 178

UNSET_DOUBLE = 1.7976931348623157e308
UNSET_INTEGER = 2**31 - 1
UNSET_DOUBLE_TEXT = "1.7976931348623157E308"  # how IB writes "no value" in text fields

HEADER = struct.Struct(">I")
API_PREFIX = b"API\0"
MAX_FRAME = 16 * 1024 * 1024  # IB's own bound (ibapi MAX_MSG_LEN); the server's is far lower
MAX_NUMBER_TEXT = 64  # longest numeric field accepted: a 4,400-digit id is an attack, not an id


class ProtocolError(ValueError):
    """A message that does not follow the protocol (short, non-numeric where a number is due)."""


class In:
    """Ids of the requests a client sends (EClient message ids)."""

    REQ_MKT_DATA = 1
    CANCEL_MKT_DATA = 2
    PLACE_ORDER = 3
    CANCEL_ORDER = 4
    REQ_OPEN_ORDERS = 5
    REQ_ACCT_DATA = 6
    REQ_EXECUTIONS = 7
    REQ_IDS = 8
    REQ_CONTRACT_DATA = 9
    REQ_AUTO_OPEN_ORDERS = 15
    REQ_ALL_OPEN_ORDERS = 16
    REQ_MANAGED_ACCTS = 17
    REQ_HISTORICAL_DATA = 20
    CANCEL_HISTORICAL_DATA = 25
    REQ_CURRENT_TIME = 49
    REQ_GLOBAL_CANCEL = 58
    REQ_MARKET_DATA_TYPE = 59
    REQ_POSITIONS = 61
    REQ_ACCOUNT_SUMMARY = 62
    CANCEL_ACCOUNT_SUMMARY = 63
    CANCEL_POSITIONS = 64
    START_API = 71
    REQ_ACCOUNT_UPDATES_MULTI = 76
    CANCEL_ACCOUNT_UPDATES_MULTI = 77
    REQ_SEC_DEF_OPT_PARAMS = 78
    REQ_COMPLETED_ORDERS = 99


class Out:
    """Ids of the messages the server sends (EWrapper message ids)."""

    TICK_PRICE = 1
    TICK_SIZE = 2
    ORDER_STATUS = 3
    ERR_MSG = 4
    OPEN_ORDER = 5
    ACCT_VALUE = 6
    PORTFOLIO_VALUE = 7
    ACCT_UPDATE_TIME = 8
    NEXT_VALID_ID = 9
    CONTRACT_DATA = 10
    EXECUTION_DATA = 11
    MANAGED_ACCTS = 15
    HISTORICAL_DATA = 17
    TICK_OPTION_COMPUTATION = 21
    CURRENT_TIME = 49
    CONTRACT_DATA_END = 52
    OPEN_ORDER_END = 53
    ACCT_DOWNLOAD_END = 54
    EXECUTION_DATA_END = 55
    TICK_SNAPSHOT_END = 57
    MARKET_DATA_TYPE = 58
    COMMISSION_REPORT = 59
    POSITION_DATA = 61
    POSITION_END = 62
    ACCOUNT_SUMMARY = 63
    ACCOUNT_SUMMARY_END = 64
    ACCOUNT_UPDATE_MULTI = 73
    ACCOUNT_UPDATE_MULTI_END = 74
    SECURITY_DEFINITION_OPTION_PARAMETER = 75
    SECURITY_DEFINITION_OPTION_PARAMETER_END = 76
    COMPLETED_ORDER = 101
    COMPLETED_ORDERS_END = 102


# --------------------------------------------------------------------------- encoding


def encode_field(value) -> str:
    """One outgoing field as IB writes it: None -> "", bools as 1/0, Decimals without an
    exponent, IB's "unset" double as its usual text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value == UNSET_DOUBLE:
            return UNSET_DOUBLE_TEXT
        if value == math.inf:
            return "Infinite"
        return repr(value)
    if isinstance(value, Decimal):
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


def frame(fields: Iterable) -> bytes:
    """A length-prefixed message of NUL-terminated fields."""
    body = "".join(encode_field(f) + "\0" for f in fields).encode()
    return HEADER.pack(len(body)) + body


def split_frames(buffer: bytes) -> tuple[list[list[str]], bytes]:
    """Complete messages at the head of `buffer` (as field lists) and the incomplete rest."""
    messages = []
    while len(buffer) >= HEADER.size:
        (size,) = HEADER.unpack_from(buffer)
        if size > MAX_FRAME:
            raise ProtocolError(f"frame of {size} bytes")
        end = HEADER.size + size
        if len(buffer) < end:
            break
        messages.append(decode_body(buffer[HEADER.size:end]))
        buffer = buffer[end:]
    return messages, buffer


def decode_body(body: bytes) -> list[str]:
    fields = body.decode(errors="backslashreplace").split("\0")
    if fields and fields[-1] == "":
        fields.pop()  # the terminator of the last field
    return fields


# --------------------------------------------------------------------------- handshake

_VERSIONS = re.compile(r"v(\d{1,6})(?:\.\.(\d{1,6}))?(?:\s+(.*))?$", re.S)


@dataclass(frozen=True)
class Hello:
    """What a client offers: `v<min>..<max>[ <connect options>]`."""

    min_version: int
    max_version: int
    options: str = ""


def parse_hello(body: bytes) -> Hello:
    """The framed text after `API\\0`."""
    text = body.decode(errors="replace").rstrip("\0")
    m = _VERSIONS.match(text)
    if not m:
        raise ProtocolError(f"bad version offer {text!r}")
    lo = int(m.group(1))
    hi = int(m.group(2) or lo)
    return Hello(lo, hi, (m.group(3) or "").strip())


def negotiate_version(hello: Hello) -> int | None:
    """min(client max, MAX_VERSION), or None when the client cannot speak MIN_VERSION."""
    version = min(hello.max_version, MAX_VERSION)
    if version < MIN_VERSION or version < hello.min_version:
        return None
    return version


def connection_time_text(moment: datetime, zone) -> str:
    """`YYYYMMDD HH:MM:SS TZ` in the gateway's zone (IB writes the zone's abbreviation)."""
    local = moment.astimezone(zone)
    return local.strftime("%Y%m%d %H:%M:%S ") + (local.tzname() or "UTC")


def handshake_reply(version: int, moment: datetime, zone) -> bytes:
    """Exactly two fields: a third one breaks both clients' handshake check."""
    return frame([version, connection_time_text(moment, zone)])


# --------------------------------------------------------------------------- request parsing


class Fields:
    """A cursor over one message's fields with IB's typed reads ("" = unset)."""

    def __init__(self, fields: list[str], start: int = 0):
        self._f = fields
        self._i = start

    def str(self) -> str:
        if self._i >= len(self._f):
            raise ProtocolError(f"message too short: {self._f[:3]}... has {len(self._f)} fields")
        value = self._f[self._i]
        self._i += 1
        return value

    def int(self, default: int = 0) -> int:
        text = self.str()
        if text == "":
            return default
        if len(text) > MAX_NUMBER_TEXT:
            raise ProtocolError(f"not an integer: a field of {len(text)} characters")
        try:
            return int(text)
        except ValueError:
            try:
                return int(float(text))  # "3.0": some clients write whole numbers as floats
            except (ValueError, OverflowError):  # "inf", "1e999", "nan"
                raise ProtocolError(f"not an integer: {text!r}") from None

    def float(self, default: float | None = None) -> float | None:
        text = self.str()
        if text == "":
            return default
        if text == "Infinite":
            return math.inf  # IB's own spelling, sent for PEG BEST offsets only
        if len(text) > MAX_NUMBER_TEXT:
            raise ProtocolError(f"not a number: a field of {len(text)} characters")
        try:
            value = float(text)
        except ValueError:
            raise ProtocolError(f"not a number: {text!r}") from None
        if not math.isfinite(value):  # "inf", "nan", "1e999": Java's parser refuses them too
            raise ProtocolError(f"not a number: {text!r}")
        return default if value == UNSET_DOUBLE else value

    def bool(self) -> bool:
        text = self.str()
        if text in ("", "0", "false", "False"):
            return False
        if text in ("1", "true", "True"):
            return True
        try:
            return bool(int(text))
        except ValueError:
            raise ProtocolError(f"not a boolean: {text!r}") from None

    def skip(self, n: int) -> None:
        for _ in range(n):
            self.str()

    def contract(self) -> WireContract:
        return WireContract(
            con_id=self.int(),
            symbol=self.str(),
            sec_type=self.str(),
            last_trade_date=self.str(),
            strike=self.float(0.0) or 0.0,
            right=self.str(),
            multiplier=self.str(),
            exchange=self.str(),
            primary_exchange=self.str(),
            currency=self.str(),
            local_symbol=self.str(),
            trading_class=self.str(),
        )

    @property
    def remaining(self) -> int:
        return len(self._f) - self._i


@dataclass(frozen=True)
class WireComboLeg:
    con_id: int
    ratio: int
    action: str
    exchange: str = ""


@dataclass(frozen=True)
class WireContract:
    """The 12 contract fields every request carries, plus BAG legs where the request has them."""

    con_id: int = 0
    symbol: str = ""
    sec_type: str = ""
    last_trade_date: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    local_symbol: str = ""
    trading_class: str = ""
    combo_legs: tuple[WireComboLeg, ...] = ()
    include_expired: bool = False


@dataclass(frozen=True)
class Request:
    msg_id: int


@dataclass(frozen=True)
class StartApi(Request):
    client_id: int
    capabilities: str = ""


@dataclass(frozen=True)
class MktDataRequest(Request):
    req_id: int
    contract: WireContract
    generic_ticks: str
    snapshot: bool
    regulatory_snapshot: bool


@dataclass(frozen=True)
class ReqIdRequest(Request):
    """Requests that carry nothing but a request id (cancels, ends)."""

    req_id: int


@dataclass(frozen=True)
class NoArgs(Request):
    """Requests without arguments (reqOpenOrders, reqPositions, reqCurrentTime...)."""


@dataclass(frozen=True)
class WireOrder:
    """The placeOrder fields this gateway acts on or echoes back in openOrder."""

    action: str = ""
    total_quantity: float = 0.0
    order_type: str = ""
    lmt_price: float | None = None
    aux_price: float | None = None
    tif: str = ""
    oca_group: str = ""
    account: str = ""
    open_close: str = ""
    origin: int = 0
    order_ref: str = ""
    transmit: bool = True
    parent_id: int = 0
    outside_rth: bool = False
    hidden: bool = False
    good_after_time: str = ""
    good_till_date: str = ""
    model_code: str = ""
    what_if: bool = False
    algo_strategy: str = ""


@dataclass(frozen=True)
class PlaceOrderRequest(Request):
    order_id: int
    contract: WireContract
    order: WireOrder


@dataclass(frozen=True)
class CancelOrderRequest(Request):
    order_id: int
    manual_cancel_time: str = ""


@dataclass(frozen=True)
class AccountUpdatesRequest(Request):
    subscribe: bool
    account: str


@dataclass(frozen=True)
class ExecutionsRequest(Request):
    req_id: int
    client_id: int = 0
    account: str = ""
    time: str = ""
    symbol: str = ""
    sec_type: str = ""
    exchange: str = ""
    side: str = ""


@dataclass(frozen=True)
class IdsRequest(Request):
    num_ids: int


@dataclass(frozen=True)
class ContractDetailsRequest(Request):
    req_id: int
    contract: WireContract


@dataclass(frozen=True)
class FlagRequest(Request):
    """reqAutoOpenOrders(bool), reqMarketDataType(int)."""

    value: int


@dataclass(frozen=True)
class HistoricalDataRequest(Request):
    req_id: int
    contract: WireContract
    end: str
    bar_size: str
    duration: str
    use_rth: bool
    what_to_show: str
    format_date: int
    keep_up_to_date: bool


@dataclass(frozen=True)
class AccountSummaryRequest(Request):
    req_id: int
    group: str
    tags: str


@dataclass(frozen=True)
class AccountUpdatesMultiRequest(Request):
    req_id: int
    account: str
    model_code: str
    ledger_and_nlv: bool


@dataclass(frozen=True)
class SecDefOptParamsRequest(Request):
    req_id: int
    underlying_symbol: str
    fut_fop_exchange: str
    underlying_sec_type: str
    underlying_con_id: int


@dataclass(frozen=True)
class CompletedOrdersRequest(Request):
    api_only: bool


@dataclass(frozen=True)
class GenericRequest(Request):
    """Any other request a client can send: its request id (-1 when it has none) and the raw
    fields after it, read by the service that answers it (`services.py`)."""

    req_id: int
    args: tuple[str, ...] = ()

    def fields(self) -> Fields:
        return Fields(list(self.args))


@dataclass(frozen=True)
class UnknownRequest(Request):
    fields: tuple[str, ...] = field(default_factory=tuple)


# One parser per request type. Each receives a cursor positioned after the message id and
# the negotiated server version, and must consume the message exactly as the clients encode it.


def _start_api(f: Fields, version: int) -> StartApi:
    f.int()  # version 2
    client_id = f.int()
    caps = f.str() if f.remaining else ""
    return StartApi(In.START_API, client_id, caps)


def _bag_legs(f: Fields) -> tuple[WireComboLeg, ...]:
    """The 4-field legs of reqMktData / reqHistoricalData."""
    return tuple(WireComboLeg(f.int(), f.int(), f.str(), f.str()) for _ in range(f.int()))


def _skip_delta_neutral(f: Fields) -> None:
    if f.bool():
        f.skip(3)  # conId, delta, price


def _req_mkt_data(f: Fields, version: int) -> MktDataRequest:
    f.int()  # version 11
    req_id = f.int()
    contract = f.contract()
    if contract.sec_type == "BAG":
        contract = _with_legs(contract, _bag_legs(f))
    _skip_delta_neutral(f)
    generic = f.str()
    snapshot = f.bool()
    regulatory = f.bool()
    f.str()  # mktDataOptions
    return MktDataRequest(In.REQ_MKT_DATA, req_id, contract, generic, snapshot, regulatory)


def _with_legs(c: WireContract, legs: tuple[WireComboLeg, ...]) -> WireContract:
    return WireContract(**{**c.__dict__, "combo_legs": legs})


def _versioned_req_id(msg_id: int) -> Callable[[Fields, int], ReqIdRequest]:
    def parse(f: Fields, version: int) -> ReqIdRequest:
        f.int()  # version
        return ReqIdRequest(msg_id, f.int())

    return parse


def _no_args(msg_id: int, versioned: bool = True) -> Callable[[Fields, int], NoArgs]:
    def parse(f: Fields, version: int) -> NoArgs:
        if versioned and f.remaining:
            f.int()
        return NoArgs(msg_id)

    return parse


# Field counts of the order conditions (after the condType field), from the clients'
# OrderCondition dataclasses: Price, Time, Margin, Execution, Volume, PercentChange.
CONDITION_FIELDS = {1: 6, 3: 3, 4: 3, 5: 4, 6: 5, 7: 5}


def _place_order(f: Fields, version: int) -> PlaceOrderRequest:
    """Walks the whole placeOrder message, conditional sections included, so that the fields
    the gateway needs (orderRef, whatIf...) are read at the right offsets."""
    order_id = f.int()
    contract = f.contract()
    f.skip(2)  # secIdType, secId
    action = f.str()
    total_quantity = f.float(0.0) or 0.0
    order_type = f.str()
    lmt_price = f.float()
    aux_price = f.float()
    tif = f.str()
    oca_group = f.str()
    account = f.str()
    open_close = f.str()
    origin = f.int()
    order_ref = f.str()
    transmit = f.bool()
    parent_id = f.int()
    f.skip(4)  # blockOrder, sweepToFill, displaySize, triggerMethod
    outside_rth = f.bool()
    hidden = f.bool()
    if contract.sec_type == "BAG":
        legs = []
        for _ in range(f.int()):
            con_id, ratio, leg_action, leg_exchange = f.int(), f.int(), f.str(), f.str()
            f.skip(4)  # openClose, shortSaleSlot, designatedLocation, exemptCode
            legs.append(WireComboLeg(con_id, ratio, leg_action, leg_exchange))
        contract = _with_legs(contract, tuple(legs))
        f.skip(f.int())  # orderComboLegs prices
        f.skip(2 * f.int())  # smartComboRoutingParams
    f.str()  # deprecated sharesAllocation
    f.str()  # discretionaryAmt
    good_after_time = f.str()
    good_till_date = f.str()
    f.skip(3)  # faGroup, faMethod, faPercentage
    if version < 177:
        f.str()  # faProfile
    model_code = f.str()
    # shortSaleSlot .. volatilityType: 21 fields, then the delta-neutral order type and aux
    f.skip(21)
    delta_neutral_type = f.str()
    f.str()  # deltaNeutralAuxPrice
    if delta_neutral_type:
        f.skip(8)
    f.skip(6)  # continuousUpdate, referencePriceType, trailStopPrice, trailingPercent, scale sizes
    scale_increment = f.float()
    if scale_increment is not None and 0 < scale_increment < UNSET_DOUBLE:
        f.skip(7)
    f.skip(3)  # scaleTable, activeStartTime, activeStopTime
    if f.str():  # hedgeType
        f.str()  # hedgeParam
    f.skip(4)  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
    _skip_delta_neutral(f)
    algo_strategy = f.str()
    if algo_strategy:
        f.skip(2 * f.int())
    f.str()  # algoId
    what_if = f.bool()
    f.skip(4)  # orderMiscOptions, solicited, randomizeSize, randomizePrice
    if order_type in ("PEG BENCH", "PEGBENCH"):
        f.skip(5)
    conditions = f.int()
    for _ in range(conditions):
        kind = f.int()
        if kind not in CONDITION_FIELDS:
            raise ProtocolError(f"unknown order condition type {kind}")
        f.skip(CONDITION_FIELDS[kind])
    if conditions:
        f.skip(2)  # conditionsIgnoreRth, conditionsCancelOrder
    f.skip(19)  # adjustedOrderType .. usePriceMgmtAlgo
    for min_version in (158, 160, 162, 166, 169):  # duration, postToAts, autoCancelParent, ...
        if version >= min_version:
            f.str()
    if version >= 170:
        if contract.exchange == "IBKRATS":
            f.str()
        if order_type in ("PEG BEST", "PEGBEST"):
            f.str()  # minCompeteSize
            if f.str() == "Infinite":  # competeAgainstBestOffset "up to mid": mid offsets follow
                f.skip(2)
        elif order_type in ("PEG MID", "PEGMID"):
            f.skip(2)
    order = WireOrder(
        action=action, total_quantity=total_quantity, order_type=order_type, lmt_price=lmt_price,
        aux_price=aux_price, tif=tif, oca_group=oca_group, account=account, open_close=open_close,
        origin=origin, order_ref=order_ref, transmit=transmit, parent_id=parent_id,
        outside_rth=outside_rth, hidden=hidden, good_after_time=good_after_time,
        good_till_date=good_till_date, model_code=model_code, what_if=what_if,
        algo_strategy=algo_strategy,
    )
    return PlaceOrderRequest(In.PLACE_ORDER, order_id, contract, order)


def _cancel_order(f: Fields, version: int) -> CancelOrderRequest:
    f.int()  # version 1
    order_id = f.int()
    manual = f.str() if version >= 169 and f.remaining else ""
    return CancelOrderRequest(In.CANCEL_ORDER, order_id, manual)


def _account_updates(f: Fields, version: int) -> AccountUpdatesRequest:
    f.int()  # version 2
    return AccountUpdatesRequest(In.REQ_ACCT_DATA, f.bool(), f.str())


def _executions(f: Fields, version: int) -> ExecutionsRequest:
    f.int()  # version 3
    return ExecutionsRequest(In.REQ_EXECUTIONS, f.int(), f.int(), f.str(), f.str(), f.str(), f.str(), f.str(), f.str())


def _ids(f: Fields, version: int) -> IdsRequest:
    f.int()  # version 1
    return IdsRequest(In.REQ_IDS, f.int())


def _contract_details(f: Fields, version: int) -> ContractDetailsRequest:
    f.int()  # version 8
    req_id = f.int()
    contract = f.contract()
    include_expired = f.bool()
    f.skip(2)  # secIdType, secId
    if version >= 176:
        f.str()  # issuerId
    contract = WireContract(**{**contract.__dict__, "include_expired": include_expired})
    return ContractDetailsRequest(In.REQ_CONTRACT_DATA, req_id, contract)


def _flag(msg_id: int) -> Callable[[Fields, int], FlagRequest]:
    def parse(f: Fields, version: int) -> FlagRequest:
        f.int()  # version 1
        return FlagRequest(msg_id, f.int())

    return parse


def _historical_data(f: Fields, version: int) -> HistoricalDataRequest:
    req_id = f.int()  # no version field since server version 124
    contract = f.contract()
    include_expired = f.bool()
    end, bar_size, duration = f.str(), f.str(), f.str()
    use_rth = f.bool()
    what_to_show = f.str()
    format_date = f.int(1)
    if contract.sec_type == "BAG":
        contract = _with_legs(contract, _bag_legs(f))
    keep_up_to_date = f.bool()
    f.str()  # chartOptions
    contract = WireContract(**{**contract.__dict__, "include_expired": include_expired})
    return HistoricalDataRequest(
        In.REQ_HISTORICAL_DATA, req_id, contract, end, bar_size, duration, use_rth, what_to_show,
        format_date, keep_up_to_date,
    )


def _account_summary(f: Fields, version: int) -> AccountSummaryRequest:
    f.int()  # version 1
    return AccountSummaryRequest(In.REQ_ACCOUNT_SUMMARY, f.int(), f.str(), f.str())


def _account_updates_multi(f: Fields, version: int) -> AccountUpdatesMultiRequest:
    f.int()  # version 1
    return AccountUpdatesMultiRequest(In.REQ_ACCOUNT_UPDATES_MULTI, f.int(), f.str(), f.str(), f.bool())


def _sec_def_opt_params(f: Fields, version: int) -> SecDefOptParamsRequest:
    return SecDefOptParamsRequest(In.REQ_SEC_DEF_OPT_PARAMS, f.int(), f.str(), f.str(), f.str(), f.int())


def _completed_orders(f: Fields, version: int) -> CompletedOrdersRequest:
    return CompletedOrdersRequest(In.REQ_COMPLETED_ORDERS, f.bool())


REQUEST_PARSERS: dict[int, Callable[[Fields, int], Request]] = {
    In.START_API: _start_api,
    In.REQ_MKT_DATA: _req_mkt_data,
    In.CANCEL_MKT_DATA: _versioned_req_id(In.CANCEL_MKT_DATA),
    In.PLACE_ORDER: _place_order,
    In.CANCEL_ORDER: _cancel_order,
    In.REQ_OPEN_ORDERS: _no_args(In.REQ_OPEN_ORDERS),
    In.REQ_ACCT_DATA: _account_updates,
    In.REQ_EXECUTIONS: _executions,
    In.REQ_IDS: _ids,
    In.REQ_CONTRACT_DATA: _contract_details,
    In.REQ_AUTO_OPEN_ORDERS: _flag(In.REQ_AUTO_OPEN_ORDERS),
    In.REQ_ALL_OPEN_ORDERS: _no_args(In.REQ_ALL_OPEN_ORDERS),
    In.REQ_MANAGED_ACCTS: _no_args(In.REQ_MANAGED_ACCTS),
    In.REQ_HISTORICAL_DATA: _historical_data,
    In.CANCEL_HISTORICAL_DATA: _versioned_req_id(In.CANCEL_HISTORICAL_DATA),
    In.REQ_CURRENT_TIME: _no_args(In.REQ_CURRENT_TIME),
    In.REQ_GLOBAL_CANCEL: _no_args(In.REQ_GLOBAL_CANCEL),
    In.REQ_MARKET_DATA_TYPE: _flag(In.REQ_MARKET_DATA_TYPE),
    In.REQ_POSITIONS: _no_args(In.REQ_POSITIONS),
    In.REQ_ACCOUNT_SUMMARY: _account_summary,
    In.CANCEL_ACCOUNT_SUMMARY: _versioned_req_id(In.CANCEL_ACCOUNT_SUMMARY),
    In.CANCEL_POSITIONS: _no_args(In.CANCEL_POSITIONS),
    In.REQ_ACCOUNT_UPDATES_MULTI: _account_updates_multi,
    In.CANCEL_ACCOUNT_UPDATES_MULTI: _versioned_req_id(In.CANCEL_ACCOUNT_UPDATES_MULTI),
    In.REQ_SEC_DEF_OPT_PARAMS: _sec_def_opt_params,
    In.REQ_COMPLETED_ORDERS: _completed_orders,
}


# Requests whose second field is the request id (no version field since the server versions
# this gateway speaks); every other request with an id carries it third, after its version.
UNVERSIONED = frozenset({3, 20, 22, *range(78, 105)})
NO_REQUEST_ID = frozenset({5, 6, 8, 12, 13, 14, 15, 16, 17, 18, 24, 49, 58, 59, 61, 64, 65, 66, 71, 72, 73,
                           80, 82, 85, 91, 99})


def request_id_of(fields: list[str]) -> int:
    """The request (or order) id a possibly malformed message names, for the error answering
    it; -1 when it names none or the field is not a plain integer."""
    try:
        msg_id = int(fields[0]) if len(fields[0]) <= MAX_NUMBER_TEXT else -1
    except (ValueError, IndexError):
        return -1
    if msg_id in NO_REQUEST_ID:
        return -1
    index = 1 if msg_id in UNVERSIONED else 2
    text = fields[index] if index < len(fields) else ""
    if len(text) > 10 or not text.lstrip("-").isdigit():
        return -1
    return int(text)


def _generic(msg_id: int) -> Callable[[Fields, int], GenericRequest]:
    def parse(f: Fields, version: int) -> GenericRequest:
        if msg_id not in UNVERSIONED:
            f.int()  # version
        if msg_id == 19:  # replaceFA: faData, cxml, then the request id
            fa_data, cxml = f.str(), f.str()
            return GenericRequest(msg_id, f.int(-1), (fa_data, cxml))
        req_id = -1 if msg_id in NO_REQUEST_ID else f.int(-1)
        rest = []
        while f.remaining:
            rest.append(f.str())
        return GenericRequest(msg_id, req_id, tuple(rest))

    return parse


# every other id an EClient at server version 176..178 sends (ib_async 2.1 client.py)
GENERIC_IDS = (10, 11, 12, 13, 14, 18, 19, 21, 22, 23, 24, *range(50, 58), *range(65, 71), 72, 73, 74, 75,
               *range(79, 99), *range(100, 105))
for _id in GENERIC_IDS:
    REQUEST_PARSERS.setdefault(_id, _generic(_id))


def parse_request(fields: list[str], version: int, strict: bool = False) -> Request:
    """The request a message carries; `UnknownRequest` for ids this gateway does not serve.
    Raises ProtocolError when a known request is malformed (with `strict`, also when fields
    are left over: the parser and the client's encoder disagree)."""
    if not fields:
        raise ProtocolError("empty message")
    try:
        if len(fields[0]) > MAX_NUMBER_TEXT:
            raise ValueError
        msg_id = int(fields[0])
    except ValueError:
        raise ProtocolError(f"bad message id {fields[0][:20]!r}") from None
    parser = REQUEST_PARSERS.get(msg_id)
    if parser is None:
        return UnknownRequest(msg_id, tuple(fields))
    cursor = Fields(fields, 1)
    request = parser(cursor, version)
    if strict and cursor.remaining:
        raise ProtocolError(f"message {msg_id}: {cursor.remaining} fields left over")
    return request
