"""The Adaptive Layered VIX Hedge (ALVH.md §2-6): pure targets and decisions.

Three layers of long VIX calls (front / mid / back, "4/4/2" per $100k of condor notional),
scaled by the VIX tier (with hysteresis), an RSI expansion bonus and the MACD activation
state; rolled when a layer's expiry leaves its window; covered short calls written against
layers 2 and 3 (the "temporal theta press"), bought back at 80% profit or at once when
activation begins or VIX >= 25; half a layer sold on a spike (VIX >= 40, value >= 3x cost).

No clock, broker or logging: the engine passes the signals, the market (VIX futures, chains),
the hedge book and the persisted `HedgeState`, and gets back a `Decision`: targets, the new
state, and ordered actions. Every action list keeps the invariant "no naked short VIX call".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from bot.domain import Action, ChainRow, Condor, Leg, OptionSpec, Quote

if TYPE_CHECKING:
    from bot.config import HedgeConfig, LayerConfig

LAYERS = ("front", "mid", "back")

BUY, SELL, ROLL, WRITE, BUY_BACK, MONETIZE = "buy", "sell", "roll", "write", "buy_back", "monetize"


@dataclass(frozen=True)
class Signals:
    """Indicator values on VIX bars (the forming bar included), from the engine."""

    vix: float
    rsi: float | None
    macd: float | None
    signal: float | None
    closed_active: bool = False  # activation on the last completed bar (daily close)
    session: date | None = None  # the trading session these values belong to


@dataclass(frozen=True)
class HedgeState:
    """What the hedge remembers between evaluations (persisted by the engine)."""

    tier: int | None = None
    activated: bool = False
    rsi: float | None = None  # RSI at the previous evaluation: detects the cross above 70
    monetized: frozenset[str] = frozenset()  # layers sold on a spike, not re-bought yet
    halted: bool = False  # a naked short was seen: hedging stops until an operator resumes
    activated_on: date | None = None  # the session activation last turned on (held through it)
    active_session: date | None = None  # the last session in which activation held at any moment


@dataclass(frozen=True)
class Lot:
    """An option position attributed to a layer (shorts: to the layer covering them)."""

    layer: str
    option: OptionSpec
    quantity: int  # + long, - short
    cost: Decimal  # average price per share paid (long) or received (short)


def lot_after_fill(quantity: int, cost: Decimal | None, fill_quantity: int, price: Decimal) -> tuple[int, Decimal]:
    """A lot's (quantity, average cost) after a fill: adding to a position averages the cost,
    reducing it keeps the cost, crossing through zero (or opening) starts at the fill price."""
    new = quantity + fill_quantity
    if quantity == 0 or cost is None or (quantity > 0) != (new > 0):
        return new, price
    if abs(new) > abs(quantity):
        return new, (cost * abs(quantity) + price * abs(fill_quantity)) / abs(new)
    return new, cost


def condor_notional(open_condors: Sequence[Condor], last_opened: Condor | None, now: datetime,
                    cfg: HedgeConfig) -> Decimal:
    """Notional the hedge is sized on (ALVH.md §1-2: the condors' max loss, or the index
    value they control). With no condor open, the most recent one opened within
    `notional_memory_days` still counts: a 1DTE program closes and reopens every day and
    must not sell its hedge each morning to buy it back each afternoon."""
    condors = list(open_condors)
    if not condors:
        if last_opened is None or last_opened.opened_at < now - timedelta(days=cfg.notional_memory_days):
            return Decimal(0)
        condors = [last_opened]
    if cfg.notional_basis == "max_loss":
        return sum((c.max_loss for c in condors), Decimal(0))
    return sum((c.put_short * 100 * c.quantity for c in condors), Decimal(0))


@dataclass(frozen=True)
class HedgeMarket:
    """What the engine fetched: today, spot VIX, option chains by purpose ("front", "mid",
    "back" for the layer windows, "write" for the short window) and quotes of held options."""

    today: date
    vix: float
    chains: Mapping[str, tuple[ChainRow, ...]] = field(default_factory=dict)
    quotes: Mapping[str, Quote] = field(default_factory=dict)


@dataclass(frozen=True)
class HedgeBook:
    lots: tuple[Lot, ...]
    condor_notional: Decimal  # by hedge.notional_basis
    condor_vega_dollars: float = 0.0  # |$ P&L of the condors per 1 vol point|, for vega sizing


@dataclass(frozen=True)
class HedgeAction:
    kind: str  # buy | sell | roll | write | buy_back | monetize
    layer: str
    legs: tuple[Leg, ...]
    quantity: int
    reason: str


@dataclass(frozen=True)
class Decision:
    targets: dict[str, int]
    tier: int
    multiplier: float
    activated: bool
    rebalance: bool  # whether this evaluation trades toward the targets
    trigger: str  # schedule | rsi_cross | activation_on | activation_off | update
    state: HedgeState
    actions: tuple[HedgeAction, ...]


# --- tiers, multiplier, targets --------------------------------------------------------------
def tier_of(vix: float, cfg: HedgeConfig) -> int:
    """Index of the tier [lower, upper) holding vix; the last tier holds everything above."""
    for i, t in enumerate(cfg.tiers):
        if t.lower <= vix < t.upper:
            return i
    return len(cfg.tiers) - 1


def tier_with_hysteresis(vix: float, current: int | None, cfg: HedgeConfig) -> int:
    """Up at once (protection first); down only once VIX is `hysteresis` points below the
    bound, so a VIX hovering at a boundary does not churn the hedge."""
    raw = tier_of(vix, cfg)
    if current is None or raw >= current:
        return raw
    return min(current, tier_of(vix + cfg.hysteresis, cfg))


def is_activated(signals: Signals, cfg: HedgeConfig, was_active: bool = False, held_today: bool = False) -> bool:
    """Activation is a state: MACD line above its signal line while VIX > activation_vix.
    It enters on the live (forming) bar, protection first, but leaves only once a completed
    bar says so: once on, it holds for the rest of that session (`held_today`), and after it
    while the last completed bar is active. Live VIX ticking around 25 must not flip it on and
    off all day (nor write calls in the morning to buy them back dearer in the afternoon).
    Leaving on a completed bar also needs VIX `hysteresis` points under the threshold."""
    if was_active and (held_today or signals.closed_active):
        return True
    if signals.macd is None or signals.signal is None:
        return False
    threshold = cfg.activation_vix - (cfg.hysteresis if was_active else 0.0)
    return signals.macd > signals.signal and signals.vix > threshold


def activation(signals: Signals, state: HedgeState, cfg: HedgeConfig) -> bool:
    """`is_activated` for the state carried between evaluations."""
    held_today = state.activated_on is not None and state.activated_on == signals.session
    return is_activated(signals, cfg, state.activated, held_today)


def writes_allowed(signals: Signals, state: HedgeState, activated: bool, cfg: HedgeConfig) -> bool:
    """No new writes while activation holds, in a session in which it held at any moment (the
    morning it leaves on the completed bar is no time to sell the hedge's upside, nor the
    afternoon after it flickered), while it is armed (MACD above its signal with VIX within
    `write.arm_margin` of the activation level: the call would be bought back dearer the moment
    it fires), or with VIX at or above the stop level."""
    in_active_session = signals.session is not None and state.active_session == signals.session
    armed = (signals.macd is not None and signals.signal is not None and signals.macd > signals.signal
             and signals.vix > cfg.activation_vix - cfg.write.arm_margin)
    return (cfg.write.enabled and not activated and not state.activated and not in_active_session and not armed
            and signals.vix < cfg.write.stop_vix)


def multiplier(tier: int, signals: Signals, activated: bool, cfg: HedgeConfig) -> float:
    m = cfg.tiers[tier].multiplier
    if signals.rsi is not None and signals.rsi > cfg.expansion_rsi:
        m += cfg.expansion_bonus
    if activated:
        m = max(m, cfg.activation_multiplier)
    return m


def _round_min(x: float, minimum: int) -> int:
    n = int(Decimal(str(x)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return max(minimum, n)


def count_targets(notional: Decimal, mult: float, cfg: HedgeConfig) -> dict[str, int]:
    """4/4/2 per `per_notional`, times the multiplier, rounded half up; at least
    `min_per_layer` per layer with a count once there is notional."""
    if notional <= 0:
        return {layer: 0 for layer in LAYERS}
    base = float(notional) / cfg.per_notional
    return {
        layer: _round_min(base * cfg.layer(layer).count * mult, cfg.min_per_layer) if cfg.layer(layer).count else 0
        for layer in LAYERS
    }


def vega_targets(condor_vega_dollars: float, layer_deltas: dict[str, float], mult: float,
                 cfg: HedgeConfig) -> dict[str, int]:
    """Hedge $ sensitivity per VIX point ~ vega_target x the condors' $ vega (x the adaptive
    multiplier), split across layers in the 4/4/2 proportions; a call adds delta x 100 $ per
    point of its future."""
    if condor_vega_dollars <= 0:
        return {layer: 0 for layer in LAYERS}
    weights = {layer: cfg.layer(layer).count for layer in LAYERS}
    total = sum(weights.values()) or 1.0
    out = {}
    for layer in LAYERS:
        per_call = max(1e-6, layer_deltas.get(layer, cfg.layer(layer).delta)) * 100
        need = cfg.vega_target * condor_vega_dollars * mult * weights[layer] / total
        out[layer] = _round_min(need / per_call, cfg.min_per_layer) if weights[layer] else 0
    return out


# --- contract choice ---------------------------------------------------------------------------
def dte(option: OptionSpec, today: date) -> int:
    return (option.expiry - today).days


def layer_expiry(expiries: Iterable[date], today: date, layer: LayerConfig) -> date | None:
    """The nearest monthly expiry in [dte_min, dte_max]; if none is inside, the nearest one
    above dte_min (ALVH.md §2: "nearest above 30 if none")."""
    above = sorted(d for d in expiries if (d - today).days >= layer.dte_min)
    if not above:
        return None
    inside = [d for d in above if layer.dte_max is None or (d - today).days <= layer.dte_max]
    return inside[0] if inside else above[0]


def write_expiry(expiries: Iterable[date], today: date, cfg: HedgeConfig) -> date | None:
    """The nearest expiry (weekly allowed) with DTE in the write window."""
    inside = sorted(d for d in expiries if cfg.write.dte_min <= (d - today).days <= cfg.write.dte_max)
    return inside[0] if inside else None


def chain_expiries(monthly: Sequence[date], weekly: Sequence[date], today: date,
                   cfg: HedgeConfig) -> dict[str, tuple[date, str]]:
    """The chains a rebalance looks at, by purpose: each layer's expiry window among the
    monthly expiries (class "VIX"), and the write expiry ("write") among the monthlies and,
    when `write.weekly`, the weeklies ("VIXW"). Values are (expiry, trading class)."""
    out: dict[str, tuple[date, str]] = {}
    for layer in LAYERS:
        expiry = layer_expiry(monthly, today, cfg.layer(layer))
        if expiry is not None:
            out[layer] = (expiry, "VIX")
    candidates = [(d, "VIX") for d in monthly] + [(d, "VIXW") for d in (weekly if cfg.write.weekly else ())]
    w = write_expiry([d for d, _ in candidates], today, cfg)
    if w is not None:
        out["write"] = (w, dict(candidates)[w])
    return out


def by_delta(chain: Sequence[ChainRow], target: float, min_strike: Decimal | None = None) -> ChainRow | None:
    """The call whose delta is nearest the target (ties: the higher strike, cheaper)."""
    rows = [r for r in chain if r.quote.greeks is not None and r.quote.ask > 0
            and (min_strike is None or r.option.strike >= min_strike)]
    return min(rows, key=lambda r: (abs(r.quote.greeks.delta - target), -r.option.strike), default=None)


# --- the invariant -------------------------------------------------------------------------------
def naked_shorts(positions: Iterable[tuple[OptionSpec, int]]) -> list[tuple[OptionSpec, int]]:
    """Short VIX calls not covered by a long VIX call expiring no earlier with a strike no
    higher, matched unit by unit. Shorts are matched hardest-first (lowest strike, earliest
    expiry), each to the tightest long that covers it (highest strike, then earliest expiry)."""
    calls = [(opt, qty) for opt, qty in positions if qty and opt.symbol == "VIX" and opt.right.value == "C"]
    if all(qty > 0 for _, qty in calls):
        return []  # no short call at all (most books): nothing to match
    longs: dict[OptionSpec, int] = {}
    shorts: dict[OptionSpec, int] = {}
    for opt, qty in calls:
        book = longs if qty > 0 else shorts
        book[opt] = book.get(opt, 0) + abs(qty)
    naked = []
    for short in sorted(shorts, key=lambda o: (o.strike, o.expiry)):
        need = shorts[short]
        for long in sorted((o for o in longs if o.expiry >= short.expiry and o.strike <= short.strike),
                           key=lambda o: (-o.strike, o.expiry)):
            take = min(need, longs[long])
            longs[long] -= take
            need -= take
            if not need:
                break
        if need:
            naked.append((short, need))
    return naked


def sellable(positions: Mapping[OptionSpec, int], option: OptionSpec, limit: int) -> int:
    """The most of `option`, up to `limit`, a sale may take and leave no short call naked.
    Fewer sold never uncovers more, so a bisection finds it in log n checks; with no short
    before the sale nor after the largest one, it is all of it at once (the bisection's answer:
    every check would pass)."""
    if positions.get(option, 0) >= limit and all(q >= 0 for q in positions.values()):
        return limit
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        after = dict(positions)
        after[option] = after.get(option, 0) - mid
        lo, hi = (mid, hi) if not naked_shorts(after.items()) else (lo, mid - 1)
    return lo


def proceeds_after_failure(action: HedgeAction) -> bool:
    """Whether an action may still be sent after an earlier one of the same plan did not fill
    (blocked quote, timed-out walk, reject, refusal). The plan assumed every earlier action
    filled; only actions that add protection stand without that: buying calls and buying back
    shorts. Sells, rolls, writes and monetizations wait for the next evaluation, which plans
    again from what the broker holds."""
    return action.kind in (BUY, BUY_BACK)


def _apply(positions: dict[OptionSpec, int], action: HedgeAction) -> dict[OptionSpec, int]:
    out = dict(positions)
    for leg in action.legs:
        out[leg.option] = out.get(leg.option, 0) + leg.signed_ratio * action.quantity
    return out


# --- the decision ---------------------------------------------------------------------------------
def trigger(signals: Signals, state: HedgeState, cfg: HedgeConfig, scheduled: bool) -> str:
    """Why this evaluation happens: activation entering / leaving and RSI crossing above
    `rebalance_rsi` rebalance at once; otherwise the schedule does, and a plain live update
    only buys back shorts and monetizes."""
    activated = activation(signals, state, cfg)
    if activated != state.activated:
        return "activation_on" if activated else "activation_off"
    if state.rsi is not None and signals.rsi is not None and state.rsi <= cfg.rebalance_rsi < signals.rsi:
        return "rsi_cross"
    return "schedule" if scheduled else "update"


def wants_evaluation(signals: Signals, state: HedgeState, has_shorts: bool, cfg: HedgeConfig) -> bool:
    """Does this live VIX value trigger an evaluation outside the schedule? RSI crossing above
    the rebalance level, activation entering or leaving, a short to buy back at VIX >=
    stop_vix, or a spike to monetize. Cheap (no chains, no quotes): checked on every tick."""
    if state.halted:
        return False
    if trigger(signals, state, cfg, scheduled=False) != "update":
        return True
    if has_shorts and signals.vix >= cfg.write.stop_vix:
        return True
    return signals.vix >= cfg.monetize.vix and len(state.monetized) < len(LAYERS)


def next_state(signals: Signals, state: HedgeState, cfg: HedgeConfig) -> HedgeState:
    """The state an evaluation leaves before its actions: tier (with hysteresis), activation
    and the sessions it held in, the RSI seen, the layers still monetized (re-bought below
    `monetize.rebuy_below`; a monetization adds its layer)."""
    activated = activation(signals, state, cfg)
    activated_on = (state.activated_on if state.activated else signals.session) if activated else None
    active_session = signals.session if (activated or state.activated) else state.active_session
    monetized = frozenset(layer for layer in state.monetized if signals.vix >= cfg.monetize.rebuy_below)
    return replace(state, tier=tier_with_hysteresis(signals.vix, state.tier, cfg), activated=activated,
                   rsi=signals.rsi, monetized=monetized, activated_on=activated_on, active_session=active_session)


def quiet_update(signals: Signals, quotes: Mapping[str, Quote], lots: Sequence[Lot], state: HedgeState,
                 cfg: HedgeConfig) -> HedgeState | None:
    """A live update (trigger "update") that can take no action: the state `decide` would
    leave, without its targets, planner or chains; None when it may act (or is no plain
    update), and then `decide` decides. An update only buys back written calls (activation
    on, VIX >= write.stop_vix, or ask <= cost x (1 - buyback_profit)) and monetizes (VIX >=
    monetize.vix), so with none of those it leaves `next_state` and no action. Reads the
    quotes of the written calls only. tests/test_alvh.py checks it against `decide`."""
    if trigger(signals, state, cfg, scheduled=False) != "update":
        return None
    new_state = next_state(signals, state, cfg)
    if state.halted or not cfg.enabled:
        return new_state
    if signals.vix >= cfg.monetize.vix:
        return None
    if any(buyback_reason(lot, quotes, new_state.activated, signals.vix, cfg) is not None
           for lot in lots if lot.quantity < 0):
        return None
    return new_state


def buyback_reason(short: Lot, quotes: Mapping[str, Quote], activated: bool, vix: float,
                   cfg: HedgeConfig) -> str | None:
    """Why a written call is bought back now, or None: activation, VIX >= write.stop_vix, or
    its ask at or below cost x (1 - buyback_profit). Its quote is read only for the last."""
    if activated:
        return "activation"
    if vix >= cfg.write.stop_vix:
        return f"VIX {vix:.2f} >= {cfg.write.stop_vix}"
    q = quotes.get(short.option.key)
    if q is not None and q.ask <= short.cost * (1 - Decimal(str(cfg.write.buyback_profit))):
        return f"{cfg.write.buyback_profit:.0%} of the premium earned"
    return None


def buy_backs(signals: Signals, market: HedgeMarket, book: HedgeBook, state: HedgeState,
              cfg: HedgeConfig) -> tuple[HedgeAction, ...]:
    """The buy-backs `decide` begins its actions with (activation, VIX >= stop_vix, profit
    taken): what a trigger sends first, on the held quotes alone, before the chains."""
    if state.halted or not cfg.enabled:
        return ()
    planner = _Planner(book, market, cfg)
    planner.buy_back_shorts(activation(signals, state, cfg), signals.vix)
    return tuple(planner.actions)


def decide(signals: Signals, market: HedgeMarket, book: HedgeBook, state: HedgeState, cfg: HedgeConfig,
           scheduled: bool = False) -> Decision:
    """Evaluate the hedge. `scheduled`: the 10:00 check or the one after a condor entry."""
    new_state = next_state(signals, state, cfg)
    tier, activated, monetized = new_state.tier, new_state.activated, new_state.monetized
    why = trigger(signals, state, cfg, scheduled)
    rebalance = why != "update"
    mult = multiplier(tier, signals, activated, cfg)

    if cfg.sizing == "vega":
        deltas = {layer: _chosen_delta(market.chains.get(layer, ()), cfg.layer(layer).delta) for layer in LAYERS}
        targets = vega_targets(book.condor_vega_dollars, deltas, mult, cfg)
    else:
        targets = count_targets(book.condor_notional, mult, cfg)

    if state.halted or not cfg.enabled:
        return Decision(targets, tier, mult, activated, rebalance, why, new_state, ())

    planner = _Planner(book, market, cfg)
    planner.buy_back_shorts(activated, signals.vix)
    monetized = planner.monetize(signals.vix, monetized)
    if rebalance:
        planner.roll_layers()
        planner.to_targets({k: (planner.held(k) if k in monetized else v) for k, v in targets.items()})
        # writes wait for the schedule: a trigger that has just turned activation off (or RSI
        # up) is the worst moment to sell the hedge's upside
        if why == "schedule" and writes_allowed(signals, state, activated, cfg):
            planner.write_calls()
    new_state = replace(new_state, monetized=monetized)
    return Decision(targets, tier, mult, activated, rebalance, why, new_state, tuple(planner.actions))


def _chosen_delta(chain: Sequence[ChainRow], target: float) -> float:
    row = by_delta(chain, target)
    return row.quote.greeks.delta if row is not None else target


class _Planner:
    """Builds the ordered action list against a running copy of the positions, refusing any
    action that would leave a short call naked."""

    def __init__(self, book: HedgeBook, market: HedgeMarket, cfg: HedgeConfig):
        self.cfg = cfg
        self.market = market
        self.lots = [lot for lot in book.lots if lot.quantity]
        self.positions: dict[OptionSpec, int] = {}
        for lot in self.lots:
            self.positions[lot.option] = self.positions.get(lot.option, 0) + lot.quantity
        self.actions: list[HedgeAction] = []

    # bookkeeping
    def _emit(self, action: HedgeAction) -> bool:
        after = _apply(self.positions, action)
        if action.quantity <= 0 or naked_shorts(after.items()):
            return False
        self.positions = after
        self.actions.append(action)
        # lots are per (layer, option): two layers may write the same short call
        by_option = {(lot.layer, lot.option): i for i, lot in enumerate(self.lots)}
        for leg in action.legs:
            delta = leg.signed_ratio * action.quantity
            i = by_option.get((action.layer, leg.option))
            if i is None:
                price = self._price(leg.option) or Decimal(0)
                self.lots.append(Lot(action.layer, leg.option, delta, price))
                by_option[(action.layer, leg.option)] = len(self.lots) - 1
            else:
                self.lots[i] = replace(self.lots[i], quantity=self.lots[i].quantity + delta)
        self.lots = [lot for lot in self.lots if lot.quantity]
        return True

    def _price(self, option: OptionSpec) -> Decimal | None:
        q = self.market.quotes.get(option.key)
        if q is None:
            for chain in self.market.chains.values():
                for row in chain:
                    if row.option == option:
                        return row.quote.mid
            return None
        return q.mid

    def longs(self, layer: str) -> list[Lot]:
        return sorted((lot for lot in self.lots if lot.layer == layer and lot.quantity > 0),
                      key=lambda lot: (lot.option.expiry, lot.option.strike))

    def shorts(self, layer: str | None = None) -> list[Lot]:
        return [lot for lot in self.lots if lot.quantity < 0 and (layer is None or lot.layer == layer)]

    def held(self, layer: str) -> int:
        return sum(lot.quantity for lot in self.longs(layer))

    # steps, in order
    def buy_back_shorts(self, activated: bool, vix: float) -> None:
        for lot in self.shorts():
            reason = buyback_reason(lot, self.market.quotes, activated, vix, self.cfg)
            if reason is not None:
                self._emit(HedgeAction(BUY_BACK, lot.layer, (Leg(lot.option, Action.BUY),), -lot.quantity, reason))

    def monetize(self, vix: float, monetized: frozenset[str]) -> frozenset[str]:
        m = self.cfg.monetize
        if vix < m.vix:
            return monetized
        out = set(monetized)
        for layer in LAYERS:
            if layer in out:
                continue
            longs = self.longs(layer)
            qty = sum(lot.quantity for lot in longs)
            cost = sum(lot.cost * lot.quantity for lot in longs)
            value = sum(((self._price(lot.option) or Decimal(0)) * lot.quantity for lot in longs), Decimal(0))
            if qty < 1 or cost <= 0 or value < cost * Decimal(str(m.value_multiple)):
                continue
            to_sell = max(1, math.floor(qty * m.fraction))
            for lot in sorted(longs, key=lambda lot: -(self._price(lot.option) or 0)):
                n = min(to_sell, lot.quantity)
                reason = f"VIX {vix:.2f} >= {m.vix}, value {value:.2f} >= {m.value_multiple}x cost {cost:.2f}"
                if n and self._emit(HedgeAction(MONETIZE, layer, (Leg(lot.option, Action.SELL),), n, reason)):
                    to_sell -= n
            out.add(layer)
        return frozenset(out)

    def choose(self, purpose: str, delta: float, min_strike: Decimal | None = None) -> OptionSpec | None:
        row = by_delta(self.market.chains.get(purpose, ()), delta, min_strike)
        return row.option if row is not None else None

    def roll_layers(self) -> None:
        today = self.market.today
        for layer in LAYERS:
            cfg = self.cfg.layer(layer)
            for lot in self.longs(layer):
                if dte(lot.option, today) >= cfg.dte_min:
                    continue
                new = self.choose(layer, cfg.delta)
                if new is None or new.expiry == lot.option.expiry:
                    continue
                # a long that covers a short may not be rolled before the short is closed
                trial = _apply(self.positions, HedgeAction(ROLL, layer, (Leg(lot.option, Action.SELL),), lot.quantity, ""))
                for short, _ in naked_shorts(trial.items()):
                    for s in self.shorts():
                        if s.option == short:
                            self._emit(HedgeAction(BUY_BACK, s.layer, (Leg(s.option, Action.BUY),), -s.quantity,
                                                   f"covering {layer} call is rolled"))
                reason = f"{layer} DTE {dte(lot.option, today)} < {cfg.dte_min}"
                self._emit(HedgeAction(ROLL, layer, (Leg(lot.option, Action.SELL), Leg(new, Action.BUY)),
                                       lot.quantity, reason))

    def to_targets(self, targets: dict[str, int]) -> None:
        for layer in LAYERS:
            held = self.held(layer)
            diff = targets[layer] - held
            if held and targets[layer] and abs(diff) < self.cfg.rebalance_band * targets[layer]:
                continue  # a small drift of the notional is not worth two spreads
            if diff > 0:
                new = self.choose(layer, self.cfg.layer(layer).delta)
                if new is not None:
                    self._emit(HedgeAction(BUY, layer, (Leg(new, Action.BUY),), diff, f"target {targets[layer]}"))
            elif diff < 0:
                excess = -diff
                for lot in self.longs(layer):  # nearest expiry first
                    # only the part not covering a short may go
                    n = sellable(self.positions, lot.option, min(excess, lot.quantity))
                    if n and not self._emit(HedgeAction(SELL, layer, (Leg(lot.option, Action.SELL),), n,
                                                        f"target {targets[layer]}")):
                        n = 0
                    excess -= n
                    if not excess:
                        break

    def write_calls(self) -> None:
        w = self.cfg.write
        for layer in w.layers:
            longs = self.longs(layer)
            allowed = math.floor(sum(lot.quantity for lot in longs) * w.ratio)
            written = -sum(lot.quantity for lot in self.shorts(layer))
            n = allowed - written
            if n < 1 or not longs:
                continue  # (before the chain: a market may price its chains when they are read)
            # never write a contract some layer holds long: a position is then either all the
            # layers' longs or all written shorts, and a sale is never of what is not held
            chain = tuple(r for r in self.market.chains.get("write", ()) if self.positions.get(r.option, 0) <= 0)
            if not chain:
                continue
            short_expiry = chain[0].option.expiry
            covering = [lot for lot in longs if lot.option.expiry > short_expiry]
            if not covering:
                continue
            floor = min(lot.option.strike for lot in covering)
            row = by_delta(chain, w.delta, min_strike=floor)
            if row is None or row.quote.bid < Decimal(str(w.min_credit)):
                continue  # the covered strike earns too little to be worth the risk and the fees
            option = row.option
            if option is not None:
                self._emit(HedgeAction(WRITE, layer, (Leg(option, Action.SELL),), n,
                                       f"{w.ratio:.0%} of {layer} covered by calls expiring later"))
