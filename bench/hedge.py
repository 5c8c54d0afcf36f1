"""Time one live VIX update through the hedge's pure path: indicators (peek at the forming
bar), targets and the ALVH decision, as `HedgeManager._evaluate` runs them on every tick.

Two cases, each timed per call with perf_counter_ns over many updates (median and p99):
- "update": a plain tick (no trigger): buy-back / monetize checks only, no chains needed;
- "rebalance": a scheduled evaluation with the three layer chains and the write chain (54
  strikes each), a hedged book with shorts: rolls, targets and writes are all evaluated.

    python bench/hedge.py [--updates N] [--out PATH]

Prints the figures and writes JSON (bench/out/hedge.json) so runs can be compared; compare
medians on one machine, and the ratio rebalance/update measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import subprocess
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.config import load_config  # noqa: E402
from bot.domain import ChainRow, Greeks, OptionSpec, Quote, Right  # noqa: E402
from bot.indicators import VixSignals  # noqa: E402
from bot.pricing import black76_greeks, black76_price  # noqa: E402
from strategies import alvh  # noqa: E402

TODAY = date(2022, 3, 1)
EXPIRIES = {"front": date(2022, 3, 15), "mid": date(2022, 4, 19), "back": date(2022, 5, 18), "write": date(2022, 3, 9)}


def chain(expiry: date, future: float, tc: str) -> tuple[ChainRow, ...]:
    T = (expiry - TODAY).days / 365
    strikes = [10 + 0.5 * i for i in range(20)] + list(range(20, 54))
    rows = []
    for k in strikes:
        p = float(black76_price(future, k, T, 0.9, 0.0, True))
        g = black76_greeks(future, k, T, 0.9, 0.0, True)
        q = Quote(Decimal(str(round(max(0.0, p - 0.05), 2))), Decimal(str(round(p + 0.05, 2))),
                  Greeks(float(g["delta"]), 0.0, float(g["vega"]), 0.0, 0.9), future)
        rows.append(ChainRow(OptionSpec("VIX", expiry, Decimal(str(k)), Right.CALL, tc), q))
    return tuple(rows)


def setup():
    cfg = load_config(ROOT / "config" / "sim.toml").hedge
    rng = random.Random(7)
    closes = [max(9.0, 18 + rng.gauss(0, 1) * 3) for _ in range(300)]
    sig = VixSignals(cfg.rsi_period, cfg.macd_fast, cfg.macd_slow, cfg.macd_signal)
    sig.warm_up(closes)
    chains = {k: chain(d, 19.0 + i, "VIXW" if k == "write" else "VIX") for i, (k, d) in enumerate(EXPIRIES.items())}
    quotes = {r.option.key: r.quote for rows in chains.values() for r in rows}
    held = [alvh.Lot("front", chains["front"][28].option, 8, Decimal("1.0")),
            alvh.Lot("mid", chains["mid"][30].option, 8, Decimal("1.2")),
            alvh.Lot("back", chains["back"][32].option, 4, Decimal("1.4")),
            alvh.Lot("mid", chains["write"][40].option, -4, Decimal("0.5"))]
    book = alvh.HedgeBook(tuple(held), Decimal(200_000))
    return cfg, sig, chains, quotes, book, rng


def one_update(cfg, sig, market, book, state, vix, scheduled):
    v = sig.peek(vix)
    signals = alvh.Signals(vix, v.rsi, v.macd, v.signal)
    return alvh.decide(signals, market, book, state, cfg, scheduled)


def measure(n: int, scheduled: bool) -> dict:
    cfg, sig, chains, quotes, book, rng = setup()
    held_quotes = {lot.option.key: quotes[lot.option.key] for lot in book.lots}
    market = alvh.HedgeMarket(TODAY, 19.0, chains if scheduled else {}, held_quotes)
    state = alvh.HedgeState(tier=1, rsi=50.0)
    samples = []
    for _ in range(n):
        vix = 19.0 + rng.uniform(-0.3, 0.3)
        t0 = time.perf_counter_ns()
        one_update(cfg, sig, market, book, state, vix, scheduled)
        samples.append((time.perf_counter_ns() - t0) / 1000)
    samples.sort()
    return {"n": n, "median_us": round(statistics.median(samples), 2),
            "p99_us": round(samples[int(0.99 * (n - 1))], 2), "min_us": round(samples[0], 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=20000)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "hedge.json"))
    args = ap.parse_args()
    update = measure(args.updates, scheduled=False)
    rebalance = measure(max(200, args.updates // 50), scheduled=True)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    result = {"bench": "hedge", "commit": commit, "python": platform.python_version(), "machine": platform.platform(),
              "update": update, "rebalance": rebalance,
              "ratio_rebalance_to_update": round(rebalance["median_us"] / update["median_us"], 1),
              "target_update_median_us": 50, "pass": update["median_us"] < 50}
    print("one VIX update through indicators, targets and the ALVH decision")
    print(f"  update    (tick, no trigger):  median {update['median_us']:8.2f} us   p99 {update['p99_us']:8.2f} us"
          f"   n={update['n']}")
    print(f"  rebalance (chains, writes):    median {rebalance['median_us']:8.2f} us   p99 {rebalance['p99_us']:8.2f} us"
          f"   n={rebalance['n']}")
    print(f"  target: update median < 50 us: {'PASS' if result['pass'] else 'FAIL'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
