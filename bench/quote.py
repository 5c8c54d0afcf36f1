"""`spx-bot quote --batch` throughput: rows quoted per second.

What is measured
----------------
A batch of random requests over real history (default 20,000 rows, 2008-2025): moments drawn
from sessions at 5-minute steps between 09:30 and 16:00 New York, ROWS_PER_MOMENT rows per
moment (a trader's question is usually a strip of strikes), classes SPXW / SPX / VIX / VIXW,
expiries 0-60 days out, strikes within +/-20 % of the day's close (VIX: 0.6-2.5 x the VIX).

  load_s      reading and checking the history files (Quoter construction)
  price_s     Quoter.quote_many over all rows (grouped by moment, one call per moment)
  rows_per_s  rows / price_s                                    <- aim: >= 1,000
  end_to_end  rows / (parse + load + price + write) through quote_cli.batch on a CSV file

Usage:
  python bench/quote.py                    # 20,000 rows
  python bench/quote.py --rows 2000        # quick
  python bench/quote.py --data DIR --out /tmp/q.json
Results: bench/out/quote.json (or --out); the data folder ($SPX_BOT_DATA or ../shared/data)
must exist, else one line is printed and the bench exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.calendar import NY, TradingCalendar  # noqa: E402
from bot.data import load_history  # noqa: E402
from bot.quote_cli import Quoter, Request, batch, parse_option  # noqa: E402

DEFAULT_OUT = ROOT / "bench" / "out" / "quote.json"
ROWS_PER_MOMENT = 10


def make_requests(data_dir: Path, n: int, first: date, last: date, seed: int = 1) -> list[tuple[str, str, str, str, str]]:
    rng = np.random.default_rng(seed)
    cal = TradingCalendar()
    hist = load_history(data_dir, first, last)
    sessions = [d for d in cal.sessions_between(first, last) if d in hist]
    rows = []
    while len(rows) < n:
        d = sessions[int(rng.integers(len(sessions)))]
        i = hist.index(d)
        spx, vix = float(hist.spx[i, 3]), float(hist.vix[i, 3])
        at = datetime.combine(d, datetime.min.time()).replace(hour=9, minute=30) + timedelta(minutes=5 * int(rng.integers(0, 78)))
        sym = str(rng.choice(["SPXW", "SPXW", "SPX", "VIX", "VIXW"]))
        for _ in range(ROWS_PER_MOMENT):
            if sym == "VIX":  # a listed monthly: the next one, or one or two after
                y, m = d.year, d.month + int(rng.integers(0, 3))
                y, m = y + (m - 1) // 12, (m - 1) % 12 + 1
                expiry = cal.vix_monthly_expiry(y, m)
                if expiry <= d:
                    expiry = cal.vix_monthly_expiry(y + m // 12, m % 12 + 1)
            elif sym == "VIXW":  # a Wednesday (unlisted in a monthly's week: no quote)
                wed = d + timedelta(days=(2 - d.weekday()) % 7 + 7 * int(rng.integers(0, 6)))
                expiry = wed if cal.is_session(wed) else cal.previous_session(wed)
            else:
                expiry = cal.next_session(d + timedelta(days=int(rng.integers(0, 61))), include=True)
            if sym.startswith("VIX"):
                strike = round(vix * float(rng.uniform(0.6, 2.5)) * 2) / 2
            else:
                strike = round(spx * float(rng.uniform(0.8, 1.2)) / 5) * 5
            rows.append((at.strftime("%Y-%m-%dT%H:%M"), sym, expiry.isoformat(), f"{strike:g}", str(rng.choice(["P", "C"]))))
    return rows[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--from", dest="first", default="2008-01-02")
    ap.add_argument("--to", dest="last", default="2025-12-31")
    ap.add_argument("--data", default=os.environ.get("SPX_BOT_DATA") or str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    data = Path(args.data)
    if not (data / "spx_daily.csv").is_file():
        print(f"bench/quote.py: no history in {data}; skipped")
        return 0
    first, last = date.fromisoformat(args.first), date.fromisoformat(args.last)
    raw = make_requests(data, args.rows, first, last)
    from bot.quote_cli import parse_at

    requests = [Request(parse_at(a), parse_option(s, e, k, r)) for a, s, e, k, r in raw]
    t0 = time.perf_counter()
    quoter = Quoter(data, first, last)
    t1 = time.perf_counter()
    quotes = quoter.quote_many(requests)
    t2 = time.perf_counter()
    quoted = sum(q is not None for q in quotes)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.csv", Path(tmp) / "out.csv"
        src.write_text("at,symbol,expiry,strike,right\n" + "".join(",".join(r) + "\n" for r in raw))
        t3 = time.perf_counter()
        batch(src, dst, data)
        t4 = time.perf_counter()

    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    result = {
        "bench": "quote", "rows": len(requests), "moments": len({r.at for r in requests}), "quoted": quoted,
        "span": [args.first, args.last], "load_s": round(t1 - t0, 3), "price_s": round(t2 - t1, 3),
        "rows_per_s": round(len(requests) / (t2 - t1), 1),
        "end_to_end_s": round(t4 - t3, 3), "end_to_end_rows_per_s": round(len(requests) / (t4 - t3), 1),
        "target_rows_per_s": 1000, "commit": commit, "python": platform.python_version(),
        "machine": platform.machine(), "cpus": os.cpu_count(), "load_avg": list(os.getloadavg()),
        "when": datetime.now(NY).isoformat(timespec="seconds"),
    }
    print(f"quote batch: {result['rows']} rows at {result['moments']} moments ({quoted} quoted): "
          f"{result['rows_per_s']:,.0f} rows/s priced (load {result['load_s']} s); "
          f"end to end (CSV in, load, price, CSV out) {result['end_to_end_rows_per_s']:,.0f} rows/s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if result["rows_per_s"] >= 1000 else 1


if __name__ == "__main__":
    sys.exit(main())
