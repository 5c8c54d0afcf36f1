"""Loading and validating the daily history files (SPX, VIX and its relatives, VIX futures).

The files are the normalized CSVs described in shared/data/SOURCES.md: one header line,
ISO dates ascending, empty cell = not available. They are read once at start, validated,
and turned into numpy arrays aligned on SPX trading dates, so that the market replay never
touches pandas again. A bad file stops the load with one line naming the file, the line and
the problem (`DataError`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

WARMUP_DAYS = 40  # calendar days kept before `start` (indicator warm-up)
DEFAULT_RATE = 0.02  # continuous, decimal; used where no T-bill rate is known
VX_COLUMNS = tuple(f"vx{i}" for i in range(1, 9))
NON_CONSECUTIVE_VX_SOURCE = "cfe_raw_contracts"  # 2004-2007: listed months had gaps


class DataError(Exception):
    """A history file that cannot be used. str() is one line: file, line, problem."""


@dataclass(frozen=True)
class _FileSpec:
    """What one file must contain. `required` numbers may not be empty; `optional` ones may."""

    name: str
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()  # ISO-date value columns (must not be empty)
    text: tuple[str, ...] = ()  # kept as text when present, not required
    ohlc: bool = False
    positive: bool = True  # prices are > 0; rates need not be

    @property
    def filename(self) -> str:
        return f"{self.name}.csv"


_OHLC = ("open", "high", "low", "close")
SPX = _FileSpec("spx_daily", required=_OHLC, ohlc=True)
VIX = _FileSpec("vix_daily", required=_OHLC, ohlc=True)
VX = _FileSpec("vix_futures_term", required=("vx1", "vx2"), optional=VX_COLUMNS[2:],
               dates=("vx1_expiry", "vx2_expiry"), text=("source",))
VIX9D = _FileSpec("vix9d_daily", optional=_OHLC, ohlc=True)
VIX3M = _FileSpec("vix3m_daily", optional=_OHLC, ohlc=True)
VVIX = _FileSpec("vvix_daily", optional=("close",))
TBILL = _FileSpec("tbill_3m_daily", optional=("rate_pct",), positive=False)
REQUIRED_FILES = (SPX, VIX, VX)
OPTIONAL_FILES = (VIX9D, VIX3M, VVIX, TBILL)


# --------------------------------------------------------------------------- reading one file


def _fail(spec: _FileSpec, row: int, problem: str) -> DataError:
    """row is the 0-based data row; the header is line 1, so data row 0 is line 2."""
    return DataError(f"{spec.filename} line {row + 2}: {problem}")


def _read_text(path: Path, spec: _FileSpec) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{spec.filename}: {' '.join(str(exc).split())}") from None
    wanted = ("date", *spec.required, *spec.optional, *spec.dates)
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(f"{spec.filename} line 1: missing column(s) {', '.join(missing)}")
    return frame


def _parse_dates(spec: _FileSpec, raw: pd.Series, column: str, rows: np.ndarray) -> np.ndarray:
    """ISO dates of one column; `rows` maps each value to its data row for error lines."""
    parsed = pd.to_datetime(raw, format="%Y-%m-%d", errors="coerce").to_numpy("datetime64[D]")
    bad = np.flatnonzero(np.isnat(parsed))
    if bad.size:
        i = int(bad[0])
        raise _fail(spec, int(rows[i]), f"{column} {raw.iloc[i]!r} is not a YYYY-MM-DD date")
    return parsed


def _check_ascending(spec: _FileSpec, dates: np.ndarray) -> None:
    bad = np.flatnonzero(dates[1:] <= dates[:-1])
    if bad.size:
        i = int(bad[0]) + 1
        raise _fail(spec, i, f"date {dates[i]} is not after {dates[i - 1]}")


def _parse_numbers(spec: _FileSpec, raw: pd.Series, column: str, rows: np.ndarray, required: bool) -> np.ndarray:
    """Numbers of one column; empty -> NaN when optional. `rows` maps to file rows for errors."""
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    text = raw.to_numpy(dtype=str)
    empty = np.char.strip(text) == ""
    not_number = ~np.isfinite(values) & ~empty
    if required:
        not_number |= empty
    bad = np.flatnonzero(not_number)
    if bad.size:
        i = int(bad[0])
        shown = text[i].strip()
        problem = f"{column} is empty" if shown == "" else (
            f"{column} is NaN" if shown.lower() == "nan" else f"{column} {shown!r} is not a finite number")
        raise _fail(spec, int(rows[i]), problem)
    if spec.positive:
        bad = np.flatnonzero(values <= 0)
        if bad.size:
            i = int(bad[0])
            raise _fail(spec, int(rows[i]), f"{column} {values[i]:g} is not positive")
    return np.where(empty, np.nan, values)


def _check_ohlc(spec: _FileSpec, cols: dict[str, np.ndarray], rows: np.ndarray) -> None:
    """high >= low and close within [low, high] are required; an open outside the range is a
    known Cboe quirk (47 VIX rows in the 1990s-2000s) and is clipped into it instead."""
    high, low, close = cols["high"], cols["low"], cols["close"]
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(high < low)
        if bad.size:
            i = int(bad[0])
            raise _fail(spec, int(rows[i]), f"high {high[i]:g} is below low {low[i]:g}")
        bad = np.flatnonzero((close > high) | (close < low))
        if bad.size:
            i = int(bad[0])
            raise _fail(spec, int(rows[i]), f"close {close[i]:g} is outside [low {low[i]:g}, high {high[i]:g}]")
        cols["open"] = np.where(np.isnan(cols["open"]), np.nan, np.clip(cols["open"], low, high))


@dataclass(frozen=True)
class _Table:
    dates: np.ndarray  # datetime64[D], ascending
    cols: dict[str, np.ndarray]


def read_file(path: Path, spec: _FileSpec, start: date | None = None, end: date | None = None) -> _Table:
    """Read and validate one file, keeping rows from start - WARMUP_DAYS to end.

    Dates are checked over the whole file (they decide which rows are kept); values only in
    the rows kept, so an old quirk far outside the window does not block a replay.
    """
    frame = _read_text(path, spec)
    dates = _parse_dates(spec, frame["date"], "date", np.arange(len(frame)))
    _check_ascending(spec, dates)
    keep = np.ones(len(dates), dtype=bool)
    if start is not None:
        keep &= dates >= np.datetime64(start - timedelta(days=WARMUP_DAYS))
    if end is not None:
        keep &= dates <= np.datetime64(end)
    rows = np.flatnonzero(keep)
    kept = frame.iloc[rows]
    cols: dict[str, np.ndarray] = {}
    for column in spec.required:
        cols[column] = _parse_numbers(spec, kept[column], column, rows, required=True)
    for column in spec.optional:
        cols[column] = _parse_numbers(spec, kept[column], column, rows, required=False)
    for column in spec.dates:
        cols[column] = _parse_dates(spec, kept[column], column, rows)
    for column in spec.text:
        if column in kept.columns:
            cols[column] = kept[column].to_numpy(dtype=str)
    if spec.ohlc:
        _check_ohlc(spec, cols, rows)
    return _Table(dates[rows], cols)


# --------------------------------------------------------------------------- aligned history


@dataclass(frozen=True)
class DayRow:
    """One SPX session of history, with the VIX-side values known at its close."""

    date: date
    spx: tuple[float, float, float, float]  # open, high, low, close
    vix: tuple[float, float, float, float]
    vix9d: float  # close; nan when unknown
    vix3m: float
    vvix: float
    rate: float  # continuous, decimal
    vx: tuple[float, ...]  # settlements vx1, vx2, ... (stops at the first unknown)
    vx1_expiry: date
    vx2_expiry: date
    vx_consecutive: bool  # vx3.. are the calendar months after vx2 (false for 2004-2007)


@dataclass(frozen=True, eq=False)
class History:
    """Daily history as numpy arrays aligned on SPX trading dates.

    VIX-side series are forward-filled onto SPX dates (a VIX row on an SPX holiday is
    ignored); `has_vix` / `has_vx` say where the file had a row of its own for that date.
    On a forward-filled VIX day the OHLC is flat at the last known close.
    """

    dates: np.ndarray  # datetime64[D]
    spx: np.ndarray  # (n, 4) OHLC
    vix: np.ndarray  # (n, 4) OHLC
    vix9d: np.ndarray  # (n,) close, nan = unknown
    vix3m: np.ndarray
    vvix: np.ndarray
    rate: np.ndarray  # (n,) continuous decimal
    vx: np.ndarray  # (n, 8) settlements, nan = not listed / unknown
    vx_expiry: np.ndarray  # (n, 2) datetime64[D]: vx1, vx2
    vx_consecutive: np.ndarray  # (n,) bool
    has_vix: np.ndarray  # (n,) bool
    has_vx: np.ndarray  # (n,) bool

    def __post_init__(self) -> None:
        index = {d: i for i, d in enumerate(self.dates.astype(object))}
        object.__setattr__(self, "_index", index)

    @property
    def first(self) -> date | None:
        return self.dates[0].astype(object) if len(self.dates) else None

    @property
    def last(self) -> date | None:
        return self.dates[-1].astype(object) if len(self.dates) else None

    def __len__(self) -> int:
        return len(self.dates)

    def index(self, d: date) -> int:
        """Row of SPX session d; KeyError when d is not an SPX date of the history."""
        return self._index[d]

    def __contains__(self, d: date) -> bool:
        return d in self._index

    def complete(self) -> np.ndarray:
        """Rows with SPX, an own VIX row and an own VX row (vx1 and vx2)."""
        return self.has_vix & self.has_vx

    def complete_span(self) -> tuple[date, date] | None:
        """First and last complete session (gaps in between are forward-filled)."""
        rows = np.flatnonzero(self.complete())
        if rows.size == 0:
            return None
        return self.dates[rows[0]].astype(object), self.dates[rows[-1]].astype(object)

    def covers(self, start: date, end: date, sessions: list[date] | None = None) -> bool:
        """True when SPX, VIX and VX1 have a row for every session in start..end.

        `sessions` (from the trading calendar) also catches a session missing from the SPX
        file; without it the SPX dates in the range are taken as the sessions.
        """
        if start > end or self.first is None or start < self.first or end > self.last:
            return False
        lo = np.searchsorted(self.dates, np.datetime64(start), side="left")
        hi = np.searchsorted(self.dates, np.datetime64(end), side="right")
        if sessions is not None and any(d not in self._index for d in sessions):
            return False
        return bool(np.all(self.complete()[lo:hi]))

    def row(self, d: date) -> DayRow:
        i = self.index(d)
        vx = self.vx[i]
        known = int(np.argmax(np.isnan(vx))) if np.isnan(vx).any() else len(vx)
        return DayRow(
            date=d,
            spx=tuple(float(v) for v in self.spx[i]),
            vix=tuple(float(v) for v in self.vix[i]),
            vix9d=float(self.vix9d[i]),
            vix3m=float(self.vix3m[i]),
            vvix=float(self.vvix[i]),
            rate=float(self.rate[i]),
            vx=tuple(float(v) for v in vx[:known]),
            vx1_expiry=self.vx_expiry[i, 0].astype(object),
            vx2_expiry=self.vx_expiry[i, 1].astype(object),
            vx_consecutive=bool(self.vx_consecutive[i]),
        )


def _align(on: np.ndarray, table: _Table | None) -> tuple[np.ndarray, np.ndarray]:
    """For each date of `on`, the row of `table` at or before it (-1 = none) and whether it is
    the same date. Rows of `table` on dates not in `on` (VIX on SPX holidays) are dropped first."""
    if table is None or len(table.dates) == 0:
        return np.full(len(on), -1), np.zeros(len(on), dtype=bool)
    usable = np.flatnonzero(np.isin(table.dates, on))
    pos = np.searchsorted(table.dates[usable], on, side="right") - 1
    idx = np.where(pos >= 0, usable[np.maximum(pos, 0)], -1)
    own = (idx >= 0) & (table.dates[np.maximum(idx, 0)] == on)
    return idx, own


def _take(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """values[idx] with -1 meaning "no row": NaN for numbers, NaT for dates."""
    if values.dtype.kind not in "fM":
        return values[np.maximum(idx, 0)] if values.size else np.full(len(idx), "", dtype=object)
    missing = np.array("NaT" if values.dtype.kind == "M" else np.nan, dtype=values.dtype)
    if values.size == 0:
        return np.full(len(idx), missing)
    return np.where(idx >= 0, values[np.maximum(idx, 0)], missing)


def _ffill(values: np.ndarray) -> np.ndarray:
    """Carry the last non-NaN value forward (empty cells in the optional Cboe series)."""
    pos = np.where(~np.isnan(values), np.arange(len(values)), 0)
    np.maximum.accumulate(pos, out=pos)
    return values[pos]


def discount_to_continuous(discount_pct: np.ndarray, days: float = 91.0) -> np.ndarray:
    """FRED DTB3 is a bank-discount rate in percent: price = 1 - d * days/360. The continuous
    rate that gives that price over days/365 years is what option models want."""
    price = 1.0 - discount_pct / 100.0 * days / 360.0
    return -np.log(price) * 365.0 / days


def _vix_ohlc(table: _Table, idx: np.ndarray, own: np.ndarray) -> np.ndarray:
    close = _take(table.cols["close"], idx)
    ohlc = np.column_stack([_take(table.cols[c], idx) for c in _OHLC])
    return np.where(own[:, None], ohlc, close[:, None])


def _close_series(table: _Table | None, dates: np.ndarray) -> np.ndarray:
    if table is None:
        return np.full(len(dates), np.nan)
    idx, _ = _align(dates, table)
    return _ffill(_take(table.cols["close"], idx))


def _rate_series(table: _Table | None, dates: np.ndarray) -> np.ndarray:
    if table is None:
        return np.full(len(dates), DEFAULT_RATE)
    known = ~np.isnan(table.cols["rate_pct"])
    # FRED has no rows on bond-market holidays: take the last rate at or before each date.
    idx = np.searchsorted(table.dates[known], dates, side="right") - 1
    rate = _take(discount_to_continuous(table.cols["rate_pct"][known]), idx)
    return np.where(np.isnan(rate), DEFAULT_RATE, rate)


def _vx_block(table: _Table, dates: np.ndarray):
    idx, own = _align(dates, table)
    vx = np.column_stack([_take(table.cols[c], idx) for c in VX_COLUMNS])
    expiry = np.column_stack([_take(table.cols[c], idx) for c in ("vx1_expiry", "vx2_expiry")])
    source = table.cols.get("source")
    consecutive = np.ones(len(dates), dtype=bool) if source is None else _take(source, idx) != NON_CONSECUTIVE_VX_SOURCE
    return vx, expiry, consecutive, own


def load_history(data_dir: Path, start: date | None = None, end: date | None = None) -> History:
    """Load the history files of `data_dir` (spx, vix and vix futures required; vix9d, vix3m,
    vvix and the T-bill rate optional), keeping start - 40 days .. end when given."""
    data_dir = Path(data_dir)
    spx, vix, vx = (read_file(data_dir / s.filename, s, start, end) for s in REQUIRED_FILES)
    optional = {s.name: read_file(data_dir / s.filename, s, start, end) if (data_dir / s.filename).is_file() else None
                for s in OPTIONAL_FILES}
    dates = spx.dates
    vix_idx, vix_own = _align(dates, vix)
    vx_values, vx_expiry, vx_consecutive, vx_own = _vx_block(vx, dates)
    return History(
        dates=dates,
        spx=np.column_stack([spx.cols[c] for c in _OHLC]),
        vix=_vix_ohlc(vix, vix_idx, vix_own),
        vix9d=_close_series(optional[VIX9D.name], dates),
        vix3m=_close_series(optional[VIX3M.name], dates),
        vvix=_close_series(optional[VVIX.name], dates),
        rate=_rate_series(optional[TBILL.name], dates),
        vx=vx_values,
        vx_expiry=vx_expiry,
        vx_consecutive=vx_consecutive,
        has_vix=vix_own,
        has_vx=vx_own,
    )


def has_required_files(data_dir: Path | None) -> bool:
    """Whether `data_dir` holds the three files a history replay cannot do without."""
    return data_dir is not None and all((Path(data_dir) / s.filename).is_file() for s in REQUIRED_FILES)

