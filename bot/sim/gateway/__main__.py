"""`python -m bot.sim.gateway [--config PATH] [--port N] [--speed N|max] [--start YYYY-MM-DD]
[--data DIR]`: the simulated gateway alone, until Ctrl-C (what `spx-bot sim-gateway` runs)."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from . import run_gateway


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bot.sim.gateway", description=__doc__)
    p.add_argument("--config", default=str(Path(__file__).resolve().parents[3] / "config" / "sim.toml"))
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--speed", default=None, help="simulated seconds per real second, or max")
    p.add_argument("--start", type=date.fromisoformat, default=None)
    p.add_argument("--data", default=None, help="history directory (market.source auto/history)")
    args = p.parse_args(argv)
    from bot.config import ConfigError, load_config
    from bot.log import setup_logging

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"sim-gateway: {e}", file=sys.stderr)
        return 2
    setup_logging(cfg.bot.log_path.replace("bot.jsonl", "sim-gateway.jsonl"), cfg.bot.log_level, console=False)
    return run_gateway(cfg, port=args.port, speed=args.speed, start=args.start, data_dir=args.data)


if __name__ == "__main__":
    raise SystemExit(main())
