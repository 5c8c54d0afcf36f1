"""A backtest over several seeds: the same history, config and code on N intraday paths.

The seed (`sim.seed`) is the only randomness of a run: it draws the intraday path through each
day's real open, high, low and close. One seed's figures are one draw; a 1DTE run's unhedged
max drawdown was 41.7%, 62.8% and 75.6% on seeds 7, 8 and 9. So the report runs N seeds and
gives each headline figure's median and range (report.seeds_summary).

Each seed runs every variant in one process, seeds spread over `workers` processes, forked
after one World is built: every seed reuses its history files, calendar and session times (a
World's seed-free parts; about 3.5 s of CPU each) and builds its own market path and pricer. A
seed's result depends only on the data, the config and its seed, never on the process it ran
in or the order.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import replace

from bot.config import Config

from bot.backtest.runner import GroupResult, RunInputs, VariantSpec, World, run_group

DEFAULT_SEEDS = 10
MAX_SEEDS = 1000
SEED_MAX = 2**32 - 1  # sim.seed's bound (numpy seeds are unsigned 32-bit)


def seeds_from(base: int, count: int) -> list[int]:
    """`--seeds N`: the config's seed and the N - 1 after it (N = 1 is the one-seed run)."""
    if not 1 <= count <= MAX_SEEDS:
        raise ValueError(f"bad number of seeds {count}: 1-{MAX_SEEDS}")
    if base + count - 1 > SEED_MAX:
        raise ValueError(f"seeds {base}..{base + count - 1} pass {SEED_MAX}")
    return list(range(base, base + count))


def parse_seed_list(text: str) -> list[int]:
    """`--seed-list 7,8,9`: distinct seeds 0..2**32-1, in the order given; ValueError in one line."""
    parts = [p.strip() for p in text.split(",")]
    try:
        seeds = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"bad seed list {text!r}: comma-separated integers, e.g. 7,8,9") from None
    if not seeds or len(seeds) > MAX_SEEDS:
        raise ValueError(f"bad seed list {text!r}: 1-{MAX_SEEDS} seeds")
    if any(not 0 <= s <= SEED_MAX for s in seeds):
        raise ValueError(f"bad seed list {text!r}: seeds are 0-{SEED_MAX}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"bad seed list {text!r}: a seed is repeated")
    return seeds


def with_seed(cfg: Config, seed: int) -> Config:
    return cfg.model_copy(update={"sim": cfg.sim.model_copy(update={"seed": seed})})


# --------------------------------------------------------------------------- the processes

_base = None  # built once in the parent, inherited by the forked workers
_counter = None  # sessions done, per seed


def _init(counter, base) -> None:
    global _counter, _base
    _counter, _base = counter, base


def _run_one(args) -> GroupResult:
    inputs, specs, slot = args

    def tick(n):
        _counter[slot] = n

    return run_group(inputs, specs, tick, _world(inputs, _base))


def _world(inputs: RunInputs, base: World) -> World:
    return base if base.inputs.cfg.sim.seed == inputs.cfg.sim.seed else World(inputs, base)


def run_seeds(inputs: RunInputs, specs: list[VariantSpec], seeds: list[int], workers: int = 1,
              progress: bool = False) -> list[GroupResult]:
    """Every variant of `specs` on each seed; results in the order of `seeds`. The history is
    loaded once; seeds run in up to `workers` processes; the bar counts sessions over all seeds."""
    per_seed = [replace(inputs, cfg=with_seed(inputs.cfg, s)) for s in seeds]
    base = World(per_seed[0])  # DataError here, in this process, when the files do not cover the run
    bar = _bar(progress, len(base.sessions) * len(seeds), len(seeds))
    workers = max(1, min(workers, len(seeds)))
    if workers == 1:
        counter = [0] * len(seeds)
        out = []
        for slot, one in enumerate(per_seed):
            def tick(n, slot=slot):
                counter[slot] = n
                if bar is not None:
                    bar.update(sum(counter) - bar.n)
            out.append(run_group(one, specs, tick, _world(one, base)))
        if bar is not None:
            bar.close()
        return out
    ctx = mp.get_context("fork")
    counter = ctx.Array("l", len(seeds))
    pool = ctx.Pool(workers, initializer=_init, initargs=(counter, base))
    try:
        pending = pool.map_async(_run_one, [(one, specs, i) for i, one in enumerate(per_seed)], chunksize=1)
        while not pending.ready():
            pending.wait(0.25)
            if bar is not None:
                bar.update(sum(counter[:]) - bar.n)
        out = pending.get()
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()  # reaped: their CPU time counts in os.times() of the parent
        if bar is not None:
            bar.update(sum(counter[:]) - bar.n)
            bar.close()
    return out


def _bar(progress: bool, total: int, seeds: int):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="day", desc=f"backtest x{seeds} seeds" if seeds > 1 else "backtest",
                dynamic_ncols=True, leave=True, unit_scale=False)


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the workers), user + system."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


__all__ = ["DEFAULT_SEEDS", "cpu_seconds", "parse_seed_list", "run_seeds", "seeds_from", "with_seed"]
