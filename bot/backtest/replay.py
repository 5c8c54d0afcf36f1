"""The backtest's day loop: the daemon's jobs at the daemon's instants, without its clock.

The daemon (bot/engine.py) runs a schedule of jobs on a simulated clock: the condor entry
(cron), the monitor every `schedule.monitor_interval_s` (condor exits, then the hedge's live
update), the hedge's scheduled rebalance (cron 10:00) and the session close (settlement, the
VIX daily bar, the account summary). Every job reads the market through the broker, calls the
pure strategy code and executes its proposals through the order walk.

This module steps once per session over the same instants, in the same job order, calls the
same pure code (`strategies.iron_condor.decide_entry / decide_exits`, `strategies.alvh.decide`)
on exchange-identical quotes, and skips the instants where the daemon would do nothing:

- condor exits: every open condor's closing debit is computed at every monitor instant of the
  day at once (`Pricer.spx_arrays`); `decide_exits` is called where the take profit, the stop
  or the time exit can trigger (pre-screen tolerance 1e-6), and decides;
- the hedge: `HedgeManager`'s rules, per account: a scheduled evaluation at 10:00 and after
  each condor entry; on the monitor's live VIX an evaluation when `wants_evaluation` says so
  (activation on/off, RSI crossing, a short to buy back at VIX >= stop_vix, a spike to
  monetize) or every `SHORT_CHECK` while written calls are open. The VIX indicators (forming
  bar = the live VIX) are the same for every account and computed once per instant;
- chains: `decide_entry` and `alvh.decide` choose strikes by delta among the chain they are
  given. The backtest prices the daemon's whole strike band in numpy and hands the pure code
  the rows it can choose (the nearest-delta strikes, the wings, the covered-write floors): the
  same choice without a `Quote` per listed strike (tests/test_backtest.py checks it);
- time: each account keeps the daemon's clock, which its order walks move forward; a job runs
  at max(its scheduled time, that clock), on the market state of that time.

Orders go through `account.Account.execute`: the daemon's walk replayed step by step, filled
by the simulated exchange itself (see account.py). tests/test_backtest_parity.py runs the
daemon and this loop on the same windows: same trades, same net liquidation to the cent.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import NamedTuple

import numpy as np

from bot.calendar import NY, UTC, TradingCalendar
from bot.config import CondorConfig, Config, HedgeConfig
from bot.hedging import SHORT_CHECK
from bot.domain import Action, BadQuote, ChainRow, ComboOrder, Condor, Leg, MarketSnapshot, OptionSpec, Quote, Right
from bot.sim import listing
from bot.indicators import VixSignals
from bot.schedule import CronJob
from strategies import alvh
from strategies import iron_condor as ic

from bot.backtest.account import Account
from bot.backtest.pricer import Pricer
from bot.sim.exchange import decimal_price

TOL = 1e-6  # float pre-screen tolerance (in option price points); the pure code decides
WARMUP_SESSIONS = 300  # VIX daily closes the hedge's indicators warm up on (as bot/hedging.py)


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


JOB_ORDER = {"entry": 0, "monitor": 1, "rebalance": 2, "vxth": 3, "close": 4}


class SessionTimes:
    """Open and close (UTC) of every session of the calendar, from exchange_calendars'
    schedule in one vectorized read (`TradingCalendar.open_close` asks pandas per date)."""

    def __init__(self, cal: TradingCalendar, start: date, end: date):
        import exchange_calendars as xcals
        import pandas as pd

        sched = xcals.get_calendar("XNYS", start=pd.Timestamp(start), end=pd.Timestamp(end)).schedule
        self.times: dict[date, tuple[float, float]] = {
            ts.date(): (o.timestamp(), c.timestamp()) for ts, o, c in zip(sched.index, sched["open"], sched["close"])}

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
        jobs: dict[float, list[str]] = {}
        n_mon = int(math.ceil((close_ts - open_ts) / self.monitor_s))  # open + n*interval < close
        for n in range(1, n_mon):
            jobs[open_ts + n * self.monitor_s] = ["monitor"]
        for name, job in (("entry", self.entry), ("rebalance", self.rebalance)):
            if job is not None:
                t = self.fire(job, d)
                if t is not None and open_ <= t < close:
                    jobs.setdefault(t.timestamp(), []).append(name)
        if vxth_day and self.vxth_time is not None:
            ts = datetime.combine(d, self.vxth_time, NY).timestamp()
            if open_ts <= ts < close_ts:
                jobs.setdefault(ts, []).append("vxth")
        jobs.setdefault(close_ts + 60.0, []).append("close")  # SessionJob("close", +1 min)
        out = []
        spx, vix, step_s, last = day.spx, day.vix, day.step_s, len(day.stamps) - 1
        for i, ts in enumerate(sorted(jobs)):
            step = last if ts >= close_ts else int((ts - open_ts) // step_s)
            names = jobs[ts]
            if len(names) > 1:
                names.sort(key=JOB_ORDER.__getitem__)
            out.append(Instant(i, ts, step, tuple(names), float(spx[step]), float(vix[step])))
        return out


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
        self._vix_expiries: dict[int, list[tuple[date, str]]] = {}
        self._chains: dict = {}
        self._paths: dict[str, dict[str, np.ndarray]] = {}
        self._lot_quotes: dict[tuple[str, int], Quote | bool] = {}
        self._spx_sessions = _spx_sessions(cal, pricer, d)

    def at(self, inst: Instant, clock: float) -> Instant:
        """The instant as a variant whose walks moved its clock past it sees it: the job runs
        at max(scheduled time, clock), on the market state of that time."""
        if clock <= inst.ts:
            return inst
        step = self.arrays.step_of(clock)
        return inst._replace(ts=clock, step=step, spx=float(self.arrays.spx[step]), vix=float(self.arrays.vix[step]))

    # -- SPX
    def spx_expiries(self, inst: Instant) -> list[date]:
        """`listing.spx_expiries`: the candidate sessions whose close is after t."""
        return [s for s, ts in self._spx_sessions if ts > inst.ts]

    def entry_snapshot(self, inst: Instant, expiry: date, cfg: CondorConfig) -> MarketSnapshot:
        """The daemon's `Engine._chain_snapshot` (the strike band it asks for), pruned to the
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
            K = np.array(puts + calls, dtype=float)
            is_call = np.array([False] * len(puts) + [True] * len(calls))
            a = self.pricer.spx_arrays(exp_ts, K, is_call, inst.ts)
            delta = a["delta"]
            keep: set[int] = set()
            # select_condor only looks at puts below spot and calls above spot
            p_idx = [i for i, k in enumerate(puts) if k < spx]
            c_idx = [len(puts) + i for i, k in enumerate(calls) if k > spx]

            def pick(idx: list[int], target: float) -> int | None:
                if not idx:
                    return None
                d = [abs(abs(float(delta[i])) - target) for i in idx]
                m = min(d)
                return min((i for i, x in zip(idx, d) if x == m), key=lambda i: K[i])

            def near_of(idx: list[int], i: int | None) -> list[int]:
                # the deltas here are the quotes' own (same arrays), so the pure code's choice
                # is exactly this row: no neighbours needed
                return [] if i is None else [i]

            sp, sc = pick(p_idx, cfg.short_delta), pick(c_idx, cfg.short_delta)
            for i in near_of(p_idx, sp) + near_of(c_idx, sc):
                keep.add(i)
            if cfg.wing_delta is None:
                w = cfg.wing_width
                pos = {(bool(is_call[i]), int(K[i])): i for i in range(len(K))}
                for i in list(keep):
                    j = pos.get((bool(is_call[i]), int(K[i]) + (w if is_call[i] else -w)))
                    if j is not None:
                        keep.add(j)
            else:
                for s_near, idx in ((near_of(p_idx, sp), p_idx), (near_of(c_idx, sc), c_idx)):
                    for s in s_near:
                        beyond = [i for i in idx if (K[i] < K[s] if not is_call[s] else K[i] > K[s])]
                        keep.update(near_of(beyond, pick(beyond, cfg.wing_delta)))
            for i in sorted(keep):
                o = OptionSpec("SPX", expiry, Decimal(int(K[i])), Right.CALL if is_call[i] else Right.PUT, "SPXW")
                q = self.pricer.cached(inst.ts, o)
                if q is None:
                    q = self.pricer.spx_quote(a, i)
                    self.pricer.put(inst.ts, o, q)
                rows.append(ChainRow(o, q))
        snap = MarketSnapshot(inst.t, spx, vix, chain=tuple(rows))
        self._snapshots[key] = snap
        return snap

    def spx_path(self, legs: list[OptionSpec], idx: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Bid and ask (instants x legs) of SPX options at the given instants."""
        stamps = np.array([self.instants[i].ts for i in idx])[:, None]
        exp = np.array([self.pricer.spx_expiry_ts(o.expiry) for o in legs])[None, :]
        K = np.array([float(o.strike) for o in legs])[None, :]
        call = np.array([o.right is Right.CALL for o in legs])[None, :]
        a = self.pricer.spx_arrays(exp, K, call, stamps, greeks=False)
        return a["bid"], a["ask"]

    # -- VIX
    def vix_expiries(self, inst: Instant) -> list[tuple[date, str]]:
        got = self._vix_expiries.get(inst.ts)
        if got is None:
            got = listing.vix_expiries(self.cal, inst.t)
            self._vix_expiries[inst.ts] = got
        return got

    def vix_chains(self, inst: Instant, wanted: list[tuple[date, str]]) -> list[ChainData]:
        """The chains (all listed strikes) of these expiries at an instant, priced in one batch."""
        todo = [(e, tc) for e, tc in dict.fromkeys(wanted) if (inst.ts, e, tc) not in self._chains]
        if todo:
            parts = []
            for e, tc in todo:
                exp_ts = self.pricer.vix_expiry_ts(e, tc)
                strikes = listing.vix_strikes(self.pricer.vix_future(e, inst.ts)) if exp_ts is not None and exp_ts > inst.ts \
                    else []
                parts.append((e, tc, exp_ts, strikes))
            n = sum(len(p[3]) for p in parts)
            a = None
            if n:
                a = self.pricer.vix_arrays([e for e, _, _, ks in parts for _ in ks],
                                           np.concatenate([np.full(len(ks), x or 0.0) for _, _, x, ks in parts]),
                                           np.array([float(k) for *_, ks in parts for k in ks]), np.ones(n, dtype=bool),
                                           np.full(n, inst.ts))
            lo = 0
            for e, tc, _, ks in parts:
                sub = None if not ks else {k: v[lo:lo + len(ks)] for k, v in a.items() if np.ndim(v)}
                self._chains[(inst.ts, e, tc)] = ChainData(e, tc, ks, sub)
                lo += len(ks)
        return [self._chains[(inst.ts, e, tc)] for e, tc in wanted]

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

    def lot_quotes(self, held: dict[str, OptionSpec], inst: Instant) -> dict[str, Quote]:
        """Quotes (bid / ask, as the exchange quotes them; no greeks: the hedge's decision reads
        only bid, ask and mid of what it holds) of held VIX options (by key) at an instant,
        from arrays priced once per option for all the day's instants."""
        if self.instants[inst.index].ts != inst.ts:  # a walk moved the clock past the instant
            return self.pricer.quotes(list(held.values()), inst.t)
        missing = [o for k, o in held.items() if k not in self._paths]
        if missing:
            self.price_paths(missing)
        out = {}
        i = inst.index
        cache = self._lot_quotes
        for key in held:
            q = cache.get((key, i))
            if q is None:
                p = self._paths[key]
                b = p["bid"][i]
                q = False if math.isnan(b) else Quote(decimal_price(b), decimal_price(p["ask"][i]))
                cache[(key, i)] = q
            if q:
                out[key] = q
        return out

    def vix_path(self, option: OptionSpec, key: str | None = None) -> dict[str, np.ndarray]:
        """Bid and ask (the exchange's float arrays, nan when not live) of one VIX option at
        every instant of the day."""
        key = key or option.key
        got = self._paths.get(key)
        if got is None:
            self.price_paths([option])
            got = self._paths[key]
        return got

    def price_paths(self, options: list[OptionSpec]) -> None:
        """Price these VIX options at every instant of the day in one batch."""
        todo = [o for o in dict.fromkeys(options) if o.key not in self._paths]
        if not todo:
            return
        stamps = np.array([i.ts for i in self.instants])
        n, m = len(stamps), len(todo)
        exp = np.array([self.pricer.vix_expiry_ts(o.expiry, o.trading_class) or -np.inf for o in todo])
        E = np.broadcast_to(exp[None, :], (n, m))
        S = np.broadcast_to(stamps[:, None], (n, m))
        live = E - S > 0
        bid, ask = np.full((n, m), np.nan), np.full((n, m), np.nan)
        if live.any():
            cols = np.broadcast_to(np.arange(m)[None, :], (n, m))[live]
            K = np.broadcast_to(np.array([float(o.strike) for o in todo])[None, :], (n, m))[live]
            C = np.broadcast_to(np.array([o.right is Right.CALL for o in todo])[None, :], (n, m))[live]
            a = self.pricer.vix_arrays([todo[c].expiry for c in cols.tolist()], E[live], K, C, S[live], greeks=False)
            bid[live], ask[live] = a["bid"], a["ask"]
        for j, o in enumerate(todo):
            self._paths[o.key] = {"bid": bid[:, j], "ask": ask[:, j]}


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


# --------------------------------------------------------------------------- condors


@dataclass
class ClosedCondor:
    condor: Condor
    closed: date
    reason: str
    debit: Decimal
    pnl: Decimal


class CondorTrader:
    """The daemon's condor jobs (Engine.on_entry / on_monitor / book_settlements) for one account."""

    def __init__(self, cfg: CondorConfig, account: Account):
        self.cfg = cfg
        self.account = account
        self.open: list[Condor] = []
        self.last_opened: Condor | None = None
        self.closed: list[ClosedCondor] = []
        self.skips: Counter = Counter()
        self._commissions: dict[str, Decimal] = {}
        self._candidates: dict[str, set[int]] = {}
        self.entries_until: datetime | None = None

    @property
    def notional_max_loss(self) -> Decimal:
        return sum((c.max_loss for c in self.open), Decimal(0))

    def entry(self, day: Day, inst: Instant, nl: Decimal) -> bool:
        """`Engine.on_entry`; True when a condor was opened (the hedge then rebalances)."""
        cfg = self.cfg
        if self.entries_until is not None and inst.t >= self.entries_until:
            return False
        expiry = ic.entry_expiry(day.spx_expiries(inst), day.d, cfg)
        if expiry is None:
            self.skips[ic.SkipCode.NO_EXPIRY.value] += 1
            return False
        snapshot = day.entry_snapshot(inst, expiry, cfg)
        decision = ic.decide_entry(snapshot, ic.Book(tuple(self.open), nl), cfg, inst.t)
        if isinstance(decision, ic.Skip):
            self.skips[decision.code.value] += 1
            return False
        order = decision.order
        done = self.account.execute(order, inst.ts, day.pricer, day.close_ts)
        if done is None:
            self.skips[ic.SkipCode.NOT_FILLED.value] += 1
            return False
        cid = done.state.order_ref
        condor = ic.condor_from_order(cid, order, done.state.filled, done.state.avg_price, inst.t)
        self.open.append(condor)
        self.last_opened = condor
        self._commissions[cid] = sum((f.commission for f in done.fills), Decimal(0))
        self._scan(day, [condor], inst.index)
        return True

    def start_day(self, day: Day) -> None:
        self._candidates = {}
        if self.open:
            self._scan(day, self.open, 0)

    def _scan(self, day: Day, condors: list[Condor], first: int) -> None:
        """Monitor instants (from `first` on) where decide_exits may close each condor."""
        idx = [i for i in day.monitor if i >= first]
        if not idx:
            for c in condors:
                self._candidates[c.condor_id] = set()
            return
        legs = [leg.option for c in condors for leg in c.legs(opening=False)]
        signs = np.array([leg.signed_ratio for c in condors for leg in c.legs(opening=False)], dtype=float)
        bid, ask = day.spx_path(legs, idx)
        mid = (bid + ask) / 2 * signs
        today = day.d
        for n, c in enumerate(condors):
            debit = mid[:, 4 * n: 4 * n + 4].sum(axis=1)
            take, stop = (float(x) for x in ic.exit_levels(c, self.cfg))
            hit = (debit <= take + TOL) | (debit >= stop - TOL)
            if ic.time_exit_due(c, today, self.cfg):
                hit[:] = True
            self._candidates[c.condor_id] = {i for i, h in zip(idx, hit.tolist()) if h}

    def monitor(self, day: Day, inst: Instant) -> bool:
        """`Engine.on_monitor`: close what decide_exits says; True when something closed."""
        if not self.open or not any(inst.index in self._candidates.get(c.condor_id, ()) for c in self.open):
            return False
        options = [leg.option for c in self.open for leg in c.legs()]
        quotes = day.pricer.quotes(options, inst.t)
        snapshot = MarketSnapshot(inst.t, inst.spx, inst.vix, quotes=quotes)
        closed = False
        for p in ic.decide_exits(snapshot, ic.Book(tuple(self.open), Decimal(0)), self.cfg, inst.t):
            done = self.account.execute(p.order, max(inst.ts, self.account.clock), day.pricer, day.close_ts)
            if done is None:
                continue
            c = next(c for c in self.open if c.condor_id == p.condor_id)
            fees = self._commissions.pop(c.condor_id, Decimal(0)) + sum((f.commission for f in done.fills), Decimal(0))
            price = done.state.avg_price or Decimal(0)
            self._record(c, day.d, p.reason, price, fees)
            closed = True
        return closed

    def settle(self, day: Day, settled: list[tuple[OptionSpec, int, Decimal]], now: datetime) -> None:
        """`Engine.book_settlements`: condors whose expiry has passed close at the settlement."""
        prices = {o.key: px for o, _, px in settled}
        for c in list(self.open):
            if day.pricer.spx_expiry_ts(c.expiry) <= now.timestamp():
                closing = c.legs(opening=False)
                if all(leg.option.key in prices for leg in closing):
                    debit = sum((leg.signed_ratio * prices[leg.option.key] for leg in closing), Decimal(0))
                    self._record(c, day.d, "settlement", debit, self._commissions.pop(c.condor_id, Decimal(0)))

    def _record(self, c: Condor, when: date, reason: str, debit: Decimal, fees: Decimal) -> None:
        pnl = (c.credit - debit) * 100 * c.quantity - fees
        self.open = [x for x in self.open if x.condor_id != c.condor_id]
        self.closed.append(ClosedCondor(c, when, reason, debit, pnl))

    def vega_dollars(self, day: Day, inst: Instant) -> float:
        """`HedgeManager.refresh_condor_vega`: |$ per vol point| of the open condors."""
        legs = [leg for c in self.open for leg in c.legs()]
        quotes = day.pricer.quotes([leg.option for leg in legs], inst.t)
        total = 0.0
        for c in self.open:
            for leg in c.legs():
                q = quotes.get(leg.option.key)
                if q is not None and q.greeks is not None:
                    total += leg.signed_ratio * q.greeks.vega * 100 * c.quantity
        return abs(total)


# --------------------------------------------------------------------------- the hedge's signals


class SignalTrack:
    """The VIX indicators every hedged account of a run sees: RSI and MACD on the daily
    closes (warmed up as `HedgeManager.warm_up` does) with the live VIX of each instant as the
    forming bar (`VixSignals.peek`), and the activation of the last completed bar. They do not
    depend on the account, so they are computed once per instant; the close is committed
    after each session (`HedgeManager.commit_close`)."""

    def __init__(self, cfg: HedgeConfig, closes: list[float]):
        self.cfg = cfg
        self.signals = VixSignals(cfg.rsi_period, cfg.macd_fast, cfg.macd_slow, cfg.macd_signal)
        self.signals.warm_up(closes)
        self.points: dict[int, alvh.Signals] = {}

    def day(self, day: Day) -> None:
        last = self.signals.last
        closed = alvh.Signals(last.value, last.rsi, last.macd, last.signal) if last.value is not None else None
        closed_active = closed is not None and alvh.is_activated(closed, self.cfg)
        self.points = {}
        for inst in day.instants:
            if "monitor" in inst.jobs or "rebalance" in inst.jobs or "entry" in inst.jobs:
                v = self.signals.peek(inst.vix)
                self.points[inst.index] = alvh.Signals(inst.vix, v.rsi, v.macd, v.signal, closed_active, day.d)

    def at(self, inst: Instant) -> alvh.Signals:
        """The signals at an instant a walk may have moved past its scheduled time."""
        got = self.points.get(inst.index)
        if got is not None and got.vix == inst.vix:
            return got
        v = self.signals.peek(inst.vix)
        closed_active = got.closed_active if got is not None else False
        return alvh.Signals(inst.vix, v.rsi, v.macd, v.signal, closed_active, inst.t.astimezone(NY).date())

    def commit(self, vix_close: float) -> None:
        self.signals.commit(vix_close)


def _signal_key(cfg: HedgeConfig) -> tuple:
    return (cfg.activation_vix, cfg.hysteresis, cfg.rsi_period, cfg.macd_fast, cfg.macd_slow, cfg.macd_signal)


# --------------------------------------------------------------------------- hedges


@dataclass
class LayerBook:
    cash_flow: Decimal = Decimal(0)  # every fill and settlement, commissions included
    premium_paid: Decimal = Decimal(0)
    premium_collected: Decimal = Decimal(0)
    commissions: Decimal = Decimal(0)


@dataclass
class Lot:
    quantity: int
    cost: Decimal


class HedgeBooks:
    """Lots per (layer, option) with average cost, as `HedgeManager.lots`, and per-layer
    cash flows. Settlement is shared among the layers holding the option, by their lots."""

    def __init__(self, layers: tuple[str, ...]):
        self.layers = layers
        self.lots: dict[tuple[str, str], Lot] = {}
        self.specs: dict[str, OptionSpec] = {}
        self.books = {layer: LayerBook() for layer in layers}
        self.shared_settlements = 0  # settlements of an option held by two layers at once

    def fill(self, layer: str, option: OptionSpec, qty: int, price: Decimal, commission: Decimal, write: bool) -> None:
        self.specs[option.key] = option
        k = (layer, option.key)
        lot = self.lots.get(k)
        new, cost = alvh.lot_after_fill(lot.quantity if lot else 0, lot.cost if lot else None, qty, price)
        if new:
            self.lots[k] = Lot(new, cost)
        else:
            self.lots.pop(k, None)
        amount = price * option.multiplier * qty
        b = self.books[layer]
        b.cash_flow -= amount + commission
        b.commissions += commission
        if qty > 0:
            b.premium_paid += amount
        elif write:
            b.premium_collected -= amount

    def settle(self, option: OptionSpec, price: Decimal) -> None:
        if sum(1 for (_, key) in self.lots if key == option.key) > 1:
            self.shared_settlements += 1
        for (layer, key), lot in list(self.lots.items()):
            if key == option.key:
                self.books[layer].cash_flow += price * option.multiplier * lot.quantity
                del self.lots[(layer, key)]

    def held(self) -> dict[str, OptionSpec]:
        return {key: self.specs[key] for (_, key) in self.lots}

    @property
    def shorts(self) -> bool:
        return any(lot.quantity < 0 for lot in self.lots.values())

    def alvh_lots(self) -> tuple[alvh.Lot, ...]:
        return tuple(alvh.Lot(layer, self.specs[key], lot.quantity, lot.cost)
                     for (layer, key), lot in self.lots.items() if lot.quantity)

    def options(self) -> list[OptionSpec]:
        return [self.specs[k] for k in sorted({key for _, key in self.lots})]

    def market_value(self, quotes) -> dict[str, Decimal]:
        out = {layer: Decimal(0) for layer in self.layers}
        for (layer, key), lot in self.lots.items():
            q = quotes.get(key)
            if q is not None:
                out[layer] += q.mid * self.specs[key].multiplier * lot.quantity
        return out


class AlvhHedge:
    """The daemon's HedgeManager for one account: inputs gathered as it gathers them, the pure
    `alvh.decide`, actions executed in order through the walk, the naked-short invariant."""

    def __init__(self, cfg: HedgeConfig, account: Account, condors: CondorTrader):
        self.cfg = cfg
        self.account = account
        self.condors = condors
        self.books = HedgeBooks(alvh.LAYERS)
        self.state = alvh.HedgeState()
        self.has_shorts = False
        self.last_short_check: float | None = None
        self.vega = 0.0
        self.decisions = 0
        self.actions: Counter = Counter()
        self.activations = 0
        self.log: list | None = None  # (time, kind, layer, legs, quantity) of every hedge trade

    # -- inputs
    def notional(self, now: datetime) -> Decimal:
        return alvh.condor_notional(self.condors.open, self.condors.last_opened, now, self.cfg)

    def _market(self, day: Day, inst: Instant, lots: tuple[alvh.Lot, ...], chains: bool) -> alvh.HedgeMarket:
        """`HedgeManager._market`: quotes of the held options and, to rebalance, the chain of
        each layer's expiry and of the write expiry (pruned, see the module doc)."""
        quotes = day.lot_quotes(self.books.held(), inst) if lots else {}
        out: dict[str, tuple[ChainRow, ...]] = {}
        if chains:
            listed = day.vix_expiries(inst)
            monthly = [d for d, tc in listed if tc == "VIX"]
            wanted: dict[str, tuple[date, str]] = {}
            for layer in alvh.LAYERS:
                expiry = alvh.layer_expiry(monthly, day.d, self.cfg.layer(layer))
                if expiry is not None:
                    wanted[layer] = (expiry, "VIX")
            w = self.cfg.write
            weekly = [d for d, tc in listed if tc == "VIXW"] if w.weekly else []
            candidates = [(d, "VIX") for d in monthly] + [(d, "VIXW") for d in weekly]
            we = alvh.write_expiry([d for d, _ in candidates], day.d, self.cfg)
            if we is not None:
                wanted["write"] = (we, dict(candidates)[we])
            priced = dict(zip(wanted, day.vix_chains(inst, list(wanted.values()))))
            floors = {float(lot.option.strike) for lot in lots if lot.quantity > 0}
            for layer in alvh.LAYERS:
                chain = priced.get(layer)
                if chain is None:
                    continue
                j = chain.by_delta(self.cfg.layer(layer).delta)
                out[layer] = day.rows(inst, chain, chain.around(j))
                if j is not None:
                    floors.add(float(chain.strikes[j]))
            chain = priced.get("write")
            if chain is not None:
                # every floor the planner may use: strikes of held longs and of the longs it may buy
                keep = chain.around(chain.by_delta(w.delta))
                for floor in floors:
                    keep |= chain.around(chain.by_delta(w.delta, floor))
                out["write"] = day.rows(inst, chain, keep)
        return alvh.HedgeMarket(day.d, inst.vix, out, quotes)

    # -- HedgeManager.on_update / evaluate
    def on_update(self, day: Day, inst: Instant, signals: alvh.Signals) -> None:
        """`HedgeManager.on_update` (the monitor's live VIX): evaluate when the value triggers
        something, and every SHORT_CHECK while written calls are open."""
        due = self.has_shorts and (self.last_short_check is None or
                                   inst.ts - self.last_short_check >= SHORT_CHECK.total_seconds())
        if alvh.wants_evaluation(signals, self.state, self.has_shorts, self.cfg) or due:
            self.last_short_check = inst.ts
            self.evaluate(day, inst, signals, scheduled=False)

    def evaluate(self, day: Day, inst: Instant, signals: alvh.Signals, scheduled: bool) -> None:
        """`HedgeManager._evaluate`: inputs as the daemon gathers them, the pure decision, its
        actions in order through the walk."""
        state = self.state
        why = alvh.trigger(signals, state, self.cfg, scheduled)
        lots = self.books.alvh_lots()
        self.has_shorts = any(lot.quantity < 0 for lot in lots)
        notional = self.notional(inst.t)
        # with nothing held and nothing to hedge every target is 0 and decide uses no chain
        # (tests/test_backtest.py checks the decision is the same with and without them)
        need_chains = why != "update" and (bool(lots) or notional > 0 or self.vega > 0)
        market = self._market(day, inst, lots, chains=need_chains)
        book = alvh.HedgeBook(lots, notional, self.vega)
        decision = alvh.decide(signals, market, book, state, self.cfg, scheduled)
        self.decisions += 1
        if decision.activated and not state.activated:
            self.activations += 1
        self.state = decision.state
        failed = False  # `HedgeManager._run_plan`: after a miss only what stands alone goes on
        for action in decision.actions:
            if self.state.halted and action.kind != alvh.BUY_BACK:
                break
            if failed and not alvh.proceeds_after_failure(action):
                continue
            failed = not self._execute(day, inst, action) or failed
        self.has_shorts = self.books.shorts

    def _execute(self, day: Day, inst: Instant, action: alvh.HedgeAction) -> bool:
        order = ComboOrder(action.legs, action.quantity)
        done = self.account.execute(order, max(inst.ts, self.account.clock), day.pricer, day.close_ts)
        if done is None:
            return False
        self.actions[action.kind] += 1
        if self.log is not None:
            legs = tuple(f"{'+' if leg.action is Action.BUY else '-'}{leg.option.key}" for leg in action.legs)
            self.log.append((datetime.fromtimestamp(done.time, UTC), action.kind, action.layer, legs, action.quantity))
        for f in done.fills:
            self.books.fill(action.layer, f.option, f.quantity, f.price, f.commission, action.kind == alvh.WRITE)
        positions = [(self.account.specs[k], q) for k, q in self.account.positions.items() if k.startswith("VIX")]
        if alvh.naked_shorts(positions):  # HedgeManager.check_invariant: halt the hedge
            self.state = replace(self.state, halted=True)
        return True

    def refresh_vega(self, day: Day, inst: Instant) -> None:
        if self.cfg.sizing == "vega":
            self.vega = self.condors.vega_dollars(day, inst)

    def settle(self, settled: list[tuple[OptionSpec, int, Decimal]]) -> None:
        for option, _, price in settled:
            if option.symbol == "VIX":
                self.books.settle(option, price)


@dataclass(frozen=True)
class VxthRule:
    """The Cboe VIX Tail Hedge rule (VXTH methodology, see shared/data/SOURCES.md): on each
    monthly VIX expiry (and on the first session) buy one-month ~30-delta VIX calls for a
    fraction of net liquidation set by the VIX future of the calls' expiry: (15, 30] -> 1 %,
    (30, 50] -> 0.5 %, otherwise none; hold them to their cash settlement. Cboe buys at
    10:00 Chicago (11:00 New York)."""

    delta: float = 0.30
    weights: tuple[tuple[float, float, float], ...] = ((15.0, 30.0, 0.01), (30.0, 50.0, 0.005))
    at: time = time(11, 0)
    first_min_dte: int = 14  # on the first session: the first monthly expiry at least this far

    def weight(self, future: float) -> float:
        for lo, hi, w in self.weights:
            if lo < future <= hi:
                return w
        return 0.0


class VxthHedge:
    def __init__(self, rule: VxthRule, account: Account):
        self.rule = rule
        self.account = account
        self.books = HedgeBooks(("vxth",))
        self.started = False
        self.buys = 0
        self.skipped_weight0 = 0

    def roll_day(self, d: date, monthly_expiries: set[date]) -> bool:
        return not self.started or d in monthly_expiries

    def on_time(self, day: Day, inst: Instant, nl: Decimal) -> None:
        monthly = [d for d, tc in day.vix_expiries(inst) if tc == "VIX"]
        if not self.started:
            monthly = [d for d in monthly if (d - day.d).days >= self.rule.first_min_dte]
        self.started = True
        if not monthly:
            return
        expiry = monthly[0]
        future = day.pricer.vix_future(expiry, inst.ts)
        w = self.rule.weight(future)
        if w <= 0:
            self.skipped_weight0 += 1
            return
        chain = day.vix_chain(inst, expiry, "VIX")
        rows = day.rows(inst, chain, chain.around(chain.by_delta(self.rule.delta)))
        row = alvh.by_delta(rows, self.rule.delta)
        if row is None:
            return
        order1 = ComboOrder((Leg(row.option, Action.BUY),), 1)
        try:
            end, _ = self.account.walker.walk(order1, inst.ts, day.pricer, day.close_ts)
        except BadQuote:
            return
        if end is None or end[0] <= 0:
            return
        qty = int(Decimal(str(w)) * nl // (end[0] * row.option.multiplier))
        if qty < 1:
            return
        done = self.account.execute(ComboOrder((Leg(row.option, Action.BUY),), qty), inst.ts, day.pricer, day.close_ts)
        if done is None:
            return
        self.buys += 1
        for f in done.fills:
            self.books.fill("vxth", f.option, f.quantity, f.price, f.commission, False)

    def settle(self, settled) -> None:
        for option, _, price in settled:
            if option.symbol == "VIX":
                self.books.settle(option, price)


# --------------------------------------------------------------------------- variants


@dataclass
class Series:
    """Daily records of one variant (after each session's close)."""

    nl: list[float] = field(default_factory=list)
    hedge_value: list[list[float]] = field(default_factory=list)  # per layer: cash flow + market value
    notional: list[float] = field(default_factory=list)  # condor max loss open at the close (or memory)
    hedge_mv: list[float] = field(default_factory=list)


class Variant:
    """One account of the run: condors, optionally hedged; or SPX bought and held."""

    kind = "condors"

    def __init__(self, name: str, cfg: Config, account: Account | None, hedge: str | None,
                 hedge_cfg: HedgeConfig | None = None, vxth: VxthRule | None = None):
        self.name = name
        self.cfg = cfg
        self.account = account
        self.series = Series()
        self.condors = CondorTrader(cfg.condor, account) if account is not None else None
        self.alvh = AlvhHedge(hedge_cfg, account, self.condors) if hedge == "alvh" else None
        self.vxth = VxthHedge(vxth or VxthRule(), account) if hedge == "vxth" else None
        self.hedge_cfg = hedge_cfg

    @property
    def layers(self) -> tuple[str, ...]:
        if self.alvh is not None:
            return alvh.LAYERS
        if self.vxth is not None:
            return ("vxth",)
        return ()

    def _books(self) -> HedgeBooks | None:
        return self.alvh.books if self.alvh else (self.vxth.books if self.vxth else None)

    def nl(self, day: Day, inst: Instant) -> Decimal:
        return self.account.net_liquidation(inst.t, day.pricer)

    def run_day(self, day: Day, track: SignalTrack | None) -> None:
        acct, condors, hedge = self.account, self.condors, self.alvh
        condors.start_day(day)
        # VIX options expire at the open (SOQ): the exchange settles them and the daemon books
        # the settlement (dropping the hedge's lots) before its first evaluation of the day
        early = acct.settle(day.instants[0].t)
        if early:
            self._settled(day, early, day.instants[0].t)
        stop = getattr(self, "stop_at", None)
        for inst in day.instants:
            if stop is not None and inst.ts > stop:  # parity runs: where the daemon stopped
                self._record(day, inst._replace(ts=stop, step=day.arrays.step_of(stop)))
                return
            # the daemon's loop asks each job for its next fire after the clock: a fire that the
            # walks of earlier jobs have passed is skipped (the close is never passed)
            late = acct.clock >= inst.ts
            for job in inst.jobs:
                if late and job != "close" and job != "vxth":
                    continue
                at = day.at(inst, acct.clock)
                if job == "entry":
                    if condors.entry(day, at, self.nl(day, at)) and hedge is not None:  # Engine._rebalance_hedge
                        at = day.at(inst, acct.clock)
                        hedge.refresh_vega(day, at)
                        hedge.evaluate(day, at, track.at(at), scheduled=True)
                elif job == "monitor":
                    condors.monitor(day, at)
                    if hedge is not None:
                        at = day.at(inst, acct.clock)
                        hedge.on_update(day, at, track.at(at))
                elif job == "rebalance":
                    if hedge is not None:
                        hedge.refresh_vega(day, at)
                        hedge.evaluate(day, at, track.at(at), scheduled=True)
                elif job == "vxth":
                    if self.vxth is not None:
                        self.vxth.on_time(day, at, self.nl(day, at))
                elif job == "close":
                    settled = acct.settle(at.t)
                    self._settled(day, settled, at.t)
                    self._record(day, at)

    def _settled(self, day: Day, settled, now: datetime) -> None:
        self.condors.settle(day, settled, now)
        if self.alvh is not None:
            self.alvh.settle(settled)
        if self.vxth is not None:
            self.vxth.settle(settled)

    def _record(self, day: Day, inst: Instant) -> None:
        acct = self.account
        options = acct.option_list()
        quotes = day.pricer.quotes(options, inst.t)
        nl = acct.cash + acct.value(quotes)
        s = self.series
        s.nl.append(float(nl))
        books = self._books()
        if books is not None:
            mv = books.market_value(quotes)
            s.hedge_value.append([float(books.books[layer].cash_flow + mv[layer]) for layer in books.layers])
            s.hedge_mv.append(float(sum(mv.values(), Decimal(0))))
        if self.alvh is not None:
            s.notional.append(float(self.alvh.notional(inst.t)))
        else:
            s.notional.append(float(self.condors.notional_max_loss if self.condors else 0))


class BuyHold:
    """SPX bought at the first session's open and held (price index: no dividends)."""

    kind = "spx"
    layers: tuple[str, ...] = ()

    def __init__(self, name: str, cash: float):
        self.name = name
        self.cash = cash
        self.series = Series()
        self.units: float | None = None
        self.account = None
        self.condors = None
        self.alvh = None
        self.vxth = None

    def run_day(self, day: Day, track) -> None:
        if self.units is None:
            self.units = self.cash / float(day.arrays.spx[0])
        self.series.nl.append(self.units * float(day.arrays.spx[-1]))
        self.series.notional.append(0.0)


def vxth_roll_days(cal: TradingCalendar, start: date, end: date) -> set[date]:
    """Monthly VIX expiry dates (sessions) between start and end."""
    out = set()
    y, m = start.year, start.month
    while date(y, m, 1) <= end + timedelta(days=40):
        ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
        if date(ny, nm, 21) <= cal.last:
            out.add(cal.vix_monthly_expiry(y, m))
        y, m = ny, nm
    return out


def warmup_closes(market, start_t: datetime) -> list[float]:
    return [c for _, c in market.daily_closes("VIX", WARMUP_SESSIONS, start_t)]


__all__ = [
    "AlvhHedge", "BuyHold", "CondorTrader", "Day", "Instant", "Schedule", "SignalTrack", "Variant", "VxthHedge",
    "VxthRule",
]
