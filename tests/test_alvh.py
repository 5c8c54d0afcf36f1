"""ALVH.md §2-6, rule by rule, on the pure decision code (no market model, no clock)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import load_config
from bot.domain import Action, ChainRow, Greeks, Leg, OptionSpec, Quote, Right
from bot.pricing import black76_greeks, black76_price
from strategies import alvh
from strategies.alvh import HedgeBook, HedgeMarket, HedgeState, Lot, Signals

from conftest import ROOT

CFG = load_config(ROOT / "config" / "sim.toml").hedge
TODAY = date(2022, 3, 1)
FRONT, MID, BACK = date(2022, 3, 15), date(2022, 4, 19), date(2022, 5, 18)  # DTE 14, 49, 78
WEEKLY = date(2022, 3, 9)  # DTE 8 (write window 7-21)


def call(expiry: date, strike: float, tc: str = "VIX") -> OptionSpec:
    return OptionSpec("VIX", expiry, Decimal(str(strike)), Right.CALL, tc)


def chain(expiry: date, future: float, tc: str = "VIX", vol: float = 1.0) -> tuple[ChainRow, ...]:
    """Black-76 calls on the future, strikes 10..60."""
    T = (expiry - TODAY).days / 365
    rows = []
    for k in range(10, 61):
        price = float(black76_price(future, k, T, vol, 0.0, True))
        g = black76_greeks(future, k, T, vol, 0.0, True)
        bid, ask = max(0.0, round(price - 0.05, 2)), round(price + 0.05, 2)
        q = Quote(Decimal(str(bid)), Decimal(str(ask)), Greeks(float(g["delta"]), 0.0, float(g["vega"]), 0.0, vol), future)
        rows.append(ChainRow(call(expiry, k, tc), q))
    return tuple(rows)


def market(vix: float = 18.0, future: float | None = None, quotes=None, today=TODAY) -> HedgeMarket:
    f = future or vix + 1
    chains = {"front": chain(FRONT, f), "mid": chain(MID, f + 1), "back": chain(BACK, f + 2),
              "write": chain(WEEKLY, f - 0.5, "VIXW")}
    all_quotes = {r.option.key: r.quote for rows in chains.values() for r in rows}
    all_quotes.update(quotes or {})
    return HedgeMarket(today, vix, chains, all_quotes)


def signals(vix=18.0, rsi=50.0, macd=0.0, signal=0.1) -> Signals:
    return Signals(vix, rsi, macd, signal)


def book(notional=100_000, lots=()) -> HedgeBook:
    return HedgeBook(tuple(lots), Decimal(notional))


def with_(cfg=CFG, **kw):
    return cfg.model_copy(update=kw)


# --- §2 counts ----------------------------------------------------------------------------------
def test_4_4_2_per_100k_at_multiplier_1():
    assert alvh.count_targets(Decimal(100_000), 1.0, CFG) == {"front": 4, "mid": 4, "back": 2}
    assert alvh.count_targets(Decimal(250_000), 1.0, CFG) == {"front": 10, "mid": 10, "back": 5}


def test_counts_round_and_never_fall_below_one_per_layer():
    assert alvh.count_targets(Decimal(20_000), 0.5, CFG) == {"front": 1, "mid": 1, "back": 1}
    assert alvh.count_targets(Decimal(0), 2.0, CFG) == {"front": 0, "mid": 0, "back": 0}
    assert alvh.count_targets(Decimal(62_500), 1.0, CFG) == {"front": 3, "mid": 3, "back": 1}  # 2.5 -> 3, 1.25 -> 1


def test_layer_windows_pick_expiries():
    monthly = [date(2022, 2, 16), FRONT, MID, BACK, date(2022, 6, 15), date(2022, 7, 20)]
    assert alvh.layer_expiry(monthly, TODAY, CFG.front) == FRONT  # nearest monthly with DTE >= 8
    assert alvh.layer_expiry(monthly, date(2022, 3, 8), CFG.front) == MID  # 03-15 is DTE 7: next
    assert alvh.layer_expiry(monthly, TODAY, CFG.mid) == MID  # 30-45, none: nearest above 30 (49)
    assert alvh.layer_expiry(monthly, TODAY, CFG.back) == BACK  # 60-120
    assert alvh.write_expiry([WEEKLY, *monthly], TODAY, CFG) == WEEKLY  # 7-21, weekly allowed


def test_strike_by_delta_off_the_future():
    rows = chain(MID, 20.0)
    pick = alvh.by_delta(rows, 0.30)
    assert abs(pick.quote.greeks.delta - 0.30) == min(abs(r.quote.greeks.delta - 0.30) for r in rows)
    assert pick.option.strike > 20  # 30-delta call is out of the money


def test_buys_each_layer_to_target_at_its_delta():
    d = alvh.decide(signals(18.0), market(18.0), book(), HedgeState(), CFG, scheduled=True)
    buys = {a.layer: a for a in d.actions if a.kind == alvh.BUY}
    assert {k: a.quantity for k, a in buys.items()} == {"front": 4, "mid": 4, "back": 2}
    assert buys["front"].legs[0].option.expiry == FRONT and buys["back"].legs[0].option.expiry == BACK


def test_sells_excess_over_target():
    lots = [Lot("front", call(FRONT, 22), 9, Decimal("1.00"))]
    d = alvh.decide(signals(18.0), market(18.0), book(lots=lots), HedgeState(tier=1), CFG, scheduled=True)
    sells = [a for a in d.actions if a.kind == alvh.SELL]
    assert [(a.layer, a.quantity) for a in sells] == [("front", 5)]


def test_small_drift_of_the_target_is_not_traded():
    lots = [Lot("front", call(FRONT, 22), 9, Decimal("1")), Lot("mid", call(MID, 23), 8, Decimal("1")),
            Lot("back", call(BACK, 24), 4, Decimal("1"))]
    d = alvh.decide(signals(18.0), market(18.0), book(250_000, lots), HedgeState(tier=1), CFG, scheduled=True)
    # targets 10/10/5: front 9 (10% off) stays, mid 8 (20% off) and back 4 (20% off) are topped up
    assert d.targets == {"front": 10, "mid": 10, "back": 5}
    assert {a.layer: a.quantity for a in d.actions if a.kind == alvh.BUY} == {"mid": 2, "back": 1}


def test_two_layers_writing_the_same_call_keep_separate_lots():
    short = call(WEEKLY, 25, "VIXW")
    lots = [*_hedged_lots(), Lot("mid", short, -3, Decimal("1.00")), Lot("back", short, -1, Decimal("1.00"))]
    d = alvh.decide(signals(26, macd=1, signal=0), market(26), book(lots=lots), HedgeState(tier=3), CFG, True)
    backs = [(a.layer, a.quantity) for a in d.actions if a.kind == alvh.BUY_BACK]
    assert backs == [("mid", 3), ("back", 1)]
    assert not [a for a in d.actions if a.kind == alvh.ROLL]  # a bought-back short never turns long


def test_roll_when_front_dte_reaches_7():
    old = call(date(2022, 3, 8), 22)  # DTE 7
    lots = [Lot("front", old, 4, Decimal("1.00"))]
    d = alvh.decide(signals(18.0), market(18.0), book(lots=lots), HedgeState(tier=1), CFG, scheduled=True)
    rolls = [a for a in d.actions if a.kind == alvh.ROLL]
    assert len(rolls) == 1 and rolls[0].quantity == 4
    assert rolls[0].legs[0] == Leg(old, Action.SELL) and rolls[0].legs[1].option.expiry == FRONT
    assert not [a for a in d.actions if a.kind == alvh.BUY and a.layer == "front"]  # the roll kept it at 4


# --- §3 tiers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("vix, mult", [(0.0, 0.5), (15.99, 0.5), (16.0, 1.0), (19.99, 1.0), (20.0, 1.25),
                                       (25.0, 1.5), (29.99, 1.5), (30.0, 2.0), (80.0, 2.0)])
def test_tier_multiplier_bounds_are_lower_inclusive(vix, mult):
    assert CFG.tiers[alvh.tier_of(vix, CFG)].multiplier == mult


def test_a_zero_bound_is_a_real_bound():
    tiers = [{"lower": 0, "upper": 10, "multiplier": 0.0}, {"lower": 10, "upper": 1000, "multiplier": 1.0}]
    from bot.config import HedgeConfig

    cfg = HedgeConfig(tiers=tiers)
    assert alvh.tier_of(0.0, cfg) == 0 and cfg.tiers[0].multiplier == 0.0
    assert alvh.count_targets(Decimal(100_000), 0.0, cfg) == {"front": 1, "mid": 1, "back": 1}


def test_hysteresis_up_at_once_down_one_point_below():
    t = alvh.tier_with_hysteresis
    assert t(20.0, 1, CFG) == 2  # up at the bound
    assert t(19.5, 2, CFG) == 2  # held within the band
    assert t(19.01, 2, CFG) == 2
    assert t(18.99, 2, CFG) == 1  # more than one point under: down


@given(st.lists(st.floats(19.2, 20.8), min_size=2, max_size=40))
def test_hysteresis_stops_churn_at_a_boundary(path):
    """VIX wandering within a point of 20 changes the tier at most once."""
    tier, changes = None, 0
    for v in path:
        new = alvh.tier_with_hysteresis(v, tier, CFG)
        changes += tier is not None and new != tier
        tier = new
    assert changes <= 1


@given(st.floats(0, 100), st.floats(0, 100), st.integers(0, 2_000_000))
def test_targets_never_negative_and_monotone_in_tier(v1, v2, notional):
    lo, hi = sorted((v1, v2))
    t_lo = alvh.count_targets(Decimal(notional), CFG.tiers[alvh.tier_of(lo, CFG)].multiplier, CFG)
    t_hi = alvh.count_targets(Decimal(notional), CFG.tiers[alvh.tier_of(hi, CFG)].multiplier, CFG)
    assert all(n >= 0 for n in t_lo.values())
    assert all(t_hi[k] >= t_lo[k] for k in alvh.LAYERS)


# --- §4 signals -----------------------------------------------------------------------------------
def test_expansion_bonus_when_rsi_above_65():
    assert alvh.multiplier(1, signals(rsi=66), False, CFG) == 1.5
    assert alvh.multiplier(1, signals(rsi=65), False, CFG) == 1.0


def test_activation_is_a_state_with_minimum_multiplier():
    s = signals(vix=26, macd=1.0, signal=0.5)
    assert alvh.is_activated(s, CFG)
    assert not alvh.is_activated(signals(vix=24, macd=1.0, signal=0.5), CFG)
    assert not alvh.is_activated(signals(vix=30, macd=0.4, signal=0.5), CFG)
    assert alvh.multiplier(alvh.tier_of(26, CFG), s, True, CFG) == 2.0  # 1.5 raised to 2.0


def test_activation_holds_through_a_dip_within_the_hysteresis_band():
    assert alvh.is_activated(signals(vix=24.5, macd=1, signal=0), CFG, was_active=True)
    assert not alvh.is_activated(signals(vix=24.5, macd=1, signal=0), CFG, was_active=False)
    assert not alvh.is_activated(signals(vix=23.9, macd=1, signal=0), CFG, was_active=True)


def test_activation_leaves_only_on_a_completed_bar():
    dip = Signals(22.0, 60.0, 1.0, 0.0, closed_active=True)  # intraday dip, yesterday's close active
    assert alvh.is_activated(dip, CFG, was_active=True)
    assert not alvh.is_activated(Signals(22.0, 60.0, 1.0, 0.0, closed_active=False), CFG, was_active=True)
    assert not alvh.is_activated(dip, CFG, was_active=False)  # it never enters on yesterday's bar


def test_triggers_rebalance_on_rsi_cross_and_activation_change():
    assert alvh.trigger(signals(rsi=72), HedgeState(rsi=68), CFG, False) == "rsi_cross"
    assert alvh.trigger(signals(rsi=72), HedgeState(rsi=71), CFG, False) == "update"
    on = signals(vix=26, macd=1, signal=0)
    assert alvh.trigger(on, HedgeState(activated=False), CFG, False) == "activation_on"
    assert alvh.trigger(signals(vix=23.5), HedgeState(activated=True), CFG, False) == "activation_off"
    assert alvh.trigger(signals(), HedgeState(), CFG, True) == "schedule"


def test_live_update_without_trigger_does_not_trade_toward_targets():
    d = alvh.decide(signals(18.0), market(18.0), book(), HedgeState(tier=1, rsi=50), CFG, scheduled=False)
    assert d.trigger == "update" and not d.rebalance and d.actions == ()


# --- §5 writes ------------------------------------------------------------------------------------
def _hedged_lots():
    return [Lot("front", call(FRONT, 22), 4, Decimal("1.00")), Lot("mid", call(MID, 23), 4, Decimal("1.50")),
            Lot("back", call(BACK, 22), 2, Decimal("2.00"))]


def test_writes_covered_calls_against_mid_and_back_at_half_ratio():
    # 100k at VIX 19 (multiplier 1): targets 4/4/2, as held
    d = alvh.decide(signals(19.0), market(19.0), book(100_000, _hedged_lots()), HedgeState(tier=1), CFG, True)
    assert not [a for a in d.actions if a.kind in (alvh.BUY, alvh.SELL)]
    writes = {a.layer: a for a in d.actions if a.kind == alvh.WRITE}
    assert {k: a.quantity for k, a in writes.items()} == {"mid": 2, "back": 1}
    for a in writes.values():
        short = a.legs[0].option
        assert a.legs[0].action is Action.SELL and short.expiry == WEEKLY and short.trading_class == "VIXW"
        own = next(lot for lot in _hedged_lots() if lot.layer == a.layer)
        assert short.strike >= own.option.strike and short.expiry < own.option.expiry  # covered by its layer
    assert not alvh.naked_shorts([(lot.option, lot.quantity) for lot in _hedged_lots()]
                                 + [(a.legs[0].option, -a.quantity) for a in writes.values()])


def test_no_write_for_less_than_the_minimum_credit():
    """At VIX 15 the weekly call at a covered strike (>= 23) bids under 0.10: not written."""
    d = alvh.decide(signals(15.0), market(15.0), book(200_000, _hedged_lots()), HedgeState(tier=0), CFG, True)
    assert not [a for a in d.actions if a.kind == alvh.WRITE]


def test_writes_wait_for_the_schedule_after_activation_leaves():
    off = alvh.decide(signals(20.0), market(20.0), book(100_000, _hedged_lots()), HedgeState(tier=1, activated=True),
                      CFG, scheduled=False)
    assert off.trigger == "activation_off" and not [a for a in off.actions if a.kind == alvh.WRITE]
    on_schedule = alvh.decide(signals(20.0), market(20.0), book(100_000, _hedged_lots()), off.state, CFG, True)
    assert [a for a in on_schedule.actions if a.kind == alvh.WRITE]


def test_write_ratio_above_one_is_refused():
    from bot.config import ConfigError

    with pytest.raises(ConfigError, match="hedge.write.ratio"):
        load_config(ROOT / "config" / "sim.toml").with_overrides(**{"hedge.write": {"ratio": 1.5}})


def test_no_writes_while_activated_or_vix_at_25():
    lots = _hedged_lots()
    active = alvh.decide(signals(26, macd=1, signal=0), market(26), book(lots=lots), HedgeState(tier=3), CFG, True)
    assert not [a for a in active.actions if a.kind == alvh.WRITE]
    high = alvh.decide(signals(25.5), market(25.5), book(lots=lots), HedgeState(tier=3), CFG, True)
    assert not [a for a in high.actions if a.kind == alvh.WRITE]


def _short_lot(sale="1.00"):
    return Lot("mid", call(WEEKLY, 25, "VIXW"), -2, Decimal(sale))


def test_buy_back_at_80_percent_profit():
    short = _short_lot()
    cheap = {short.option.key: Quote(Decimal("0.10"), Decimal("0.20"))}
    d = alvh.decide(signals(15), market(15, quotes=cheap), book(lots=[*_hedged_lots(), short]), HedgeState(tier=0),
                    CFG, scheduled=False)
    assert [(a.kind, a.quantity) for a in d.actions] == [(alvh.BUY_BACK, 2)]
    dear = {short.option.key: Quote(Decimal("0.20"), Decimal("0.30"))}
    d = alvh.decide(signals(15), market(15, quotes=dear), book(lots=[*_hedged_lots(), short]), HedgeState(tier=0),
                    CFG, scheduled=False)
    assert d.actions == ()


def test_buy_back_at_once_on_activation_or_vix_25():
    lots = [*_hedged_lots(), _short_lot()]
    d = alvh.decide(signals(26, macd=1, signal=0), market(26), book(lots=lots), HedgeState(tier=3), CFG, False)
    assert d.actions[0].kind == alvh.BUY_BACK and d.actions[0].reason == "activation"
    d = alvh.decide(signals(25.2), market(25.2), book(lots=lots), HedgeState(tier=3), CFG, False)
    assert [a.kind for a in d.actions] == [alvh.BUY_BACK]


def test_covering_long_is_not_rolled_before_its_short_is_closed():
    old = call(date(2022, 3, 29), 23)  # mid layer at DTE 28 < 30: roll due, covering a weekly short
    short = Lot("mid", call(WEEKLY, 25, "VIXW"), -2, Decimal("1.00"))
    lots = [Lot("mid", old, 4, Decimal("1.50")), short]
    d = alvh.decide(signals(15), market(15), book(lots=lots), HedgeState(tier=0), CFG, scheduled=True)
    kinds = [a.kind for a in d.actions]
    assert kinds.index(alvh.BUY_BACK) < kinds.index(alvh.ROLL)


def test_excess_sale_keeps_the_calls_covering_shorts():
    short = call(WEEKLY, 25, "VIXW")
    lots = [Lot("mid", call(MID, 23), 8, Decimal("1.50")), Lot("mid", short, -3, Decimal("1.00"))]
    still_dear = {short.key: Quote(Decimal("0.85"), Decimal("0.95"))}  # not yet 80% earned: stays
    mid_only = with_(front=CFG.front.model_copy(update={"count": 0}), back=CFG.back.model_copy(update={"count": 0}))
    d = alvh.decide(signals(15), market(15, quotes=still_dear), book(20_000, lots), HedgeState(tier=0), mid_only, True)
    sold = sum(a.quantity for a in d.actions if a.kind == alvh.SELL and a.layer == "mid")
    assert sold == 5  # 8 held, target 1, but 3 cover shorts


# --- §6 monetization ------------------------------------------------------------------------------
def test_monetize_half_a_layer_at_vix_40_and_3x():
    lots = _hedged_lots()
    rich = {lot.option.key: Quote(Decimal("9.90"), Decimal("10.10")) for lot in lots}
    d = alvh.decide(signals(41, macd=1, signal=0), market(41, quotes=rich), book(lots=lots),
                    HedgeState(tier=4, activated=True), CFG, False)
    sold = {a.layer: a.quantity for a in d.actions if a.kind == alvh.MONETIZE}
    assert sold == {"front": 2, "mid": 2, "back": 1}
    assert d.state.monetized == {"front", "mid", "back"}
    # no re-buy while VIX >= 30; the tier target re-buys once it is back under 30
    after = [Lot(lot.layer, lot.option, lot.quantity - sold[lot.layer], lot.cost) for lot in lots]
    d2 = alvh.decide(signals(35, macd=1, signal=0), market(35), book(lots=after), d.state, CFG, True)
    assert not [a for a in d2.actions if a.kind == alvh.BUY]
    d3 = alvh.decide(signals(28), market(28), book(lots=after), d2.state, CFG, True)
    assert d3.state.monetized == frozenset() and [a for a in d3.actions if a.kind == alvh.BUY]


def test_no_monetize_below_3x_cost():
    lots = _hedged_lots()
    meh = {lot.option.key: Quote(Decimal("2.00"), Decimal("2.10")) for lot in lots}
    d = alvh.decide(signals(41, macd=1, signal=0), market(41, quotes=meh), book(lots=lots),
                    HedgeState(tier=4, activated=True), CFG, False)
    assert not [a for a in d.actions if a.kind == alvh.MONETIZE]


# --- the invariant --------------------------------------------------------------------------------
def test_naked_short_detection():
    short = call(WEEKLY, 25, "VIXW")
    assert alvh.naked_shorts([(short, -1)]) == [(short, 1)]
    assert alvh.naked_shorts([(short, -1), (call(MID, 23), 1)]) == []
    assert alvh.naked_shorts([(short, -1), (call(MID, 26), 1)]) == [(short, 1)]  # higher strike: no cover
    assert alvh.naked_shorts([(short, -1), (call(date(2022, 3, 8), 20), 1)]) == [(short, 1)]  # expires first
    assert alvh.naked_shorts([(short, -2), (call(MID, 23), 1)]) == [(short, 1)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(10, 90), st.floats(0, 100), st.floats(-3, 3), st.booleans(),
                          st.integers(0, 400_000)), min_size=1, max_size=12))
def test_no_naked_short_after_any_sequence_of_decisions(steps):
    """Feed decisions a random path of VIX, RSI, MACD and notional; apply every action to the
    book; no state ever holds a naked short call."""
    lots: dict[OptionSpec, Lot] = {}
    state = HedgeState()
    day = TODAY
    for vix, rsi, macd, scheduled, notional in steps:
        m = market(vix)
        d = alvh.decide(Signals(vix, rsi, macd, 0.0), m, book(notional, lots.values()), state, CFG, scheduled)
        for a in d.actions:
            for leg in a.legs:
                old = lots.get(leg.option)
                qty = (old.quantity if old else 0) + leg.signed_ratio * a.quantity
                lots[leg.option] = Lot(old.layer if old else a.layer, leg.option, qty,
                                       m.quotes[leg.option.key].mid if leg.option.key in m.quotes else Decimal(1))
            assert not alvh.naked_shorts((lot.option, lot.quantity) for lot in lots.values())
        lots = {k: v for k, v in lots.items() if v.quantity}
        state = d.state
        day += timedelta(days=1)
    assert all(n >= 0 for n in d.targets.values())


def test_vega_sizing_alternative():
    cfg = with_(sizing="vega")
    t = alvh.vega_targets(20_000.0, {"front": 0.35, "mid": 0.30, "back": 0.25}, 1.0, cfg)
    # 0.5 x 20,000 = 10,000 $/pt split 4:4:2 -> 4,000 / 35 = 114, 4,000 / 30 = 133, 2,000 / 25 = 80
    assert t == {"front": 114, "mid": 133, "back": 80}
    assert alvh.vega_targets(0.0, {}, 1.0, cfg) == {"front": 0, "mid": 0, "back": 0}


def test_halted_hedge_takes_no_action():
    d = alvh.decide(signals(18), market(18), book(), HedgeState(halted=True), CFG, scheduled=True)
    assert d.actions == () and d.targets["front"] == 4


# --- activation within a session (issue 8: no flicker on its first day) -----------------------------
def _on(vix=26.0, session=TODAY, closed_active=False):
    return Signals(vix, 60.0, 1.0, 0.5, closed_active, session)


def test_activation_once_on_holds_for_the_rest_of_its_session():
    on = alvh.decide(_on(), market(26.0), book(100_000, _hedged_lots()), HedgeState(tier=3), CFG, False)
    assert on.activated and on.state.activated_on == TODAY
    # later that day VIX falls well under 25 and MACD under its signal: still active
    dip = Signals(20.0, 50.0, 0.1, 0.5, False, TODAY)
    later = alvh.decide(dip, market(20.0), book(100_000, _hedged_lots()), on.state, CFG, True)
    assert later.activated and later.trigger == "schedule"
    assert not [a for a in later.actions if a.kind == alvh.WRITE]
    # the next session: the completed bar is inactive, so it leaves, and writes wait a session
    nxt = date(2022, 3, 2)
    off = alvh.decide(Signals(20.0, 50.0, 0.1, 0.5, False, nxt), market(20.0, today=nxt),
                      book(100_000, _hedged_lots()), later.state, CFG, False)
    assert not off.activated and off.trigger == "activation_off"
    sched = alvh.decide(Signals(20.0, 50.0, 0.1, 0.5, False, nxt), market(20.0, today=nxt),
                        book(100_000, _hedged_lots()), off.state, CFG, True)
    assert not [a for a in sched.actions if a.kind == alvh.WRITE]  # activation held earlier this session
    third = date(2022, 3, 3)
    again = alvh.decide(Signals(20.0, 50.0, 0.1, 0.5, False, third), market(20.0, today=third),
                        book(100_000, _hedged_lots()), sched.state, CFG, True)
    assert [a for a in again.actions if a.kind == alvh.WRITE]


def test_activation_held_by_the_completed_bar_across_sessions():
    state = HedgeState(tier=3, activated=True, activated_on=date(2022, 2, 24), active_session=date(2022, 2, 28))
    held = alvh.decide(Signals(22.0, 50.0, 0.1, 0.5, True, TODAY), market(22.0), book(100_000, _hedged_lots()),
                       state, CFG, True)
    assert held.activated and held.state.activated_on == date(2022, 2, 24) and held.state.active_session == TODAY


def test_after_a_miss_only_protective_actions_go_on():
    kinds = {alvh.BUY: True, alvh.BUY_BACK: True, alvh.SELL: False, alvh.ROLL: False, alvh.WRITE: False,
             alvh.MONETIZE: False}
    for kind, goes in kinds.items():
        assert alvh.proceeds_after_failure(alvh.HedgeAction(kind, "mid", (), 1, "")) is goes


def test_writes_never_take_a_contract_a_layer_holds_long():
    lots = _hedged_lots()
    d = alvh.decide(signals(19.0), market(19.0), book(100_000, lots), HedgeState(tier=1), CFG, True)
    written = {a.legs[0].option for a in d.actions if a.kind == alvh.WRITE}
    assert written and not written & {lot.option for lot in lots if lot.quantity > 0}
    # make the write's natural pick a held long: it must take another strike
    pick = next(iter(written))
    front = next(lot for lot in lots if lot.layer == "front")  # one of its calls is that contract
    held_pick = [lot for lot in lots if lot is not front] + [replace(front, quantity=front.quantity - 1),
                                                             Lot("front", pick, 1, Decimal("0.5"))]
    d2 = alvh.decide(signals(19.0), market(19.0), book(100_000, held_pick), HedgeState(tier=1), CFG, True)
    assert pick not in {a.legs[0].option for a in d2.actions if a.kind == alvh.WRITE}


def test_no_writes_while_activation_is_armed():
    """MACD above its signal with VIX within write.arm_margin of the activation level: a call
    written now would be bought back dearer the moment activation fires (2018-12-10)."""
    lots = _hedged_lots()
    armed = alvh.decide(Signals(23.0, 55.0, 0.6, 0.2, False, TODAY), market(23.0), book(100_000, lots),
                        HedgeState(tier=2), CFG, True)
    assert not armed.activated and not [a for a in armed.actions if a.kind == alvh.WRITE]
    falling = alvh.decide(Signals(23.0, 55.0, 0.1, 0.2, False, TODAY), market(23.0), book(100_000, lots),
                          HedgeState(tier=2), CFG, True)
    assert [a for a in falling.actions if a.kind == alvh.WRITE]


# --- shortcuts the engines take (issue 11/12: backtest speed) ---------------------------------------
_DAYS = st.sampled_from([None, TODAY, TODAY - timedelta(days=1)])


@st.composite
def _update_case(draw):
    """A random live update: signals, a persisted state, a book of longs and written calls, and
    quotes of some of them (an option may have none)."""
    sig = Signals(draw(st.floats(8, 60)), draw(st.none() | st.floats(0, 100)), draw(st.none() | st.floats(-2, 2)),
                  draw(st.none() | st.floats(-2, 2)), draw(st.booleans()), draw(_DAYS))
    state = HedgeState(draw(st.none() | st.integers(0, len(CFG.tiers) - 1)), draw(st.booleans()),
                       draw(st.none() | st.floats(0, 100)), frozenset(draw(st.sets(st.sampled_from(alvh.LAYERS)))),
                       draw(st.integers(0, 9)) == 0, draw(_DAYS), draw(_DAYS))
    cents = st.integers(0, 400).map(lambda c: Decimal(c) / 100)
    lots, quotes = [], {}
    for layer, expiry in (("front", FRONT), ("mid", MID), ("back", BACK)):
        for _ in range(draw(st.integers(0, 2))):
            lots.append(Lot(layer, call(expiry, draw(st.integers(15, 30))), draw(st.integers(1, 6)), draw(cents)))
    for layer in draw(st.lists(st.sampled_from(("mid", "back")), max_size=3)):
        lots.append(Lot(layer, call(WEEKLY, draw(st.integers(20, 40)), "VIXW"), -draw(st.integers(1, 3)),
                        draw(cents) + Decimal("0.05")))
    lots = list({(lot.layer, lot.option): lot for lot in lots}.values())  # one lot per (layer, option), as booked
    for lot in lots:
        if draw(st.integers(0, 5)):
            bid = draw(cents)
            quotes[lot.option.key] = Quote(bid, bid + draw(cents))
    cfg = with_(enabled=draw(st.integers(0, 9)) > 0)
    return sig, state, tuple(lots), quotes, cfg


@settings(max_examples=400, deadline=None)
@given(_update_case(), st.integers(0, 300_000))
def test_quiet_update_is_decides_state_with_no_action(case, notional):
    """`quiet_update` (a live update that can do nothing, decided without the planner) leaves
    exactly the state `decide` leaves, and decide takes no action then."""
    sig, state, lots, quotes, cfg = case
    quiet = alvh.quiet_update(sig, quotes, lots, state, cfg)
    d = alvh.decide(sig, HedgeMarket(TODAY, sig.vix, {}, quotes), HedgeBook(lots, Decimal(notional)), state, cfg)
    if quiet is not None:
        assert d.trigger == "update" and d.actions == () and d.state == quiet
    elif d.trigger == "update" and not state.halted and cfg.enabled and \
            not alvh.naked_shorts((lot.option, lot.quantity) for lot in lots):
        # None only where an action was possible: a spike, or a written call to buy back
        assert sig.vix >= cfg.monetize.vix or [a for a in d.actions if a.kind == alvh.BUY_BACK]


def test_quiet_update_reads_the_written_calls_quotes_only():
    short = call(WEEKLY, 25, "VIXW")
    lots = (*_hedged_lots(), Lot("mid", short, -2, Decimal("1.00")))
    read = []

    class Quotes(dict):
        def get(self, key, default=None):
            read.append(key)
            return super().get(key, default)

    state = HedgeState(tier=1, rsi=50.0)
    quiet = alvh.quiet_update(signals(19.0), Quotes({short.key: Quote(Decimal("0.40"), Decimal("0.45"))}), lots,
                              state, CFG)
    assert quiet is not None and read == [short.key]
    assert alvh.quiet_update(signals(19.0), {short.key: Quote(Decimal("0.15"), Decimal("0.20"))}, lots, state,
                             CFG) is None  # 80% earned: a buy-back


@settings(max_examples=200, deadline=None)
@given(_update_case(), st.booleans())
def test_buy_backs_are_the_buy_backs_decide_begins_with(case, scheduled):
    """`buy_backs` (what a trigger sends first, on the held quotes) is the run of buy-backs
    `decide` begins with, with or without chains."""
    sig, state, lots, quotes, cfg = case
    backs = alvh.buy_backs(sig, HedgeMarket(TODAY, sig.vix, {}, quotes), HedgeBook(lots, Decimal(100_000)),
                           state, cfg)
    assert all(a.kind == alvh.BUY_BACK for a in backs)
    for m in (HedgeMarket(TODAY, sig.vix, {}, quotes), replace(market(sig.vix), quotes=quotes)):
        d = alvh.decide(sig, m, HedgeBook(lots, Decimal(100_000)), state, cfg, scheduled)
        assert d.actions[:len(backs)] == backs
        if not m.chains:
            assert tuple(a for a in d.actions if a.kind == alvh.BUY_BACK) == backs


def _bisected(positions, option, limit):
    """The most of `option` (up to limit) a sale may take leaving no short naked, by bisection."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        after = dict(positions)
        after[option] = after.get(option, 0) - mid
        lo, hi = (mid, hi) if not alvh.naked_shorts(after.items()) else (lo, mid - 1)
    return lo


_POOL = [call(e, k, tc) for e, tc in ((WEEKLY, "VIXW"), (FRONT, "VIX"), (MID, "VIX"), (BACK, "VIX"))
         for k in (18, 22, 26)]


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(_POOL), st.integers(-3, 6), max_size=8), st.sampled_from(_POOL),
       st.integers(0, 8))
def test_sellable_is_the_bisections_answer(positions, option, limit):
    """`sellable` (all of it at once when no short is before or after the sale) is what the
    bisection over naked_shorts finds."""
    assert alvh.sellable(positions, option, limit) == _bisected(positions, option, limit)
