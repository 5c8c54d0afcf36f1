"""VIX options on the simulated exchange (bot/sim/exchange.py) and SimBroker: listing (monthly VIX,
weekly VIXW), the VX futures curve and its interpolation, Black-76 quotes, orders (single legs,
rolls, calendars), the covered-call margin rule (ALVH.md section 5), cash settlement at the
Wednesday SOQ, and the daily closes of completed sessions (indicator warm-up)."""

from __future__ import annotations

import csv
from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest

from bot.broker.base import Broker, BrokerError, OrderRejected
from bot.broker.sim import SimBroker
from bot.calendar import NY, ny_time
from bot.clock import SimClock
from bot.domain import Action, Leg, OptionSpec, OrderStatus, Right, ceil_tick, spx_option_tick
from bot.sim.exchange import (
    ExchangeReject,
    ExchangeSettings,
    SimExchange,
    _uncovered_vix_calls,
    _worst_payoff,
    vix_option_model,
)
from bot.sim.market import SyntheticMarket, build_market

D = Decimal
START = date(2022, 3, 1)  # a Tuesday
T = ny_time(START, "12:00")
WEEKLY = date(2022, 3, 2)  # VIXW, SOQ on Wednesday 2022-03-02 09:30
WEEKLY2 = date(2022, 3, 9)
MARCH = date(2022, 3, 15)  # the March monthly: Tuesday (the April third Friday is Good Friday)
APRIL = date(2022, 4, 20)
MAY = date(2022, 5, 18)


@pytest.fixture
def market(calendar):
    return SyntheticMarket(calendar, seed=3, start=START - timedelta(days=5), vix0=24.0)


@pytest.fixture
def open_exchange(market, calendar, short_tmp):
    made = []

    def make(settings: ExchangeSettings = ExchangeSettings(), name: str = "sim.sqlite") -> SimExchange:
        ex = SimExchange(market, calendar, settings, short_tmp / name)
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.close()


@pytest.fixture
def exchange(open_exchange):
    return open_exchange()


def vix(expiry: date, strike, right: Right = Right.CALL) -> OptionSpec:
    tclass = "VIX" if expiry in (MARCH, APRIL, MAY) else "VIXW"
    return OptionSpec("VIX", expiry, D(str(strike)), right, tclass)


def natural(ex: SimExchange, legs: list[Leg], t: datetime = T) -> Decimal:
    q = ex.price_options([leg.option for leg in legs], t)
    side = lambda leg: q[leg.option.key].ask if leg.action is Action.BUY else q[leg.option.key].bid  # noqa: E731
    return sum((leg.signed_ratio * side(leg) for leg in legs), D(0))


def book(ex: SimExchange) -> dict[str, int]:
    return {p.option.key: p.quantity for p in ex.positions()}


def buy(ex: SimExchange, ref: str, option: OptionSpec, qty: int = 1, t: datetime = T):
    legs = [Leg(option, Action.BUY)]
    state = ex.place_combo(ref, legs, qty, ceil_tick(natural(ex, legs, t)), t)
    assert state.status is OrderStatus.FILLED
    return state


# --- listing -------------------------------------------------------------------------------------


def test_monthly_expiries_follow_the_calendar_rule_and_weeklies_are_wednesdays(exchange, calendar):
    listed = exchange.vix_expiries(T)
    assert listed == sorted(listed)
    monthly = [d for d, c in listed if c == "VIX"]
    weekly = [d for d, c in listed if c == "VIXW"]
    expected, y, m = [], 2022, 3
    while len(expected) < 9:
        expected.append(calendar.vix_monthly_expiry(y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    assert monthly == expected and monthly[0] == MARCH
    assert weekly == [WEEKLY, WEEKLY2, date(2022, 3, 23), date(2022, 3, 30), date(2022, 4, 6)]
    assert all(d.weekday() == 2 for d in weekly)
    # no weekly in a week with a monthly expiry (the March monthly is Tuesday 03-15)
    for w in weekly:
        assert all(abs((w - mth).days) > 3 for mth in monthly)
    assert all(exchange.vix_expiry_time(d) > T for d, _ in listed)
    # at its SOQ an expiry leaves the list; the weekly's last trading day is the Tuesday
    assert (WEEKLY, "VIXW") not in exchange.vix_expiries(ny_time(WEEKLY, "09:30"))
    assert (WEEKLY, "VIXW") in exchange.vix_expiries(ny_time(WEEKLY, "09:29"))
    assert exchange.vix_expiry_time(WEEKLY) == ny_time(WEEKLY, "09:30")
    assert exchange.vix_last_trade(WEEKLY) == START


def test_a_weekly_on_a_holiday_wednesday_moves_to_the_session_before(exchange):
    t = ny_time(date(2024, 12, 20), "12:00")  # 2025-01-01 is a Wednesday holiday
    weekly = [d for d, c in exchange.vix_expiries(t) if c == "VIXW"]
    assert date(2024, 12, 31) in weekly and date(2025, 1, 1) not in weekly
    assert exchange.is_vix_listed(date(2024, 12, 31), "VIXW")
    assert not exchange.is_vix_listed(date(2024, 12, 31), "VIX")
    assert not exchange.is_vix_listed(MARCH, "VIXW") and not exchange.is_vix_listed(WEEKLY, "VIX")


def test_strikes_grid_around_the_future(exchange):
    for expiry in (WEEKLY, MARCH, MAY):
        f = exchange.vix_future(expiry, T)
        strikes = exchange.vix_strikes(expiry, T)
        assert strikes == sorted(set(strikes))
        assert max(5, f / 2) <= float(strikes[0]) <= max(5, f / 2) + 0.5
        assert strikes[-1] <= 150 and float(strikes[-1]) > min(150, 3 * f) - 5  # within one grid step
        for k in strikes:  # 0.5 steps below 20, 1 to 50, 2.5 to 80, 5 above
            step = D("0.5") if k < 20 else D(1) if k < 50 else D("2.5") if k < 80 else D(5)
            assert k % step == 0, k
        assert any(abs(float(k) - f) <= 0.5 for k in strikes)  # an at-the-money strike


# --- futures -------------------------------------------------------------------------------------


def test_futures_curve_and_interpolation(exchange, market):
    state = market.state_at(T)
    curve = exchange.futures(T)
    assert curve == list(state.vx) and len(curve) >= 2
    assert [e for e, _ in curve][:3] == [MARCH, APRIL, MAY]
    assert exchange.vix_future(MARCH, T) == curve[0][1] and exchange.vix_future(MAY, T) == curve[2][1]
    # a weekly before the first listed future: between spot VIX (today) and the first future
    w = (WEEKLY - START).days / (MARCH - START).days
    assert exchange.vix_future(WEEKLY, T) == pytest.approx(state.vix + w * (curve[0][1] - state.vix))
    # a weekly between two monthlies: linear in days
    mid_week = date(2022, 3, 30)
    w = (mid_week - MARCH).days / (APRIL - MARCH).days
    assert exchange.vix_future(mid_week, T) == pytest.approx(curve[0][1] + w * (curve[1][1] - curve[0][1]))


# --- quotes --------------------------------------------------------------------------------------


@pytest.mark.parametrize("hhmm", ["09:30", "12:00", "15:45"])
def test_quotes_on_ticks_with_greeks_on_the_future(exchange, hhmm):
    t = ny_time(START, hhmm)
    options = [
        OptionSpec("VIX", e, k, r, c)
        for e, c in exchange.vix_expiries(t)[:6]
        for k in exchange.vix_strikes(e, t)
        for r in Right
    ]
    quotes = exchange.price_options(options, t)
    assert set(quotes) == {o.key for o in options}
    for o in options:
        q = quotes[o.key]
        assert D(0) <= q.bid <= q.ask and q.ask > 0, o.key
        assert q.bid % spx_option_tick(q.bid) == 0 and q.ask % spx_option_tick(q.ask) == 0, (o.key, q.bid, q.ask)
        assert q.ask - q.bid <= D("0.70")  # spread model: at most 0.50 before rounding to the ticks
        assert q.greeks is not None and q.greeks.iv > 0 and q.greeks.vega >= 0
        assert (0.0 <= q.greeks.delta <= 1.0) if o.right is Right.CALL else (-1.0 <= q.greeks.delta <= 0.0)
        assert q.underlying == pytest.approx(exchange.vix_future(o.expiry, t))
        assert float(q.ask) >= o.intrinsic(q.underlying) * 0.99 - 0.05  # no free money against the future


def test_spx_and_vix_quotes_together_and_expired_vix_absent(exchange, calendar):
    spx = OptionSpec("SPX", date(2022, 3, 2), D(4500), Right.PUT)
    weekly, monthly = vix(WEEKLY, 25), vix(MARCH, 25)
    never = OptionSpec("VIX", WEEKLY, D(25), Right.CALL, "VIX")  # a weekly date is no monthly
    quotes = exchange.price_options([spx, weekly, monthly, never], T)
    assert set(quotes) == {spx.key, weekly.key, monthly.key}
    assert quotes[spx.key] == exchange.price_options([spx], T)[spx.key]  # the SPX path is unchanged
    at_soq = ny_time(WEEKLY, "09:30")
    assert set(exchange.price_options([weekly, monthly], at_soq)) == {monthly.key}


def test_black76_model_is_consistent():
    T_years = np.array([2, 7, 14, 35, 70, 120]) / 365.0
    for t_y in T_years:
        for vvix in (80.0, 110.0, 160.0):
            F = 20.0
            K = np.array([float(k) for k in np.arange(10.0, 60.5, 0.5)])
            calls, g, vol = vix_option_model(F, K, t_y, vvix, 0.02, True)
            puts, _, _ = vix_option_model(F, K, t_y, vvix, 0.02, False)
            assert np.all(np.diff(calls) < 1e-12), (t_y, vvix)  # decreasing in the strike
            assert np.all(np.diff(puts) > -1e-12)
            assert np.all(calls <= F) and np.all(calls >= np.maximum(F - K, 0) * np.exp(-0.02 * t_y) - 1e-9)
            # put-call parity on the future (same vol per strike)
            assert np.allclose(calls - puts, (F - K) * np.exp(-0.02 * t_y), atol=1e-9)
            assert np.all(vol > 0) and np.all((g["delta"] >= 0) & (g["delta"] <= 1)) and np.all(g["vega"] >= 0)
            # increasing in the future at a fixed strike
            Fs = np.arange(12.0, 60.0, 0.25)
            for k in (15.0, 20.0, 30.0, 45.0):
                by_f, _, _ = vix_option_model(Fs, k, t_y, vvix, 0.02, True)
                assert np.all(np.diff(by_f) > 0), (t_y, vvix, k)
    # the call skew: out-of-the-money calls carry more vol than at the money
    _, _, vol = vix_option_model(20.0, np.array([20.0, 30.0]), 30 / 365, 100.0, 0.02, True)
    assert vol[1] > vol[0]


# --- orders --------------------------------------------------------------------------------------


def test_a_long_call_fills_and_moves_cash(exchange):
    call = vix(APRIL, 25)
    q = exchange.price_options([call], T)[call.key]
    before = exchange.account(T).cash
    state = exchange.place_combo("hedge-1", [Leg(call, Action.BUY)], 4, q.ask, T)
    assert state.status is OrderStatus.FILLED and state.avg_price == q.ask
    (fill,) = exchange.fills(["hedge-1"])
    assert fill.option == call and fill.quantity == 4 and fill.price == q.ask
    # IB $0.65 + Cboe's VIX simple-order fee at a $0.11-0.99 premium $0.25 + ORF $0.033 + OCC $0.025
    assert q.ask == D("0.6")
    assert exchange.account(T).cash - before == -q.ask * 100 * 4 - D("0.958") * 4
    assert book(exchange) == {call.key: 4}
    # a limit at mid rests; the account marks the call at mid and needs no margin for it
    resting = exchange.place_combo("hedge-2", [Leg(call, Action.BUY)], 1, ceil_tick(q.mid) - D("0.05"), T)
    assert resting.status is OrderStatus.WORKING
    account = exchange.account(T)
    assert account.maintenance_margin == 0 and account.net_liquidation == account.cash + q.mid * 100 * 4


def test_long_vix_calls_need_only_their_premium(open_exchange):
    call = vix(APRIL, 25)
    ex = open_exchange(ExchangeSettings(starting_cash=30.0), "poor.sqlite")
    q = ex.price_options([call], T)[call.key]
    assert q.ask * 100 > 30
    with pytest.raises(ExchangeReject) as err:
        ex.place_combo("too-dear", [Leg(call, Action.BUY)], 1, q.ask, T)
    assert err.value.code == 201 and "insufficient funds" in err.value.reason


def test_covered_calendar_is_accepted_and_the_same_short_alone_is_naked(open_exchange):
    short = vix(WEEKLY2, 26)
    sell = [Leg(short, Action.SELL)]
    alone = open_exchange(name="alone.sqlite")
    with pytest.raises(ExchangeReject) as err:
        alone.place_combo("naked", sell, 1, ceil_tick(natural(alone, sell)), T)
    assert err.value.code == 201 and "naked short call" in err.value.reason
    assert alone.order("naked") is None and alone.positions() == []

    ex = open_exchange()
    buy(ex, "back", vix(MAY, 24), 2)  # longer-dated, lower strike: covers
    state = ex.place_combo("write", sell, 2, ceil_tick(natural(ex, sell)), T)
    assert state.status is OrderStatus.FILLED
    assert book(ex) == {vix(MAY, 24).key: 2, short.key: -2}
    assert ex.account(T).maintenance_margin == 0
    # a third short has no cover left; a short below the long's strike is not covered either
    with pytest.raises(ExchangeReject, match="naked short call"):
        ex.place_combo("more", sell, 1, ceil_tick(natural(ex, sell)), T)
    low = [Leg(vix(WEEKLY2, 22), Action.SELL)]
    with pytest.raises(ExchangeReject, match="naked short call"):
        ex.place_combo("low", low, 1, ceil_tick(natural(ex, low)), T)
    # and the covering long cannot be sold while the short is open
    sell_long = [Leg(vix(MAY, 24), Action.SELL)]
    with pytest.raises(ExchangeReject, match="naked short call"):
        ex.place_combo("unhedge", sell_long, 1, ceil_tick(natural(ex, sell_long)), T)


def test_calendar_in_one_combo_and_an_earlier_long_does_not_cover(open_exchange):
    ex = open_exchange()
    calendar_legs = [Leg(vix(WEEKLY2, 40), Action.SELL), Leg(vix(APRIL, 40), Action.BUY)]
    nat = natural(ex, calendar_legs)
    assert nat > 0  # the later call costs more: a net debit
    assert ex.place_combo("cal", calendar_legs, 3, ceil_tick(nat), T).status is OrderStatus.FILLED
    assert book(ex) == {vix(WEEKLY2, 40).key: -3, vix(APRIL, 40).key: 3}
    # reverse calendar: the long expires before the short -> naked
    other = open_exchange(name="reverse.sqlite")
    reverse = [Leg(vix(APRIL, 25), Action.SELL), Leg(vix(WEEKLY2, 20), Action.BUY)]
    with pytest.raises(ExchangeReject, match="naked short call"):
        other.place_combo("rev", reverse, 1, ceil_tick(natural(other, reverse)), T)


def test_a_roll_combo_sells_the_old_expiry_and_buys_the_new(exchange):
    old, new = vix(MARCH, 22), vix(MAY, 24)
    buy(exchange, "front", old, 4)
    roll = [Leg(old, Action.SELL), Leg(new, Action.BUY)]
    quotes = exchange.price_options([old, new], T)
    nat = natural(exchange, roll)
    before = exchange.account(T).cash
    state = exchange.place_combo("roll", roll, 4, ceil_tick(nat), T)
    assert state.status is OrderStatus.FILLED
    fills = exchange.fills(["roll"])
    assert [(f.option, f.quantity) for f in fills] == [(old, -4), (new, 4)]
    assert fills[0].price == quotes[old.key].bid and fills[1].price == quotes[new.key].ask
    assert book(exchange) == {new.key: 4}
    # IB $0.65 + Cboe's VIX complex-order fee ($0.17 at $0.11-0.99, $0.30 at $1-1.99, $0.45 from $2)
    # + ORF $0.033 + OCC $0.025, each leg
    complex_fee = {0: D("0.17"), 1: D("0.30")}
    fees = sum(((D("0.708") + complex_fee.get(int(f.price), D("0.45"))) * 4 for f in fills), D(0))
    assert all(f.price >= D("0.11") for f in fills)
    assert exchange.account(T).cash - before == -state.avg_price * 100 * 4 - fees


def test_unlisted_vix_contract_is_rejected_200(exchange):
    bad = OptionSpec("VIX", WEEKLY, D(25), Right.CALL, "VIX")  # a Wednesday that is no monthly
    with pytest.raises(ExchangeReject) as err:
        exchange.place_combo("bad", [Leg(bad, Action.BUY)], 1, D("1.00"), T)
    assert err.value.code == 200


def test_uncovered_matching_is_greedy_and_optimal():
    k = lambda e, s, q: (vix(e, s).key, q)  # noqa: E731
    # the later short (APRIL 20) must take the APRIL 18 long; the MARCH 25 short then takes MAY 24
    assert _uncovered_vix_calls(dict([k(APRIL, 20, -1), k(MARCH, 25, -1), k(APRIL, 18, 1), k(MAY, 24, 1)])) == []
    assert _uncovered_vix_calls(dict([k(APRIL, 20, -2), k(MAY, 18, 1)])) == [(vix(APRIL, 20).key, 1)]
    assert _uncovered_vix_calls(dict([k(MARCH, 20, -1), k(MARCH, 20, 1)])) == []  # same expiry and strike
    assert _uncovered_vix_calls(dict([k(MARCH, 20, 2)])) == []
    # puts are margined by their worst payoff (down to a VIX of 0); SPX as before
    put = vix(MARCH, 15, Right.PUT).key
    assert _worst_payoff({put: -1}) == -1500
    assert _worst_payoff({put: -1, vix(MARCH, 12, Right.PUT).key: 1}) == -300
    assert _worst_payoff(dict([k(MARCH, 20, -1)])) < -1e8


# --- settlement ------------------------------------------------------------------------------------


async def test_settlement_at_the_soq_without_phantom(exchange, market, calendar):
    clock = SimClock(T)
    broker = SimBroker(exchange, clock)
    await broker.connect()
    soq_time = ny_time(WEEKLY, "09:30")
    soq = market.state_at(soq_time).vix
    assert exchange.vix_soq(WEEKLY) == soq
    strike = D(int(soq) - 3)  # 3+ points in the money at the SOQ
    long_call, short_call, later = vix(WEEKLY, strike), vix(WEEKLY, strike + 10), vix(APRIL, strike)
    buy(exchange, "long", long_call, 2)
    buy(exchange, "later", later, 1)
    sell = [Leg(short_call, Action.SELL)]
    exchange.place_combo("short", sell, 1, ceil_tick(natural(exchange, sell)), T)  # covered by `long`
    held = {long_call.key: 2, short_call.key: -1, later.key: 1}
    assert book(exchange) == held

    await clock.advance_to(ny_time(WEEKLY, "09:29"))
    assert {p.option.key: p.quantity for p in await broker.positions()} == held
    before = (await broker.account()).cash
    assert await broker.settlement_price(long_call) is None
    await clock.advance_to(soq_time)
    assert {p.option.key: p.quantity for p in await broker.positions()} == {later.key: 1}
    intrinsic = D(str(round(soq - float(strike), 2)))
    assert intrinsic >= 3
    assert exchange.settlement(long_call.key) == (2, intrinsic, soq_time)
    assert exchange.settlement(short_call.key) == (-1, max(D("0.00"), D(str(round(soq - float(strike) - 10, 2)))), soq_time)
    expected = intrinsic * 100 * 2 - exchange.settlement(short_call.key)[1] * 100
    after = (await broker.account()).cash
    earned = exchange.interest
    assert after - before == expected  # no commission on cash settlement
    assert await broker.settlement_price(long_call) == intrinsic
    # later: nothing comes back, nothing settles twice
    await clock.advance_to(ny_time(date(2022, 3, 4), "12:00"))
    assert {p.option.key: p.quantity for p in await broker.positions()} == {later.key: 1}
    assert (await broker.account()).cash == after + (exchange.interest - earned)  # only interest since
    assert exchange.price_options([long_call], clock.now()) == {}


# --- the broker port ---------------------------------------------------------------------------


async def test_sim_broker_vix_listing_futures_and_strikes(exchange):
    broker = SimBroker(exchange, SimClock(T))
    await broker.connect()
    assert isinstance(broker, Broker)
    monthly = await broker.expiries("VIX", "VIX")
    weekly = await broker.expiries("VIX", "VIXW")
    assert monthly[:3] == [MARCH, APRIL, MAY] and weekly[:2] == [WEEKLY, WEEKLY2]
    assert not set(monthly) & set(weekly)
    spxw = await broker.expiries("SPX", "SPXW")
    assert spxw == exchange.expiries(T)
    assert await broker.strikes("VIX", "VIX", APRIL) == exchange.vix_strikes(APRIL, T)
    assert await broker.strikes("SPX", "SPXW", spxw[0]) == exchange.strikes(spxw[0], T)
    assert await broker.futures() == exchange.futures(T) == await broker.futures("VIX")
    with pytest.raises(BrokerError):
        await broker.futures("ES")
    with pytest.raises(BrokerError):
        await broker.daily_closes("NDX", 10)


async def test_daily_closes_synthetic_are_completed_sessions_with_a_burn_in(exchange, market, calendar):
    clock = SimClock(T)
    broker = SimBroker(exchange, clock)
    await broker.connect()
    for symbol in ("SPX", "VIX"):
        closes = await broker.daily_closes(symbol, 300)
        days = [d for d, _ in closes]
        assert len(closes) == 300
        assert days == sorted(set(days)) and days[-1] == date(2022, 2, 28) and START not in days
        assert days == calendar.sessions_between(days[0], days[-1])  # consecutive sessions
        assert days[0] < market.first_session  # the burn-in reaches back before the market's start
        assert all(np.isfinite(v) and v > 0 for _, v in closes)
        # from the market's first session on: the close states
        attr = symbol.lower()
        for d, v in closes:
            if d >= market.first_session:
                assert v == getattr(market.state_at(calendar.open_close(d)[1]), attr)
        # the last burn-in close is where the market opens
        prev = calendar.previous_session(market.first_session)
        assert dict(closes)[prev] == (5000.0 if symbol == "SPX" else 24.0)
        # a shorter ask is the tail of the longer one; another instance gives the same answer
        assert await broker.daily_closes(symbol, 20) == closes[-20:]
        again = SyntheticMarket(calendar, seed=3, start=START - timedelta(days=5), vix0=24.0)
        assert again.daily_closes(symbol, 300, T) == closes
    vix_closes = [v for _, v in await broker.daily_closes("VIX", 300)]
    assert 8 < np.median(vix_closes) < 40
    # once today's session has closed, today counts
    await clock.advance_to(ny_time(START, "16:00"))
    assert (await broker.daily_closes("SPX", 3))[-1][0] == START
    # the synthetic market's own path is untouched by the burn-in
    assert market.state_at(calendar.open_close(market.first_session)[0]).spx == 5000.0


async def test_daily_closes_history_are_the_file_closes(shared_data, calendar, short_tmp):
    market = build_market("history", shared_data, calendar, date(2020, 2, 3), date(2020, 2, 28), seed=1)
    ex = SimExchange(market, calendar, ExchangeSettings(), short_tmp / "hist.sqlite")
    try:
        now = ny_time(date(2020, 2, 20), "12:00")
        broker = SimBroker(ex, SimClock(now))
        await broker.connect()
        files = {"VIX": "vix_daily.csv", "SPX": "spx_daily.csv"}
        for symbol, name in files.items():
            with open(shared_data / name, newline="") as fh:
                file_closes = {date.fromisoformat(r["date"]): float(r["close"]) for r in csv.DictReader(fh)}
            closes = await broker.daily_closes(symbol, 300)
            days = [d for d, _ in closes]
            assert len(closes) == 300 and days == sorted(set(days))
            assert days[-1] == date(2020, 2, 19) and all(d < now.astimezone(NY).date() for d in days)
            assert days[0] < date(2019, 1, 1)  # 300 sessions before the replay's start are loaded
            mismatched = [(d, v, file_closes.get(d)) for d, v in closes if file_closes.get(d) != v]
            assert mismatched == []
    finally:
        ex.close()


async def test_sim_broker_rejects_a_naked_vix_call(exchange):
    broker = SimBroker(exchange, SimClock(T))
    await broker.connect()
    with pytest.raises(OrderRejected) as err:
        await broker.place_combo("naked", [Leg(vix(APRIL, 30), Action.SELL)], 1, D("-0.05"))
    assert err.value.code == 201 and "naked short call" in err.value.reason
