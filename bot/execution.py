"""Order lifecycle: persist the intent, send, walk the limit from mid toward natural, cancel
(the walk's prices and steps: `bot.walk`).

`Executor._send` is THE place orders leave the bot: it refuses anything while the store says
HALTED (the kill switch), except the kill switch's own flatten orders, and any new order the
pre-send guard (`bot.guard`) finds unsafe against the broker's positions and our working orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from bot import guard
from bot.broker.base import Broker, BrokerError, Degraded, OrderRejected, TransientBrokerError, UnknownState
from bot.clock import Clock
from bot.domain import BadQuote, ComboOrder, Intent, IntentStatus, OrderState, OrderStatus
from bot.store import Store
from bot.walk import Pricing, WalkPlan, combo_pricing

if TYPE_CHECKING:
    from bot.config import ExecutionConfig

FLATTEN = "flatten"
HEDGE_FLATTEN = "hedge.flatten"  # the kill switch's buy-backs of written calls
KILL_SWITCH_PURPOSES = frozenset({FLATTEN, HEDGE_FLATTEN})


class Halted(Exception):
    """An order was refused because the kill switch is engaged."""


class Refused(Exception):
    """The pre-send guard refused an order: sent in full with every working order, it could
    leave a short uncovered or sell what the account does not hold. Final for that intent."""


@dataclass(frozen=True)
class Outcome:
    order_ref: str
    status: IntentStatus
    state: OrderState | None
    note: str = ""


class Executor:
    def __init__(self, broker: Broker, store: Store, clock: Clock, cfg: ExecutionConfig, log):
        self.broker = broker
        self.store = store
        self.clock = clock
        self.cfg = cfg
        self.log = log
        self.tick = Decimal(str(cfg.tick))
        self.plan = WalkPlan.of(cfg)

    async def price(self, order: ComboOrder) -> Pricing:
        """Mid and natural net debit per unit from fresh quotes; BadQuote when a leg has none."""
        return combo_pricing(order, await self.broker.quotes([leg.option for leg in order.legs]))

    def step_price(self, p: Pricing, step: int, order: ComboOrder) -> Decimal:
        """Limit for walk step `step` (`WalkPlan.step_price`)."""
        return self.plan.step_price(p, step, order)

    def _check_halt(self, intent: Intent) -> None:
        halted, reason = self.store.halted()
        if halted and intent.purpose not in KILL_SWITCH_PURPOSES:
            raise Halted(reason)

    async def _guard(self, intent: Intent) -> None:
        """Refuse a new order that is unsafe against the broker's positions now and every
        working order of ours (each may still fill): `bot.guard.refusal`. Positions that cannot
        be read refuse too: safety that cannot be checked is not assumed."""
        try:
            held = {p.option: p.quantity for p in await self.broker.positions()}
        except BrokerError as e:
            raise Refused(f"positions unknown: {e}") from e
        working = [guard.Working(r.intent.order.legs, r.intent.order.quantity - (r.filled or 0))
                   for r in self.store.live_intents() if r.intent.order_ref != intent.order_ref]
        why = guard.refusal(held, working, intent.order.legs, intent.order.quantity, intent.purpose)
        if why is not None:
            raise Refused(why)

    async def _send(self, intent: Intent, limit: Decimal, modify: bool) -> OrderState:
        """The single exit point for orders."""
        self._check_halt(intent)
        if modify:  # same legs and quantity: the guard checked them when the order was placed
            return await self.broker.modify(intent.order_ref, limit)
        await self._guard(intent)
        state = await self.broker.place_combo(intent.order_ref, intent.order.legs, intent.order.quantity, limit)
        self.store.mark_sent(intent.order_ref, self.clock.now())
        return state

    async def execute(self, intent: Intent) -> Outcome:
        """Persist, send at mid, walk toward natural every `step_s`, cancel after the last step
        and `final_wait_s`. Returns the final outcome (fills already stored)."""
        try:
            pricing = await self.price(intent.order)
        except BadQuote as e:
            self.log.warning("order.blocked", order_ref=intent.order_ref, purpose=intent.purpose, reason=str(e))
            return Outcome(intent.order_ref, IntentStatus.CANCELLED, None, str(e))
        self.store.add_intent(intent)
        limit = self.step_price(pricing, 0, intent.order)
        try:
            state = await self._send(intent, limit, modify=False)
        except OrderRejected as e:
            return self._rejected(intent, e)
        except Halted as e:
            self.store.set_intent_status(intent.order_ref, IntentStatus.CANCELLED, self.clock.now(), note=f"halted: {e}")
            return Outcome(intent.order_ref, IntentStatus.CANCELLED, None, "halted")
        except Refused as e:
            self.store.set_intent_status(intent.order_ref, IntentStatus.REJECTED, self.clock.now(),
                                         note=f"refused by the pre-send guard: {e}")
            self.log.error("order.refused", order_ref=intent.order_ref, purpose=intent.purpose, group=intent.group,
                           quantity=intent.order.quantity, reason=str(e))
            return Outcome(intent.order_ref, IntentStatus.REJECTED, None, f"refused: {e}")
        except TransientBrokerError as e:
            # FAILURES.md 9: the placement's fate is unknown. Connected, we can ask now (the
            # order's own walk resolves it, nobody else would until a restart); disconnected,
            # the resync after the reconnect decides (FAILURES.md 8). Never re-placed here.
            if not self.broker.connected:
                raise
            found = None if isinstance(e, Degraded) else await self._locate(intent)  # Degraded: nothing left
            if found is None:
                note = f"not sent: {e}" if isinstance(e, Degraded) else \
                    f"placement unknown ({e}) and not found at the broker"
                self.store.set_intent_status(intent.order_ref, IntentStatus.ABANDONED, self.clock.now(), note=note)
                self.log.warning("order.abandoned", order_ref=intent.order_ref, purpose=intent.purpose, reason=note)
                return Outcome(intent.order_ref, IntentStatus.ABANDONED, None, note)
            state = found
            self.store.mark_sent(intent.order_ref, self.clock.now())
            self.log.info("order.located", order_ref=intent.order_ref, status=state.status.value, error=str(e))
        self.log.info(
            "order.submitted", order_ref=intent.order_ref, purpose=intent.purpose, group=intent.group,
            quantity=intent.order.quantity, limit=str(limit), mid=str(pricing.mid), natural=str(pricing.natural),
        )
        return await self.walk(intent, state, start_step=1)

    async def _locate(self, intent: Intent) -> OrderState | None:
        """The order of an intent as the broker knows it (open or completed orders, else its
        executions); None when proven absent from all three."""
        state = await self.broker.order(intent.order_ref)
        if state is not None:
            return state
        fills = await self.broker.fills([intent.order_ref])
        if not fills:
            return None
        limit = self.store.intent(intent.order_ref).limit or Decimal(0)
        return OrderState(intent.order_ref, "", OrderStatus.FILLED, limit, intent.order.quantity, 0, None)

    def resume_step(self, order_ref: str) -> int:
        """The step a walk adopted after a crash (or a lost connection) continues from: the one
        after the step that set its stored limit (FAILURES.md 3). Starting over at step 1 would
        move the limit back toward mid and walk the whole way again. The time the walk was
        away does not count: nobody priced the order meanwhile."""
        stored = self.store.get_control(_walk_key(order_ref))
        return int(stored) + 1 if stored else 1

    def _survivable(self, e: BrokerError) -> bool:
        """A step that failed while the connection is up (IB link degraded by 1100, a request
        that timed out) is retried at the next step: the order is still at the broker at its
        last limit and this walk still owns it. A lost connection ends the walk; the resync
        after the reconnect adopts the order (FAILURES.md 4, 8)."""
        return self.broker.connected and isinstance(e, (TransientBrokerError, UnknownState))

    async def walk(self, intent: Intent, state: OrderState, start_step: int) -> Outcome:
        """Continue walking a live order (also used to adopt an order found after a crash)."""
        step = start_step
        while True:
            if state.status is OrderStatus.FILLED or state.status.done:
                return await self.finish(intent, state)
            await self.clock.sleep(self.cfg.step_s)
            try:
                fresh = await self.broker.order(intent.order_ref)
                if fresh is not None:
                    state = fresh
                if state.status.done:
                    continue
                if step > self.cfg.max_steps:
                    break
                pricing = await self.price(intent.order)
                limit = self.step_price(pricing, step, intent.order)
                if limit != state.limit:
                    state = await self._send(intent, limit, modify=True)
                    self.store.update_order(intent.order_ref, limit, state.filled, state.broker_id)
                    self.store.set_control(_walk_key(intent.order_ref), str(step))  # where an adopted walk goes on
                    self.log.debug("order.modified", order_ref=intent.order_ref, limit=str(limit), step=step)
            except BadQuote as e:
                self.log.warning("order.blocked", order_ref=intent.order_ref, reason=str(e))
            except Halted:
                return await self._cancel_when_allowed(intent, "kill switch")
            except OrderRejected as e:
                self.log.warning("order.modify_rejected", order_ref=intent.order_ref, reason=e.reason, code=e.code)
            except (TransientBrokerError, UnknownState) as e:
                if not self._survivable(e):
                    raise
                self.log.warning("order.step_failed", order_ref=intent.order_ref, step=step, error=str(e),
                                 error_type=type(e).__name__)
            step += 1
        await self.clock.sleep(max(0.0, self.cfg.final_wait_s - self.cfg.step_s))
        return await self._cancel_when_allowed(intent, "walk timed out")

    async def _cancel_when_allowed(self, intent: Intent, why: str) -> Outcome:
        """Cancel, waiting a step at a time while the broker refuses order messages with the
        connection up (DEGRADED, FAILURES.md 6): giving up would leave a working order with
        no walk, which no resync adopts while the walk owns it."""
        while True:
            try:
                return await self.cancel(intent, why)
            except Degraded as e:
                if not self.broker.connected:
                    raise
                self.log.warning("order.cancel_deferred", order_ref=intent.order_ref, reason=why, error=str(e))
            await self.clock.sleep(self.cfg.step_s)

    async def cancel(self, intent: Intent, why: str) -> Outcome:
        try:
            state = await self.broker.cancel(intent.order_ref)
        except OrderRejected as e:  # 10147: not found; reconcile decides
            state = await self.broker.order(intent.order_ref)
            if state is None:
                raise TransientBrokerError(f"cancel of {intent.order_ref}: {e.reason}") from e
        if state.status is OrderStatus.FILLED:  # lost the race to a fill (10148): book it
            return await self.finish(intent, state)
        return await self.finish(intent, state, why)

    async def finish(self, intent: Intent, state: OrderState, why: str = "") -> Outcome:
        """Book the fills of a finished order and record its final status."""
        now = self.clock.now()
        for fill in await self.broker.fills([intent.order_ref]):
            self.store.add_fill(fill)
        self.store.delete_control(_walk_key(intent.order_ref))
        if state.status is OrderStatus.FILLED:
            self.store.set_intent_status(intent.order_ref, IntentStatus.FILLED, now, limit=state.limit, filled=state.filled)
            self.log.info(
                "order.filled", order_ref=intent.order_ref, purpose=intent.purpose, group=intent.group,
                quantity=state.filled, price=str(state.avg_price),
            )
            return Outcome(intent.order_ref, IntentStatus.FILLED, state)
        if state.status is OrderStatus.REJECTED:
            return self._rejected(intent, OrderRejected(intent.order_ref, state.reason or why), state)
        note = why or state.reason or "cancelled"
        self.store.set_intent_status(intent.order_ref, IntentStatus.CANCELLED, now, note=note, filled=state.filled)
        self.log.info("order.cancelled", order_ref=intent.order_ref, purpose=intent.purpose, reason=note, filled=state.filled)
        return Outcome(intent.order_ref, IntentStatus.CANCELLED, state, note)

    def _rejected(self, intent: Intent, e: OrderRejected, state: OrderState | None = None) -> Outcome:
        """`state`: the order's last state when it ended rejected after part of it filled; its
        fills are kept (booked by `finish`) and reported with the outcome."""
        filled = state.filled if state is not None and state.filled > 0 else None
        self.store.set_intent_status(intent.order_ref, IntentStatus.REJECTED, self.clock.now(), note=e.reason,
                                     filled=filled)
        self.log.error("order.rejected", order_ref=intent.order_ref, purpose=intent.purpose, reason=e.reason, code=e.code)
        return Outcome(intent.order_ref, IntentStatus.REJECTED, state if filled else None, e.reason)


def _walk_key(order_ref: str) -> str:
    """Control-state key of the walk step that set an order's stored limit (while it works)."""
    return f"walk_step:{order_ref}"
