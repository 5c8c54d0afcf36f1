"""Hedge safety over a replayed window: does the bot ever send an order that could leave a short
call uncovered, or sell what it does not hold, or leave a short call behind?

Runs `spx-bot run --speed max` on config/sim.toml (fresh state in a temp folder, the history in
`--data`) for each window, then audits:
  - the log: orders rejected by the simulated exchange (any reason; "naked" and "not held" are
    the ones this guards against), orders refused by the pre-send guard, `hedge.alert`,
    `reconcile.mismatch`, and how the run ended;
  - the simulated account's own executions and settlements, replayed in time order
    (`bot.sim.audit`): uncovered shorts after every moment, and short calls at the end.

Usage:
  python bench/hedge_safety.py [--data DIR] [--out PATH] [--window START:DURATION ...]
Default windows: the whole of 2022 (2022-01-03:365d) and 2022-07-18:30d. Exit 1 on a violation.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.sim.audit import audit_account  # noqa: E402
from bot.sim.exchange import ExchangeSettings, SimExchange  # noqa: E402


def fresh_config(folder: Path, base: Path = ROOT / "config" / "sim.toml") -> Path:
    """config/sim.toml with every state and log path moved into `folder` (absolute paths)."""
    text = base.read_text()
    paths = {"store_path": "bot.sqlite", "state_path": "account.sqlite", "log_path": "bot.jsonl",
             "control_socket": "c.sock"}
    for key, name in paths.items():
        text = re.sub(rf"^{key}\s*=.*$", f'{key} = "{folder / name}"', text, count=1, flags=re.M)
    text = re.sub(r"^console_log\s*=.*$", "console_log = false", text, count=1, flags=re.M)
    # a free HTTP port: several runs may go at once
    text = re.sub(r"(^\[http\][^\[]*?^port\s*=\s*)\d+", r"\g<1>0", text, count=1, flags=re.M | re.S)
    cfg = folder / "config.toml"
    cfg.write_text(text)
    return cfg


def run_window(start: str, duration: str, data: str, extra: list[str] | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="hedge-safety-") as tmp:
        folder = Path(tmp)
        cfg = fresh_config(folder)
        cmd = [sys.executable, "-m", "bot.cli", "run", "--config", str(cfg), "--speed", "max", "--start", start,
               "--for", duration, "--data", data, *(extra or [])]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - t0
        events = [json.loads(line) for line in (folder / "bot.jsonl").read_text().splitlines() if line.strip()]
        exchange = SimExchange(None, None, ExchangeSettings(), folder / "account.sqlite")
        try:
            audit = audit_account(exchange)
        finally:
            exchange.close()
    counts = Counter(e["event"] for e in events)
    rejected = [e for e in events if e["event"] == "order.rejected"]
    unsafe = [e for e in rejected if re.search(r"naked|not covered|not held|does not hold", e.get("reason", ""), re.I)]
    stopped = next((e for e in reversed(events) if e["event"] == "bot.stopped"), {})
    return {
        "window": f"{start}:{duration}", "exit_code": proc.returncode, "wall_s": round(wall, 1),
        "stderr_tail": proc.stderr.strip().splitlines()[-3:],
        "stopped": stopped.get("reason"),
        "orders_submitted": counts["order.submitted"], "orders_filled": counts["order.filled"],
        "orders_rejected": len(rejected), "rejected_naked_or_not_held": len(unsafe),
        "orders_refused_by_guard": counts["order.refused"], "hedge_alerts": counts["hedge.alert"],
        "reconcile_mismatches": counts["reconcile.mismatch"],
        "hedge_events": {k: v for k, v in sorted(counts.items()) if k.startswith("hedge.")},
        "refusals": [e.get("reason") for e in events if e["event"] == "order.refused"][:10],
        "audit": audit.as_dict() | {"violations": len(audit.violations)},
        "violation_samples": audit.as_dict()["violations"][:5],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("SPX_BOT_DATA", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "hedge_safety.json"))
    ap.add_argument("--window", action="append", help="START:DURATION, e.g. 2022-01-03:365d")
    args = ap.parse_args(argv)
    windows = args.window or ["2022-07-18:30d", "2022-01-03:365d"]
    results = []
    for w in windows:
        start, duration = w.split(":")
        r = run_window(start, duration, args.data)
        results.append(r)
        a = r["audit"]
        print(f"{r['window']:>18}  wall {r['wall_s']:6.1f}s  exit {r['exit_code']}  orders {r['orders_submitted']:4d}"
              f"  rejected {r['orders_rejected']} (naked/not held {r['rejected_naked_or_not_held']})"
              f"  refused {r['orders_refused_by_guard']}  alerts {r['hedge_alerts']}"
              f"  mismatches {r['reconcile_mismatches']}  executions {a['executions']}"
              f"  uncovered moments {a['violations']}  short calls at end {a['short_calls_at_end'] or 0}"
              f"  [{r['stopped']}]")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    bad = any(r["rejected_naked_or_not_held"] or r["audit"]["violations"] or r["audit"]["short_calls_at_end"]
              or r["hedge_alerts"] or r["exit_code"] for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
