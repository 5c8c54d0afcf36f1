"""A history folder written from the synthetic market, for the tests that need history files
when ../shared/data is absent (a clone with nothing beside it).

Every session from `START` to `END` is a session of `SyntheticMarket` (seeded, so the files are
the same on every machine): its open, high, low and close of SPX and VIX, the closes of VIX9D,
VIX3M and VVIX, the monthly VIX futures at the close, the model's rate. Two things are planted
on top, so the windows the parity tests replay hold what they test:

- a crash from 2020-02-24: VIX scaled up to ~3.5x over two weeks (and SPX down with it), so the
  hedge activates, buys back its written calls and monetizes a spike above VIX 40, as it did
  in the real 2020;
- nothing else: calm years stay calm, the model's own jumps aside.

The files follow shared/data/SOURCES.md's format (`bot.data.load_history` reads them).
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

from bot.calendar import TradingCalendar
from bot.data import has_required_files
from bot.sim.market import SyntheticMarket

START, END = date(2003, 1, 2), date(2026, 7, 24)
SEED = 11
VERSION = 1  # bump when the output changes (the cached folder is keyed by it)
CRASH = (date(2020, 2, 21), date(2020, 3, 9), date(2020, 4, 17))  # from, peak, back to the model


def crash_factor(d: date) -> float:
    """VIX multiplier of the planted crash on session d (1 outside it)."""
    start, peak, end = CRASH
    if d <= start or d >= end:
        return 1.0
    if d <= peak:
        return 1.0 + 2.5 * (d - start).days / (peak - start).days
    return 3.5 - 2.5 * (d - peak).days / (end - peak).days


HEADERS = {
    "spx_daily": "date,open,high,low,close", "vix_daily": "date,open,high,low,close",
    "vix9d_daily": "date,open,high,low,close", "vix3m_daily": "date,open,high,low,close",
    "vvix_daily": "date,close", "tbill_3m_daily": "date,rate_pct",
    "vix_futures_term": "date,vx1,vx2,vx3,vx4,vx5,vx6,vx7,vx8,vx1_expiry,vx2_expiry,source",
}


def day_lines(d: date, spx: tuple, vix: tuple, vix9d: float, vix3m: float, vvix: float, tbill_pct: float,
              vx: list[float], vx_expiries: tuple[date, date], source: str) -> dict[str, str]:
    """One session's line of every file: SPX and VIX (open, high, low, close), the closes of
    VIX9D / VIX3M / VVIX, the 3-month T-bill discount rate (%), up to 8 VIX futures."""
    ohlc = ",".join(f"{x:.2f}" for x in spx), ",".join(f"{x:.2f}" for x in vix)
    futures = [f"{x:.2f}" for x in vx][:8]
    return {"spx_daily": f"{d},{ohlc[0]}", "vix_daily": f"{d},{ohlc[1]}", "vix9d_daily": f"{d},,,,{vix9d:.2f}",
            "vix3m_daily": f"{d},,,,{vix3m:.2f}", "vvix_daily": f"{d},{vvix:.2f}", "tbill_3m_daily": f"{d},{tbill_pct:.4f}",
            "vix_futures_term": f"{d},{','.join(futures + [''] * (8 - len(futures)))},{vx_expiries[0]},{vx_expiries[1]},"
                                f"{source}"}


def write_files(folder: Path, days: list[dict[str, str]]) -> Path:
    """The history files of these sessions' lines (`day_lines`), oldest first."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, header in HEADERS.items():
        (folder / f"{name}.csv").write_text("\n".join([header] + [day[name] for day in days]) + "\n")
    return folder


def write_history(folder: Path, start: date = START, end: date = END, seed: int = SEED) -> Path:
    cal = TradingCalendar(start=date(2002, 1, 2), end=date(end.year + 2, 12, 31))
    market = SyntheticMarket(cal, seed, start, spx0=1000.0, vix0=20.0)
    days = []
    for d in cal.sessions_between(start, end):
        p = market.day_path(d)
        f = crash_factor(d)
        spx, vix = p.spx * f ** -0.12, p.vix * f
        # the model's continuous rate as a 3-month discount rate (bot.data converts it back)
        tbill = 100 * 360 / 91 * (1 - math.exp(-p.rate * 91 / 365))
        days.append(day_lines(d, (spx[0], spx.max(), spx.min(), spx[-1]), (vix[0], vix.max(), vix.min(), vix[-1]),
                              p.vix9d[-1] * f, p.vix3m[-1] * f ** 0.6, p.vvix[-1] * f ** 0.5, tbill,
                              list(p.vx[-1] * f ** 0.5), p.vx_expiries[:2], "synthetic"))
    return write_files(folder, days)


def synthetic_history(root: Path) -> Path:
    """The synthetic history folder under root, written once per VERSION."""
    folder = root / f"synthetic-history-v{VERSION}"
    if not has_required_files(folder):
        tmp = root / f"synthetic-history-v{VERSION}.{__import__('os').getpid()}"
        write_history(tmp)
        try:
            tmp.rename(folder)
        except OSError:  # another process wrote it first
            pass
    return folder
