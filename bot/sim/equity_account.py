"""The paper account's side of stocks and ETF options (SPY, QQQ): what `SimExchange` asks when
an order or an expiry touches them. Index options never come here, so the bot's own SPX/VIX
path is what it was.

- **Ticks**: stocks and SPY/QQQ options (penny-pilot classes) trade in $0.01 at every price.
- **Commissions** (IB Pro): stocks fixed $0.005 a share, at least $1.00 and at most 1% of the
  trade's value an order (the exchange's `flat` schedule), or tiered $0.0035 a share (the
  first 300,000 shares of a month), at least $0.35, at most 1% (its `ib` schedule; exchange,
  clearing and regulatory fees are not modelled, as for options); ETF options by the
  exchange's option schedule, as for index options.
- **Margin check**: an order with an equity leg is accepted when, after it, the account's
  cash plus the market value of its stocks and equity options covers IB's initial margin of
  those positions (`bot.sim.margin`: Reg T 50% of a stock, the Cboe equity-option rule for
  naked shorts, covered calls free) plus the max-loss reserve the index options already need.
  Else 201 with IB's wording of an initial-margin shortfall.
- **Expiry** (OCC exercise by exception): at the close of its expiry date an equity option
  ITM by $0.01 or more against the underlying's closing price is exercised when long and
  assigned when short, for stock at the strike (100 shares a contract); the rest expire
  worthless. Early assignment is not modelled (dividends are a yield: no ex-date to trigger
  it). IB documents no API message for an assignment: an account sees its positions change
  and, in its executions, the option closed at 0.00 and the stock bought or sold at the
  strike, from no order of its own (orderId and permId 0; exchange ref `assignment` /
  `exercise`, which the gateway reports as the execution's orderRef), commission 0 (IB charges
  none on exercise or assignment of US equity options).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from bot.domain import Leg, Quote, Right
from bot.sim import equities
from bot.sim.equities import Stock, instrument_from_key, is_equity_key
from bot.sim.margin import Holding, requirement

EQUITY_TICK = Decimal("0.01")
STOCK_FIXED = (Decimal("0.005"), Decimal("1.00"))  # (per share, minimum per order)
STOCK_TIERED = (Decimal("0.0035"), Decimal("0.35"))
STOCK_MAX_FRACTION = Decimal("0.01")
ASSIGNMENT_REF, EXERCISE_REF = "assignment", "exercise"
REJECT_ORDER = 201


def is_equity_order(legs: list[Leg]) -> bool:
    return any(equities.is_equity(leg.option) for leg in legs)


def stock_commission(shares: int, price: Decimal, tiered: bool = False) -> Decimal:
    """IB's stock commission of one order, fixed ($0.005 a share, $1.00 minimum) or tiered
    ($0.0035, $0.35), at most 1% of the trade's value (the maximum wins when it is below the
    minimum), to the cent."""
    per_share, minimum = STOCK_TIERED if tiered else STOCK_FIXED
    each = max(per_share * abs(shares), minimum)
    return min(each, STOCK_MAX_FRACTION * abs(shares) * abs(price)).quantize(Decimal("0.01"))


def order_commissions(legs: list[Leg], fills: list[tuple[int, Decimal]], schedule) -> list[Decimal]:
    """Commission of each leg's execution: stock legs by `stock_commission`, option legs by the
    exchange's option schedule (its order minimum over the option legs)."""
    out: list[Decimal] = [Decimal(0)] * len(legs)
    options = [i for i, leg in enumerate(legs) if not isinstance(leg.option, Stock)]
    for i, value in zip(options, schedule.order_commissions([fills[i] for i in options],
                                                            [legs[i].option.symbol for i in options])):
        out[i] = value
    for i, leg in enumerate(legs):
        if isinstance(leg.option, Stock):
            out[i] = stock_commission(*fills[i], tiered=schedule.name == "ib")
    return out


def holdings(book: dict[str, int], quotes: dict[str, Quote], unders: dict[str, float]) -> list[Holding]:
    """Margin holdings of the equity positions of a book (key -> signed quantity)."""
    out = []
    for key, qty in book.items():
        if qty and is_equity_key(key):
            inst = instrument_from_key(key)
            q = quotes.get(key)
            mark = float(q.mid) if q is not None else 0.0
            out.append(Holding(inst, qty, mark, unders.get(inst.symbol, mark)))
    return out


def market_value(book: dict[str, int], quotes: dict[str, Quote]) -> float:
    """Market value (at mid) of the equity positions of a book."""
    total = 0.0
    for key, qty in book.items():
        q = quotes.get(key)
        if qty and q is not None and is_equity_key(key):
            total += float(q.mid) * instrument_from_key(key).multiplier * qty
    return total


def check_margin(exchange, book: dict[str, int], cash_after: float, index_reserve: float, t: datetime) -> None:
    """Refuse (201) an equity order the account cannot margin (module doc). `book` is the
    account's positions after the order, `index_reserve` the max loss its index options hold."""
    from bot.sim.exchange import ExchangeReject

    keys = [k for k, q in book.items() if q and is_equity_key(k)]
    quotes = exchange.price_options([instrument_from_key(k) for k in keys], t)
    unders = {s: equities.price_at(exchange.market, s, t) for s in equities.EQUITIES}
    need = requirement(holdings(book, quotes, unders))
    equity = cash_after + market_value(book, quotes)
    if equity - index_reserve < need - 1e-6:
        raise ExchangeReject(REJECT_ORDER, f"Your order is not accepted because your Equity with Loan Value of "
                                           f"[{equity - index_reserve:,.2f} USD] is insufficient to cover the "
                                           f"Initial Margin requirement of [{need:,.2f} USD]")


@dataclass(frozen=True)
class Expiry:
    """What an equity option's expiry does to the account: it leaves the book at `price`
    (intrinsic if exercised or assigned, else 0.00) at `when`; `deliveries` are the
    executions that follow ((key, signed quantity, price): the option closed at 0.00 and the
    stock at the strike), under orderRef `ref`; `cash` is what the stock costs (negative) or
    brings."""

    key: str
    qty: int
    price: Decimal
    when: datetime
    ref: str | None = None
    deliveries: tuple[tuple[str, int, Decimal], ...] = ()
    cash: Decimal = Decimal(0)


def expiries(positions, calendar, market, t: datetime) -> list[Expiry]:
    """The equity options among `positions` ((key, qty) pairs) expired by t, and what each
    does: at the close of its expiry day an option ITM by $0.01 or more is exercised (long) or
    assigned (short) into 100 shares at the strike (OCC's exercise by exception); a call buys
    for the long and sells for the short, a put the other way round. The exchange books them."""
    out = []
    for key, qty in positions:
        if not is_equity_key(key) or key.startswith(equities.STOCK_PREFIX):
            continue
        opt = instrument_from_key(key)
        listed = calendar.is_session(opt.expiry)
        when = calendar.spxw_expiry_time(opt.expiry) if listed else t
        if listed and when > t:
            continue
        close = equities.price_at(market, opt.symbol, when) if listed else 0.0
        if not (listed and opt.intrinsic(close) >= 0.01):
            out.append(Expiry(key, qty, Decimal("0.00"), when))
            continue
        shares = qty * opt.multiplier * (1 if opt.right is Right.CALL else -1)
        out.append(Expiry(key, qty, Decimal(f"{opt.intrinsic(close):.2f}"), when,
                          EXERCISE_REF if qty > 0 else ASSIGNMENT_REF,
                          ((opt.key, -qty, Decimal("0.00")), (Stock(opt.symbol).key, shares, opt.strike)),
                          -opt.strike * shares))
    return out
