"""Historical bars (reqHistoricalData) of the SPX and VIX indexes from the market model.

Regular trading hours only (the model has no overnight path). Intraday bars are aligned to
the New York clock (a 1-hour bar starts at 10:00, 11:00 ...; the first bar of a session starts
at the open), a bar spans [start, next start] and its close is the value at its end; nothing
after "now" is ever shown, so the last bar of a running session is partial, as at IB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np

from .listing import NY, TZ_LABEL

UTC = timezone.utc
MAX_BARS = 20_000
_UNITS = {"sec": 1, "secs": 1, "min": 60, "mins": 60, "hour": 3600, "hours": 3600}


class HistoryError(Exception):
    """Answered as error 162 (historical data service error) with this text."""


@dataclass(frozen=True)
class Bar:
    start: datetime | date
    open: float
    high: float
    low: float
    close: float


def parse_bar_size(text: str) -> timedelta | None:
    """Intraday bar length, or None for daily bars; HistoryError for what is not served."""
    m = re.fullmatch(r"\s*(\d+)\s+([a-z]+)\s*", text.lower())
    if not m:
        raise HistoryError(f"Historical Market Data Service error message:Invalid bar size {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    if unit in ("day", "days") and n == 1:
        return None
    if unit in _UNITS and n > 0 and 86400 % (n * _UNITS[unit]) == 0:
        return timedelta(seconds=n * _UNITS[unit])
    raise HistoryError(f"Historical Market Data Service error message:bar size {text!r} not supported by the simulator")


def parse_end(text: str, now: datetime) -> datetime:
    """endDateTime: "" (now), "YYYYMMDD HH:MM:SS TZ", "YYYYMMDD-HH:MM:SS" (UTC) or
    "YYYYMMDD HH:MM:SS" (the gateway's zone, New York); never later than now."""
    text = text.strip()
    if not text:
        return now
    try:
        if "-" in text and re.fullmatch(r"\d{8}-\d{2}:\d{2}:\d{2}", text):
            t = datetime.strptime(text, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC)
        else:
            parts = text.split()
            if len(parts) == 1 and re.fullmatch(r"\d{8}", parts[0]):
                t = datetime.strptime(parts[0] + " 23:59:59", "%Y%m%d %H:%M:%S").replace(tzinfo=NY)
            else:
                zone = ZoneInfo(parts[2]) if len(parts) > 2 else NY
                t = datetime.strptime(f"{parts[0]} {parts[1]}", "%Y%m%d %H:%M:%S").replace(tzinfo=zone)
    except (ValueError, IndexError, KeyError) as e:
        raise HistoryError(f"Historical Market Data Service error message:bad end date/time {text!r} ({e})") from None
    return min(t.astimezone(UTC), now)


def parse_duration(text: str, end: datetime, calendar=None) -> datetime:
    """The start of a duration string `N S|D|W|M|Y` ending at `end`. Days are trading days
    when a calendar is given ("1 D" = the last session, from its open, as IB answers)."""
    m = re.fullmatch(r"\s*(\d+)\s*([SDWMY])\s*", text.upper())
    if not m:
        raise HistoryError(f"Historical Market Data Service error message:Invalid duration {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    if unit == "S":
        return end - timedelta(seconds=n)
    if unit == "D":
        if calendar is None or n <= 0:
            return end - timedelta(days=n)
        return _sessions_back(calendar, end, n)
    if unit == "W":
        return end - timedelta(weeks=n)
    local = end.astimezone(NY)
    months = n * (12 if unit == "Y" else 1)
    y, mth = divmod(local.year * 12 + local.month - 1 - months, 12)
    day = min(local.day, 28)
    return local.replace(year=y, month=mth + 1, day=day).astimezone(UTC)


def _sessions_back(calendar, end: datetime, n: int) -> datetime:
    """Midnight (New York) of the n-th most recent session that opened by `end`."""
    d = end.astimezone(NY).date()
    if not (calendar.is_session(d) and calendar.open_close(d)[0] <= end):
        d = calendar.previous_session(d)
    for _ in range(n - 1):
        d = calendar.previous_session(d)
    return datetime(d.year, d.month, d.day, tzinfo=NY).astimezone(UTC)


def _values(market, symbol: str, t0: datetime, t1: datetime) -> np.ndarray:
    """The index at t0 (the value holding then) and at every model step in (t0, t1]."""
    first = _index(market.state_at(t0), symbol)
    spx, vix = market.path(t0, t1)
    return np.concatenate(([first], spx if symbol == "SPX" else vix))


def _index(state, symbol: str) -> float:
    return state.spx if symbol == "SPX" else state.vix


def _sessions(market, calendar, start: datetime, end: datetime) -> list[date]:
    days = calendar.sessions_between(start.astimezone(NY).date(), end.astimezone(NY).date())
    first = getattr(market, "first_session", None)
    last = getattr(market, "last_session", None)
    return [d for d in days if (first is None or d >= first) and (last is None or d <= last)]


def _warm_up_closes(market, calendar, symbol: str, start: datetime, end: datetime) -> dict[date, tuple[float, float]]:
    """(previous close, close) of the sessions between start and end that come before the
    model's first session (the replay's look-back rows, the synthetic model's burn-in)."""
    first = getattr(market, "first_session", None)
    if first is None or not hasattr(market, "daily_closes"):
        return {}
    days = [d for d in calendar.sessions_between(start.astimezone(NY).date(), end.astimezone(NY).date()) if d < first]
    if not days:
        return {}
    closes = dict(market.daily_closes(symbol, len(calendar.sessions_between(days[0], first)) + 2,
                                      calendar.open_close(first)[0]))
    out = {}
    for d in days:
        if d in closes:
            prev = calendar.previous_session(d)
            out[d] = (closes.get(prev, closes[d]), closes[d])
    return out


# daily volatility of the bridged path of a look-back session (SPX about 1%, VIX about 6%)
BRIDGE_DAILY_VOL = {"SPX": 0.01, "VIX": 0.06}


def bridge_path(symbol: str, d: date, prev_close: float, close: float, open_: datetime,
                close_t: datetime) -> tuple[np.ndarray, np.ndarray]:
    """A look-back session has only its close: its intraday path is a Brownian bridge (one
    point a minute, log space) from the previous close to the close, seeded by the symbol and
    the day so that every request sees the same path. (times as epoch seconds, values)."""
    n = max(2, int((close_t - open_).total_seconds() // 60))
    seed = int.from_bytes(f"{symbol}{d:%Y%m%d}".encode()[-8:], "big") % 2**32
    steps = np.random.default_rng(seed).normal(0.0, BRIDGE_DAILY_VOL.get(symbol, 0.01) / np.sqrt(n), n)
    walk = np.concatenate(([0.0], np.cumsum(steps)))
    frac = np.linspace(0.0, 1.0, n + 1)
    log_path = np.log(prev_close) + frac * (np.log(close) - np.log(prev_close)) + walk - frac * walk[-1]
    times = open_.timestamp() + frac * (close_t - open_).total_seconds()
    return times, np.exp(log_path)


def _bridge_values(path: tuple[np.ndarray, np.ndarray], t0: datetime, t1: datetime) -> np.ndarray:
    times, values = path
    inside = values[(times > t0.timestamp()) & (times <= t1.timestamp())]
    first = np.interp(t0.timestamp(), times, values)
    return np.concatenate(([first], inside))


def _warm_up_bars(market, calendar, symbol: str, start: datetime, end: datetime) -> list[Bar]:
    """Daily bars of the look-back sessions: open at the previous close, high and low from
    the bridged path, close as recorded, so a client warming indicators up with
    reqHistoricalData gets a year of daily bars at the start of a simulated run."""
    out = []
    for d, (prev, close) in _warm_up_closes(market, calendar, symbol, start, end).items():
        open_, close_t = calendar.open_close(d)
        path = bridge_path(symbol, d, prev, close, open_, close_t)
        v = path[1]
        out.append(Bar(d, round(float(v[0]), 2), round(float(v.max()), 2), round(float(v.min()), 2), close))
    return out


def daily_bars(market, calendar, symbol: str, start: datetime, end: datetime) -> list[Bar]:
    out = _warm_up_bars(market, calendar, symbol, start, end)
    for d in _sessions(market, calendar, start, end):
        open_, close = calendar.open_close(d)
        if open_ > end:
            break
        v = _values(market, symbol, open_, min(close, end))
        out.append(Bar(d, *_ohlc(v)))
    return out


def intraday_bars(market, calendar, symbol: str, start: datetime, end: datetime, size: timedelta) -> list[Bar]:
    """Intraday bars of the sessions the model has paths for and, before its first session,
    of the look-back sessions along their bridged path (`bridge_path`)."""
    step = size.total_seconds()
    out: list[Bar] = []
    warm = _warm_up_closes(market, calendar, symbol, start, end)
    days = sorted(set(_sessions(market, calendar, start, end)) | set(warm))
    for d in days:
        open_, close = calendar.open_close(d)
        path = bridge_path(symbol, d, *warm[d], open_, close) if d in warm else None
        midnight = datetime(d.year, d.month, d.day, tzinfo=NY).astimezone(UTC)
        b0 = open_
        while b0 < close and b0 < end:
            k = (b0 - midnight).total_seconds() // step + 1
            b1 = min(midnight + timedelta(seconds=k * step), close)
            if b0 >= start:
                t1 = min(b1, end)
                v = _bridge_values(path, b0, t1) if path is not None else _values(market, symbol, b0, t1)
                out.append(Bar(b0, *_ohlc(v)))
                if len(out) > MAX_BARS:
                    raise HistoryError("Historical Market Data Service error message:Time length exceed max.")
            b0 = b1
    return out


def _ohlc(v: np.ndarray) -> tuple[float, float, float, float]:
    return round(float(v[0]), 2), round(float(v.max()), 2), round(float(v.min()), 2), round(float(v[-1]), 2)


def bars_for(market, calendar, symbol: str, end_text: str, duration: str, bar_size: str,
             now: datetime) -> tuple[datetime, datetime, list[Bar], bool]:
    """(start, end, bars, daily) for one request."""
    size = parse_bar_size(bar_size)
    end = parse_end(end_text, now)
    start = parse_duration(duration, end, calendar)
    if size is not None and (end - start).total_seconds() / size.total_seconds() > 4 * MAX_BARS:
        raise HistoryError("Historical Market Data Service error message:Time length exceed max.")
    if size is None:
        return start, end, daily_bars(market, calendar, symbol, start, end), True
    return start, end, intraday_bars(market, calendar, symbol, start, end, size), False


def bar_rows(bars: list[Bar], daily: bool, format_date: int) -> list[tuple]:
    """historicalData rows: (date, open, high, low, close, volume, wap, count). Daily bars are
    dated YYYYMMDD; intraday ones "YYYYMMDD HH:MM:SS US/Eastern" (formatDate 1) or epoch
    seconds (formatDate 2). Indexes trade no volume: 0."""
    rows = []
    for b in bars:
        if daily:
            label = f"{b.start:%Y%m%d}"
        elif format_date == 2:
            label = str(int(b.start.timestamp()))
        else:
            label = b.start.astimezone(NY).strftime("%Y%m%d %H:%M:%S ") + TZ_LABEL
        wap = round((b.open + b.high + b.low + b.close) / 4, 4)
        rows.append((label, b.open, b.high, b.low, b.close, 0, wap, 0))
    return rows


def header_time(t: datetime) -> str:
    return t.astimezone(NY).strftime("%Y%m%d %H:%M:%S ") + TZ_LABEL


# --------------------------------------------------------------------------- sampled series
# Options and VX futures have no stored path: their bars sample the model's price at a few
# instants inside each bar (`SAMPLES` per bar, the ends included), from the same exchange
# models the quotes come from. Coarser than an index bar's high/low, honest about it.

SAMPLES = 4
DAILY_SAMPLE = timedelta(minutes=30)


def _sampled(value_at, t0: datetime, t1: datetime, n: int) -> list[float]:
    out = []
    for i in range(n + 1):
        v = value_at(t0 + (t1 - t0) * i / n)
        if v is not None:
            out.append(v)
    return out


def sampled_bars(value_at, calendar, start: datetime, end: datetime, size: timedelta | None,
                 first: date | None = None, last: date | None = None) -> list[Bar]:
    """Bars of a series known only through `value_at(t)` (None where it has no value),
    for the sessions between start and end (clipped to first..last: listing to expiry)."""
    days = calendar.sessions_between(start.astimezone(NY).date(), end.astimezone(NY).date())
    days = [d for d in days if (first is None or d >= first) and (last is None or d <= last)]
    out: list[Bar] = []
    for d in days:
        open_, close = calendar.open_close(d)
        if open_ > end:
            break
        if size is None:
            t1 = min(close, end)
            n = max(1, int((t1 - open_) / DAILY_SAMPLE))
            v = _sampled(value_at, open_, t1, n)
            if v:
                out.append(Bar(d, *_ohlc(np.array(v))))
            continue
        midnight = datetime(d.year, d.month, d.day, tzinfo=NY).astimezone(UTC)
        step = size.total_seconds()
        b0 = open_
        while b0 < close and b0 < end:
            k = (b0 - midnight).total_seconds() // step + 1
            b1 = min(midnight + timedelta(seconds=k * step), close)
            if b0 >= start:
                v = _sampled(value_at, b0, min(b1, end), SAMPLES)
                if v:
                    out.append(Bar(b0, *_ohlc(np.array(v))))
                if len(out) > MAX_BARS // 4:
                    raise HistoryError("Historical Market Data Service error message:Time length exceed max.")
            b0 = b1
    return out


def bar_start(calendar, t: datetime, size: timedelta | None) -> datetime | None:
    """The start of the bar that holds t (the session's open for a daily bar); None outside
    a session."""
    d = t.astimezone(NY).date()
    if not calendar.is_session(d):
        return None
    open_, close = calendar.open_close(d)
    if t < open_ or t > close:
        return None
    if size is None:
        return open_
    midnight = datetime(d.year, d.month, d.day, tzinfo=NY).astimezone(UTC)
    step = size.total_seconds()
    k = (t - midnight).total_seconds() // step
    return max(open_, midnight + timedelta(seconds=k * step))
