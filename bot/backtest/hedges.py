"""The hedges of a backtest account: the daemon's `HedgeManager` for ALVH (`AlvhHedge`, over
the pure `strategies.alvh` rules), the Cboe VIX Tail Hedge rule (`VxthHedge`), their books
(`HedgeBooks`) and the VIX signals every hedged account shares (`SignalTrack`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from decimal import Decimal

from bot.calendar import NY, UTC
from bot.config import HedgeConfig
from bot.domain import Action, BadQuote, ChainRow, ComboOrder, Leg, OptionSpec, Quote
from bot.hedging import SHORT_CHECK
from bot.indicators import VixSignals
from strategies import alvh

from bot.backtest.account import Account
from bot.backtest.condors import CondorTrader
from bot.backtest.day import Day, Instant

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
        wanted = [inst for inst in day.instants
                  if "monitor" in inst.jobs or "rebalance" in inst.jobs or "entry" in inst.jobs]
        self.points = {
            inst.index: alvh.Signals(inst.vix, rsi, macd, signal, closed_active, day.d)
            for inst, (rsi, macd, signal, _) in zip(wanted, self.signals.peek_many([inst.vix for inst in wanted]))}

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


def signal_key(cfg: HedgeConfig) -> tuple:
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
        self._alvh_lots: tuple[alvh.Lot, ...] | None = None  # kept until the next fill or settlement
        self._held: dict[str, OptionSpec] | None = None  # likewise

    def fill(self, layer: str, option: OptionSpec, qty: int, price: Decimal, commission: Decimal, write: bool) -> None:
        self.specs[option.key] = option
        self._alvh_lots = self._held = None
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
        self._alvh_lots = self._held = None
        if sum(1 for (_, key) in self.lots if key == option.key) > 1:
            self.shared_settlements += 1
        for (layer, key), lot in list(self.lots.items()):
            if key == option.key:
                self.books[layer].cash_flow += price * option.multiplier * lot.quantity
                del self.lots[(layer, key)]

    def held(self) -> dict[str, OptionSpec]:
        """The options held (by key), the same dict until the books change: read-only."""
        if self._held is None:
            self._held = {key: self.specs[key] for (_, key) in self.lots}
        return self._held

    @property
    def shorts(self) -> bool:
        return any(lot.quantity < 0 for lot in self.lots.values())

    def alvh_lots(self) -> tuple[alvh.Lot, ...]:
        """The lots as `alvh.Lot`s (the same tuple until the books change: evaluations read it
        every half hour while written calls are open)."""
        if self._alvh_lots is None:
            self._alvh_lots = tuple(alvh.Lot(layer, self.specs[key], lot.quantity, lot.cost)
                                    for (layer, key), lot in self.lots.items() if lot.quantity)
        return self._alvh_lots

    def options(self) -> list[OptionSpec]:
        return [self.specs[k] for k in sorted({key for _, key in self.lots})]

    def market_value(self, quotes) -> dict[str, Decimal]:
        out = {layer: Decimal(0) for layer in self.layers}
        for (layer, key), lot in self.lots.items():
            q = quotes.get(key)
            if q is not None:
                out[layer] += q.mid * self.specs[key].multiplier * lot.quantity
        return out


class OnRead(Mapping):
    """A read-only mapping over known keys whose values are computed on first read, then kept:
    the market inputs of one evaluation, which `alvh.decide` reads only in part. The pure code
    sees a mapping (`get`, `[]`, iteration in the keys' order) with the values an eager dict
    would hold; tests/test_backtest.py checks the decisions are the same."""

    def __init__(self, keys: Iterable[str], compute: Callable[[str], object]):
        self._keys = tuple(keys)
        self._compute = compute
        self._got: dict[str, object] = {}

    def __getitem__(self, key: str):
        got = self._got.get(key, _NONE)
        if got is _NONE:
            if key not in self._keys:
                raise KeyError(key)
            got = self._got[key] = self._compute(key)
        return got

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class OnReadQuotes(Mapping):
    """The quotes of held options (by key), priced when read: `get` of one key builds that
    quote alone (its option priced in one batch with all the held ones, see `Day.lot_quotes`),
    iteration builds them all; an option that is not live (expired, not quoted) has no entry,
    as in the eager dict. A live update reads the written calls' quotes only."""

    def __init__(self, keys: Collection[str], price: Callable[[Iterable[str] | None], dict[str, Quote]]):
        self._keys = keys
        self._price = price  # the quotes of these keys (None: all), missing when not live
        self._one: dict[str, Quote | None] = {}
        self._got: dict[str, Quote] | None = None

    def _all(self) -> dict[str, Quote]:
        if self._got is None:
            self._got = self._price(None)
        return self._got

    def get(self, key: str, default=None):
        if self._got is not None:
            return self._got.get(key, default)
        got = self._one.get(key, _NONE)
        if got is _NONE:
            got = self._one[key] = self._price((key,)).get(key) if key in self._keys else None
        return default if got is None else got

    def __getitem__(self, key: str) -> Quote:
        got = self.get(key)
        if got is None:
            raise KeyError(key)
        return got

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


_NONE = object()


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

    def market(self, day: Day, inst: Instant, lots: tuple[alvh.Lot, ...], chains: bool,
               wanted: dict[str, tuple[date, str]] | None = None) -> alvh.HedgeMarket:
        """The inputs `HedgeManager.evaluate` gathers: quotes of the held options and, to rebalance, the chain of
        each layer's expiry and of the write expiry (pruned, see the module doc). Both are priced when
        `alvh.decide` first reads them (`OnRead`): most evaluations read the quote of a short or two
        and no chain at all, and a value is the same whenever it is read. Without chains, the held
        quotes at a moved instant are still priced with the `wanted` chains: the rebalance that
        follows reads them at the same instant (one batch instead of two, the same numbers)."""
        if wanted is None:
            wanted = self.chain_expiries(day, inst) if chains else {}
        quotes = self._held_quotes(day, inst, lots, list(wanted.values()))
        out: Mapping[str, tuple[ChainRow, ...]] = {}
        if chains:
            out = OnRead(wanted, lambda purpose: self._chain_rows(day, inst, wanted, lots, purpose))
        return alvh.HedgeMarket(day.d, inst.vix, out, quotes)

    def chain_expiries(self, day: Day, inst: Instant) -> dict[str, tuple[date, str]]:
        listed = day.vix_expiries(inst)
        return alvh.chain_expiries([d for d, tc in listed if tc == "VIX"], [d for d, tc in listed if tc == "VIXW"],
                                   day.d, self.cfg)

    def _held_quotes(self, day: Day, inst: Instant, lots: tuple[alvh.Lot, ...],
                     batch: list[tuple[date, str]] = ()) -> Mapping[str, Quote]:
        if not lots:
            return {}
        held = self.books.held()
        return OnReadQuotes(held, lambda keys: day.lot_quotes(held, inst, batch, keys))

    def _chain_rows(self, day: Day, inst: Instant, wanted: dict[str, tuple[date, str]], lots: tuple[alvh.Lot, ...],
                    purpose: str) -> tuple[ChainRow, ...]:
        """The rows of one purpose's chain handed to the pure code: around the target delta for a
        layer; for the write chain, around the write delta above every floor the planner may use
        (strikes of held longs and of the longs it may buy)."""
        # every chain in one batch on the first read of one (at a moved instant with the held quotes)
        day.vix_chains(inst, list(wanted.values()), list(self.books.held().values()) if day.moved(inst) else ())
        if purpose != "write":
            chain = day.vix_chain(inst, *wanted[purpose])
            return day.rows(inst, chain, chain.around(chain.by_delta(self.cfg.layer(purpose).delta)))
        w = self.cfg.write
        floors = {float(lot.option.strike) for lot in lots if lot.quantity > 0}
        for layer in alvh.LAYERS:
            if layer in wanted:
                chain = day.vix_chain(inst, *wanted[layer])
                j = chain.by_delta(self.cfg.layer(layer).delta)
                if j is not None:
                    floors.add(float(chain.strikes[j]))
        chain = day.vix_chain(inst, *wanted["write"])
        keep = chain.around(chain.by_delta(w.delta))
        for floor in floors:
            keep |= chain.around(chain.by_delta(w.delta, floor))
        return day.rows(inst, chain, keep)

    # -- HedgeManager.on_update / evaluate
    def on_update(self, day: Day, inst: Instant, signals: alvh.Signals) -> None:
        """`HedgeManager.on_update` (the monitor's live VIX): evaluate when the value triggers
        something, and every SHORT_CHECK while written calls are open."""
        due = self.has_shorts and (self.last_short_check is None or
                                   inst.ts - self.last_short_check >= SHORT_CHECK.total_seconds())
        if due or alvh.wants_evaluation(signals, self.state, self.has_shorts, self.cfg):
            self.last_short_check = inst.ts
            self.evaluate(day, inst, signals, scheduled=False)

    def evaluate(self, day: Day, inst: Instant, signals: alvh.Signals, scheduled: bool) -> None:
        """`HedgeManager.evaluate`: inputs as the daemon gathers them, the pure decision, its
        actions in order through the walk. As there, a trigger with written calls open buys them
        back first, on the held quotes alone, and the rebalance is then decided on the market as
        it stands once those walks are done (prices move while a walk runs)."""
        state = self.state
        why = alvh.trigger(signals, state, self.cfg, scheduled)
        lots = self.books.alvh_lots()
        self.has_shorts = any(lot.quantity < 0 for lot in lots)
        if why == "update":  # most live updates can do nothing: decide's state without the planner
            quiet = alvh.quiet_update(signals, self._held_quotes(day, inst, lots), lots, state, self.cfg)
            if quiet is not None:
                self.decisions += 1
                self.state = quiet
                return
        notional = self.notional(inst.t)
        failed = None
        wanted = self.chain_expiries(day, inst) if why != "update" else {}  # the session's (Day.vix_expiries)
        if why != "update" and self.has_shorts:
            held = self.market(day, inst, lots, chains=False, wanted=wanted)
            urgent = alvh.buy_backs(signals, held, alvh.HedgeBook(lots, notional, self.vega), state, self.cfg)
            if urgent:
                failed = self._run_plan(day, inst, urgent, None)
                lots = self.books.alvh_lots()
                inst = day.at(inst, self.account.clock)
        # with nothing held and nothing to hedge every target is 0 and decide uses no chain
        # (tests/test_backtest.py checks the decision is the same with and without them)
        need_chains = why != "update" and (bool(lots) or notional > 0 or self.vega > 0)
        market = self.market(day, inst, lots, chains=need_chains, wanted=wanted if need_chains else {})
        book = alvh.HedgeBook(lots, notional, self.vega)
        decision = alvh.decide(signals, market, book, state, self.cfg, scheduled)
        self.decisions += 1
        if decision.activated and not state.activated:
            self.activations += 1
        self.state = decision.state
        actions = decision.actions
        if failed is not None:  # a buy-back sent first did not fill: not again now
            actions = tuple(a for a in actions if a.kind != alvh.BUY_BACK)
        self._run_plan(day, inst, actions, failed)
        self.has_shorts = self.books.shorts

    def _run_plan(self, day: Day, inst: Instant, actions, failed: str | None) -> str | None:
        """`HedgeManager._run_plan`: after a miss only what stands alone goes on. Returns the
        first miss, if any."""
        if len(actions) > 1:  # their walks' quotes in one batch
            self.account.prefetch([ComboOrder(a.legs, a.quantity) for a in actions],
                                  max(inst.ts, self.account.clock), day.pricer)
        for action in actions:
            if self.state.halted and action.kind != alvh.BUY_BACK:
                break
            if failed is not None and not alvh.proceeds_after_failure(action):
                continue
            if not self._execute(day, inst, action) and failed is None:
                failed = f"{action.kind} {action.layer}"
        return failed

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
