"""The backtest's fast paths give the daemon's numbers bit for bit: quotes (vs
SimExchange.price_options), intraday paths (vs HistoryMarket), job times (vs CronJob) and
session times (vs TradingCalendar). Real history from ../shared/data, or the synthetic history
when it is absent (these tests never skip)."""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.calendar import NY, UTC, TradingCalendar
from bot.data import load_history
from bot.domain import OptionSpec, Right
from bot.schedule import CronJob
from bot.sim.exchange import ExchangeSettings, SimExchange
from bot.sim.market import HistoryMarket

from bot.backtest.pricer import Pricer, day_arrays
from bot.backtest.day import Schedule, SessionTimes

pytestmark = pytest.mark.never_skip


@pytest.fixture(scope="module")
def world(history_dir):
    cal = TradingCalendar(end=date(2027, 12, 31))
    history = load_history(history_dir, date(2003, 6, 1), date(2026, 7, 23))
    market = HistoryMarket(history, cal, 7)
    ex = SimExchange(market, cal, ExchangeSettings(), ":memory:")
    times = SessionTimes(cal, date(2004, 1, 1), date(2027, 6, 30))
    return cal, market, ex, Pricer(market, cal, times), times


def test_quotes_equal_the_exchange_bit_for_bit(world):
    cal, market, ex, pricer, _ = world
    rng = random.Random(11)
    days = cal.sessions_between(date(2004, 4, 1), date(2026, 7, 1))
    compared = 0
    for _ in range(60):
        d = rng.choice(days)
        day = pricer.start_day(d)
        k = rng.randrange(len(day.stamps))
        t = datetime.fromtimestamp(min(float(day.stamps[k]) + rng.choice([0, 15, 45, 200]), day.close_ts), UTC)
        spot = market.state_at(t).spx
        options = []
        for e in ex.expiries(t)[:rng.randint(1, 30)][-3:]:
            for strike in range(int(spot * 0.85 // 5 * 5), int(spot * 1.15 // 5 * 5), 5 * rng.randint(1, 20)):
                options.append(OptionSpec("SPX", e, Decimal(strike), rng.choice([Right.PUT, Right.CALL])))
        for e, tc in ex.vix_expiries(t)[:8]:
            for strike in ex.vix_strikes(e, t)[::rng.randint(1, 7)]:
                options.append(OptionSpec("VIX", e, strike, rng.choice([Right.CALL, Right.PUT]), tc))
        expected = ex.price_options(options, t)
        assert pricer.quotes(options, t) == expected, (d, t)
        compared += len(expected)
    assert compared > 5000


def test_chain_at_one_instant_equals_the_batch_path(world):
    """spx_arrays at one instant (a scalar stamp: `_weight` and one state row, the entry chain's
    call) gives the bits of the general path (stamps per option: `DayPath.weights`, `between`)."""
    cal, market, ex, pricer, _ = world
    rng = random.Random(5)
    days = cal.sessions_between(date(2004, 4, 1), date(2026, 7, 1))
    for _ in range(40):
        day = pricer.start_day(rng.choice(days))
        k = rng.randrange(len(day.stamps))
        ts = min(float(day.stamps[k]) + rng.choice([0, 0, 15, 45, 200]), day.close_ts + rng.choice([0, 60]))
        exp_ts = float(day.close_ts) + 86400 * rng.randint(0, 40)
        spot = float(day.spx[k])
        K = np.arange(int(spot * 0.9 // 5 * 5), int(spot * 1.1 // 5 * 5), 5, dtype=float)
        call = np.array([rng.random() < 0.5 for _ in K])
        for greeks in (True, False):
            one = pricer.spx_arrays(exp_ts, K, call, ts, greeks=greeks)
            many = pricer.spx_arrays(np.full(len(K), exp_ts), K, call, np.full(len(K), ts), greeks=greeks)
            assert one.keys() == many.keys()
            for key in one:
                assert np.array_equal(np.asarray(one[key]).view(np.uint64), np.asarray(many[key]).view(np.uint64)), key


def test_walk_quotes_equal_the_exchange(world):
    cal, market, ex, pricer, _ = world
    d = date(2020, 3, 16)
    day = pricer.start_day(d)
    t0 = float(day.stamps[40])
    e = ex.expiries(datetime.fromtimestamp(t0, UTC))[1]
    opts = [OptionSpec("SPX", e, Decimal(k), r) for k in (2200, 2400, 2600) for r in Right]
    vix_e, tc = ex.vix_expiries(datetime.fromtimestamp(t0, UTC))[2]
    opts += [OptionSpec("VIX", vix_e, Decimal(k), Right.CALL, tc) for k in (40, 60)]
    stamps = [t0 + 15 * k for k in range(12)]
    book = pricer.bid_ask_over(opts, stamps)
    for k, ts in enumerate(stamps):
        full = ex.price_options(opts, datetime.fromtimestamp(ts, UTC))
        assert {key: (q.bid, q.ask) for key, q in book[k].items()} == {key: (q.bid, q.ask) for key, q in full.items()}


@pytest.mark.parametrize("which", ["spx", "vix", "both"])
def test_walk_quotes_of_one_symbol_and_across_an_expiry_equal_the_exchange(world, which):
    """bid_ask_over's paths: every pair live and one symbol (the model's rows as they are),
    and options that expire during the walk (today's SPXW at the close) beside live ones."""
    cal, market, ex, pricer, _ = world
    d = date(2020, 3, 16)
    day = pricer.start_day(d)
    t0 = day.close_ts - 100.0  # the walk's instants run past today's close
    now = datetime.fromtimestamp(t0, UTC)
    opts = []
    if which != "vix":
        e0, e1 = ex.expiries(now)[:2]
        assert e0 == d
        opts += [OptionSpec("SPX", e, Decimal(k), r) for e in (e0, e1) for k in (2200, 2450) for r in Right]
    if which != "spx":
        for vix_e, tc in ex.vix_expiries(now)[:2]:
            opts += [OptionSpec("VIX", vix_e, Decimal(k), Right.CALL, tc) for k in (40, 60)]
    stamps = [t0 + 15 * k for k in range(13)]
    book = pricer.bid_ask_over(opts, stamps)
    for k, ts in enumerate(stamps):
        full = ex.price_options(opts, datetime.fromtimestamp(ts, UTC))
        assert {key: (q.bid, q.ask) for key, q in book[k].items()} == {key: (q.bid, q.ask) for key, q in full.items()}
    if which == "spx":
        assert len(book[0]) == 8 and len(book[12]) == 4  # today's expired at the close


def test_prefetched_walk_quotes_equal_a_walks_own(world):
    """A plan's walks priced ahead in one batch (`Walker.prefetch`, `Pricer.prefetch_bid_ask`)
    give each walk the quotes its own batch gives, bit for bit, wherever it starts; a start
    outside the speculation prices its own."""
    from bot.backtest.account import Walker
    from bot.config import ExecutionConfig
    from bot.domain import Action, ComboOrder, Leg

    cal, market, ex, _, times = world
    walker = Walker(ExecutionConfig(), 0.25)
    rng = random.Random(5)
    for d in (date(2020, 3, 16), date(2011, 8, 8), date(2017, 6, 14)):
        ahead, alone = Pricer(market, cal, times), Pricer(market, cal, times)
        day = ahead.start_day(d)
        alone.start_day(d)
        t0 = float(day.stamps[len(day.stamps) // 2]) + 20.0
        now = datetime.fromtimestamp(t0, UTC)
        spot = market.state_at(now).spx
        e = ex.expiries(now)[1]
        condor = ComboOrder(tuple(Leg(OptionSpec("SPX", e, Decimal(int(spot * f // 5 * 5)), r), a) for f, r, a in (
            (0.95, Right.PUT, Action.BUY), (0.97, Right.PUT, Action.SELL),
            (1.03, Right.CALL, Action.SELL), (1.05, Right.CALL, Action.BUY))), 1)
        vix_orders = [ComboOrder(tuple(Leg(OptionSpec("VIX", ve, Decimal(k), Right.CALL, tc), a)
                                       for k, a in legs), 2)
                      for (ve, tc), legs in zip(ex.vix_expiries(now)[:3], (
                          ((30, Action.BUY),), ((25, Action.SELL), (35, Action.BUY)), ((40, Action.BUY),)))]
        orders = [vix_orders[0], condor, vix_orders[1], vix_orders[2]]
        walker.prefetch(orders, t0, ahead)
        offsets = walker.plan.offsets()
        for order in orders:
            start = t0 + rng.choice(offsets[:3]) + rng.choice([0.0, 15.0, 210.0])
            stamps = [start + dt for dt in offsets]
            options = [leg.option for leg in order.legs]
            got, own = ahead.bid_ask_over(options, stamps), alone.bid_ask_over(options, stamps)
            assert np.array_equal(got.bid, own.bid, equal_nan=True) and np.array_equal(got.ask, own.ask, equal_nan=True)
            assert [got[k] for k in range(len(stamps))] == [own[k] for k in range(len(stamps))]


def test_backtest_vix_soq_equals_the_exchange(world):
    """BacktestExchange takes a VIX expiry's SOQ from the pricer's path of that session: the
    market's VIX at the open, as SimExchange settles it."""
    from bot.backtest.account import BacktestExchange

    cal, market, ex, _, times = world
    pricer = Pricer(market, cal, times)
    bex = BacktestExchange(market, cal, ExchangeSettings(), pricer)
    try:
        days = cal.sessions_between(date(2004, 3, 26), date(2026, 7, 1))
        for d in days[::97] + [date(2020, 3, 18), date(2008, 10, 22)]:
            pricer.start_day(d)
            assert bex.vix_soq(d) == ex.vix_soq(d), d
    finally:
        bex.close()


def test_intraday_paths_equal_the_market(world):
    cal, market, _, _, times = world
    for d in cal.sessions_between(date(2004, 3, 26), date(2026, 7, 23))[::23]:
        a, b = day_arrays(market, d), day_arrays(market, d, times.get(d))
        for f in ("stamps", "spx", "vix", "vix9d", "vix3m", "vvix", "vx"):
            assert np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True), (d, f)
        assert a.vx_expiries == b.vx_expiries and a.rate == b.rate


def test_session_times_equal_the_calendar(world):
    cal, _, _, _, times = world
    for d in cal.sessions_between(date(2004, 1, 2), date(2026, 12, 31))[::17] + [date(2019, 12, 24), date(2024, 7, 3)]:
        o, c = cal.open_close(d)
        assert times.get(d) == (o.timestamp(), c.timestamp()), d


@pytest.mark.parametrize("job", [
    CronJob("condor.entry", 15, 30, "mon-fri", before_close=timedelta(minutes=30)),
    CronJob("condor.entry", 10, 0, "mon", first_of_week=True, before_close=timedelta(minutes=30)),
    CronJob("hedge.rebalance", 10, 0),
    CronJob("odd", 13, 45, "tue,thu", before_close=timedelta(minutes=10)),
])
def test_job_times_equal_the_scheduler(world, job):
    cal, _, _, _, times = world
    sched = Schedule(cal, 300, job, None, None, times)
    for d in cal.sessions_between(date(2004, 1, 1), date(2026, 7, 31)):
        expected = job.next_fire(cal, datetime.combine(d, time(0), NY).astimezone(UTC))
        expected = expected if expected is not None and expected.astimezone(NY).date() == d else None
        assert sched.fire(job, d) == expected, d


def test_vix_strikes_and_day_paths_equal_the_exchange(world):
    from bot.backtest.day import Day
    from bot.sim.listing import vix_strikes

    cal, market, ex, pricer, times = world
    sched = Schedule(cal, 300, None, None, None, times)
    for d in cal.sessions_between(date(2005, 1, 3), date(2026, 7, 1))[::97]:
        day = Day(d, pricer, cal, sched, False)
        inst = day.instants[len(day.instants) // 2]
        listed = ex.vix_expiries(inst.t)
        for e, tc in listed[:6]:
            assert vix_strikes(pricer.vix_future(e, inst.ts)) == ex.vix_strikes(e, inst.t), (d, e)
        options = [OptionSpec("VIX", e, k, Right.CALL, tc) for e, tc in listed[:4]
                   for k in ex.vix_strikes(e, inst.t)[::9]]
        for i in (day.instants[0], inst, day.instants[-2]):
            got = day.lot_quotes({o.key: o for o in options}, i)
            want = ex.price_options(options, i.t)
            assert {k: (q.bid, q.ask) for k, q in got.items()} == {k: (q.bid, q.ask) for k, q in want.items()}


def test_vix_expiries_of_the_day_equal_the_listing_at_each_instant(world):
    """`Day.vix_expiries` answers one list for the session (open to an hour after the close):
    the listing's at every instant of the day, moved or not, on expiry days, early closes
    and Wednesdays (VIXW) too."""
    from bot.backtest.day import Day
    from bot.sim import listing

    cal, market, ex, pricer, times = world
    sched = Schedule(cal, 300, None, None, None, times)
    rng = random.Random(5)
    days = cal.sessions_between(date(2005, 1, 3), date(2026, 7, 1))
    expiries = {e for y in range(2005, 2027) for m in range(1, 13) if (e := listing.monthly_vix(cal, y, m))}
    picked = [d for d in days if d in expiries][::7] + [date(2022, 11, 25), date(2019, 12, 24)] + days[::211]
    for d in picked:
        day = Day(d, pricer, cal, sched, False)
        open_ts, close_ts = day.arrays.open_ts, day.close_ts
        nxt = cal.open_close(cal.next_session(d))[0].timestamp()
        for ts in ([open_ts - 1.0, open_ts, close_ts, close_ts + 60.0, close_ts + 3600.0, nxt - 1.0, nxt]
                   + [rng.uniform(open_ts, close_ts) for _ in range(5)]):
            inst = day.instants[0].moved(ts, day.arrays.step_of(ts))
            assert day.vix_expiries(inst) == listing.vix_expiries(cal, inst.t), (d, ts)
        for inst in day.instants:
            assert day.vix_expiries(inst) == listing.vix_expiries(cal, inst.t), (d, inst.ts)


def test_marking_quotes_equal_the_exchange(world):
    """`Day.quotes` (an account marked at mid: SPX legs from their day paths, VIX options from
    theirs, or in one batch with chains at an instant a walk moved past) gives the exchange's
    bid and ask, and no quote for an option past its expiry."""
    from bot.backtest.day import Day

    cal, market, ex, pricer, times = world
    sched = Schedule(cal, 300, None, None, None, times)
    rng = random.Random(23)
    for d in cal.sessions_between(date(2005, 1, 3), date(2026, 7, 1))[::131]:
        day = Day(d, pricer, cal, sched, False)
        mid = day.instants[len(day.instants) // 2]
        spx = round(mid.spx / 5) * 5
        expiries = [e for e in day.spx_expiries(day.instants[0])[:3]] + [d]  # d: expires at today's close
        legs = [OptionSpec("SPX", e, Decimal(spx + k), r, "SPXW") for e in expiries
                for k, r in ((-100, Right.PUT), (-25, Right.PUT), (25, Right.CALL), (100, Right.CALL))]
        day.spx_path(legs[:8], [0])  # some legs have day paths, the others are priced at the instant
        listed = ex.vix_expiries(mid.t)
        vix = [OptionSpec("VIX", e, k, Right.CALL, tc) for e, tc in listed[:3] for k in ex.vix_strikes(e, mid.t)[::7]]
        options = legs + vix
        for inst in (day.instants[1], mid, day.instants[-1],
                     mid.moved(ts := mid.ts + rng.uniform(1, 200), day.arrays.step_of(ts))):
            got = day.quotes(options, inst)
            want = ex.price_options(options, inst.t)
            assert {k: (q.bid, q.ask) for k, q in got.items()} == {k: (q.bid, q.ask) for k, q in want.items()}, (d, inst)
        moved = mid.moved(mid.ts + 45.0, day.arrays.step_of(mid.ts + 45.0))
        chains = day.vix_chains(moved, listed[:2], vix)  # chains and held quotes in one batch
        held = day.lot_quotes({o.key: o for o in vix}, moved)
        want = ex.price_options(vix, moved.t)
        assert {k: (q.bid, q.ask) for k, q in held.items()} == {k: (q.bid, q.ask) for k, q in want.items()}
        for chain in chains:
            assert len(chain) == len(ex.vix_strikes(chain.expiry, moved.t))


def test_vix_future_between_steps_equals_the_exchange(world):
    """`Pricer.vix_future` (one instant, no numpy per call) moves between steps as the market
    does (`DayPath.weights`, `between`): the exchange's future to the bit at a step, between
    two steps, at the open and from the close on, for listed monthlies and for expiries
    read off the curve (weeklies)."""
    cal, market, ex, pricer, _ = world
    rng = random.Random(31)
    for d in cal.sessions_between(date(2005, 1, 3), date(2026, 7, 1))[::61]:
        day = pricer.start_day(d)
        k = rng.randrange(len(day.stamps) - 1)
        stamps = [float(day.stamps[k]) + x for x in (0.0, 1.0, 45.0, rng.uniform(1, 299), 299.999)]
        stamps += [day.open_ts, day.close_ts - 30.0, day.close_ts, day.close_ts + 60.0]
        for ts in stamps:
            ts = datetime.fromtimestamp(ts, UTC).timestamp()  # an instant a datetime holds (microseconds)
            kk, ww = day.weights(np.array([ts]))
            assert pricer._weight(ts) == (int(kk[0]), float(ww[0])), (d, ts)
            t = datetime.fromtimestamp(ts, UTC)
            for e, _tc in ex.vix_expiries(t)[:6]:
                assert pricer.vix_future(e, ts) == ex.vix_future(e, t), (d, ts, e)
                assert pricer.vix_future(e, ts) == float(pricer._vix_futures([e], kk, ww)[0]), (d, ts, e)


def test_day_quotes_at_instants_between_steps_equal_the_exchange(world):
    """With a monitor interval that is not a multiple of the market's step, scheduled instants
    fall between steps: the day paths (`spx_path`, `price_paths`) the backtest marks and
    evaluates from there are the exchange's moving prices, not the step's."""
    from bot.backtest.day import Day

    cal, market, ex, pricer, times = world
    sched = Schedule(cal, 420, None, None, None, times)
    for d in cal.sessions_between(date(2006, 1, 3), date(2026, 7, 1))[::173]:
        day = Day(d, pricer, cal, sched, False)
        between_steps = [i for i in day.instants if i.ts < day.close_ts and i.ts not in set(day.arrays.stamps.tolist())]
        assert between_steps, d
        inst = between_steps[len(between_steps) // 2]
        spx = round(market.state_at(inst.t).spx / 5) * 5
        legs = [OptionSpec("SPX", e, Decimal(spx + k), r, "SPXW") for e in day.spx_expiries(inst)[:2]
                for k, r in ((-50, Right.PUT), (50, Right.CALL))]
        day.spx_path(legs, [inst.index])
        listed = ex.vix_expiries(inst.t)
        vix = [OptionSpec("VIX", e, k, Right.CALL, tc) for e, tc in listed[:3] for k in ex.vix_strikes(e, inst.t)[::5]]
        for i in between_steps[::7]:
            got = day.quotes(legs + vix, i)
            want = ex.price_options(legs + vix, i.t)
            assert {k: (q.bid, q.ask) for k, q in got.items()} == {k: (q.bid, q.ask) for k, q in want.items()}, (d, i)


def test_day_paths_from_an_instant_on_equal_the_exchange(world):
    """A condor opened mid-session has its legs priced from that instant on (`spx_path`'s
    start): marks from there are the exchange's; an earlier instant (never asked by the
    backtest) gets the pricer's quote, and asking for it re-prices the legs from there."""
    from bot.backtest.day import Day

    cal, market, ex, pricer, times = world
    sched = Schedule(cal, 300, None, None, None, times)
    for d in cal.sessions_between(date(2006, 1, 3), date(2026, 7, 1))[::149]:
        day = Day(d, pricer, cal, sched, False)
        k = len(day.instants) * 3 // 4
        inst = day.instants[k]
        spx = round(inst.spx / 5) * 5
        legs = [OptionSpec("SPX", e, Decimal(spx + s), r, "SPXW") for e in day.spx_expiries(inst)[:2]
                for s, r in ((-50, Right.PUT), (-25, Right.PUT), (25, Right.CALL), (50, Right.CALL))]
        late_bid, late_ask = day.spx_path(legs, [k + 1, len(day.instants) - 1], k)
        for i in (day.instants[1], day.instants[k - 1], inst, day.instants[k + 1], day.instants[-1]):
            got = day.quotes(legs, i)
            want = ex.price_options(legs, i.t)
            assert {key: (q.bid, q.ask) for key, q in got.items()} == {key: (q.bid, q.ask) for key, q in want.items()}
        bid, ask = day.spx_path(legs, [2, k + 1, len(day.instants) - 1])  # from the open: priced again
        assert np.array_equal(bid[1:], late_bid) and np.array_equal(ask[1:], late_ask)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(day_n=st.integers(0, 10_000), expiry_day=st.booleans(),
       reads=st.lists(st.integers(0, 10_000), min_size=1, max_size=8), strikes=st.integers(1, 9))
def test_vix_day_paths_from_an_instant_on_equal_single_instant_pricing(world, day_n, expiry_day, reads, strikes):
    """`Day.lot_quotes` at scheduled instants reads VIX day paths priced from the first read on
    (`price_paths`' start; an earlier read prices again from there): at every read, in any
    order, bid, ask and mid are the exchange's at that one instant, and an option has no quote
    exactly where the exchange gives none (expired at today's SOQ, not listed, or past its
    expiry; a job at the open is the instant of a monthly's SOQ on its expiry day)."""
    from bot.backtest.day import Day
    from bot.sim import listing

    cal, market, ex, pricer, times = world
    sched = Schedule(cal, 300, CronJob("at.open", 9, 30), None, None, times)
    days = cal.sessions_between(date(2005, 1, 3), date(2026, 7, 1))
    if expiry_day:
        days = [e for y in range(2005, 2026) for m in range(1, 13) if (e := listing.monthly_vix(cal, y, m))]
    d = days[day_n % len(days)]
    day = Day(d, pricer, cal, sched, False)
    t0 = day.instants[0].t
    listed = ex.vix_expiries(t0)
    options = [OptionSpec("VIX", e, k, r, tc) for e, tc in listed[:3]
               for k in ex.vix_strikes(e, t0)[::strikes] for r in (Right.CALL, Right.PUT)]
    options.append(OptionSpec("VIX", d, Decimal(20), Right.CALL, "VIX"))  # today: expired at the open (or unlisted)
    options.append(OptionSpec("VIX", d + timedelta(days=1), Decimal(20), Right.CALL, "VIXW"))  # most likely unlisted
    held = {o.key: o for o in options}
    for r in reads:
        inst = day.instants[r % len(day.instants)]
        got = day.lot_quotes(held, inst)
        want = ex.price_options(options, inst.t)
        assert {k: (q.bid, q.ask, q.mid) for k, q in got.items()} == \
            {k: (q.bid, q.ask, q.mid) for k, q in want.items()}, (d, inst.index)
        one = next(iter(held))
        assert day.lot_quotes(held, inst, keys=(one,)) == {k: q for k, q in got.items() if k == one}
