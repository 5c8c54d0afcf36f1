"""The backtest's paper account: the daemon's simulated exchange, driven without a clock.

`BacktestExchange` IS `bot.sim.exchange.SimExchange` (order checks, max-loss margin, the
no-naked-short-call rule, the fill model, positions, cash, SPX and VIX cash settlement), on
an in-memory SQLite database, with two changes:

- quotes come from the shared `Pricer` (bit-for-bit the exchange's own numbers, computed once
  per instant for every variant instead of once per request);
- commissions: the run's schedule (`bot.sim.commissions`: IB's plus exchange, ORF and OCC fees
  by default, or `flat`), charged by the exchange's own fill code, as the daemon's exchange
  charges them with the same `sim.commissions`; interest on cash is the exchange's too
  (`SimExchange.accrue_interest`, the T-bill rate from each close to the next).

`Walker` replays the daemon's order walk (`bot.walk`, which bot.execution.Executor drives
against SimExchange) on its own timeline: the combo is priced by `combo_pricing` on the quotes
of each walk step's instant (decision time, +15 s, +30 s, ...), each step's limit is
`WalkPlan.step_price`, and the exchange's fill rule (`fills_at`) is tried where the exchange tries it
(at placement, at each poll, after each modify, at the cancel). The order is then placed at the
walk's final limit at its fill time, so the exchange fills it at once, at the price and time the
daemon's walk would have got; a walk that times out advances the account's clock as the
daemon's does and places nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from bot.calendar import NY, UTC, TradingCalendar
from bot.config import ExecutionConfig
from bot.domain import BadQuote, ComboOrder, Fill, Leg, OptionSpec, OrderState, OrderStatus, Quote
from bot.sim.exchange import ExchangeReject, ExchangeSettings, SimExchange, combo_prices, fills_at
from bot.walk import WalkPlan, combo_pricing
from bot.sim.market import HistoryMarket

from bot.backtest.pricer import Pricer


# --------------------------------------------------------------------------- the exchange


class BacktestExchange(SimExchange):
    """`SimExchange` on ":memory:" with quotes from a shared `Pricer` (commissions: the
    settings' schedule, as the daemon's exchange charges them)."""

    def __init__(self, market: HistoryMarket, calendar: TradingCalendar, settings: ExchangeSettings,
                 pricer: Pricer):
        super().__init__(market, calendar, settings, ":memory:")
        self.pricer = pricer
        self.walk_quotes: tuple[datetime, dict[str, Quote]] | None = None

    def price_options(self, options: list[OptionSpec], t: datetime) -> dict[str, Quote]:
        # placing at the walk's fill time: the walk priced these legs at that instant already
        # (bid / ask are all the exchange's order checks use)
        walk = self.walk_quotes
        if walk is not None and walk[0] == t and all(o.key in walk[1] for o in options):
            return walk[1]
        return self.pricer.quotes(options, t)

    def vix_soq(self, expiry: date) -> float:
        # on its own session, the open's VIX from the pricer's path of the day (the market's
        # own path, array for array: tests/test_backtest_pricer.py), not a second build of it
        day = self.pricer.day
        if day is not None and day.session == expiry:
            return float(day.vix[0])
        return super().vix_soq(expiry)


# --------------------------------------------------------------------------- the walk


class Walker:
    """The daemon's order walk (`bot.walk.WalkPlan`, as `Executor.execute` / `walk` / `cancel`
    drive it against `SimExchange`), replayed on its own timeline from exchange-identical
    quotes.

    Step 0: price (`combo_pricing`), limit at mid (`step_price`), place: the exchange tries the
    fill with the quotes of that instant. Then every `step_s`: the poll (the exchange tries the
    working limit on that instant's quotes), then the next step's limit from fresh quotes (a
    modify, tried at once when the limit changed). After `max_steps`, a wait to
    `final_wait_s` and the cancel (the exchange tries once more: a cancel can lose the race to
    a fill). The fill rule is the exchange's (`fills_at`).
    """

    def __init__(self, cfg: ExecutionConfig, fill_fraction: float):
        self.plan = WalkPlan.of(cfg)
        self.fill_fraction = fill_fraction
        # walks of today by what they depend on (legs, worst price, start, close; not the
        # quantity): the accounts of a run send the same condor orders at the same instants,
        # and a walk is a function of the day's quotes (cleared when the pricer's day changes)
        self._walks: dict[tuple, tuple] = {}
        self._walks_day = None

    PREFETCH_ENDS = 4  # a walk is assumed to end within its first polls (most fill at the first)
    MAX_PREFETCH_INSTANTS = 300

    def prefetch(self, orders: list[ComboOrder], t0: float, pricer: Pricer) -> None:
        """Price, in one batch, the instants at which the walks of these orders, sent one
        after the other from t0, look at their legs if each walk before ended by its
        `PREFETCH_ENDS`-th instant (each starts where the one before ended, or where it
        started when it was blocked). A speculation on quotes only (`Pricer.prefetch_bid_ask`):
        a walk that starts elsewhere prices its own, and the walks are unchanged."""
        offsets = self.plan.offsets()
        starts = {t0}
        wanted = []
        seen = 0
        for order in orders:
            stamps = sorted({s + dt for s in starts for dt in offsets})
            seen += len(stamps)
            if seen > self.MAX_PREFETCH_INSTANTS:
                break
            wanted.append(([leg.option for leg in order.legs], stamps))
            starts = {s + dt for s in starts for dt in offsets[:self.PREFETCH_ENDS]}
        if len(wanted) > 1:
            pricer.prefetch_bid_ask(wanted)

    def walk(self, order: ComboOrder, t0: float, pricer: Pricer, close_ts: float
             ) -> tuple[tuple[Decimal, float, dict[str, Quote]] | None, float]:
        """((limit, fill time, quotes then) or None, time the walk ended). BadQuote when the
        order is blocked before it is sent (the daemon's order.blocked)."""
        if self._walks_day is not pricer.day:
            self._walks.clear()
            self._walks_day = pricer.day
        key = (tuple((leg.option.key, leg.action, leg.ratio) for leg in order.legs), order.limit_floor, t0, close_ts)
        got = self._walks.get(key)
        if got is None:
            got = self._walks[key] = self._walk(order, t0, pricer, close_ts)
        return got

    def _walk(self, order: ComboOrder, t0: float, pricer: Pricer, close_ts: float
              ) -> tuple[tuple[Decimal, float, dict[str, Quote]] | None, float]:
        plan = self.plan
        stamps = [t0 + dt for dt in plan.offsets()]
        book = pricer.bid_ask_over([leg.option for leg in order.legs], stamps)
        legs = list(order.legs)
        combo: dict[int, tuple[float, float] | None] = {}

        def fills(limit: Decimal, k: int) -> bool:
            """The exchange's fill rule for this limit on the quotes of walk instant k."""
            if stamps[k] >= close_ts:
                return False
            if k not in combo:
                try:
                    combo[k] = combo_prices(legs, book[k])[:2]
                except ExchangeReject:
                    combo[k] = None
            got = combo[k]
            return got is not None and fills_at(limit, got[0], got[1], self.fill_fraction)

        limit = plan.step_price(combo_pricing(order, book[0]), 0, order)  # BadQuote: blocked, nothing sent
        if fills(limit, 0):
            return (limit, stamps[0], book[0]), stamps[0]
        step = 1
        k = 0
        while True:
            k += 1  # sleep(step_s), then the poll
            if fills(limit, k):
                return (limit, stamps[k], book[k]), stamps[k]
            if step > plan.max_steps:
                last = len(stamps) - 1  # wait to final_wait_s, then cancel (which may find it filled)
                if fills(limit, last):
                    return (limit, stamps[last], book[last]), stamps[last]
                return None, stamps[last]
            try:
                new = plan.step_price(combo_pricing(order, book[k]), step, order)
                if new != limit:
                    limit = new
                    if fills(limit, k):
                        return (limit, stamps[k], book[k]), stamps[k]
            except BadQuote:
                pass
            step += 1


# --------------------------------------------------------------------------- one account


@dataclass
class Execution:
    state: OrderState
    fills: list[Fill]
    time: float  # POSIX seconds of the fill


class Account:
    """One variant's account: the exchange plus an in-memory mirror of its positions."""

    def __init__(self, exchange: BacktestExchange, walker: Walker, prefix: str):
        self.ex = exchange
        self.walker = walker
        self.prefix = prefix
        self.positions: dict[str, int] = {}
        self.specs: dict[str, OptionSpec] = {}
        self._n = 0
        self.orders = 0
        self.rejected = 0
        self.blocked = 0
        self.timed_out = 0
        self.commissions = Decimal(0)
        self.clock = 0.0  # the daemon's clock as this account's walks advanced it (POSIX s)

    @property
    def cash(self) -> Decimal:
        return self.ex.cash

    def cash_at(self, t: datetime) -> Decimal:
        """Cash as the daemon's account shows it at t: with the interest of every close passed."""
        self.ex.accrue_interest(t)
        return self.ex.cash

    @property
    def interest(self) -> Decimal:
        """T-bill interest on cash booked so far (the exchange's rule, as the daemon's account)."""
        return self.ex.interest

    def prefetch(self, orders: list[ComboOrder], ts: float, pricer: Pricer) -> None:
        """Orders about to be executed one after the other from ts: their walks' quotes in
        one batch (`Walker.prefetch`)."""
        self.walker.prefetch(orders, ts, pricer)

    def execute(self, order: ComboOrder, ts: float, pricer: Pricer, close_ts: float) -> Execution | None:
        """The daemon's `Executor.execute` of this order decided at ts: the walk, then the fill
        at the exchange (the order is placed at the walk's final limit at its fill time).
        Advances `clock` to the walk's end. None: blocked, timed out or rejected."""
        try:
            (done, end) = self.walker.walk(order, ts, pricer, close_ts)
        except (BadQuote, ExchangeReject):  # no usable quote for a leg: the daemon's order.blocked
            self.blocked += 1
            return None
        self.clock = max(self.clock, end)
        if done is None:
            self.timed_out += 1
            return None
        limit, t_fill, quotes = done
        self._n += 1
        ref = f"{self.prefix}{self._n}"
        when = datetime.fromtimestamp(t_fill, UTC)
        self.ex.walk_quotes = (when, quotes)
        try:
            state = self.ex.place_combo(ref, list(order.legs), order.quantity, limit, when)
        except ExchangeReject:
            self.rejected += 1
            return None
        finally:
            self.ex.walk_quotes = None
        if state.status is not OrderStatus.FILLED:  # cannot happen: the walk's end fills
            self.ex.cancel(ref, when)
            raise RuntimeError(f"order {ref} at {limit} did not fill: {state}")
        fills = self.ex.fills([ref])
        self.orders += 1
        for f in fills:
            key = f.option.key
            q = self.positions.get(key, 0) + f.quantity
            if q:
                self.positions[key] = q
                self.specs[key] = f.option
            else:
                self.positions.pop(key, None)
                self.specs.pop(key, None)
            self.commissions += f.commission
        return Execution(state, fills, t_fill)

    def settle(self, t: datetime) -> list[tuple[OptionSpec, int, Decimal]]:
        """Advance the exchange to t (cash settlement of whatever expired); returns (option,
        quantity settled, price per share) of the positions that left the book."""
        today = t.astimezone(NY).date()
        due = [k for k in self.positions if self.specs[k].expiry <= today]
        if not due:
            return []
        self.ex.advance_to(t)
        out = []
        for key in due:
            s = self.ex.settlement(key)
            if s is not None:
                out.append((self.specs.pop(key), s[0], s[1]))
                self.positions.pop(key, None)
        return out

    def value(self, quotes: dict[str, Quote]) -> Decimal:
        """Positions marked at mid (missing quote = 0, as the exchange's account does)."""
        total = Decimal(0)
        for key, q in self.positions.items():
            quote = quotes.get(key)
            if quote is not None:
                total += quote.mid * self.specs[key].multiplier * q
        return total

    def option_list(self) -> list[OptionSpec]:
        return [self.specs[k] for k in self.positions]

    def net_liquidation(self, t: datetime, pricer: Pricer) -> Decimal:
        return self.cash_at(t) + self.value(pricer.quotes(self.option_list(), t))


def legs_key(legs: tuple[Leg, ...]) -> tuple[str, ...]:
    return tuple(f"{leg.action.value} {leg.option.key}" for leg in legs)
