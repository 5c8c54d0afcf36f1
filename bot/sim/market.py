"""The simulated market's underlyings: SPX, VIX (+ VIX9D, VIX3M, VVIX), VIX futures, the rate.

Two sources behind one `MarketModel` protocol (DESIGN.md "The simulated market"):

- `HistoryMarket` replays real daily history with a seeded intraday path bridged through each
  day's open, high, low and close;
- `SyntheticMarket` runs a seeded stochastic-volatility model with jumps, anywhere, no data.

Time model. Each session is cut into steps of `step_minutes` from the open to the close (the
last step may be shorter; early closes included). The market holds its value between steps:
`state_at(t)` is the state of the last step at or before t. Before a session's open, and on
weekends and holidays, it is the previous session's close. Before the first session the
market shows the first session's open; after the last one its last close.

Paths are built per session on first use and kept in a small cache; a session's path depends
only on (seed, date) (and, for the synthetic model, the close before it), so the answers do
not depend on the order of the questions. `state_at` is a dictionary lookup and an index.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Protocol

import numpy as np

from bot.calendar import UTC, TradingCalendar
from bot.data import WARMUP_DAYS, DataError, History, has_required_files, load_history

SOURCES = ("history", "synthetic", "auto")
MAX_VX = 8  # listed monthly VIX futures shown (VX1..VX8)
FULL_SESSION_SECONDS = 390 * 60  # a regular 09:30-16:00 session
TRADING_DAYS_PER_YEAR = 252.0
SPX_VIX_RHO = -0.7  # correlation of SPX and VIX moves (both models)
HISTORY_LOOKBACK_DAYS = 600  # calendar days of history loaded before a replay's start (~410 sessions)
CLOSE_SYMBOLS = ("SPX", "VIX", "VIX9D", "VIX3M", "VVIX")  # what `daily_closes` answers for


@dataclass(frozen=True, slots=True)
class MarketState:
    """What the market shows at one instant.

    `time` is the instant of the step these values belong to (at or before the time asked).
    vix9d / vix3m are nan when unknown (history before those indexes existed); vvix is always
    a number (modelled from the VIX where history has none, before 2007). `rate` is annual,
    continuous, decimal. `vx` lists the monthly VIX futures (expiry, price), nearest first, at
    least two. `session` is the current session, or the last one when the market is closed.
    """

    time: datetime
    spx: float
    vix: float
    vix9d: float
    vix3m: float
    vvix: float
    rate: float
    vx: tuple[tuple[date, float], ...]
    session: date


class MarketModel(Protocol):
    source: str  # "history" | "synthetic"
    reason: str  # one line: why this source (set by build_market)
    first_session: date | None
    last_session: date | None  # None = unbounded

    def state_at(self, t: datetime) -> MarketState: ...

    def path(self, t0: datetime, t1: datetime) -> tuple[np.ndarray, np.ndarray]: ...

    def settlement(self, d: date) -> float: ...


# --------------------------------------------------------------------------- shared models


def vvix_from_vix(vix):
    """A plausible VVIX for a VIX level (VIX 13 -> ~83, 18 -> ~92, 40 -> ~132, 80 -> ~204):
    vol of vol rises with the VIX. Used by the synthetic model and where history has no VVIX."""
    return np.clip(60.0 + 1.8 * np.asarray(vix, dtype=float), 70.0, 220.0)


def vx_beta(days_to_expiry):
    """Elasticity of a VIX future to spot VIX: ~1 at expiry, 0.6 at 30 days, 0.33 at 90.
    Far contracts barely move with spot because the VIX mean-reverts before they expire."""
    return 1.0 / (1.0 + np.asarray(days_to_expiry, dtype=float) / 45.0)


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _vix_expiry_known(calendar: TradingCalendar, year: int, month: int) -> bool:
    """The expiry rule looks at the third Friday (day 15-21) of the following month."""
    ny, nm = _next_month(year, month)
    return date(ny, nm, 21) <= calendar.last


# --------------------------------------------------------------------------- per-session paths


def session_stamps(open_ts: float, close_ts: float, step_s: float) -> np.ndarray:
    """POSIX seconds of a session's steps: the open, every step_s after it, and the close."""
    n = int(math.ceil((close_ts - open_ts) / step_s))
    out = np.empty(n + 1)
    out[:n] = np.arange(n) * step_s  # k * step_s, then + open_ts: the same two roundings as in floats
    out[:n] += open_ts
    out[n] = close_ts
    return out


def between(x: np.ndarray, k: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Values of a path x (steps first; more axes allowed) w of the way from step k to k + 1:
    the market between two steps moves linearly in time from one to the next, so a price
    seen at a step goes on moving while an order works (an order walk of a few minutes no
    longer faces a frozen quote). Exactly x[k] where w = 0. The one rule for the daemon's
    exchange (`state_at`) and the backtest's pricer."""
    if np.ndim(w) and not (w > 0).any():  # all at steps (the usual batch): x[k] is what np.where picks
        return x[k]
    k1 = np.minimum(k + 1, len(x) - 1)
    a, b = x[k], x[k1]
    if x.ndim > 1:
        w = w.reshape(w.shape + (1,) * (x.ndim - 1))
    return np.where(w > 0, a + (b - a) * w, a)


@dataclass(eq=False, slots=True)
class DayPath:
    """One session's steps: stamps[0] is the open, stamps[-1] the close, a step every
    `step_s` seconds between (the last step may be shorter). The arrays are read-only by
    contract: the market caches and replays them."""

    session: date
    stamps: np.ndarray  # POSIX seconds of the steps
    spx: np.ndarray
    vix: np.ndarray
    vix9d: np.ndarray
    vix3m: np.ndarray
    vvix: np.ndarray
    rate: float
    vx_expiries: tuple[date, ...]
    vx: np.ndarray  # (steps, len(vx_expiries))
    step_s: float
    states: list = field(default_factory=list)
    _times: list = field(init=False, repr=False, compare=False, default_factory=list)  # stamps as floats (`weight`)

    def __post_init__(self) -> None:
        self.states = [None] * len(self.stamps)
        self._times = self.stamps.tolist()

    @property
    def open_ts(self) -> float:
        return float(self.stamps[0])

    @property
    def close_ts(self) -> float:
        return float(self.stamps[-1])

    def step_of(self, ts: float) -> int:
        """Index of the step whose state holds at ts inside the session (the close state from
        the close on): what `state_at` reads."""
        if ts >= self.close_ts:
            return len(self.stamps) - 1
        return max(0, int((ts - self.open_ts) // self.step_s))

    def weights(self, ts):
        """(k, w) for instants ts (POSIX seconds, arrays or scalars) inside the session: the
        step at or before each and how far (0 <= w < 1) it is toward the next step. At a step
        and from the close on, w = 0."""
        ts = np.asarray(ts, dtype=float)
        last = len(self.stamps) - 1
        k = np.minimum(np.maximum(np.searchsorted(self.stamps, ts, side="right") - 1, 0), last)  # np.clip's ints
        at = self.stamps[k]
        if ts.ndim and ((ts == at) | (k == last)).all():
            # every instant at a step (0 / span below) or from the close on (k = last): w = 0
            return k, np.zeros(ts.shape)
        nxt = np.minimum(k + 1, last)
        span = self.stamps[nxt] - at
        w = np.where((k < last) & (span > 0), (ts - at) / np.where(span > 0, span, 1.0), 0.0)
        return k, np.clip(w, 0.0, 1.0 - 1e-12)

    def weight(self, ts: float) -> tuple[int, float]:
        """`weights` of one instant (k, w) in the same float arithmetic, without numpy's per-call
        overhead (Python's min / max are np.clip's answer here: w is never nan or -0.0)."""
        stamps = self._times
        last = len(stamps) - 1
        k = min(max(bisect_right(stamps, ts) - 1, 0), last)
        if k >= last:
            return k, 0.0
        span = stamps[k + 1] - stamps[k]
        if not span > 0:
            return k, 0.0
        return k, min(max((ts - stamps[k]) / span, 0.0), 1.0 - 1e-12)

    def state_at_ts(self, ts: float) -> tuple[float, float]:
        """(SPX, VIX) at instant ts, as `state_at` shows them (between steps: `between`'s
        a + (b - a) * w, the same float operations on one value)."""
        k, w = self.weight(ts)
        spx, vix = float(self.spx[k]), float(self.vix[k])
        if w > 0:  # then k < last
            spx += (float(self.spx[k + 1]) - spx) * w
            vix += (float(self.vix[k + 1]) - vix) * w
        return spx, vix

    def next_step_ts(self, ts: float) -> float:
        """The next step stamp after ts (the close at the latest)."""
        k = int(np.searchsorted(self.stamps, ts, side="right"))
        return float(self.stamps[min(k, len(self.stamps) - 1)])

    def state_between(self, k: int, w: float, t: datetime) -> MarketState:
        """The state at instant t, w of the way from step k to step k + 1 (`between`)."""
        kk, ww = np.array([k]), np.array([w])
        vx = between(self.vx, kk, ww)[0] if len(self.vx_expiries) else np.empty(0)
        return MarketState(
            time=t,
            spx=float(between(self.spx, kk, ww)[0]),
            vix=float(between(self.vix, kk, ww)[0]),
            vix9d=float(between(self.vix9d, kk, ww)[0]),
            vix3m=float(between(self.vix3m, kk, ww)[0]),
            vvix=float(between(self.vvix, kk, ww)[0]),
            rate=self.rate,
            vx=tuple(zip(self.vx_expiries, vx.tolist())),
            session=self.session,
        )

    def state(self, k: int) -> MarketState:
        """State of step k (-1 = close), built once on first use."""
        cached = self.states[k]
        if cached is None:
            cached = MarketState(
                time=datetime.fromtimestamp(float(self.stamps[k]), UTC),
                spx=float(self.spx[k]),
                vix=float(self.vix[k]),
                vix9d=float(self.vix9d[k]),
                vix3m=float(self.vix3m[k]),
                vvix=float(self.vvix[k]),
                rate=self.rate,
                vx=tuple(zip(self.vx_expiries, self.vx[k].tolist())),
                session=self.session,
            )
            self.states[k] = cached
        return cached


class _SteppedMarket:
    """Time bookkeeping shared by both sources: which session and step hold at an instant,
    a bounded cache of session paths, and `path` between two instants."""

    source = ""
    first_session: date | None = None
    last_session: date | None = None
    CACHED_SESSIONS = 64

    def __init__(self, calendar: TradingCalendar, seed: int, step_minutes: int):
        if not (isinstance(step_minutes, int) and 1 <= step_minutes <= 60):
            raise ValueError(f"step_minutes must be a whole number from 1 to 60, not {step_minutes!r}")
        self.reason = ""
        self._calendar = calendar
        self._seed = int(seed)
        self._step_s = step_minutes * 60.0
        self._paths: OrderedDict[date, DayPath] = OrderedDict()
        self._utc_days: dict[date, tuple] = {}

    # -- subclasses
    def _generate(self, d: date) -> DayPath:
        raise NotImplementedError

    # -- time
    def _grid(self, d: date) -> np.ndarray:
        open_, close = self._calendar.open_close(d)
        return session_stamps(open_.timestamp(), close.timestamp(), self._step_s)

    def _day_info(self, utc_day: date) -> tuple:
        """(session or None, open ts, close ts, previous session or None) for a UTC date.
        A US session opens and closes within one UTC date, which makes this lookup exact."""
        info = self._utc_days.get(utc_day)
        if info is None:
            cal = self._calendar
            prev = cal.previous_session(utc_day) if utc_day > cal.first else None
            if cal.is_session(utc_day):
                open_, close = cal.open_close(utc_day)
                info = (utc_day, open_.timestamp(), close.timestamp(), prev)
            else:
                info = (None, 0.0, 0.0, prev)
            self._utc_days[utc_day] = info
        return info

    def _locate(self, t: datetime) -> tuple[date, int]:
        """The session whose state holds at t and the step index in it (-1 = its close)."""
        if t.tzinfo is not UTC:
            if t.utcoffset() is None:
                raise ValueError(f"naive datetime {t}: the market needs timezone-aware UTC times")
            t = t.astimezone(UTC)
        ts = t.timestamp()
        session, open_ts, close_ts, prev = self._day_info(t.date())
        if session is not None and ts >= open_ts:
            step = -1 if ts >= close_ts else int((ts - open_ts) // self._step_s)
            return self._clamp(session, step)
        return self._clamp(prev, -1)

    def _clamp(self, d: date | None, step: int) -> tuple[date, int]:
        if self.first_session is not None and (d is None or d < self.first_session):
            return self.first_session, 0
        if self.last_session is not None and d > self.last_session:
            return self.last_session, -1
        return d, step

    def _day(self, d: date) -> DayPath:
        day = self._paths.get(d)
        if day is None:
            day = self._generate(d)
            self._paths[d] = day
            if len(self._paths) > self.CACHED_SESSIONS:
                self._paths.popitem(last=False)
        else:
            self._paths.move_to_end(d)
        return day

    def _check_session(self, d: date) -> None:
        if not self._calendar.is_session(d):
            raise ValueError(f"{d} is not a trading session")
        too_early = self.first_session is not None and d < self.first_session
        too_late = self.last_session is not None and d > self.last_session
        if too_early or too_late:
            raise ValueError(f"{d} is outside the market's sessions {self.first_session}..{self.last_session}")

    # -- public
    @property
    def step_s(self) -> float:
        """Seconds between two steps of a session."""
        return self._step_s

    def next_step_time(self, t: datetime) -> datetime:
        """The next instant after t at which the market shows a new step (the session's next
        step stamp, its close at the latest); t itself when no session is open at t."""
        d, step = self._locate(t)
        if step < 0:
            return t
        day = self._day(d)
        ts = t.timestamp()
        if not day.open_ts <= ts < day.close_ts:
            return t
        return datetime.fromtimestamp(day.next_step_ts(ts), UTC)

    def rate_on(self, d: date) -> float:
        """The rate (annual, continuous) of session d."""
        return self._day(d).rate

    def day_path(self, d: date) -> DayPath:
        """The intraday path of session d that `state_at` and `path` replay (cached)."""
        self._check_session(d)
        return self._day(d)

    def state_at(self, t: datetime) -> MarketState:
        """The market at t: a step's state at the step, moving linearly toward the next step
        between two (`between`), the close's from the close to the next open."""
        d, step = self._locate(t)
        day = self._day(d)
        if step >= 0:
            k, w = day.weight(t.timestamp())
            if w > 0:
                return day.state_between(k, w, t.astimezone(UTC))
        return day.state(step)

    def path(self, t0: datetime, t1: datetime) -> tuple[np.ndarray, np.ndarray]:
        """SPX and VIX at the steps with t0 < step time <= t1 (stops and fills between looks)."""
        spx_parts, vix_parts = [], []
        if t1 > t0:
            ts0, ts1 = t0.timestamp(), t1.timestamp()
            d0, _ = self._locate(t0)
            d1, _ = self._locate(t1)
            for d in self._calendar.sessions_between(d0, d1):
                day = self._day(d)
                inside = (day.stamps > ts0) & (day.stamps <= ts1)
                spx_parts.append(day.spx[inside])
                vix_parts.append(day.vix[inside])
        if not spx_parts:
            return np.empty(0), np.empty(0)
        return np.concatenate(spx_parts), np.concatenate(vix_parts)


    # -- daily closes (indicator warm-up)
    def _last_completed_session(self, t: datetime) -> date | None:
        """The last session whose close is at or before t (today once it has closed), bounded
        by the market's last session; None before the calendar's first session."""
        if t.utcoffset() is None:
            raise ValueError(f"naive datetime {t}: the market needs timezone-aware UTC times")
        last = self._calendar.last_closed_session(t)
        if last is None:
            return None
        if self.last_session is not None and last > self.last_session:
            last = self.last_session
        return last

    def _sessions_ending(self, last: date, n: int) -> list[date]:
        """The last n calendar sessions up to and including `last` (fewer at the calendar's start)."""
        cal = self._calendar
        span = int(n * 1.6) + 10
        while True:
            lo = max(cal.first, last - timedelta(days=span))
            days = cal.sessions_between(lo, last)
            if len(days) >= n or lo == cal.first:
                return days[-n:] if n > 0 else []
            span *= 2


# --------------------------------------------------------------------------- history replay

PATH_CANDIDATES = 64  # random walks drawn per series and day; the one whose shape fits the day's best is kept


def walk_candidates(z: np.ndarray) -> np.ndarray:
    """Random walks from 0, one per row of unit normals z, generated forward (n steps)."""
    x = np.empty((z.shape[0], z.shape[1] + 1))
    x[:, 0] = 0.0
    np.cumsum(z, axis=1, out=x[:, 1:])
    return x


def range_map(x: np.ndarray, end: float, top: float, bottom: float) -> np.ndarray:
    """Map a path from 0 onto the day's shape, piecewise linearly in value: the band between
    its start (0) and its end to the band between 0 and `end`, its excursions above and below
    that band to the day's (up to `top`, down to `bottom`). Monotone (x's end has end's sign),
    so the order of the path's moves and the times of its high and low are its own."""
    e = float(x[-1])
    hi, lo, hi_x, lo_x = max(0.0, end), min(0.0, end), max(0.0, e), min(0.0, e)
    m_hi, m_lo = float(x.max()), float(x.min())
    y = x * (end / e if e != 0 else 0.0)
    up, down = x > hi_x, x < lo_x
    y[up] = hi + (x[up] - hi_x) * ((top - hi) / (m_hi - hi_x) if m_hi > hi_x else 0.0)
    y[down] = lo - (lo_x - x[down]) * ((lo - bottom) / (lo_x - m_lo) if m_lo < lo_x else 0.0)
    inner = slice(1, len(x) - 1)  # a walk with no excursion where the day had one touches once
    if m_hi <= hi_x and hi < top and len(x) > 2:
        y[1 + int(np.argmax(x[inner]))] = top
    if m_lo >= lo_x and lo > bottom and len(x) > 2:
        y[1 + int(np.argmin(x[inner]))] = bottom
    y[0], y[-1] = 0.0, end
    return y


def ohlc_path(z: np.ndarray, ohlc: tuple[float, float, float, float], flip: bool = True) -> np.ndarray:
    """A path of n + 1 points (z: (candidates, n) unit normals) from the open to the close
    whose high is the day's high and whose low the day's low.

    Each candidate is a free random walk in log price, generated forward from the open with no
    knowledge of the day; scaled to the day's range, the one whose close and high land nearest
    the day's (a draw from the random walk conditioned on the day's O/H/L/C, approximately) is
    kept and `range_map` makes them exact. With `flip`, a walk may be mirrored to end on the
    day's side (a mirrored walk is as likely); without (a series driven by another's shocks),
    only walks ending on that side are eligible. The times of the high and low are where the
    walk put them (arcsine-like: near the open and close more often than mid-day), and by
    10:00 the path holds the share of the day's move a random walk holds, about 8 %."""
    o, h, l, c = ohlc
    n = z.shape[1]
    if h <= l or o <= 0 or l <= 0:
        return np.full(n + 1, c)
    end = math.log(c / o)
    top, bottom = max(math.log(h / o), end, 0.0), min(math.log(l / o), end, 0.0)
    x = walk_candidates(z)
    last, hi_x, lo_x = x[:, -1], x.max(axis=1), x.min(axis=1)
    mirrored = False
    if flip and end != 0:
        # a walk mirrored (x * -1.0, exact) ends at -end, peaks at -low and bottoms at -high:
        # its numbers, without mirroring every step of every walk (only the kept one, below)
        mirror = np.sign(last) == -np.sign(end)
        last, hi_x, lo_x = np.where(mirror, -last, last), np.where(mirror, -lo_x, hi_x), np.where(mirror, -hi_x, lo_x)
    scale = (top - bottom) / np.maximum(hi_x - lo_x, 1e-300)
    misfit = (last * scale - end) ** 2 + (hi_x * scale - top) ** 2
    if end != 0:
        misfit = np.where(np.sign(last) == np.sign(end), misfit, np.inf)
    best = int(np.argmin(misfit))
    if flip and end != 0:
        mirrored = bool(mirror[best])
    if not math.isfinite(misfit[best]):  # no walk ends on the day's side: mirror the nearest
        mirrored = not mirrored
    walk = x[best] * -1.0 if mirrored else x[best]
    y = np.clip(o * np.exp(range_map(walk * scale[best], end, top, bottom)), l, h)
    y[0], y[-1] = o, c
    i_high, i_low = int(np.argmax(y)), int(np.argmin(y))
    if 0 < i_high < n:
        y[i_high] = h
    if 0 < i_low < n:
        y[i_low] = l
    return y


def bridge_spx_vix(rng: np.random.Generator, n: int, spx_ohlc, vix_ohlc) -> tuple[np.ndarray, np.ndarray]:
    """Intraday SPX and VIX paths of n steps through their daily OHLC (`ohlc_path`). The VIX's
    walks are driven by SPX_VIX_RHO x the SPX path's own step shocks plus their own, so the VIX
    rises as SPX falls step by step (not by placing its high near the SPX low); each series
    ends at its own close."""
    spx = ohlc_path(rng.standard_normal((PATH_CANDIDATES, n)), spx_ohlc)
    log_spx = np.log(spx)
    steps = log_spx[1:] - log_spx[:-1]  # np.diff
    dev = steps - steps.sum() / n  # np.mean's sum / count
    sd = math.sqrt((dev * dev).sum() / n)  # np.std's arithmetic, the mean summed once
    shocks = dev / sd if sd > 0 else np.zeros(n)
    z_vix = SPX_VIX_RHO * shocks[None, :] + math.sqrt(1.0 - SPX_VIX_RHO**2) * rng.standard_normal((PATH_CANDIDATES, n))
    return spx, ohlc_path(z_vix, vix_ohlc, flip=False)


class HistoryMarket(_SteppedMarket):
    """Replay of daily history (`bot.data.History`) with seeded intraday paths.

    At each close the market shows the file's values: SPX and VIX closes, the VIX futures
    settlements, VIX9D / VIX3M / VVIX closes. During the day the VIX-side values move with the
    bridged spot VIX by fixed elasticities (futures: `vx_beta`, shorter expiries move more).
    """

    source = "history"
    VIX9D_BETA, VIX3M_BETA, VVIX_BETA = 1.2, 0.6, 0.5

    def __init__(self, history: History, calendar: TradingCalendar, seed: int, step_minutes: int = 5):
        super().__init__(calendar, seed, step_minutes)
        span = history.complete_span()
        if span is None:
            raise DataError("history has no session with SPX, VIX and VIX futures rows")
        self._history = history
        self._rows: dict[date, tuple] = {}  # `_row`
        self.first_session, self.last_session = span
        self.reason = f"history covers {self.first_session}..{self.last_session}"

    def settlement(self, d: date) -> float:
        self._check_session(d)
        return float(self._history.spx[self._history.index(d), 3])

    def rate_on(self, d: date) -> float:
        """The 3-month T-bill of session d (continuous; the file's, forward-filled)."""
        return float(self._history.rate[self._history.index(d)])

    def daily_closes(self, symbol: str, sessions: int, t: datetime) -> list[tuple[date, float]]:
        """(session, close) of the last `sessions` sessions completed at t, oldest first: the
        file's closes (the close state of each session), including the rows loaded before the
        replay's first complete session (`HISTORY_LOOKBACK_DAYS`). Sessions with no known
        value (before a series begins) are left out, so fewer may come back. A session counts
        once it has closed: during a session, today is not in the list."""
        column = self._close_column(symbol)
        last = self._last_completed_session(t)
        if last is None or sessions <= 0:
            return []
        h = self._history
        hi = int(np.searchsorted(h.dates, np.datetime64(last), side="right"))
        rows = np.flatnonzero(np.isfinite(column[:hi]))[-sessions:]
        return [(h.dates[i].astype(object), float(column[i])) for i in rows]

    def _close_column(self, symbol: str) -> np.ndarray:
        h = self._history
        if symbol == "SPX":
            return h.spx[:, 3]
        if symbol == "VIX":
            return h.vix[:, 3]
        if symbol == "VIX9D":
            return h.vix9d
        if symbol == "VIX3M":
            return h.vix3m
        if symbol == "VVIX":  # as the market state shows it: modelled from the VIX where unknown
            return np.where(np.isfinite(h.vvix), h.vvix, vvix_from_vix(h.vix[:, 3]))
        raise ValueError(f"no daily closes for {symbol!r} (known: {', '.join(CLOSE_SYMBOLS)})")

    def _generate(self, d: date) -> DayPath:
        return self.session_path(d, self._grid(d))

    def session_path(self, d: date, stamps: np.ndarray) -> DayPath:
        """The path of session d on these step stamps (`session_stamps` of its open and close),
        built afresh and not cached: what `state_at` replays, for a caller (the backtest) that
        knows the session's times already and steps through each session once.

        SPX and VIX: `bridge_spx_vix`. VIX9D, VIX3M, VVIX and each VIX future start from the
        previous session's close, move with spot VIX by their elasticity (`VIX9D_BETA`, ...,
        `vx_beta`) and drift linearly in time by the part of their close-to-close change that
        spot VIX does not explain, so they end at today's close without knowing it early (at
        step k the drift holds k/n of it, what a random walk's conditional mean holds). Where
        the previous close is unknown (a series' first day, a contract new to the list) they
        are today's close rescaled by spot VIX, as before."""
        h = self._history
        row, expiries, settles = self._row(d)
        rng = np.random.default_rng([self._seed, d.toordinal()])
        spx, vix = bridge_spx_vix(rng, len(stamps) - 1, row.spx, row.vix)
        i = h.index(d)
        prev, before_vx = None, {}
        if i > 0:
            prev, *curve = self._row(h.dates[i - 1].astype(object))
            before_vx = dict(zip(*curve))
        share = (stamps - stamps[0]) / max(stamps[-1] - stamps[0], 1.0)
        vix_prev = prev.vix[3] if prev is not None else math.nan
        known_prev = math.isfinite(vix_prev) and vix_prev > 0

        def follow(close: float, before: float, beta) -> np.ndarray:
            """Path of a VIX-side series closing at `close`, `before` at the previous close."""
            beta = np.asarray(beta, dtype=float)
            if not (math.isfinite(before) and before > 0 and known_prev):
                return close * (vix / row.vix[3]) ** beta
            unexplained = math.log(close / before) - beta * math.log(row.vix[3] / vix_prev)
            return before * (vix / vix_prev) ** beta * np.exp(unexplained * share)

        days = np.array([(e - d).days for e in expiries], dtype=float)
        betas = vx_beta(days)
        befores = [before_vx.get(e, math.nan) for e in expiries]
        if expiries and known_prev and all(math.isfinite(b) and b > 0 for b in befores):
            # every future as `follow` moves it, all columns at once: the same operations on each
            # element (scalar logs by `math`, exp and power element-wise on contiguous arrays)
            log_vix = math.log(row.vix[3] / vix_prev)
            unexplained = np.array([math.log(c / b) - beta * log_vix for c, b, beta in zip(settles, befores, betas)])
            vx = np.array(befores)[None, :] * (vix / vix_prev)[:, None] ** betas[None, :] \
                * np.exp(share[:, None] * unexplained[None, :])
        elif expiries:
            vx = np.column_stack([follow(s, b, t) for s, b, t in zip(settles, befores, betas)])
        else:
            vx = np.empty((len(stamps), 0))
        vvix_close = row.vvix if math.isfinite(row.vvix) else float(vvix_from_vix(row.vix[3]))
        vvix_prev = math.nan
        if prev is not None:
            vvix_prev = prev.vvix if math.isfinite(prev.vvix) else float(vvix_from_vix(prev.vix[3]))
        out = DayPath(
            session=d, stamps=stamps, spx=spx, vix=vix,
            vix9d=follow(row.vix9d, prev.vix9d if prev else math.nan, self.VIX9D_BETA),
            vix3m=follow(row.vix3m, prev.vix3m if prev else math.nan, self.VIX3M_BETA),
            vvix=follow(vvix_close, vvix_prev, self.VVIX_BETA),
            rate=row.rate,
            vx_expiries=expiries,
            vx=vx,
            step_s=self._step_s,
        )
        # the close state is the file's, to the last bit
        out.vix9d[-1], out.vix3m[-1], out.vvix[-1] = row.vix9d, row.vix3m, vvix_close
        if expiries:
            out.vx[-1] = settles
        return out

    def _row(self, d: date) -> tuple:
        """(the file's row of session d, its VIX futures' expiries, their settlements), kept:
        each day's path reads its own and the previous session's."""
        got = self._rows.get(d)
        if got is None:
            row = self._history.row(d)
            got = self._rows[d] = (row, *self._vx_curve(d, row))
        return got

    def _vx_curve(self, d: date, row) -> tuple[tuple[date, ...], tuple[float, ...]]:
        """Expiries of vx1, vx2 from the file; vx3.. are the calendar months after vx2 (only
        where the file's listing is consecutive, i.e. not 2004-2007)."""
        expiries = [row.vx1_expiry, row.vx2_expiry]
        if row.vx_consecutive:
            y, m = row.vx2_expiry.year, row.vx2_expiry.month
            for _ in range(len(row.vx) - 2):
                y, m = _next_month(y, m)
                if not _vix_expiry_known(self._calendar, y, m):
                    break
                expiries.append(self._calendar.vix_monthly_expiry(y, m))
        pairs = [(e, v) for e, v in zip(expiries, row.vx) if e > d]  # forward-filled days only
        return tuple(e for e, _ in pairs), tuple(v for _, v in pairs)


# --------------------------------------------------------------------------- synthetic model


@dataclass(frozen=True)
class SyntheticParams:
    """Parameters of the synthetic model; time in trading days unless said otherwise.

    VIX: log-OU reverting to `vix_long_run` with half-life `vix_half_life_days`, diffusion
    `vol_of_vol` (annualized, of log VIX) and upward jumps (`jumps_per_year`, exponential
    log-size with mean `jump_mean`); the reversion target is lowered by the jumps' mean effect
    so that log VIX still averages ln(vix_long_run).
    SPX: log returns with vol `realized_to_implied` * VIX/100 (below 1: the variance risk
    premium that option sellers earn), correlation `rho` with the VIX diffusion, and a drop of
    `spx_per_vix_jump` * (VIX log-jump) on each VIX jump; `drift` (per year) is net of those
    drops, so jumps add crash risk without changing the long-run return.
    `overnight_share` of a day's variance happens between the close and the next open.
    Term structure: VIX futures F(T) = lt + (VIX - lt) e^{-term_speed T} + contango (1 - e^{-4T})
    (T in years); VIX9D / VIX3M from the same reversion around 30 days with a slope
    `index_slope` * (sqrt(days/30) - 1); VVIX from `vvix_from_vix`.
    """

    vix_long_run: float = 18.0
    vix_half_life_days: float = 15.0
    vol_of_vol: float = 1.15
    jumps_per_year: float = 4.0
    jump_mean: float = 0.25
    spx_per_vix_jump: float = 0.12
    rho: float = SPX_VIX_RHO
    realized_to_implied: float = 0.85
    drift: float = 0.06
    overnight_share: float = 0.2
    term_speed: float = 4.0
    contango: float = 1.5
    index_slope: float = 1.5
    rate: float = 0.02


class SyntheticMarket(_SteppedMarket):
    """A seeded stochastic-volatility market with jumps (see `SyntheticParams`).

    Sessions are generated in order from `start` (the first session at or after it, opening
    at spx0 / vix0); asking for a later date generates the sessions in between once. Only the
    closes are kept for good; intraday paths are rebuilt from (seed, date, previous close) when
    they have left the cache. The calendar bounds how far the market can go.
    """

    source = "synthetic"

    def __init__(self, calendar: TradingCalendar, seed: int, start: date, spx0: float = 5000.0,
                 vix0: float = 16.0, step_minutes: int = 5, params: SyntheticParams | None = None):
        super().__init__(calendar, seed, step_minutes)
        if spx0 <= 0 or vix0 <= 0:
            raise ValueError("spx0 and vix0 must be positive")
        self.params = params or SyntheticParams()
        self.first_session = calendar.next_session(start, include=True)
        self.last_session = None
        self._spx0, self._vix0 = float(spx0), float(vix0)
        self._closes: dict[date, tuple[float, float]] = {}
        self._frontier: date | None = None  # last session generated so far
        self._past_closes: dict[date, tuple[float, float]] = {}  # burn-in before first_session
        self.reason = f"synthetic from {self.first_session} (seed {seed})"

    def settlement(self, d: date) -> float:
        self._check_session(d)
        return float(self._day(d).spx[-1])

    def daily_closes(self, symbol: str, sessions: int, t: datetime) -> list[tuple[date, float]]:
        """(session, close) of the last `sessions` sessions completed at t, oldest first.

        From `first_session` on these are the close states of the generated sessions. Before
        it they come from a burn-in (`_burn_in_close`) that runs the model's daily dynamics
        backwards from (spx0, vix0), so the past ends exactly where the market opens and the
        market's own path is unchanged. A session counts once it has closed."""
        if symbol not in CLOSE_SYMBOLS:
            raise ValueError(f"no daily closes for {symbol!r} (known: {', '.join(CLOSE_SYMBOLS)})")
        last = self._last_completed_session(t)
        if last is None or sessions <= 0:
            return []
        out = []
        for d in self._sessions_ending(last, sessions):
            if d >= self.first_session:
                state = self._day(d).state(-1)
                spx, vix = state.spx, state.vix
                derived = {"VIX9D": state.vix9d, "VIX3M": state.vix3m, "VVIX": state.vvix}
            else:
                spx, vix = self._burn_in_close(d)
                derived = None
            if symbol == "SPX":
                value = spx
            elif symbol == "VIX":
                value = vix
            elif derived is not None:
                value = derived[symbol]
            elif symbol == "VVIX":
                value = float(vvix_from_vix(vix))
            else:
                value = float(self._index_level(np.array([vix]), 9.0 if symbol == "VIX9D" else 91.0)[0])
            out.append((d, float(value)))
        return out

    def _burn_in_close(self, d: date) -> tuple[float, float]:
        """(SPX, VIX) close of a session before `first_session`, generated backwards one
        session at a time from the first open (spx0, vix0), which is the previous close.

        Daily steps of the model without jumps: log VIX is a stationary Ornstein-Uhlenbeck
        process, whose time reversal has the same law, so stepping it backwards is a fair draw
        of the past; SPX log returns use the same vol (realized_to_implied x VIX), drift and
        correlation with the VIX shocks as the forward model. Each step's normals are seeded by
        (seed, date), so a close does not depend on how far back anyone asked."""
        past = self._past_closes
        if not past:
            past[self._calendar.previous_session(self.first_session)] = (self._spx0, self._vix0)
        earliest = min(past)
        p = self.params
        kappa = math.log(2.0) / p.vix_half_life_days
        target = math.log(p.vix_long_run)
        nu = p.vol_of_vol / math.sqrt(TRADING_DAYS_PER_YEAR)
        mu = p.drift / TRADING_DAYS_PER_YEAR
        rho_c = math.sqrt(1.0 - p.rho**2)
        while earliest > d:
            before = self._calendar.previous_session(earliest)
            spx, vix = past[earliest]
            z_s, z_i = np.random.default_rng([self._seed, 0xB0B, earliest.toordinal()]).standard_normal(2)
            x = math.log(vix)
            x_before = x + kappa * (target - x) - nu * (p.rho * z_s + rho_c * z_i)
            vix_before = min(max(math.exp(x_before), 5.0), 150.0)
            sig = p.realized_to_implied * vix_before / 100.0 / math.sqrt(TRADING_DAYS_PER_YEAR)
            spx_before = spx * math.exp(-((mu - 0.5 * sig * sig) + sig * z_s))
            past[before] = (spx_before, vix_before)
            earliest = before
        return past[d]

    # -- generation
    def _generate(self, d: date) -> DayPath:
        spx_prev, vix_prev, first = self._start_state(d)
        stamps = self._grid(d)
        spx, vix = self._simulate(d, stamps, spx_prev, vix_prev, first)
        self._closes[d] = (float(spx[-1]), float(vix[-1]))
        if self._frontier is None or d > self._frontier:
            self._frontier = d
        expiries = self._listed_vx(d)
        return DayPath(
            session=d, stamps=stamps, spx=spx, vix=vix,
            vix9d=self._index_level(vix, 9.0), vix3m=self._index_level(vix, 91.0),
            vvix=vvix_from_vix(vix), rate=self.params.rate,
            vx_expiries=expiries, vx=self._futures(vix, d, expiries), step_s=self._step_s,
        )

    def _start_state(self, d: date) -> tuple[float, float, bool]:
        """(SPX, VIX) at the previous close, generating the sessions before d if needed."""
        if d == self.first_session:
            return self._spx0, self._vix0, True
        prev = self._calendar.previous_session(d)
        if prev not in self._closes:
            nxt = self.first_session if self._frontier is None else self._calendar.next_session(self._frontier)
            while nxt <= prev:
                self._day(nxt)
                nxt = self._calendar.next_session(nxt)
        spx, vix = self._closes[prev]
        return spx, vix, False

    def _simulate(self, d: date, stamps: np.ndarray, spx: float, vix: float,
                  first: bool) -> tuple[np.ndarray, np.ndarray]:
        """Euler steps of the model: step 0 is the overnight move to the open (none on the
        first session), then the intraday steps; time in trading days."""
        p = self.params
        intraday = np.diff(stamps) / FULL_SESSION_SECONDS * (1.0 - p.overnight_share)
        dt = np.concatenate(([0.0 if first else p.overnight_share], intraday))
        rng = np.random.default_rng([self._seed, d.toordinal()])
        z = rng.standard_normal((2, len(dt)))
        jump_hit = rng.random(len(dt)) < p.jumps_per_year / TRADING_DAYS_PER_YEAR * dt
        jumps = np.where(jump_hit, rng.exponential(p.jump_mean, len(dt)), 0.0)

        kappa = math.log(2.0) / p.vix_half_life_days
        target = math.log(p.vix_long_run) - p.jumps_per_year / TRADING_DAYS_PER_YEAR * p.jump_mean / kappa
        nu = p.vol_of_vol / math.sqrt(TRADING_DAYS_PER_YEAR)
        mu = (p.drift + p.jumps_per_year * p.jump_mean * p.spx_per_vix_jump) / TRADING_DAYS_PER_YEAR
        rho_c = math.sqrt(1.0 - p.rho**2)
        spx_out, vix_out = np.empty(len(dt)), np.empty(len(dt))
        x = math.log(vix)
        for k, (h, z_s, z_i, jump) in enumerate(zip(dt.tolist(), z[0].tolist(), z[1].tolist(), jumps.tolist())):
            if h > 0:  # the first session opens exactly at spx0 / vix0
                sig = p.realized_to_implied * vix / 100.0 / math.sqrt(TRADING_DAYS_PER_YEAR)
                root_h = math.sqrt(h)
                spx *= math.exp((mu - 0.5 * sig * sig) * h + sig * root_h * z_s - p.spx_per_vix_jump * jump)
                x += kappa * (target - x) * h + nu * root_h * (p.rho * z_s + rho_c * z_i) + jump
                vix = math.exp(x)
            spx_out[k], vix_out[k] = spx, vix
        return spx_out, vix_out

    # -- derived series
    def _index_level(self, vix: np.ndarray, days: float) -> np.ndarray:
        p = self.params
        level = (p.vix_long_run + (vix - p.vix_long_run) * math.exp(-p.term_speed * (days - 30.0) / 365.0)
                 + p.index_slope * (math.sqrt(days / 30.0) - 1.0))
        return np.maximum(level, 0.5 * vix)

    def _futures(self, vix: np.ndarray, d: date, expiries: tuple[date, ...]) -> np.ndarray:
        p = self.params
        T = np.array([(e - d).days for e in expiries], dtype=float) / 365.0
        lt = p.vix_long_run
        return lt + (vix[:, None] - lt) * np.exp(-p.term_speed * T) + p.contango * (1.0 - np.exp(-4.0 * T))

    def _listed_vx(self, d: date) -> tuple[date, ...]:
        """Expiries of the monthly VIX futures listed on d, nearest first (a contract leaves
        the list on its expiry day, as in the history file)."""
        out: list[date] = []
        y, m = d.year, d.month
        while len(out) < MAX_VX and _vix_expiry_known(self._calendar, y, m):
            expiry = self._calendar.vix_monthly_expiry(y, m)
            if expiry > d:
                out.append(expiry)
            y, m = _next_month(y, m)
        if len(out) < 2:
            raise ValueError(f"the trading calendar (to {self._calendar.last}) is too short for VIX futures on {d}")
        return tuple(out)


# --------------------------------------------------------------------------- choosing a source


class NotCoveredError(DataError):
    """The history files are fine but do not span the dates asked for."""


def _load_with_lookback(data_dir: Path, start: date, end: date | None) -> History:
    """History from `HISTORY_LOOKBACK_DAYS` before start (so that `daily_closes` can warm up
    indicators over 300+ sessions); should that longer window hold a bad row the replay does
    not need, the usual window (start - WARMUP_DAYS) is loaded instead."""
    try:
        return load_history(data_dir, start - timedelta(days=max(0, HISTORY_LOOKBACK_DAYS - WARMUP_DAYS)), end)
    except DataError:
        return load_history(data_dir, start, end)


def _history_market(data_dir: Path | None, calendar: TradingCalendar, start: date, end: date | None,
                    seed: int, step_minutes: int) -> HistoryMarket:
    if data_dir is None:
        raise DataError("no data directory given for the history market")
    history = _load_with_lookback(Path(data_dir), start, end)
    sessions = calendar.sessions_between(start, end if end is not None else start)
    last = sessions[-1] if sessions else start  # a window may end on a weekend or holiday
    if not history.covers(start, last, sessions):
        span = history.complete_span()
        near = f"complete data near those dates: {span[0]}..{span[1]}" if span else "no complete data near those dates"
        raise NotCoveredError(f"history in {data_dir} does not cover {start}..{last} ({near})")
    model = HistoryMarket(history, calendar, seed, step_minutes)
    model.reason = f"history covers {start}..{end}" if end else f"history from {start} (data to {model.last_session})"
    return model


def build_market(source: str, data_dir: Path | None, calendar: TradingCalendar, start: date,
                 end: date | None, seed: int, step_minutes: int = 5) -> MarketModel:
    """The market for a run: "history" (DataError when the files are missing or do not cover
    start..end), "synthetic", or "auto" (history when `data_dir` holds the files and they cover
    the dates, synthetic otherwise). `model.reason` says which and why, in one line.

    With end None, history must cover `start`; the replay then runs to the end of the data.
    A malformed file is an error even under "auto": a broken download should be fixed, not
    silently replaced by a model.
    """
    if source not in SOURCES:
        raise ValueError(f"market source must be one of {', '.join(SOURCES)}, not {source!r}")
    if source == "history":
        return _history_market(data_dir, calendar, start, end, seed, step_minutes)
    if source == "auto":
        if not has_required_files(data_dir):
            return _synthetic(calendar, seed, start, step_minutes,
                              f"no data files in {data_dir}" if data_dir is not None else "no data directory given")
        try:
            return _history_market(data_dir, calendar, start, end, seed, step_minutes)
        except NotCoveredError as exc:
            return _synthetic(calendar, seed, start, step_minutes, str(exc))
    return _synthetic(calendar, seed, start, step_minutes, "synthetic model requested")


def _synthetic(calendar: TradingCalendar, seed: int, start: date, step_minutes: int, reason: str) -> SyntheticMarket:
    model = SyntheticMarket(calendar, seed, start, step_minutes=step_minutes)
    model.reason = reason
    return model
