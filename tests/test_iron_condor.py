"""The pure iron-condor strategy (ALVH.md §1) on hand-built snapshots: no market model, no
clock, no broker. Every number asserted below is worked out by hand in the comments."""

from __future__ import annotations

import math
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from bot.config import load_config
from bot.domain import (
    Action,
    ChainRow,
    Condor,
    Greeks,
    MarketSnapshot,
    OptionSpec,
    Quote,
    Right,
)
from strategies.iron_condor import (
    Book,
    CloseProposal,
    OpenProposal,
    Skip,
    debit_to_close,
    decide_entry,
    decide_exits,
    entry_expiry,
    select_condor,
)

UTC = timezone.utc
SPX = 5000.0
TODAY = date(2022, 3, 1)  # a Tuesday
EXPIRY = date(2022, 3, 2)  # the next session (1dte)
NOW = datetime(2022, 3, 1, 20, 30, tzinfo=UTC)  # 15:30 New York
D = Decimal


# --- a hand-built chain ------------------------------------------------------------------------
# |delta| = 0.5 * exp(-distance / 40) on both sides of SPX 5000, so
#   5045 C / 4955 P: 0.1623  <- closest to 0.16 (5040: 0.1839, 5050: 0.1433)
#   5070 C / 4930 P: 0.0869  (25 points further out)
#   5090 C / 4910 P: 0.0527  <- closest to 0.05 (5085: 0.0597, 5095: 0.0465)
# mid = |delta| x 30 rounded to 0.05:  5045/4955: 4.85, 5070/4930: 2.60, 5090/4910: 1.60
# so the 25-wide condor 4930/4955/5045/5070 collects (4.85 - 2.60) x 2 = 4.50 at mid.


def _delta(strike: int, right: Right) -> float:
    d = 0.5 * math.exp(-abs(strike - SPX) / 40)
    return d if right is Right.CALL else -d


def _row(strike: int, right: Right, scale: float = 30.0, expiry: date = EXPIRY, greeks: bool = True) -> ChainRow:
    delta = _delta(strike, right)
    mid = D(round(abs(delta) * scale / 0.05)) * D("0.05")
    g = Greeks(delta, 0.001, 0.5, -1.0, 0.2) if greeks else None
    return ChainRow(OptionSpec("SPX", expiry, D(strike), right), Quote(mid - D("0.05"), mid + D("0.05"), g, SPX))


def chain(scale: float = 30.0, drop: tuple[int, ...] = (), lo: int = 4850, hi: int = 5150) -> tuple[ChainRow, ...]:
    rows = []
    for k in range(lo, hi + 5, 5):
        if k in drop:
            continue
        rows.append(_row(k, Right.PUT, scale))
        rows.append(_row(k, Right.CALL, scale))
    return tuple(rows)


def snapshot(rows=None, stale: bool = False, quotes=None) -> MarketSnapshot:
    return MarketSnapshot(NOW, SPX, 20.0, chain=chain() if rows is None else rows, quotes=quotes or {}, stale=stale)


def condor(credit: str = "2.00", quantity: int = 1, expiry: date = EXPIRY, cid: str = "ic-1", width: int = 25) -> Condor:
    return Condor(cid, expiry, D(4955), D(4955 - width), D(5045), D(5045 + width), quantity, D(credit), NOW)


def book(*open_condors: Condor, net_liq: str = "100000", busy: frozenset[str] = frozenset()) -> Book:
    return Book(tuple(open_condors), D(net_liq), busy)


@pytest.fixture
def cfg(make_cfg):
    """The 1dte preset, with dotted overrides: cfg(**{"condor.x": v})."""
    return lambda **o: make_cfg(**o).condor


@pytest.fixture
def monthly(short_tmp):
    path = short_tmp / "monthly.toml"
    path.write_text('[condor]\npreset = "monthly"\n')
    return lambda **o: load_config(path).with_overrides(**o).condor


# --- strike selection ----------------------------------------------------------------------


def test_shorts_by_delta_and_wings_by_width(cfg):
    picked = select_condor(snapshot(), cfg())
    assert not isinstance(picked, Skip)
    sp, lp, sc, lc = picked
    assert (sp.option.strike, sp.option.right) == (D(4955), Right.PUT)
    assert (sc.option.strike, sc.option.right) == (D(5045), Right.CALL)
    assert (lp.option.strike, lp.option.right) == (D(4930), Right.PUT)  # 4955 - 25
    assert (lc.option.strike, lc.option.right) == (D(5070), Right.CALL)  # 5045 + 25


def test_short_delta_setting_moves_the_shorts(cfg):
    # |delta| 0.25: 5030 C has 0.2362, 5025 C 0.2677 -> 5030 / 4970; wings 50 further out
    sp, lp, sc, lc = select_condor(snapshot(), cfg(**{"condor.short_delta": 0.25, "condor.wing_width": 50}))
    assert [r.option.strike for r in (sp, lp, sc, lc)] == [D(4970), D(4920), D(5030), D(5080)]


def test_wings_by_delta_when_wing_delta_is_set(cfg):
    sp, lp, sc, lc = select_condor(snapshot(), cfg(**{"condor.wing_delta": 0.05}))
    assert (sp.option.strike, sc.option.strike) == (D(4955), D(5045))
    assert (lp.option.strike, lc.option.strike) == (D(4910), D(5090))


def test_puts_come_from_below_spot_and_calls_from_above(cfg):
    """In-the-money options are never shorts: an ITM call (below spot) and an ITM put (above
    spot) carrying |delta| exactly 0.16 are ignored."""
    rows = list(chain())
    itm = [
        ChainRow(OptionSpec("SPX", EXPIRY, D(4900), Right.CALL), Quote(D("99"), D("101"), Greeks(-0.16, 0, 0, 0, 0.2))),
        ChainRow(OptionSpec("SPX", EXPIRY, D(5100), Right.PUT), Quote(D("99"), D("101"), Greeks(0.16, 0, 0, 0, 0.2))),
    ]
    rows = [r for r in rows if r.option.key not in {i.option.key for i in itm}] + itm
    sp, _, sc, _ = select_condor(snapshot(tuple(rows)), cfg())
    assert (sp.option.strike, sp.option.right) == (D(4955), Right.PUT)
    assert (sc.option.strike, sc.option.right) == (D(5045), Right.CALL)


def test_skip_when_a_wing_strike_is_not_listed(cfg):
    result = decide_entry(snapshot(chain(drop=(4930,))), book(), cfg(), NOW)
    assert isinstance(result, Skip) and "wing strike not listed" in result.reason
    result = decide_entry(snapshot(chain(drop=(5070,))), book(), cfg(), NOW)
    assert isinstance(result, Skip) and "wing strike not listed" in result.reason


def test_skip_when_no_short_has_greeks(cfg):
    rows = tuple(_row(k, r, greeks=False) for k in range(4850, 5155, 5) for r in Right)
    result = decide_entry(snapshot(rows), book(), cfg(), NOW)
    assert isinstance(result, Skip) and "greeks" in result.reason


# --- entry -------------------------------------------------------------------------------------


def test_entry_proposal_legs_credit_and_limit_floor(cfg):
    p = decide_entry(snapshot(), book(), cfg(), NOW)
    assert isinstance(p, OpenProposal)
    assert p.mid_credit == D("4.50")
    assert p.short_deltas == pytest.approx((_delta(4955, Right.PUT), _delta(5045, Right.CALL)))
    c = p.condor
    assert (c.expiry, c.put_long, c.put_short, c.call_short, c.call_long) == (EXPIRY, 4930, 4955, 5045, 5070)
    assert c.credit == D("4.50") and c.opened_at == NOW and c.trading_class == "SPXW"
    legs = [(leg.option.strike, leg.option.right, leg.action) for leg in p.order.legs]
    assert legs == [
        (D(4955), Right.PUT, Action.SELL),
        (D(4930), Right.PUT, Action.BUY),
        (D(5045), Right.CALL, Action.SELL),
        (D(5070), Right.CALL, Action.BUY),
    ]
    assert p.order.quantity == c.quantity
    assert p.order.limit_floor == D("-2.00")  # at least the 1dte preset's 8% of the 25-point width as credit


def test_credit_floor_skips_a_thin_credit(cfg):
    # scale 20: 4955/5045 mid 3.25, 4930/5070 mid 1.75 -> credit 3.00 < 3.75 (15% of 25)
    result = decide_entry(snapshot(chain(scale=20.0)), book(), cfg(**{"condor.credit_floor": 0.15}), NOW)
    assert isinstance(result, Skip)
    assert "below floor" in result.reason and "3.00" in result.reason and "3.75" in result.reason
    # a lower floor lets the same chain trade
    assert isinstance(decide_entry(snapshot(chain(scale=20.0)), book(), cfg(**{"condor.credit_floor": 0.10}), NOW), OpenProposal)


@pytest.mark.parametrize(
    "net_liq, open_condors, overrides, expected",
    [
        # risk per unit = (25 - 4.50) x 100 = 2050
        ("100000", (), {}, 9),  # 20% of 100k = 20000 -> floor(20000 / 2050) = 9
        ("1000000", (), {"condor.max_quantity": 10}, 10),  # 200000 / 2050 = 97 -> capped by max_quantity 10
        ("1000000", (), {}, 97),  # 200000 / 2050 = 97.5: the risk fraction sizes it
        ("10000000", (), {}, 975),  # no cap unless the config sets one (ALVH.md §1's sizing)
        ("10000000", (), {"condor.max_quantity": 200}, 200),
        ("1000000", (), {"condor.max_quantity": 4}, 4),
        ("100000", (), {"condor.max_risk_fraction": 0.5, "condor.max_quantity": 50}, 24),  # 50000 / 2050 = 24.4
        # an open condor of max loss (25 - 2) x 100 x 2 = 4600 leaves 15400 -> 7
        ("100000", ("open",), {"condor.max_open": 3}, 7),
        ("10250", (), {"condor.max_risk_fraction": 0.2}, 1),  # 2050 exactly -> 1
    ],
)
def test_sizing_by_max_loss_budget(cfg, net_liq, open_condors, overrides, expected):
    opened = tuple(condor("2.00", quantity=2, cid="old") for _ in open_condors)
    p = decide_entry(snapshot(), book(*opened, net_liq=net_liq), cfg(**overrides), NOW)
    assert isinstance(p, OpenProposal)
    risk_fraction = D(str(cfg(**overrides).max_risk_fraction))
    budget = risk_fraction * D(net_liq) - sum((c.max_loss for c in opened), D(0))
    cap = cfg(**overrides).max_quantity
    sized = math.floor(budget / ((25 - p.mid_credit) * 100))
    assert p.condor.quantity == (sized if cap is None else min(cap, sized))
    assert p.condor.quantity == expected
    assert p.order.quantity == expected


def test_skip_when_no_risk_budget(cfg):
    result = decide_entry(snapshot(), book(net_liq="10000"), cfg(), NOW)  # 2000 < 2050
    assert isinstance(result, Skip) and "no risk budget" in result.reason
    # budget used up by open condors: 20000 - 2 x 9200 = 1600 left
    big = [condor("2.00", quantity=4, cid=f"c{i}") for i in range(2)]  # (25-2) x 100 x 4 = 9200 each
    result = decide_entry(snapshot(), book(*big), cfg(**{"condor.max_open": 5}), NOW)
    assert isinstance(result, Skip) and "no risk budget" in result.reason


def test_skip_when_max_open_reached(cfg):
    result = decide_entry(snapshot(), book(condor()), cfg(), NOW)  # 1dte: max_open 1
    assert isinstance(result, Skip) and "max_open 1" in result.reason
    assert isinstance(decide_entry(snapshot(), book(condor()), cfg(**{"condor.max_open": 2}), NOW), OpenProposal)


def test_stale_snapshot_is_skipped(cfg):
    result = decide_entry(snapshot(stale=True), book(), cfg(), NOW)
    assert isinstance(result, Skip) and "stale" in result.reason


# --- entry expiry ------------------------------------------------------------------------------


def test_entry_expiry_1dte_is_the_next_listed_expiry(cfg):
    c = cfg()
    listed = [date(2022, 3, 1), date(2022, 3, 2), date(2022, 3, 3)]
    assert entry_expiry(listed, date(2022, 3, 1), c) == date(2022, 3, 2)
    # Friday: the next listed expiry is Monday (sessions, not calendar days)
    assert entry_expiry([date(2022, 3, 4), date(2022, 3, 7), date(2022, 3, 8)], date(2022, 3, 4), c) == date(2022, 3, 7)
    # unsorted input, today absent from the list
    assert entry_expiry([date(2022, 3, 8), date(2022, 3, 7)], date(2022, 3, 5), c) == date(2022, 3, 7)
    assert entry_expiry([date(2022, 3, 1)], date(2022, 3, 1), c) is None  # nothing after today


def test_entry_expiry_by_sessions_counts_listed_expiries(cfg):
    c = cfg(**{"condor.dte_min": 2, "condor.dte_max": 2})
    listed = [date(2022, 3, 1), date(2022, 3, 2), date(2022, 3, 3), date(2022, 3, 4)]
    assert entry_expiry(listed, date(2022, 3, 1), c) == date(2022, 3, 3)
    assert entry_expiry(listed[:2], date(2022, 3, 1), c) is None


def test_entry_expiry_monthly_nearest_the_middle_of_the_window(monthly):
    c = monthly()
    assert (c.dte_unit, c.dte_min, c.dte_max) == ("calendar", 30, 45)
    fridays = [date(2022, 3, 25), date(2022, 4, 1), date(2022, 4, 8), date(2022, 4, 14), date(2022, 4, 22)]
    # DTE from 2022-03-01: 24, 31, 38, 44, 52; middle of [30, 45] is 37.5 -> 38
    assert entry_expiry(fridays, TODAY, c) == date(2022, 4, 8)
    # only the edges of the window are listed: 31 (6.5 away) beats 44 (6.5 away) on the date
    assert entry_expiry([date(2022, 4, 1), date(2022, 4, 14)], TODAY, c) == date(2022, 4, 1)
    assert entry_expiry([date(2022, 4, 14), date(2022, 4, 22)], TODAY, c) == date(2022, 4, 14)  # 44 in window


def test_entry_expiry_monthly_none_when_window_is_empty(monthly):
    c = monthly()
    assert entry_expiry([date(2022, 3, 25), date(2022, 4, 22)], TODAY, c) is None  # 24 and 52
    assert entry_expiry([], TODAY, c) is None


# --- exits -----------------------------------------------------------------------------------


def close_quotes(c: Condor, ps: str, pl: str, cs: str, cl: str) -> dict[str, Quote]:
    """Quotes (mid as given, 0.10 wide) for the four legs of condor c."""
    mids = dict(zip([leg.option.key for leg in c.legs()], (ps, pl, cs, cl)))
    return {k: Quote(D(m) - D("0.05"), D(m) + D("0.05"), Greeks(0.1, 0, 0, 0, 0.2), SPX) for k, m in mids.items()}


def exits(c: Condor, quotes, cfg, now=NOW, busy=frozenset()) -> list[CloseProposal]:
    return decide_exits(snapshot(rows=(), quotes=quotes), book(c, busy=busy), cfg, now)


def test_debit_to_close_is_the_mid_of_the_closing_combo():
    c = condor("2.00")
    assert debit_to_close(c, close_quotes(c, "1.50", "0.50", "0.75", "0.25")) == D("1.50")
    assert debit_to_close(c, {}) is None


@pytest.mark.parametrize(
    "legs, reason",
    [
        (("0.60", "0.20", "0.70", "0.10"), "take_profit"),  # debit 1.00 = 50% of the 2.00 credit kept
        (("0.30", "0.10", "0.30", "0.10"), "take_profit"),  # debit 0.40
        (("0.65", "0.20", "0.70", "0.10"), None),  # debit 1.05: not yet
        (("5.00", "1.00", "2.20", "0.20"), "stop_loss"),  # debit 6.00: loss 4.00 = 2 x credit
        (("9.00", "1.00", "0.20", "0.10"), "stop_loss"),  # debit 8.10
        (("4.95", "1.00", "2.20", "0.20"), None),  # debit 5.95: loss 3.95 < 4.00
        (("1.50", "0.50", "1.20", "0.20"), None),  # debit 2.00: 1dte holds to settlement
    ],
)
def test_take_profit_and_stop_loss(cfg, legs, reason):
    c = condor("2.00", quantity=3)
    out = exits(c, close_quotes(c, *legs), cfg())
    if reason is None:
        assert out == []
        return
    (p,) = out
    assert (p.condor_id, p.reason) == ("ic-1", reason)
    assert p.debit_mid == debit_to_close(c, close_quotes(c, *legs))
    assert p.order.quantity == 3
    assert [(leg.option.key, leg.action) for leg in p.order.legs] == [
        (leg.option.key, leg.action.opposite()) for leg in c.legs(opening=True)
    ]


def test_monthly_time_exit_at_close_dte(monthly):
    cfg = monthly()
    assert cfg.close_dte == 21
    c = condor("2.00", expiry=date(2022, 4, 8), width=50)
    neutral = close_quotes(c, "2.00", "0.50", "1.00", "0.50")  # debit 2.00: neither TP nor stop
    day = lambda d: datetime(2022, d.month, d.day, 15, 0, tzinfo=UTC)  # noqa: E731
    assert exits(c, neutral, cfg, now=day(date(2022, 3, 17))) == []  # 22 days left
    (p,) = exits(c, neutral, cfg, now=day(date(2022, 3, 18)))  # 21 days left
    assert p.reason == "time_exit"
    (p,) = exits(c, neutral, cfg, now=day(date(2022, 3, 25)))  # 14 days left
    assert p.reason == "time_exit"


def test_no_action_when_a_leg_quote_is_missing(cfg):
    c = condor("2.00")
    quotes = close_quotes(c, "9.00", "1.00", "0.20", "0.10")  # would be a stop
    del quotes[c.legs()[1].option.key]
    assert exits(c, quotes, cfg()) == []


def test_busy_condors_are_skipped(cfg):
    c = condor("2.00")
    quotes = close_quotes(c, "9.00", "1.00", "0.20", "0.10")  # would be a stop
    assert exits(c, quotes, cfg(), busy=frozenset({"ic-1"})) == []
    assert [p.reason for p in exits(c, quotes, cfg(), busy=frozenset({"other"}))] == ["stop_loss"]


def test_expired_condors_are_left_to_settlement(cfg):
    c = condor("2.00", expiry=date(2022, 2, 28))
    assert exits(c, close_quotes(c, "0.05", "0.05", "0.05", "0.05"), cfg()) == []


def test_band_strikes_of_a_range_equal_the_listed_scan():
    """The bisection shortcut for an ascending range (the backtest's listing) picks exactly the
    strikes the scan of the listed strikes picks (the broker's Decimal list)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from strategies.iron_condor import band_strikes

    @given(st.integers(100, 8000), st.integers(1, 400), st.sampled_from([1, 5, 25]),
           st.floats(50.0, 9000.0), st.floats(-50.0, 300.0), st.floats(-50.0, 600.0))
    @settings(max_examples=300, deadline=None)
    def check(lo, n, step, spx, near, far):
        listed = range(lo, lo + n * step, step)
        fast = band_strikes(listed, spx, near, far)
        assert fast == band_strikes(list(listed), spx, near, far)
        assert fast == tuple([int(k) for k in side] for side in band_strikes([Decimal(k) for k in listed], spx, near, far))

    check()
    for spx, near, far in ((4000.0, 20.0, 100.0), (4002.5, 2.5, 7.5), (3999.0, 0.0, 0.0), (4000.0, 100.0, 20.0)):
        listed = range(3000, 5005, 5)  # band edges exactly on listed strikes
        assert band_strikes(listed, spx, near, far) == band_strikes(list(listed), spx, near, far)
