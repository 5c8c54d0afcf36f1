"""Does the intraday path peek? The open-to-10:00 share of the day's move, before and after.

What is measured (over real history, every session of the span, several seeds)
-------------------------------------------------------------------------------
  share_10     sum over days of ln(P10:00 / open) * sign(day's move) / sum of |ln(close / open)|:
               how much of the open-to-close move the path already holds at 10:00. A random
               walk conditioned on its close holds k/n of it in expectation (6/78 = 7.7 %).
  corr_10      correlation of ln(P10:00 / open) with ln(close / open) across days
               (random walk: sqrt(6/78) = 0.28).
  first_30m    share of days whose high or low falls in the first 30 minutes (real SPX: most;
               a uniform draw of the step: ~8 %; the arcsine law: ~31 %).
  vix_jump     the largest 5-minute change of the VIX on the path, in points, and its day.
  vx1_peak     2024-08-05: the path's highest VX1 against its settlement (32.1).

The "before" column imports `bot/sim/market.py` as it was at a git revision (`--before REV`,
default `main`); "after" is the working tree. Both run on the same history and seeds.

Usage:
  .venv/bin/python bench/path.py                         # 2004-2026, seeds 1-3, before = main
  .venv/bin/python bench/path.py --from 2018-01-02 --to 2019-12-31 --seeds 1
  .venv/bin/python bench/path.py --before none           # after only
The data folder ($SPX_BOT_DATA or ../shared/data) must exist, else one line and exit 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.calendar import TradingCalendar  # noqa: E402
from bot.data import load_history  # noqa: E402

DATA = Path(os.environ.get("SPX_BOT_DATA") or ROOT.parent / "shared" / "data")
TEN_S = 30 * 60  # 10:00 is 30 minutes after a 09:30 open
AUG5 = date(2024, 8, 5)


def market_module(rev: str | None):
    """`bot.sim.market` of the working tree (rev None) or as it was at git revision rev."""
    if rev is None:
        import bot.sim.market as m
        return m
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:bot/sim/market.py"], check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "market_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"market_{rev}", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def measure(mod, history, calendar, seeds: list[int]) -> dict:
    """The figures above for one market module over every complete session of `history`."""
    first, last = history.complete_span()
    sessions = calendar.sessions_between(first, last)
    r10, rday, early, jumps = [], [], [], []
    vx1 = None
    for seed in seeds:
        market = mod.HistoryMarket(history, calendar, seed)
        for d in sessions:
            o, c = calendar.open_close(d)
            stamps = mod.session_stamps(o.timestamp(), c.timestamp(), market.step_s)
            p = market.session_path(d, stamps)
            k10 = int(np.searchsorted(stamps, stamps[0] + TEN_S))
            if k10 < len(stamps) - 1 and stamps[k10] == stamps[0] + TEN_S and p.spx[0] > 0:
                r10.append(math.log(p.spx[k10] / p.spx[0]))
                rday.append(math.log(p.spx[-1] / p.spx[0]))
                early.append(min(int(np.argmax(p.spx)), int(np.argmin(p.spx))) <= k10)
            dv = np.abs(np.diff(p.vix))
            j = int(np.argmax(dv))
            jumps.append((float(dv[j]), d))
            if d == AUG5 and seed == seeds[0]:
                vx1 = (float(p.vx[:, 0].max()), float(p.vx[-1, 0]))
    r10, rday = np.array(r10), np.array(rday)
    big = max(jumps)
    return {
        "days": len(rday) // len(seeds), "seeds": len(seeds),
        "share_10": float(np.sum(r10 * np.sign(rday)) / np.sum(np.abs(rday))),
        "corr_10": float(np.corrcoef(r10, rday)[0, 1]),
        "first_30m": float(np.mean(early)),
        "vix_jump": big[0], "vix_jump_day": str(big[1]),
        "vx1_peak_aug5": None if vx1 is None else vx1[0], "vx1_settle_aug5": None if vx1 is None else vx1[1],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="start", default="2004-03-26")
    ap.add_argument("--to", dest="end", default="2026-07-22")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 1..N")
    ap.add_argument("--before", default="main", help="git revision for the before column, or none")
    ap.add_argument("--data", default=str(DATA))
    args = ap.parse_args(argv)
    data = Path(args.data)
    if not (data / "spx_daily.csv").is_file():
        print(f"no history in {data}: nothing measured")
        return 0
    start, end = date.fromisoformat(args.start), date.fromisoformat(args.end)
    history = load_history(data, start, end)
    calendar = TradingCalendar(start=date(start.year - 1, 1, 1), end=date(end.year + 2, 12, 31))
    seeds = list(range(1, args.seeds + 1))
    cols = {}
    if args.before != "none":
        cols[f"before ({args.before})"] = measure(market_module(args.before), history, calendar, seeds)
    cols["after (tree)"] = measure(market_module(None), history, calendar, seeds)
    some = next(iter(cols.values()))
    print(f"{start}..{end}: {some['days']} sessions x {some['seeds']} seeds; random walk: share 7.7 %, corr 0.28")
    rows = [("open-to-10:00 share of the move", "share_10", "{:.1%}"),
            ("corr(10:00 move, day's move)", "corr_10", "{:.3f}"),
            ("days with high or low by 10:00", "first_30m", "{:.1%}"),
            ("max 5-min VIX jump (points)", "vix_jump", "{:.2f}"),
            ("  on", "vix_jump_day", "{}"),
            ("2024-08-05 path VX1 peak", "vx1_peak_aug5", "{:.2f}"),
            ("2024-08-05 VX1 settlement", "vx1_settle_aug5", "{:.2f}")]
    print(f"{'':34s}" + "".join(f"{name:>18s}" for name in cols))
    for label, key, fmt in rows:
        print(f"{label:34s}" + "".join(f"{(fmt.format(c[key]) if c[key] is not None else '-'):>18s}" for c in cols.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
