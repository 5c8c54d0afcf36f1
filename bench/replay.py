"""Backtest throughput: simulated trading days per second, and peak memory.

What is measured
----------------
`bot.backtest.runner.run_group` / `run_all` over real history (default 2004-03-26 to
2026-07-23, the whole span with VIX futures) on the 1dte preset of config/sim.toml:

  one        one variant, condors unhedged, one process      <- aim: >= 500 days/s
  alvh       one variant, condors + ALVH, one process        <- aim: >= 500 days/s (issue 11)
  four       the four variants of a report (unhedged, alvh, vxth, spx) in one process
  four-par   the same four in `--workers` processes (default: the machine's cores)
                                                                <- aim: the whole run < 60 s

Each scenario runs in a child process of its own (fresh imports and caches), so its peak
RSS (`ru_maxrss`, the process plus its worker processes) is its own. Per scenario:

  setup_s     building the world: loading and checking the history files, the calendar
  run_s       the day loop (all variants, all sessions)
  days_per_s  sessions / run_s                                  <- the headline figure
  cpu_s       CPU seconds of the run (process + workers): days per CPU second does not
              depend on other jobs sharing the cores; wall time does
  peak_rss_mib

The machine's load average is recorded before and after: other work on the same cores slows
the wall-clock figures (compare cpu_s between runs then).

Usage:
  python bench/replay.py                       # all scenarios, whole history (~2 min)
  python bench/replay.py --quick               # 2022-2023 only: a smoke test
  python bench/replay.py --scenarios one,four --from 2010-01-04 --to 2019-12-31
  python bench/replay.py --config config/monthly.toml --out /tmp/replay-monthly.json
  python bench/replay.py --profile one         # cProfile of a scenario, top 30 by own time
Results: bench/out/replay.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_OUT = ROOT / "bench" / "out" / "replay.json"
SCENARIOS = {
    "one": (["unhedged"], 1),
    "alvh": (["alvh"], 1),
    "four": (["unhedged", "alvh", "vxth", "spx"], 1),
    "four-par": (["unhedged", "alvh", "vxth", "spx"], None),
}


def find_data_dir(cli_value: str | None) -> Path | None:
    for c in ([cli_value] if cli_value else [os.environ.get("SPX_BOT_DATA"), ROOT.parent / "shared" / "data"]):
        if c and (Path(c) / "spx_daily.csv").exists():
            return Path(c)
    return None


def rss_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0  # KiB on Linux


def cpu_s() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def child(args) -> dict:
    """One scenario in this process; prints its JSON."""
    from bot.backtest.runner import RunInputs, World, run_all, run_group, variant_specs
    from bot.config import load_config

    names, workers = SCENARIOS[args.scenario]
    workers = workers or args.workers or os.cpu_count() or 1
    cfg = load_config(args.config)
    inputs = RunInputs(cfg, date.fromisoformat(args.start), date.fromisoformat(args.end), Path(args.data))
    specs = variant_specs(names)
    t0, c0 = time.perf_counter(), cpu_s()
    if workers == 1:
        world = World(inputs)
        t1, c1 = time.perf_counter(), cpu_s()
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            res = run_group(inputs, specs, world=world)
            prof.disable()
            pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(30)
        else:
            res = run_group(inputs, specs, world=world)
        sessions = len(world.sessions)
    else:
        t1, c1 = t0, c0  # each worker builds its own world: setup is inside the run
        res = run_all(inputs, specs, workers=workers, progress=False)
        sessions = res.sessions
    t2, c2 = time.perf_counter(), cpu_s()
    return {
        "scenario": args.scenario, "variants": names, "workers": workers, "sessions": sessions,
        "setup_s": round(t1 - t0, 3), "run_s": round(t2 - t1, 3), "wall_s": round(t2 - t0, 3),
        "cpu_s": round(c2 - c0, 3), "days_per_s": round(sessions / (t2 - t1), 1),
        "days_per_cpu_s": round(sessions / max(c2 - c1, 1e-9), 1), "peak_rss_mib": round(rss_mib(), 1),
        "final_nl": {v.name: round(v.nl[-1], 2) for v in res.variants},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--from", dest="start", default="2004-03-26")
    p.add_argument("--to", dest="end", default="2026-07-23")
    p.add_argument("--config", default=str(ROOT / "config" / "sim.toml"))
    p.add_argument("--data")
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--workers", type=int, default=0, help="processes for four-par (default: cores)")
    p.add_argument("--quick", action="store_true", help="2022-2023 only")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--profile", metavar="SCENARIO", help="cProfile one single-process scenario")
    p.add_argument("--scenario", help=argparse.SUPPRESS)  # internal: run one scenario in this process
    args = p.parse_args(argv)
    data = find_data_dir(args.data)
    if data is None:
        print("bench/replay.py: history files not found (--data, $SPX_BOT_DATA or ../shared/data); skipped")
        return 0
    args.data = str(data)
    if args.quick:
        args.start, args.end = "2022-01-03", "2023-12-29"
    if args.scenario:
        print(json.dumps(child(args)))
        return 0
    if args.profile:
        args.scenario = args.profile
        print(json.dumps(child(argparse.Namespace(**{**vars(args), "profile": True}))))
        return 0
    results = []
    load_before = os.getloadavg()
    for name in args.scenarios.split(","):
        cmd = [sys.executable, __file__, "--scenario", name, "--from", args.start, "--to", args.end, "--config",
               args.config, "--data", args.data, "--workers", str(args.workers)]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 1
        res = json.loads(r.stdout.strip().splitlines()[-1])
        results.append(res)
        print(f"{name:9s} {res['sessions']} sessions x {len(res['variants'])} variant(s), {res['workers']} process(es): "
              f"run {res['run_s']:.1f} s + setup {res['setup_s']:.1f} s = {res['wall_s']:.1f} s wall, "
              f"{res['days_per_s']:.0f} days/s ({res['days_per_cpu_s']:.0f} per CPU s), "
              f"peak RSS {res['peak_rss_mib']:.0f} MiB", flush=True)
    load_after = os.getloadavg()
    one = next((r for r in results if r["scenario"] == "one"), None)
    hedged = next((r for r in results if r["scenario"] == "alvh"), None)
    four = next((r for r in results if r["scenario"] == "four-par"), None) or next(
        (r for r in results if r["scenario"] == "four"), None)
    summary = {
        "one_variant_days_per_s": one and one["days_per_s"], "one_variant_aim": 500,
        "one_variant_pass": bool(one and one["days_per_s"] >= 500),
        "alvh_days_per_s": hedged and hedged["days_per_s"], "alvh_days_per_cpu_s": hedged and hedged["days_per_cpu_s"],
        "alvh_aim": 500, "alvh_pass": bool(hedged and hedged["days_per_s"] >= 500),
        "four_variants_wall_s": four and four["wall_s"], "four_variants_aim_s": 60,
        "four_variants_pass": bool(four and four["wall_s"] < 60),
    }
    doc = {
        "benchmark": "replay", "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "machine": platform.platform(), "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before], "load_average_after": [round(x, 2) for x in load_after],
        "args": {"from": args.start, "to": args.end, "config": str(args.config), "data": args.data},
        "scenarios": results, "summary": summary,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"summary: one variant {summary['one_variant_days_per_s']} days/s (aim >= 500: "
          f"{'met' if summary['one_variant_pass'] else 'NOT met'}); alvh {summary['alvh_days_per_s']} days/s, "
          f"{summary['alvh_days_per_cpu_s']} per CPU s (aim >= 500: {'met' if summary['alvh_pass'] else 'NOT met'}); four variants {summary['four_variants_wall_s']} s "
          f"(aim < 60 s: {'met' if summary['four_variants_pass'] else 'NOT met'}); load average "
          f"{load_before[0]:.2f} -> {load_after[0]:.2f} on {os.cpu_count()} cores; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
