"""Pure translation between ib_async objects and our domain, and IB's error codes by what the
bot must do. No socket, no event loop: tested on plain objects.

Sign convention at IB: a BAG order BUY at a negative limit is a net credit, the same as our
combo limit (net debit per unit, negative = credit), so combos pass through unchanged. A
one-leg "combo" is sent as a plain option order: action = the leg's action, price = |limit|.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timezone
from decimal import Decimal

from ib_async import ComboLeg, Contract, Index, LimitOrder, Option

from bot.domain import (
    BadQuote,
    Fill,
    Greeks,
    Leg,
    OptionSpec,
    OrderState,
    OrderStatus,
    Position,
    Quote,
    Right,
)

UTC = timezone.utc
INDEX_CONIDS = {"SPX": 416904, "VIX": 13455763}
UNSET_DOUBLE = 1.7976931348623157e308

# --- error codes by what the operator (and the engine) must do (FAILURES.md) -------------
CONNECTIVITY_LOST = frozenset({1100, 2110})
CONNECTIVITY_RESTORED_DATA_LOST = frozenset({1101})
CONNECTIVITY_RESTORED = frozenset({1102})
TRANSIENT = frozenset({502, 504, 1300, 100, 162, 326, 103})
REJECTED = frozenset({201, 202, 110, 200, 10147, 10148})
DATA_BLOCKED = frozenset({2103, 2105, 2157, 354, 10168, 10089, 10167, 10197, 101})
INFO = frozenset({2104, 2106, 2107, 2108, 2119, 2158, 2109, 399, 10090, 300})


# what the adapter does beyond the kind (each a subset of the table above)
DATA_FARM_OK = frozenset({2104, 2106, 2158})  # market data connections fine again: data unblocked
ORDER_REFUSED = REJECTED | frozenset({103})  # the order behind the request id is refused (103: duplicate id)
CLIENT_ID_IN_USE = frozenset({326})
PACING = frozenset({100, 162})  # 100: over the message rate; 162 only when its text says pacing
CANCEL_CONFIRMED = frozenset({202})  # "order cancelled": IB's own word that a cancel happened


def refuses_order(code: int) -> bool:
    """Does this code, on an order's request id, refuse that order? (399 and 2109 are warnings.)"""
    return code in ORDER_REFUSED


def is_pacing(code: int, message: str) -> bool:
    """Over IB's message rate (the adapter slows its throttle down)."""
    return code in PACING and (code == 100 or "pacing" in message.lower())


def classify(code: int) -> str:
    """One table for every IB code the bot reacts to: lost | restored_data_lost | restored |
    transient | rejected | data_blocked | info | unknown."""
    for name, codes in (("lost", CONNECTIVITY_LOST), ("restored_data_lost", CONNECTIVITY_RESTORED_DATA_LOST),
                        ("restored", CONNECTIVITY_RESTORED), ("transient", TRANSIENT), ("rejected", REJECTED),
                        ("data_blocked", DATA_BLOCKED), ("info", INFO)):
        if code in codes:
            return name
    return "unknown"


# --- contracts ------------------------------------------------------------------------------
def index_contract(symbol: str) -> Contract:
    return Index(symbol, "CBOE", "USD", conId=INDEX_CONIDS.get(symbol, 0))


def option_contract(option: OptionSpec) -> Contract:
    """tradingClass is always set: SPX (AM, monthly) and SPXW (PM weeklies) share the symbol."""
    exchange = "CBOE" if option.symbol == "VIX" else "SMART"
    return Option(option.symbol, f"{option.expiry:%Y%m%d}", float(option.strike), option.right.value, exchange,
                  str(option.multiplier), "USD", tradingClass=option.trading_class)


def option_spec(contract: Contract) -> OptionSpec | None:
    """Our OptionSpec of an IB option contract (None for anything else)."""
    if contract.secType != "OPT":
        return None
    expiry = datetime.strptime(contract.lastTradeDateOrContractMonth[:8], "%Y%m%d").date()
    strike = Decimal(str(contract.strike)).normalize()
    if strike == strike.to_integral_value():
        strike = strike.quantize(Decimal(1))
    multiplier = int(float(contract.multiplier or 100))
    return OptionSpec(contract.symbol, expiry, strike, Right(contract.right[:1]), contract.tradingClass or contract.symbol,
                      multiplier)


def contract_differences(spec: OptionSpec, qualified: Contract) -> dict[str, str]:
    """FAILURES.md 18: what differs between the option asked for and the contract IB answered
    (field -> what came), checked before the contract is ever quoted or ordered: SPX (AM,
    monthly) and SPXW (PM, weekly) share a symbol, a strike and sometimes a date."""
    got = option_spec(qualified)
    if got is None:
        return {"secType": qualified.secType}
    fields = {"tradingClass": (got.trading_class, spec.trading_class),
              "lastTradeDate": (got.expiry, spec.expiry), "multiplier": (got.multiplier, spec.multiplier),
              "strike": (got.strike, spec.strike), "right": (got.right, spec.right)}
    return {name: str(came) for name, (came, asked) in fields.items() if came != asked}


def check_contract(spec: OptionSpec, qualified: Contract) -> None:
    """FAILURES.md 18: never order a contract whose class, expiry or multiplier differ."""
    differs = contract_differences(spec, qualified)
    if differs:
        raise ValueError(f"qualified contract {qualified} does not match {spec.key}: {differs}")


def combo_order(legs: list[Leg], conids: list[int], quantity: int, limit: Decimal,
                order_ref: str, account: str = "") -> tuple[Contract, LimitOrder]:
    """The contract and order for our combo. One leg: a plain option order; several: a BAG."""
    if len(legs) == 1:
        leg = legs[0]
        price = float(limit * leg.action.sign)  # net debit per unit -> the leg's own price
        contract = Contract(conId=conids[0], exchange="CBOE" if leg.option.symbol == "VIX" else "SMART")
        order = LimitOrder(leg.action.value, quantity * leg.ratio, price, orderRef=order_ref, tif="DAY",
                           account=account)
        return contract, order
    symbol = legs[0].option.symbol
    contract = Contract(symbol=symbol, secType="BAG", currency="USD", exchange="SMART",
                        comboLegs=[ComboLeg(conId=c, ratio=leg.ratio, action=leg.action.value, exchange="SMART")
                                   for leg, c in zip(legs, conids)])
    order = LimitOrder("BUY", quantity, float(limit), orderRef=order_ref, tif="DAY", account=account)
    return contract, order


def combo_limit(order, legs: list[Leg]) -> Decimal:
    """Our limit (net debit per unit) of an IB order placed by `combo_order`."""
    price = Decimal(str(order.lmtPrice))
    if len(legs) == 1:
        return price * legs[0].action.sign
    return price


_STATUS = {
    "PendingSubmit": OrderStatus.WORKING, "ApiPending": OrderStatus.WORKING, "PreSubmitted": OrderStatus.WORKING,
    "Submitted": OrderStatus.WORKING, "ApiUpdate": OrderStatus.WORKING, "PendingCancel": OrderStatus.WORKING,
    "Filled": OrderStatus.FILLED, "Cancelled": OrderStatus.CANCELLED, "ApiCancelled": OrderStatus.CANCELLED,
    "Inactive": OrderStatus.REJECTED, "ValidationError": OrderStatus.REJECTED,
}


def order_state(trade, legs: list[Leg] | None = None) -> OrderState:
    """Our OrderState of an ib_async Trade. A partly filled order that ended is reported by its
    fills (FAILURES.md 11); `filled`/`remaining` are in combo units."""
    st = trade.orderStatus
    status = _STATUS.get(st.status, OrderStatus.WORKING)
    filled = int(st.filled or 0)
    avg_fill = st.avgFillPrice
    if not filled and status.done:
        # a completed order (reqCompletedOrders, e.g. after a restart): IB sends no orderStatus
        # for it, only the order's filledQuantity; its price comes from its executions
        filled = _number(getattr(trade.order, "filledQuantity", 0))
        if filled and not avg_fill:
            avg_fill = _avg_fill_price(trade, filled)
    total = int(trade.order.totalQuantity or 0)
    if legs is not None and len(legs) == 1 and legs[0].ratio > 1:
        filled //= legs[0].ratio
        total //= legs[0].ratio
    limit = combo_limit(trade.order, legs) if legs is not None else Decimal(str(trade.order.lmtPrice))
    avg = None
    if filled and avg_fill:
        avg = Decimal(str(round(avg_fill, 4)))
        if legs is not None and len(legs) == 1:
            avg *= legs[0].action.sign
    reason = ""
    if trade.log:
        reason = next((e.message for e in reversed(trade.log) if e.errorCode), "")
    return OrderState(trade.order.orderRef, str(trade.order.permId or trade.order.orderId), status, limit,
                      filled, max(0, total - filled), avg, reason)


def _number(x) -> int:
    try:
        v = float(str(x))
    except (TypeError, ValueError):
        return 0
    return int(v) if math.isfinite(v) and 0 < v < UNSET_DOUBLE else 0


def _avg_fill_price(trade, filled: int) -> float | None:
    """Average price per unit in IB's terms (as orderStatus.avgFillPrice) from the executions
    attached to a trade: the BAG-level line when there is one, else the legs' net (combo) or
    the single contract's average."""
    fills = list(getattr(trade, "fills", None) or [])
    if not fills:
        return None
    bag = [f for f in fills if f.contract.secType == "BAG"]
    if bag:
        return float(bag[-1].execution.avgPrice) or None
    if trade.contract.secType == "BAG":
        net = sum(f.execution.price * f.execution.shares * (1 if f.execution.side == "BOT" else -1) for f in fills)
        return net / filled * (1 if trade.order.action == "BUY" else -1)
    shares = sum(f.execution.shares for f in fills)
    return sum(f.execution.price * f.execution.shares for f in fills) / shares if shares else None


def domain_fill(fill) -> Fill | None:
    """One leg execution as our Fill (signed quantity); None for the BAG-level report."""
    spec = option_spec(fill.contract)
    if spec is None:
        return None
    ex = fill.execution
    qty = int(ex.shares) * (1 if ex.side == "BOT" else -1)
    commission = Decimal(str(round(fill.commissionReport.commission or 0.0, 4))) if fill.commissionReport else Decimal(0)
    when = fill.time if fill.time.tzinfo else fill.time.replace(tzinfo=UTC)
    return Fill(ex.execId, ex.orderRef or "", spec, qty, Decimal(str(round(ex.price, 4))), when, commission)


def domain_position(position) -> Position | None:
    spec = option_spec(position.contract)
    if spec is None or not position.position:
        return None
    return Position(spec, int(position.position), Decimal(str(round(position.avgCost / spec.multiplier, 4))))


def _usable(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x) and x >= 0 and x < UNSET_DOUBLE


def quote_of(ticker) -> Quote:
    """A Quote from a ticker, refusing NaN, -1, unset and crossed prices, and missing greeks
    (FAILURES.md 15): BadQuote names what is wrong."""
    bid, ask = ticker.bid, ticker.ask
    if not (_usable(bid) and _usable(ask)) or ask <= 0:
        raise BadQuote(f"{ticker.contract.localSymbol or ticker.contract.symbol}: bid={bid} ask={ask}")
    g = ticker.modelGreeks
    greeks = None
    if g is not None and g.delta is not None and math.isfinite(g.delta) and abs(g.delta) <= 1:
        greeks = Greeks(g.delta, g.gamma or 0.0, g.vega or 0.0, g.theta or 0.0, g.impliedVol or 0.0)
    if greeks is None:
        raise BadQuote(f"{ticker.contract.localSymbol or ticker.contract.symbol}: no model greeks")
    und = g.undPrice if _usable(g.undPrice) else None
    return Quote.checked(bid, ask, greeks, und)


def index_value(ticker) -> float:
    """Last, else close, else the bid/ask mid of an index ticker; BadQuote when none is usable."""
    for v in (ticker.last, ticker.close, ticker.marketPrice() if hasattr(ticker, "marketPrice") else None):
        if _usable(v) and v > 0:
            return float(v)
    raise BadQuote(f"{ticker.contract.symbol}: no usable value (last={ticker.last} close={ticker.close})")


def parse_expiry(text: str) -> date:
    return datetime.strptime(text[:8], "%Y%m%d").date()

