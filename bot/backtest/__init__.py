"""Backtest of the condor strategy, unhedged and hedged, on real daily history.

The CLI entry points:

- `run_backtest(cfg, start, end, out_dir, data_dir, sweep=False, progress=True, variants=...,
  seeds=None)` -> exit code (`spx-bot backtest --config PATH --from DATE --to DATE --out DIR
  [--data DIR] [--sweep] [--seeds N | --seed-list 7,8,9]`); several seeds: seeds.py;
- `data_check(dir)` -> exit code (`spx-bot data check DIR`);
- `data_fetch(dir)` -> exit code (`spx-bot data fetch DIR`).

See bot/backtest/variants.py for how the daemon's jobs are replayed (day.py: the instants and
chains of a session; condors.py, hedges.py: the jobs of an account), account.py for orders and
fills, pricer.py for quotes, report.py for what the report measures.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

from bot.data import DataError
from bot.datacheck import REQUIRED, data_check, data_fetch, prepare

from bot.backtest.runner import MAIN_VARIANTS, RunInputs, default_workers, run_all, variant_specs

USED_FILES = (*REQUIRED, "vix9d_daily.csv", "vix3m_daily.csv", "vvix_daily.csv", "tbill_3m_daily.csv")

__all__ = ["MAIN_VARIANTS", "data_check", "data_fetch", "run_backtest"]


def run_backtest(cfg, start: date, end: date, out_dir: Path, data_dir: Path, sweep: bool = False,
                 progress: bool = True, variants=MAIN_VARIANTS, workers: int | None = None,
                 commissions: str = "ib", charts: bool = True, out=None, seeds: list[int] | None = None) -> int:
    """Run the backtest and write DIR/report.md, report.json, equity.csv, the PNG charts and
    timing.json. Returns 0, or 2 after printing one line (bad dates, missing or bad data).
    `seeds`: the intraday-path seeds (None: the config's); with several, the report gives each
    headline figure's median and range and judges the claims on the median; the detail, the
    equity file and the charts are the first seed's."""
    from bot.backtest.seeds import cpu_seconds, run_seeds, with_seed

    out = out or sys.stdout
    seeds = list(seeds) if seeds else [cfg.sim.seed]
    cfg = with_seed(cfg, seeds[0])
    if start > end:
        print(f"spx-bot: backtest: --from {start} is after --to {end}", file=sys.stderr)
        return 2
    out_dir = Path(out_dir)
    try:
        specs = variant_specs(tuple(variants), sweep)
        data = prepare(data_dir, Path(out_dir) / ".data")
        inputs = RunInputs(cfg, start, end, data, commissions=commissions)
        t0, cpu0 = time.perf_counter(), cpu_seconds()
        if len(seeds) == 1:
            n_workers = workers if workers is not None else _workers(specs, sweep)
            results = [run_all(inputs, specs, n_workers, progress)]
        else:
            n_workers = workers if workers is not None else default_workers(len(seeds))
            results = run_seeds(inputs, specs, seeds, n_workers, progress)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        res = results[0]
    except DataError as e:
        print(f"spx-bot: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"spx-bot: backtest: {e}", file=sys.stderr)
        return 2
    from bot.backtest import report as R
    from bot.backtest.report_md import conclusion

    files = {n: R.sha256(data / n) for n in USED_FILES if (data / n).is_file()}
    reports = [R.build(r, replace(inputs, cfg=with_seed(cfg, s)), files) for s, r in zip(seeds, results)]
    rep = reports[0]
    if len(seeds) > 1:
        rep = R.with_seeds(rep, seeds, reports)
    paths = R.write(rep, res, out_dir, charts=charts)
    timing = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "sessions": res.sessions, "variants": len(specs),
              "seeds": len(seeds), "workers": n_workers,
              "days_per_s": round(res.sessions * len(seeds) / wall, 1) if wall > 0 else None,
              "cpu_count": os.cpu_count()}
    (out_dir / "timing.json").write_text(json.dumps(timing, indent=2) + "\n", encoding="utf-8")
    print(conclusion(rep) or "backtest done", file=out)
    print(f"{res.sessions} sessions, {len(specs)} variants, {len(seeds)} seed{'s' if len(seeds) > 1 else ''}, "
          f"{wall:.1f} s wall, {cpu:.1f} s CPU; wrote " + ", ".join(p.name for p in paths) + f" in {out_dir}",
          file=out)
    return 0


def _workers(specs, sweep: bool) -> int:
    """Measured on 2 cores (bench/replay.py and the full runs): the four variants of a report
    run in 20.6 s in two processes (ALVH alone in one) against 28.5 s in one; the 11-account
    sweep runs faster in one process (99 s against 121 s), where its accounts share the day's
    pricing. With more cores the sweep is split into groups of about three accounts."""
    cores = os.cpu_count() or 1
    heavy = sum(1 for s in specs if s.kind != "spx")
    if not sweep:
        return max(1, min(cores, 2, heavy))
    if cores <= 2:
        return 1
    return default_workers(max(1, heavy // 3))
