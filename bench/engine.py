"""Engine throughput benchmark: simulated trading days per wall second at `--speed max`.

What is measured
----------------
The daemon's real code path, in this process, wired exactly as `spx-bot run` wires it
(bot/cli.py `_run_sim`): `SimClock(start, "max")`, a `SimExchange` on a fresh SQLite file, a
`Store` in a fresh temp dir, `SimBroker`, and `Engine(..., until=start + duration)` on the
1dte preset of config/sim.toml. JSON logs go to a temp file through `bot.log.setup_logging`
(console off), so the cost of logging every event is included. Not included: interpreter
start-up and imports, the control socket server and signal handlers (idle at speed max).

Scenarios (each repeated `--repeat` times, each repeat on fresh temp state and a freshly built
market, so no cache carries over between repeats):
  history    replay of the history files from 2022-01-03 for `--days` calendar days
             (skipped, with a one-line message, when the data folder is absent)
  synthetic  the seeded synthetic market (seed 7) from 2022-01-03 for `--days` days

Per scenario:
  wall_s      setup (building the market, which loads the history files, and the objects)
              plus the engine run (start -> run -> shutdown); median / min / max over repeats
  sessions    trading sessions from the start date to the simulated time the run ended
              (the engine runs a little past `until` to let the book go flat)
  days_per_s  sessions / median wall_s   <- the headline figure
  condors     condors opened (rows in the store's condor table)
  rss         peak RSS (getrusage ru_maxrss, KiB on Linux) after the timed repeats; it is the
              process high-water mark, so a later scenario can only show >= an earlier one
  tracemalloc peak Python heap of one extra, untimed run under tracemalloc (slower; not timed)
and `synthetic_over_history`: synthetic days/s divided by history days/s from the same run.

Target: a simulated year (365 calendar days) in under 30 s of wall time per scenario. With
`--days` other than 365 the year figure is projected linearly (wall_s * 365 / days).

Comparing runs: results go to bench/out/engine.json (or `--out`) with the git commit, python
version, machine and args. Compare `days_per_s` between two JSON files from the same machine
and the same args; treat differences within the min..max spread of the repeats as noise.

Usage:
  python bench/engine.py [--repeat N] [--days N] [--data DIR] [--out PATH] [--quick]
  (--quick = 30 days, 1 repeat: a smoke test, not a measurement)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/engine.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bot.calendar import NY, TradingCalendar, ny_time  # noqa: E402
from bot.config import load_config  # noqa: E402
from bot.data import DataError  # noqa: E402
from bot.log import setup_logging  # noqa: E402
from bot.sim.market import build_market  # noqa: E402
from bot.wiring import sim_daemon  # noqa: E402

CONFIG = ROOT / "config" / "sim.toml"
START = date(2022, 1, 3)
SEED = 7
TARGET_YEAR_S = 30.0
DEFAULT_OUT = ROOT / "bench" / "out" / "engine.json"


def find_data_dir(cli_value: str | None) -> Path | None:
    """--data, else $SPX_BOT_DATA, else ../shared/data beside the checkout (as tests/conftest.py)."""
    candidates = [cli_value] if cli_value else [os.environ.get("SPX_BOT_DATA"), ROOT.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "spx_daily.csv").exists():
            return Path(candidate)
    return None


@dataclass
class RunResult:
    setup_s: float
    run_s: float
    sessions: int
    condors: int
    reason: str
    end: datetime
    log_lines: int

    @property
    def wall_s(self) -> float:
        return self.setup_s + self.run_s


@dataclass
class Scenario:
    name: str
    source: str  # market.source: "history" | "synthetic"
    data_dir: Path | None
    runs: list[RunResult] = field(default_factory=list)
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    tracemalloc_peak_bytes: int | None = None


def rss_kib() -> int:
    """Peak resident set size of this process so far (KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


async def run_once(scn: Scenario, days: int, cal: TradingCalendar) -> RunResult:
    """One run on fresh temp state, wired as `spx-bot run --speed max` is (`bot.wiring.sim_daemon`)."""
    tmp = Path(tempfile.mkdtemp(prefix="spxbench", dir="/tmp"))
    try:
        t0 = time.perf_counter()
        cfg = load_config(CONFIG).with_overrides(**{
            "bot.store_path": str(tmp / "bot.sqlite"),
            "bot.log_path": str(tmp / "bot.jsonl"),
            "bot.control_socket": str(tmp / "ctl.sock"),
            "bot.console_log": False,
            "sim.state_path": str(tmp / "sim.sqlite"),
            "sim.speed": "max",
            "sim.seed": SEED,
            "sim.start": START.isoformat(),
            "market.source": scn.source,
        })
        s = cfg.sim
        start = ny_time(START, "09:00")
        until = start + timedelta(days=days)
        market = build_market(cfg.market.source, scn.data_dir, cal, start.date(), until.date(), s.seed,
                              s.step_minutes)
        daemon = sim_daemon(cfg, cal, market, start, until)
        daemon.log.info("bot.started", config=str(CONFIG), broker=daemon.broker.name, market=market.source,
                        market_reason=getattr(market, "reason", ""), speed="max", start=start.isoformat(),
                        until=until.isoformat(), bench=True)
        t1 = time.perf_counter()
        reason = "stopped"
        try:
            reason = await daemon.run()
        finally:
            end = daemon.clock.now()
            condors = len(daemon.store.condor_rows())
            daemon.close()
        t2 = time.perf_counter()
        sessions = len(cal.sessions_between(START, end.astimezone(NY).date()))
        # Detach the log sink from the temp file before it is removed.
        setup_logging(tmp / "detached.jsonl", cfg.bot.log_level, console=False)
        with open(cfg.bot.log_path, encoding="utf-8") as f:
            log_lines = sum(1 for _ in f)
        return RunResult(t1 - t0, t2 - t1, sessions, condors, reason, end, log_lines)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_scenario(scn: Scenario, days: int, repeat: int, cal: TradingCalendar) -> None:
    scn.rss_before_kib = rss_kib()
    for i in range(repeat):
        gc.collect()
        r = asyncio.run(run_once(scn, days, cal))
        scn.runs.append(r)
        print(f"  {scn.name:9s} repeat {i + 1}/{repeat}: {r.wall_s:7.2f} s  ({r.sessions} sessions, "
              f"{r.condors} condors, {r.log_lines} log lines; {r.reason})", flush=True)
    scn.rss_after_kib = rss_kib()


def measure_tracemalloc(scn: Scenario, days: int, cal: TradingCalendar) -> None:
    gc.collect()
    tracemalloc.start()
    try:
        asyncio.run(run_once(scn, days, cal))
        scn.tracemalloc_peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def summarize(scn: Scenario, days: int) -> dict:
    walls = [r.wall_s for r in scn.runs]
    med = statistics.median(walls)
    first = scn.runs[0]
    year_s = med * 365.0 / days
    return {
        "market": scn.source,
        "data_dir": str(scn.data_dir) if scn.data_dir else None,
        "start": START.isoformat(),
        "days": days,
        "repeats": len(walls),
        "wall_s": {"median": med, "min": min(walls), "max": max(walls), "all": walls},
        "setup_s_median": statistics.median(r.setup_s for r in scn.runs),
        "run_s_median": statistics.median(r.run_s for r in scn.runs),
        "sessions": first.sessions,
        "days_per_s": first.sessions / med if med > 0 else None,
        "condors_opened": first.condors,
        "log_lines": first.log_lines,
        "end_reason": first.reason,
        "sim_end": first.end.isoformat(),
        "deterministic": len({(r.sessions, r.condors, r.log_lines) for r in scn.runs}) == 1,
        "peak_rss_kib": scn.rss_after_kib,
        "rss_before_kib": scn.rss_before_kib,
        "tracemalloc_peak_bytes": scn.tracemalloc_peak_bytes,
        "year_s": year_s,
        "year_s_projected": days != 365,
        "target_year_s": TARGET_YEAR_S,
        "pass": year_s < TARGET_YEAR_S,
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10)
        return (out.stdout.strip() or None) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def print_table(results: dict, ratio: float | None) -> None:
    cols = ("scenario", "sessions", "setup s", "median s", "min s", "max s", "days/s", "condors",
            "peak RSS MiB", "tracemalloc MiB", "year s", "< 30 s")
    rows = []
    for name, r in results.items():
        tm = r["tracemalloc_peak_bytes"]
        rows.append((
            name, str(r["sessions"]), f"{r['setup_s_median']:.2f}", f"{r['wall_s']['median']:.2f}", f"{r['wall_s']['min']:.2f}",
            f"{r['wall_s']['max']:.2f}", f"{r['days_per_s']:.1f}", str(r["condors_opened"]),
            f"{r['peak_rss_kib'] / 1024:.0f}", f"{tm / 2**20:.1f}" if tm is not None else "-",
            f"{r['year_s']:.1f}" + ("*" if r["year_s_projected"] else ""), "PASS" if r["pass"] else "FAIL",
        ))
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    line = "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cols, widths)))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))))
    if any(r["year_s_projected"] for r in results.values()):
        print("* projected to 365 days from a shorter run")
    print("median/min/max s: wall time per run, setup (market build, history load) included")
    if ratio is not None:
        print(f"synthetic/history days/s: {ratio:.2f}")
    for name, r in results.items():
        verdict = "PASS" if r["pass"] else "FAIL"
        how = "projected " if r["year_s_projected"] else ""
        print(f"target 'a simulated year under {TARGET_YEAR_S:.0f} s' [{name}]: {verdict} "
              f"({how}{r['year_s']:.1f} s per simulated year)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="timed runs per scenario (default 3)")
    p.add_argument("--days", type=int, default=365, help="simulated calendar days per run (default 365)")
    p.add_argument("--data", help="history folder (default $SPX_BOT_DATA or ../shared/data)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"JSON output (default {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--quick", action="store_true", help="smoke test: 30 days, 1 repeat")
    args = p.parse_args(argv)
    if args.quick:
        args.days, args.repeat = 30, 1
    if args.repeat < 1 or args.days < 1:
        p.error("--repeat and --days must be >= 1")

    cal = TradingCalendar()
    scenarios: list[Scenario] = []
    data_dir = find_data_dir(args.data)
    if data_dir is None:
        where = args.data or os.environ.get("SPX_BOT_DATA") or ROOT.parent / "shared" / "data"
        print(f"history data not found ({where}: no spx_daily.csv): skipping the history scenario")
    else:
        scenarios.append(Scenario("history", "history", data_dir))
    scenarios.append(Scenario("synthetic", "synthetic", None))

    print(f"engine bench: 1dte preset, speed max, {args.days} days from {START}, {args.repeat} repeat(s)")
    results: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    for scn in scenarios:
        try:
            run_scenario(scn, args.days, args.repeat, cal)
        except DataError as e:  # history present but not covering the window, or malformed
            print(f"history scenario skipped: {e}")
            skipped[scn.name] = str(e)
    scenarios = [s for s in scenarios if s.name not in skipped]
    for scn in scenarios:  # after all timed runs, so tracemalloc's overhead cannot inflate their RSS
        print(f"  {scn.name:9s} tracemalloc run (untimed) ...", flush=True)
        measure_tracemalloc(scn, args.days, cal)
        results[scn.name] = summarize(scn, args.days)

    ratio = None
    if "history" in results and "synthetic" in results:
        ratio = results["synthetic"]["days_per_s"] / results["history"]["days_per_s"]
    print()
    print_table(results, ratio)

    report = {
        "benchmark": "engine",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "args": {"repeat": args.repeat, "days": args.days, "data": str(data_dir) if data_dir else None,
                 "quick": args.quick, "out": args.out},
        "config": str(CONFIG.relative_to(ROOT)),
        "preset": "1dte",
        "seed": SEED,
        "target": f"a simulated year under {TARGET_YEAR_S:.0f} s",
        "scenarios": results,
        "skipped": skipped,
        "synthetic_over_history": ratio,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
