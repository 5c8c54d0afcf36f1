"""The backtest's day loop: the daemon's jobs at the daemon's instants, without its clock.

The daemon (bot/engine.py) runs a schedule of jobs on a simulated clock: the condor entry
(cron), the monitor every `schedule.monitor_interval_s` (condor exits, then the hedge's live
update), the hedge's scheduled rebalance (cron 10:00) and the session close (settlement, the
VIX daily bar, the account summary). Every job reads the market through the broker, calls the
pure strategy code and executes its proposals through the order walk.

The backtest steps once per session over the same instants (`day.Schedule`), in the same job
order (`Variant.run_day`, here), calls the same pure code (`strategies.iron_condor`,
`strategies.alvh`) on exchange-identical quotes, and skips the instants where the daemon would
do nothing:

- condor exits (condors.py): every open condor's closing debit is computed at every monitor
  instant of the day at once (`Pricer.spx_arrays`); `decide_exits` is called where its take
  profit, stop or time exit (`iron_condor.exit_levels`, `time_exit_due`) can trigger
  (pre-screen tolerance 1e-6), and decides;
- the hedge (hedges.py): `HedgeManager`'s rules, per account: a scheduled evaluation at 10:00 and after
  each condor entry; on the monitor's live VIX an evaluation when `wants_evaluation` says so
  (activation on/off, RSI crossing, a short to buy back at VIX >= stop_vix, a spike to
  monetize) or every `SHORT_CHECK` while written calls are open. The VIX indicators (forming
  bar = the live VIX) are the same for every account and computed once per instant;
- chains (day.py): `decide_entry` and `alvh.decide` choose strikes by delta among the chain they are
  given. The backtest prices the daemon's whole strike band in numpy and hands the pure code
  the rows it can choose (the nearest-delta strikes, the wings, the covered-write floors): the
  same choice without a `Quote` per listed strike (tests/test_backtest.py checks it). The
  hedge's chains and held quotes are priced when `alvh.decide` first reads them
  (`hedges.OnRead`): a live update reads the written calls' quotes only;
- time: each account keeps the daemon's clock, which its order walks move forward; a job runs
  at max(its scheduled time, that clock), on the market state of that time.

Orders go through `account.Account.execute`: the daemon's walk replayed step by step, filled
by the simulated exchange itself (see account.py). tests/test_backtest_parity.py runs the
daemon and this loop on the same windows: same trades, same net liquidation to the cent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from bot.calendar import TradingCalendar
from bot.config import Config, HedgeConfig
from bot.hedging import WARMUP_SESSIONS
from strategies import alvh

from bot.backtest.account import Account
from bot.backtest.condors import CondorTrader
from bot.backtest.day import Day, Instant
from bot.backtest.hedges import AlvhHedge, HedgeBooks, SignalTrack, VxthHedge, VxthRule

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
        """`Account.net_liquidation` (cash with the interest of every close passed, positions at
        mid), the options marked from the day's paths (`Day.quotes`)."""
        acct = self.account
        return acct.cash_at(inst.t) + acct.value(day.quotes(acct.option_list(), inst))

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
                self._record(day, inst.moved(stop, day.arrays.step_of(stop)))
                return
            # the daemon's loop asks each job for its next fire after the clock: a fire that the
            # walks of earlier jobs have passed is skipped (the close is never passed)
            late = acct.clock >= inst.ts
            for job in inst.jobs:
                if late and job != "close" and job != "vxth":
                    continue
                at = day.at(inst, acct.clock)
                if job == "entry":
                    if condors.entry(day, at, self.nl(day, at)) and hedge is not None:  # the engine's hedge rebalance after an entry
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
        quotes = day.quotes(options, inst)
        nl = acct.cash_at(inst.t) + acct.value(quotes)
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
