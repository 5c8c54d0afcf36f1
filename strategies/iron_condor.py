"""SPX iron condors: pure entry and exit decisions (ALVH.md §1).

No clock, no broker, no logging: the engine passes the market snapshot, the book and the
settings, and gets back proposals (or the reason for doing nothing), which it turns into
persisted intents and executes.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, TypeVar

from bot.domain import SPX_MULTIPLIER, Action, ChainRow, ComboOrder, Condor, MarketSnapshot, Quote, Right, floor_tick

if TYPE_CHECKING:  # settings are the frozen config model; strategies never load config
    from bot.config import CondorConfig

K = TypeVar("K")  # a strike: Decimal from a broker, int from the backtest's listing


@dataclass(frozen=True)
class Book:
    """What the strategy may know of the account."""

    open_condors: tuple[Condor, ...]
    net_liquidation: Decimal
    busy_groups: frozenset[str] = frozenset()  # condors with a live order (don't act twice)

    @property
    def open_max_loss(self) -> Decimal:
        return sum((c.max_loss for c in self.open_condors), Decimal(0))


@dataclass(frozen=True)
class OpenProposal:
    condor: Condor  # condor_id and opened_at are filled by the engine
    order: ComboOrder
    mid_credit: Decimal
    short_deltas: tuple[float, float]


@dataclass(frozen=True)
class CloseProposal:
    condor_id: str
    reason: str  # take_profit | stop_loss | time_exit
    order: ComboOrder
    debit_mid: Decimal


class SkipCode(str, Enum):
    """Why no condor was opened, as a code a program can count (`Skip.reason` says it in words)."""

    NO_EXPIRY = "no_expiry"  # no listed expiry in the DTE window
    STALE = "stale"  # market data delayed
    MAX_OPEN = "max_open"
    NO_SHORT = "no_short"  # no short strike with greeks in the chain
    NO_WING = "no_wing"  # wing strike not listed
    CREDIT = "credit"  # credit below the floor
    NO_BUDGET = "no_budget"  # the risk budget is used up
    NOT_FILLED = "not_filled"  # the entry order did not fill (the executor's outcome)


@dataclass(frozen=True)
class Skip:
    code: SkipCode
    reason: str


def entry_expiry(expiries: Sequence[date], today: date, cfg: CondorConfig) -> date | None:
    """dte_unit "sessions": the `dte_min`-th listed expiry after today (SPXW lists one every
    session). "calendar": the expiry whose calendar DTE is in [dte_min, dte_max], nearest
    the middle of the window."""
    later = sorted(d for d in expiries if d > today)
    if cfg.dte_unit == "sessions":
        return later[cfg.dte_min - 1] if len(later) >= cfg.dte_min else None
    window = [d for d in later if cfg.dte_min <= (d - today).days <= cfg.dte_max]
    if not window:
        return None
    middle = (cfg.dte_min + cfg.dte_max) / 2
    return min(window, key=lambda d: (abs((d - today).days - middle), d))


def strike_band(spx: float, vix: float, years: float, cfg: CondorConfig) -> tuple[float, float]:
    """(near, far) distance from spot of the strikes a condor may use: shorts from 0.4 to 1.6
    expected moves (VIX scaled to `years`, at least a day), plus room for the wings. The engine
    asks the broker for quotes of these strikes only (IB paces market data)."""
    move = spx * vix / 100 * math.sqrt(max(years, 1 / 365))
    return 0.4 * move, 1.6 * move + (cfg.wing_width if cfg.wing_delta is None else move) + 5


def band_strikes(listed: Iterable[K], spx: float, near: float, far: float) -> tuple[list[K], list[K]]:
    """(puts, calls): the listed strikes inside the band below spot and above it."""
    bounds = (spx - far, spx - near, spx + near, spx + far)
    if isinstance(listed, range) and listed.step > 0 and all(map(math.isfinite, bounds)):
        # an ascending range (the backtest's listing): each side is a slice, found by bisection
        # (int-float comparisons are exact, as float(k) is for any strike)
        lo_p, hi_p, lo_c, hi_c = bounds
        return (list(listed[bisect_left(listed, lo_p):bisect_right(listed, hi_p)]),
                list(listed[bisect_left(listed, lo_c):bisect_right(listed, hi_c)]))
    listed = list(listed)
    return ([k for k in listed if spx - far <= float(k) <= spx - near],
            [k for k in listed if spx + near <= float(k) <= spx + far])


def condor_from_order(condor_id: str, order: ComboOrder, quantity: int, avg_price: Decimal | None,
                      opened_at: datetime) -> Condor:
    """The condor an opening order's fill made: strikes from its legs, the credit from the
    fill's net price (a credit is a negative debit)."""
    by = {(leg.option.right, leg.action): leg.option for leg in order.legs}
    sp, lp = by[(Right.PUT, Action.SELL)], by[(Right.PUT, Action.BUY)]
    sc, lc = by[(Right.CALL, Action.SELL)], by[(Right.CALL, Action.BUY)]
    return Condor(condor_id, sp.expiry, sp.strike, lp.strike, sc.strike, lc.strike, quantity,
                  -(avg_price or Decimal(0)), opened_at, sp.trading_class)


def exit_levels(condor: Condor, cfg: CondorConfig) -> tuple[Decimal, Decimal]:
    """(take profit, stop): closing debits at or below the first take the profit, at or above
    the second stop the loss."""
    return (condor.credit * (1 - Decimal(str(cfg.take_profit))),
            condor.credit + condor.credit * Decimal(str(cfg.stop_loss_multiple)))


def time_exit_due(condor: Condor, today: date, cfg: CondorConfig) -> bool:
    return cfg.close_dte > 0 and (condor.expiry - today).days <= cfg.close_dte


def _by_delta(rows: Sequence[ChainRow], target: float) -> ChainRow | None:
    usable = [r for r in rows if r.quote.greeks is not None]
    return min(usable, key=lambda r: (abs(abs(r.quote.greeks.delta) - target), r.option.strike), default=None)


def _at_strike(rows: Sequence[ChainRow], strike: Decimal) -> ChainRow | None:
    return next((r for r in rows if r.option.strike == strike), None)


def select_condor(snapshot: MarketSnapshot, cfg: CondorConfig) -> tuple[ChainRow, ChainRow, ChainRow, ChainRow] | Skip:
    """Shorts by delta; wings by width (or by delta when `wing_delta` is set)."""
    puts = [r for r in snapshot.chain if r.option.right is Right.PUT and float(r.option.strike) < snapshot.spx]
    calls = [r for r in snapshot.chain if r.option.right is Right.CALL and float(r.option.strike) > snapshot.spx]
    sp, sc = _by_delta(puts, cfg.short_delta), _by_delta(calls, cfg.short_delta)
    if sp is None or sc is None:
        return Skip(SkipCode.NO_SHORT, "no short strike with greeks in the chain")
    if cfg.wing_delta is not None:
        lp = _by_delta([r for r in puts if r.option.strike < sp.option.strike], cfg.wing_delta)
        lc = _by_delta([r for r in calls if r.option.strike > sc.option.strike], cfg.wing_delta)
    else:
        width = Decimal(cfg.wing_width)
        lp = _at_strike(puts, sp.option.strike - width)
        lc = _at_strike(calls, sc.option.strike + width)
    if lp is None or lc is None:
        return Skip(SkipCode.NO_WING, "wing strike not listed")
    return sp, lp, sc, lc


def decide_entry(snapshot: MarketSnapshot, book: Book, cfg: CondorConfig, now: datetime) -> OpenProposal | Skip:
    """One condor to open now, or why not."""
    if snapshot.stale:
        return Skip(SkipCode.STALE, "market data stale")
    if len(book.open_condors) >= cfg.max_open:
        return Skip(SkipCode.MAX_OPEN, f"{len(book.open_condors)} condors open (max_open {cfg.max_open})")
    picked = select_condor(snapshot, cfg)
    if isinstance(picked, Skip):
        return picked
    sp, lp, sc, lc = picked
    credit = sp.quote.mid - lp.quote.mid + sc.quote.mid - lc.quote.mid
    width = max(sp.option.strike - lp.option.strike, lc.option.strike - sc.option.strike)
    floor = Decimal(str(cfg.credit_floor)) * width
    if credit < floor:
        return Skip(SkipCode.CREDIT, f"credit {credit:.2f} below floor {floor:.2f} ({cfg.credit_floor:.0%} of {width} width)")
    risk_per_unit = (width - credit) * SPX_MULTIPLIER
    budget = Decimal(str(cfg.max_risk_fraction)) * book.net_liquidation - book.open_max_loss
    quantity = int(budget // risk_per_unit) if risk_per_unit > 0 else 0
    if cfg.max_quantity is not None:  # the config's cap; unset, the risk fraction alone sizes
        quantity = min(cfg.max_quantity, quantity)
    if quantity < 1:
        return Skip(SkipCode.NO_BUDGET, f"no risk budget: {budget:,.0f} left for {risk_per_unit:,.0f} per condor")
    condor = Condor(
        condor_id="",
        expiry=sp.option.expiry,
        put_short=sp.option.strike,
        put_long=lp.option.strike,
        call_short=sc.option.strike,
        call_long=lc.option.strike,
        quantity=quantity,
        credit=credit,
        opened_at=now,
        trading_class=sp.option.trading_class,
    )
    order = ComboOrder(condor.legs(opening=True), quantity, limit_floor=-floor_tick(floor))
    return OpenProposal(condor, order, credit, (sp.quote.greeks.delta, sc.quote.greeks.delta))


def debit_to_close(condor: Condor, quotes: dict[str, Quote]) -> Decimal | None:
    """Mid debit per unit to close the condor; None when a leg has no usable quote."""
    total = Decimal(0)
    for leg in condor.legs(opening=False):
        q = quotes.get(leg.option.key)
        if q is None:
            return None
        total += leg.signed_ratio * q.mid
    return total


def settlement_debit(condor: Condor, prices: dict[str, Decimal]) -> Decimal | None:
    """Debit per unit that the cash settlement of its legs (settlement price per share, by
    option key) closes the condor at; None while a leg's price is not known."""
    closing = condor.legs(opening=False)
    if not all(leg.option.key in prices for leg in closing):
        return None
    return sum((leg.signed_ratio * prices[leg.option.key] for leg in closing), Decimal(0))


def realized_pnl(condor: Condor, close_debit: Decimal, commissions: Decimal,
                 closed_parts: Sequence[tuple[int, Decimal]] = ()) -> Decimal:
    """Dollars a condor made: credit received minus the debit it closed at, commissions off.
    `condor.quantity` is what was left for that last close; `closed_parts` are (quantity, net
    debit) of parts closed before it (a close that filled only in part)."""
    parts = sum(((condor.credit - debit) * SPX_MULTIPLIER * q for q, debit in closed_parts), Decimal(0))
    return (condor.credit - close_debit) * SPX_MULTIPLIER * condor.quantity + parts - commissions


def decide_exits(snapshot: MarketSnapshot, book: Book, cfg: CondorConfig, now: datetime) -> list[CloseProposal]:
    """Take profit at `take_profit` of the credit, stop at a loss of `stop_loss_multiple` x
    credit, close at `close_dte` calendar days (0 = hold to cash settlement)."""
    out = []
    today = now.date()
    for c in book.open_condors:
        if c.condor_id in book.busy_groups or c.expiry < today:
            continue
        debit = debit_to_close(c, snapshot.quotes)
        if debit is None:
            continue  # never act on missing quotes
        reason = None
        take, stop = exit_levels(c, cfg)
        if debit <= take:
            reason = "take_profit"
        elif debit >= stop:
            reason = "stop_loss"
        elif time_exit_due(c, today, cfg):
            reason = "time_exit"
        if reason:
            out.append(CloseProposal(c.condor_id, reason, ComboOrder(c.legs(opening=False), c.quantity), debit))
    return out
