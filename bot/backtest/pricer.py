"""Model quotes for the backtest, batched: the numbers of `SimExchange.price_options`, faster.

The daemon asks the simulated exchange for quotes one request at a time and builds a `Quote`
per option. The backtest needs the same numbers for whole intraday paths (every monitor
instant of a day, for every leg held) and for chains, so it calls the exchange's own
vectorized models (`pricing.spx_option_model`, `pricing.vix_option_model`, the future of an
expiry by `pricing.curve_at`) once on arrays spanning many (option, instant) pairs, on the
market's own day path (`HistoryMarket.session_path`), and builds `Quote`s only for the rows it
hands to the strategy code (`exchange.option_quote`).

`tests/test_backtest_pricer.py` checks that every bid, ask and greek produced here equals
`SimExchange.price_options` on random days, instants, strikes and expiries.
"""

from __future__ import annotations

import math
from datetime import date, datetime

import numpy as np

from bot import pricing
from bot.calendar import TradingCalendar
from bot.domain import OptionSpec, Quote, Right
from bot.sim import listing
from bot.sim.exchange import YEAR_S, decimal_price, option_quote
from bot.sim.market import DayPath, HistoryMarket, between, session_stamps

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
        self._bid_ask: dict[tuple[float, str], tuple[float, float]] = {}  # `prefetch_bid_ask`, per session
        self._spx_batches: dict[tuple, tuple] = {}  # today's spx_arrays results by their arguments
        self._ratio: tuple | None = None  # (surface, the ATM level ratio at each step of the day)
        self._spx_expiry_ts: dict[date, float | None] = {}
        self._vix_expiry_ts: dict[tuple[date, str], float | None] = {}
        self._listed: dict[tuple[date, str], bool] = {}
        self._futures: dict[date, np.ndarray] = {}
        self._spx_state: np.ndarray | None = None  # the day's (SPX, VIX, VIX9D, VIX3M) by step (start_day)

    # -- session
    def start_day(self, d: date) -> DayPath:
        oc = self.sessions.get(d) if self.sessions is not None else None
        self.day = day_arrays(self.market, d, oc)
        # SPX, VIX, VIX9D, VIX3M side by side: one `between` moves all four (spx_arrays)
        self._spx_state = np.stack([np.asarray(x, dtype=float) for x in
                                    (self.day.spx, self.day.vix, self.day.vix9d, self.day.vix3m)], axis=1)
        self._futures = {}
        self._cache.clear()
        self._bid_ask.clear()
        self._spx_batches.clear()
        self._ratio = None
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
        last = len(day.stamps) - 1
        idx = np.floor((stamps - day.open_ts) / day.step_s).astype(int)
        idx = np.minimum(np.maximum(idx, 0), last)  # np.clip's result, without its overhead
        return np.where(stamps >= day.close_ts, last, idx)

    def _weight(self, ts: float) -> tuple[int, float]:
        """`DayPath.weight`: the step at or before ts and how far (0 <= w < 1) toward the next."""
        return self.day.weight(ts)

    # -- SPX
    def spx_arrays(self, expiry_ts: np.ndarray, strikes: np.ndarray, is_call: np.ndarray, stamps: np.ndarray,
                   greeks: bool = True) -> dict[str, np.ndarray]:
        """Mid, bid, ask (and greeks, iv) of SPX options: all arguments broadcast; `stamps` are
        the query instants (POSIX seconds, inside today's session or at its close).

        Kept for the day by the exact arguments: accounts of one run that walk the same order
        from the same instant (the condor variants of a report) ask for the same batch, priced
        once. The arrays are shared: callers read them, never write."""
        key = (greeks,) + tuple((a.shape, a.dtype.str, a.tobytes()) for a in map(np.asarray, (expiry_ts, strikes, is_call, stamps)))
        got = self._spx_batches.get(key)
        surface = pricing.active_surface()
        if got is None or got[0] is not surface:
            got = self._spx_batches[key] = (surface, self._spx_arrays(expiry_ts, strikes, is_call, stamps, greeks))
        return dict(got[1])

    def _spx_arrays(self, expiry_ts, strikes, is_call, stamps, greeks: bool) -> dict[str, np.ndarray]:
        day = self.day
        stamps = np.asarray(stamps, dtype=float)
        if stamps.ndim == 0:  # one instant (a chain): its step and weight without numpy (`_weight`)
            k, w = self._weight(float(stamps))
            state = self._spx_state[k]
            at_steps = not w > 0
            if not at_steps:  # `between`'s arithmetic on the one row
                state = state + (self._spx_state[min(k + 1, len(self._spx_state) - 1)] - state) * w
        else:
            k, w = day.weights(stamps)  # the market's rule between steps
            state = between(self._spx_state, k, w)  # the same arithmetic per value as one path at a time
            at_steps = not np.count_nonzero(w)
        # at steps, VIX and VIX3M are the steps' own: their ATM level ratio is the step's
        level_ratio = self._level_ratio()[k] if at_steps else None
        T = np.asarray((np.asarray(expiry_ts, dtype=float) - stamps) / YEAR_S)
        K, call = np.asarray(strikes, dtype=float), np.asarray(is_call, dtype=bool)
        # every argument at the broadcast shape (as np.broadcast_arrays, without its overhead)
        shape = state.shape[:-1]
        if not (shape == T.shape == K.shape == call.shape):
            shape = np.broadcast_shapes(shape, T.shape, K.shape, call.shape)
            if state.shape[:-1] != shape:
                state = np.broadcast_to(state, shape + (4,))
            T, K, call = (a if a.shape == shape else np.broadcast_to(a, shape) for a in (T, K, call))
        S, vix, v9, v3 = (state[..., j] for j in range(4))
        out = pricing.spx_option_model(S, K, T, vix, v9, v3, day.rate, call, greeks, level_ratio=level_ratio)
        out.update(T=T, S=S)
        return out

    def _level_ratio(self) -> np.ndarray:
        """`pricing.atm_level_ratio` of the active surface at every step of the day, computed
        once (elementwise: each step's value is the one a batch at that step computes)."""
        surface = pricing.active_surface()
        got = self._ratio
        if got is None or got[0] is not surface:
            got = self._ratio = (surface, np.asarray(pricing.atm_level_ratio(
                self._spx_state[:, 1], self._spx_state[:, 3], surface), dtype=float))
        return got[1]

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
            got = np.array(pricing.curve_at(float((expiry - today).days), xs, ys))
        self._futures[expiry] = got
        return got

    def _future_between(self, expiry: date, vix_now: np.ndarray, vx_now: np.ndarray | None) -> np.ndarray:
        """`SimExchange.vix_future` of one expiry between steps: the curve of the interpolated
        state (`between`: spot VIX `vix_now`, the listed futures `vx_now`, one row per
        instant), with `future_path`'s arithmetic."""
        day = self.day
        if expiry in day.vx_expiries:
            return vx_now[:, day.vx_expiries.index(expiry)]
        today = day.session
        xs = [0.0] + [float((e - today).days) for e in day.vx_expiries if e > today]
        ys = [vix_now] + [vx_now[:, j] for j, e in enumerate(day.vx_expiries) if e > today]
        return np.broadcast_to(np.asarray(pricing.curve_at(float((expiry - today).days), xs, ys), dtype=float),
                               vix_now.shape)

    def _vix_futures(self, expiries: list[date], k: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        """`SimExchange.vix_future` for each (expiry, instant) pair (arrays of one length). With
        an instant between steps in the batch, every pair by `_future_between` (the curve of the
        interpolated state: not the interpolation of `future_path`, which rounds differently),
        the state interpolated once for all pairs (the same arithmetic per element as per
        expiry); at steps only, each expiry's path of the day, indexed (no Python loop over
        the pairs)."""
        steps = np.asarray(k).ravel()
        if w is not None and np.any(w > 0):
            ww = np.asarray(w, dtype=float).ravel()
            day = self.day
            vix_now = between(np.asarray(day.vix, dtype=float), steps, ww)
            vx_now = between(np.asarray(day.vx, dtype=float), steps, ww) if len(day.vx_expiries) else None
            out = np.empty(len(expiries))
            idx: dict[date, list[int]] = {}
            for i, e in enumerate(expiries):
                idx.setdefault(e, []).append(i)
            if len(idx) == 1:
                out[:] = self._future_between(expiries[0], vix_now, vx_now)
                return out
            for e, where in idx.items():
                wh = np.array(where)
                out[wh] = self._future_between(e, vix_now[wh], None if vx_now is None else vx_now[wh])
            return out
        uniq = list(dict.fromkeys(expiries))
        if not uniq:
            return np.empty(0)
        if len(uniq) == 1:
            return self.future_path(uniq[0])[steps]
        pos = {e: i for i, e in enumerate(uniq)}
        codes = np.fromiter(map(pos.__getitem__, expiries), dtype=np.intp, count=len(expiries))
        return np.stack([self.future_path(e) for e in uniq])[codes, steps]

    def vix_arrays(self, expiries: list[date], expiry_ts: np.ndarray, strikes: np.ndarray, is_call: np.ndarray,
                   stamps: np.ndarray, greeks: bool = True) -> dict[str, np.ndarray]:
        """Mid, bid, ask, greeks, vol and the future F of VIX options (1-d arrays of one length)."""
        day = self.day
        stamps = np.asarray(stamps, dtype=float)
        k, w = day.weights(stamps)
        F = self._vix_futures(expiries, k, w)
        T = np.asarray((np.asarray(expiry_ts, dtype=float) - stamps) / YEAR_S)
        out = pricing.vix_option_model(F, np.asarray(strikes, dtype=float), T, between(day.vvix, k, w), day.rate,
                                       np.asarray(is_call, dtype=bool), greeks)
        out.update(F=F, T=T)
        return out

    def vix_future(self, expiry: date, ts: float) -> float:
        k, w = self._weight(ts)
        if w > 0:  # between two steps: main's arithmetic (`_future_between`)
            return float(self._vix_futures([expiry], np.array([k]), np.array([w]))[0])
        return float(self.future_path(expiry)[k])

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
        of the options live then: what an order walk looks at. Priced in one batch (or taken
        from `prefetch_bid_ask`); the `Quote` objects of an instant are built when it is first
        looked at."""
        n, m = len(stamps), len(options)
        keys = [o.key for o in options]
        book = self._bid_ask
        if book:
            try:
                got = np.array([book[(ts, key)] for ts in stamps for key in keys], dtype=float).reshape(n, m, 2)
            except KeyError:
                pass
            else:
                return StepQuotes(keys, got[:, :, 0], got[:, :, 1])
        # the (instant, option) pairs row by row: pair i * m + j is instant i, option j
        bid, ask = self._bid_ask_pairs(options, np.tile(np.arange(m), n), np.asarray(stamps, dtype=float).repeat(m))
        return StepQuotes(keys, bid.reshape(n, m), ask.reshape(n, m))

    def prefetch_bid_ask(self, wanted: list[tuple[list[OptionSpec], list[float]]]) -> None:
        """Price (options, instants) groups in one batch for the `bid_ask_over` calls to come
        this session (the walks of a plan of orders, sent one after the other). The model's
        arithmetic is the same per (option, instant) pair whatever else is in the batch, so a
        quote taken from here is the one a batch of its own would give; one batch instead
        of one per walk, because a batch's cost is mostly fixed."""
        book = self._bid_ask
        index: dict[str, int] = {}
        options: list[OptionSpec] = []
        pairs: dict[tuple[float, str], int] = {}
        for opts, stamps in wanted:
            for o in opts:
                key = o.key
                j = index.get(key)
                if j is None:
                    j = index[key] = len(options)
                    options.append(o)
                for ts in stamps:
                    if (ts, key) not in book:
                        pairs.setdefault((ts, key), j)
        if not pairs:
            return
        bid, ask = self._bid_ask_pairs(options, np.fromiter(pairs.values(), dtype=np.intp, count=len(pairs)),
                                       np.array([ts for ts, _ in pairs], dtype=float))
        book.update(zip(pairs, zip(bid.tolist(), ask.tolist())))

    def _bid_ask_pairs(self, options: list[OptionSpec], codes: np.ndarray, stamps: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Greek-less bid and ask of options[codes[i]] at stamps[i] (NaN where it is not live):
        one model batch per symbol."""
        n = len(codes)
        bid = ask = None
        for symbol in ("SPX", "VIX"):
            mine = np.array([o.symbol == symbol for o in options], dtype=bool)
            if not mine.any():
                continue
            if symbol == "SPX":
                exp = [self.spx_expiry_ts(o.expiry) or -np.inf for o in options]
            else:
                exp = [self.vix_expiry_ts(o.expiry, o.trading_class) or -np.inf for o in options]
            rows = None if mine.all() else np.flatnonzero(mine[codes])
            c, S = (codes, stamps) if rows is None else (codes[rows], stamps[rows])
            E = np.array(exp, dtype=float)[c]
            live = E - S > 0
            K = np.array([float(o.strike) for o in options])[c]
            C = np.array([o.right is Right.CALL for o in options], dtype=bool)[c]
            every = bool(live.all())
            if not every:
                if not live.any():
                    continue
                E, S, K, C, c = E[live], S[live], K[live], C[live], c[live]
            if symbol == "SPX":
                a = self.spx_arrays(E, K, C, S, greeks=False)
            else:
                a = self.vix_arrays([options[j].expiry for j in c.tolist()], E, K, C, S, greeks=False)
            if every and rows is None:  # one symbol, all live: the model's output as it is
                return a["bid"], a["ask"]
            if bid is None:
                bid, ask = np.full(n, np.nan), np.full(n, np.nan)
            where = np.arange(n) if rows is None else rows
            if not every:
                where = where[live]
            bid[where], ask[where] = a["bid"], a["ask"]
        if bid is None:
            bid, ask = np.full(n, np.nan), np.full(n, np.nan)
        return bid, ask

    def put(self, ts: float, option: OptionSpec, quote: Quote) -> None:
        """Cache a quote computed elsewhere from this pricer's arrays (chains, bands)."""
        self._cache[(ts, option.key)] = quote

    @staticmethod
    def spx_quote(a: dict[str, np.ndarray], n) -> Quote:
        """The exchange's SPX `Quote` from `spx_arrays` output at index n."""
        return option_quote(a, n, "iv", float(a["S"][n]))

    @staticmethod
    def vix_quote(a: dict[str, np.ndarray], n) -> Quote:
        """The exchange's VIX `Quote` from `vix_arrays` output at index n."""
        return option_quote(a, n, "vol", float(a["F"][n]))

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
