"""Running the variants of a backtest over the sessions, in lockstep on one market path.

Every variant of a run (and of a sweep) trades the same seeded intraday path: the market,
the calendar and the pricer are shared; each variant has its own simulated account. Groups
of variants can run in separate processes (`workers`): the path depends only on the data,
the seed and the date, and the pricer's cache only saves work, so a variant's result does
not depend on which group it ran in.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import time as _time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from bot.calendar import NY, TradingCalendar, ny_time
from bot.config import Config, HedgeConfig
from bot.data import DataError, load_history
from bot.schedule import CronJob
from bot.sim.exchange import ExchangeSettings
from bot.sim.market import HISTORY_LOOKBACK_DAYS, HistoryMarket

from bot.backtest.account import Account, BacktestExchange, Walker
from bot.backtest.pricer import Pricer
from bot.backtest.day import Day, Schedule, SessionTimes
from bot.backtest.hedges import SignalTrack, VxthRule, signal_key
from bot.backtest.variants import BuyHold, Variant, vxth_roll_days, warmup_closes

MAIN_VARIANTS = ("unhedged", "alvh", "vxth", "spx")
SWEEP_COUNTS = (0.5, 1.0, 2.0, 4.0, 8.0)
SWEEP_VEGA = (0.25, 0.50, 0.75)


@dataclass(frozen=True)
class VariantSpec:
    """name; kind: unhedged | alvh | vxth | spx; for alvh: a multiple of the 4/4/2 counts, or
    vega sizing at a vega target."""

    name: str
    kind: str
    count_multiple: float = 1.0
    vega_target: float | None = None
    sweep: bool = False

    def hedge_config(self, base: HedgeConfig) -> HedgeConfig:
        if self.kind != "alvh":
            return base
        data = base.model_dump()
        if self.vega_target is not None:
            data["sizing"] = "vega"
            data["vega_target"] = self.vega_target
        else:
            data["sizing"] = "count"
            for layer in ("front", "mid", "back"):
                data[layer]["count"] = base.layer(layer).count * self.count_multiple
        return HedgeConfig.model_validate(data)

    @property
    def label(self) -> str:
        if self.kind != "alvh":
            return self.name
        if self.vega_target is not None:
            return f"vega {self.vega_target:.0%}"
        return f"4/4/2 x {self.count_multiple:g}"


def variant_specs(names=MAIN_VARIANTS, sweep: bool = False) -> list[VariantSpec]:
    known = {"unhedged": VariantSpec("unhedged", "unhedged"), "alvh": VariantSpec("alvh", "alvh"),
             "vxth": VariantSpec("vxth", "vxth"), "spx": VariantSpec("spx", "spx")}
    out = []
    for n in names:
        if n not in known:
            raise ValueError(f"unknown variant {n!r} (known: {', '.join(known)})")
        out.append(known[n])
    if sweep:
        if "unhedged" not in names:
            out.insert(0, known["unhedged"])
        for m in SWEEP_COUNTS:
            if m == 1.0 and "alvh" in names:
                continue
            out.append(VariantSpec(f"alvh-x{m:g}", "alvh", count_multiple=m, sweep=True))
        for v in SWEEP_VEGA:
            out.append(VariantSpec(f"alvh-vega{int(round(v * 100))}", "alvh", vega_target=v, sweep=True))
    return out


@dataclass
class RunInputs:
    cfg: Config
    start: date
    end: date
    data_dir: Path
    commissions: str = "ib"
    vxth: VxthRule = field(default_factory=VxthRule)


@dataclass
class VariantResult:
    name: str
    kind: str
    label: str
    sweep: bool
    nl: list[float]
    notional: list[float]
    layers: tuple[str, ...]
    hedge_value: list[list[float]]
    stats: dict


@dataclass
class GroupResult:
    dates: list[str]
    vix: list[float]
    spx: list[float]
    tiers: list[int]
    activated: list[bool]
    variants: list[VariantResult]
    seconds: float
    sessions: int


# --------------------------------------------------------------------------- the world


class World:
    """The market, calendar, pricer and schedule of a run (built once per process)."""

    def __init__(self, inputs: RunInputs, base: World | None = None):
        """`base`: a World of the same data and dates (another seed's, seeds.py): its history,
        calendar and session times are reused; the seed's market and pricer are built anew."""
        cfg = inputs.cfg
        self.inputs = inputs
        self.cal = base.cal if base is not None else TradingCalendar(end=inputs.end + timedelta(days=400))
        history = base.history if base is not None else load_history(inputs.data_dir, *history_span(inputs))
        self.history = history
        sessions = self.cal.sessions_between(inputs.start, inputs.end)
        if not sessions:
            raise DataError(f"no trading session between {inputs.start} and {inputs.end}")
        if not history.covers(sessions[0], sessions[-1], sessions):
            span = history.complete_span()
            near = f"complete data: {span[0]}..{span[1]}" if span else "no complete data"
            missing = next((d for d in sessions if d not in history), None)
            why = f"; first session missing from spx_daily.csv: {missing}" if missing else ""
            raise DataError(f"history in {inputs.data_dir} does not cover {sessions[0]}..{sessions[-1]} "
                            f"(SPX, VIX and VIX futures rows needed on every session; {near}){why}")
        self.market = HistoryMarket(history, self.cal, cfg.sim.seed, cfg.sim.step_minutes)
        self.sessions = sessions
        s = cfg.sim
        self.settings = ExchangeSettings(s.account, s.starting_cash, s.commission_per_contract, s.fill_fraction,
                                         inputs.commissions)
        self.session_times = base.session_times if base is not None else SessionTimes(
            self.cal, sessions[0] - timedelta(days=10), inputs.end + timedelta(days=120))
        self.pricer = Pricer(self.market, self.cal, self.session_times)
        self.schedule_of = lambda vxth: self._schedule(vxth)
        self.walker = Walker(cfg.execution, s.fill_fraction)
        self.vxth_days = vxth_roll_days(self.cal, sessions[0], sessions[-1]) | {sessions[0]}

    def _schedule(self, vxth: bool) -> Schedule:
        c = self.inputs.cfg.condor
        hh, mm = (int(x) for x in c.entry_time.split(":"))
        entry = CronJob("condor.entry", hh, mm, c.entry_days, first_of_week=c.preset == "monthly",
                        before_close=timedelta(minutes=30))
        rh, rm = (int(x) for x in self.inputs.cfg.hedge.rebalance_time.split(":"))
        rebalance = CronJob("hedge.rebalance", rh, rm)
        return Schedule(self.cal, self.inputs.cfg.schedule.monitor_interval_s, entry, rebalance,
                        self.inputs.vxth.at if vxth else None, self.session_times)

    def account(self, name: str) -> Account:
        ex = BacktestExchange(self.market, self.cal, self.settings, self.pricer)
        return Account(ex, self.walker, f"{name}-")

    def build(self, spec: VariantSpec):
        cfg = self.inputs.cfg
        if spec.kind == "spx":
            return BuyHold(spec.name, cfg.sim.starting_cash)
        hedge = None if spec.kind == "unhedged" else spec.kind
        return Variant(spec.name, cfg, self.account(spec.name), hedge, spec.hedge_config(cfg.hedge), self.inputs.vxth)


def history_span(inputs: RunInputs) -> tuple[date, date]:
    """The days of history a run of inputs.start..end loads (its lookback included)."""
    return inputs.start - timedelta(days=HISTORY_LOOKBACK_DAYS), inputs.end


# --------------------------------------------------------------------------- one group


def run_group(inputs: RunInputs, specs: list[VariantSpec], progress=None, world: World | None = None,
              entries_until: datetime | None = None, hedge_log: bool = False,
              stop_at: datetime | None = None) -> GroupResult:
    """Run these variants over every session of inputs.start..end; `progress(n)` after each day.
    `entries_until`: no condor entries from then on (the daemon's `--for`); `hedge_log`: keep
    every hedge trade in the stats (parity checks)."""
    w = world or World(inputs)
    t0 = _time.perf_counter()
    variants = [w.build(s) for s in specs]
    for v in variants:
        v.stop_at = stop_at.timestamp() if stop_at is not None else None
        if getattr(v, "condors", None) is not None:
            v.condors.entries_until = entries_until
        if getattr(v, "alvh", None) is not None and hedge_log:
            v.alvh.log = []
    start_t = ny_time(w.sessions[0], "09:00")
    tracks: dict[tuple, SignalTrack] = {}
    track_of = {}
    closes = None
    for v in variants:
        if getattr(v, "alvh", None) is not None:
            key = signal_key(v.hedge_cfg)
            if key not in tracks:
                closes = closes if closes is not None else warmup_closes(w.market, start_t)
                tracks[key] = SignalTrack(v.hedge_cfg, closes)
            track_of[v.name] = tracks[key]
    # the shared record: VIX, SPX, ALVH tier / activation at each close (first track)
    # the record of the ALVH tier / activation after each close: the first ALVH account's state
    main_hedge = next((v.alvh for v in variants if getattr(v, "alvh", None) is not None), None)
    out_dates, out_vix, out_spx, out_tier, out_act = [], [], [], [], []
    has_vxth = any(getattr(v, "vxth", None) is not None for v in variants)
    schedule = w.schedule_of(has_vxth)
    with few_collections():
        for n, d in enumerate(w.sessions):
            day = Day(d, w.pricer, w.cal, schedule, has_vxth and d in w.vxth_days)
            for track in tracks.values():
                track.day(day)
            for v in variants:
                v.run_day(day, track_of.get(v.name))
            close_vix = float(day.arrays.vix[-1])
            for track in tracks.values():
                track.commit(close_vix)
            out_dates.append(d.isoformat())
            out_vix.append(close_vix)
            out_spx.append(float(day.arrays.spx[-1]))
            if main_hedge is not None:
                st = main_hedge.state
                out_tier.append(-1 if st.tier is None else int(st.tier))
                out_act.append(bool(st.activated))
            if progress is not None:
                progress(n + 1)
    results = [_result(s, v) for s, v in zip(specs, variants)]
    return GroupResult(out_dates, out_vix, out_spx, out_tier, out_act, results, _time.perf_counter() - t0,
                       len(w.sessions))


@contextmanager
def few_collections(young: int = 50_000):
    """The day loop makes millions of short-lived objects (quotes, instants, signals) and almost
    no reference cycles, beside a World of long-lived ones (the history, the calendar): those
    made before the loop are frozen out of the collector's scans, and the youngest generation
    is collected every `young` allocations instead of 700 (4-7% of an ALVH run, bench/README.md).
    Collection never changes a result; the settings are restored on the way out."""
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(young, old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def _result(spec: VariantSpec, v) -> VariantResult:
    s = v.series
    stats: dict = {}
    if getattr(v, "account", None) is not None:
        a = v.account
        stats["orders"] = a.orders
        stats["orders_rejected"] = a.rejected
        stats["orders_blocked"] = a.blocked
        stats["orders_timed_out"] = a.timed_out
        stats["commissions"] = round(float(a.commissions), 2)
        stats["interest"] = round(float(a.interest), 2)
        c = v.condors
        reasons: dict[str, int] = {}
        for cc in c.closed:
            reasons[cc.reason] = reasons.get(cc.reason, 0) + 1
        stats["condors_opened"] = len(c.closed) + len(c.open)
        stats["condors_closed"] = reasons
        stats["condor_pnl"] = round(float(sum(cc.pnl for cc in c.closed)), 2)
        stats["condor_skips"] = dict(sorted(c.skips.items()))
        stats["condor_rows"] = [
            (cc.condor.opened_at.astimezone(NY).date(), cc.condor.expiry, cc.condor.put_short, cc.condor.put_long,
             cc.condor.call_short, cc.condor.call_long, cc.condor.quantity, cc.condor.credit, cc.closed, cc.reason,
             cc.debit) for cc in c.closed] + [
            (o.opened_at.astimezone(NY).date(), o.expiry, o.put_short, o.put_long, o.call_short, o.call_long,
             o.quantity, o.credit, None, None, None) for o in c.open]
        if v.alvh is not None:
            h = v.alvh
            stats["hedge_decisions"] = h.decisions
            stats["hedge_actions"] = dict(sorted(h.actions.items()))
            stats["hedge_activations"] = h.activations
            stats["hedge_halted"] = h.state.halted
            stats["hedge_settlements_shared_by_layers"] = h.books.shared_settlements
            stats["layers"] = {layer: _book(b) for layer, b in h.books.books.items()}
            if h.log is not None:
                stats["hedge_log"] = h.log
        if v.vxth is not None:
            stats["vxth_buys"] = v.vxth.buys
            stats["vxth_months_without_calls"] = v.vxth.skipped_weight0
            stats["layers"] = {layer: _book(b) for layer, b in v.vxth.books.books.items()}
    return VariantResult(spec.name, spec.kind, spec.label, spec.sweep, s.nl, s.notional, tuple(v.layers),
                         s.hedge_value, stats)


def _book(b) -> dict:
    return {"premium_paid": round(float(b.premium_paid), 2), "premium_collected": round(float(b.premium_collected), 2),
            "commissions": round(float(b.commissions), 2)}


# --------------------------------------------------------------------------- several groups


_COST = {"spx": 0.05, "unhedged": 1.0, "vxth": 1.2, "alvh": 2.5}


def split(specs: list[VariantSpec], groups: int) -> list[list[VariantSpec]]:
    """Greedy balance by expected cost; order inside a group follows the input order."""
    groups = max(1, min(groups, len(specs)))
    load = [0.0] * groups
    members: list[list[int]] = [[] for _ in range(groups)]
    for i in sorted(range(len(specs)), key=lambda i: -_COST.get(specs[i].kind, 1.0)):
        g = min(range(groups), key=lambda g: (load[g], g))
        load[g] += _COST.get(specs[i].kind, 1.0)
        members[g].append(i)
    return [[specs[i] for i in sorted(m)] for m in members if m]


_counter = None


def _init(counter):
    global _counter
    _counter = counter


def _worker(args):
    inputs, specs, slot = args

    def tick(n):
        _counter[slot] = n  # sessions done by this group

    return run_group(inputs, specs, tick)


def run_all(inputs: RunInputs, specs: list[VariantSpec], workers: int = 1, progress: bool = True) -> GroupResult:
    """Run every spec; in `workers` processes when > 1. Returns one merged GroupResult with the
    variants in the order of `specs`. The progress bar counts sessions (of the slowest group)."""
    if workers <= 1 or len(specs) == 1:
        world = World(inputs)
        bar = _bar(progress, len(world.sessions))
        res = run_group(inputs, specs, (lambda n: bar.update(n - bar.n)) if bar is not None else None, world)
        if bar is not None:
            bar.close()
        return res
    groups = split(specs, workers)
    ctx = mp.get_context("fork")
    counter = ctx.Array("l", len(groups))
    n_sessions = len(TradingCalendar(end=inputs.end + timedelta(days=400)).sessions_between(inputs.start, inputs.end))
    bar = _bar(progress, n_sessions)
    with ctx.Pool(len(groups), initializer=_init, initargs=(counter,)) as pool:
        pending = pool.map_async(_worker, [(inputs, g, i) for i, g in enumerate(groups)])
        while not pending.ready():
            pending.wait(0.2)
            if bar is not None:
                bar.update(min(counter[:]) - bar.n)
        parts = pending.get()
    if bar is not None:
        bar.update(min(counter[:]) - bar.n)
        bar.close()
    by_name = {v.name: v for p in parts for v in p.variants}
    first = parts[0]
    tiers, acts = first.tiers, first.activated
    for p in parts:
        if p.tiers:
            tiers, acts = p.tiers, p.activated
            break
    return GroupResult(first.dates, first.vix, first.spx, tiers, acts, [by_name[s.name] for s in specs],
                       max(p.seconds for p in parts), first.sessions)


def _bar(progress: bool, total: int):
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, unit="day", desc="backtest", dynamic_ncols=True, leave=True)


def default_workers(n_specs: int) -> int:
    return max(1, min(os.cpu_count() or 1, n_specs))


__all__ = ["GroupResult", "RunInputs", "VariantResult", "VariantSpec", "World", "run_all", "run_group",
           "variant_specs"]
