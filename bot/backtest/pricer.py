"""Model quotes for the backtest, batched: the numbers of `SimExchange.price_options`, faster.

The daemon asks the simulated exchange for quotes one request at a time; each request runs a
dozen numpy calls and builds a `Quote` per option. The backtest needs the same numbers for
whole intraday paths (every monitor instant of a day, for every leg held) and for chains, so
this module evaluates the exchange's own pricing functions (`bot.pricing`: `spx_smile`,
`bs_price`, `bs_greeks`, `quote_spread`; `bot.sim.exchange.vix_option_model`,
`pricing.vix_quote_spread`) on arrays spanning many (option, instant) pairs at once.

Two pieces of the exchange's code take scalars and are re-expressed here element-wise with
the same floating-point operations, so the results are bit-for-bit the exchange's:

- `pricing.spx_atm_vol` (scalar VIX levels) -> `atm_vol`;
- `SimExchange.vix_future` (interpolation on one curve) -> `_vix_futures`.

`tests/test_backtest_pricer.py` checks that every bid, ask and greek produced here equals
`SimExchange.price_options` on random days, instants, strikes and expiries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np

from bot import pricing
from bot.calendar import TradingCalendar
from bot.domain import Greeks, OptionSpec, Quote, Right
from bot.sim import listing
from bot.sim.exchange import DIVIDEND_YIELD, YEAR_S, decimal_price
from bot.sim.market import DayPath, HistoryMarket, session_stamps

_DAYS = pricing.DAYS_PER_YEAR


# --------------------------------------------------------------------------- the VIX-term ATM vol


def atm_vol(T, vix, vix9d, vix3m, atm_ratio: float = pricing.ATM_TO_VIX) -> np.ndarray:
    """`pricing.spx_atm_vol` element by element: every argument an array of one shape.

    The knots (9, 30, 91 days) present for an element are those whose level is finite; VIX is
    always present. Total variance is interpolated linearly between the knots as `np.interp`
    does it (slope * (x - x_j) + y_j, the knot value itself at a knot), flat outside.
    """
    T, vix, v9, v3 = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (T, vix, vix9d, vix3m)))
    out = np.empty(T.shape)
    has9, has3 = np.isfinite(v9), np.isfinite(v3)
    for p9 in (False, True):
        for p3 in (False, True):
            sel = (has9 == p9) & (has3 == p3)
            if not sel.any():
                continue
            levels = ([v9[sel]] if p9 else []) + [vix[sel]] + ([v3[sel]] if p3 else [])
            days = ([9.0] if p9 else []) + [30.0] + ([91.0] if p3 else [])
            t_k = [d / _DAYS for d in days]
            v_k = [lv / 100.0 for lv in levels]
            w_k = [v * v * t for v, t in zip(v_k, t_k)]
            x = T[sel]
            vol = np.where(x <= t_k[0], v_k[0], v_k[-1])
            if len(t_k) > 1:
                inside = (x > t_k[0]) & (x < t_k[-1])
                if inside.any():
                    xi = x[inside]
                    interp = np.empty(xi.shape)
                    for j in range(len(t_k) - 1):
                        seg = (xi >= t_k[j]) & (xi < t_k[j + 1])
                        if not seg.any():
                            continue
                        y0, y1 = w_k[j][inside][seg], w_k[j + 1][inside][seg]
                        slope = (y1 - y0) / (t_k[j + 1] - t_k[j])
                        xs = xi[seg]
                        interp[seg] = np.where(xs == t_k[j], y0, slope * (xs - t_k[j]) + y0)
                    vi = np.sqrt(interp / xi)
                    vol = vol.copy()
                    vol[inside] = vi
            out[sel] = vol * atm_ratio
    return out


# --------------------------------------------------------------------------- Black-Scholes, fused


def bs_fused(S, K, T, sigma, r, q, is_call, greeks: bool = True) -> dict[str, np.ndarray]:
    """`pricing.bs_price` and, with `greeks`, `pricing.bs_greeks` in one pass: the same
    operations in the same order (so the same bits), with one `norm_cdf` call over the stacked
    arguments (d1, d2, -d1, -d2) instead of ten calls, and one `_d1_d2` instead of two."""
    S, K, T, sigma, r, q, call = pricing._inputs(S, K, T, sigma, r, q, is_call)  # noqa: SLF001
    d1, d2, live, Tp, sd = pricing._d1_d2(S, K, T, sigma, r, q)  # noqa: SLF001
    n = d1.size
    cdf = pricing.norm_cdf(np.concatenate([d1.ravel(), d2.ravel(), (-d1).ravel(), (-d2).ravel()]))
    n_d1, n_d2, n_md1, n_md2 = (cdf[i * n:(i + 1) * n].reshape(d1.shape) for i in range(4))
    dq, dr = np.exp(-q * Tp), np.exp(-r * Tp)
    call_px = S * dq * n_d1 - K * dr * n_d2
    put_px = K * dr * n_md2 - S * dq * n_md1
    fwd_intrinsic = np.where(call, np.maximum(S * dq - K * dr, 0.0), np.maximum(K * dr - S * dq, 0.0))
    price = np.where(live, np.where(call, call_px, put_px), fwd_intrinsic)
    out = {"mid": np.maximum(price, 0.0)}
    if not greeks:
        return out
    pdf = pricing.norm_pdf(d1)
    sqrt_t = np.where(live, np.sqrt(Tp), 1.0)
    delta = np.where(call, dq * n_d1, -dq * n_md1)
    gamma = dq * pdf / (np.where(live, S, 1.0) * sd)
    vega = S * dq * pdf * sqrt_t / 100.0
    decay = -S * dq * pdf * sigma / (2.0 * sqrt_t)
    theta_call = decay - r * K * dr * n_d2 + q * S * dq * n_d1
    theta_put = decay + r * K * dr * n_md2 - q * S * dq * n_md1
    theta = np.where(call, theta_call, theta_put) / pricing.DAYS_PER_YEAR
    dead_delta = np.where(call, np.where(S > K, 1.0, 0.0), np.where(S < K, -1.0, 0.0))
    zero = np.zeros_like(S)
    out.update(delta=np.where(live, delta, dead_delta), gamma=np.where(live, gamma, zero),
               vega=np.where(live, vega, zero), theta=np.where(live, theta, zero))
    return out


def vix_model(F, K, T, vvix, rate, is_call, greeks: bool = True) -> dict[str, np.ndarray]:
    """`bot.sim.exchange.vix_option_model` (Black-76 = Black-Scholes with q = r), fused."""
    vol = pricing.vix_call_skew(pricing.vix_option_vol(vvix, T), F, K)
    out = bs_fused(F, K, T, vol, rate, rate, is_call, greeks)
    out["vol"] = np.asarray(vol)
    return out


# --------------------------------------------------------------------------- one session's arrays


def day_arrays(market: HistoryMarket, d: date, open_close: tuple[float, float] | None = None) -> DayPath:
    """The market's intraday path of session d: with the session's (open, close) timestamps,
    built afresh on them (`HistoryMarket.session_path`, no calendar lookup, no cache); without,
    the market's cached path (`day_path`)."""
    if open_close is None:
        return market.day_path(d)
    return market.session_path(d, session_stamps(open_close[0], open_close[1], market.step_s))


# --------------------------------------------------------------------------- the pricer


class Pricer:
    """Exchange-identical quotes for SPX and VIX options on one market, batched and cached
    per session. Quotes are keyed by (instant, option key); a missing key means the option
    is expired or was never listed (as the exchange leaves it out)."""

    def __init__(self, market: HistoryMarket, calendar: TradingCalendar, sessions=None):
        self.sessions = sessions  # optional SessionTimes: open/close without pandas per date
        self.market = market
        self.cal = calendar
        self.day: DayPath | None = None
        self._cache: dict[tuple[float, str], Quote | None] = {}
        self._spx_expiry_ts: dict[date, float | None] = {}
        self._vix_expiry_ts: dict[tuple[date, str], float | None] = {}
        self._listed: dict[tuple[date, str], bool] = {}
        self._futures: dict[date, np.ndarray] = {}

    # -- session
    def start_day(self, d: date) -> DayPath:
        oc = self.sessions.get(d) if self.sessions is not None else None
        self.day = day_arrays(self.market, d, oc)
        self._futures = {}
        self._cache.clear()
        return self.day

    # -- expiry times
    def spx_expiry_ts(self, expiry: date) -> float | None:
        v = self._spx_expiry_ts.get(expiry, 0.0)
        if v == 0.0:
            got = self.sessions.get(expiry) if self.sessions is not None else None
            if got is not None:
                v = got[1]
            else:
                v = self.cal.spxw_expiry_time(expiry).timestamp() if self.cal.is_session(expiry) else None
            self._spx_expiry_ts[expiry] = v
        return v

    def vix_expiry_ts(self, expiry: date, trading_class: str) -> float | None:
        k = (expiry, trading_class)
        if k not in self._vix_expiry_ts:
            ok = listing.is_vix_listed(self.cal, expiry, trading_class)
            self._vix_expiry_ts[k] = self.cal.vix_expiry_time(expiry).timestamp() if ok else None
        return self._vix_expiry_ts[k]

    # -- state values at instants (vectors over instants)
    def _steps(self, stamps: np.ndarray) -> np.ndarray:
        day = self.day
        idx = np.floor((stamps - day.open_ts) / day.step_s).astype(int)
        idx = np.clip(idx, 0, len(day.stamps) - 1)
        return np.where(stamps >= day.close_ts, len(day.stamps) - 1, idx)

    # -- SPX
    def spx_arrays(self, expiry_ts: np.ndarray, strikes: np.ndarray, is_call: np.ndarray, stamps: np.ndarray,
                   greeks: bool = True) -> dict[str, np.ndarray]:
        """Mid, bid, ask (and greeks, iv) of SPX options: all arguments broadcast; `stamps` are
        the query instants (POSIX seconds, inside today's session or at its close)."""
        day = self.day
        k = self._steps(np.asarray(stamps, dtype=float))
        S, vix, v9, v3 = day.spx[k], day.vix[k], day.vix9d[k], day.vix3m[k]
        T = (np.asarray(expiry_ts, dtype=float) - np.asarray(stamps, dtype=float)) / YEAR_S
        S, vix, v9, v3, T, K, call = np.broadcast_arrays(S, vix, v9, v3, T, np.asarray(strikes, dtype=float),
                                                       np.asarray(is_call, dtype=bool))
        atm = atm_vol(T, vix, v9, v3)
        iv = pricing.spx_smile(atm, S, K, T)
        out = bs_fused(S, K, T, iv, day.rate, DIVIDEND_YIELD, call, greeks)
        out["bid"], out["ask"] = pricing.quote_spread(out["mid"])
        out.update(T=T, S=S, iv=np.asarray(iv))
        return out

    # -- VIX
    def future_path(self, expiry: date) -> np.ndarray:
        """`SimExchange.vix_future` of an expiry at every step of the day: the listed monthly
        future of that expiry, else linear in calendar days on the curve with spot VIX at day 0
        and flat beyond the last future (np.interp's arithmetic: slope * (x - x_j) + y_j, and
        y_j itself at a knot)."""
        got = self._futures.get(expiry)
        if got is not None:
            return got
        day = self.day
        if expiry in day.vx_expiries:
            got = np.asarray(day.vx[:, day.vx_expiries.index(expiry)], dtype=float)
        else:
            today = day.session
            xs = [0.0] + [float((e - today).days) for e in day.vx_expiries if e > today]
            ys = [np.asarray(day.vix, dtype=float)] + [np.asarray(day.vx[:, j], dtype=float)
                                                       for j, e in enumerate(day.vx_expiries) if e > today]
            x = float((expiry - today).days)
            if x >= xs[-1]:
                got = ys[-1].copy()
            elif x <= xs[0]:
                got = ys[0].copy()
            else:
                j = max(i for i in range(len(xs) - 1) if xs[i] <= x)
                if x == xs[j]:
                    got = ys[j].copy()
                else:
                    slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])
                    got = slope * (x - xs[j]) + ys[j]
        self._futures[expiry] = got
        return got

    def _vix_futures(self, expiries: list[date], k: np.ndarray) -> np.ndarray:
        """`SimExchange.vix_future` for each (expiry, step) pair (arrays of one length)."""
        steps = np.asarray(k).ravel()
        if len(set(expiries)) == 1:
            return self.future_path(expiries[0])[steps]
        out = np.empty(len(expiries))
        idx: dict[date, list[int]] = {}
        for i, e in enumerate(expiries):
            idx.setdefault(e, []).append(i)
        for e, where in idx.items():
            w = np.array(where)
            out[w] = self.future_path(e)[steps[w]]
        return out

    def vix_arrays(self, expiries: list[date], expiry_ts: np.ndarray, strikes: np.ndarray, is_call: np.ndarray,
                   stamps: np.ndarray, greeks: bool = True) -> dict[str, np.ndarray]:
        """Mid, bid, ask, greeks, vol and the future F of VIX options (1-d arrays of one length)."""
        day = self.day
        stamps = np.asarray(stamps, dtype=float)
        k = self._steps(stamps)
        F = self._vix_futures(expiries, k)
        T = (np.asarray(expiry_ts, dtype=float) - stamps) / YEAR_S
        out = vix_model(F, np.asarray(strikes, dtype=float), T, day.vvix[k], day.rate, np.asarray(is_call, dtype=bool),
                        greeks)
        out["bid"], out["ask"] = pricing.vix_quote_spread(out["mid"])
        out.update(F=F, T=T)
        return out

    def vix_future(self, expiry: date, ts: float) -> float:
        return float(self.future_path(expiry)[int(self._steps(np.array([ts]))[0])])

    # -- Quote objects, exchange-identical, cached
    def quotes(self, options: list[OptionSpec], t: datetime) -> dict[str, Quote]:
        ts = t.timestamp()
        out: dict[str, Quote] = {}
        missing: list[OptionSpec] = []
        cache = self._cache
        for o in options:
            key = o.key
            hit = cache.get((ts, key), False)
            if hit is False:
                missing.append(o)
            elif hit is not None:
                out[key] = hit
        if missing:
            for o, q in zip(missing, self._price(missing, ts)):
                cache[(ts, o.key)] = q
                if q is not None:
                    out[o.key] = q
        return out

    def cached(self, ts: float, option: OptionSpec) -> Quote | None:
        return self._cache.get((ts, option.key)) or None

    def bid_ask_over(self, options: list[OptionSpec], stamps: list[float]) -> "StepQuotes":
        """For each instant, greek-less quotes (bid / ask exactly as the exchange quotes them)
        of the options live then: what an order walk looks at. Priced in one batch; the
        `Quote` objects of an instant are built when it is first looked at."""
        n = len(stamps)
        st = np.asarray(stamps, dtype=float)
        bid = np.full((n, len(options)), np.nan)
        ask = np.full((n, len(options)), np.nan)
        for symbol in ("SPX", "VIX"):
            cols = [j for j, o in enumerate(options) if o.symbol == symbol]
            if not cols:
                continue
            sel = [options[j] for j in cols]
            if symbol == "SPX":
                exp = np.array([self.spx_expiry_ts(o.expiry) or -np.inf for o in sel])
            else:
                exp = np.array([self.vix_expiry_ts(o.expiry, o.trading_class) or -np.inf for o in sel])
            E = np.broadcast_to(exp[None, :], (n, len(sel)))
            S = np.broadcast_to(st[:, None], (n, len(sel)))
            live = E - S > 0
            if not live.any():
                continue
            K = np.broadcast_to(np.array([float(o.strike) for o in sel])[None, :], (n, len(sel)))
            C = np.broadcast_to(np.array([o.right is Right.CALL for o in sel])[None, :], (n, len(sel)))
            if symbol == "SPX":
                a = self.spx_arrays(E[live], K[live], C[live], S[live], greeks=False)
            else:
                idx = np.broadcast_to(np.arange(len(sel))[None, :], (n, len(sel)))[live]
                a = self.vix_arrays([sel[c].expiry for c in idx.tolist()], E[live], K[live], C[live], S[live],
                                    greeks=False)
            sub_b = np.full((n, len(sel)), np.nan)
            sub_a = np.full((n, len(sel)), np.nan)
            sub_b[live], sub_a[live] = a["bid"], a["ask"]
            bid[:, cols], ask[:, cols] = sub_b, sub_a
        return StepQuotes([o.key for o in options], bid, ask)

    def put(self, ts: float, option: OptionSpec, quote: Quote) -> None:
        """Cache a quote computed elsewhere from this pricer's arrays (chains, bands)."""
        self._cache[(ts, option.key)] = quote

    @staticmethod
    def spx_quote(a: dict[str, np.ndarray], n) -> Quote:
        """The exchange's SPX `Quote` from `spx_arrays` output at index n."""
        return Quote(decimal_price(a["bid"][n]), decimal_price(a["ask"][n]),
                     Greeks(float(a["delta"][n]), float(a["gamma"][n]), float(a["vega"][n]), float(a["theta"][n]),
                            float(a["iv"][n])), float(a["S"][n]))

    @staticmethod
    def vix_quote(a: dict[str, np.ndarray], n) -> Quote:
        """The exchange's VIX `Quote` from `vix_arrays` output at index n."""
        return Quote(decimal_price(a["bid"][n]), decimal_price(a["ask"][n]),
                     Greeks(float(a["delta"][n]), float(a["gamma"][n]), float(a["vega"][n]), float(a["theta"][n]),
                            float(a["vol"][n])), float(a["F"][n]))

    def _price(self, options: list[OptionSpec], ts: float) -> list[Quote | None]:
        res: list[Quote | None] = [None] * len(options)
        spx = [(i, o) for i, o in enumerate(options) if o.symbol == "SPX"]
        vix = [(i, o) for i, o in enumerate(options) if o.symbol == "VIX"]
        if spx:
            exp = np.array([self.spx_expiry_ts(o.expiry) or -np.inf for _, o in spx])
            live = exp - ts > 0
            if live.any():
                sel = [(i, o) for (i, o), ok in zip(spx, live) if ok]
                a = self.spx_arrays(exp[live], np.array([float(o.strike) for _, o in sel]),
                                    np.array([o.right is Right.CALL for _, o in sel]), np.full(len(sel), ts))
                for n, (i, _) in enumerate(sel):
                    res[i] = self.spx_quote(a, n)
        if vix:
            exp = np.array([self.vix_expiry_ts(o.expiry, o.trading_class) or -np.inf for _, o in vix])
            live = exp - ts > 0
            if live.any():
                sel = [(i, o) for (i, o), ok in zip(vix, live) if ok]
                a = self.vix_arrays([o.expiry for _, o in sel], exp[live], np.array([float(o.strike) for _, o in sel]),
                                    np.array([o.right is Right.CALL for _, o in sel]), np.full(len(sel), ts))
                for n, (i, _) in enumerate(sel):
                    res[i] = self.vix_quote(a, n)
        return res


class StepQuotes:
    """Quotes of a few options at a few instants, built per instant on first use."""

    def __init__(self, keys: list[str], bid: np.ndarray, ask: np.ndarray):
        self.keys, self.bid, self.ask = keys, bid, ask
        self._built: dict[int, dict[str, Quote]] = {}

    def __len__(self) -> int:
        return self.bid.shape[0]

    def __getitem__(self, k: int) -> dict[str, Quote]:
        if k < 0:
            k += len(self)
        got = self._built.get(k)
        if got is None:
            b, a = self.bid[k], self.ask[k]
            got = {key: Quote(decimal_price(b[j]), decimal_price(a[j])) for j, key in enumerate(self.keys) if not math.isnan(b[j])}
            self._built[k] = got
        return got


def after(t: datetime, seconds: float) -> datetime:
    return t + timedelta(seconds=seconds)
