"""Domain values shared by the strategy core, the engine and every broker adapter.

Frozen dataclasses, enums and Decimal prices: nothing here does I/O or reads the clock.

Sign conventions (one for the whole code base):
- A position quantity is signed: +long, -short.
- A combo (BAG) order is always *bought* as its legs define it; its limit price is the net
  debit per unit, so a negative limit is a net credit. Opening an iron condor is a combo of
  (SELL put, BUY lower put, SELL call, BUY higher call) with a negative limit.
- Money amounts are in dollars (multiplier applied); option prices are per share.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

SPX_MULTIPLIER = 100
TICK = Decimal("0.05")


class Right(str, enum.Enum):
    CALL = "C"
    PUT = "P"


class Action(str, enum.Enum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Action.BUY else -1

    def opposite(self) -> Action:
        return Action.SELL if self is Action.BUY else Action.BUY


class OrderStatus(str, enum.Enum):
    PENDING = "pending"  # intent stored, not yet acknowledged by the broker
    WORKING = "working"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def done(self) -> bool:
        return self in (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED)


class IntentStatus(str, enum.Enum):
    NEW = "new"  # stored, never sent
    SENT = "sent"  # handed to the broker (maybe acknowledged)
    FILLED = "filled"
    CANCELLED = "cancelled"  # cancelled with no fill (walk timed out, kill switch)
    REJECTED = "rejected"
    ABANDONED = "abandoned"  # found nowhere after a crash and no longer valid


TERMINAL_INTENT = {
    IntentStatus.FILLED,
    IntentStatus.CANCELLED,
    IntentStatus.REJECTED,
    IntentStatus.ABANDONED,
}


def round_to_tick(price: Decimal | float, tick: Decimal = TICK, mode: str = ROUND_HALF_UP) -> Decimal:
    """Round a price to a tick grid. mode: ROUND_HALF_UP, ROUND_FLOOR or ROUND_CEILING."""
    p = Decimal(str(price)) if not isinstance(price, Decimal) else price
    return (p / tick).to_integral_value(rounding=mode) * tick


def floor_tick(price: Decimal | float, tick: Decimal = TICK) -> Decimal:
    return round_to_tick(price, tick, ROUND_FLOOR)


def ceil_tick(price: Decimal | float, tick: Decimal = TICK) -> Decimal:
    return round_to_tick(price, tick, ROUND_CEILING)


def spx_option_tick(price: Decimal) -> Decimal:
    """SPX single-leg increment: 0.05 below $3, 0.10 at or above."""
    return Decimal("0.05") if abs(price) < 3 else Decimal("0.10")


@dataclass(frozen=True, order=True)
class OptionSpec:
    """One listed option. `trading_class` distinguishes SPXW (PM weekly) from SPX (AM)."""

    symbol: str  # underlying symbol: "SPX", "VIX", or an ETF of bot.sim.equities (SPY, QQQ)
    expiry: date
    strike: Decimal
    right: Right
    trading_class: str = "SPXW"
    multiplier: int = SPX_MULTIPLIER

    @cached_property
    def key(self) -> str:
        """Stable text key, used in stores and state files: SPXW 20220302 4300 P."""
        return f"{self.trading_class} {self.expiry:%Y%m%d} {self.strike.normalize():f} {self.right.value}"

    @classmethod
    def from_key(cls, key: str) -> OptionSpec:
        return _option_from_key(key)

    def intrinsic(self, underlying: float) -> float:
        k = float(self.strike)
        return max(0.0, underlying - k) if self.right is Right.CALL else max(0.0, k - underlying)


@lru_cache(maxsize=65536)
def _option_from_key(key: str) -> OptionSpec:
    """Parsed once per key: stores and exchanges read the same few hundred keys all day."""
    tclass, exp, strike, right = key.split()
    symbol = "VIX" if tclass.startswith("VIX") else tclass if tclass in ("SPY", "QQQ") else "SPX"  # ETF options
    return OptionSpec(symbol, date(int(exp[:4]), int(exp[4:6]), int(exp[6:8])), Decimal(strike), Right(right), tclass)


@dataclass(frozen=True)
class Leg:
    option: OptionSpec
    action: Action
    ratio: int = 1

    @property
    def signed_ratio(self) -> int:
        return self.ratio * self.action.sign


@dataclass(frozen=True)
class Greeks:
    delta: float
    gamma: float
    vega: float
    theta: float
    iv: float


@dataclass(frozen=True)
class Quote:
    """A two-sided quote. Construct through `Quote.checked` at adapter edges: it refuses NaN,
    negative or crossed prices so that nothing downstream prices an order on bad data."""

    bid: Decimal
    ask: Decimal
    greeks: Greeks | None = None
    underlying: float | None = None

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2

    @classmethod
    def checked(cls, bid: float, ask: float, greeks: Greeks | None = None, underlying: float | None = None) -> Quote:
        for name, v in (("bid", bid), ("ask", ask)):
            if v is None or not math.isfinite(v) or v < 0:
                raise BadQuote(f"{name}={v!r}")
        if ask < bid:
            raise BadQuote(f"crossed quote bid={bid} ask={ask}")
        return cls(Decimal(str(round(bid, 2))), Decimal(str(round(ask, 2))), greeks, underlying)


class BadQuote(ValueError):
    """A quote that must not be priced on (NaN, -1, crossed, missing greeks)."""


@dataclass(frozen=True)
class ComboOrder:
    """What the strategy wants executed: legs, quantity, and a reason. Prices are chosen by the
    executor (start at mid, walk toward natural), within `limit_floor` if given: the worst net
    debit per unit (negative = the least credit) the strategy accepts."""

    legs: tuple[Leg, ...]
    quantity: int
    limit_floor: Decimal | None = None


@dataclass(frozen=True)
class Intent:
    """An order the bot means to place, persisted before it is sent.

    `order_ref` is unique and is sent to the broker (IB `orderRef`), so that after a crash the
    order can be found again. `purpose` is e.g. "condor.open" / "condor.close";
    `group` ties the order to its condor (or hedge layer)."""

    order_ref: str
    purpose: str
    group: str
    order: ComboOrder
    reason: str = ""
    created_at: datetime | None = None


@dataclass(frozen=True)
class Fill:
    """One execution of one leg (a combo fill yields one Fill per leg)."""

    exec_id: str
    order_ref: str
    option: OptionSpec
    quantity: int  # signed: + bought, - sold
    price: Decimal
    time: datetime
    commission: Decimal = Decimal("0")


@dataclass(frozen=True)
class OrderState:
    """What the broker says about one of our orders."""

    order_ref: str
    broker_id: str
    status: OrderStatus
    limit: Decimal
    filled: int
    remaining: int
    avg_price: Decimal | None = None
    reason: str = ""


@dataclass(frozen=True)
class Position:
    option: OptionSpec
    quantity: int  # signed
    avg_cost: Decimal = Decimal("0")  # per share


@dataclass(frozen=True)
class AccountSummary:
    account: str
    is_paper: bool
    cash: Decimal
    net_liquidation: Decimal
    maintenance_margin: Decimal


@dataclass(frozen=True)
class Condor:
    """An open (or closed) iron condor, as the book tracks it."""

    condor_id: str
    expiry: date
    put_short: Decimal
    put_long: Decimal
    call_short: Decimal
    call_long: Decimal
    quantity: int
    credit: Decimal  # per unit, per share, positive
    opened_at: datetime
    trading_class: str = "SPXW"

    @property
    def width(self) -> Decimal:
        return max(self.put_short - self.put_long, self.call_long - self.call_short)

    @property
    def max_loss(self) -> Decimal:
        """Dollars: (wider wing - credit) x 100 x quantity."""
        return (self.width - self.credit) * SPX_MULTIPLIER * self.quantity

    def legs(self, opening: bool = True) -> tuple[Leg, ...]:
        tc = self.trading_class
        sell, buy = (Action.SELL, Action.BUY) if opening else (Action.BUY, Action.SELL)
        opt = lambda k, r: OptionSpec("SPX", self.expiry, k, r, tc)  # noqa: E731
        return (
            Leg(opt(self.put_short, Right.PUT), sell),
            Leg(opt(self.put_long, Right.PUT), buy),
            Leg(opt(self.call_short, Right.CALL), sell),
            Leg(opt(self.call_long, Right.CALL), buy),
        )


@dataclass(frozen=True)
class ChainRow:
    """One option of a chain snapshot with its quote."""

    option: OptionSpec
    quote: Quote


@dataclass(frozen=True)
class MarketSnapshot:
    """Everything the pure strategy may look at; gathered by the engine."""

    time: datetime
    spx: float
    vix: float
    chain: tuple[ChainRow, ...] = ()  # the entry expiry's chain (may be empty)
    quotes: dict[str, Quote] = field(default_factory=dict)  # by OptionSpec.key, for open legs
    stale: bool = False
