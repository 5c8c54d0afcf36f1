"""The few VIX calls of a chain the hedge can choose, without quoting the whole chain.

The hedge picks calls by delta (`alvh.by_delta`: the usable call nearest the target delta, ties
to the higher strike, optionally at or above a floor strike). A call's delta falls as its strike
rises, so |delta - target| falls then rises along the chain: the best strike is found by
quoting a handful (a coarse pass over the chain, then a window around the crossing) and is
certain once its usable neighbours on both sides are quoted and worse. With a floor above the
best strike, the choice is the first usable strike at or above the floor (and any equal one
after it). The rows returned give `by_delta` exactly the choice it would make on the whole
chain, for every target and floor asked, from a few dozen quotes instead of hundreds: IB paces
snapshots (45 messages/s here) and limits market-data lines (FAILURES.md 19, 101).

The search is driven by `quote(options) -> {key: Quote}` (the broker's quotes); it keeps no
clock and logs nothing. `start` (a strike from the last search) skips the coarse pass.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from bot.domain import ChainRow, OptionSpec, Quote

COARSE = 8  # strikes quoted per pass of the coarse search
WINDOW = 2  # strikes each side of a choice quoted to make it certain
STREAM_ABOVE = 12  # strikes above a choice kept streaming: a VIX spike moves every choice up

QuoteFn = Callable[[Sequence[OptionSpec]], Awaitable[dict[str, Quote]]]


def _usable(row: ChainRow | None) -> bool:
    return row is not None and row.quote.greeks is not None and row.quote.ask > 0


@dataclass
class ChainSearch:
    options: Sequence[OptionSpec]  # one expiry's calls, ascending strike
    quote: QuoteFn
    rows: dict[int, ChainRow | None] = field(default_factory=dict)  # quoted so far (None: no usable quote)
    requests: int = 0

    async def fetch(self, indices) -> None:
        todo = sorted({i for i in indices if 0 <= i < len(self.options) and i not in self.rows})
        if not todo:
            return
        self.requests += len(todo)
        got = await self.quote([self.options[i] for i in todo])
        for i in todo:
            q = got.get(self.options[i].key)
            self.rows[i] = ChainRow(self.options[i], q) if q is not None else None

    def _score(self, i: int, target: float) -> tuple[float, int]:
        row = self.rows[i]
        return (abs(row.quote.greeks.delta - target), -i)

    def _usable_quoted(self) -> list[int]:
        return sorted(i for i, r in self.rows.items() if _usable(r))

    async def _bracket(self, target: float) -> int:
        """A strike index near the target delta by coarse passes over the chain."""
        lo, hi = 0, len(self.options) - 1
        while hi - lo > 2 * WINDOW:
            step = max(1, (hi - lo) // COARSE)
            await self.fetch(range(lo, hi + 1, step))
            await self.fetch([hi])
            probes = [i for i in self._usable_quoted() if lo <= i <= hi]
            if not probes:
                break
            above = [i for i in probes if self.rows[i].quote.greeks.delta <= target]  # delta falls with strike
            below = [i for i in probes if self.rows[i].quote.greeks.delta > target]
            new_lo = max(below) if below else lo
            new_hi = min(above) if above else hi
            if new_lo > new_hi or (new_lo, new_hi) == (lo, hi):  # deltas out of order: search from here
                break
            lo, hi = new_lo, new_hi
        return (lo + hi) // 2

    async def best(self, target: float, start: int | None = None) -> int | None:
        """Index of `by_delta(chain, target)` on the whole chain."""
        n = len(self.options)
        if n == 0:
            return None
        c = start if start is not None and 0 <= start < n else await self._bracket(target)
        lo, hi = max(0, c - WINDOW), min(n - 1, c + WINDOW)
        while True:
            await self.fetch(range(lo, hi + 1))
            usable = [i for i in range(lo, hi + 1) if _usable(self.rows.get(i))]
            if not usable:
                if lo == 0 and hi == n - 1:
                    return None
                lo, hi = max(0, lo - 2 * WINDOW), min(n - 1, hi + 2 * WINDOW)
                continue
            b = min(usable, key=lambda i: self._score(i, target))
            # certain once a strictly worse usable strike on each side of it (or the chain's end)
            # is quoted: |delta - target| never rises then falls again, but it may stay flat
            worse = [i for i in usable if self._score(i, target)[0] > self._score(b, target)[0]]
            left_ok = any(i < b for i in worse) or lo == 0
            right_ok = any(i > b for i in worse) or hi == n - 1
            if left_ok and right_ok:
                return b
            if not left_ok:
                lo = max(0, lo - 2 * WINDOW)
            if not right_ok:
                hi = min(n - 1, hi + 2 * WINDOW)

    async def at_or_above(self, floor: Decimal, best: int | None, target: float) -> int | None:
        """Index of `by_delta(chain, target, min_strike=floor)`, given the unrestricted best:
        above the best strike |delta - target| only grows, so it is the first usable strike at
        or above the floor (or the last of any equal to it: ties go to the higher strike)."""
        n = len(self.options)
        first = next((i for i, o in enumerate(self.options) if o.strike >= floor), None)
        if first is None:
            return None
        if best is not None and best >= first:
            return best
        found = None
        for i in range(first, n, WINDOW + 1):
            await self.fetch(range(i, min(n, i + WINDOW + 1)))
            for j in range(i, min(n, i + WINDOW + 1)):
                if not _usable(self.rows.get(j)):
                    continue
                if found is None or self._score(j, target)[0] == self._score(found, target)[0]:
                    found = j
                else:
                    return found
        return found

    def window(self, indices, above: int = STREAM_ABOVE) -> list[int]:
        """Strikes to keep streaming around these choices: WINDOW below, `above` above."""
        keep = set()
        for c in indices:
            if c is not None:
                keep.update(range(max(0, c - WINDOW), min(len(self.options), c + above + 1)))
        return sorted(keep)

    def chain(self) -> tuple[ChainRow, ...]:
        """Every usable row quoted, ascending strike."""
        return tuple(self.rows[i] for i in sorted(self.rows) if _usable(self.rows[i]))
