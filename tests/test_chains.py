"""bot/chains.py: the few quotes that give `alvh.by_delta` its whole-chain choice."""

from __future__ import annotations

import asyncio
import random
from datetime import date
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.chains import ChainSearch
from bot.domain import ChainRow, Greeks, OptionSpec, Quote, Right
from strategies.alvh import by_delta

EXPIRY = date(2022, 3, 16)


def make_chain(rng: random.Random, n: int, holes: float, ties: bool):
    """n calls with deltas falling with the strike (some equal when `ties`), some unquoted."""
    options = [OptionSpec("VIX", EXPIRY, Decimal(10 + i), Right.CALL, "VIX") for i in range(n)]
    deltas = sorted((round(rng.random(), 2 if ties else 6) for _ in range(n)), reverse=True)
    quotes = {}
    for o, d in zip(options, deltas):
        if rng.random() < holes:
            continue
        ask = Decimal("0") if rng.random() < holes / 3 else Decimal("1.00")
        quotes[o.key] = Quote(Decimal("0.90"), ask, Greeks(d, 0, 0, 0, 1.0) if rng.random() > holes / 3 else None, 20.0)
    return options, quotes


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**31), st.integers(1, 140), st.sampled_from([0.0, 0.1, 0.4]), st.booleans(),
       st.floats(0.01, 0.99), st.integers(-5, 150), st.integers(5, 160))
def test_the_search_finds_what_by_delta_finds_on_the_whole_chain(seed, n, holes, ties, target, start, floor):
    rng = random.Random(seed)
    options, quotes = make_chain(rng, n, holes, ties)

    async def quote(opts):
        return {o.key: quotes[o.key] for o in opts if o.key in quotes}

    full = tuple(ChainRow(o, quotes[o.key]) for o in options if o.key in quotes)
    search = ChainSearch(options, quote)

    async def go():
        best = await search.best(target, start if 0 <= start < n else None)
        restricted = await search.at_or_above(Decimal(floor), best, target)
        return best, restricted

    best, restricted = asyncio.run(go())
    rows = search.chain()
    want = by_delta(full, target)
    assert (options[best] if best is not None else None) == (want.option if want else None)
    assert (by_delta(rows, target).option if want else by_delta(rows, target)) == (want.option if want else None)
    want_floor = by_delta(full, target, min_strike=Decimal(floor))
    got_floor = by_delta(rows, target, min_strike=Decimal(floor))
    assert (got_floor.option if got_floor else None) == (want_floor.option if want_floor else None)
    assert (options[restricted] if restricted is not None else None) == (want_floor.option if want_floor else None)


def test_a_long_chain_costs_a_few_dozen_quotes():
    rng = random.Random(1)
    options, quotes = make_chain(rng, 120, 0.0, False)
    asked = []

    async def quote(opts):
        asked.extend(opts)
        return {o.key: quotes[o.key] for o in opts}

    search = ChainSearch(options, quote)
    asyncio.run(search.best(0.30))
    assert len(asked) == search.requests <= 40
