"""Translation between IB contract/order fields and the domain (`bot.domain`): pure functions.

Instruments the gateway knows:
- `Index("SPX")` (IND, CBOE, conId 416904) and `Index("VIX")` (IND, CBOE, conId 13455763);
- options as `OptionSpec`: SPXW (PM, every session), SPX (AM monthly, third Friday), VIX
  (monthly, the VX expiry) and VIXW (weekly Wednesdays); OPT, SMART/CBOE, multiplier 100;
- `Future(expiry)`: the monthly VX futures (FUT, CFE, multiplier 1000);
- `Bag(symbol, legs)`: a combo (BAG) of options, legs as IB defines them;
- `Stock("SPY")`, `Stock("QQQ")` (`bot.sim.equities`) and their options (trading class = symbol).

Option and future conIds are a deterministic, reversible encoding (`encode_con_id` /
`decode_con_id`) that fits in 31 bits, so every client and every restart sees the same ids.

Orders use the one sign convention of the domain: the exchange takes legs plus a limit that is
the net debit per unit (negative = credit). An IB BAG BUY at limit L is those legs at L (so a
negative L is a credit); a BAG SELL at L is the legs reversed at -L; a single-leg OPT order is
a one-leg combo (BUY at L = pay L; SELL at L = the reversed leg at -L, i.e. receive L).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Protocol, Union

from bot.domain import Action, Leg, OptionSpec, Quote, Right, spx_option_tick
from bot.sim.equities import Stock

from .protocol import WireContract, WireOrder

SPX_CON_ID = 416904
VIX_CON_ID = 13455763
INDEX_CON_IDS = {"SPX": SPX_CON_ID, "VIX": VIX_CON_ID}
INDEX_NAMES = {"SPX": "S&P 500 Stock Index", "VIX": "CBOE Volatility Index"}
# The conId IB reports for SPX combos; the VIX one is made up (no real one was at hand).
BAG_CON_IDS = {"SPX": 28812380, "VIX": 28812381}

CLASSES = ("SPXW", "SPX", "VIX", "VIXW")  # order = code in the conId encoding: do not reorder
CLASS_SYMBOL = {"SPXW": "SPX", "SPX": "SPX", "VIX": "VIX", "VIXW": "VIX", "SPY": "SPY", "QQQ": "QQQ"}
SYMBOL_CLASSES = {"SPX": ("SPXW", "SPX"), "VIX": ("VIX", "VIXW"), "SPY": ("SPY",), "QQQ": ("QQQ",)}
STRIKE_STEP = {"SPXW": Decimal(5), "SPX": Decimal(5), "VIX": Decimal("0.5"), "VIXW": Decimal("0.5"),
               "SPY": Decimal(1), "QQQ": Decimal(1)}
STOCK_CON_IDS = {"SPY": 756733, "QQQ": 320227571}  # IB's real conIds (equities.EQUITIES)
STOCK_EXCHANGES = ("SMART", "ARCA", "NASDAQ", "ISLAND", "NYSE")
EQUITY_CLASSES = ("SPY", "QQQ")
OPTION_MULTIPLIER = 100
FUTURE_MULTIPLIER = 1000
FUTURE_TICK = Decimal("0.05")

# conId layout (all < 2**31): [0, FUTURE_BASE) real IB ids, [FUTURE_BASE, OPTION_BASE) VX
# futures by expiry day, [OPTION_BASE, 2**31) options by (class, right, expiry day, strike).
EPOCH = date(1990, 1, 1)
N_DAYS = 29220  # expiries 1990-01-01 .. 2069-12-31
N_STRIKES = 8000  # strike units: SPX 5 .. 39995 points, VIX 0.5 .. 3999.5
FUTURE_BASE = 100_000_000
OPTION_BASE = 2**27
assert FUTURE_BASE + N_DAYS < OPTION_BASE
assert OPTION_BASE + len(CLASSES) * 2 * N_DAYS * N_STRIKES < 2**31
# equity options above the index options: (class, right, expiry day from 2015, $1 strike)
EQUITY_OPTION_BASE = OPTION_BASE + len(CLASSES) * 2 * N_DAYS * N_STRIKES
EQUITY_EPOCH = date(2015, 1, 1)
N_EQUITY_DAYS = 20089  # 2015-01-01 .. 2069-12-31
N_EQUITY_STRIKES = 1000  # $1 .. $999
assert EQUITY_OPTION_BASE + len(EQUITY_CLASSES) * 2 * N_EQUITY_DAYS * N_EQUITY_STRIKES < 2**31

MONTH_CODES = "FGHJKMNQUVXZ"
EXCHANGES_OPT = ("SMART", "CBOE")


class MappingError(Exception):
    """A request that cannot be mapped; `code` is the IB error code to answer with."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Index:
    symbol: str  # SPX | VIX


@dataclass(frozen=True)
class Future:
    """A monthly VX future, by its expiry (final settlement) date."""

    expiry: date


@dataclass(frozen=True)
class Bag:
    """A combo as IB defines it: legs with BUY/SELL actions and ratios."""

    symbol: str
    legs: tuple[Leg, ...]


Instrument = Union[Index, Stock, Future, OptionSpec, Bag]


# --------------------------------------------------------------------------- conIds


def _days(d: date) -> int:
    return (d - EPOCH).days


def encode_con_id(inst: Instrument) -> int | None:
    """The conId of an instrument, or None when it is not encodable (strike off the class's
    grid, expiry outside 1990..2069): such a contract is not listed."""
    if isinstance(inst, Index):
        return INDEX_CON_IDS.get(inst.symbol)
    if isinstance(inst, Stock):
        return STOCK_CON_IDS.get(inst.symbol)
    if isinstance(inst, Bag):
        return BAG_CON_IDS.get(inst.symbol)
    if isinstance(inst, Future):
        day = _days(inst.expiry)
        return FUTURE_BASE + day if 0 <= day < N_DAYS else None
    tclass = inst.trading_class
    if tclass in EQUITY_CLASSES:
        return _encode_equity_option(inst)
    if tclass not in CLASSES:
        return None
    try:
        units = inst.strike / STRIKE_STEP[tclass]
    except InvalidOperation:
        return None
    day = _days(inst.expiry)
    if units != units.to_integral_value() or not (1 <= units < N_STRIKES) or not (0 <= day < N_DAYS):
        return None
    right = 0 if inst.right is Right.CALL else 1
    code = ((CLASSES.index(tclass) * 2 + right) * N_DAYS + day) * N_STRIKES + int(units)
    return OPTION_BASE + code


def _encode_equity_option(inst: OptionSpec) -> int | None:
    units, day = inst.strike, (inst.expiry - EQUITY_EPOCH).days
    if units != units.to_integral_value() or not (1 <= units < N_EQUITY_STRIKES) or not (0 <= day < N_EQUITY_DAYS):
        return None
    right = 0 if inst.right is Right.CALL else 1
    code = ((EQUITY_CLASSES.index(inst.trading_class) * 2 + right) * N_EQUITY_DAYS + day) * N_EQUITY_STRIKES + int(units)
    return EQUITY_OPTION_BASE + code


def _decode_equity_option(con_id: int) -> OptionSpec | None:
    code = con_id - EQUITY_OPTION_BASE
    if not (0 <= code < len(EQUITY_CLASSES) * 2 * N_EQUITY_DAYS * N_EQUITY_STRIKES):
        return None
    rest, units = divmod(code, N_EQUITY_STRIKES)
    rest, day = divmod(rest, N_EQUITY_DAYS)
    class_code, right = divmod(rest, 2)
    if units == 0:
        return None
    tclass = EQUITY_CLASSES[class_code]
    return OptionSpec(tclass, EQUITY_EPOCH + timedelta(days=day), Decimal(units),
                      Right.CALL if right == 0 else Right.PUT, tclass)


def decode_con_id(con_id: int) -> Instrument | None:
    """The instrument a conId names (indexes, VX futures and options), or None."""
    for symbol, known in INDEX_CON_IDS.items():
        if con_id == known:
            return Index(symbol)
    for symbol, known in STOCK_CON_IDS.items():
        if con_id == known:
            return Stock(symbol)
    if FUTURE_BASE <= con_id < FUTURE_BASE + N_DAYS:
        return Future(EPOCH + timedelta(days=con_id - FUTURE_BASE))
    if con_id >= EQUITY_OPTION_BASE:
        return _decode_equity_option(con_id)
    code = con_id - OPTION_BASE
    if not (0 <= code < len(CLASSES) * 2 * N_DAYS * N_STRIKES):
        return None
    rest, units = divmod(code, N_STRIKES)
    rest, day = divmod(rest, N_DAYS)
    class_code, right = divmod(rest, 2)
    if units == 0:
        return None
    tclass = CLASSES[class_code]
    strike = (STRIKE_STEP[tclass] * units).normalize()
    return OptionSpec(
        CLASS_SYMBOL[tclass], EPOCH + timedelta(days=day), strike if strike % 1 else Decimal(int(strike)),
        Right.CALL if right == 0 else Right.PUT, tclass,
    )


# --------------------------------------------------------------------------- contract fields


@dataclass(frozen=True)
class ContractFields:
    """What IB reports for a contract (the common 11 fields plus primaryExchange)."""

    con_id: int
    symbol: str
    sec_type: str
    last_trade_date: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    currency: str = "USD"
    local_symbol: str = ""
    trading_class: str = ""
    primary_exchange: str = ""

    def wire(self, exchange: str | None = None) -> list:
        """conId, symbol, secType, lastTradeDate, strike, right, multiplier, exchange,
        currency, localSymbol, tradingClass: the order of execDetails, position, openOrder."""
        return [
            self.con_id, self.symbol, self.sec_type, self.last_trade_date, self.strike, self.right,
            self.multiplier, self.exchange if exchange is None else exchange, self.currency,
            self.local_symbol, self.trading_class,
        ]


def occ_symbol(opt: OptionSpec) -> str:
    """IB's localSymbol for an option: OCC style, root padded to 6 (`SPXW  220302P04300000`)."""
    thousandths = int(opt.strike * 1000)
    return f"{opt.trading_class:<6}{opt.expiry:%y%m%d}{opt.right.value}{thousandths:08d}"


_OCC = re.compile(r"^([A-Z]{1,6})\s*(\d{6})([CP])(\d{8})$")


def parse_occ_symbol(text: str) -> OptionSpec | None:
    m = _OCC.match(text.strip())
    if not m or m.group(1) not in CLASSES:
        return None
    tclass = m.group(1)
    expiry = datetime.strptime(m.group(2), "%y%m%d").date()
    strike = (Decimal(int(m.group(4))) / 1000).normalize()
    strike = strike if strike % 1 else Decimal(int(strike))
    return OptionSpec(CLASS_SYMBOL[tclass], expiry, strike, Right(m.group(3)), tclass)


def future_local_symbol(expiry: date) -> str:
    """`VXH2` for the March 2022 VX future (IB's local symbol: month code + year digit)."""
    return f"VX{MONTH_CODES[expiry.month - 1]}{expiry.year % 10}"


def contract_fields(inst: Instrument, exchange: str | None = None) -> ContractFields:
    """The contract IB would report for an instrument; `exchange` overrides the default."""
    con_id = encode_con_id(inst) or 0
    if isinstance(inst, Index):
        return ContractFields(con_id, inst.symbol, "IND", exchange=exchange or "CBOE", primary_exchange="CBOE")
    if isinstance(inst, Future):
        return ContractFields(
            con_id, "VIX", "FUT", f"{inst.expiry:%Y%m%d}", 0.0, "", str(FUTURE_MULTIPLIER),
            exchange or "CFE", "USD", future_local_symbol(inst.expiry), "VX", "CFE",
        )
    if isinstance(inst, Bag):
        return ContractFields(con_id, inst.symbol, "BAG", exchange=exchange or "SMART")
    if isinstance(inst, Stock):
        primary = "NASDAQ" if inst.symbol == "QQQ" else "ARCA"
        return ContractFields(con_id, inst.symbol, "STK", exchange=exchange or "SMART", local_symbol=inst.symbol,
                              trading_class=inst.symbol, primary_exchange=primary)
    return ContractFields(
        con_id, inst.symbol, "OPT", f"{inst.expiry:%Y%m%d}", float(inst.strike), inst.right.value,
        str(OPTION_MULTIPLIER), exchange or "SMART", "USD", occ_symbol(inst), inst.trading_class,
        "CBOE",
    )


def combo_legs_description(bag: Bag) -> str:
    """IB's comboLegsDescrip: `conId|signed ratio` per leg."""
    return ",".join(f"{encode_con_id(leg.option)}|{leg.signed_ratio}" for leg in bag.legs)


# --------------------------------------------------------------------------- resolution


class Listing(Protocol):
    """What is listed now: the server implements it over the exchange, market and calendar."""

    def option_expiries(self, trading_class: str, include_expired: bool) -> list[date]:
        """Expiries to enumerate when a request gives none (nearest first)."""
        ...

    def is_option_expiry(self, trading_class: str, expiry: date, include_expired: bool) -> bool: ...

    def option_strikes(self, trading_class: str, expiry: date) -> list[Decimal]:
        """Strikes to enumerate when a request gives none."""
        ...

    def future_expiries(self) -> list[date]: ...


def _rights(text: str) -> tuple[Right, ...] | None:
    text = text.upper()
    if text in ("", "?"):
        return (Right.CALL, Right.PUT)
    if text in ("C", "CALL"):
        return (Right.CALL,)
    if text in ("P", "PUT"):
        return (Right.PUT,)
    return None


def _date_filter(text: str):
    """A predicate on expiry dates from lastTradeDateOrContractMonth ("", YYYYMM, YYYYMMDD)."""
    text = text.strip().split(" ")[0]
    if text == "":
        return lambda d: True
    if re.fullmatch(r"\d{8}", text):
        wanted = datetime.strptime(text, "%Y%m%d").date()
        return lambda d: d == wanted
    if re.fullmatch(r"\d{6}", text):
        return lambda d: f"{d:%Y%m}" == text
    return None


def _exact_date(text: str) -> date | None:
    text = text.strip().split(" ")[0]
    return datetime.strptime(text, "%Y%m%d").date() if re.fullmatch(r"\d{8}", text) else None


def _strike(value: float) -> Decimal | None:
    if not value:
        return None
    d = Decimal(str(value)).normalize()
    return d if d % 1 else Decimal(int(d))


def on_strike_grid(tclass: str, strike: Decimal) -> bool:
    return strike > 0 and strike % STRIKE_STEP[tclass] == 0


def resolve(wc: WireContract, listing: Listing, limit: int = 20_000) -> list[Instrument]:
    """Every listed instrument matching a request's contract (empty: no security definition).
    Raises MappingError when the request would match more than `limit` contracts."""
    if wc.con_id:
        return _resolve_con_id(wc, listing)
    sec_type = wc.sec_type.upper()
    symbol = wc.symbol.upper()
    if sec_type == "IND":
        return [Index(symbol)] if symbol in INDEX_CON_IDS and wc.exchange.upper() in ("", "CBOE", "SMART") else []
    if sec_type == "STK":
        ok = symbol in STOCK_CON_IDS and wc.exchange.upper() in ("",) + STOCK_EXCHANGES
        return [Stock(symbol)] if ok and wc.currency.upper() in ("", "USD") else []
    if sec_type == "OPT":
        return _resolve_options(wc, listing, limit)
    if sec_type == "FUT":
        return _resolve_futures(wc, listing)
    if sec_type == "BAG":
        bag = resolve_bag(wc, listing)
        return [bag] if bag else []
    return []


def _resolve_con_id(wc: WireContract, listing: Listing) -> list[Instrument]:
    inst = decode_con_id(wc.con_id)
    if inst is None:
        return []
    expected = {Index: "IND", Stock: "STK", Future: "FUT", OptionSpec: "OPT"}[type(inst)]
    if wc.sec_type and wc.sec_type.upper() != expected:
        return []
    if isinstance(inst, OptionSpec) and not listing.is_option_expiry(inst.trading_class, inst.expiry, wc.include_expired):
        return []
    if isinstance(inst, Future) and inst.expiry not in listing.future_expiries():
        return []
    return [inst]


def _resolve_options(wc: WireContract, listing: Listing, limit: int) -> list[Instrument]:
    if wc.local_symbol and not wc.symbol:
        spec = parse_occ_symbol(wc.local_symbol)
        if spec is None or not listing.is_option_expiry(spec.trading_class, spec.expiry, wc.include_expired):
            return []
        return [spec] if on_strike_grid(spec.trading_class, spec.strike) and encode_con_id(spec) else []
    symbol = wc.symbol.upper()
    classes = SYMBOL_CLASSES.get(symbol, ())
    if wc.trading_class:
        classes = tuple(c for c in classes if c == wc.trading_class.upper())
    rights = _rights(wc.right)
    accept_date = _date_filter(wc.last_trade_date)
    if not classes or rights is None or accept_date is None or wc.multiplier not in ("", str(OPTION_MULTIPLIER)):
        return []
    if wc.exchange.upper() not in ("",) + EXCHANGES_OPT:
        return []
    strike = _strike(wc.strike)
    exact = _exact_date(wc.last_trade_date)
    out: list[Instrument] = []
    for tclass in classes:
        if exact is not None:
            expiries = [exact] if listing.is_option_expiry(tclass, exact, wc.include_expired) else []
        else:
            expiries = [d for d in listing.option_expiries(tclass, wc.include_expired) if accept_date(d)]
        for expiry in expiries:
            if strike is not None:
                strikes = [strike] if on_strike_grid(tclass, strike) else []
            else:
                strikes = listing.option_strikes(tclass, expiry)
            for k in strikes:
                for right in rights:
                    spec = OptionSpec(CLASS_SYMBOL[tclass], expiry, k, right, tclass)
                    if encode_con_id(spec) is None:
                        continue
                    out.append(spec)
                    if len(out) > limit:
                        raise MappingError(200, f"the request matches more than {limit} contracts: give an expiry")
    return out


def _resolve_futures(wc: WireContract, listing: Listing) -> list[Instrument]:
    if wc.symbol.upper() not in ("VIX", "VX") or wc.exchange.upper() not in ("", "CFE", "CBOE"):
        return []
    if wc.multiplier not in ("", str(FUTURE_MULTIPLIER)):
        return []
    if wc.local_symbol:
        return [Future(e) for e in listing.future_expiries() if future_local_symbol(e) == wc.local_symbol.upper()]
    accept = _date_filter(wc.last_trade_date)
    if accept is None:
        return []
    return [Future(e) for e in listing.future_expiries() if accept(e)]


def resolve_bag(wc: WireContract, listing: Listing) -> Bag | None:
    """A BAG's legs, each named by conId; None when a leg is not a listed option."""
    if not wc.combo_legs:
        return None
    legs = []
    for leg in wc.combo_legs:
        inst = decode_con_id(leg.con_id)
        action = leg.action.upper()
        if not isinstance(inst, OptionSpec) or action not in ("BUY", "SELL") or leg.ratio <= 0:
            return None
        if not listing.is_option_expiry(inst.trading_class, inst.expiry, False):
            return None
        legs.append(Leg(inst, Action(action), leg.ratio))
    symbol = wc.symbol.upper() or legs[0].option.symbol
    if any(leg.option.symbol != symbol for leg in legs):
        return None
    return Bag(symbol, tuple(legs))


# --------------------------------------------------------------------------- orders


@dataclass(frozen=True)
class ExchangeOrder:
    """An IB order in the exchange's terms. `sign` turns exchange prices (net debit of `legs`)
    back into the client's terms: +1 for BUY, -1 for SELL (legs reversed)."""

    legs: tuple[Leg, ...]
    quantity: int
    limit: Decimal | None  # None: market order
    sign: int

    def ib_price(self, exchange_price: Decimal | float) -> float:
        return float(Decimal(str(exchange_price)) * self.sign)


def defined_legs(inst: Instrument) -> tuple[Leg, ...]:
    """The legs a BUY of the instrument buys."""
    if isinstance(inst, Bag):
        return inst.legs
    if isinstance(inst, (OptionSpec, Stock)):
        return (Leg(inst, Action.BUY, 1),)
    raise MappingError(201, "Order rejected - reason: the simulated exchange trades options, combos of options, "
                            "and the ETFs SPY and QQQ")


def is_equity(inst: Instrument) -> bool:
    """A stock, an ETF option or a combo of ETF options (traded in pennies, by the share)."""
    return isinstance(inst, Stock) or inst.symbol in EQUITY_CLASSES


EQUITY_TICK = Decimal("0.01")
ALGOS = ("", "Adaptive")  # IB's Adaptive algo is a limit (or market) order that works the spread: taken as such


def to_exchange_order(inst: Instrument, order: WireOrder) -> ExchangeOrder:
    """Legs, quantity and limit (net debit per unit) for the exchange; MappingError(code)
    for what IB would refuse."""
    legs = defined_legs(inst)
    action = order.action.upper()
    if action not in ("BUY", "SELL"):
        raise MappingError(201, f"Order rejected - reason: invalid action {order.action!r}")
    quantity = order.total_quantity
    if quantity <= 0:
        raise MappingError(434, "The order size cannot be zero")
    if quantity != int(quantity):
        raise MappingError(10243, "Fractional-sized order cannot be placed for this contract")
    order_type = order.order_type.upper()
    if order_type not in ("LMT", "MKT"):
        raise MappingError(387, f"Unsupported order type for this exchange and security type: {order.order_type}")
    if is_equity(inst) and order.algo_strategy not in ALGOS:
        raise MappingError(387, f"Unsupported algo strategy for this exchange and security type: {order.algo_strategy}")
    limit = None
    if order_type == "LMT":
        if order.lmt_price is None:
            raise MappingError(201, "Order rejected - reason: a limit order needs a limit price")
        limit = Decimal(str(round(order.lmt_price, 6))).normalize()
        if isinstance(inst, OptionSpec) and inst.symbol == "SPX":
            check_single_leg_tick(limit)
        if is_equity(inst) and limit % EQUITY_TICK != 0:
            raise MappingError(110, "The price does not conform to the minimum price variation for this contract.")
    sign = 1 if action == "BUY" else -1
    if sign < 0:
        legs = tuple(Leg(leg.option, leg.action.opposite(), leg.ratio) for leg in legs)
        limit = -limit if limit is not None else None
    return ExchangeOrder(legs, int(quantity), limit, sign)


def check_single_leg_tick(price: Decimal) -> None:
    """SPX options: 0.05 below $3, 0.10 from $3 (combos are checked by the exchange, 0.05)."""
    if price % spx_option_tick(price) != 0:
        raise MappingError(110, "The price does not conform to the minimum price variation for this contract.")


def marketable_limit(legs: tuple[Leg, ...], quotes: dict[str, Quote], tick: Decimal | None = None) -> Decimal:
    """The natural price of a combo (buy at the ask, sell at the bid), rounded on the tick
    grid (0.05; a cent for stocks and ETF options) toward paying more: how a market order is
    sent to an exchange that takes limits."""
    if tick is None:
        tick = EQUITY_TICK if any(is_equity(leg.option) for leg in legs) else Decimal("0.05")
    natural = Decimal(0)
    for leg in legs:
        q = quotes.get(leg.option.key)
        if q is None:
            raise MappingError(200, f"No security definition has been found for the request ({leg.option.key})")
        natural += leg.signed_ratio * (q.ask if leg.action is Action.BUY else q.bid)
    return (natural / tick).to_integral_value(rounding=ROUND_CEILING) * tick


def side_text(quantity: int) -> str:
    """IB execution side: BOT for a buy, SLD for a sell."""
    return "BOT" if quantity > 0 else "SLD"
