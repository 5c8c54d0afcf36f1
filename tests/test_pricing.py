"""Option pricing: parity, greeks against finite differences, expiry limits, quotes, vol models."""

import math
import warnings
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.pricing import (
    black76_greeks,
    black76_price,
    bs_greeks,
    bs_price,
    bs_price_greeks,
    norm_cdf,
    quote_spread,
    quote_spread_decimal,
    spx_atm_vol,
    spx_smile,
    vix_call_skew,
    vix_option_vol,
    vix_quote_spread,
)

spots = st.floats(500.0, 8000.0)
moneyness = st.floats(0.6, 1.4)
maturities = st.floats(1e-4, 2.0)
vols = st.floats(0.03, 2.0)
rates = st.floats(-0.01, 0.08)


def test_norm_cdf_matches_erfc():
    x = np.linspace(-37.0, 37.0, 20001)
    exact = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x])
    assert np.max(np.abs(norm_cdf(x) - exact)) < 1e-15
    lower = x < 0
    assert np.max(np.abs(norm_cdf(x[lower]) - exact[lower]) / exact[lower]) < 1e-7


@settings(max_examples=200, deadline=None)
@given(S=spots, m=moneyness, T=maturities, sigma=vols, r=rates, q=st.floats(0.0, 0.04))
def test_put_call_parity(S, m, T, sigma, r, q):
    K = S * m
    call, put = bs_price(S, K, T, sigma, r, q, True), bs_price(S, K, T, sigma, r, q, False)
    assert call - put == pytest.approx(S * math.exp(-q * T) - K * math.exp(-r * T), abs=1e-9 * S)


@settings(max_examples=100, deadline=None)
@given(F=st.floats(8.0, 90.0), m=moneyness, T=maturities, sigma=vols, r=rates)
def test_black76_parity(F, m, T, sigma, r):
    K = F * m
    diff = black76_price(F, K, T, sigma, r, True) - black76_price(F, K, T, sigma, r, False)
    assert diff == pytest.approx(math.exp(-r * T) * (F - K), abs=1e-9 * F)


def central_difference(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize("is_call", [True, False])
@pytest.mark.parametrize("K", [4500.0, 4950.0, 5000.0, 5100.0])
@pytest.mark.parametrize("T", [2 / 365, 30 / 365, 1.0])
def test_bs_greeks_match_finite_differences(is_call, K, T):
    S, sigma, r, q = 5000.0, 0.18, 0.04, 0.013
    g = bs_greeks(S, K, T, sigma, r, q, is_call)
    by_spot = lambda s: bs_price(s, K, T, sigma, r, q, is_call)  # noqa: E731
    by_vol = lambda v: bs_price(S, K, T, v, r, q, is_call)  # noqa: E731
    by_time = lambda t: bs_price(S, K, t, sigma, r, q, is_call)  # noqa: E731
    h = 0.05
    assert g["delta"] == pytest.approx(central_difference(by_spot, S, h), abs=1e-6)
    gamma_fd = (by_spot(S + h) - 2 * by_spot(S) + by_spot(S - h)) / h**2
    assert g["gamma"] == pytest.approx(gamma_fd, rel=1e-3, abs=1e-7)
    assert g["vega"] == pytest.approx(central_difference(by_vol, sigma, 1e-4) / 100, rel=1e-5, abs=1e-8)
    assert g["theta"] == pytest.approx(-central_difference(by_time, T, 1e-7) / 365, rel=1e-4, abs=1e-6)


def test_black76_greeks_match_finite_differences():
    F, K, T, sigma, r = 20.0, 25.0, 40 / 365, 1.1, 0.04
    g = black76_greeks(F, K, T, sigma, r, True)
    by_future = lambda f: black76_price(f, K, T, sigma, r, True)  # noqa: E731
    by_time = lambda t: black76_price(F, K, t, sigma, r, True)  # noqa: E731
    assert g["delta"] == pytest.approx(central_difference(by_future, F, 1e-3), rel=1e-6)
    assert g["theta"] == pytest.approx(-central_difference(by_time, T, 1e-6) / 365, rel=1e-4)


def test_expiry_limits_without_warnings():
    S = 5000.0
    K = np.array([4900.0, 5000.0, 5100.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for T in (0.0, -1.0, 1e-14, 1e-12):
            call = bs_price(S, K, T, 0.2, 0.05, 0.01, True)
            put = bs_price(S, K, T, 0.2, 0.05, 0.01, False)
            assert np.allclose(call, [100.0, 0.0, 0.0], atol=0.01)
            assert np.allclose(put, [0.0, 0.0, 100.0], atol=0.01)
            g_call = bs_greeks(S, K, T, 0.2, 0.05, 0.01, True)
            g_put = bs_greeks(S, K, T, 0.2, 0.05, 0.01, False)
            for g in (g_call, g_put):
                assert all(np.all(np.isfinite(v)) for v in g.values())
            assert g_call["delta"][0] == pytest.approx(1.0) and g_call["delta"][2] == pytest.approx(0.0)
            assert g_put["delta"][0] == pytest.approx(0.0) and g_put["delta"][2] == pytest.approx(-1.0)
        expired = bs_greeks(S, K, 0.0, 0.2, 0.05, 0.01, True)
        assert list(expired["delta"]) == [1.0, 0.0, 0.0]
        assert not np.any(expired["gamma"]) and not np.any(expired["vega"]) and not np.any(expired["theta"])
        assert bs_price(S, 5000.0, 1.0, 0.0, 0.0, 0.0, True) == 0.0


def test_broadcasting_and_scalars():
    prices = bs_price(5000.0, np.array([[4900.0], [5100.0]]), np.array([0.1, 0.2, 0.3]), 0.2, 0.04, 0.0, [True, False, True])
    assert prices.shape == (2, 3)
    assert isinstance(bs_price(5000.0, 5000.0, 0.1, 0.2, 0.04, 0.0, True), float)
    both = bs_price(5000.0, 5000.0, 0.1, 0.2, 0.04, 0.0, [True, False])
    assert both.shape == (2,) and both[0] > both[1]


@settings(max_examples=300, deadline=None)
@given(mid=st.floats(0.0, 400.0))
def test_quote_spread_on_tick_grid_and_around_mid(mid):
    bid, ask = (float(x) for x in quote_spread(mid))
    for price in (bid, ask):
        tick = 0.05 if price < 3 else 0.10
        assert abs(price / tick - round(price / tick)) < 1e-6
    assert 0.0 <= bid <= mid <= ask or mid < 0.05
    assert ask - bid >= 0.05 - 1e-9
    assert ask - bid <= 2.00 + 0.25
    assert (Decimal(f"{bid:.2f}"), Decimal(f"{ask:.2f}")) == quote_spread_decimal(mid)


def test_quote_spread_examples():
    """The rounding rules on a fixed 4% spread (the fitted level is tested in test_surface.py)."""
    from bot.surface import Surface

    bid, ask = quote_spread(np.array([0.0, 0.03, 1.00, 2.95, 10.0, 100.0]), surface=Surface(spread_fraction=0.04))
    assert list(bid) == [0.0, 0.0, 0.95, 2.85, 9.8, 99.0]
    assert list(ask) == [0.05, 0.05, 1.05, 3.10, 10.2, 101.0]


def test_atm_vol_from_term_structure():
    from bot.pricing import atm_level_ratio

    vix, v9, v3m = 20.0, 24.0, 22.0
    r = float(atm_level_ratio(vix, v3m))  # the active (fitted) surface's ratio at this VIX and term slope
    assert 0.6 < r < 1.2
    assert spx_atm_vol(30 / 365, vix, v9, v3m) == pytest.approx(0.20 * r)
    assert spx_atm_vol(9 / 365, vix, v9, v3m) == pytest.approx(0.24 * r)
    assert spx_atm_vol(1 / 365, vix, v9, v3m) == pytest.approx(0.24 * r)  # flat before VIX9D
    assert spx_atm_vol(2.0, vix, v9, v3m) == pytest.approx(0.22 * r)  # flat after VIX3M
    assert spx_atm_vol(2.0, vix, v9, v3m, atm_ratio=0.9) == pytest.approx(0.22 * 0.9)  # a flat ratio instead
    mid = spx_atm_vol(60 / 365, vix, v9, v3m) / r
    expected_var = (0.20**2 * 30 + (0.22**2 * 91 - 0.20**2 * 30) * (60 - 30) / (91 - 30)) / 60
    assert mid == pytest.approx(math.sqrt(expected_var))
    r0 = float(atm_level_ratio(vix))  # no VIX3M: no term factor
    assert spx_atm_vol(5 / 365, vix, None, float("nan")) == pytest.approx(0.20 * r0)  # missing ignored
    assert spx_atm_vol(np.array([1, 30, 200]) / 365, vix).shape == (3,)


def _strike_for_delta(S, atm, T, target, is_call):
    K = np.linspace(S * 0.6, S * 1.4, 400001)
    delta = bs_greeks(S, K, T, spx_smile(atm, S, K, T), 0.04, 0.013, is_call)["delta"]
    return K[np.argmin(np.abs(delta - target))]


@pytest.mark.parametrize("atm", [0.10, 0.18, 0.35])
def test_smile_skew_at_16_delta(atm):
    S, T = 5000.0, 1 / 365
    k_put = _strike_for_delta(S, atm, T, -0.16, False)
    k_call = _strike_for_delta(S, atm, T, 0.16, True)
    # the fitted surface's SPX picture: puts well above ATM, calls below it
    assert 1.15 <= spx_smile(atm, S, k_put, T) / atm <= 1.45
    assert 0.75 <= spx_smile(atm, S, k_call, T) / atm <= 0.95
    assert spx_smile(atm, S, S, T) == pytest.approx(atm)


def test_smile_bounded_for_extreme_strikes():
    iv = spx_smile(0.15, 5000.0, np.array([1.0, 2500.0, 10000.0]), 1e-9)
    assert np.all(np.isfinite(iv)) and np.all(iv <= 0.15 * 3.0 + 1e-12) and np.all(iv >= 0.15 * 0.75 - 1e-12)


def test_vix_option_vol_falls_with_maturity_and_call_skew_rises():
    vols = vix_option_vol(100.0, np.array([7, 30, 60, 120]) / 365)
    assert vols[1] == pytest.approx(0.8)  # 30-day ATM = 0.8 x VVIX (VVIX includes the skew)
    assert np.all(np.diff(vols) < 0)
    skewed = vix_call_skew(1.0, 20.0, np.array([15.0, 20.0, 25.0, 40.0]))
    assert skewed[1] == pytest.approx(1.0) and np.all(np.diff(skewed) > 0)


@pytest.mark.parametrize("hours", [1, 6.4, 24, 72, 24 * 30, 24 * 60])
@pytest.mark.parametrize("vix", [12.0, 20.0, 31.0, 80.0])
def test_smile_prices_have_no_strike_arbitrage(hours, vix):
    """A farther OTM option is never dearer than a nearer one (a condor can't be closed for a
    credit), even for 0-1 DTE where a steep smile in standardized moneyness would break it."""
    S, T = 4320.0, hours / 8760
    K = np.arange(3000.0, 5600.0, 5.0)
    iv = spx_smile(spx_atm_vol(T, vix), S, K, T)
    puts = bs_price(S, K, T, iv, 0.02, 0.013, False)
    calls = bs_price(S, K, T, iv, 0.02, 0.013, True)
    assert np.all(np.diff(puts) >= -1e-9)
    assert np.all(np.diff(calls) <= 1e-9)


@pytest.mark.parametrize("vvix", [70.0, 100.0, 150.0, 210.0])
@pytest.mark.parametrize("days", [3, 14, 45, 90, 150])
def test_vix_calls_have_no_strike_arbitrage_and_sane_deltas(vvix, days):
    from bot.pricing import black76_greeks

    F, T = 30.0, days / 365
    K = np.arange(10.0, 150.0, 0.5)
    vol = vix_call_skew(vix_option_vol(vvix, T), F, K)
    calls = black76_price(F, K, T, vol, 0.0, True)
    assert np.all(np.diff(calls) <= 1e-9)
    delta = black76_greeks(F, K, T, vol, 0.0, True)["delta"]
    assert delta[K == 3 * F][0] < 0.3  # a 0.30-delta call is never at three times the future


# --------------------------------------------------------------------------- shortcuts
# bs_price_greeks, norm_cdf, spx_atm_vol and the quote rounding skip a branch (dead options,
# the far tail, per-knot-set selection, the dearer tick, the nickel market) when no element of
# the batch needs it. Each element's arithmetic must not depend on its batch: the same options
# priced with one extra element that forces the general path get bit-identical results.

def _bits(a):
    a = np.asarray(a, dtype=float)
    return np.where(a == 0, 0.0, a).view(np.uint64), np.signbit(a)


def _same_prefix(fast, general, n):
    f_bits, f_sign = _bits(fast)
    g_bits, g_sign = _bits(np.asarray(general)[:n])
    assert np.array_equal(f_bits, g_bits) and np.array_equal(f_sign, g_sign)


_batch = st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.lists(st.floats(5.0, 6000.0), min_size=n, max_size=n),       # S
    st.lists(st.floats(-0.3, 0.3), min_size=n, max_size=n),         # ln(K/S)
    st.lists(st.floats(1e-5, 0.6), min_size=n, max_size=n),         # T (years, live)
    st.lists(st.floats(0.02, 2.5), min_size=n, max_size=n),         # sigma
    st.lists(st.booleans(), min_size=n, max_size=n),                # call
))


@given(_batch, st.floats(0.0, 0.08), st.booleans())
@settings(max_examples=150, deadline=None)
def test_bs_shortcut_equals_general_path(batch, r, greeks):
    S, m, T, sig, call = (np.array(v) for v in batch)
    K = S * np.exp(m)
    n = len(S)
    fast = bs_price_greeks(S, K, T, sig, r, 0.013, call, greeks)
    # two dead options (expired), a call and a put, force every np.where(live, ...), both
    # sides of every np.where(call, ...) and the far tail of norm_cdf
    general = bs_price_greeks(np.append(S, [100.0, 100.0]), np.append(K, [1e6, 1e6]), np.append(T, [-1.0, -1.0]),
                              np.append(sig, [0.2, 0.2]), r, 0.013, np.append(call, [True, False]), greeks)
    assert fast.keys() == general.keys()
    for k in fast:
        _same_prefix(fast[k], general[k], n)


@given(st.lists(st.floats(-7.0, 7.0), min_size=1, max_size=40))
@settings(max_examples=150, deadline=None)
def test_norm_cdf_near_branch_equals_general_path(xs):
    x = np.array(xs)
    _same_prefix(norm_cdf(x), norm_cdf(np.append(x, 40.0)), len(x))


@given(st.integers(1, 10).flatmap(lambda n: st.tuples(
    st.lists(st.floats(0.0, 0.5), min_size=n, max_size=n),
    st.lists(st.floats(9.0, 80.0), min_size=n, max_size=n),
    st.lists(st.floats(0.8, 1.25), min_size=n, max_size=n),
    st.lists(st.floats(0.8, 1.25), min_size=n, max_size=n),
    st.sampled_from(["all", "no9", "no3", "none"]))))
@settings(max_examples=150, deadline=None)
def test_spx_atm_vol_one_knot_set_equals_general_path(args):
    T, vix, r9, r3, which = args
    T, vix = np.array(T), np.array(vix)
    v9 = np.full(len(T), np.nan) if which in ("no9", "none") else vix * np.array(r9)
    v3 = np.full(len(T), np.nan) if which in ("no3", "none") else vix * np.array(r3)
    fast = spx_atm_vol(T, vix, v9, v3)
    # one more option with the other knot set forces the per-set selection
    extra9 = 20.0 if which in ("no9", "none") else np.nan
    general = spx_atm_vol(np.append(T, 0.05), np.append(vix, 20.0), np.append(v9, extra9), np.append(v3, np.nan))
    _same_prefix(fast, general, len(T))


@given(st.lists(st.floats(0.0, 150.0), min_size=1, max_size=30), st.floats(9.0, 80.0), st.floats(0.0, 0.2))
@settings(max_examples=150, deadline=None)
def test_quote_rounding_shortcuts_equal_general_path(mids, vix, T):
    mid = np.array(mids)
    n = len(mid)
    # a nickel option and a dear one force the nickel select and both tick roundings
    more = np.append(mid, [0.01, 50.0])
    for fast, general in ((quote_spread(mid, vix, T), quote_spread(more, vix, T)),
                          (vix_quote_spread(mid), vix_quote_spread(more))):
        _same_prefix(fast[0], general[0], n)
        _same_prefix(fast[1], general[1], n)


@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(0.0), st.just(-0.0)), min_size=1,
                max_size=20), st.floats(-5.0, 5.0).filter(lambda v: v != 0), st.floats(0.0, 5.0))
@settings(max_examples=200, deadline=None)
def test_clip_equals_np_clip_for_nonzero_bounds(xs, lo, width):
    from bot.pricing import _clip

    hi = lo + width if lo + width != 0 else lo + width + 1.0
    x = np.array(xs)
    a, b = _clip(x, lo, hi), np.clip(x, lo, hi)
    assert np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b))
    assert type(_clip(x[0], lo, hi)) is type(np.clip(x[0], lo, hi))


def _bs_textbook(S, K, T, sigma, r, q, call):
    """bs_price_greeks of live options as the formulas read, each N() and product computed
    where it is used (the left-to-right order the shared values must reproduce)."""
    from bot.pricing import DAYS_PER_YEAR, norm_pdf

    Tp = np.maximum(T, 0.0)
    sd = sigma * np.sqrt(Tp)
    d1 = (np.log(S / K) + (r - q) * Tp) / sd + 0.5 * sd
    d2 = d1 - sd
    dq, dr = np.exp(-q * Tp), np.exp(-r * Tp)
    N = norm_cdf
    price = np.where(call, S * dq * N(d1) - K * dr * N(d2), K * dr * N(-d2) - S * dq * N(-d1))
    pdf, sqrt_t = norm_pdf(d1), np.sqrt(Tp)
    decay = -S * dq * pdf * sigma / (2.0 * sqrt_t)
    theta = np.where(call, decay - r * K * dr * N(d2) + q * S * dq * N(d1),
                     decay + r * K * dr * N(-d2) - q * S * dq * N(-d1)) / DAYS_PER_YEAR
    return {"mid": np.maximum(price, 0.0), "delta": np.where(call, dq * N(d1), -dq * N(-d1)),
            "gamma": dq * pdf / (S * sd), "vega": S * dq * pdf * sqrt_t / 100.0, "theta": theta}


@given(_batch, st.floats(0.0, 0.08), st.booleans())
@settings(max_examples=150, deadline=None)
def test_bs_shared_terms_equal_the_formulas(batch, r, black76):
    # N(x) and N(-x) from one tail of |x|, the density from its exponential, the products
    # S*dq, K*dr, S*dq*pdf shared, dr = dq when q = r: bit-identical to the formulas
    S, m, T, sig, call = (np.array(v) for v in batch)
    K = S * np.exp(m)
    q = r if black76 else 0.013
    fast = bs_price_greeks(S, K, T, sig, r, q, call)
    slow = _bs_textbook(S, K, T, sig, r, q, call)
    for k in slow:
        _same_prefix(fast[k], slow[k], len(S))
    for side in (True, False):  # the one-side paths
        one = bs_price_greeks(S, K, T, sig, r, q, np.full(len(S), side))
        ref = _bs_textbook(S, K, T, sig, r, q, np.full(len(S), side))
        for k in ref:
            _same_prefix(one[k], ref[k], len(S))


@given(st.integers(1, 10).flatmap(lambda n: st.tuples(
    st.lists(st.floats(0.0, 9 / 365), min_size=n, max_size=n),
    st.lists(st.floats(9.0, 80.0), min_size=n, max_size=n),
    st.lists(st.floats(0.8, 1.25), min_size=n, max_size=n),
    st.lists(st.floats(0.8, 1.25), min_size=n, max_size=n))))
@settings(max_examples=150, deadline=None)
def test_spx_atm_vol_short_maturity_and_known_vix3m_shortcuts_equal_general_path(args):
    T, vix, r9, r3 = (np.array(v) for v in args)
    v9, v3 = vix * r9, vix * r3
    fast = spx_atm_vol(T, vix, v9, v3)  # every T at or before the first knot, every VIX3M known
    # a maturity inside the knots forces the interpolation; a non-positive VIX3M the ratio's np.where
    general = spx_atm_vol(np.append(T, 0.05), np.append(vix, 20.0), np.append(v9, 20.0), np.append(v3, 22.0))
    _same_prefix(fast, general, len(T))
    from bot.pricing import atm_level_ratio

    _same_prefix(atm_level_ratio(vix, v3), atm_level_ratio(np.append(vix, 20.0), np.append(v3, -1.0)), len(T))


@given(st.lists(st.floats(-0.3, 0.3), min_size=1, max_size=20), st.floats(0.03, 1.5), st.floats(1e-5, 0.2))
@settings(max_examples=150, deadline=None)
def test_smile_one_side_shortcut_equals_general_path(log_k, atm, T):
    m = np.array(log_k)
    for side in (m[m < 0], m[m >= 0]):  # strikes below spot only, at or above only
        if not len(side):
            continue
        S = np.full(len(side), 4000.0)
        fast = spx_smile(np.full(len(side), atm), S, S * np.exp(side), np.full(len(side), T))
        more = np.append(side, [-0.1, 0.1])  # both sides force the np.where
        general = spx_smile(np.full(len(more), atm), np.full(len(more), 4000.0), 4000.0 * np.exp(more),
                            np.full(len(more), T))
        _same_prefix(fast, general, len(side))


@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e4, 1e4),
                          st.integers(-10**6, 10**6).map(lambda k: k / 200 + 0.005)), min_size=1, max_size=30),
       st.sampled_from([2, 6]))
@settings(max_examples=300, deadline=None)
def test_round_equals_np_round(xs, decimals):
    from bot.pricing import _round

    x = np.array(xs)
    with np.errstate(over="ignore", invalid="ignore"):  # (huge values overflow in both, to the same inf)
        pairs = ((_round(x, decimals), np.round(x, decimals)), (_round(x[0], decimals), np.round(x[0], decimals)),
                 (_round(np.float64(x[0]), decimals), np.float64(x[0]).round(decimals)))
    for got, want in pairs:
        assert np.array_equal(np.asarray(got), np.asarray(want), equal_nan=True)
        assert np.array_equal(np.signbit(got), np.signbit(want))
        assert type(got) is type(want) or np.ndim(got) == 0
