"""The pre-send guard (bot/guard.py): pure rules, and an invariant under random order flows."""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain import Action, Leg, OptionSpec, Right
from bot.guard import Working, refusal, uncovered_shorts

FEB, MAR, APR = date(2022, 2, 16), date(2022, 3, 16), date(2022, 4, 20)


def vix(expiry: date, strike: int) -> OptionSpec:
    return OptionSpec("VIX", expiry, Decimal(strike), Right.CALL, "VIX")


def spx(strike: int, right: Right) -> OptionSpec:
    return OptionSpec("SPX", date(2022, 3, 4), Decimal(strike), right, "SPXW")


def buy(o):
    return Leg(o, Action.BUY)


def sell(o):
    return Leg(o, Action.SELL)


def test_a_covered_write_passes_and_an_uncovered_one_is_refused():
    held = {vix(MAR, 25): 4}
    assert refusal(held, [], [sell(vix(FEB, 30))], 4, "hedge.write") is None
    why = refusal(held, [], [sell(vix(FEB, 30))], 5, "hedge.write")
    assert why and "1 x VIX 20220216 30 C" in why and "uncovered" in why
    # a long expiring earlier, or with a higher strike, covers nothing
    assert refusal({vix(FEB, 25): 4}, [], [sell(vix(MAR, 30))], 1, "hedge.write")
    assert refusal({vix(MAR, 35): 4}, [], [sell(vix(FEB, 30))], 1, "hedge.write")


def test_a_write_whose_cover_did_not_fill_is_refused():
    """FAILURES.md 23: the plan bought 4 then wrote 2; the buy timed out."""
    assert refusal({}, [], [sell(vix(FEB, 30))], 2, "hedge.write")


def test_selling_what_is_not_held_is_refused_unless_the_purpose_opens_a_short():
    held = {vix(MAR, 25): 2}
    assert refusal(held, [], [sell(vix(MAR, 25))], 2, "hedge.sell") is None
    why = refusal(held, [], [sell(vix(MAR, 25))], 3, "hedge.sell")
    assert why and "holds 2" in why
    assert refusal({}, [], [sell(vix(MAR, 25))], 1, "hedge.monetize")
    # a roll's sell leg must be held too, even though the new long would cover it
    assert refusal({}, [], [sell(vix(FEB, 25)), buy(vix(MAR, 20))], 1, "hedge.roll")


def test_working_sells_count_against_what_is_held():
    held = {vix(MAR, 25): 3}
    working = [Working((sell(vix(MAR, 25)),), 2)]
    assert refusal(held, working, [sell(vix(MAR, 25))], 1, "hedge.sell") is None
    assert refusal(held, working, [sell(vix(MAR, 25))], 2, "hedge.sell")


def test_working_orders_are_taken_at_their_worst():
    held = {vix(MAR, 25): 2}
    # a working sale of the cover may fill: the write would be naked then
    assert refusal(held, [Working((sell(vix(MAR, 25)),), 2)], [sell(vix(FEB, 30))], 1, "hedge.write")
    # a working buy may never fill: it covers nothing yet
    assert refusal({}, [Working((buy(vix(MAR, 25)),), 5)], [sell(vix(FEB, 30))], 1, "hedge.write")
    # a working roll fills whole or not at all: both cases must be safe
    roll_up = Working((sell(vix(MAR, 25)), buy(vix(APR, 40))), 2)
    assert refusal(held, [roll_up], [sell(vix(FEB, 30))], 2, "hedge.write")
    roll_out = Working((sell(vix(MAR, 25)), buy(vix(APR, 25))), 2)
    assert refusal(held, [roll_out], [sell(vix(FEB, 30))], 2, "hedge.write") is None
    # the remaining quantity counts, not the original one
    assert refusal(held, [Working((sell(vix(MAR, 25)),), 0)], [sell(vix(FEB, 30))], 2, "hedge.write") is None


def test_reducing_risk_is_never_refused():
    naked = {vix(FEB, 30): -3}
    assert refusal(naked, [], [buy(vix(FEB, 30))], 1, "hedge.buy_back") is None
    assert refusal(naked, [], [buy(vix(MAR, 25))], 2, "hedge.buy") is None


def test_condors_open_and_close_as_defined_risk():
    ps, pl, cs, cl = spx(4300, Right.PUT), spx(4275, Right.PUT), spx(4500, Right.CALL), spx(4525, Right.CALL)
    condor = [sell(ps), buy(pl), sell(cs), buy(cl)]
    assert refusal({}, [], condor, 3, "condor.open") is None
    held = {ps: -3, pl: 3, cs: -3, cl: 3}
    closing = [buy(ps), sell(pl), buy(cs), sell(cl)]
    assert refusal(held, [], closing, 3, "condor.close") is None
    # a put spread without its long leg is naked
    assert refusal({}, [], [sell(ps)], 1, "condor.open")
    # two condors sharing a strike net to zero on it: closing one still passes
    # (A: -4300P +4275P, B: -4275P +4250P; the broker shows 4275P flat)
    b_long = spx(4250, Right.PUT)
    shared = {ps: -1, b_long: 1}
    assert refusal(shared, [], [buy(ps), sell(pl)], 1, "condor.close") is None


def test_uncovered_shorts_matches_unit_by_unit():
    book = {vix(MAR, 25): 3, vix(FEB, 30): -2, vix(FEB, 35): -2}
    assert uncovered_shorts(book.items()) == {vix(FEB, 35): 1}


# --- the invariant under random flows ------------------------------------------------------------
OPTIONS = [vix(e, k) for e in (FEB, MAR, APR) for k in (20, 25, 30)]
PURPOSES = ["hedge.buy", "hedge.sell", "hedge.write", "hedge.buy_back", "hedge.roll", "hedge.monetize"]


def _random_order(rng: random.Random) -> tuple[str, list[Leg], int]:
    purpose = rng.choice(PURPOSES)
    a, b = rng.sample(OPTIONS, 2)
    legs = {"hedge.buy": [buy(a)], "hedge.buy_back": [buy(a)], "hedge.roll": [sell(a), buy(b)]}.get(purpose, [sell(a)])
    return purpose, legs, rng.randint(1, 4)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(5, 60))
def test_no_order_the_guard_passes_can_leave_a_short_uncovered(seed, steps):
    """Random orders (every hedge purpose, any contract) go through the guard against the book
    and the working orders; each working order later fills in full, in part or not at all, in
    random order. After every event no short VIX call is uncovered and no sale exceeded what
    was held."""
    rng = random.Random(seed)
    book = {o: rng.choice([0, 0, 1, 3]) for o in OPTIONS[3:]}  # some longs, no shorts
    working: list[list] = []  # [legs, remaining, purpose]
    for _ in range(steps):
        if working and rng.random() < 0.5:
            w = working[rng.randrange(len(working))]
            n = rng.choice([0, w[1], rng.randint(1, w[1])])  # cancel, fill, or part-fill (combo: all legs)
            for leg in w[0]:
                book[leg.option] = book.get(leg.option, 0) + leg.signed_ratio * n
            w[1] -= n
            if not w[1] or rng.random() < 0.3:
                working.remove(w)
        else:
            purpose, legs, qty = _random_order(rng)
            held = {o: q for o, q in book.items() if q}
            if refusal(held, [Working(tuple(w[0]), w[1]) for w in working], legs, qty, purpose) is None:
                working.append([legs, qty, purpose])
        assert not uncovered_shorts(book.items()), (seed, book)
