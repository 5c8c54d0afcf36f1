"""The simulated exchange and paper account (bot/sim/exchange.py) and SimBroker over it, on a
seeded SyntheticMarket: quotes, the combo fill model, tick and margin rejections, cancels,
cash settlement at expiry (FAILURES.md 10, 11, 17, 22) and state kept in the SQLite file."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.broker.base import OrderRejected, TransientBrokerError
from bot.broker.sim import SimBroker
from bot.calendar import ny_time
from bot.clock import SimClock
from bot.domain import (
    Action,
    Leg,
    OptionSpec,
    OrderStatus,
    Right,
    ceil_tick,
    floor_tick,
    spx_option_tick,
)
from bot.sim.commissions import cash_interest
from bot.sim.exchange import ExchangeReject, ExchangeSettings, SimExchange, _worst_expiry_payoff
from bot.sim.market import SyntheticMarket

D = Decimal
START = date(2022, 3, 1)  # a Tuesday
EXP = date(2022, 3, 2)  # the 1dte expiry of a 15:30 entry on START
T = ny_time(START, "15:30")
SETTINGS = ExchangeSettings()  # $1M, 0.65 per contract, fill_fraction 0.25


@pytest.fixture
def market(calendar):
    return SyntheticMarket(calendar, seed=3, start=START - timedelta(days=5), vix0=24.0)


@pytest.fixture
def state_path(short_tmp):
    return short_tmp / "sim.sqlite"


@pytest.fixture
def open_exchange(market, calendar, state_path):
    """Factory for exchanges on the test's state file; all are closed at teardown."""
    made = []

    def make(settings: ExchangeSettings = SETTINGS, path=None) -> SimExchange:
        ex = SimExchange(market, calendar, settings, path or state_path)
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.close()


@pytest.fixture
def exchange(open_exchange):
    return open_exchange()


def opt(strike, right: Right, expiry: date = EXP) -> OptionSpec:
    return OptionSpec("SPX", expiry, D(strike), right)


def condor_legs(ps, pl, cs, cl, expiry: date = EXP) -> list[Leg]:
    return [
        Leg(opt(ps, Right.PUT, expiry), Action.SELL),
        Leg(opt(pl, Right.PUT, expiry), Action.BUY),
        Leg(opt(cs, Right.CALL, expiry), Action.SELL),
        Leg(opt(cl, Right.CALL, expiry), Action.BUY),
    ]


def spot(ex: SimExchange, t=T) -> float:
    return ex.market.state_at(t).spx


def strike_near(x: float) -> int:
    return int(round(x / 5) * 5)


def standard_condor(ex: SimExchange, t=T, width: int = 25) -> list[Leg]:
    """A condor with shorts about 2% out of the money: quotes are wide enough to walk."""
    s = spot(ex, t)
    ps, cs = strike_near(s * 0.98), strike_near(s * 1.02)
    return condor_legs(ps, ps - width, cs, cs + width)


def prices(ex: SimExchange, legs: list[Leg], t=T) -> tuple[Decimal, Decimal]:
    """(mid, natural) net debit per unit from the exchange's own quotes."""
    q = ex.price_options([leg.option for leg in legs], t)
    mid = sum((leg.signed_ratio * q[leg.option.key].mid for leg in legs), D(0))
    nat = sum(
        (leg.signed_ratio * (q[leg.option.key].ask if leg.action is Action.BUY else q[leg.option.key].bid) for leg in legs),
        D(0),
    )
    return mid, nat


def threshold_limit(mid: Decimal, nat: Decimal, fraction: float = SETTINGS.fill_fraction) -> Decimal:
    """The first price on the 0.05 grid at least `fraction` of the way from mid to natural."""
    return ceil_tick(mid + (nat - mid) * D(str(fraction)))


def cash(ex: SimExchange, t=T) -> Decimal:
    return ex.account(t).cash


def book(ex: SimExchange) -> dict[str, int]:
    return {p.option.key: p.quantity for p in ex.positions()}


# --- quotes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("hhmm", ["09:30", "12:00", "15:30"])
def test_quotes_on_tick_grid_with_greeks(exchange, hhmm):
    t = ny_time(START, hhmm)
    s = spot(exchange, t)
    expiries = exchange.expiries(t)[:3]
    options = [opt(k, r, e) for e in expiries for k in exchange.strikes(e, t) for r in Right]
    quotes = exchange.price_options(options, t)
    assert set(quotes) == {o.key for o in options}
    for o in options:
        q = quotes[o.key]
        assert D(0) <= q.bid <= q.ask, o.key
        assert q.ask > 0
        assert q.bid % spx_option_tick(q.bid) == 0, (o.key, q.bid)
        assert q.ask % spx_option_tick(q.ask) == 0, (o.key, q.ask)
        assert q.greeks is not None and q.greeks.iv > 0
        if o.right is Right.CALL:
            assert 0.0 <= q.greeks.delta <= 1.0
        else:
            assert -1.0 <= q.greeks.delta <= 0.0
        assert q.underlying == pytest.approx(s)
    # deltas are monotone in the strike and near 0.5 at the money
    calls = [quotes[opt(k, Right.CALL, expiries[1]).key].greeks.delta for k in exchange.strikes(expiries[1], t)]
    assert calls == sorted(calls, reverse=True)
    atm = quotes[opt(strike_near(s), Right.CALL, expiries[1]).key].greeks.delta
    assert 0.35 < atm < 0.65


def test_expired_options_are_absent(exchange, calendar):
    open_t, close_t = ny_time(START, "10:00"), calendar.spxw_expiry_time(START)
    today, tomorrow = opt(4900, Right.PUT, START), opt(4900, Right.PUT, EXP)
    yesterday = opt(4900, Right.PUT, date(2022, 2, 28))
    saturday = opt(4900, Right.PUT, date(2022, 3, 5))  # not a session: never listed
    quotes = exchange.price_options([today, tomorrow, yesterday, saturday], open_t)
    assert set(quotes) == {today.key, tomorrow.key}
    quotes = exchange.price_options([today, tomorrow], close_t)  # 16:00: today's SPXW expired
    assert set(quotes) == {tomorrow.key}
    assert START not in exchange.expiries(close_t)
    assert exchange.expiries(open_t)[:2] == [START, EXP]


# --- the combo fill model ----------------------------------------------------------------------


def test_combo_at_mid_rests_and_fills_at_the_threshold(exchange):
    legs = standard_condor(exchange)
    mid, nat = prices(exchange, legs)
    assert mid < nat < 0  # a credit; natural is the smaller credit
    before = cash(exchange)
    state = exchange.place_combo("ic-1", legs, 2, floor_tick(mid), T)
    assert state.status is OrderStatus.WORKING and state.filled == 0 and state.remaining == 2
    assert exchange.fills(["ic-1"]) == [] and exchange.positions() == []
    assert cash(exchange) == before
    exchange.advance_to(T + timedelta(minutes=1))  # same quotes: still resting
    assert exchange.order("ic-1").status is OrderStatus.WORKING
    # one tick short of the threshold still rests
    below = threshold_limit(mid, nat) - D("0.05")
    assert (below - mid) / (nat - mid) < D("0.25")
    assert exchange.modify("ic-1", below, T).status is OrderStatus.WORKING
    # at the threshold it fills in full
    limit = threshold_limit(mid, nat)
    state = exchange.modify("ic-1", limit, T)
    assert state.status is OrderStatus.FILLED
    assert (state.filled, state.remaining, state.limit) == (2, 0, limit)
    assert [o.order_ref for o in exchange.open_orders()] == []


def spx_leg_cost(price: D) -> D:
    """IB's tiered commission ($0.65 a contract from a $0.10 premium, $0.50 from $0.05, $0.25
    below) + Cboe's SPX/SPXW customer fee ($0.36 below a $1 premium, $0.45 from $1) + ORF
    $0.033 + OCC clearing $0.025, per contract (bot/sim/commissions.py has the sources)."""
    ib = D("0.65") if price >= D("0.10") else D("0.50") if price >= D("0.05") else D("0.25")
    return ib + (D("0.45") if price >= 1 else D("0.36")) + D("0.033") + D("0.025")


def test_fill_books_one_execution_per_leg_with_commission_and_cash(exchange):
    legs = standard_condor(exchange)
    mid, nat = prices(exchange, legs)
    quotes = exchange.price_options([leg.option for leg in legs], T)
    before = cash(exchange)
    state = exchange.place_combo("ic-1", legs, 3, threshold_limit(mid, nat, 0.5), T)
    assert state.status is OrderStatus.FILLED
    fills = exchange.fills(["ic-1"])
    assert [f.option.key for f in fills] == [leg.option.key for leg in legs]
    assert [f.quantity for f in fills] == [leg.signed_ratio * 3 for leg in legs]
    assert len({f.exec_id for f in fills}) == 4
    for f, leg in zip(fills, legs):
        q = quotes[leg.option.key]
        assert q.bid <= f.price <= q.ask
        assert (f.price >= q.mid) if leg.action is Action.BUY else (f.price <= q.mid)  # toward its natural side
        assert f.commission == spx_leg_cost(f.price) * 3  # per contract, per leg
        assert f.time == T
    # the legs add up to the combo's average price
    assert sum((f.price * (1 if f.quantity > 0 else -1) for f in fills), D(0)) == state.avg_price
    # cash moves by the net premium less commissions
    commission = sum((f.commission for f in fills), D(0))
    assert commission == sum((spx_leg_cost(f.price) * 3 for f in fills), D(0))
    assert D("7.80") < commission < D("14.0")  # the flat $0.65 was 7.80
    assert cash(exchange) - before == -state.avg_price * 100 * 3 - commission
    assert cash(exchange) - before > 0  # a net credit
    assert book(exchange) == {leg.option.key: leg.signed_ratio * 3 for leg in legs}
    # positions carry the execution price as cost
    costs = {p.option.key: p.avg_cost for p in exchange.positions()}
    assert costs == {f.option.key: f.price for f in fills}


def test_limit_beyond_natural_fills_at_natural(exchange):
    legs = standard_condor(exchange)
    mid, nat = prices(exchange, legs)
    quotes = exchange.price_options([leg.option for leg in legs], T)
    state = exchange.place_combo("ic-1", legs, 1, ceil_tick(nat) + D("1.00"), T)
    assert state.status is OrderStatus.FILLED
    assert state.avg_price == nat
    for f, leg in zip(exchange.fills(["ic-1"]), legs):
        q = quotes[leg.option.key]
        assert f.price == (q.ask if leg.action is Action.BUY else q.bid)


def test_a_marketable_limit_fills_exactly_at_its_limit(exchange):
    misses = []
    s = spot(exchange)
    n = 0
    for width in (5, 10, 25, 50):
        for off in (0.97, 0.98, 0.99):
            ps, cs = strike_near(s * off), strike_near(s * (2 - off))
            legs = condor_legs(ps, ps - width, cs, cs + width)
            mid, nat = prices(exchange, legs)
            limit = threshold_limit(mid, nat)
            while limit < nat:  # every grid price between the threshold and natural
                n += 1
                state = exchange.place_combo(f"o-{n}", legs, 1, limit, T)
                assert state.status is OrderStatus.FILLED
                if state.avg_price != limit:
                    misses.append((legs[0].option.key, width, str(limit), str(state.avg_price)))
                limit += D("0.05")
    assert n > 20
    worse = [m for m in misses if D(m[3]) > D(m[2])]  # paid more / received less than the limit
    assert misses == [], f"{len(misses)} of {n} fills not at the limit ({len(worse)} worse), e.g. {worse[:3]}"


# --- rejections --------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["-1.23", "-1.01", "0.07", "2.999"])
def test_limit_off_the_combo_grid_is_rejected_110(exchange, limit):
    legs = standard_condor(exchange)
    with pytest.raises(ExchangeReject) as err:
        exchange.place_combo("bad-tick", legs, 1, D(limit), T)
    assert err.value.code == 110
    assert exchange.order("bad-tick") is None
    # modify of a working order is checked the same way
    exchange.place_combo("ok", legs, 1, D("-20.00"), T)
    with pytest.raises(ExchangeReject) as err:
        exchange.modify("ok", D(limit), T)
    assert err.value.code == 110
    assert exchange.order("ok").limit == D("-20.00")


async def test_sim_broker_reports_110_as_order_rejected(exchange):
    broker = SimBroker(exchange, SimClock(T))
    with pytest.raises(TransientBrokerError):
        await broker.place_combo("early", standard_condor(exchange), 1, D("-1.00"))  # not connected
    await broker.connect()
    with pytest.raises(OrderRejected) as err:
        await broker.place_combo("bad-tick", standard_condor(exchange), 1, D("-1.02"))
    assert err.value.code == 110 and err.value.order_ref == "bad-tick"
    assert await broker.order("bad-tick") is None


@pytest.mark.parametrize(
    "when",
    [ny_time(START, "09:29"), ny_time(START, "16:00"), ny_time(START, "20:00"), ny_time(date(2022, 3, 5), "11:00")],
    ids=["before-open", "at-close", "evening", "saturday"],
)
def test_order_in_closed_market_is_rejected(exchange, when):
    legs = condor_legs(4775, 4750, 5000, 5025, expiry=date(2022, 3, 8))
    with pytest.raises(ExchangeReject) as err:
        exchange.place_combo("closed", legs, 1, D("5.00"), when)
    assert err.value.code == 201 and "closed" in err.value.reason
    assert exchange.order("closed") is None and exchange.positions() == []


def test_unknown_contract_is_rejected_200(exchange):
    legs = condor_legs(4775, 4750, 5000, 5025, expiry=date(2022, 3, 5))  # a Saturday: not listed
    with pytest.raises(ExchangeReject) as err:
        exchange.place_combo("nosec", legs, 1, D("-1.00"), T)
    assert err.value.code == 200
    assert exchange.order("nosec") is None


def test_margin_defined_risk_condor_needs_only_its_max_loss(open_exchange, short_tmp):
    """Max loss of a 25-wide condor sold for 1.50, 2 lots: (25 - 1.50) x 100 x 2 = 4700."""
    legs = condor_legs(4700, 4675, 5100, 5125)
    enough = open_exchange(ExchangeSettings(starting_cash=4700.0), short_tmp / "a.sqlite")
    state = enough.place_combo("ic-1", legs, 2, D("-1.50"), T)
    assert state.status in (OrderStatus.WORKING, OrderStatus.FILLED)
    short = open_exchange(ExchangeSettings(starting_cash=4699.0), short_tmp / "b.sqlite")
    with pytest.raises(ExchangeReject) as err:
        short.place_combo("ic-1", legs, 2, D("-1.50"), T)
    assert err.value.code == 201 and "insufficient funds" in err.value.reason
    assert short.order("ic-1") is None
    # one lot fits in the same account
    assert short.place_combo("ic-2", legs, 1, D("-1.50"), T).status in (OrderStatus.WORKING, OrderStatus.FILLED)


def test_margin_naked_short_call_is_refused_even_with_a_million(exchange):
    call = opt(strike_near(spot(exchange) * 1.05), Right.CALL)
    with pytest.raises(ExchangeReject) as err:
        exchange.place_combo("naked", [Leg(call, Action.SELL)], 1, D("-0.50"), T)
    assert "insufficient funds" in err.value.reason
    # the same call covered by a long call 25 higher is a defined-risk spread: accepted
    spread = [Leg(call, Action.SELL), Leg(opt(call.strike + 25, Right.CALL), Action.BUY)]
    assert exchange.place_combo("spread", spread, 1, D("-0.50"), T).status is not OrderStatus.REJECTED


def test_margin_counts_positions_already_held(exchange):
    """A long call bought earlier covers a short call sold now (same expiry): a call spread."""
    low = opt(strike_near(spot(exchange)), Right.CALL)  # at the money
    high = opt(low.strike + 10, Right.CALL)
    assert exchange.place_combo("long", [Leg(low, Action.BUY)], 1, D("50.00"), T).status is OrderStatus.FILLED
    sell = [Leg(high, Action.SELL)]
    with pytest.raises(ExchangeReject):  # alone it would be a naked short call
        exchange.place_combo("naked", [Leg(opt(low.strike - 10, Right.CALL), Action.SELL)], 2, D("-0.05"), T)
    _, nat = prices(exchange, sell)
    assert nat < 0
    state = exchange.place_combo("short", sell, 1, ceil_tick(nat), T)
    assert state.status is OrderStatus.FILLED
    assert book(exchange) == {low.key: 1, high.key: -1}


async def test_sim_broker_margin_rejection_is_final(open_exchange, short_tmp):
    ex = open_exchange(ExchangeSettings(starting_cash=1000.0), short_tmp / "poor.sqlite")
    broker = SimBroker(ex, SimClock(T))
    await broker.connect()
    with pytest.raises(OrderRejected) as err:
        await broker.place_combo("ic-1", standard_condor(ex), 1, D("-1.00"))
    assert err.value.code == 201 and "insufficient funds" in err.value.reason
    assert await broker.open_orders() == [] and await broker.positions() == []


# --- cancels -----------------------------------------------------------------------------------


async def test_cancel_of_a_filled_order_returns_filled_and_keeps_the_position(exchange):
    """FAILURES.md 10: the cancel lost the race to a fill (IB 10148)."""
    broker = SimBroker(exchange, SimClock(T))
    await broker.connect()
    legs = standard_condor(exchange)
    mid, nat = prices(exchange, legs)
    placed = await broker.place_combo("ic-1", legs, 1, threshold_limit(mid, nat))
    assert placed.status is OrderStatus.FILLED
    state = await broker.cancel("ic-1")
    assert state.status is OrderStatus.FILLED and state.filled == 1
    assert state.avg_price == placed.avg_price
    assert {p.option.key: p.quantity for p in await broker.positions()} == {leg.option.key: leg.signed_ratio for leg in legs}
    assert len(await broker.fills(["ic-1"])) == 4
    assert exchange.order("ic-1").status is OrderStatus.FILLED


def test_cancel_of_a_working_order_and_of_an_unknown_one(exchange):
    legs = standard_condor(exchange)
    exchange.place_combo("w", legs, 1, D("-20.00"), T)
    state = exchange.cancel("w", T)
    assert state.status is OrderStatus.CANCELLED and state.filled == 0
    assert exchange.cancel("w", T).status is OrderStatus.CANCELLED  # twice is harmless
    with pytest.raises(ExchangeReject) as err:
        exchange.cancel("never-placed", T)
    assert err.value.code == 10147


async def test_cancel_all_cancels_every_working_order(exchange):
    broker = SimBroker(exchange, SimClock(T))
    await broker.connect()
    legs = standard_condor(exchange)
    mid, nat = prices(exchange, legs)
    for i in range(3):
        assert (await broker.place_combo(f"w{i}", legs, 1, D("-20.00") - i)).status is OrderStatus.WORKING
    assert (await broker.place_combo("f", legs, 1, threshold_limit(mid, nat))).status is OrderStatus.FILLED
    assert exchange.cancel_all(T) == ["w0", "w1", "w2"]
    assert await broker.open_orders() == []
    assert [exchange.order(r).status for r in ("w0", "w1", "w2", "f")] == [OrderStatus.CANCELLED] * 3 + [OrderStatus.FILLED]
    assert book(exchange) == {leg.option.key: leg.signed_ratio for leg in legs}  # the fill is kept
    # and through the broker port (reqGlobalCancel), nothing left to cancel
    await broker.place_combo("w3", legs, 1, D("-21.00"))
    await broker.cancel_all()
    assert await broker.open_orders() == []
    assert (await broker.order("w3")).status is OrderStatus.CANCELLED


# --- cash settlement at expiry (FAILURES.md 22) -----------------------------------------------


async def test_itm_short_leg_is_cash_settled_at_the_close_without_phantom(exchange, market, calendar):
    settle = market.settlement(EXP)
    ps = int(settle // 5 * 5) + 15  # short put 10-15 points in the money at the close
    pl = ps - 50  # long put out of the money
    cs = strike_near(settle * 1.03)  # calls far out of the money
    legs = condor_legs(ps, pl, cs, cs + 25)
    assert pl < settle < ps < cs
    clock = SimClock(T)
    broker = SimBroker(exchange, clock)
    await broker.connect()
    mid, nat = prices(exchange, legs)
    assert (await broker.place_combo("ic-1", legs, 2, ceil_tick(nat))).status is OrderStatus.FILLED
    held = {leg.option.key: leg.signed_ratio * 2 for leg in legs}
    assert book(exchange) == held

    await clock.advance_to(ny_time(EXP, "15:55"))
    assert {p.option.key: p.quantity for p in await broker.positions()} == held
    before = (await broker.account()).cash
    interest_before = exchange.interest
    assert await broker.settlement_price(legs[0].option) is None

    expiry_time = calendar.spxw_expiry_time(EXP)
    await clock.advance_to(expiry_time)  # 16:00 ET: settled on the SPX close
    assert await broker.positions() == []
    intrinsic = D(str(round(ps - settle, 2)))
    assert D(0) < intrinsic <= D(15)
    after = (await broker.account()).cash
    # no commission on cash settlement; the close books a night's interest on the cash before it
    night = exchange.interest - interest_before
    nights = (calendar.next_session(EXP) - EXP).days
    assert night == cash_interest(before, market.rate_on(EXP), nights) and night > 0
    assert after - before == -intrinsic * 100 * 2 + night
    assert exchange.settlement(legs[0].option.key) == (-2, intrinsic, expiry_time)
    for leg in legs[1:]:
        assert exchange.settlement(leg.option.key) == (leg.signed_ratio * 2, D("0.00"), expiry_time)
    assert await broker.settlement_price(legs[0].option) == intrinsic
    assert await broker.settlement_price(legs[1].option) == D(0)
    account = await broker.account()
    assert account.maintenance_margin == 0 and account.net_liquidation == account.cash

    # later days: no phantom position comes back, nothing is settled twice
    await clock.advance_to(ny_time(date(2022, 3, 4), "12:00"))
    assert await broker.positions() == []
    assert (await broker.account()).cash == after + (exchange.interest - interest_before - night)  # only interest since
    assert exchange.price_options([legs[0].option], clock.now()) == {}


def test_working_order_on_an_expired_contract_is_cancelled(exchange, calendar):
    legs = condor_legs(4775, 4750, 5000, 5025, expiry=START)
    exchange.place_combo("today", legs, 1, D("-20.00"), ny_time(START, "15:50"))
    exchange.advance_to(ny_time(EXP, "09:35"))
    state = exchange.order("today")
    assert state.status is OrderStatus.CANCELLED and "expired" in state.reason
    assert exchange.positions() == []


# --- state in the SQLite file ------------------------------------------------------------------


def test_state_survives_closing_and_reopening(open_exchange, exchange, market, calendar, state_path):
    legs = standard_condor(exchange)
    mid, nat = prices(exchange, legs)
    exchange.place_combo("filled", legs, 2, threshold_limit(mid, nat), T)
    exchange.place_combo("working", legs, 1, D("-20.00"), T)
    positions, orders = exchange.positions(), exchange.open_orders()
    money = cash(exchange)
    ids = [int(exchange.order(r).broker_id) for r in ("filled", "working")]
    fills = exchange.fills()
    exchange.close()

    again = open_exchange(ExchangeSettings(starting_cash=5_000.0))  # a fresh default must not reset cash
    assert again.positions() == positions
    assert again.open_orders() == orders
    assert cash(again) == money != D("5000")
    assert again.fills() == fills
    assert again.sim_time == T
    state = again.place_combo("next", legs, 1, D("-20.00"), T + timedelta(minutes=1))
    assert int(state.broker_id) > max(ids)
    # the resting order still works: it fills once its limit moves
    assert again.modify("working", ceil_tick(nat), T + timedelta(minutes=1)).status is OrderStatus.FILLED
    new_ids = {f.exec_id for f in again.fills()} - {f.exec_id for f in fills}
    assert len(new_ids) == 4


def test_a_second_exchange_on_the_same_file_sees_and_cancels_orders(open_exchange, exchange):
    """The offline kill path: `spx-bot kill` opens the account file while the daemon hangs."""
    legs = standard_condor(exchange)
    exchange.place_combo("w1", legs, 1, D("-20.00"), T)
    exchange.place_combo("w2", legs, 1, D("-21.00"), T)
    killer = open_exchange()
    assert [o.order_ref for o in killer.open_orders()] == ["w1", "w2"]
    later = T + timedelta(minutes=2)
    assert killer.cancel_all(later) == ["w1", "w2"]
    assert exchange.open_orders() == []
    assert exchange.order("w1").status is OrderStatus.CANCELLED
    exchange.advance_to(later + timedelta(minutes=5))  # the daemon resumes: nothing comes back
    assert exchange.open_orders() == [] and exchange.positions() == []
    # order ids are shared too
    a = exchange.place_combo("a", legs, 1, D("-20.00"), later)
    b = killer.place_combo("b", legs, 1, D("-20.00"), later)
    assert int(b.broker_id) == int(a.broker_id) + 1


# --- worst payoff at expiry --------------------------------------------------------------------


def test_worst_expiry_payoff_of_a_condor_is_its_width():
    legs = condor_legs(4800, 4775, 5000, 5025)
    assert _worst_expiry_payoff({leg.option.key: leg.signed_ratio * 3 for leg in legs}) == -(25 * 100 * 3)
    wide_call = condor_legs(4800, 4775, 5000, 5050)  # the wider wing decides
    assert _worst_expiry_payoff({leg.option.key: leg.signed_ratio for leg in wide_call}) == -(50 * 100)


def test_worst_expiry_payoff_other_books():
    call = opt(5000, Right.CALL)
    assert _worst_expiry_payoff({call.key: -1}) < -1e8  # naked short call: unbounded
    assert _worst_expiry_payoff({opt(4800, Right.PUT).key: -1}) == -4800 * 100  # naked put: down to 0
    assert _worst_expiry_payoff({call.key: 2}) == 0  # long options cannot lose at expiry
    assert _worst_expiry_payoff({}) == 0
    assert _worst_expiry_payoff({call.key: 0}) == 0
    # two expiries: each one's worst case, summed
    a = condor_legs(4800, 4775, 5000, 5025)
    b = condor_legs(4800, 4790, 5000, 5010, expiry=date(2022, 3, 3))
    both = {leg.option.key: leg.signed_ratio for leg in a + b}
    assert _worst_expiry_payoff(both) == -(25 * 100) - (10 * 100)


def test_a_reused_order_ref_is_rejected_103(exchange):
    """IB answers a duplicate order id with 103 and places nothing; so does the simulator for a
    reused orderRef, so a bug that re-sends an intent can never double a position."""
    legs = standard_condor(exchange)
    mid, _ = prices(exchange, legs)
    far = floor_tick(mid) - Decimal("1.00")  # on the combo grid (a mid can fall between ticks), never fills
    exchange.place_combo("dup-1", legs, 1, far, T)
    with pytest.raises(ExchangeReject) as err:
        exchange.place_combo("dup-1", legs, 1, far, T)
    assert err.value.code == 103
    assert [o.order_ref for o in exchange.open_orders()] == ["dup-1"]


_KEYS = ["SPXW 20220302 4300 P", "SPXW 20220302 4400 C", "VIX 20220316 30 C"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_KEYS), st.integers(-3, 3).filter(bool),
                          st.integers(1, 500).map(lambda c: Decimal(c) / 100)), min_size=1, max_size=6),
       st.lists(st.tuples(st.sampled_from(_KEYS), st.integers(-3, 3).filter(bool)), max_size=3))
def test_booking_a_fills_legs_at_once_is_booking_them_one_by_one(trades, held):
    """A fill books its legs with one read of the positions (`_book_positions`): the same
    positions and average costs as one leg at a time, with repeated keys and legs that close
    or flip a position."""
    one, batch = (SimExchange(None, None, SETTINGS, ":memory:") for _ in range(2))
    try:
        for ex in (one, batch):
            for key, qty in held:
                ex._book_position(key, qty, Decimal("1.25"))
        for key, qty, px in trades:
            one._book_position(key, qty, px)
        batch._book_positions(trades)
        assert batch.positions() == one.positions()
        assert [(str(p.option.key), str(p.avg_cost)) for p in batch.positions()] == \
               [(str(p.option.key), str(p.avg_cost)) for p in one.positions()]
    finally:
        one.close()
        batch.close()


def test_commission_rates_keep_their_text():
    """The schedule's rates become Decimals once (a cache): a rate's own text, whatever was
    asked before (1 and 1.0 are equal floats but different amounts of cents' text)."""
    from bot.sim.commissions import IB_TIERED, flat_schedule

    legs = [(3, D("1.25")), (-3, D("0.04")), (-2, D("0.07")), (1, D("12.00"))]
    assert [str(c) for c in flat_schedule(1.0).order_commissions(legs)] == ["3.0", "3.0", "2.0", "1.0"]
    assert [str(c) for c in flat_schedule(1).order_commissions(legs)] == ["3", "3", "2", "1"]
    assert [str(c) for c in flat_schedule(1.0).order_commissions(legs)] == ["3.0", "3.0", "2.0", "1.0"]
    each = IB_TIERED.order_commissions(legs, ["SPX", "SPX", "VIX", "SPY"])
    assert each == [D("0.65") * 3 + (D("0.45") + D("0.033") + D("0.025")) * 3,
                    D("0.25") * 3 + (D("0.36") + D("0.033") + D("0.025")) * 3,
                    D("0.50") * 2 + (D("0.05") + D("0.033") + D("0.025")) * 2,
                    D("0.65") + D("0.033") + D("0.025")]
