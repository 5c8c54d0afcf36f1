"""One session of the backtest, shared by every variant: the instants at which the daemon's
jobs fire (`Schedule`, from `CronJob.fire_on` and the session times), the market's path, and
the SPX entry snapshots and VIX chains priced once in numpy (`Day`, `ChainData`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from datetime import date, datetime, time
from decimal import Decimal
from typing import NamedTuple

import numpy as np

from bot.calendar import NY, UTC, TradingCalendar
from bot.config import CondorConfig
from bot.domain import ChainRow, MarketSnapshot, OptionSpec, Quote, Right
from bot.schedule import CronJob
from bot.sim import listing
from bot.sim.exchange import decimal_price
from strategies import iron_condor as ic

from bot.backtest.pricer import Pricer

# --------------------------------------------------------------------------- instants


class Instant(NamedTuple):
    index: int
    ts: float
    step: int
    jobs: tuple[str, ...]  # in the daemon's job order: entry, monitor, rebalance, vxth, close
    spx: float
    vix: float

    @property
    def t(self) -> datetime:
        return datetime.fromtimestamp(self.ts, UTC)

    def moved(self, ts: float, step: int, spx: float | None = None, vix: float | None = None) -> Instant:
        """The same instant (same jobs) at a later time ts, on step `step` of the path."""
        return self._replace(ts=ts, step=step, spx=self.spx if spx is None else spx,
                             vix=self.vix if vix is None else vix)


JOB_ORDER = {"entry": 0, "monitor": 1, "rebalance": 2, "vxth": 3, "close": 4}


class SessionTimes:
    """Open and close (UTC, POSIX seconds) of every session of start..end, from the calendar's
    table (`TradingCalendar.open_close`), as floats for the arrays."""

    def __init__(self, cal: TradingCalendar, start: date, end: date):
        self.times: dict[date, tuple[float, float]] = {}
        for d in cal.sessions_between(start, end):
            o, c = cal.open_close(d)
            self.times[d] = (o.timestamp(), c.timestamp())

    def get(self, d: date) -> tuple[float, float] | None:
        return self.times.get(d)


@dataclass
class Schedule:
    """The jobs of a run, at the times the daemon's scheduler (bot/schedule.py) fires them."""

    cal: TradingCalendar
    monitor_s: int
    entry: CronJob | None
    rebalance: CronJob | None
    vxth_time: time | None = None
    sessions: SessionTimes | None = None

    def fire(self, job: CronJob, d: date) -> datetime | None:
        """`CronJob.fire_on` with the session's close from the run's session times."""
        if not self.cal.is_session(d):
            return None
        return job.fire_on(self.cal, d, self.open_close(d)[1])

    def open_close(self, d: date) -> tuple[datetime, datetime]:
        got = self.sessions.get(d) if self.sessions is not None else None
        if got is None:
            return self.cal.open_close(d)
        return datetime.fromtimestamp(got[0], UTC), datetime.fromtimestamp(got[1], UTC)

    def instants(self, d: date, day, vxth_day: bool) -> list[Instant]:
        open_, close = self.open_close(d)
        open_ts, close_ts = open_.timestamp(), close.timestamp()
        n_mon = int(math.ceil((close_ts - open_ts) / self.monitor_s))  # open + n*interval < close
        jobs: dict[float, tuple[str, ...]] = dict.fromkeys([open_ts + n * self.monitor_s for n in range(1, n_mon)],
                                                           _MONITOR)
        others: list[tuple[float, str]] = []
        for name, job in (("entry", self.entry), ("rebalance", self.rebalance)):
            if job is not None:
                t = self.fire(job, d)
                if t is not None and open_ <= t < close:
                    others.append((t.timestamp(), name))
        if vxth_day and self.vxth_time is not None:
            ts = datetime.combine(d, self.vxth_time, NY).timestamp()
            if open_ts <= ts < close_ts:
                others.append((ts, "vxth"))
        others.append((close_ts + 60.0, "close"))  # SessionJob("close", +1 min)
        for ts, name in others:
            jobs[ts] = tuple(sorted(jobs.get(ts, ()) + (name,), key=JOB_ORDER.__getitem__))
        step_s, last = day.step_s, len(day.stamps) - 1
        times = sorted(jobs)
        steps = [last if ts >= close_ts else int((ts - open_ts) // step_s) for ts in times]
        spx, vix = day.spx.tolist(), day.vix.tolist()
        # Instant(i, ts, step, jobs, spx, vix) for each, built by tuple.__new__ (no Python frame per instant)
        return list(map(_new_instant, zip(range(len(times)), times, steps, map(jobs.__getitem__, times),
                                           map(spx.__getitem__, steps), map(vix.__getitem__, steps))))


_MONITOR = ("monitor",)  # the jobs of most instants: one tuple for all
_new_instant = partial(tuple.__new__, Instant)

# --------------------------------------------------------------------------- shared per-day data


class ChainData:
    """One VIX option chain priced in numpy (exchange-identical arrays): what the pure code's
    delta choice needs, and the quotes of the rows handed to it."""

    def __init__(self, expiry: date, tclass: str, strikes: list[Decimal], a: dict[str, np.ndarray] | None):
        self.expiry = expiry
        self.tclass = tclass
        self.decimal_strikes = strikes
        self.a = a
        if a is None:
            self.strikes = np.empty(0)
            self.delta = np.empty(0)
            self.usable = np.empty(0, dtype=bool)
        else:
            self.strikes = np.array([float(k) for k in strikes])
            self.delta = a["delta"]
            self.usable = np.round(a["ask"], 2) > 0

    def __len__(self) -> int:
        return len(self.strikes)

    def by_delta(self, target: float, min_strike: float | None = None) -> int | None:
        """Index `alvh.by_delta` picks: nearest delta, ties to the higher strike."""
        ok = self.usable if min_strike is None else self.usable & (self.strikes >= min_strike)
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            return None
        d = np.abs(self.delta[idx] - target)
        ties = idx[d == d.min()]
        return int(ties[np.argmax(self.strikes[ties])])

    def around(self, i: int | None, width: int = 1) -> set[int]:
        if i is None:
            return set()
        return set(range(max(0, i - width), min(len(self), i + width + 1)))

    def option(self, i: int) -> OptionSpec:
        return OptionSpec("VIX", self.expiry, self.decimal_strikes[i], Right.CALL, self.tclass)


class Day:
    """Everything about one session that every variant shares: the path, the instants, the
    quotes (through the pricer's cache), SPX entry snapshots and VIX chains."""

    def __init__(self, d: date, pricer: Pricer, cal: TradingCalendar, schedule: Schedule, vxth_day: bool):
        self.d = d
        self.pricer = pricer
        self.cal = cal
        self.arrays = pricer.start_day(d)
        self.instants = schedule.instants(d, self.arrays, vxth_day)
        self.monitor = [i.index for i in self.instants if "monitor" in i.jobs]
        self.close_ts = self.arrays.close_ts
        self._snapshots: dict = {}
        self._vix_expiries: dict[float | None, list[tuple[date, str]]] = {}  # None: the session's list
        self._chains: dict = {}
        self._paths: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}  # VIX: bid, ask (live instants), from instant
        self._stamps: np.ndarray | None = None  # the instants' times (day paths)
        self._spx_paths: dict[str, tuple[np.ndarray, np.ndarray, float, int]] = {}  # bid, ask, expiry ts, from instant
        self._lot_quotes: dict[tuple[str, int], Quote | bool] = {}
        self._at: dict[tuple[float, str], Quote | None] = {}  # VIX quotes at moved instants
        self._spx_sessions = _spx_sessions(cal, pricer, d)

    def at(self, inst: Instant, clock: float) -> Instant:
        """The instant as a variant whose walks moved its clock past it sees it: the job runs
        at max(scheduled time, clock), on the market state of that time."""
        if clock <= inst.ts:
            return inst
        step = self.arrays.step_of(clock)
        at = self.arrays.state_at_ts(clock)  # the market's rule between steps (bot.sim.market.between)
        return inst.moved(clock, step, at[0], at[1])

    def moved(self, inst: Instant) -> bool:
        """Whether a walk moved this instant past its scheduled time (`at`)."""
        return self.instants[inst.index].ts != inst.ts

    # -- SPX
    def spx_expiries(self, inst: Instant) -> list[date]:
        """`listing.spx_expiries`: the candidate sessions whose close is after t."""
        return [s for s, ts in self._spx_sessions if ts > inst.ts]

    def entry_snapshot(self, inst: Instant, expiry: date, cfg: CondorConfig) -> MarketSnapshot:
        """The daemon's entry chain (the strike band `iron_condor.strike_band` asks for), pruned to the
        rows `iron_condor.select_condor` can choose from."""
        key = (inst.ts, expiry, cfg.short_delta, cfg.wing_width, cfg.wing_delta)
        snap = self._snapshots.get(key)
        if snap is not None:
            return snap
        spx, vix = inst.spx, inst.vix
        exp_ts = self.pricer.spx_expiry_ts(expiry)
        near, far = ic.strike_band(spx, vix, (exp_ts - inst.ts) / (365 * 86400), cfg)
        lo, hi = listing.spx_strike_range(spx)
        puts, calls = ic.band_strikes(range(lo, hi + listing.SPX_STRIKE_STEP, listing.SPX_STRIKE_STEP), spx, near, far)
        rows: list[ChainRow] = []
        if puts and calls:
            strikes = puts + calls  # ints, puts first
            n_puts = len(puts)
            K = np.array(strikes, dtype=float)
            is_call = np.array([False] * n_puts + [True] * len(calls))
            a = self.pricer.spx_arrays(exp_ts, K, is_call, inst.ts)
            delta = a["delta"].tolist()  # (the floats float(a["delta"][i]) reads)
            keep: set[int] = set()
            # select_condor only looks at puts below spot and calls above spot
            p_idx = [i for i, k in enumerate(puts) if k < spx]
            c_idx = [n_puts + i for i, k in enumerate(calls) if k > spx]

            def pick(idx: list[int], target: float) -> int | None:
                if not idx:
                    return None
                d = [abs(abs(delta[i]) - target) for i in idx]
                m = min(d)
                return min((i for i, x in zip(idx, d) if x == m), key=strikes.__getitem__)

            def near_of(idx: list[int], i: int | None) -> list[int]:
                # the deltas here are the quotes' own (same arrays), so the pure code's choice
                # is exactly this row: no neighbours needed
                return [] if i is None else [i]

            sp, sc = pick(p_idx, cfg.short_delta), pick(c_idx, cfg.short_delta)
            for i in near_of(p_idx, sp) + near_of(c_idx, sc):
                keep.add(i)
            if cfg.wing_delta is None:
                w = cfg.wing_width
                pos = {(i >= n_puts, k): i for i, k in enumerate(strikes)}
                for i in list(keep):
                    j = pos.get((i >= n_puts, strikes[i] + (w if i >= n_puts else -w)))
                    if j is not None:
                        keep.add(j)
            else:
                for s_near, idx in ((near_of(p_idx, sp), p_idx), (near_of(c_idx, sc), c_idx)):
                    for s in s_near:
                        beyond = [i for i in idx if (strikes[i] < strikes[s] if s < n_puts else strikes[i] > strikes[s])]
                        keep.update(near_of(beyond, pick(beyond, cfg.wing_delta)))
            # (quotes built here, not shared through the pricer's cache: an option asked for
            # again at this instant is priced to the same numbers)
            for i in sorted(keep):
                o = OptionSpec("SPX", expiry, Decimal(strikes[i]), Right.CALL if i >= n_puts else Right.PUT, "SPXW")
                rows.append(ChainRow(o, self.pricer.spx_quote(a, i)))
        snap = MarketSnapshot(inst.t, spx, vix, chain=tuple(rows))
        self._snapshots[key] = snap
        return snap

    def spx_path(self, legs: list[OptionSpec], idx: list[int], start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Bid and ask (instants x legs) of SPX options at the given instants: each leg priced
        once per day at every instant from `start` on (a condor opened at an instant is never
        marked before it: no need to price the day's earlier instants), each at its own time
        (one batch for the legs not priced yet; `spx_arrays` moves prices between steps as the
        market does), kept for marking the account (`quotes`)."""
        start = min(start, *idx)
        paths = self._spx_paths
        todo = [o for o in dict.fromkeys(legs) if (p := paths.get(o.key)) is None or p[3] > start]
        if todo:
            stamps = self.stamps()[start:, None]
            exp = np.array([self.pricer.spx_expiry_ts(o.expiry) for o in todo])[None, :]
            K = np.array([float(o.strike) for o in todo])[None, :]
            call = np.array([o.right is Right.CALL for o in todo])[None, :]
            a = self.pricer.spx_arrays(exp, K, call, stamps, greeks=False)
            for j, o in enumerate(todo):
                paths[o.key] = (a["bid"][:, j], a["ask"][:, j], float(exp[0, j]), start)
        rows = np.array(idx)
        cols = [paths[o.key] for o in legs]
        bid = np.column_stack([p[0][rows - p[3]] for p in cols])
        ask = np.column_stack([p[1][rows - p[3]] for p in cols])
        return bid, ask

    # -- VIX
    def vix_expiries(self, inst: Instant) -> list[tuple[date, str]]:
        """`listing.vix_expiries` at the instant. An expiry leaves the list at its SOQ, a
        session's open, and the list is drawn from the New York date: from today's open to an
        hour after its close (no open, same date) it is one list, asked once a day."""
        ts = inst.ts
        key = None if self.arrays.open_ts <= ts <= self.close_ts + 3600.0 else ts
        got = self._vix_expiries.get(key)
        if got is None:
            got = listing.vix_expiries(self.cal, inst.t)
            self._vix_expiries[key] = got
        return got

    def vix_chains(self, inst: Instant, wanted: list[tuple[date, str]], options: list[OptionSpec] = ()
                   ) -> list[ChainData]:
        """The chains (all listed strikes) of these expiries at an instant, priced in one batch;
        with `options` (VIX), their quotes at that instant in the same batch (see `lot_quotes`)."""
        ts = inst.ts
        todo = [(e, tc) for e, tc in dict.fromkeys(wanted) if (ts, e, tc) not in self._chains]
        extra = [o for o in dict.fromkeys(options) if (ts, o.key) not in self._at]
        if todo or extra:
            parts = []
            for e, tc in todo:
                exp_ts = self.pricer.vix_expiry_ts(e, tc)
                strikes = listing.vix_strikes(self.pricer.vix_future(e, ts)) if exp_ts is not None and exp_ts > ts \
                    else []
                parts.append((e, tc, exp_ts, strikes))
            live = []
            for o in extra:
                exp_ts = self.pricer.vix_expiry_ts(o.expiry, o.trading_class)
                if exp_ts is not None and exp_ts > ts:
                    live.append((o, exp_ts))
                else:
                    self._at[(ts, o.key)] = None  # expired or not listed: no quote, as the exchange
            n_chains = sum(len(p[3]) for p in parts)
            n = n_chains + len(live)
            a = None
            if n:
                a = self.pricer.vix_arrays(
                    [e for e, _, _, ks in parts for _ in ks] + [o.expiry for o, _ in live],
                    np.concatenate([np.full(len(ks), x or 0.0) for _, _, x, ks in parts] + [np.array([x for _, x in live])]),
                    np.array([float(k) for *_, ks in parts for k in ks] + [float(o.strike) for o, _ in live]),
                    np.array([True] * n_chains + [o.right is Right.CALL for o, _ in live]), np.full(n, ts))
            lo = 0
            for e, tc, _, ks in parts:
                sub = None if not ks else {k: v[lo:lo + len(ks)] for k, v in a.items() if np.ndim(v)}
                self._chains[(ts, e, tc)] = ChainData(e, tc, ks, sub)
                lo += len(ks)
            for j, (o, _) in enumerate(live):
                self._at[(ts, o.key)] = self.pricer.vix_quote(a, n_chains + j)
        return [self._chains[(ts, e, tc)] for e, tc in wanted]

    def vix_chain(self, inst: Instant, expiry: date, tclass: str) -> ChainData:
        return self.vix_chains(inst, [(expiry, tclass)])[0]

    def rows(self, inst: Instant, chain: ChainData, idx: set[int]) -> tuple[ChainRow, ...]:
        out = []
        for i in sorted(idx):
            o = chain.option(i)
            q = self.pricer.cached(inst.ts, o)
            if q is None:
                q = self.pricer.vix_quote(chain.a, i)
                self.pricer.put(inst.ts, o, q)
            out.append(ChainRow(o, q))
        return tuple(out)

    def quotes(self, options: list[OptionSpec], inst: Instant) -> dict[str, Quote]:
        """Quotes of an account's options at an instant, to mark them at mid (bid and ask as the
        exchange quotes them, no greeks): at a scheduled instant SPX legs from their day path
        (`spx_path`) and VIX options from theirs (`lot_quotes`), the rest from the pricer. An
        option past its expiry has no quote, as at the exchange."""
        on_point = not self.moved(inst)
        out: dict[str, Quote] = {}
        rest = []
        vix = {}
        for o in options:
            if o.symbol == "VIX":
                vix[o.key] = o
            elif on_point and (path := self._spx_paths.get(o.key)) is not None and path[3] <= inst.index:
                if path[2] > inst.ts:
                    i = inst.index - path[3]
                    out[o.key] = Quote(decimal_price(path[0][i]), decimal_price(path[1][i]))
            else:
                rest.append(o)
        if rest:
            out.update(self.pricer.quotes(rest, inst.t))
        if vix:
            out.update(self.lot_quotes(vix, inst))
        return out

    def lot_quotes(self, held: dict[str, OptionSpec], inst: Instant, chains: list[tuple[date, str]] = (),
                   keys: Iterable[str] | None = None) -> dict[str, Quote]:
        """Quotes (bid / ask, as the exchange quotes them) of held VIX options (by key) at an
        instant: at a scheduled instant from their day paths (`price_paths`: the options not
        priced yet, or priced only from a later instant, in one batch from this instant to the
        close; no greeks: the hedge's decision reads only bid, ask and mid of what it holds);
        at an instant a walk moved past its time, in one batch with the `chains` an evaluation
        there may read (`vix_chains`). With `keys` (of `held`), only their quotes are built;
        every held option is still priced in the same batch."""
        if self.moved(inst):
            self.vix_chains(inst, chains, list(held.values()))
            at, ts = self._at, inst.ts
            return {key: q for key in (held if keys is None else keys) if (q := at[(ts, key)]) is not None}
        i = inst.index
        paths = self._paths
        missing = [o for k, o in held.items() if (p := paths.get(k)) is None or p[2] > i]
        if missing:
            self.price_paths(missing, i)
        out = {}
        cache = self._lot_quotes
        for key in (held if keys is None else keys):
            q = cache.get((key, i))
            if q is None:
                bid, ask, start = paths[key]
                j = i - start
                q = Quote(decimal_price(bid[j]), decimal_price(ask[j])) if j < len(bid) else False
                cache[(key, i)] = q
            if q:
                out[key] = q
        return out

    def stamps(self) -> np.ndarray:
        """The times of the day's instants (ascending)."""
        if self._stamps is None:
            self._stamps = np.array([i.ts for i in self.instants])
        return self._stamps

    def price_paths(self, options: list[OptionSpec], start: int = 0) -> None:
        """Price these VIX options at every instant of the day from `start` on (an option first
        read at an instant is never read before it by that account: another account reading it
        earlier gets it priced again from there), in one batch, each at its own time (between
        two steps, the market's moving price: `vix_arrays` applies its weights). Kept per option:
        bid and ask at its live instants, which come first (the instants are in time order and
        an option is live before its expiry time: S < E, which is E - S > 0 for floats)."""
        paths = self._paths
        todo = [o for o in dict.fromkeys(options) if (p := paths.get(o.key)) is None or p[2] > start]
        if not todo:
            return
        stamps = self.stamps()[start:]
        exp = np.array([self.pricer.vix_expiry_ts(o.expiry, o.trading_class) or -np.inf for o in todo])
        live = np.searchsorted(stamps, exp, side="left").tolist()  # per option: its instants before E
        n = sum(live)
        bid = ask = np.empty(0)
        if n:
            # the (option, instant) pairs option by option; the model is elementwise, so each
            # pair gets the numbers it gets alone (tests/test_backtest_pricer.py)
            counts = np.array(live)
            S = np.concatenate([stamps[:c] for c in live])
            K = np.array([float(o.strike) for o in todo]).repeat(counts)
            C = np.array([o.right is Right.CALL for o in todo]).repeat(counts)
            expiries: list[date] = []
            for o, c in zip(todo, live):
                expiries += [o.expiry] * c
            a = self.pricer.vix_arrays(expiries, exp.repeat(counts), K, C, S, greeks=False)
            bid, ask = a["bid"], a["ask"]
        lo = 0
        for o, c in zip(todo, live):
            paths[o.key] = (bid[lo:lo + c], ask[lo:lo + c], start)
            lo += c


_SPX_SESSIONS: dict = {}


def _spx_sessions(cal: TradingCalendar, pricer: Pricer, d: date) -> list[tuple[date, float]]:
    """(session, close ts) of the sessions `SimExchange.expiries` looks at from day d."""
    got = _SPX_SESSIONS.get((id(cal), d))
    if got is None:
        got = [(s, pricer.spx_expiry_ts(s)) for s in listing.spx_expiry_candidates(cal, d)]
        if len(_SPX_SESSIONS) > 4:
            _SPX_SESSIONS.clear()
        _SPX_SESSIONS[(id(cal), d)] = got
    return got
