"""The pre-send guard: the last check an order passes before it leaves the bot (pure).

The strategies plan against their own books; the executor asks this module, at the moment of
sending, whether the order is safe against what the broker says now: its positions and every
working order of ours, each of which may still fill in full (or not at all). An order is
refused when, in the worst of those cases,

- it would leave a short option uncovered that was not uncovered without it (VIX calls by the
  hedge's coverage rule, ALVH.md §5: a long VIX call expiring no earlier with a strike no
  higher; other options need a long of the same underlying and right expiring no earlier, the
  defined risk of a spread), or
- it sells a VIX option the account does not hold, unless its purpose is to open a short
  (a covered write) — the hedge never sells what it does not own.

An order that only reduces risk (a buy-back, closing a condor) is never refused for a state it
does not make worse. No clock, broker or logging here: `bot.execution` gathers the inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product

from bot.domain import Action, Leg, OptionSpec, Right
from strategies import alvh

# purposes whose SELL legs open shorts (everything else sells only what it holds)
OPENING_SHORTS = frozenset({"condor.open", f"hedge.{alvh.WRITE}"})
MAX_COMBOS = 10  # working multi-leg orders enumerated (2^n cases); beyond it: refuse


@dataclass(frozen=True)
class Working:
    """A working order of ours: its legs and the quantity still to fill."""

    legs: tuple[Leg, ...]
    remaining: int


def uncovered_shorts(positions: Iterable[tuple[OptionSpec, int]]) -> dict[OptionSpec, int]:
    """Short options not covered, by contract: VIX calls by `alvh.naked_shorts`; any other short
    by a long of the same symbol and right expiring no earlier (the other leg of a spread),
    matched unit by unit, earliest shorts first, each to the earliest long that covers it."""
    vix_calls: list[tuple[OptionSpec, int]] = []
    longs: dict[tuple[str, Right], dict[OptionSpec, int]] = {}
    shorts: dict[tuple[str, Right], dict[OptionSpec, int]] = {}
    for opt, qty in positions:
        if qty == 0:
            continue
        if opt.symbol == "VIX" and opt.right is Right.CALL:
            vix_calls.append((opt, qty))
            continue
        book = longs if qty > 0 else shorts
        side = book.setdefault((opt.symbol, opt.right), {})
        side[opt] = side.get(opt, 0) + abs(qty)
    out = {opt: qty for opt, qty in alvh.naked_shorts(vix_calls)}
    for key, side in shorts.items():
        avail = dict(longs.get(key, {}))
        for short in sorted(side, key=lambda o: (o.expiry, o.strike)):
            need = side[short]
            for long in sorted((o for o in avail if o.expiry >= short.expiry), key=lambda o: (o.expiry, o.strike)):
                take = min(need, avail[long])
                avail[long] -= take
                need -= take
                if not need:
                    break
            if need:
                out[short] = out.get(short, 0) + need
    return out


def _add(book: dict[OptionSpec, int], legs: Sequence[Leg], quantity: int) -> None:
    for leg in legs:
        book[leg.option] = book.get(leg.option, 0) + leg.signed_ratio * quantity


def _worst_cases(positions: Mapping[OptionSpec, int], working: Sequence[Working]) -> list[dict[OptionSpec, int]]:
    """Every book the working orders can leave. A one-sided order's worst case is known (its
    sells fill, its buys do not); a combo (a roll) fills whole or not at all, so both cases."""
    base = dict(positions)
    combos = []
    for w in working:
        if w.remaining <= 0:
            continue
        sides = {leg.action for leg in w.legs}
        if sides == {Action.SELL}:
            _add(base, w.legs, w.remaining)
        elif len(sides) > 1:
            combos.append(w)
    books = []
    for choice in product((False, True), repeat=len(combos)):
        book = dict(base)
        for w, fills in zip(combos, choice):
            if fills:
                _add(book, w.legs, w.remaining)
        books.append(book)
    return books


def refusal(positions: Mapping[OptionSpec, int], working: Sequence[Working], legs: Sequence[Leg], quantity: int,
            purpose: str) -> str | None:
    """Why this order must not be sent, or None when it is safe (see the module doc)."""
    if quantity <= 0:
        return f"quantity {quantity} is not positive"
    if sum(1 for w in working if w.remaining > 0 and len({leg.action for leg in w.legs}) > 1) > MAX_COMBOS:
        return f"more than {MAX_COMBOS} working combo orders: the worst case is not checked"
    if purpose not in OPENING_SHORTS:
        selling = {}
        for w in working:
            for leg in w.legs:
                if leg.action is Action.SELL and leg.option.symbol == "VIX" and w.remaining > 0:
                    selling[leg.option] = selling.get(leg.option, 0) + leg.ratio * w.remaining
        for leg in legs:
            if leg.action is Action.SELL and leg.option.symbol == "VIX":
                held = max(0, positions.get(leg.option, 0)) - selling.get(leg.option, 0)
                if leg.ratio * quantity > held:
                    return (f"sells {leg.ratio * quantity} x {leg.option.key} but the account holds "
                            f"{max(0, positions.get(leg.option, 0))}"
                            + (f" with {selling[leg.option]} already being sold" if selling.get(leg.option) else ""))
    for book in _worst_cases(positions, working):
        before = uncovered_shorts(book.items())
        _add(book, legs, quantity)
        after = uncovered_shorts(book.items())
        worse = {o: q for o, q in after.items() if q > before.get(o, 0)}
        if worse:
            what = ", ".join(f"{q} x {o.key}" for o, q in sorted(worse.items(), key=lambda x: x[0].key))
            return f"would leave short {what} uncovered" + (" if working orders fill" if working else "")
    return None
