"""RSI and MACD on VIX bars, vectorized (history, backtests) and streaming (live).

Pure code: no clock reads, no logging, no I/O. ALVH.md section 4 uses these signals on VIX
daily closes plus today's live value as the *forming* bar.

Definitions
-----------
Wilder RSI(n), default n = 14, on closes c_0, c_1, ...:

* changes d_t = c_t - c_{t-1}; gain g_t = max(d_t, 0), loss l_t = max(-d_t, 0);
* the first average gain/loss is the simple mean of the first n changes (d_1 .. d_n), so the
  first RSI belongs to close c_n (the (n+1)-th close);
* afterwards avg_t = avg_{t-1} + (x_t - avg_{t-1}) / n  (Wilder smoothing = EMA, alpha = 1/n);
* RSI = 100 - 100 / (1 + avg_gain / avg_loss); 100 when avg_loss == 0 (and avg_gain > 0),
  50 when both are 0 (a flat series);
* undefined before n changes exist: NaN in the vectorized result, None when streaming.

MACD(fast=12, slow=26, signal=9):

* EMA with alpha = 2 / (span + 1), seeded with the first close: e_0 = c_0,
  e_t = (1 - alpha) e_{t-1} + alpha c_t (pandas ``ewm(span=span, adjust=False)``);
* macd = EMA_fast - EMA_slow (so macd_0 = 0);
* signal = EMA_signal of macd, seeded with the first macd value;
* histogram = macd - signal.

MACD is thus defined from the first close on, but the seed's weight only decays as
(1 - alpha)^k (span 26: 7 % after 34 bars, 1e-8 after ~250); warm up with ample history.
:class:`VixSignals` reports MACD values as None until ``min_macd_bars`` (default
slow + signal - 1 = 34, the first bar at which a classical MACD has a signal line) bars exist;
the raw values are still tracked from bar 0, so later numbers equal :func:`macd_series`.

Streaming
---------
:class:`StreamingRSI`, :class:`StreamingMACD` and the combined :class:`VixSignals` keep O(1)
state (a few floats, no lists). ``commit(close)`` adds a completed bar; ``peek(value)``
evaluates a forming bar (today's live VIX) against the committed state WITHOUT changing it, so
live ticks re-evaluate the forming bar and the daily close then commits it. ``peek(x)`` gives
exactly what ``commit(x)`` would give on a copy; a commit over a series gives the numbers of
:func:`rsi_series` / :func:`macd_series` (to ~1e-12, floating-point order of operations only).

Typical live use::

    sig = VixSignals(); sig.warm_up(daily_closes)        # history up to yesterday's close
    now = sig.peek(live_vix)                              # every tick: the forming bar
    if activated(now): ...                                 # MACD > signal and VIX > 25 (state)
    if crossed_above(sig.last.rsi, now.rsi, 70.0): ...     # RSI crossed 70 vs yesterday's close
    sig.commit(official_close)                             # once per day, after the close

Inputs must be finite numbers (ValueError otherwise): a NaN would silently poison the state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "SignalValues",
    "StreamingMACD",
    "StreamingRSI",
    "VixSignals",
    "activated",
    "crossed_above",
    "macd_series",
    "rsi_series",
]

_isfinite = math.isfinite


# --------------------------------------------------------------------------- validation


def _check_period(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_macd_periods(fast: int, slow: int, signal: int) -> tuple[int, int, int]:
    fast = _check_period("fast", fast)
    slow = _check_period("slow", slow)
    signal = _check_period("signal", signal)
    if fast >= slow:
        raise ValueError(f"fast span must be shorter than slow span, got fast={fast} slow={slow}")
    return fast, slow, signal


def _as_closes(closes) -> np.ndarray:
    c = np.asarray(closes, dtype=float)
    if c.ndim != 1:
        raise ValueError(f"closes must be one-dimensional, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("closes must all be finite (no NaN / inf)")
    return c


def _finite(x) -> float:
    x = float(x)
    if not _isfinite(x):
        raise ValueError(f"value must be finite, got {x!r}")
    return x


def _rsi_from_averages(avg_gain: float, avg_loss: float) -> float:
    if avg_loss == 0.0:
        return 100.0 if avg_gain > 0.0 else 50.0
    return 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)


# --------------------------------------------------------------------------- vectorized


def _wilder(x: np.ndarray, n: int) -> np.ndarray:
    """Wilder average of x (len >= n): result[k] is the average after x[0..n-1+k]."""
    seeded = np.empty(len(x) - n + 1)
    seeded[0] = x[:n].mean()
    seeded[1:] = x[n:]
    return pd.Series(seeded).ewm(alpha=1.0 / n, adjust=False).mean().to_numpy()


def rsi_series(closes, n: int = 14) -> np.ndarray:
    """Wilder RSI(n) of closes (array-like or Series), aligned with them; NaN for the first n."""
    n = _check_period("n", n)
    c = _as_closes(closes)
    out = np.full(len(c), np.nan)
    if len(c) <= n:
        return out
    d = np.diff(c)
    avg_gain = _wilder(np.where(d > 0.0, d, 0.0), n)
    avg_loss = _wilder(np.where(d < 0.0, -d, 0.0), n)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    rsi = np.where(avg_loss == 0.0, np.where(avg_gain > 0.0, 100.0, 50.0), rsi)
    out[n:] = rsi
    return out


def macd_series(
    closes, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(macd, signal, histogram) arrays aligned with closes; defined from the first close."""
    fast, slow, signal = _check_macd_periods(fast, slow, signal)
    s = pd.Series(_as_closes(closes))
    macd = s.ewm(span=fast, adjust=False).mean() - s.ewm(span=slow, adjust=False).mean()
    sig = macd.ewm(span=signal, adjust=False).mean()
    macd_a = macd.to_numpy()
    sig_a = sig.to_numpy()
    return macd_a, sig_a, macd_a - sig_a


# --------------------------------------------------------------------------- streaming


class StreamingRSI:
    """Wilder RSI(n), one close at a time, O(1) state.

    ``commit``/``peek`` return the RSI of that bar (None until n changes exist).
    State: the last close, the number of changes seen, and either the running sums of gains
    and losses (while seeding, fewer than n changes) or the Wilder averages (afterwards).
    """

    __slots__ = ("n", "_prev", "_count", "_gain", "_loss", "_value")

    def __init__(self, n: int = 14) -> None:
        self.n = _check_period("n", n)
        self._prev: float | None = None
        self._count = 0  # changes seen
        self._gain = 0.0  # sum while seeding, then average
        self._loss = 0.0
        self._value: float | None = None

    def _step(self, close: float) -> tuple[int, float, float, float | None]:
        """(count, gain, loss, rsi) after adding close; close must be finite, _prev set."""
        d = close - self._prev
        g = d if d > 0.0 else 0.0
        lo = -d if d < 0.0 else 0.0
        n = self.n
        k = self._count + 1
        if k < n:
            return k, self._gain + g, self._loss + lo, None
        if k == n:
            gain = (self._gain + g) / n
            loss = (self._loss + lo) / n
        else:
            gain = self._gain + (g - self._gain) / n
            loss = self._loss + (lo - self._loss) / n
        if loss == 0.0:
            return k, gain, loss, (100.0 if gain > 0.0 else 50.0)
        return k, gain, loss, 100.0 - 100.0 / (1.0 + gain / loss)

    def commit(self, close: float) -> float | None:
        close = float(close)
        if not _isfinite(close):
            raise ValueError(f"close must be finite, got {close!r}")
        if self._prev is not None:
            self._count, self._gain, self._loss, self._value = self._step(close)
        self._prev = close
        return self._value

    def peek(self, value: float) -> float | None:
        value = float(value)
        if not _isfinite(value):
            raise ValueError(f"value must be finite, got {value!r}")
        if self._prev is None:
            return None
        return self._step(value)[3]

    @property
    def value(self) -> float | None:
        """RSI of the last committed bar (None while warming up)."""
        return self._value

    @property
    def bars(self) -> int:
        """Committed closes."""
        return 0 if self._prev is None else self._count + 1

    def copy(self) -> StreamingRSI:
        new = StreamingRSI.__new__(StreamingRSI)
        for name in StreamingRSI.__slots__:
            setattr(new, name, getattr(self, name))
        return new


class StreamingMACD:
    """MACD(fast, slow, signal) with pandas ``ewm(adjust=False)`` semantics, O(1) state.

    ``commit``/``peek`` return (macd, signal, histogram) of that bar. The first close seeds both
    EMAs (macd 0), the first macd seeds the signal EMA.
    """

    __slots__ = ("fast", "slow", "signal", "_af", "_as", "_ag", "_bf", "_bs", "_bg",
                 "_count", "_ema_fast", "_ema_slow", "_sig", "_value")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        self.fast, self.slow, self.signal = _check_macd_periods(fast, slow, signal)
        self._af = 2.0 / (self.fast + 1)
        self._as = 2.0 / (self.slow + 1)
        self._ag = 2.0 / (self.signal + 1)
        self._bf = 1.0 - self._af
        self._bs = 1.0 - self._as
        self._bg = 1.0 - self._ag
        self._count = 0
        self._ema_fast = 0.0
        self._ema_slow = 0.0
        self._sig = 0.0
        self._value: tuple[float, float, float] | None = None

    def _step(self, close: float) -> tuple[float, float, float, float, float]:
        """(ema_fast, ema_slow, macd, signal, histogram) after adding close (count > 0)."""
        ef = self._bf * self._ema_fast + self._af * close
        es = self._bs * self._ema_slow + self._as * close
        m = ef - es
        s = self._bg * self._sig + self._ag * m
        return ef, es, m, s, m - s

    def commit(self, close: float) -> tuple[float, float, float]:
        close = float(close)
        if not _isfinite(close):
            raise ValueError(f"close must be finite, got {close!r}")
        if self._count:
            ef, es, m, s, h = self._step(close)
        else:
            ef = es = close
            m = s = h = 0.0
        self._ema_fast, self._ema_slow, self._sig = ef, es, s
        self._count += 1
        self._value = (m, s, h)
        return self._value

    def peek(self, value: float) -> tuple[float, float, float]:
        value = float(value)
        if not _isfinite(value):
            raise ValueError(f"value must be finite, got {value!r}")
        if not self._count:
            return (0.0, 0.0, 0.0)
        _, _, m, s, h = self._step(value)
        return (m, s, h)

    @property
    def value(self) -> tuple[float, float, float] | None:
        """(macd, signal, histogram) of the last committed bar; None before any bar."""
        return self._value

    @property
    def bars(self) -> int:
        return self._count

    def copy(self) -> StreamingMACD:
        new = StreamingMACD.__new__(StreamingMACD)
        for name in StreamingMACD.__slots__:
            setattr(new, name, getattr(self, name))
        return new


@dataclass(frozen=True, slots=True)
class SignalValues:
    """Indicator values of one bar (committed or forming). None while warming up.

    ``value`` is the bar's VIX value (close, or live value for a forming bar); None only for
    the empty ``VixSignals().last``.
    """

    rsi: float | None
    macd: float | None
    signal: float | None
    histogram: float | None
    value: float | None


_EMPTY = SignalValues(None, None, None, None, None)


class VixSignals:
    """RSI + MACD on VIX bars: committed daily closes plus an optional forming bar.

    ``min_macd_bars``: MACD/signal/histogram are reported as None until this many bars
    (committed ones plus, for ``peek``, the forming one) exist; default slow + signal - 1.
    Set it to 1 to see the raw seeded values from the first bar.
    """

    __slots__ = ("_rsi", "_macd", "min_macd_bars", "_last")

    def __init__(
        self,
        rsi_n: int = 14,
        fast: int = 12,
        slow: int = 26,
        signal: int = 9,
        *,
        min_macd_bars: int | None = None,
    ) -> None:
        self._rsi = StreamingRSI(rsi_n)
        self._macd = StreamingMACD(fast, slow, signal)
        if min_macd_bars is None:
            min_macd_bars = self._macd.slow + self._macd.signal - 1
        self.min_macd_bars = _check_period("min_macd_bars", min_macd_bars)
        self._last = _EMPTY

    def commit(self, close: float) -> SignalValues:
        """Add a completed bar; returns (and stores as ``last``) its values."""
        close = _finite(close)
        r = self._rsi.commit(close)
        m, s, h = self._macd.commit(close)
        if self._macd._count < self.min_macd_bars:
            m = s = h = None
        self._last = SignalValues(r, m, s, h, close)
        return self._last

    def peek(self, value: float) -> SignalValues:
        """Values of a forming bar at ``value``; the committed state is not touched."""
        value = float(value)
        return SignalValues(*self._peek(value), value)

    def peek_many(self, values: Iterable[float]) -> list[tuple[float | None, float | None, float | None, float | None]]:
        """(rsi, macd, signal, histogram) of a forming bar at each value: ``peek``'s numbers
        without a ``SignalValues`` per value (a backtest day asks for all its instants at once)."""
        one = self._peek
        return [one(float(v)) for v in values]

    def _peek(self, value: float) -> tuple[float | None, float | None, float | None, float | None]:
        if not _isfinite(value):
            raise ValueError(f"value must be finite, got {value!r}")
        rsi = self._rsi
        r = rsi._step(value)[3] if rsi._prev is not None else None
        macd = self._macd
        if macd._count + 1 < self.min_macd_bars:
            return r, None, None, None
        if macd._count:
            _, _, m, s, h = macd._step(value)
        else:
            m = s = h = 0.0
        return r, m, s, h

    def warm_up(self, closes: Iterable[float]) -> SignalValues:
        """Commit many closes in order; returns the values of the last one."""
        commit = self.commit
        for c in closes:
            commit(c)
        return self._last

    @property
    def last(self) -> SignalValues:
        """Values of the last committed bar (all None before any commit)."""
        return self._last

    @property
    def bars(self) -> int:
        """Committed bars."""
        return self._macd._count

    def copy(self) -> VixSignals:
        new = VixSignals.__new__(VixSignals)
        new._rsi = self._rsi.copy()
        new._macd = self._macd.copy()
        new.min_macd_bars = self.min_macd_bars
        new._last = self._last
        return new


# --------------------------------------------------------------------------- rules


def activated(values: SignalValues, vix: float | None = None, threshold: float = 25.0) -> bool:
    """ALVH activation state: MACD line > signal line and VIX > threshold.

    ``vix`` defaults to ``values.value`` (the bar's own VIX). False while MACD is warming up.
    """
    if vix is None:
        vix = values.value
    m, s = values.macd, values.signal
    return m is not None and s is not None and vix is not None and m > s and vix > threshold


def crossed_above(prev: float | None, current: float | None, level: float = 70.0) -> bool:
    """prev <= level < current; False if either is None/NaN.

    RSI crossing 70: ``crossed_above(sig.last.rsi, sig.peek(live).rsi)``. MACD line crossing
    its signal: ``crossed_above(prev.histogram, cur.histogram, 0.0)``.
    """
    if prev is None or current is None:
        return False
    return prev <= level < current
