"""SPX iron condors: pure entry and exit decisions (ALVH.md §1).

No clock, no broker, no logging: the engine passes the market snapshot, the book and the
settings, and gets back proposals (or the reason for doing nothing), which it turns into
persisted intents and executes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from bot.domain import SPX_MULTIPLIER, ChainRow, ComboOrder, Condor, MarketSnapshot, Quote, Right, floor_tick

if TYPE_CHECKING:  # settings are the frozen config model; strategies never load config
    from bot.config import CondorConfig


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


@dataclass(frozen=True)
class Skip:
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
        return Skip("no short strike with greeks in the chain")
    if cfg.wing_delta is not None:
        lp = _by_delta([r for r in puts if r.option.strike < sp.option.strike], cfg.wing_delta)
        lc = _by_delta([r for r in calls if r.option.strike > sc.option.strike], cfg.wing_delta)
    else:
        width = Decimal(cfg.wing_width)
        lp = _at_strike(puts, sp.option.strike - width)
        lc = _at_strike(calls, sc.option.strike + width)
    if lp is None or lc is None:
        return Skip("wing strike not listed")
    return sp, lp, sc, lc


def decide_entry(snapshot: MarketSnapshot, book: Book, cfg: CondorConfig, now: datetime) -> OpenProposal | Skip:
    """One condor to open now, or why not."""
    if snapshot.stale:
        return Skip("market data stale")
    if len(book.open_condors) >= cfg.max_open:
        return Skip(f"{len(book.open_condors)} condors open (max_open {cfg.max_open})")
    picked = select_condor(snapshot, cfg)
    if isinstance(picked, Skip):
        return picked
    sp, lp, sc, lc = picked
    credit = sp.quote.mid - lp.quote.mid + sc.quote.mid - lc.quote.mid
    width = max(sp.option.strike - lp.option.strike, lc.option.strike - sc.option.strike)
    floor = Decimal(str(cfg.credit_floor)) * width
    if credit < floor:
        return Skip(f"credit {credit:.2f} below floor {floor:.2f} ({cfg.credit_floor:.0%} of {width} width)")
    risk_per_unit = (width - credit) * SPX_MULTIPLIER
    budget = Decimal(str(cfg.max_risk_fraction)) * book.net_liquidation - book.open_max_loss
    quantity = min(cfg.max_quantity, int(budget // risk_per_unit)) if risk_per_unit > 0 else 0
    if quantity < 1:
        return Skip(f"no risk budget: {budget:,.0f} left for {risk_per_unit:,.0f} per condor")
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
        if debit <= c.credit * (1 - Decimal(str(cfg.take_profit))):
            reason = "take_profit"
        elif debit - c.credit >= c.credit * Decimal(str(cfg.stop_loss_multiple)):
            reason = "stop_loss"
        elif cfg.close_dte > 0 and (c.expiry - today).days <= cfg.close_dte:
            reason = "time_exit"
        if reason:
            out.append(CloseProposal(c.condor_id, reason, ComboOrder(c.legs(opening=False), c.quantity), debit))
    return out
