"""Broker against store, on start (and, with IB, after every reconnect).

The broker is the truth. For every intent the store still thinks is live:
- the broker has a working order with its orderRef -> adopt it (the engine continues the walk);
- the order is finished (filled / cancelled / rejected) -> book its fills and final status;
- the broker has never seen it and there is no execution -> it never left: mark abandoned.
No order is ever placed here, so nothing can be placed twice for one intent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.broker.base import Broker
from bot.clock import Clock
from bot.domain import IntentStatus, OrderState, OrderStatus
from bot.execution import Executor, Outcome
from bot.store import IntentRecord, Store


@dataclass
class ReconcileReport:
    adopted: list[tuple[IntentRecord, OrderState]] = field(default_factory=list)
    finished: list[tuple[IntentRecord, Outcome]] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    position_diff: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (store, broker)


async def reconcile_intents(store: Store, broker: Broker, executor: Executor, clock: Clock, log,
                            owned: frozenset[str] = frozenset()) -> ReconcileReport:
    """`owned`: groups whose order a task of this process is still walking (a resync after
    a reconnect, not a restart): those are left to their walk."""
    report = ReconcileReport()
    for rec in store.live_intents():
        if rec.intent.group in owned:
            continue
        ref = rec.intent.order_ref
        state = await broker.order(ref)
        if state is None:
            fills = await broker.fills([ref])
            if not fills:
                store.set_intent_status(ref, IntentStatus.ABANDONED, clock.now(), note="not found at the broker after restart")
                log.warning("order.abandoned", order_ref=ref, purpose=rec.intent.purpose)
                report.abandoned.append(ref)
                continue
            quantity = rec.intent.order.quantity
            state = OrderState(ref, rec.broker_id or "", OrderStatus.FILLED, rec.limit, quantity, 0, None)
        if state.status is OrderStatus.WORKING:
            log.info("order.adopted", order_ref=ref, purpose=rec.intent.purpose, limit=str(state.limit))
            report.adopted.append((rec, state))
        else:
            report.finished.append((rec, await executor.finish(rec.intent, state, "finished while the bot was down")))
    return report


async def position_differences(store: Store, broker: Broker) -> dict[str, tuple[int, int]]:
    """Keys whose quantity differs between the store (sum of fills) and the broker."""
    ours = store.positions()
    theirs = {p.option.key: p.quantity for p in await broker.positions()}
    return {k: (ours.get(k, 0), theirs.get(k, 0)) for k in set(ours) | set(theirs) if ours.get(k, 0) != theirs.get(k, 0)}
