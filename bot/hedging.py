"""The hedge's thin execution layer: gather signals and chains, call the pure ALVH decision,
execute its actions as intents, keep the books, and guard the no-naked-short invariant.

Indicators run on VIX daily closes (warmed up from the broker's history at start), with the
live VIX as the forming bar; the bar is committed at each session close.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from bot.broker.base import Broker, BrokerError
from bot.calendar import NY, TradingCalendar
from bot.chains import ChainSearch
from bot.clock import Clock
from bot.config import Config
from bot.domain import Action, BadQuote, ChainRow, ComboOrder, Condor, Fill, Intent, IntentStatus, Leg, OptionSpec, Right
from bot.execution import HEDGE_FLATTEN, Executor
from bot.indicators import VixSignals
from bot.store import Store
from strategies import alvh

STATE_KEY = "hedge_state"
EVENT = {
    alvh.BUY: "hedge.bought",
    alvh.SELL: "hedge.sold",
    alvh.ROLL: "hedge.rolled",
    alvh.WRITE: "hedge.written",
    alvh.BUY_BACK: "hedge.bought_back",
    alvh.MONETIZE: "hedge.monetized",
}
WARMUP_SESSIONS = 300
SHORT_CHECK = timedelta(minutes=30)


@dataclass
class LayerBooks:
    """Accounting of one layer (dollars)."""

    premium_paid: Decimal = Decimal(0)  # long calls bought
    premium_collected: Decimal = Decimal(0)  # short calls written
    cash_flow: Decimal = Decimal(0)  # every hedge fill and settlement, commissions included
    open_cost: Decimal = Decimal(0)  # cost basis of what is still held (shorts negative)
    market_value: Decimal = Decimal(0)

    @property
    def unrealized(self) -> Decimal:
        return self.market_value - self.open_cost

    @property
    def realized(self) -> Decimal:
        return self.cash_flow + self.open_cost


class HedgeManager:
    def __init__(self, cfg: Config, clock: Clock, calendar: TradingCalendar, broker: Broker, store: Store,
                 executor: Executor, log, settle=None):
        self.cfg = cfg
        self.hcfg = cfg.hedge
        self.clock = clock
        self.cal = calendar
        self.broker = broker
        self.store = store
        self.executor = executor
        self.log = log
        self.settle = settle  # async: book expired options' settlements before the books are read
        self.signals = VixSignals(self.hcfg.rsi_period, self.hcfg.macd_fast, self.hcfg.macd_slow, self.hcfg.macd_signal)
        self.committed_through: date | None = None
        self.busy = False
        self._vega_cache = 0.0
        self._state: alvh.HedgeState | None = None
        self._has_shorts = False
        self._layer_of_ref: dict[str, str] | None = None
        self._open: dict[tuple[str, str], int] = {}  # (layer, option key) -> open quantity, from the fills read
        self._fills: list[tuple[str, Fill]] = []
        self._fills_rowid = 0
        self._last_short_check: datetime | None = None
        self._last_choice: dict[tuple[date, str, float], Decimal] = {}  # where each chain search ended
        self._streamed_candidates: list[OptionSpec] = []
        self._keep: list[OptionSpec] = []
        self.chain_requests = 0  # option quotes the last rebalance asked for

    # --- persisted state ------------------------------------------------------------------------
    @property
    def state(self) -> alvh.HedgeState:
        """Kept in memory (live ticks ask for it) and written through to the store."""
        if self._state is None:
            raw = self.store.get_control(STATE_KEY)
            d = json.loads(raw) if raw else None
            self._state = (alvh.HedgeState(d["tier"], d["activated"], d["rsi"], frozenset(d["monetized"]), d["halted"],
                                           _day(d.get("activated_on")), _day(d.get("active_session")))
                           if d else alvh.HedgeState())
        return self._state

    def _save(self, state: alvh.HedgeState) -> None:
        d = asdict(state)
        d["monetized"] = sorted(state.monetized)
        for k in ("activated_on", "active_session"):
            d[k] = None if d[k] is None else d[k].isoformat()
        self.store.set_control(STATE_KEY, json.dumps(d))
        self._state = state

    def wants_evaluation(self, vix: float) -> bool:
        """Cheap check on a live VIX tick (no I/O): does this value trigger the hedge now?
        (`alvh.wants_evaluation`)"""
        if not self.hcfg.enabled or self.busy:
            return False
        values = self.signals.peek(vix)
        signals = alvh.Signals(vix, values.rsi, values.macd, values.signal, self._closed_active(),
                               self.clock.now().astimezone(NY).date())
        return alvh.wants_evaluation(signals, self.state, self._has_shorts, self.hcfg)

    async def on_update(self, vix: float) -> None:
        """A live VIX value outside the schedule: evaluate when it triggers something, and every
        `SHORT_CHECK` while written calls are open (their 80%-profit buy-back needs quotes)."""
        now = self.clock.now()
        due = self._has_shorts and (self._last_short_check is None or now - self._last_short_check >= SHORT_CHECK)
        if self.wants_evaluation(vix) or due:
            self._last_short_check = now
            await self.evaluate(scheduled=False)

    def _closed_active(self) -> bool:
        last = self.signals.last
        closed = alvh.Signals(last.value, last.rsi, last.macd, last.signal) if last.value is not None else None
        return closed is not None and alvh.is_activated(closed, self.hcfg)

    # --- indicators ---------------------------------------------------------------------------------
    async def warm_up(self) -> None:
        closes = await self.broker.daily_closes("VIX", WARMUP_SESSIONS)
        self.signals.warm_up([c for _, c in closes])
        self.committed_through = closes[-1][0] if closes else None
        self._has_shorts = any(lot.quantity < 0 for lot in self.lots())  # also reads the books once, now
        self.log.info("signal.warmed_up", bars=len(closes), through=str(self.committed_through),
                      rsi=_round(self.signals.last.rsi), macd=_round(self.signals.last.macd))

    def commit_close(self, session: date, vix_close: float) -> None:
        if self.committed_through is None or session > self.committed_through:
            self.signals.commit(vix_close)
            self.committed_through = session

    # --- the evaluation -------------------------------------------------------------------------------
    async def evaluate(self, scheduled: bool) -> alvh.Decision | None:
        if not self.hcfg.enabled or self.busy:
            return None
        now = self.clock.now()
        if not self.cal.is_open(now):
            return None
        self.busy = True
        try:
            return await self._evaluate(scheduled, now)
        finally:
            self.busy = False

    async def _evaluate(self, scheduled: bool, now: datetime) -> alvh.Decision:
        if self.settle is not None:  # VIX options settle at the morning SOQ: out of the books first
            await self.settle()
        vix = await self.broker.spot("VIX")
        today = now.astimezone(NY).date()
        values = self.signals.peek(vix)
        signals = alvh.Signals(vix, values.rsi, values.macd, values.signal, self._closed_active(), today)
        state = self.state
        why = alvh.trigger(signals, state, self.hcfg, scheduled)
        lots = self.lots()
        self._has_shorts = any(lot.quantity < 0 for lot in lots)
        if why in ("activation_on", "activation_off"):  # before anything it makes the hedge do
            self.log.warning("hedge.activation", active=why == "activation_on", vix=round(vix, 2))
        failed = None
        if why != "update" and self._has_shorts:
            # buy-backs first: they need only the quotes of what is held (in memory), while the
            # chains a rebalance needs may take seconds to gather when nothing was streaming
            held = await self._market(today, vix, lots, with_chains=False)
            urgent = alvh.buy_backs(signals, held, alvh.HedgeBook(tuple(lots), self._condor_notional(),
                                                                self._condor_vega()), state, self.hcfg)
            if urgent:
                failed = await self._run_plan(urgent, now)
                lots = self.lots()
        # the write chain only when this evaluation may write (alvh.decide's own condition)
        writes = why == "schedule" and alvh.writes_allowed(signals, state, alvh.activation(signals, state, self.hcfg),
                                                           self.hcfg)
        market = await self._market(today, vix, lots, with_chains=why != "update", writes=writes)
        book = alvh.HedgeBook(tuple(lots), self._condor_notional(), self._condor_vega())
        decision = alvh.decide(signals, market, book, state, self.hcfg, scheduled)
        tier = self.hcfg.tiers[decision.tier]
        self.log.info(
            "signal.evaluated", vix=round(vix, 2), rsi=_round(values.rsi), macd=_round(values.macd, 4),
            signal_line=_round(values.signal, 4), tier=decision.tier, tier_bounds=[tier.lower, tier.upper],
            multiplier=decision.multiplier, activation=decision.activated, trigger=decision.trigger,
        )
        self.store.add_signal(now, "vix", {"vix": vix, "rsi": values.rsi, "macd": values.macd,
                                           "signal": values.signal, "tier": decision.tier,
                                           "multiplier": decision.multiplier, "activated": decision.activated,
                                           "trigger": decision.trigger})
        if decision.rebalance:
            held = {layer: sum(lot.quantity for lot in lots if lot.layer == layer and lot.quantity > 0)
                    for layer in alvh.LAYERS}
            self.log.info("hedge.target", targets=decision.targets, held=held, multiplier=decision.multiplier,
                          notional=str(book.condor_notional), trigger=decision.trigger)
        self._save(decision.state)
        actions = decision.actions
        if failed is not None:  # a buy-back sent first did not fill: not again now, and nothing that needed it
            actions = tuple(a for a in actions if a.kind != alvh.BUY_BACK)
        await self._run_plan(actions, now, failed=failed)
        await self.broker.stream_quotes(self._keep)
        return decision

    async def _run_plan(self, actions, now: datetime, purpose: str | None = None,
                        failed: str | None = None) -> str | None:
        """Execute a plan against what happens, not what was planned: once an action does not
        fill, only the actions that stand without it go on (`alvh.proceeds_after_failure`); the
        next evaluation plans again from the broker's positions. The executor's pre-send guard
        checks each order against the broker in any case. Returns the first miss, if any."""
        for action in actions:
            if purpose != HEDGE_FLATTEN and self.store.halted()[0]:
                break
            if self.state.halted and action.kind != alvh.BUY_BACK:  # a buy-back only ever reduces risk
                break
            if failed is not None and not alvh.proceeds_after_failure(action):
                self.log.warning("hedge.skipped", kind=action.kind, layer=action.layer, quantity=action.quantity,
                                 legs=_legs(action), reason=f"an earlier action did not fill ({failed})")
                continue
            filled = await self._execute(action, now, purpose)
            if not filled and failed is None:
                failed = f"{action.kind} {action.layer}"
        self._has_shorts = any(lot.quantity < 0 for lot in self.lots())
        return failed

    def short_calls(self) -> int:
        """Written calls still open, in contracts."""
        return -sum(lot.quantity for lot in self.lots() if lot.quantity < 0)

    @property
    def has_shorts(self) -> bool:
        return self.short_calls() > 0

    async def close_shorts(self, reason: str, purpose: str | None = None) -> int:
        """Buy back every written call (winding down, `kill --flatten`): the longs that cover
        them stay. Returns the short contracts still open afterwards."""
        if self.settle is not None:
            await self.settle()
        shorts = [lot for lot in self.lots() if lot.quantity < 0]
        if shorts and self.cal.is_open(self.clock.now()):
            actions = [alvh.HedgeAction(alvh.BUY_BACK, lot.layer, (Leg(lot.option, Action.BUY),), -lot.quantity, reason)
                       for lot in shorts]
            await self._run_plan(actions, self.clock.now(), purpose)
        return self.short_calls()

    async def _market(self, today: date, vix: float, lots: list[alvh.Lot], with_chains: bool,
                      writes: bool = True) -> alvh.HedgeMarket:
        """Quotes of the held options and, to rebalance, for each layer's expiry and the write
        expiry the few calls `alvh.decide` can choose (`bot.chains`: the whole-chain choice from
        a few dozen quotes). Those calls and the held ones are then kept streaming, so the next
        evaluation, above all one a live tick triggers, decides from quotes already in memory."""
        quotes = await self.broker.quotes([lot.option for lot in lots]) if lots else {}
        chains: dict[str, tuple[ChainRow, ...]] = {}
        keep: list[OptionSpec] = [lot.option for lot in lots]
        if with_chains:
            searches: dict[tuple[date, str], ChainSearch] = {}
            chosen: dict[tuple[date, str], list[int | None]] = {}
            monthly = await self.broker.expiries("VIX", "VIX")
            weekly = await self.broker.expiries("VIX", "VIXW") if self.hcfg.write.weekly else []
            wanted = alvh.chain_expiries(monthly, weekly, today, self.hcfg)
            layer_strikes: list[Decimal] = []
            for layer in alvh.LAYERS:
                if layer not in wanted:
                    continue
                expiry, tc = wanted[layer]
                search = await self._search(searches, expiry, tc)
                i = await self._best(search, expiry, tc, self.hcfg.layer(layer).delta)
                chosen.setdefault((expiry, tc), []).append(i)
                if i is not None:
                    layer_strikes.append(search.options[i].strike)
                chains[layer] = search
            if "write" in wanted and writes:
                w, tc = wanted["write"]
                search = await self._search(searches, w, tc)
                target = self.hcfg.write.delta
                i = await self._best(search, w, tc, target)
                picks = [i]
                # every floor the planner may use: strikes of the longs held and of those it may buy
                floors = {lot.option.strike for lot in lots if lot.quantity > 0} | set(layer_strikes)
                for floor in sorted(floors):
                    picks.append(await search.at_or_above(floor, i, target))
                chosen.setdefault((w, tc), []).extend(picks)
                chains["write"] = search
            chains = {purpose: search.chain() for purpose, search in chains.items()}
            for key, search in searches.items():
                keep += [search.options[j] for j in search.window(chosen.get(key, []))]
            self.chain_requests = sum(s.requests for s in searches.values())
        else:
            keep += self._streamed_candidates
        if with_chains:
            self._streamed_candidates = keep[len(lots):]
        self._keep = keep  # streamed once the plan is sent (`_evaluate`): off the order's path
        return alvh.HedgeMarket(today, vix, chains, quotes)

    async def _search(self, searches: dict, expiry: date, trading_class: str) -> ChainSearch:
        key = (expiry, trading_class)
        if key not in searches:
            strikes = await self.broker.strikes("VIX", trading_class, expiry)
            options = [OptionSpec("VIX", expiry, k, Right.CALL, trading_class) for k in strikes]
            searches[key] = ChainSearch(options, self.broker.quotes)
        return searches[key]

    async def _best(self, search: ChainSearch, expiry: date, trading_class: str, target: float) -> int | None:
        """The chain's choice for a target delta, starting where the last search found it."""
        memo = (expiry, trading_class, target)
        start = None
        if memo in self._last_choice:
            strike = self._last_choice[memo]
            start = next((j for j, o in enumerate(search.options) if o.strike >= strike), None)
        i = await search.best(target, start)
        if i is not None:
            self._last_choice[memo] = search.options[i].strike
        return i

    async def _execute(self, action: alvh.HedgeAction, now: datetime, purpose: str | None = None) -> bool:
        """One action as one intent; True when it filled in full."""
        ref = self.store.next_order_ref("vx", now.astimezone(NY).date())
        intent = Intent(ref, purpose or f"hedge.{action.kind}", action.layer, ComboOrder(action.legs, action.quantity),
                        reason=action.reason, created_at=now)
        outcome = await self.executor.execute(intent)
        if outcome.status is not IntentStatus.FILLED or outcome.state is None:
            return False
        fields = dict(layer=action.layer, order_ref=ref, quantity=action.quantity, legs=_legs(action),
                      price=str(outcome.state.avg_price), reason=action.reason)
        if action.kind == alvh.ROLL:
            old, new = action.legs[0].option, action.legs[1].option
            fields.update(old=old.key, new=new.key, dte_old=(old.expiry - now.date()).days, debit=fields["price"])
        if action.kind == alvh.WRITE:
            fields["premium"] = str(-(outcome.state.avg_price or 0) * 100 * action.quantity)
        self.log.info(EVENT[action.kind], **fields)
        await self.check_invariant()
        return outcome.state.filled >= action.quantity

    async def check_invariant(self) -> bool:
        """No naked short VIX call, at the broker. If ever violated: halt the hedge and alert."""
        try:
            positions = await self.broker.positions()
        except BrokerError as e:
            self.log.warning("hedge.invariant_unknown", error=str(e))
            return True
        naked = alvh.naked_shorts((p.option, p.quantity) for p in positions)
        if naked:
            self._save(replace(self.state, halted=True))
            self.log.error("hedge.alert", problem="naked short VIX call", naked={o.key: q for o, q in naked},
                           action="hedge halted until `spx-bot resume`")
            return False
        return True

    def resume(self) -> None:
        self._save(replace(self.state, halted=False))

    # --- books ------------------------------------------------------------------------------------------
    def _hedge_fills(self) -> list[tuple[str, Fill]]:
        """(layer, fill) of every hedge execution and VIX settlement, in the order stored. Read
        incrementally: the books are looked at on every evaluation. A settlement (or any fill
        of no intent) is split across the layers by each layer's own open quantity of that
        contract: two layers may hold the same option when it settles."""
        if self._layer_of_ref is None:
            self._layer_of_ref = {r.intent.order_ref: r.intent.group for r in self.store.intents()
                                  if r.intent.purpose.startswith("hedge.")}
        self._fills_rowid, new = self.store.fills_since(self._fills_rowid)
        for f in new:
            layer = self._layer_of_ref.get(f.order_ref)
            if layer is None and f.order_ref:
                rec = self.store.intent(f.order_ref)  # an intent made after the map was read
                if rec is not None and rec.intent.purpose.startswith("hedge."):
                    layer = self._layer_of_ref[f.order_ref] = rec.intent.group
            if layer is not None:
                self._book_fill(layer, f)
            elif f.option.symbol == "VIX":  # cash settlement: each layer settles what it holds
                for (lay, key), q in list(self._open.items()):
                    if key == f.option.key:
                        self._book_fill(lay, replace(f, quantity=-q, commission=Decimal(0)))
        return self._fills

    def _book_fill(self, layer: str, f: Fill) -> None:
        self._fills.append((layer, f))
        k = (layer, f.option.key)
        self._open[k] = self._open.get(k, 0) + f.quantity
        if not self._open[k]:
            del self._open[k]

    def lots(self) -> list[alvh.Lot]:
        lots: dict[tuple[str, str], tuple[int, Decimal | None]] = {}
        for layer, f in self._hedge_fills():
            k = (layer, f.option.key)
            lots[k] = alvh.lot_after_fill(*lots.get(k, (0, None)), f.quantity, f.price)
        return [alvh.Lot(layer, OptionSpec.from_key(key), q, cost)
                for (layer, key), (q, cost) in lots.items() if q]

    async def books(self) -> dict[str, LayerBooks]:
        out = {layer: LayerBooks() for layer in alvh.LAYERS}
        for layer, f in self._hedge_fills():
            amount = f.price * f.option.multiplier * f.quantity
            b = out[layer]
            b.cash_flow -= amount + f.commission
            if f.quantity > 0 and not f.exec_id.startswith("settle:"):
                b.premium_paid += amount
            elif f.quantity < 0 and self._is_write(f.order_ref):
                b.premium_collected -= amount
        lots = self.lots()
        quotes = await self.broker.quotes([lot.option for lot in lots]) if lots else {}
        for lot in lots:
            q = quotes.get(lot.option.key)
            b = out[lot.layer]
            b.open_cost += lot.cost * lot.option.multiplier * lot.quantity
            b.market_value += (q.mid if q else Decimal(0)) * lot.option.multiplier * lot.quantity
        return out

    def _is_write(self, order_ref: str) -> bool:
        rec = self.store.intent(order_ref)
        return rec is not None and rec.intent.purpose == f"hedge.{alvh.WRITE}"

    async def summary(self) -> dict:
        books = await self.books()
        account = await self.broker.account()
        first = next((f.time for _, f in self._hedge_fills()), None)
        years = max((self.clock.now() - first).total_seconds() / (365.25 * 86400), 1 / 365.25) if first else None
        total = sum((b.cash_flow + b.market_value for b in books.values()), Decimal(0))
        nl = account.net_liquidation
        cost_pct = None if years is None or nl <= 0 else float(-total / nl) / years * 100
        state = self.state
        lots = self.lots()
        return {
            "lots": [{"layer": lot.layer, "option": lot.option.key, "quantity": lot.quantity, "cost": str(lot.cost)}
                     for lot in lots],
            "layers": {layer: {"premium_paid": str(b.premium_paid), "premium_collected": str(b.premium_collected),
                               "realized_pnl": str(b.realized), "unrealized_pnl": str(b.unrealized),
                               "market_value": str(b.market_value),
                               "held": sum(lot.quantity for lot in self.lots() if lot.layer == layer and lot.quantity > 0),
                               "short": -sum(lot.quantity for lot in self.lots() if lot.layer == layer and lot.quantity < 0)}
                       for layer, b in books.items()},
            "total_pnl": str(total),
            "annualized_cost_pct_nl": None if cost_pct is None else round(cost_pct, 3),
            "tier": state.tier, "activated": state.activated, "halted": state.halted,
            "monetized": sorted(state.monetized),
        }

    # --- inputs from the condor book --------------------------------------------------------------------
    def _condor_notional(self) -> Decimal:
        """`alvh.condor_notional` of the open condors (or the last one opened, remembered)."""
        condors = self.store.open_condors()
        last = None
        if not condors:
            recent = self.store.condor_rows(limit=1)
            if recent:
                r = recent[0]
                last = Condor(r["condor_id"], r["expiry"], r["put_short"], r["put_long"], r["call_short"],
                              r["call_long"], r["quantity"], r["credit"], r["opened_at"])
        return alvh.condor_notional(condors, last, self.clock.now(), self.hcfg)

    def _condor_vega(self) -> float:
        """|$ per vol point| of the open condors, from the last quotes seen (vega sizing)."""
        return self._vega_cache

    async def refresh_condor_vega(self) -> None:
        if self.hcfg.sizing != "vega":
            return
        condors = self.store.open_condors()
        legs = [leg for c in condors for leg in c.legs()]
        try:
            quotes = await self.broker.quotes([leg.option for leg in legs])
        except (BrokerError, BadQuote):
            return
        total = 0.0
        for c in condors:
            for leg in c.legs():
                q = quotes.get(leg.option.key)
                if q is not None and q.greeks is not None:
                    total += leg.signed_ratio * q.greeks.vega * 100 * c.quantity
        self._vega_cache = abs(total)


def _legs(action: alvh.HedgeAction) -> list[str]:
    return [f"{'+' if leg.action is Action.BUY else '-'}{leg.option.key}" for leg in action.legs]


def _day(iso: str | None) -> date | None:
    return None if iso is None else date.fromisoformat(iso)


def _round(x: float | None, nd: int = 2) -> float | None:
    return None if x is None else round(x, nd)

