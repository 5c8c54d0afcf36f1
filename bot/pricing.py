"""Option prices, greeks, volatility surfaces and bid/ask quotes for the simulated market.

Everything here is numpy-vectorized: scalars and arrays broadcast against each other, and
a result is an array of the broadcast shape (a numpy scalar for all-scalar inputs). No I/O
except the first use of the active surface, which reads the shipped parameters file once.

Conventions: times in years (ACT/365), rates and dividend yields continuous and decimal,
volatilities decimal (0.16, not 16). Vega is per vol point (per 0.01 of volatility); theta is
per calendar day. An option at or past expiry (T <= 0), or with no volatility, is worth its
intrinsic value (discounted forward intrinsic when T > 0) and has delta 0 or +/-1.

These are *models* for a simulator, documented as such (DESIGN.md "The simulated market"):
SPX options by Black-Scholes with a VIX-derived ATM volatility and a put and call skew, quoted
with a spread that widens with VIX and near expiry, all parameters from one `Surface`
(bot/surface.py; fitted to Cboe's CNDR and PUT by `spx-bot calibrate`); VIX options by
Black-76 on the matching VIX future with a VVIX-derived volatility and a call skew.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np

from bot.domain import ceil_tick, floor_tick, spx_option_tick
from bot.surface import Surface, load_surface

DAYS_PER_YEAR = 365.0
_TINY_STDDEV = 1e-12  # sigma*sqrt(T) below this is treated as "no volatility left"
_SQRT_2PI = np.sqrt(2.0 * np.pi)


# --------------------------------------------------------------------------- normal law


def norm_pdf(x):
    x = np.asarray(x, dtype=float)
    return np.exp(-0.5 * x * x) / _SQRT_2PI


def _lower_tail(a):
    """(P(Z < -a), exp(-a^2 / 2)) for a = |x| >= 0: the Hart / West tail `norm_cdf` is made of.
    It depends on |x| only, so the CDF at x and at -x share it (`bs_price_greeks`), and the
    exponential is the normal density's (times sqrt(2 pi)) at x and at -x alike."""
    e = np.exp(-0.5 * a * a)
    num = ((((((0.0352624965998911 * a + 0.700383064443688) * a + 6.37396220353165) * a
                + 33.912866078383) * a + 112.079291497871) * a + 221.213596169931) * a
           + 220.206867912376)
    den = (((((((0.0883883476483184 * a + 1.75566716318264) * a + 16.064177579207) * a
                 + 86.7807322029461) * a + 296.564248779674) * a + 637.333633378831) * a
            + 793.826512519948) * a + 440.413735824752)
    tail = e * num / den
    near = a < 7.07106781186547
    if np.count_nonzero(near) != near.size:  # the far branch only where some |x| needs it
        a_safe = np.where(near, 7.07106781186547, a)
        far = e / (a_safe + 1.0 / (a_safe + 2.0 / (a_safe + 3.0 / (a_safe + 4.0 / (a_safe + 0.65))))) / 2.506628274631
        tail = np.where(near, tail, far)
        tail = np.where(a > 37.0, 0.0, tail)
    return tail, e


def norm_cdf(x):
    """Standard normal CDF to double precision (Hart 1968, as given by West 2005).

    numpy has no erf and scipy is not a dependency. Absolute error below 1e-15 everywhere and
    relative error below 1e-8 even in the far tails, so greeks stay consistent with prices
    (finite differences agree) and deep out-of-the-money prices keep their digits.
    """
    x = np.asarray(x, dtype=float)
    tail, _ = _lower_tail(np.abs(x))
    return np.where(x > 0, 1.0 - tail, tail)


# --------------------------------------------------------------------------- Black-Scholes


def _clip(x, lo: float, hi: float):
    """np.clip(x, lo, hi) for bounds that are not zero, without np.clip's dispatch layers:
    the same min(max(x, lo), hi), NaN kept (np.clip differs only on the sign of a zero bound)."""
    return np.minimum(np.maximum(x, lo), hi)


def _scalarize(a: np.ndarray):
    """0-d arrays become numpy scalars so that scalar calls get scalar answers."""
    return a[()] if a.ndim == 0 else a


def _inputs(S, K, T, sigma, r, q, is_call):
    """The arguments as arrays of their broadcast shape, broadcast only where they differ from
    it (`np.broadcast_to` costs more than the arithmetic on a small chain); a scalar rate or
    dividend yield stays 0-d: it only enters arithmetic with full-shape arrays."""
    arrays = [np.asarray(v, dtype=float) for v in (S, K, T, sigma, r, q)] + [np.asarray(is_call, dtype=bool)]
    shape = arrays[0].shape
    # (a scalar rate or yield fits any shape: only the others can make it differ from S's)
    if any(a.shape != shape for i, a in enumerate(arrays) if a.ndim or i not in (4, 5)):
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
    return [a if a.shape == shape or (i in (4, 5) and a.ndim == 0) else np.broadcast_to(a, shape)
            for i, a in enumerate(arrays)]


def _d1_d2(S, K, T, sigma, r, q):
    """d1, d2 and a mask of the options that still have time value ("live"), with Tp = max(T, 0),
    sqrt(Tp), sigma * sqrt(Tp) (placeholder 1 where dead) and whether every entry is live.

    Dead entries (expired, no vol, non-positive S or K) get harmless placeholders so that no
    warning or NaN is produced; callers select the intrinsic branch for them.
    """
    Tp = np.maximum(T, 0.0)
    sqrt_tp = np.sqrt(Tp)
    sd = sigma * sqrt_tp
    live = (sd > _TINY_STDDEV) & (S > 0) & (K > 0)
    all_live = np.count_nonzero(live) == live.size
    if all_live:  # the usual case: the placeholders would select every value unchanged
        sd_safe, ratio = sd, S / K
    else:
        sd_safe = np.where(live, sd, 1.0)
        ratio = np.where(live, S / np.where(K > 0, K, 1.0), 1.0)
    d1 = (np.log(ratio) + (r - q) * Tp) / sd_safe + 0.5 * sd_safe
    return d1, d1 - sd_safe, live, Tp, sd_safe, sqrt_tp, all_live


def bs_price_greeks(S, K, T, sigma, r, q, is_call, greeks: bool = True) -> dict[str, np.ndarray]:
    """Black-Scholes-Merton price ("mid") of European options on an asset with dividend yield
    q and, with `greeks`, delta, gamma, vega (per vol point) and theta (per calendar day), in
    one pass over broadcast arrays.

    For dead options (T <= 0 or no volatility) the price is the discounted forward intrinsic,
    delta is 1 / -1 in the money and 0 otherwise, the other greeks are 0.

    Shared work, each value bit-identical to computing it where it is used: N(x) and N(-x)
    from one tail of |x| (one `_lower_tail` over the stacked d1, d2), the density from that
    tail's exponential, sqrt(Tp) from `_d1_d2`, and the products S*dq, K*dr, S*dq*pdf, r*K*dr,
    q*S*dq, each computed once in the left-to-right order the formulas multiply them in.
    """
    S, K, T, sigma, r, q, call = _inputs(S, K, T, sigma, r, q, is_call)
    d1, d2, live, Tp, sd, sqrt_tp, all_live = _d1_d2(S, K, T, sigma, r, q)
    scalar = live.ndim == 0  # (0-d: the np.where forms below, as scalar calls always had)
    all_live = all_live and not scalar  # then np.where(live, x, dead value) is x: skipped
    # all calls (VIX hedges) or all puts: only that side's terms (the same arithmetic per option)
    if scalar:
        side = None
    else:
        n_call = np.count_nonzero(call)
        side = True if n_call == call.size else False if n_call == 0 else None
    n = d1.size
    x = np.concatenate([d1.ravel(), d2.ravel()])
    tail, e = _lower_tail(np.abs(x))
    up = 1.0 - tail
    if side is not False:  # N(d1), N(d2)
        cdf = np.where(x > 0, up, tail)
        n_d1, n_d2 = cdf[:n].reshape(d1.shape), cdf[n:].reshape(d1.shape)
    if side is not True:  # N(-d1), N(-d2): the same tail, -x > 0 where x < 0
        cdf = np.where(x < 0, up, tail)
        n_md1, n_md2 = cdf[:n].reshape(d1.shape), cdf[n:].reshape(d1.shape)
    dq = np.exp(-q * Tp)
    dr = dq if (r.ndim == 0 and q.ndim == 0 and float(r) == float(q)) else np.exp(-r * Tp)  # Black-76: q = r
    s_dq = S * dq
    k_dr = K * dr
    if side is None:
        price = np.where(call, s_dq * n_d1 - k_dr * n_d2, k_dr * n_md2 - s_dq * n_md1)
    else:
        price = s_dq * n_d1 - k_dr * n_d2 if side else k_dr * n_md2 - s_dq * n_md1
    if not all_live:
        fwd_intrinsic = np.where(call, np.maximum(s_dq - k_dr, 0.0), np.maximum(k_dr - s_dq, 0.0))
        price = np.where(live, price, fwd_intrinsic)
    out = {"mid": np.maximum(price, 0.0)}
    if not greeks:
        return out
    pdf = e[:n].reshape(d1.shape) / _SQRT_2PI  # norm_pdf(d1): exp(-d1*d1/2) is exp(-|d1|*|d1|/2)
    sqrt_t = sqrt_tp if all_live else np.where(live, sqrt_tp, 1.0)
    gamma = dq * pdf / ((S if all_live else np.where(live, S, 1.0)) * sd)
    s_dq_pdf = s_dq * pdf
    vega = s_dq_pdf * sqrt_t / 100.0
    decay = s_dq_pdf * sigma / (-2.0 * sqrt_t)  # -S*dq*pdf*sigma / (2 sqrt_t): a sign moved, exact
    r_kdr, q_sdq = r * K * dr, q * S * dq
    if side is None:
        delta = np.where(call, dq * n_d1, -dq * n_md1)
        theta = np.where(call, decay - r_kdr * n_d2 + q_sdq * n_d1, decay + r_kdr * n_md2 - q_sdq * n_md1) / DAYS_PER_YEAR
    elif side:
        delta = dq * n_d1
        theta = (decay - r_kdr * n_d2 + q_sdq * n_d1) / DAYS_PER_YEAR
    else:
        delta = -dq * n_md1
        theta = (decay + r_kdr * n_md2 - q_sdq * n_md1) / DAYS_PER_YEAR
    if all_live:
        out.update(delta=delta, gamma=gamma, vega=vega, theta=theta)
        return out
    dead_delta = np.where(call, np.where(S > K, 1.0, 0.0), np.where(S < K, -1.0, 0.0))
    zero = np.zeros_like(S)
    out.update(delta=np.where(live, delta, dead_delta), gamma=np.where(live, gamma, zero),
               vega=np.where(live, vega, zero), theta=np.where(live, theta, zero))
    return out


GREEKS = ("delta", "gamma", "vega", "theta")


def bs_price(S, K, T, sigma, r, q, is_call):
    """Black-Scholes-Merton price of a European option on an asset with dividend yield q."""
    return _scalarize(bs_price_greeks(S, K, T, sigma, r, q, is_call, greeks=False)["mid"])


def bs_greeks(S, K, T, sigma, r, q, is_call) -> dict:
    """delta, gamma, vega (per vol point) and theta (per calendar day) of `bs_price`."""
    out = bs_price_greeks(S, K, T, sigma, r, q, is_call)
    return {k: _scalarize(out[k]) for k in GREEKS}


# --------------------------------------------------------------------------- Black-76


def black76_price(F, K, T, sigma, r, is_call):
    """Black-76 price of a European option on a future F (VIX options on the VX future).

    Black-76 is Black-Scholes on an asset whose carry equals the discount rate (q = r).
    """
    return bs_price(F, K, T, sigma, r, r, is_call)


def black76_greeks(F, K, T, sigma, r, is_call) -> dict:
    """Greeks of `black76_price`; delta and gamma are with respect to the future."""
    return bs_greeks(F, K, T, sigma, r, r, is_call)


# --------------------------------------------------------------------------- SPX volatility

VIX_TENORS_DAYS = (9.0, 30.0, 91.0)  # VIX9D, VIX, VIX3M

# --------------------------------------------------------------------------- the active surface

_active: Surface | None = None


def active_surface() -> Surface:
    """The surface every SPX price uses: the one set by `use_surface`, else the shipped fit
    (bot/params/surface.json, written by `spx-bot calibrate`)."""
    global _active
    if _active is None:
        _active = load_surface(None)
    return _active


def use_surface(surface: Surface | str | Path | None) -> Surface:
    """Make `surface` (a Surface, a file, or None for the shipped fit) the one all SPX prices
    use from now on, in this process and the processes it forks. SurfaceError on a bad file."""
    global _active
    _active = surface if isinstance(surface, Surface) else load_surface(surface)
    return _active


_KNOT_ARRAYS: dict[int, tuple[Surface, np.ndarray, np.ndarray]] = {}


def _atm_knots(s: Surface) -> tuple[np.ndarray, np.ndarray]:
    """The surface's ratio(VIX) knots as arrays, built once per surface (np.interp would
    convert the tuples on every call: the same float64 values)."""
    got = _KNOT_ARRAYS.get(id(s))
    if got is None or got[0] is not s:
        if len(_KNOT_ARRAYS) > 64:
            _KNOT_ARRAYS.clear()
        got = _KNOT_ARRAYS[id(s)] = (s, np.asarray(s.atm_vix, dtype=float), np.asarray(s.atm_ratio, dtype=float))
    return got[1], got[2]


def atm_level_ratio(vix, vix3m=None, surface: Surface | None = None):
    """ATM vol / VIX-term-structure level: ratio(VIX) through the surface's knots (flat
    outside), times exp(term_beta * ln(VIX3M / VIX)) where VIX3M is known."""
    s = surface or active_surface()
    vix = np.asarray(vix, dtype=float)
    ratio = np.interp(vix, *_atm_knots(s))
    if s.term_beta and vix3m is not None:
        v3 = np.asarray(vix3m, dtype=float)
        ok = np.isfinite(v3) & (v3 > 0)
        if np.count_nonzero(ok) == ok.size:  # every VIX3M known: the np.where below select v3 and the log
            slope = np.log(v3 / vix)
        else:
            slope = np.where(ok, np.log(np.where(ok, v3, 1.0) / vix), 0.0)
        ratio = ratio * np.exp(s.term_beta * slope)
    return _scalarize(np.asarray(ratio))


def _term_vol(x, levels, days):
    """`spx_atm_vol`'s interpolation of total variance for maturities x (years) between knots
    at `days` with index `levels` (arrays of x's shape), flat outside."""
    t_k = [d / DAYS_PER_YEAR for d in days]
    below = x <= t_k[0]
    n_below = np.count_nonzero(below)
    if n_below == below.size:  # every maturity at or before the first knot (a short option): its flat vol
        return levels[0] / 100.0
    v_k = [lv / 100.0 for lv in levels]
    if len(t_k) == 1:
        return np.where(below, v_k[0], v_k[-1])
    inside = (x > t_k[0]) & (x < t_k[-1])
    n_inside = np.count_nonzero(inside)
    if n_inside == inside.size:  # (the usual case: selecting all of x would copy it unchanged)
        return _term_interp(x, v_k, t_k)
    vol = np.where(below, v_k[0], v_k[-1])
    if n_inside:
        vol[inside] = _term_interp(x[inside], [v[inside] for v in v_k], t_k)
    return vol


def _term_interp(xi, v_k, t_k):
    """sqrt of the total variance interpolated linearly in time, for maturities xi strictly
    inside the knots t_k (np.interp's arithmetic: slope * (x - t_j) + w_j, w_j at a knot),
    the total variance w_j = v_j * v_j * t_j of a knot computed where a segment needs it."""
    w_k: list = [None] * len(t_k)

    def w(j):
        if w_k[j] is None:
            w_k[j] = v_k[j] * v_k[j] * t_k[j]
        return w_k[j]

    interp = np.empty(xi.shape)
    for j in range(len(t_k) - 1):
        seg = (xi >= t_k[j]) & (xi < t_k[j + 1])
        n_seg = np.count_nonzero(seg)
        if n_seg == seg.size:
            y0, y1, xs = w(j), w(j + 1), xi
        elif n_seg:
            y0, y1, xs = w(j)[seg], w(j + 1)[seg], xi[seg]
        else:
            continue
        slope = (y1 - y0) / (t_k[j + 1] - t_k[j])
        got = np.where(xs == t_k[j], y0, slope * (xs - t_k[j]) + y0)
        if n_seg == seg.size:
            interp = got
            break
        interp[seg] = got
    return np.sqrt(interp / xi)


def spx_atm_vol(T_years, vix, vix9d=None, vix3m=None, atm_ratio: float | None = None,
                surface: Surface | None = None):
    """At-the-money SPX implied volatility for maturity T from the VIX term structure.

    VIX9D, VIX and VIX3M are read as volatilities at 9, 30 and 91 calendar days. Total
    variance (vol^2 * T) is interpolated linearly in time between the known points, which is
    what makes variance additive over time; before the first point and after the last one the
    vol is flat. Missing points (None or NaN) are left out; VIX itself is required.

    The indexes are variance-swap rates: they include the put skew and the variance premium,
    so an ATM option trades below them by a ratio that depends on the regime: the surface's
    `atm_level_ratio(vix, vix3m)` (fitted by `spx-bot calibrate`), or a flat `atm_ratio` if given.

    Every argument may be an array (broadcast): each element uses the knots finite for it,
    interpolated as `np.interp` does it (slope * (T - t_j) + w_j, the knot value at a knot).
    """
    nan = float("nan")
    T, vix, v9, v3 = arrays = [np.asarray(nan if x is None else x, dtype=float) for x in (T_years, vix, vix9d, vix3m)]
    if any(a.shape != T.shape for a in arrays):  # (np.broadcast_arrays returns equal shapes as they are)
        T, vix, v9, v3 = np.broadcast_arrays(*arrays)
    finite = np.isfinite(vix)
    if np.count_nonzero(finite) != finite.size:
        raise ValueError("spx_atm_vol needs a finite VIX")
    has9, has3 = np.isfinite(v9), np.isfinite(v3)
    n9, n3 = np.count_nonzero(has9), np.count_nonzero(has3)
    all9, all3 = n9 == has9.size, n3 == has3.size
    if (all9 or not n9) and (all3 or not n3):  # one set of knots for all: no selection
        out = _term_vol(T, ([v9] if all9 else []) + [vix] + ([v3] if all3 else []),
                        ([9.0] if all9 else []) + [30.0] + ([91.0] if all3 else []))
    else:
        out = np.empty(T.shape)
        for p9 in (False, True):
            for p3 in (False, True):
                sel = (has9 == p9) & (has3 == p3)
                if not np.count_nonzero(sel):
                    continue
                out[sel] = _term_vol(T[sel], ([v9[sel]] if p9 else []) + [vix[sel]] + ([v3[sel]] if p3 else []),
                                     ([9.0] if p9 else []) + [30.0] + ([91.0] if p3 else []))
    ratio = atm_ratio if atm_ratio is not None else atm_level_ratio(vix, v3, surface)
    return _scalarize(out * ratio)


def spx_smile(atm_vol, S, K, T, surface: Surface | None = None):
    """SPX implied vol at strike K: the ATM vol times a skew factor (the surface's smile).

    The factor is a function of standardized moneyness m = ln(K/S) / (atm * sqrt(T)), so the
    same shape applies to a 1-day and a 1-month option (strikes scale with the expected move):
        puts  (m < 0): 1 + a * put_slope * |m| + put_curve * m^2    (rises: crash protection)
        calls (m > 0): 1 - a * call_slope * m + call_curve * m^2     (dips, then the far wing rises)
    with a = (skew_ref_vol / atm)^skew_vol_exp (the skew is steeper when vol is low), clipped to
    [min_ratio, max_ratio]. Beyond `wing_sd` standard deviations the factor stays flat: a smile
    that keeps steepening in the wings makes a farther OTM option dearer than a nearer one (for
    0-1 DTE, where one standard deviation is a few dozen points), an arbitrage no market quotes.
    The result is clipped to [1%, 500%].
    """
    s = surface or active_surface()
    atm = np.asarray(atm_vol, dtype=float)
    T_floor = np.maximum(np.asarray(T, dtype=float), 1.0 / (DAYS_PER_YEAR * 24 * 60))  # one minute
    atm_floor = np.maximum(atm, 1e-4)
    scale = atm_floor * np.sqrt(T_floor)
    m = _clip(np.log(np.asarray(K, dtype=float) / np.asarray(S, dtype=float)) / scale, -s.wing_sd, s.wing_sd)
    a = (s.skew_ref_vol / atm_floor) ** s.skew_vol_exp if s.skew_vol_exp else 1.0
    puts = m < 0
    n_puts = np.count_nonzero(puts)
    if n_puts == puts.size and puts.ndim:  # one side only: the np.where would pick it whole
        factor = 1.0 - a * s.put_slope * m + s.put_curve * m * m
    elif not n_puts and puts.ndim:
        factor = 1.0 - a * s.call_slope * m + s.call_curve * m * m
    else:
        put_side = 1.0 - a * s.put_slope * m + s.put_curve * m * m
        call_side = 1.0 - a * s.call_slope * m + s.call_curve * m * m
        factor = np.where(puts, put_side, call_side)
    ratio = _clip(factor, s.min_ratio, s.max_ratio)
    return _scalarize(_clip(atm * ratio, 0.01, 5.0))


# --------------------------------------------------------------------------- the option models

DIVIDEND_YIELD = 0.013  # SPX, continuous


def spx_option_model(S, K, T, vix, vix9d, vix3m, rate, is_call, greeks: bool = True,
                     surface: Surface | None = None, level_ratio=None) -> dict[str, np.ndarray]:
    """SPX options as the simulated exchange quotes them: Black-Scholes at the smile
    (`spx_smile` around `spx_atm_vol`), dividend yield `DIVIDEND_YIELD`, bid and ask by
    `quote_spread` (wider with VIX and near expiry), all from the active surface.
    Arrays broadcast; returns mid, bid, ask, iv and (with `greeks`) the greeks.
    `level_ratio`: `atm_level_ratio(vix, vix3m)` of the surface where the caller already has
    it (the backtest, per market step), not recomputed."""
    s = surface or active_surface()
    atm = spx_atm_vol(T, vix, vix9d, vix3m, atm_ratio=level_ratio, surface=s)
    iv = np.asarray(spx_smile(atm, S, K, T, surface=s))
    out = bs_price_greeks(S, K, T, iv, rate, DIVIDEND_YIELD, is_call, greeks)
    out["bid"], out["ask"] = quote_spread(out["mid"], vix, T, surface=s)
    out["iv"] = iv
    return out


def vix_option_model(F, K, T, vvix, rate, is_call, greeks: bool = True) -> dict[str, np.ndarray]:
    """VIX options as the simulated exchange quotes them: Black-76 (Black-Scholes with q = r)
    on the VIX future F of the option's expiry, at `vix_call_skew(vix_option_vol(vvix, T))`,
    bid and ask by `vix_quote_spread`. Returns mid, bid, ask, vol and (with `greeks`) the
    greeks, delta and gamma with respect to the future."""
    vol = np.asarray(vix_call_skew(vix_option_vol(vvix, T), F, K))
    out = bs_price_greeks(F, K, T, vol, rate, rate, is_call, greeks)
    out["bid"], out["ask"] = vix_quote_spread(out["mid"])
    out["vol"] = vol
    return out


def curve_at(x: float, xs: list[float], ys: list):
    """`np.interp(x, xs, ys)` for one x where each knot value may be an array (one curve at
    many instants at once): linear between the bracketing knots (slope * (x - x_j) + y_j, y_j
    itself at a knot), flat outside."""
    if x >= xs[-1]:
        return ys[-1]
    if x <= xs[0]:
        return ys[0]
    j = max(i for i in range(len(xs) - 1) if xs[i] <= x)
    if x == xs[j]:
        return ys[j]
    slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])
    return slope * (x - xs[j]) + ys[j]


# --------------------------------------------------------------------------- quotes

_FUZZ_DECIMALS = 6  # binary fuzz is rounded away first: 1.1499999999 counts as 1.15
SPREAD_VIX_REF = 20.0  # VIX at which the spread is `spread_fraction` of mid (before the expiry term)


_POW10 = {2: 100.0, 6: 1e6}


def _round(x, decimals: int):
    """`x.round(decimals)` (numpy's own steps, PyArray_Round: times 10**decimals, rint, divided
    by it, in place), without ndarray.round's call layers: half the time on a small array.
    tests/test_pricing.py checks it against np.round bit for bit."""
    f = _POW10[decimals]
    y = np.multiply(x, f)
    if type(y) is np.ndarray:
        np.rint(y, out=y)
        return np.true_divide(y, f, out=y)
    return np.true_divide(np.rint(y), f)


def _floor_to(x, tick):
    return _round(np.floor(_round(x / tick, _FUZZ_DECIMALS)) * tick, 2)


def _ceil_to(x, tick):
    return _round(np.ceil(_round(x / tick, _FUZZ_DECIMALS)) * tick, 2)


def _spread_edges(mid, fraction, lo, hi):
    """Model quote edges mid -/+ half the spread, rounded away from binary fuzz; the float and
    the Decimal quote both start from these so they agree to the cent."""
    # _clip is np.clip for a bound that is not zero (hi = max_spread x w_vix > 0 by the surface's bounds)
    half = (_clip(fraction * mid, lo, hi) if lo > 0 else np.clip(fraction * mid, lo, hi)) / 2.0
    return _round(mid - half, _FUZZ_DECIMALS), _round(mid + half, _FUZZ_DECIMALS)  # np.round's own method


def spx_spread_terms(vix=None, T_years=None, surface: Surface | None = None):
    """(fraction of mid, min spread, max spread) of an SPX quote: the surface's spread model.

    fraction = spread_fraction * w_vix * w_expiry, max = max_spread * w_vix, with
    w_vix = max(VIX / 20, 0.5) ** spread_vix_exp (markets widen when VIX is high) and
    w_expiry = 1 + spread_near * exp(-days / spread_near_days) (in its last days an option's
    quote is wide for its price). No VIX: w_vix = 1; no T: w_expiry = 1."""
    s = surface or active_surface()
    w_vix = 1.0
    if vix is not None and s.spread_vix_exp:
        w_vix = np.maximum(np.asarray(vix, dtype=float) / SPREAD_VIX_REF, 0.5) ** s.spread_vix_exp
    w_exp = 1.0
    if T_years is not None and s.spread_near:
        days = np.maximum(np.asarray(T_years, dtype=float), 0.0) * DAYS_PER_YEAR
        w_exp = 1.0 + s.spread_near * np.exp(-days / s.spread_near_days)
    return s.spread_fraction * w_vix * w_exp, s.min_spread, s.max_spread * w_vix


def _on_option_ticks(mid, lo, hi):
    """Edges rounded outward to the option tick (0.05 below $3, 0.10 at or above); a nickel
    market below a nickel of value; never a negative bid."""
    lo, hi = np.asarray(lo), np.asarray(hi)
    # each tick's rounding only where some edge needs it: the same values, fewer numpy calls
    dear = lo >= 3.0
    n_dear = np.count_nonzero(dear)
    if n_dear == dear.size:
        bid = _floor_to(lo, 0.10)
    elif n_dear:
        bid = np.where(dear, _floor_to(lo, 0.10), _floor_to(lo, 0.05))
    else:
        bid = _floor_to(lo, 0.05)
    ask = _ceil_to(hi, 0.05)
    dear = ask >= 3.0
    if np.count_nonzero(dear):
        ask = np.where(dear, _ceil_to(hi, 0.10), ask)
    cheap = mid < 0.05
    if cheap.ndim == 0 or np.count_nonzero(cheap):  # (a scalar call gets its 0-d arrays as before)
        return np.where(cheap, 0.0, np.maximum(bid, 0.0)), np.where(cheap, 0.05, ask)
    return np.maximum(bid, 0.0), ask


def quote_spread(mid, vix=None, T_years=None, surface: Surface | None = None):
    """Bid and ask (float arrays) around a model mid for an SPX option.

    Full spread = clip(fraction * mid, min, max) by `spx_spread_terms` (wider with VIX and in
    the option's last days), split evenly and rounded outward to the SPX tick (0.05 below $3,
    0.10 at or above), so the quote is never narrower than the model spread; the bid is never
    negative. Below a nickel of value the quote is 0.00 / 0.05. Floats for speed; use
    `quote_spread_decimal` for one order-ready quote.
    """
    mid = np.asarray(mid, dtype=float)
    return _on_option_ticks(mid, *_spread_edges(mid, *spx_spread_terms(vix, T_years, surface)))


def quote_spread_decimal(mid: float, vix=None, T_years=None, surface: Surface | None = None) -> tuple[Decimal, Decimal]:
    """The same quote as `quote_spread` for one mid, as Decimals on the SPX tick grid."""
    if mid < 0.05:
        return Decimal("0.00"), Decimal("0.05")
    lo, hi = (Decimal(str(float(edge))) for edge in _spread_edges(mid, *spx_spread_terms(vix, T_years, surface)))
    bid = max(floor_tick(lo, spx_option_tick(lo)), Decimal("0"))
    ask = ceil_tick(hi, Decimal("0.05"))
    ask = ceil_tick(hi, spx_option_tick(ask))
    return bid.quantize(Decimal("0.01")), ask.quantize(Decimal("0.01"))


# --------------------------------------------------------------------------- VIX options


def vix_option_vol(vvix, T_years, exponent: float = 0.5, min_factor: float = 0.4,
                   max_factor: float = 2.0, floor: float = 0.20, cap: float = 2.5, atm_ratio: float = 0.8):
    """ATM volatility of VIX options (on the VX future) for maturity T, from VVIX.

    VVIX is the 30-day implied vol of VIX options, skew included (as VIX is for SPX), so the
    30-day ATM level is `atm_ratio` x VVIX. Shorter options carry more vol of vol and longer
    ones much less (the VIX mean-reverts: a 60-day VX future moves about half as much as a
    30-day one), so that level is scaled by (30 / days)^exponent, the factor clipped to
    [min_factor, max_factor], and the result to [floor, cap]. A first-order model, not a
    fitted surface.
    """
    days = np.maximum(np.asarray(T_years, dtype=float) * DAYS_PER_YEAR, 1.0)
    factor = _clip((30.0 / days) ** exponent, min_factor, max_factor)
    return _scalarize(_clip(np.asarray(vvix, dtype=float) / 100.0 * atm_ratio * factor, floor, cap))


def vix_call_skew(vol, F, K, slope: float = 0.5, min_ratio: float = 0.8, max_ratio: float = 1.6):
    """VIX option vol at strike K: upward ("call") skew, vol * (1 + slope * ln(K/F)), the factor
    clipped to [min_ratio, max_ratio]. VIX spikes are sudden and large, so OTM VIX calls are
    dearer than ATM ones and low strikes cheaper: the opposite of the SPX skew. The cap keeps
    far strikes from getting so much vol that a farther call would cost more than a nearer
    one (and keep a 0.30 delta at three times the future)."""
    moneyness = np.log(np.asarray(K, dtype=float) / np.asarray(F, dtype=float))
    ratio = _clip(1.0 + slope * moneyness, min_ratio, max_ratio)
    return _scalarize(np.asarray(vol, dtype=float) * ratio)


VIX_SPREAD_FRACTION = 0.05
VIX_MIN_SPREAD = 0.05
VIX_MAX_SPREAD = 0.50


def vix_quote_spread(mid):
    """Bid and ask (float arrays) around a model mid for a VIX option.

    Full spread = clip(5% of mid, 0.05, 0.50) (VIX options are quoted wider than SPX relative
    to their price, but their prices are small), split evenly and rounded outward to the
    same tick grid as SPX (0.05 below $3, 0.10 at or above), so the quote is never narrower
    than the model spread and every price fits the 0.05 combo grid; the bid is never
    negative. Below a nickel of value the quote is 0.00 / 0.05. A model, not a fitted book.
    """
    mid = np.asarray(mid, dtype=float)
    return _on_option_ticks(mid, *_spread_edges(mid, VIX_SPREAD_FRACTION, VIX_MIN_SPREAD, VIX_MAX_SPREAD))
