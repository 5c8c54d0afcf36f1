"""The daemon's condor jobs for one backtest account (`CondorTrader`): entries, exits and
settlements by the pure `strategies.iron_condor` rules, orders through the account's walk."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import numpy as np

from bot.config import CondorConfig
from bot.domain import Condor, MarketSnapshot, OptionSpec
from bot.walk import at_next_price
from strategies import iron_condor as ic

from bot.backtest.account import Account
from bot.backtest.day import Day, Instant

TOL = 1e-6  # float pre-screen tolerance (in option price points); the pure code decides


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
        self._hits: set[int] | None = set()  # instants where some open condor may close (None: to rebuild)
        self._closing_legs: dict[str, tuple[Condor, list[OptionSpec], list[int]]] = {}
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
        self._hits = None
        if self.open:
            self._scan(day, self.open, 0)

    def _scan(self, day: Day, condors: list[Condor], first: int) -> None:
        """Monitor instants (from `first` on) where decide_exits may close each condor."""
        self._hits = None
        idx = [i for i in day.monitor if i >= first]
        if not idx:
            for c in condors:
                self._candidates[c.condor_id] = set()
            return
        closing = [self._closing(c) for c in condors]
        legs = [o for options, _ in closing for o in options]
        signs = np.array([s for _, sgn in closing for s in sgn], dtype=float)
        bid, ask = day.spx_path(legs, idx, first)
        mid = (bid + ask) / 2 * signs
        today = day.d
        for n, c in enumerate(condors):
            debit = mid[:, 4 * n: 4 * n + 4].sum(axis=1)
            take, stop = (float(x) for x in ic.exit_levels(c, self.cfg))
            hit = (debit <= take + TOL) | (debit >= stop - TOL)
            if ic.time_exit_due(c, today, self.cfg):
                hit[:] = True
            self._candidates[c.condor_id] = {i for i, h in zip(idx, hit.tolist()) if h}

    def _closing(self, c: Condor) -> tuple[list[OptionSpec], list[int]]:
        """The options and signed ratios of a condor's closing legs, built once per condor (its
        OptionSpecs then keep their keys: `Condor.legs` builds new ones on every call)."""
        got = self._closing_legs.get(c.condor_id)
        if got is None or got[0] is not c:
            legs = c.legs(opening=False)
            got = self._closing_legs[c.condor_id] = (c, [leg.option for leg in legs], [leg.signed_ratio for leg in legs])
        return got[1], got[2]

    def monitor(self, day: Day, inst: Instant) -> bool:
        """`Engine.on_monitor`: close what decide_exits says; True when something closed."""
        hits = self._hits
        if hits is None:  # the union of the open condors' candidates, rebuilt after a scan or a close
            hits = self._hits = set().union(*(self._candidates.get(c.condor_id, ()) for c in self.open))
        if inst.index not in hits:
            return False
        # decide_exits reads bid and ask only: the legs' day paths (`Day.quotes`, priced by `_scan`)
        options = [o for c in self.open for o in self._closing(c)[0]]
        snapshot = MarketSnapshot(inst.t, inst.spx, inst.vix, quotes=day.quotes(options, inst))
        closed = False
        for p in ic.decide_exits(snapshot, ic.Book(tuple(self.open), Decimal(0)), self.cfg, inst.t):
            start = max(inst.ts, self.account.clock)
            if at_next_price(p.reason):  # a stop fills at the next price, not the one that triggered it
                start = max(day.arrays.next_step_ts(inst.ts), self.account.clock)
            done = self.account.execute(p.order, start, day.pricer, day.close_ts)
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
                debit = ic.settlement_debit(c, prices)
                if debit is not None:
                    self._record(c, day.d, "settlement", debit, self._commissions.pop(c.condor_id, Decimal(0)))

    def _record(self, c: Condor, when: date, reason: str, debit: Decimal, fees: Decimal) -> None:
        pnl = ic.realized_pnl(c, debit, fees)
        self.open = [x for x in self.open if x.condor_id != c.condor_id]
        self._hits = None
        self._closing_legs.pop(c.condor_id, None)
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
