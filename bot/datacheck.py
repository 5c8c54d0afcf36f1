"""History files: `spx-bot data check DIR`, `spx-bot data fetch DIR`, and Cboe's own formats.

Two layouts are understood:

- the normalized files of ../shared/data (SOURCES.md): `spx_daily.csv`, `vix_daily.csv`, ...
  with a `date` column in ISO form (what `bot.data.load_history` reads);
- Cboe's downloads: `VIX_History.csv`, `VIX9D_History.csv`, `VIX3M_History.csv`,
  `VIX6M_History.csv` (DATE as MM/DD/YYYY, OPEN, HIGH, LOW, CLOSE), `VVIX_History.csv` and
  `SKEW_History.csv` (DATE and one value column), and the VX futures settlement files
  (`VX_YYYY-MM-DD.csv`: Trade Date, Futures, Open, High, Low, Close, Settle, ...; or the older
  CFE archive `CFE_<month code><yy>_VX.csv`, quoted at 10 x VIX before 2007-03-26).

`prepare(dir)` returns a directory the loader can read: `dir` itself when it holds the
normalized files, else a cache directory where the Cboe files found in `dir` were converted
(row for row, after the same checks, so an error names the Cboe file and its line).

Every problem is one line naming the file and the line (`DataError`).
"""

from __future__ import annotations

import csv
import io
import math
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from bot.data import DataError

CBOE_INDEX_URL = "https://cdn.cboe.com/api/global/us_indices/daily_prices/{name}_History.csv"
CBOE_VX_URL = "https://cdn.cboe.com/data/us/futures/market_statistics/historical_data/VX/VX_{expiry}.csv"
CFE_ARCHIVE_URL = "https://cdn.cboe.com/resources/futures/archive/volume-and-price/CFE_{code}{yy}_VX.csv"
MONTH_CODES = "FGHJKMNQUVXZ"
VX_RESCALE = date(2007, 3, 26)  # VX was quoted at 10 x VIX before this date
VX_CDN_FROM = date(2013, 1, 1)  # per-contract files on the cdn; older contracts from the CFE archive

# normalized file -> (Cboe index name, value columns in the normalized file)
INDEXES = {
    "vix_daily.csv": ("VIX", ("open", "high", "low", "close")),
    "vix9d_daily.csv": ("VIX9D", ("open", "high", "low", "close")),
    "vix3m_daily.csv": ("VIX3M", ("open", "high", "low", "close")),
    "vix6m_daily.csv": ("VIX6M", ("open", "high", "low", "close")),
    "vvix_daily.csv": ("VVIX", ("close",)),
    "skew_daily.csv": ("SKEW", ("close",)),
    "spx_daily.csv": ("SPX", ("open", "high", "low", "close")),
}
REQUIRED = ("spx_daily.csv", "vix_daily.csv", "vix_futures_term.csv")
USED = {"spx_daily.csv", "vix_daily.csv", "vix_futures_term.csv", "vix9d_daily.csv", "vix3m_daily.csv",
        "vvix_daily.csv", "tbill_3m_daily.csv"}


# --------------------------------------------------------------------------- one table


@dataclass
class Table:
    """A daily file read as text: its name (for messages), the format, dates and columns."""

    name: str
    fmt: str  # "normalized" | "cboe"
    header: list[str]
    dates: list[date]
    lines: list[int]  # file line of each row (header = line 1)
    cols: dict[str, list[str]]  # normalized column name -> raw cells


def _fail(name: str, line: int, problem: str) -> DataError:
    return DataError(f"{name} line {line}: {problem}")


def _parse_date(text: str, fmt: str) -> date | None:
    text = text.strip()
    try:
        if fmt == "cboe":
            return datetime.strptime(text, "%m/%d/%Y").date()
        return date.fromisoformat(text)
    except ValueError:
        return None


def read_table(path: Path) -> Table:
    """Read a normalized or a Cboe index file; DataError (file, line) on a bad date."""
    name = path.name
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{name}: cannot read: {e}") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise DataError(f"{name} line 1: empty file")
    header = [h.strip() for h in rows[0]]
    low = [h.lower() for h in header]
    if low and low[0] == "date" and header[0] == "date":
        fmt = "normalized"
        names = low
    elif low and low[0] == "date":
        fmt = "cboe"
        # Cboe: DATE,OPEN,HIGH,LOW,CLOSE or DATE,<INDEX> (VVIX, SKEW: one value column)
        names = ["date"] + (["close"] if len(low) == 2 else low[1:])
    else:
        raise DataError(f"{name} line 1: no DATE / date column (header {','.join(header)!r})")
    dates, lines = [], []
    cols: dict[str, list[str]] = {n: [] for n in names[1:]}
    for i, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        d = _parse_date(row[0], "cboe" if fmt == "cboe" else "normalized")
        if d is None:
            want = "MM/DD/YYYY" if fmt == "cboe" else "YYYY-MM-DD"
            # Cboe's newer files also use ISO dates: accept them
            d = _parse_date(row[0], "normalized") if fmt == "cboe" else None
            if d is None:
                raise _fail(name, i, f"date {row[0]!r} is not a {want} date")
        dates.append(d)
        lines.append(i)
        for j, n in enumerate(names[1:], start=1):
            cols[n].append(row[j] if j < len(row) else "")
    return Table(name, fmt, header, dates, lines, cols)


def _number(t: Table, column: str, k: int, required: bool) -> float | None:
    cell = t.cols[column][k].strip()
    if cell == "":
        if required:
            raise _fail(t.name, t.lines[k], f"{column} is empty")
        return None
    try:
        v = float(cell)
    except ValueError:
        raise _fail(t.name, t.lines[k], f"{column} {cell!r} is not a number") from None
    if not math.isfinite(v):
        raise _fail(t.name, t.lines[k], f"{column} is {cell}")
    return v


def validate(t: Table, required: tuple[str, ...] = (), optional: tuple[str, ...] = (), ohlc: bool = False,
             positive: bool = True) -> tuple[dict[str, list[float | None]], list[str]]:
    """Check a table: dates ascending and unique, numbers finite (required ones present),
    OHLC consistent. Errors raise DataError (file, line); returns (values, warnings)."""
    warnings: list[str] = []
    for k in range(1, len(t.dates)):
        if t.dates[k] <= t.dates[k - 1]:
            what = "repeats" if t.dates[k] == t.dates[k - 1] else "is not after"
            raise _fail(t.name, t.lines[k], f"date {t.dates[k]} {what} {t.dates[k - 1]} (line {t.lines[k - 1]})")
    for c in required:
        if c not in t.cols:
            raise _fail(t.name, 1, f"missing column {c}")
    values: dict[str, list[float | None]] = {}
    for c in (*required, *[o for o in optional if o in t.cols]):
        vals = [_number(t, c, k, c in required) for k in range(len(t.dates))]
        if positive:
            for k, v in enumerate(vals):
                if v is not None and v <= 0:
                    raise _fail(t.name, t.lines[k], f"{c} {v:g} is not positive")
        values[c] = vals
    if ohlc and all(c in values for c in ("open", "high", "low", "close")):
        o, h, lo, cl = values["open"], values["high"], values["low"], values["close"]
        outside = 0
        for k in range(len(t.dates)):
            if None in (h[k], lo[k], cl[k]):
                continue
            if h[k] < lo[k]:
                raise _fail(t.name, t.lines[k], f"high {h[k]:g} is below low {lo[k]:g}")
            if not lo[k] <= cl[k] <= h[k]:
                raise _fail(t.name, t.lines[k], f"close {cl[k]:g} is outside [low {lo[k]:g}, high {h[k]:g}]")
            if o[k] is not None and not lo[k] <= o[k] <= h[k]:
                outside += 1
        if outside:
            warnings.append(f"{outside} rows with the open outside [low, high] (a known Cboe quirk; clipped on load)")
    return values, warnings


# --------------------------------------------------------------------------- data check


@dataclass
class FileReport:
    name: str
    rows: int = 0
    first: date | None = None
    last: date | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


SPECS = {
    # normalized name: (required columns, optional columns, ohlc, positive)
    "spx_daily.csv": (("open", "high", "low", "close"), (), True, True),
    "vix_daily.csv": (("open", "high", "low", "close"), (), True, True),
    "vix9d_daily.csv": ((), ("open", "high", "low", "close"), True, True),
    "vix3m_daily.csv": ((), ("open", "high", "low", "close"), True, True),
    "vix6m_daily.csv": ((), ("open", "high", "low", "close"), True, True),
    "vvix_daily.csv": ((), ("close",), False, True),
    "skew_daily.csv": ((), ("close",), False, True),
    "spx_total_return_daily.csv": (("close",), (), False, True),
    "tbill_3m_daily.csv": ((), ("rate_pct",), False, False),
    "vix_futures_term.csv": (("vx1", "vx2"), tuple(f"vx{i}" for i in range(3, 9)), False, True),
}
CBOE_NAMES = {f"{idx}_History.csv": norm for norm, (idx, _) in INDEXES.items()}


def _sessions(first: date, last: date):
    from bot.calendar import TradingCalendar

    cal = TradingCalendar(start=min(first, date(1990, 1, 2)), end=max(last, date(1990, 12, 31)))
    return cal.sessions_between(first, last)


def check_file(path: Path, spec_name: str) -> FileReport:
    rep = FileReport(path.name)
    req, opt, ohlc, positive = SPECS.get(spec_name, ((), ("close",), False, True))
    try:
        t = read_table(path)
        _, warnings = validate(t, req, opt, ohlc, positive)
        rep.warnings += warnings
    except DataError as e:
        rep.error = str(e)
        return rep
    rep.rows = len(t.dates)
    if not t.dates:
        rep.error = f"{path.name} line 2: no data rows"
        return rep
    rep.first, rep.last = t.dates[0], t.dates[-1]
    # gaps and holiday rows against the NYSE calendar (data before 1990 not checked)
    lo = max(rep.first, date(1990, 1, 2))
    if rep.last >= lo:
        sessions = _sessions(lo, rep.last)
        have = set(t.dates)
        session_set = set(sessions)
        missing = [d for d in sessions if d not in have]
        extra = [d for d in t.dates if d >= lo and d not in session_set]
        if missing:
            runs = _runs(missing, sessions)
            show = ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in runs[:5])
            rep.warnings.append(f"{len(missing)} NYSE sessions without a row ({len(runs)} gaps: {show}"
                                f"{', ...' if len(runs) > 5 else ''})")
        if extra:
            show = ", ".join(str(d) for d in extra[:5])
            rep.warnings.append(f"{len(extra)} rows on days that are not NYSE sessions (holidays/weekends: {show}"
                                f"{', ...' if len(extra) > 5 else ''}); the loader ignores them")
    long_gaps = [(a, b) for a, b in zip(t.dates, t.dates[1:]) if (b - a).days > 5 and b < lo]
    if long_gaps:  # before 1990 the NYSE calendar is not checked: report long gaps instead
        rep.warnings.append("calendar gaps over 5 days: " + ", ".join(f"{a}->{b}" for a, b in long_gaps[:5]))
    return rep


def _runs(missing: list[date], sessions: list[date]) -> list[tuple[date, date]]:
    index = {d: i for i, d in enumerate(sessions)}
    runs: list[tuple[date, date]] = []
    for d in missing:
        if runs and index[d] == index[runs[-1][1]] + 1:
            runs[-1] = (runs[-1][0], d)
        else:
            runs.append((d, d))
    return runs


def data_check(directory: Path | str, out=None) -> int:
    """`spx-bot data check DIR`: one line per file (OK with its span and warnings, or the
    error naming file and line); 0 when every file is usable, 2 otherwise."""
    out = out or sys.stdout
    d = Path(directory)
    if not d.is_dir():
        print(f"spx-bot: data check: {d}: not a directory", file=sys.stderr)
        return 2
    files = sorted(p for p in d.iterdir() if p.suffix.lower() == ".csv")
    present = {p.name for p in files}
    failed = False
    for req in REQUIRED:
        cboe = next((c for c, n in CBOE_NAMES.items() if n == req), None)
        if req not in present and (cboe is None or cboe not in present) and not (
                req == "vix_futures_term.csv" and any(p.name.startswith(("VX_", "CFE_")) for p in files)):
            print(f"ERROR {req}: missing (required by the backtest)", file=out)
            failed = True
    for p in files:
        spec = CBOE_NAMES.get(p.name, p.name)
        if p.name.startswith(("VX_", "CFE_")):
            try:
                rows = read_vx_contract(p)
                print(f"OK    {p.name}: {len(rows)} settlements {rows[0][0]}..{rows[-1][0]}" if rows else
                      f"OK    {p.name}: no settlements", file=out)
            except DataError as e:
                print(f"ERROR {e}", file=out)
                failed = True
            continue
        if spec not in SPECS:
            if p.name != "vix_futures_contracts_2004_2014.csv" and p.name != "vix_futures_expirations.csv":
                print(f"SKIP  {p.name}: not a known history file", file=out)
            continue
        rep = check_file(p, spec)
        if rep.error:
            used = spec in USED
            print(f"ERROR {rep.error}" + ("" if used else " (file not used by the backtest)"), file=out)
            failed = failed or used
            continue
        print(f"OK    {p.name}: {rep.rows} rows {rep.first}..{rep.last}", file=out)
        for w in rep.warnings:
            print(f"      {p.name}: {w}", file=out)
    return 2 if failed else 0


# --------------------------------------------------------------------------- Cboe -> normalized


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.2f}"


def convert_index(src: Path, dst: Path, norm_name: str) -> None:
    """A Cboe index file (or a normalized one) to the normalized layout, row for row."""
    req, opt, ohlc, positive = SPECS[norm_name]
    t = read_table(src)
    values, _ = validate(t, () if norm_name not in REQUIRED else req, req + opt, ohlc, positive)
    cols = INDEXES[norm_name][1]
    lines = ["date," + ",".join(cols)]
    for k, d in enumerate(t.dates):
        lines.append(d.isoformat() + "," + ",".join(_fmt(values.get(c, [None] * len(t.dates))[k]) for c in cols))
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_vx_contract(path: Path) -> list[tuple[date, float, date]]:
    """(trade date, settlement in VIX points, expiry) of one VX contract file (cdn or CFE
    archive layout). The expiry is the file's final settlement date: the last trade date
    (VX_YYYY-MM-DD.csv names it)."""
    name = path.name
    text = path.read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lower().startswith("trade date")), None)
    if start is None:
        raise DataError(f"{name} line 1: no 'Trade Date' header")
    reader = csv.reader(lines[start:])
    header = [h.strip().lower() for h in next(reader)]
    try:
        i_date, i_settle = header.index("trade date"), header.index("settle")
    except ValueError:
        raise DataError(f"{name} line {start + 1}: missing Trade Date or Settle column") from None
    out = []
    for n, row in enumerate(reader, start=start + 2):
        if not row or not row[0].strip():
            continue
        d = _parse_date(row[i_date], "normalized") or _parse_date(row[i_date], "cboe")
        if d is None:
            raise _fail(name, n, f"Trade Date {row[i_date]!r} is not a date")
        try:
            s = float(row[i_settle])
        except (ValueError, IndexError):
            raise _fail(name, n, f"Settle {row[i_settle] if i_settle < len(row) else ''!r} is not a number") from None
        if not math.isfinite(s):
            raise _fail(name, n, "Settle is NaN")
        if s <= 0:
            continue  # not yet listed / no settlement
        if d < VX_RESCALE:
            s /= 10.0
        if out and d <= out[-1][0]:
            raise _fail(name, n, f"Trade Date {d} is not after {out[-1][0]}")
        out.append((d, s))
    if not out:
        return []
    expiry = _expiry_from_name(name) or out[-1][0]
    return [(d, s, expiry) for d, s in out]


def _expiry_from_name(name: str) -> date | None:
    if name.startswith("VX_") and name.endswith(".csv"):
        try:
            return date.fromisoformat(name[3:-4])
        except ValueError:
            return None
    return None


def build_term(contracts: list[list[tuple[date, float, date]]], dst: Path) -> int:
    """vix_futures_term.csv from per-contract settlements: on each trade date the contracts
    expiring after it, nearest first (a contract is no longer VX1 on its expiry day)."""
    by_day: dict[date, list[tuple[date, float]]] = {}
    for rows in contracts:
        for d, s, e in rows:
            if e > d:
                by_day.setdefault(d, []).append((e, s))
    lines = ["date,vx1,vx2,vx3,vx4,vx5,vx6,vx7,vx8,vx1_expiry,vx2_expiry,source"]
    n = 0
    for d in sorted(by_day):
        curve = sorted(by_day[d])[:8]
        if len(curve) < 2:
            continue
        months = [(e.year, e.month) for e, _ in curve]
        consecutive = all((b[0] * 12 + b[1]) - (a[0] * 12 + a[1]) == 1 for a, b in zip(months, months[1:]))
        cells = [f"{s:g}" for _, s in curve] + [""] * (8 - len(curve))
        source = "cboe" if consecutive else "cfe_raw_contracts"
        lines.append(f"{d.isoformat()}," + ",".join(cells) + f",{curve[0][0]},{curve[1][0]},{source}")
        n += 1
    dst.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return n


def prepare(directory: Path | str, cache: Path | None = None) -> Path:
    """A directory `bot.data.load_history` can read: `directory` itself when it holds the
    normalized files, else `cache` (default DIR/.normalized) with the Cboe files of
    `directory` converted. DataError (file, line) on a bad Cboe file."""
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"{d}: data directory not found")
    if all((d / n).is_file() for n in REQUIRED):
        return d
    cache = cache or d / ".normalized"
    cache.mkdir(parents=True, exist_ok=True)
    for norm, (idx, _) in INDEXES.items():
        src_norm, src_cboe = d / norm, d / f"{idx}_History.csv"
        if src_norm.is_file():
            (cache / norm).write_bytes(src_norm.read_bytes())
        elif src_cboe.is_file():
            convert_index(src_cboe, cache / norm, norm)
    for extra in ("vix_futures_term.csv", "tbill_3m_daily.csv"):
        if (d / extra).is_file():
            (cache / extra).write_bytes((d / extra).read_bytes())
    if not (cache / "vix_futures_term.csv").is_file():
        files = sorted(p for p in d.iterdir() if p.name.startswith(("VX_", "CFE_")) and p.suffix == ".csv")
        if files:
            build_term([read_vx_contract(p) for p in files], cache / "vix_futures_term.csv")
    missing = [n for n in REQUIRED if not (cache / n).is_file()]
    if missing:
        raise DataError(f"{d}: missing {', '.join(missing)} (normalized) and no Cboe file to build "
                        f"{'it' if len(missing) == 1 else 'them'} from")
    return cache


# --------------------------------------------------------------------------- data fetch


class Offline(Exception):
    pass


def _get(url: str, timeout: float = 20.0) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "spx-bot data fetch"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - fixed https URLs
            return r.read()
    except urllib.error.HTTPError as e:
        raise FileNotFoundError(f"{url}: HTTP {e.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise Offline(f"cannot reach {url.split('/')[2]} ({reason})") from None


def monthly_vx_expiries(first: date, last: date) -> list[date]:
    from bot.calendar import TradingCalendar

    cal = TradingCalendar(start=date(2003, 1, 2), end=last + timedelta(days=400))
    out = []
    y, m = first.year, first.month
    while date(y, m, 1) <= last + timedelta(days=300):
        out.append(cal.vix_monthly_expiry(y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def data_fetch(directory: Path | str, source: str = "cboe", since: date = date(2004, 3, 1), out=None,
               ib: dict | None = None, fetch=_get) -> int:
    """`spx-bot data fetch DIR`: download Cboe's daily index files and the VX futures
    settlement files into DIR/raw and write the normalized files into DIR. With
    source="ib", daily bars of the indexes from a connected IB gateway (reqHistoricalData).
    0 on success, 2 with one line on stderr when offline or nothing could be fetched."""
    out = out or sys.stdout
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if source == "ib":
        return _fetch_ib(d, ib or {}, out)
    raw = d / "raw"
    raw.mkdir(exist_ok=True)
    got = 0
    try:
        for norm, (idx, _) in INDEXES.items():
            url = CBOE_INDEX_URL.format(name=idx)
            try:
                body = fetch(url)
            except FileNotFoundError as e:
                print(f"SKIP  {idx}: not published by Cboe ({e}); keep the existing {norm}", file=out)
                continue
            (raw / f"{idx}_History.csv").write_bytes(body)
            convert_index(raw / f"{idx}_History.csv", d / norm, norm)
            print(f"OK    {idx}_History.csv -> {norm}", file=out)
            got += 1
        contracts = []
        today = date.today()
        for e in monthly_vx_expiries(since, today):
            if e >= VX_CDN_FROM:
                url, name = CBOE_VX_URL.format(expiry=e.isoformat()), f"VX_{e.isoformat()}.csv"
            else:  # the archive names a contract by its month, which is its expiry's month
                code, yy = MONTH_CODES[e.month - 1], f"{e.year % 100:02d}"
                url, name = CFE_ARCHIVE_URL.format(code=code, yy=yy), f"CFE_{code}{yy}_VX.csv"
            try:
                body = fetch(url)
            except FileNotFoundError:
                continue
            (raw / name).write_bytes(body)
            contracts.append(read_vx_contract(raw / name))
        if contracts:
            n = build_term(contracts, d / "vix_futures_term.csv")
            print(f"OK    {len(contracts)} VX contracts -> vix_futures_term.csv ({n} days)", file=out)
            got += 1
    except Offline as e:
        print(f"spx-bot: data fetch: {e}: offline? (only the package registries are reachable here; "
              f"the files in ../shared/data are a ready copy)", file=sys.stderr)
        return 2
    except DataError as e:
        print(f"spx-bot: data fetch: {e}", file=sys.stderr)
        return 2
    if not got:
        print("spx-bot: data fetch: nothing downloaded", file=sys.stderr)
        return 2
    return 0


def _fetch_ib(d: Path, ib: dict, out) -> int:
    """Daily bars of SPX, VIX, VIX9D, VIX3M and VVIX from IB (reqHistoricalData, TRADES,
    regular hours), a year per request back to `years` years. IB keeps no history of expired
    VX futures beyond about two years, so vix_futures_term.csv must come from Cboe."""
    try:
        from ib_async import IB, Index
    except ImportError:  # pragma: no cover
        print("spx-bot: data fetch: ib_async is not installed", file=sys.stderr)
        return 2
    host, port, client_id = ib.get("host", "127.0.0.1"), int(ib.get("port", 4002)), int(ib.get("client_id", 7))
    years = int(ib.get("years", 20))
    app = IB()
    try:
        app.connect(host, port, clientId=client_id, timeout=ib.get("timeout", 10))
    except Exception as e:  # noqa: BLE001 - any connection failure is one line
        print(f"spx-bot: data fetch: cannot connect to IB at {host}:{port} ({e})", file=sys.stderr)
        return 2
    try:
        for norm, idx in (("spx_daily.csv", "SPX"), ("vix_daily.csv", "VIX"), ("vix9d_daily.csv", "VIX9D"),
                          ("vix3m_daily.csv", "VIX3M"), ("vvix_daily.csv", "VVIX")):
            contract = Index(idx, "CBOE", "USD")
            bars: dict[date, tuple] = {}
            end = ""
            for _ in range(years):
                chunk = app.reqHistoricalData(contract, endDateTime=end, durationStr="1 Y", barSizeSetting="1 day",
                                              whatToShow="TRADES", useRTH=True, formatDate=1)
                if not chunk:
                    break
                for b in chunk:
                    bd = b.date if isinstance(b.date, date) else b.date.date()
                    bars[bd] = (b.open, b.high, b.low, b.close)
                first = min(bars)
                end = datetime.combine(first, datetime.min.time()).strftime("%Y%m%d 00:00:00") + " US/Eastern"
            if not bars:
                print(f"SKIP  {idx}: no bars from IB", file=out)
                continue
            cols = INDEXES[norm][1]
            lines = ["date," + ",".join(cols)]
            for bd in sorted(bars):
                o, h, lo, c = bars[bd]
                vals = {"open": o, "high": h, "low": lo, "close": c}
                lines.append(bd.isoformat() + "," + ",".join(_fmt(vals[k]) for k in cols))
            (d / norm).write_text("\n".join(lines) + "\n", encoding="utf-8")
            print(f"OK    IB {idx}: {len(bars)} days -> {norm}", file=out)
    finally:
        app.disconnect()
    return 0


__all__ = ["Table", "build_term", "convert_index", "data_check", "data_fetch", "prepare", "read_table",
           "read_vx_contract", "validate"]
