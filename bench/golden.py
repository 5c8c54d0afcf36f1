"""Byte-identity check for speed work: dump whole backtest results of a tree, compare two dumps.

A speed change must not move a result. This runs `run_group` over five windows (1dte preset
2020, 2010-2011 seed 7, 2022 H1 with the 11-account ALVH sweep, 2008-2009 seed 3, and the
monthly preset 2018-2019) with every variant and the hedge trade log, and writes each
`GroupResult` (every float by repr) to OUT/<window>.txt (~20-40 s on 2 cores).

  cd /path/to/base-commit && python bench/golden.py OUT_BASE      # e.g. a detached worktree
  cd /path/to/your-tree   && python bench/golden.py OUT_NEW
  diff -rq OUT_BASE OUT_NEW && echo IDENTICAL
  python bench/golden.py OUT --quick                                # the first two windows

Each tree imports its own code (this file's folder's parent comes first on sys.path).
History files: --data, $SPX_BOT_DATA or ../shared/data.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.replay import find_data_dir  # noqa: E402

CASES = [  # name, config, from, to, seed (None: the config's), with the sweep
    ("sim-2020", "config/sim.toml", "2020-01-02", "2020-12-31", None, False),
    ("sim-2010", "config/sim.toml", "2010-01-04", "2011-06-30", 7, False),
    ("sim-2022-sweep", "config/sim.toml", "2022-01-03", "2022-07-29", None, True),
    ("monthly-2018", "config/monthly.toml", "2018-01-02", "2019-03-29", None, False),
    ("sim-2008", "config/sim.toml", "2008-06-02", "2009-03-31", 3, False),
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", help="folder for the dumps")
    p.add_argument("--data")
    p.add_argument("--quick", action="store_true", help="the first two windows only")
    args = p.parse_args(argv)
    data = find_data_dir(args.data)
    if data is None:
        print("bench/golden.py: history files not found (--data, $SPX_BOT_DATA or ../shared/data)", file=sys.stderr)
        return 2
    from bot.backtest.runner import RunInputs, World, run_group, variant_specs
    from bot.backtest.seeds import with_seed
    from bot.config import load_config

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, config, start, end, seed, sweep in CASES[:2] if args.quick else CASES:
        cfg = load_config(ROOT / config)
        if seed is not None:
            cfg = with_seed(cfg, seed)
        inputs = RunInputs(cfg, date.fromisoformat(start), date.fromisoformat(end), data)
        specs = variant_specs(["unhedged", "alvh", "vxth", "spx"], sweep=sweep)
        res = run_group(inputs, specs, world=World(inputs), hedge_log=True)
        text = repr((res.dates, res.vix, res.spx, res.tiers, res.activated,
                     [(v.name, v.nl, v.notional, v.layers, v.hedge_value, repr(sorted(v.stats.items())))
                      for v in res.variants]))
        (out / f"{name}.txt").write_text(text)
        print(name, hashlib.sha256(text.encode()).hexdigest()[:16], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
