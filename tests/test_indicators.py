"""bot.indicators: Wilder RSI and MACD, vectorized vs streaming, and the ALVH.md section 4 facts."""

from __future__ import annotations

import copy
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import data_dir

from bot.indicators import (
    SignalValues,
    StreamingMACD,
    StreamingRSI,
    VixSignals,
    activated,
    crossed_above,
    macd_series,
    rsi_series,
)

# --------------------------------------------------------------------------- helpers


def _close(a, b, tol=1e-9):
    """Equal to tol, scaled by magnitude (NaN == NaN, None == NaN)."""
    a = np.nan if a is None else a
    b = np.nan if b is None else b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def _stream_rsi(closes, n=14):
    s = StreamingRSI(n)
    return [s.commit(c) for c in closes]


def _stream_macd(closes, fast=12, slow=26, signal=9):
    s = StreamingMACD(fast, slow, signal)
    return [s.commit(c) for c in closes]


def _assert_stream_equals_vectorized(closes, n=14, fast=12, slow=26, signal=9, tol=1e-9):
    scale = max(1.0, max(abs(c) for c in closes))
    want_rsi = rsi_series(closes, n)
    for i, (got, want) in enumerate(zip(_stream_rsi(closes, n), want_rsi)):
        assert (got is None) == math.isnan(want), i
        assert _close(got, want, tol), (i, got, want)
    m, s, h = macd_series(closes, fast, slow, signal)
    for i, (gm, gs, gh) in enumerate(_stream_macd(closes, fast, slow, signal)):
        # MACD is a difference of EMAs of the closes: compare at the closes' scale.
        assert abs(gm - m[i]) <= tol * scale, (i, gm, m[i])
        assert abs(gs - s[i]) <= tol * scale, (i, gs, s[i])
        assert abs(gh - h[i]) <= tol * scale, (i, gh, h[i])


# --------------------------------------------------------------------------- hand-checked RSI

# The classic 14-period example (StockCharts ChartSchool "RSI" worksheet, closes of QQQ).
# StockCharts' printed table shows 70.53, 66.32, ... because its spreadsheet rounds the
# intermediate averages; exact arithmetic (TA-Lib and other independent implementations)
# gives the values below.
TEXTBOOK_CLOSES = [
    44.34, 44.09, 44.15, 43.61, 44.33, 44.83, 45.10, 45.42, 45.84, 46.08, 45.89, 46.03,
    45.61, 46.28, 46.28, 46.00, 46.03, 46.41, 46.22, 45.64, 46.21, 46.25, 45.71, 46.45,
    45.78, 45.35, 44.03, 44.18, 44.22, 44.57, 43.42, 42.66, 43.13,
]
TEXTBOOK_RSI = [
    70.46, 66.25, 66.48, 69.35, 66.29, 57.92, 62.88, 63.21, 56.01, 62.34, 54.67, 50.39,
    40.02, 41.49, 41.90, 45.50, 37.32, 33.09, 37.79,
]


def test_textbook_rsi_example():
    got = rsi_series(TEXTBOOK_CLOSES, 14)
    assert np.isnan(got[:14]).all()
    assert np.round(got[14:], 2).tolist() == TEXTBOOK_RSI
    stream = _stream_rsi(TEXTBOOK_CLOSES, 14)
    assert stream[:14] == [None] * 14
    assert [round(x, 2) for x in stream[14:]] == TEXTBOOK_RSI


def test_rsi_small_series_by_hand():
    # n = 2, changes +1, -1, +2, -1.
    # seed: gain (1+0)/2 = 0.5, loss (0+1)/2 = 0.5 -> 50
    # then gain 0.5 + (2-0.5)/2 = 1.25, loss 0.5 + (0-0.5)/2 = 0.25 -> RS 5 -> 100 - 100/6
    # then gain 1.25 + (0-1.25)/2 = 0.625, loss 0.25 + (1-0.25)/2 = 0.625 -> 50
    closes = [1.0, 2.0, 1.0, 3.0, 2.0]
    want = [None, None, 50.0, 100.0 - 100.0 / 6.0, 50.0]
    for got in (_stream_rsi(closes, 2), rsi_series(closes, 2)):
        assert all(_close(a, b, 1e-12) for a, b in zip(got, want)), got


def test_rsi_constant_and_monotone_series():
    n = 14
    flat = [20.0] * 40
    assert np.isnan(rsi_series(flat, n)[:n]).all()
    assert (rsi_series(flat, n)[n:] == 50.0).all()
    assert all(x == 50.0 for x in _stream_rsi(flat, n)[n:])

    up = [10.0 + i for i in range(40)]
    assert (rsi_series(up, n)[n:] == 100.0).all()
    assert all(x == 100.0 for x in _stream_rsi(up, n)[n:])

    down = [100.0 - i for i in range(40)]
    assert (rsi_series(down, n)[n:] == 0.0).all()
    assert all(x == 0.0 for x in _stream_rsi(down, n)[n:])

    # flat, then a single rise: losses stay 0 -> 100; then a fall: strictly between 0 and 100
    rsi = rsi_series(flat + [21.0, 20.5], n)
    assert rsi[40] == 100.0 and 0.0 < rsi[41] < 100.0


def test_rsi_warm_up_needs_n_changes():
    for n in (1, 2, 5, 14):
        closes = [float(10 + (i % 3)) for i in range(n + 3)]
        vec = rsi_series(closes, n)
        assert np.isnan(vec[:n]).all() and not np.isnan(vec[n:]).any()
        s = StreamingRSI(n)
        for i, c in enumerate(closes):
            assert (s.peek(c) is None) == (i < n)
            assert (s.commit(c) is None) == (i < n)
            assert s.bars == i + 1
    assert np.isnan(rsi_series([1.0] * 14, 14)).all()
    assert len(rsi_series([], 14)) == 0


# --------------------------------------------------------------------------- hand-checked MACD


def test_macd_small_series_by_hand():
    # spans 2 / 3 / 2 -> alphas 2/3, 1/2, 2/3; exact fractions:
    # ema_fast 1, 5/3, 23/9; ema_slow 1, 3/2, 9/4; macd 0, 1/6, 11/36
    # signal 0, 1/9, 13/54; histogram 0, 1/18, 7/108
    m, s, h = macd_series([1.0, 2.0, 3.0], fast=2, slow=3, signal=2)
    F = Fraction
    for got, want in (
        (m, [0, F(1, 6), F(11, 36)]),
        (s, [0, F(1, 9), F(13, 54)]),
        (h, [0, F(1, 18), F(7, 108)]),
    ):
        assert got == pytest.approx([float(x) for x in want], abs=1e-15)
    stream = _stream_macd([1.0, 2.0, 3.0], 2, 3, 2)
    assert [x[0] for x in stream] == pytest.approx(m.tolist(), abs=1e-15)
    assert [x[1] for x in stream] == pytest.approx(s.tolist(), abs=1e-15)
    assert [x[2] for x in stream] == pytest.approx(h.tolist(), abs=1e-15)


def test_macd_matches_pandas_definition_and_constant_series():
    rng = np.random.default_rng(7)
    closes = pd.Series(15.0 + rng.standard_normal(300).cumsum().clip(-10, None))
    m, s, h = macd_series(closes)
    want_m = closes.ewm(span=12, adjust=False).mean() - closes.ewm(span=26, adjust=False).mean()
    want_s = want_m.ewm(span=9, adjust=False).mean()
    np.testing.assert_allclose(m, want_m.to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(s, want_s.to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(h, m - s, rtol=0, atol=0)
    assert m[0] == 0.0 and s[0] == 0.0

    m, s, h = macd_series([18.5] * 50)
    assert (m == 0.0).all() and (s == 0.0).all() and (h == 0.0).all()
    m, s, h = macd_series([10.0 + i for i in range(60)])
    assert (m[1:] > 0).all() and (h[1:] > 0).all()  # rising: MACD positive and above signal


def test_invalid_inputs_raise():
    with pytest.raises(ValueError):
        rsi_series([1.0, float("nan"), 2.0])
    with pytest.raises(ValueError):
        macd_series([1.0, float("inf")])
    with pytest.raises(ValueError):
        rsi_series([1.0, 2.0], n=0)
    with pytest.raises(ValueError):
        macd_series([1.0, 2.0], fast=26, slow=12)
    with pytest.raises(ValueError):
        StreamingRSI(0)
    sig = VixSignals()
    sig.warm_up([20.0, 21.0])
    before = (sig.bars, sig.last)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            sig.commit(bad)
        with pytest.raises(ValueError):
            sig.peek(bad)
    assert (sig.bars, sig.last) == before


# --------------------------------------------------------------------------- streaming vs vectorized

closes_strategy = st.lists(
    st.floats(min_value=0.5, max_value=500.0, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=150,
)


@settings(max_examples=200, deadline=None)
@given(closes=closes_strategy)
def test_streaming_equals_vectorized_default_periods(closes):
    _assert_stream_equals_vectorized(closes)


@settings(max_examples=200, deadline=None)
@given(
    closes=closes_strategy,
    n=st.integers(1, 30),
    fast=st.integers(1, 20),
    extra=st.integers(1, 20),
    signal=st.integers(1, 15),
)
def test_streaming_equals_vectorized_any_periods(closes, n, fast, extra, signal):
    _assert_stream_equals_vectorized(closes, n, fast, fast + extra, signal)


@settings(max_examples=200, deadline=None)
@given(
    closes=st.lists(st.floats(0.5, 500.0), min_size=0, max_size=80),
    value=st.floats(0.5, 500.0),
    min_macd_bars=st.integers(1, 40),
)
def test_peek_equals_commit_on_copy_and_does_not_mutate(closes, value, min_macd_bars):
    sig = VixSignals(min_macd_bars=min_macd_bars)
    sig.warm_up(closes)
    snapshot = copy.deepcopy(sig)
    state = lambda v: (  # noqa: E731
        v.bars, v.last,
        tuple(getattr(v._rsi, k) for k in StreamingRSI.__slots__),
        tuple(getattr(v._macd, k) for k in StreamingMACD.__slots__),
    )
    peeked = [sig.peek(value), sig.peek(value * 1.5), sig.peek(value)]
    assert state(sig) == state(snapshot)  # nothing changed, bit for bit
    assert peeked[0] == peeked[2]

    other = sig.copy()
    committed = other.commit(value)
    assert peeked[0] == committed  # exact: same arithmetic
    assert other.last == committed and other.bars == sig.bars + 1
    assert state(sig) == state(snapshot)  # copy() is independent

    for cls, args in ((StreamingRSI, (14,)), (StreamingMACD, (12, 26, 9))):
        s = cls(*args)
        for c in closes:
            s.commit(c)
        before = s.value
        p = s.peek(value)
        assert s.value == before and s.bars == len(closes)
        t = s.copy()
        assert t.commit(value) == p and t.value == p
        assert s.value == before and s.bars == len(closes)


@settings(max_examples=200, deadline=None)
@given(
    closes=st.lists(st.floats(0.5, 500.0), min_size=0, max_size=60),
    values=st.lists(st.floats(0.5, 500.0), min_size=0, max_size=12),
    min_macd_bars=st.integers(1, 40),
)
def test_peek_many_is_peek_of_each_value(closes, values, min_macd_bars):
    """The batch of a backtest day is `peek` value by value (warming up included)."""
    sig = VixSignals(min_macd_bars=min_macd_bars)
    sig.warm_up(closes)
    want = [(p.rsi, p.macd, p.signal, p.histogram) for p in map(sig.peek, values)]
    assert sig.peek_many(values) == want
    assert sig.peek_many(np.array(values)) == want
    with pytest.raises(ValueError):
        sig.peek_many([15.0, math.nan])


def test_vix_signals_warm_up_semantics():
    closes = [15.0 + 0.3 * math.sin(i) + 0.01 * i for i in range(60)]
    sig = VixSignals()
    assert sig.last == SignalValues(None, None, None, None, None) and sig.bars == 0
    assert sig.peek(15.0) == SignalValues(None, None, None, None, 15.0)

    m, s, h = macd_series(closes)
    r = rsi_series(closes)
    for i, c in enumerate(closes):
        p = sig.peek(c)
        v = sig.commit(c)
        assert p == v and sig.last == v and sig.bars == i + 1 and v.value == c
        assert (v.rsi is None) == (i < 14)  # 15 closes = 14 changes
        assert (v.macd is None) == (i < 33)  # slow + signal - 1 = 34 bars
        assert (v.signal is None) == (v.histogram is None) == (v.macd is None)
        if v.rsi is not None:
            assert _close(v.rsi, r[i])
        if v.macd is not None:
            assert _close(v.macd, m[i]) and _close(v.signal, s[i]) and _close(v.histogram, h[i])
            assert v.histogram == v.macd - v.signal

    again = VixSignals()
    assert again.warm_up(closes) == sig.last and again.bars == len(closes)
    raw = VixSignals(min_macd_bars=1)
    assert raw.commit(closes[0]) == SignalValues(None, 0.0, 0.0, 0.0, closes[0])


def test_activated_and_crossed_above():
    on = SignalValues(60.0, 1.0, 0.5, 0.5, 30.0)
    assert activated(on)  # vix defaults to the bar's own value
    assert activated(on, 25.01) and not activated(on, 25.0)  # strictly above
    assert not activated(on, 30.0, threshold=30.0)
    assert not activated(SignalValues(60.0, 0.5, 0.5, 0.0, 30.0))  # macd == signal: off
    assert not activated(SignalValues(60.0, 0.4, 0.5, -0.1, 30.0))
    assert not activated(SignalValues(60.0, None, None, None, 30.0))
    assert not activated(SignalValues(None, None, None, None, None))

    assert crossed_above(59.6, 76.1)
    assert crossed_above(70.0, 70.1)  # from exactly the level
    assert not crossed_above(70.1, 76.0)  # already above
    assert not crossed_above(69.0, 70.0)  # reaching the level is not crossing it
    assert not crossed_above(None, 76.0) and not crossed_above(59.6, None)
    assert not crossed_above(float("nan"), 76.0)
    assert crossed_above(-0.01, 0.01, 0.0)  # MACD line crossing its signal: histogram 0


# --------------------------------------------------------------------------- real VIX history


@pytest.fixture(scope="module")
def vix_daily() -> pd.DataFrame:
    d = data_dir()
    path = None if d is None else Path(d) / "vix_daily.csv"
    if path is None or not path.exists():
        pytest.skip(
            "vix_daily.csv not found: set SPX_BOT_DATA or place ../shared/data beside the checkout"
        )
    df = pd.read_csv(path, usecols=["date", "close"])
    assert df["date"].is_monotonic_increasing and df["close"].notna().all()
    return df


@pytest.fixture(scope="module")
def vix_signals(vix_daily) -> pd.DataFrame:
    """Per session, streaming from 1990-01-02: the values committed with the day's close,
    and the forming-bar values peeked at the same close just before committing it."""
    sig = VixSignals()
    rows = []
    for date, close in zip(vix_daily["date"], vix_daily["close"]):
        peeked = sig.peek(close)
        v = sig.commit(close)
        assert peeked == v, date
        rows.append((date, close, v.rsi, v.macd, v.signal, v.histogram, activated(v)))
    cols = ["date", "close", "rsi", "macd", "signal", "histogram", "active"]
    return pd.DataFrame(rows, columns=cols).set_index("date")


def test_streaming_equals_vectorized_on_vix_history(vix_daily, vix_signals):
    closes = vix_daily["close"].to_numpy()
    assert len(closes) > 9000
    r = rsi_series(closes)
    m, s, h = macd_series(closes)
    got = vix_signals
    np.testing.assert_allclose(got["rsi"].to_numpy(float)[14:], r[14:], rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["macd"].to_numpy(float)[33:], m[33:], rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["signal"].to_numpy(float)[33:], s[33:], rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["histogram"].to_numpy(float)[33:], h[33:], rtol=0, atol=1e-9)
    _assert_stream_equals_vectorized(closes.tolist())


@pytest.mark.parametrize(
    "first, last, before, after",
    [
        ("2020-02-24", "2020-03-23", "2020-02-21", "2020-03-24"),
        ("2018-02-05", "2018-02-12", "2018-02-02", "2018-02-13"),
    ],
)
def test_alvh_activation_windows(vix_signals, first, last, before, after):
    """ALVH.md section 4: activation (MACD > signal and VIX > 25, computed with the day's
    close) holds on every session of the window and not on the sessions around it."""
    df = vix_signals
    window = df.loc[first:last]
    assert len(window) >= 6 and window["active"].all(), window[~window["active"]]
    assert not df.loc[before, "active"] and not df.loc[after, "active"]
    # The neighbours are the adjacent sessions of the file.
    idx = df.index.get_loc(first)
    assert df.index[idx - 1] == before
    assert df.index[df.index.get_loc(last) + 1] == after


def test_alvh_activation_window_edges_measured(vix_signals):
    """Why each window starts and ends (values measured on Cboe daily closes)."""
    df = vix_signals
    # 2020-02-21: MACD already above its signal but VIX 17.08 < 25; 02-24: VIX 25.03.
    assert df.loc["2020-02-21", "macd"] > df.loc["2020-02-21", "signal"]
    assert df.loc["2020-02-21", "close"] == 17.08 and df.loc["2020-02-24", "close"] == 25.03
    # 2020-03-24: VIX still 61.67 but the MACD line fell below its signal (11.77 < 12.14).
    assert df.loc["2020-03-24", "close"] > 25
    assert round(df.loc["2020-03-24", "macd"], 2) == 11.77
    assert round(df.loc["2020-03-24", "signal"], 2) == 12.14
    # 2018-02-02: MACD above signal, VIX 17.31; 2018-02-13: MACD still above, VIX 24.97 < 25.
    assert df.loc["2018-02-02", "macd"] > df.loc["2018-02-02", "signal"]
    assert df.loc["2018-02-02", "close"] == 17.31
    assert df.loc["2018-02-13", "macd"] > df.loc["2018-02-13", "signal"]
    assert df.loc["2018-02-13", "close"] == 24.97


def test_alvh_rsi_crosses_70_on_2020_02_24(vix_signals):
    df = vix_signals
    prev, cur = df.loc["2020-02-21", "rsi"], df.loc["2020-02-24", "rsi"]
    assert (round(prev, 1), round(cur, 1)) == (59.6, 76.1)
    assert crossed_above(prev, cur, 70.0)
    # the first cross of 70 of the crash (there was an earlier one on 2020-01-27, VIX 18.23)
    rsi = df.loc["2020-02-01":"2020-02-24", "rsi"]
    crosses = [d for d, p, c in zip(rsi.index[1:], rsi.iloc[:-1], rsi.iloc[1:]) if crossed_above(p, c)]
    assert crosses == ["2020-02-24"]


def test_alvh_rsi_cross_with_live_forming_bar(vix_daily):
    """Live use: history committed to 2020-02-21, the 02-24 close seen as the forming bar."""
    upto = vix_daily[vix_daily["date"] <= "2020-02-21"]["close"]
    sig = VixSignals()
    sig.warm_up(upto)
    now = sig.peek(25.03)
    assert crossed_above(sig.last.rsi, now.rsi, 70.0) and activated(now)
    assert sig.last.value == 17.08 and not activated(sig.last)


def test_alvh_macd_crosses_signal_on_2020_02_21(vix_signals):
    df = vix_signals
    h = df["histogram"]
    assert crossed_above(h.loc["2020-02-20"], h.loc["2020-02-21"], 0.0)
    assert df.loc["2020-02-21", "close"] == 17.08
    # ALVH.md: "a strict 'cross while above 25' never fires in the 2020 crash".
    crash = df.loc["2020-02-01":"2020-04-30"]
    prev_h = df["histogram"].shift(1).loc["2020-02-01":"2020-04-30"]
    strict = [
        d
        for d, p, c, v in zip(crash.index, prev_h, crash["histogram"], crash["close"])
        if crossed_above(p, c, 0.0) and v > 25
    ]
    assert strict == []
    crosses = [d for d, p, c in zip(crash.index, prev_h, crash["histogram"]) if crossed_above(p, c, 0.0)]
    assert crosses[0] == "2020-02-21"
