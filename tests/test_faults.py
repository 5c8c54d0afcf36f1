"""docs/FAILURES.md scenarios, end to end: the engine (bot.engine.Engine) trading through
IBBroker (ib_async) over the simulated gateway, all in one event loop, on an accelerated
SimClock starting just before the 15:30 1-DTE entry of 2022-03-01.

Every test checks, as far as the scenario applies:
- at most one order per intent reached the gateway (one gateway order per orderRef, no second
  order for the same condor entry), and no order request left while the bot had to hold back;
- the books agree: store positions (sum of stored fills) == the sum of the broker's executions
  == the broker's positions == the exchange's positions;
- every state change was logged (structlog.testing.capture_logs around the engine).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
import structlog
from structlog.testing import capture_logs

from bot.broker.base import FatalBrokerError
from bot.broker.ib import IBBroker
from bot.calendar import ny_time
from bot.domain import Action, ComboOrder, Intent, IntentStatus, Leg, OptionSpec, Right
from bot.engine import OPEN, Engine
from bot.sim.gateway import SimGateway
from bot.sim.gateway.protocol import In
from bot.store import Store
from strategies import iron_condor as ic

from test_gateway_support import EXPIRY, START, ib_errors, make_sim, wait_for  # noqa: F401 - fixtures

SPEED = 90.0  # simulated seconds per real second: a 15 s walk step is 1/6 real second
CFG = {"condor.credit_floor": 0.05, "hedge.enabled": False}
CLIENT = 1
LOG = structlog.get_logger()
CONNECTION_GONE = ("Peer closed connection", "Connection reset by peer")  # how ib_async logs a dropped socket
ORDER_REQUESTS = {In.PLACE_ORDER: "place", In.CANCEL_ORDER: "cancel", In.REQ_GLOBAL_CANCEL: "global_cancel"}


# --------------------------------------------------------------------------- the rig


class Spy:
    """Every request the gateway serves, with the real time it arrived and whether the IB link
    was down (1100) at that moment."""

    def __init__(self):
        self.requests: list[tuple[float, int, int | None, int | None, str | None, bool]] = []
        # trap(gateway, session, request, handle) -> True when it dealt with the request itself
        self.trap = None

    def attach(self, gateway: SimGateway) -> None:
        original = gateway.handle

        def handle(session, request):
            order = getattr(request, "order", None)
            self.requests.append((time.monotonic(), request.msg_id, session.client_id,
                                  getattr(request, "order_id", None), getattr(order, "order_ref", None),
                                  gateway.scenario.link_down))
            if self.trap is not None and self.trap(gateway, session, request, original):
                return
            original(session, request)

        gateway.handle = handle

    def orders(self) -> list[tuple[float, str, int | None, str | None, bool]]:
        """(time, kind, order id, orderRef, link down) of placeOrder / cancelOrder / reqGlobalCancel."""
        return [(t, ORDER_REQUESTS[mid], oid, ref, down) for t, mid, _, oid, ref, down in self.requests
                if mid in ORDER_REQUESTS]


def new_entry_order(gateway, session, request) -> bool:
    """A placeOrder of a new condor entry (not a modification)."""
    return (request.msg_id == In.PLACE_ORDER and request.order.order_ref.startswith("ic-")
            and gateway.book.find(session.client_id, request.order_id) is None)


def silently(session, handle, request) -> None:
    """Serve a request but let no answer reach the client (an acknowledgement lost)."""
    session.closed = True
    try:
        handle(session, request)
    finally:
        session.closed = False


class Bot:
    """One bot process: store, IBBroker and engine on the test's config. `crash()` drops it
    like a kill -9 (the socket closes, nothing is cleaned up, working orders stay)."""

    def __init__(self, sim, cfg, client_id: int = CLIENT, port: int | None = None, reconnect: bool = True,
                 rate: float = 45.0, timeout: float = 5.0):
        self.sim, self.cfg = sim, cfg
        self.store = Store(cfg.bot.store_path)
        self.broker = IBBroker("127.0.0.1", port or sim.port, client_id, timeout=timeout, clock=sim.clock, log=LOG,
                               reconnect=reconnect, max_messages_per_s=rate)
        self.engine = Engine(cfg, sim.clock, sim.calendar, self.broker, self.store, LOG)
        self.runner: asyncio.Task | None = None
        # what left the client: (real time, message id, broker degraded at that moment)
        self.sent: list[tuple[float, int, bool]] = []
        client = self.broker.ib.client
        original = client.send

        def send(*fields, **kw):
            self.sent.append((time.monotonic(), int(fields[0]) if fields else -1, self.broker.degraded))
            return original(*fields, **kw)

        client.send = send

    def order_messages(self) -> list[tuple[float, str, bool]]:
        """(time, place | cancel | global_cancel, degraded) of every order message the client sent."""
        return [(t, ORDER_REQUESTS[mid], degraded) for t, mid, degraded in self.sent if mid in ORDER_REQUESTS]

    async def start(self, run: bool = True) -> Bot:
        assert await self.engine.start()
        if run:
            self.run()
        return self

    def run(self) -> None:
        """The engine's loop (its schedule, the entry at 15:30). Tests that stage a fault for the
        entry start it after the fault is in place: the rig starts 30 simulated seconds (a third
        of a real second) before the entry, less than a start-up takes on a loaded machine."""
        self.runner = asyncio.create_task(self.engine.run())

    async def stop(self) -> None:
        self.engine.stop()
        if self.runner is not None:
            await asyncio.wait_for(self.runner, 10)
        await self.engine.shutdown()
        await asyncio.sleep(0.05)
        self.store.close()

    async def crash(self) -> None:
        self.broker._closing = True  # a dead process does not reconnect
        tasks = [t for t in [self.runner, *self.engine._tasks] if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.broker.ib.disconnect()
        self.store.close()
        await asyncio.sleep(0.05)  # the gateway sees the EOF

    async def entry_intent(self) -> Intent:
        """The entry the engine would make now (the same pure strategy), journaled, not sent."""
        now = self.sim.clock.now()
        expiry = ic.entry_expiry(await self.broker.expiries("SPX", "SPXW"), START, self.cfg.condor)
        snapshot = await self.engine._chain_snapshot(expiry, now)
        proposal = ic.decide_entry(snapshot, await self.engine._book(), self.cfg.condor, now)
        assert not isinstance(proposal, ic.Skip), proposal
        ref = self.store.next_order_ref("ic", START)
        intent = Intent(ref, OPEN, ref, proposal.order, reason="scheduled entry", created_at=now)
        self.store.add_intent(intent)
        return intent


@pytest.fixture(autouse=True)
def structlog_defaults():
    """Debug events (order.modified) are asserted on: undo a filtering configuration another
    test (setup_logging) may have left behind, and put it back afterwards."""
    before = structlog.get_config()
    structlog.reset_defaults()
    yield
    structlog.configure(**before)


@pytest.fixture
async def rig(make_sim, make_cfg, ib_errors):  # noqa: F811
    """(sim, cfg, spy, new_bot): a gateway 30 simulated seconds before the 15:30 entry."""
    sim = await make_sim(start_time="15:29:30", speed=SPEED)
    cfg = make_cfg(**CFG)
    spy = Spy()
    spy.attach(sim.gateway)
    bots: list[Bot] = []

    def new_bot(**kw) -> Bot:
        bot = Bot(sim, cfg, **kw)
        bots.append(bot)
        return bot

    yield sim, cfg, spy, new_bot
    for bot in bots:
        bot.broker._closing = True
        for t in [bot.runner, *bot.engine._tasks]:
            if t is not None and not t.done():
                t.cancel()
        if bot.broker.ib.isConnected():
            bot.broker.ib.disconnect()
        bot.store.close()
    await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- checks


def events(logs, name: str, **match) -> list[dict]:
    return [e for e in logs if e["event"] == name and all(e.get(k) == v for k, v in match.items())]


def names(logs) -> list[str]:
    return [e["event"] for e in logs]


async def until(predicate, timeout: float = 15.0, what: str = "condition"):
    """Wait in real time for what the bot does in simulated time. Generous: a passing test never
    waits the timeout out, and a loaded machine stretches the real seconds a step takes (the
    session closes 20 real seconds after the rig's start, which bounds every test anyway)."""
    return await wait_for(predicate, timeout=timeout, what=what)


def logged(logs, name: str, **match):
    return lambda: events(logs, name, **match)


def one_order_per_ref(sim) -> Counter:
    """orderRef -> number of orders the gateway holds for it (all clients, all time): never 2."""
    refs = Counter(o.order_ref for o in sim.gateway.book._select())
    assert all(n == 1 for n in refs.values()), f"an orderRef was placed twice: {refs}"
    return refs


def entries_per_day(sim) -> Counter:
    """Condor entries that reached the gateway (order refs ic-<day>-n) per day: at most one."""
    days = Counter(o.order_ref.rsplit("-", 1)[0] for o in sim.gateway.book._select() if o.order_ref.startswith("ic-"))
    assert all(n == 1 for n in days.values()), f"a second entry order for the same day: {days}"
    return days


def _signed(fills) -> dict[str, int]:
    out: Counter = Counter()
    for f in fills:
        out[f.option.key] += f.quantity
    return {k: v for k, v in out.items() if v}


async def _views(bot: Bot) -> tuple[dict[str, int], ...]:
    """(store, the broker's executions, the broker's positions, the exchange's positions)."""
    return (bot.store.positions(), _signed(await bot.broker.fills()),
            {p.option.key: p.quantity for p in await bot.broker.positions()},
            {p.option.key: p.quantity for p in bot.sim.exchange.positions()})


async def books_agree(bot: Bot, timeout: float = 10.0) -> dict[str, int]:
    """store (sum of stored fills) == sum of the broker's executions == broker positions ==
    exchange positions; waits for position updates in flight."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        store, executions, broker, exchange = await _views(bot)
        if store == executions == broker == exchange or loop.time() > end:
            break
        await asyncio.sleep(0.05)
    assert store == executions == broker == exchange, (
        f"books differ:\n store     {store}\n executions {executions}\n broker    {broker}\n exchange  {exchange}")
    return store


def assert_clean(logs) -> None:
    """No reconcile ever saw the store and the broker disagree, no resync failed."""
    assert all(e["mismatches"] == 0 for e in events(logs, "reconcile.done")), events(logs, "reconcile.mismatch")
    assert not events(logs, "broker.resync_failed") and not events(logs, "bot.fatal")


def condor_position(sim) -> dict[str, int]:
    return {p.option.key: p.quantity for p in sim.exchange.positions()}


async def broker_positions_settle(bot: Bot, expected: dict[str, int], timeout: float = 8.0) -> None:
    """Wait until IB's position view (updated by the gateway's pushes) is `expected`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while (seen := {p.option.key: p.quantity for p in await bot.broker.positions()}) != expected:
        assert loop.time() < end, f"IB positions {seen}, expected {expected}"
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- 1, 2, 3: crashes


@pytest.mark.parametrize("fills_while_down", [True, False], ids=["filled-while-down", "still-working"])
async def test_01_crash_after_place_before_store_update_is_adopted_never_replaced(rig, fills_while_down):
    """1: the order reached IB, the process died before the store recorded it (intent NEW, no
    mark_sent). The next process finds it by orderRef (completed orders + executions, or open
    orders) and books or adopts it; it never places it again, nor a second entry."""
    sim, cfg, spy, new_bot = rig
    sim.clock.jump_to(ny_time(START, "15:30:30"))  # the entry time has passed
    first = await new_bot().start(run=False)
    intent = await first.entry_intent()
    pricing = await first.engine.executor.price(intent.order)
    limit = first.engine.executor.step_price(pricing, first.cfg.execution.max_steps if fills_while_down else 0,
                                              intent.order)
    await first.broker.place_combo(intent.order_ref, intent.order.legs, intent.order.quantity, limit)
    await first.crash()  # before mark_sent / the walk
    if fills_while_down:
        await until(lambda: sim.exchange.order(intent.order_ref).status.done, what="the fill while down")

    with capture_logs() as logs:
        second = await new_bot().start()  # reconcile; run() would catch up today's entry
        await until(logged(logs, "condor.opened"), what="the condor booked")
        await asyncio.sleep(0.3)
        await books_agree(second)
        await second.stop()
    done = events(logs, "reconcile.done")[0]
    if fills_while_down:
        assert done["finished"] == [intent.order_ref] and not done["adopted"]
    else:
        assert done["adopted"] == [intent.order_ref]
        assert [e["order_ref"] for e in events(logs, "order.adopted")] == [intent.order_ref]
    assert not events(logs, "order.submitted")  # nothing new was placed
    assert [e["order_ref"] for e in events(logs, "order.filled")] == [intent.order_ref]
    [opened] = events(logs, "condor.opened")
    assert opened["quantity"] == intent.order.quantity
    record = Store(cfg.bot.store_path)
    try:
        assert record.intent(intent.order_ref).status is IntentStatus.FILLED
        [condor] = record.open_condors()
        assert condor.quantity == intent.order.quantity  # from the completed order's filledQuantity
        assert condor.credit == -sim.exchange.order(intent.order_ref).avg_price > 0  # from its executions
    finally:
        record.close()
    assert {ref for _, kind, _, ref, _ in spy.orders() if kind == "place"} == {intent.order_ref}
    assert one_order_per_ref(sim) == {intent.order_ref: 1}
    entries_per_day(sim)
    assert_clean(logs)


async def test_02_intent_stored_never_sent_is_abandoned(rig):
    """2: the intent was journaled, the process died before sending: absent from open orders,
    completed orders and executions -> ABANDONED (logged), and that order_ref never reaches IB."""
    sim, cfg, spy, new_bot = rig
    sim.clock.jump_to(ny_time(START, "15:30:30"))
    first = await new_bot().start(run=False)
    intent = await first.entry_intent()
    await first.crash()

    with capture_logs() as logs:
        second = await new_bot().start()
        await asyncio.sleep(1.0)  # run(): today's entry was attempted, so no catch-up entry
        record = second.store.intent(intent.order_ref)
        await second.stop()
    assert record.status is IntentStatus.ABANDONED
    assert [e["order_ref"] for e in events(logs, "order.abandoned")] == [intent.order_ref]
    assert events(logs, "reconcile.done")[0]["abandoned"] == [intent.order_ref]
    assert intent.order_ref not in {ref for _, _, _, ref, _ in spy.orders()}
    assert intent.order_ref not in one_order_per_ref(sim)
    assert not events(logs, "order.submitted")  # not re-placed blindly either
    assert condor_position(sim) == {}


async def _crash_mid_walk(rig):
    """A bot whose entry order is walking (fills held at the gateway) is killed after two walk
    steps; a new process adopts the order, walks on, the fills are released."""
    sim, cfg, spy, new_bot = rig
    sim.scenario.hold_fills()  # the entry works without filling while we crash
    with capture_logs() as before:
        first = await new_bot().start()
        await until(lambda: [e for e in events(before, "order.modified") if e["step"] >= 2], what="a walk step")
        await first.crash()
    assert sim.exchange.order(events(before, "order.submitted")[0]["order_ref"]) is None  # held: never sent on
    with capture_logs() as after:
        second = await new_bot().start()
        await until(logged(after, "order.adopted"), what="adoption")
        await until(logged(after, "order.modified"), what="the adopted walk's next step")
        sim.scenario.release_fills()
        await until(logged(after, "condor.opened"), what="the fill after adoption")
        await asyncio.sleep(0.3)
        await books_agree(second)
        await second.stop()
    return before, after


async def test_03_crash_mid_walk_adopts_and_continues_the_walk(rig):
    """3: the bot dies while walking its limit from mid toward natural. The next process adopts
    the working order by orderRef and continues the walk (modifies, no new order) to a fill."""
    sim = rig[0]
    before, logs = await _crash_mid_walk(rig)
    [submitted] = events(before, "order.submitted")
    ref = submitted["order_ref"]
    walked_to = Decimal(events(before, "order.modified")[-1]["limit"])
    [adopted] = events(logs, "order.adopted")
    assert adopted["order_ref"] == ref and Decimal(adopted["limit"]) == walked_to
    assert events(logs, "reconcile.done")[0]["adopted"] == [ref]
    assert not events(logs, "order.submitted")
    assert [e["order_ref"] for e in events(logs, "order.filled")] == [ref]
    assert len(events(logs, "condor.opened")) == 1
    n = names(logs)
    assert n.index("order.adopted") < n.index("order.modified") < n.index("order.filled")  # the walk went on
    assert one_order_per_ref(sim) == {ref: 1}
    entries_per_day(sim)
    assert_clean(logs)


async def test_03b_adopted_walk_continues_from_where_it_was(rig):
    """3 (continued): the adopted walk resumes after the steps already made; it does not move the
    limit back toward mid (step 1) and walk the whole way again. (Once a bug: the adopted walk
    restarted at step 1.)"""
    before, after = await _crash_mid_walk(rig)
    last_step = events(before, "order.modified")[-1]["step"]
    steps_after = [e["step"] for e in events(after, "order.modified")]
    assert steps_after[0] > last_step, f"the adopted walk restarted at step {steps_after[0]} after step {last_step}"
    assert steps_after == sorted(set(steps_after))  # one walk, stepping on


async def restart_gateway(sim, spy: Spy, down_s: float = 0.3) -> SimGateway:
    """The nightly restart: the gateway process goes away (every client connection closes) and
    a new one serves the same account state on the same port."""
    port = sim.port
    held = sim.scenario.fills_held
    await sim.gateway.close()
    await asyncio.sleep(down_s)
    sim.gateway = SimGateway(sim.exchange, sim.clock, sim.calendar, port=port)
    if held:
        sim.gateway.scenario.hold_fills()
    spy.attach(sim.gateway)
    await sim.gateway.start()
    return sim.gateway


async def test_04_gateway_restart_finds_the_order_by_order_ref(rig, ib_errors):
    """4: the gateway restarts under a walking order. The bot reconnects by itself, resyncs,
    finds its order by orderRef (a new session: order ids are not remembered), adopts it and
    walks on to a fill; nothing is placed twice."""
    ib_errors.allow(*CONNECTION_GONE)
    sim, cfg, spy, new_bot = rig
    sim.scenario.hold_fills()
    with capture_logs() as logs:
        bot = await new_bot().start()
        await until(logged(logs, "order.modified"), what="the walk")
        ref = events(logs, "order.submitted")[0]["order_ref"]
        await restart_gateway(sim, spy)
        await until(lambda: len(events(logs, "reconcile.done")) == 2, what="the resync after the reconnect")
        sim.scenario.release_fills()
        await until(logged(logs, "condor.opened"), what="the fill")
        await asyncio.sleep(0.3)
        await books_agree(bot)
        assert not bot.runner.done()  # the engine's loop survived the lost connection
        await bot.stop()
    [failed] = events(logs, "job.failed")  # the walk that lost its connection: retry later
    assert failed["job"] == "condor.entry" and failed["error_type"] in ("TransientBrokerError", "UnknownState")
    n = names(logs)
    gone = n.index("broker.disconnected")
    assert gone < n.index("broker.connected", gone) < n.index("broker.resync") < n.index("reconcile.done", gone) \
        < n.index("order.filled")
    assert events(logs, "reconcile.done")[1]["adopted"] == [ref]
    assert [e["why"] for e in events(logs, "broker.resync")] == ["reconnected"]
    assert len(events(logs, "order.submitted")) == 1
    assert [e["order_ref"] for e in events(logs, "order.filled")] == [ref]
    assert len(events(logs, "condor.opened")) == 1
    assert one_order_per_ref(sim) == {ref: 1}
    entries_per_day(sim)
    assert_clean(logs)


async def _link_gap(rig, data_lost: bool):
    """1100 while the entry order walks; the market reaches the order during the gap and it
    fills at the exchange, but IB tells the client nothing (and does not re-send it after the
    restore); then 1101 or 1102."""
    sim, cfg, spy, new_bot = rig
    with capture_logs() as logs:
        bot = await new_bot().start()
        await until(logged(logs, "order.submitted"), what="the entry")
        ref = events(logs, "order.submitted")[0]["order_ref"]
        sim.scenario.connectivity_lost()
        await until(lambda: bot.broker.degraded, what="DEGRADED")
        settings = sim.exchange.settings
        sim.exchange.settings = replace(settings, fill_fraction=-1e9)  # the market comes to our limit
        await until(lambda: sim.exchange.order(ref).status.done, what="the fill in the gap")
        sim.exchange.settings = settings
        await asyncio.sleep(0.6)  # several walk steps while degraded
        assert bot.store.intent(ref).status is IntentStatus.SENT and not bot.store.positions()
        sim.scenario.connectivity_restored(data_lost=data_lost)
        await until(logged(logs, "condor.opened"), what="the fill booked after the resync")
        await asyncio.sleep(0.5)
        await books_agree(bot)
        await bot.stop()
    return bot, ref, logs


@pytest.mark.parametrize("data_lost", [True, False], ids=["1101-data-lost", "1102-data-kept"])
async def test_06_07_link_lost_then_restored_degrades_then_resyncs(rig, ib_errors, data_lost):
    """6 / 7: during the 1100 the bot is DEGRADED: no order message leaves, quotes that did not
    come are not priced on (order.blocked). On 1101 / 1102 it refreshes orders, executions and
    positions, logs broker.resync, reconciles and books the fill that happened in the gap."""
    ib_errors.allow("Error 1100", "Error 1101", "Error 1102")
    sim, cfg, spy, _ = rig
    bot, ref, logs = await _link_gap(rig, data_lost)
    degraded_orders = [o for o in bot.order_messages() if o[2]]
    assert not degraded_orders, f"order messages left while DEGRADED: {degraded_orders}"
    assert not [o for o in spy.orders() if o[4]], "an order request reached the gateway during the 1100"
    code = 1101 if data_lost else 1102
    assert [e["why"] for e in events(logs, "broker.resync")] == [f"IB {code}"]
    n = names(logs)
    assert n.index("broker.resync") < n.index("reconcile.done", n.index("broker.resync"))
    assert [e["code"] for e in events(logs, "broker.error") if e["code"] in (1100, 1101, 1102)] == [1100, code]
    assert events(logs, "order.blocked")  # the walk refused the missing quotes during the gap
    assert {e["order_ref"] for e in events(logs, "order.filled")} == {ref}
    assert not events(logs, "order.cancelled")
    assert len(events(logs, "condor.opened")) == 1
    record = Store(rig[1].bot.store_path)
    try:
        assert record.intent(ref).status is IntentStatus.FILLED
        [condor] = record.open_condors()
        assert condor.credit == -sim.exchange.order(ref).avg_price
    finally:
        record.close()
    assert one_order_per_ref(sim) == {ref: 1}
    assert_clean(logs)


async def test_06a_a_daemon_that_connects_during_1100_starts_degraded(rig, ib_errors):
    """6 (a start inside the gap): the gateway's own link to IB is down when the daemon
    connects. The gateway says so at once (2110, as TWS does), so the daemon starts DEGRADED:
    the 15:30 entry sends nothing. On the 1102 it resyncs and trades. (Once a gap: the client
    was told nothing and would have sent orders into the broken link.)"""
    ib_errors.allow("Error 2110", "Error 1102")
    sim, cfg, spy, new_bot = rig
    sim.scenario.connectivity_lost()
    with capture_logs() as logs:
        bot = await new_bot().start()
        assert bot.broker.degraded
        assert [e["code"] for e in events(logs, "broker.error")] == [2110]
        await until(lambda: sim.clock.now() > ny_time(START, "15:31"), what="the entry time to pass")
        assert not bot.order_messages() and not [o for o in spy.orders() if o[4]]
        sim.scenario.connectivity_restored(data_lost=False)
        await until(logged(logs, "broker.resync"), what="the resync")
        assert not bot.broker.degraded
        await bot.stop()
    assert [e["why"] for e in events(logs, "broker.resync")] == ["IB 1102"]


async def test_06b_resync_leaves_a_walking_order_to_its_walk(rig, ib_errors):
    """6 / 7 (continued): the 1100 arrives right after a walk step has its quotes, so the step's
    modify is refused while DEGRADED (fills held). The walk skips that step and lives on, owning
    its order; the resync after the 1102 leaves the order to it: no adoption, no second walk
    (two walkers would modify one order, both cancel, both book). (Once a bug: the walk died on
    the refused modify and the resync adopted the order.)"""
    ib_errors.allow("Error 1100", "Error 1102")
    sim, cfg, spy, new_bot = rig
    sim.scenario.hold_fills()
    snapshots = []

    def trap(gateway, session, request, handle):
        # the 4th leg's snapshot of a walk step: answer it, then lose the IB link at once
        if request.msg_id != In.REQ_MKT_DATA or not request.snapshot or not submitted:
            return False
        snapshots.append(request.req_id)
        if len(snapshots) < 4:
            return False
        spy.trap = None
        handle(session, request)
        sim.scenario.connectivity_lost()
        return True

    submitted = []
    spy.trap = trap
    with capture_logs() as logs:
        bot = await new_bot().start()
        await until(logged(logs, "order.submitted"), what="the entry")
        submitted.append(True)
        ref = events(logs, "order.submitted")[0]["order_ref"]
        await until(lambda: bot.broker.degraded, what="DEGRADED")
        await until(lambda: events(logs, "order.step_failed") or events(logs, "job.failed"),
                    what="a walk step's modify refused while DEGRADED")
        await asyncio.sleep(0.3)
        walking = ref in bot.engine._busy  # the entry's own walk still owns the order
        sim.scenario.connectivity_restored(data_lost=False)
        await until(lambda: len(events(logs, "reconcile.done")) == 2, what="the resync")
        await asyncio.sleep(0.5)
        sim.scenario.release_fills()
        await until(logged(logs, "condor.opened"), what="the fill")
        await asyncio.sleep(0.3)
        await books_agree(bot)
        await bot.stop()
    assert walking
    [refused] = events(logs, "order.step_failed")[:1]
    assert refused["order_ref"] == ref and refused["error_type"] == "Degraded"
    assert not [o for o in bot.order_messages() if o[2]], "an order message left while DEGRADED"
    assert not events(logs, "order.adopted", order_ref=ref), "adopted while its walk was alive"
    assert events(logs, "reconcile.done")[1]["adopted"] == []
    assert not events(logs, "job.failed")
    steps = [e["step"] for e in events(logs, "order.modified")]
    assert steps == sorted(set(steps)), f"more than one walk stepped the order: {steps}"
    assert [e["order_ref"] for e in events(logs, "order.filled")] == [ref]
    assert len(events(logs, "condor.opened")) == 1
    assert one_order_per_ref(sim) == {ref: 1}
    assert_clean(logs)


# --------------------------------------------------------------------------- 8, 9: requests in flight


@pytest.mark.parametrize("reached_ib", [True, False], ids=["reached-ib", "lost-in-flight"])
async def test_08_disconnect_with_a_placement_in_flight(rig, ib_errors, reached_ib):
    """8: the connection drops while the entry's placeOrder is in flight (reached IB with its
    acknowledgement lost, or lost on the way). The placement is UNKNOWN: nothing is re-sent;
    after the automatic reconnect the resync reconciles it by orderRef: adopted and walked to a
    fill, or proven absent and abandoned."""
    ib_errors.allow(*CONNECTION_GONE)
    sim, cfg, spy, new_bot = rig

    def trap(gateway, session, request, handle):
        if not new_entry_order(gateway, session, request):
            return False
        spy.trap = None
        if reached_ib:
            silently(session, handle, request)
        gateway.drop_client(session.client_id)
        return True

    spy.trap = trap
    with capture_logs() as logs:
        bot = await new_bot().start()
        await until(logged(logs, "broker.disconnected"), what="the drop")
        ref = bot.store.intents()[0].intent.order_ref
        await until(lambda: len(events(logs, "reconcile.done")) == 2, what="the resync after the reconnect")
        if reached_ib:
            await until(logged(logs, "condor.opened"), what="the adopted order's fill")
        await asyncio.sleep(0.5)
        await books_agree(bot)
        assert not bot.runner.done()
        await bot.stop()
    [failed] = events(logs, "job.failed")
    assert failed["job"] == "condor.entry" and failed["error_type"] == "TransientBrokerError"
    assert not events(logs, "order.submitted")  # the placement never counted as done
    done = events(logs, "reconcile.done")[1]
    places = [r for _, kind, _, r, _ in spy.orders() if kind == "place"]
    if reached_ib:
        assert done["adopted"] == [ref] and not done["abandoned"]
        assert [e["order_ref"] for e in events(logs, "order.filled")] == [ref]
        assert one_order_per_ref(sim) == {ref: 1}
        assert set(places) == {ref}
    else:
        assert done["abandoned"] == [ref] and not done["adopted"]
        assert [e["order_ref"] for e in events(logs, "order.abandoned")] == [ref]
        assert places == [ref]  # the lost one, never re-sent
        assert one_order_per_ref(sim) == {}
        assert condor_position(sim) == {}
    entries_per_day(sim)
    assert_clean(logs)


async def test_09_unacknowledged_order_is_queried_not_replaced(rig, monkeypatch):
    """9: the gateway takes the entry order but its acknowledgement never comes. After the ack
    timeout the adapter asks IB (open orders) instead of giving up or re-placing: the order is
    there, so it is sent, walked and filled once."""
    monkeypatch.setattr("bot.broker.ib.ACK_TIMEOUT", 1.0)
    sim, cfg, spy, new_bot = rig

    def trap(gateway, session, request, handle):
        if not new_entry_order(gateway, session, request):
            return False
        spy.trap = None
        silently(session, handle, request)
        return True

    spy.trap = trap
    with capture_logs() as logs:
        bot = await new_bot().start()
        await until(logged(logs, "condor.opened"), what="the fill")
        await asyncio.sleep(0.3)
        await books_agree(bot)
        await bot.stop()
    [submitted] = events(logs, "order.submitted")
    ref = submitted["order_ref"]
    assert not events(logs, "job.failed")
    assert [e["order_ref"] for e in events(logs, "order.filled")] == [ref]
    assert one_order_per_ref(sim) == {ref: 1}
    entries_per_day(sim)
    assert_clean(logs)
    # the query came after the timeout and before anything else was sent for the order
    placed_at = next(t for t, kind, _, r, _ in spy.orders() if r == ref)
    queries = [t for t, mid, *_ in spy.requests if mid == In.REQ_OPEN_ORDERS and t > placed_at]
    assert queries and queries[0] - placed_at >= 0.9


async def test_09c_an_order_that_fills_unheard_leaves_no_stale_position(rig, monkeypatch):
    """9 (a fill inside the silence): the entry fills at once, and neither its acknowledgement,
    its executions nor the position messages of that moment reach the client. The query after
    the ack timeout finds it filled; the broker's position view is asked for again with it, so
    store, executions, broker and exchange agree at once, not after the next reconnect. (Once a
    gap, found by the soak: after a lost-ack roll the client kept the rolled-out position and
    never saw the new one.)"""
    monkeypatch.setattr("bot.broker.ib.ACK_TIMEOUT", 1.0)
    sim, cfg, spy, new_bot = rig
    settings = sim.exchange.settings

    def trap(gateway, session, request, handle):
        if not new_entry_order(gateway, session, request):
            return False
        spy.trap = None
        sim.exchange.settings = replace(settings, fill_fraction=-1e9)  # fills on arrival
        try:
            silently(session, handle, request)
        finally:
            sim.exchange.settings = settings
        return True

    spy.trap = trap
    with capture_logs() as logs:
        bot = await new_bot().start()
        await until(logged(logs, "condor.opened"), what="the fill, found by the query")
        ref = events(logs, "condor.opened")[0]["order_ref"]
        assert sim.exchange.order(ref).status.done
        views = await _views(bot)  # no waiting: the view must already be whole
        await bot.stop()
    store, executions, broker, exchange = views
    assert len(exchange) == 4 and store == executions == broker == exchange, views
    assert events(logs, "order.located")[0]["status"] == "filled"
    assert one_order_per_ref(sim) == {ref: 1}


async def test_09b_unacknowledged_and_absent_is_resolved_without_a_restart(rig, monkeypatch):
    """9 (continued): the entry's placeOrder never reached IB and no disconnect follows. After
    the ack timeout the order is proven absent (open orders, completed orders, executions): the
    intent is resolved (abandoned, logged) rather than stay live, blocking every entry; it is
    never re-placed. (Once a bug: the intent stayed NEW with no walker until a restart.)"""
    monkeypatch.setattr("bot.broker.ib.ACK_TIMEOUT", 1.0)
    sim, cfg, spy, new_bot = rig

    def trap(gateway, session, request, handle):
        if not new_entry_order(gateway, session, request):
            return False
        spy.trap = None
        return True  # swallowed: never reaches the book

    spy.trap = trap
    with capture_logs() as logs:
        bot = await new_bot().start()
        await until(lambda: bot.store.intents(), what="the entry intent")
        ref = bot.store.intents()[0].intent.order_ref
        await until(logged(logs, "order.abandoned", order_ref=ref), what="the placement resolved")
        status = bot.store.intent(ref).status
        live = bot.store.live_intents()
        await asyncio.sleep(0.5)  # a few walk steps' worth: nothing follows for it
        await bot.stop()
    assert status is IntentStatus.ABANDONED and not live
    [abandoned] = events(logs, "order.abandoned")
    assert "not found" in abandoned["reason"]
    placed_at = next(t for t, kind, _, r, _ in spy.orders() if r == ref)
    queries = [t for t, mid, *_ in spy.requests if mid == In.REQ_OPEN_ORDERS and t > placed_at]
    assert queries and queries[0] - placed_at >= 0.9  # asked IB after the ack timeout, did not guess
    assert [(kind, r) for _, kind, _, r, _ in spy.orders()] == [("place", ref)]  # never re-placed, nothing after
    assert not events(logs, "order.submitted") and not events(logs, "job.failed")
    assert one_order_per_ref(sim) == {} and condor_position(sim) == {}
    assert_clean(logs)


# --------------------------------------------------------------------------- 10, 11, 12: fills


def never_fill(sim) -> None:
    """The market never comes to the walk's limits (the exchange fills nothing on its own)."""
    sim.exchange.settings = replace(sim.exchange.settings, fill_fraction=2.0)


async def test_10_cancel_that_loses_the_race_books_the_fill(rig, ib_errors):
    """10: the walk times out and cancels, but the order fills first (10148). The fill is
    booked (order.filled, condor.opened), nothing is reported cancelled, no new entry."""
    ib_errors.allow("Error 10148")
    sim, cfg, spy, new_bot = rig
    never_fill(sim)
    sim.scenario.fill_on_cancel()
    with capture_logs() as logs:
        bot = await new_bot().start()
        await until(logged(logs, "condor.opened"), what="the fill that won the race")
        await asyncio.sleep(0.5)
        await books_agree(bot)
        await bot.stop()
    [submitted] = events(logs, "order.submitted")
    ref = submitted["order_ref"]
    assert [e["code"] for e in events(logs, "broker.error") if e["code"] == 10148] == [10148]
    assert [e["order_ref"] for e in events(logs, "order.filled")] == [ref]
    assert not events(logs, "order.cancelled")
    assert len(events(logs, "condor.opened")) == 1
    kinds = [kind for _, kind, _, r, _ in spy.orders() if r == ref or kind == "cancel"]
    assert kinds.count("cancel") == 1 and kinds[-1] == "cancel"  # one cancel, the walk's last word
    assert one_order_per_ref(sim) == {ref: 1}
    entries_per_day(sim)
    assert_clean(logs)


async def test_11_partial_then_the_rest_with_legs_reported_one_by_one(rig, ib_errors):
    """11: the combo fills in two parts (1 lot, the rest 30 simulated seconds later) and each
    fill's legs are reported one by one. Positions per leg come from the executions: every leg
    is the sum of its two executions, store == executions == broker == exchange."""
    ib_errors.allow("Error 104")  # a walk step may reach IB between the fill and its report
    sim, cfg, spy, new_bot = rig
    sim.scenario.partial_next(1, rest_after=30)
    sim.scenario.stagger_legs(0.05)
    with capture_logs() as logs:
        bot = await new_bot().start()
        await until(logged(logs, "condor.opened"), what="the complete fill")
        await asyncio.sleep(0.5)
        positions = await books_agree(bot)
        fills = bot.store.fills()
        [condor] = bot.store.open_condors()
        await bot.stop()
    [submitted] = events(logs, "order.submitted")
    ref, quantity = submitted["order_ref"], submitted["quantity"]
    assert quantity > 1
    assert len(sim.exchange.fills([ref])) == 4 and len(sim.exchange.fills([f"{ref}#2"])) == 4  # two slices
    assert len(fills) == 8 and Counter(f.option.key for f in fills) == Counter({k: 2 for k in positions})
    assert sorted(positions.values()) == [-quantity, -quantity, quantity, quantity]
    assert condor.quantity == quantity
    assert [e["order_ref"] for e in events(logs, "order.filled")] == [ref]
    assert one_order_per_ref(sim) == {ref: 1}
    assert_clean(logs)


async def test_11b_partial_fill_then_cancel_keeps_the_filled_lots_as_a_condor(rig, ib_errors):
    """11 (continued): 1 lot fills, the rest never reaches the exchange and the walk times out
    and cancels (202 keeps partial fills). The lot is held at the broker and in the store; the
    engine tracks it as a condor of quantity 1 (managed, closed, counted in the risk), priced
    from its executions. (Once a bug: the lots were held with no condor.)"""
    ib_errors.allow("Error 202")
    sim, cfg, spy, new_bot = rig
    sim.scenario.partial_next(1, rest_after=None)  # the rest is held until release_fills()
    with capture_logs() as logs:
        bot = await new_bot().start()
        await until(logged(logs, "order.cancelled"), what="the walk's cancel")
        await asyncio.sleep(0.3)
        positions = await books_agree(bot)
        condors = bot.store.open_condors()
        await bot.stop()
    [cancelled] = events(logs, "order.cancelled")
    ref = cancelled["order_ref"]
    assert cancelled["filled"] == 1 and sorted(positions.values()) == [-1, -1, 1, 1]
    assert [c.quantity for c in condors] == [1], f"held lots {positions}, condors {condors}"
    [condor] = condors
    [opened] = events(logs, "condor.opened")
    assert opened["order_ref"] == ref and opened["quantity"] == 1
    legs = sim.exchange.fills([ref])
    assert condor.credit == -sum(f.price * f.quantity for f in legs) > 0  # the lot's own executions
    assert {f.option.strike for f in legs} == {condor.put_short, condor.put_long, condor.call_short, condor.call_long}
    assert one_order_per_ref(sim) == {ref: 1}
    assert_clean(logs)


@pytest.mark.parametrize("stagger", [0.1, 0.0], ids=["legs-before-status", "commission-late"])
async def test_12_fills_before_status_and_late_commissions_are_booked_once(rig, ib_errors, stagger):
    """12: leg executions arrive one by one before the order status, their commission reports
    a second later. No crash; each execution is booked once, with its commission. A walk step
    that reaches IB between the fill and its status is refused (104) and ib_async then calls
    the order Cancelled: the adapter asks IB instead of believing it."""
    ib_errors.allow("Error 104")
    sim, cfg, spy, new_bot = rig
    sim.scenario.stagger_legs(stagger)
    sim.scenario.commission_delay_s = 1.0
    with capture_logs() as logs:
        bot = await new_bot().start()
        await until(logged(logs, "condor.opened"), what="the fill")
        await asyncio.sleep(1.2)
        await bot.engine.reconcile()  # executions are re-delivered: nothing is booked twice
        await books_agree(bot)
        stored = bot.store.fills()
        await bot.stop()
    ref = events(logs, "order.submitted")[0]["order_ref"]
    at_exchange = sim.exchange.fills([ref])
    assert sorted(f.exec_id for f in stored) == sorted(f.exec_id for f in at_exchange)
    assert {f.exec_id: f.commission for f in stored} == {f.exec_id: f.commission for f in at_exchange}
    assert all(f.commission > 0 for f in stored)
    assert [e["order_ref"] for e in events(logs, "order.filled")] == [ref]
    assert not events(logs, "order.cancelled") and not events(logs, "job.failed")
    assert_clean(logs)


# --------------------------------------------------------------------------- 13: a query fails half way


async def _reconcile_fails_half_way(rig):
    """A bot dies with two live intents: X, its entry, working at IB (fills held), and Y,
    journaled but never sent. The next process connects; while it reconciles, the connection
    drops on the query that would prove Y absent (completed orders)."""
    sim, cfg, spy, new_bot = rig
    sim.scenario.hold_fills()
    with capture_logs():
        first = await new_bot().start()
        await until(lambda: first.store.live_intents() and first.store.live_intents()[0].status is IntentStatus.SENT,
                    what="the entry sent")
        x = first.store.live_intents()[0].intent.order_ref
        y = (await first.entry_intent()).order_ref
        await first.crash()
    completed_queries: Counter = Counter()

    def trap(gateway, session, request, handle):
        if request.msg_id != In.REQ_COMPLETED_ORDERS:
            return False
        completed_queries[id(session)] += 1
        if completed_queries[id(session)] < 2:  # the one of the connect
            return False
        spy.trap = None
        gateway.drop_client(session.client_id)
        return True

    spy.trap = trap
    with capture_logs() as logs:
        second = new_bot()
        try:
            started = await second.engine.start()
        except Exception as e:  # noqa: BLE001 - what start() does with it is checked by the tests
            started = e
        statuses = {r.intent.order_ref: r.status for r in second.store.intents()}
        await until(logged(logs, "reconcile.done"), what="the reconcile after the reconnect")
        sim.scenario.release_fills()
        await until(logged(logs, "condor.opened"), what="the adopted entry's fill")
        await asyncio.sleep(0.3)
        await books_agree(second)
        await second.stop()
    return x, y, started, statuses, logs


async def test_13_reconcile_query_failing_half_way_is_unknown_not_empty(rig, ib_errors):
    """13: a reconciliation query fails half way: the answer is UNKNOWN, not "absent". The cycle
    is skipped as a whole: nothing abandoned, nothing adopted from the partial answer; the
    reconcile after the reconnect decides (X adopted and walked to a fill, Y abandoned)."""
    ib_errors.allow(*CONNECTION_GONE)
    sim = rig[0]
    x, y, started, statuses, logs = await _reconcile_fails_half_way(rig)
    assert statuses == {x: IntentStatus.SENT, y: IntentStatus.NEW}  # untouched by the failed cycle
    n = names(logs)
    back = n.index("broker.connected", n.index("broker.disconnected"))  # the reconnect
    assert "reconcile.done" not in n[:back]  # the failed cycle concluded nothing
    assert n.index("order.abandoned") > back and n.index("broker.resync") > back
    [done] = events(logs, "reconcile.done")
    assert done["adopted"] == [x] and done["abandoned"] == [y]
    assert [e["order_ref"] for e in events(logs, "order.filled")] == [x]
    assert one_order_per_ref(sim) == {x: 1}
    assert_clean(logs)


async def test_13b_start_survives_a_reconcile_query_failing_half_way(rig, ib_errors):
    """13 (continued): the failed cycle is skipped, not fatal: Engine.start() still returns
    True (the reconcile after the reconnect will decide)."""
    ib_errors.allow(*CONNECTION_GONE)
    x, y, started, statuses, logs = await _reconcile_fails_half_way(rig)
    assert started is True, f"Engine.start() raised {started!r}"


# --------------------------------------------------------------------------- 15, 17: data and prices


class NanVix:
    """The market model with a VIX that is NaN (a broken index feed)."""

    def __init__(self, market):
        self._market = market

    def __getattr__(self, name):
        return getattr(self._market, name)

    def state_at(self, t):
        return replace(self._market.state_at(t), vix=float("nan"))


@pytest.mark.parametrize("fault", ["farm-broken", "nan-vix"])
async def test_15_missing_or_nan_quotes_block_the_entry(rig, fault):
    """15: the option farm is broken (2103: no ticks) or the VIX feed gives NaN when the entry
    fires: the bot refuses to price, places nothing and logs why."""
    sim, cfg, spy, new_bot = rig
    with capture_logs() as logs:
        bot = await new_bot().start(run=False)
        if fault == "farm-broken":
            sim.scenario.farm_broken()
            await until(lambda: bot.broker.data_blocked, what="2103 seen")
        else:
            sim.exchange.market = NanVix(sim.exchange.market)
        bot.run()  # the fault is in place before the entry can fire
        await until(logged(logs, "schedule.fired"), what="the entry time")
        await until(lambda: events(logs, "job.failed") or events(logs, "condor.skipped"), what="the refusal")
        await asyncio.sleep(0.3)
        await bot.stop()
    assert not bot.order_messages() and not spy.orders()
    assert not events(logs, "order.submitted") and not one_order_per_ref(sim)
    [failed] = events(logs, "job.failed")
    assert failed["job"] == "condor.entry" and failed["error_type"] == "BadQuote"
    assert ("2103" in failed["error"]) if fault == "farm-broken" else ("VIX" in failed["error"])
    if fault == "farm-broken":
        assert [e["code"] for e in events(logs, "broker.error")] == [2103]


async def test_17_off_grid_limit_is_rejected_110_and_recorded_once(rig, ib_errors):
    """17: an entry limit off the 0.05 combo grid reaches IB: 110, the order is refused. The
    intent is recorded REJECTED with the reason (order.rejected, code 110), nothing is placed,
    and it is not retried."""
    ib_errors.allow("Error 110")
    sim, cfg, spy, new_bot = rig
    bot = new_bot()
    on_grid = bot.engine.executor.step_price
    bot.engine.executor.step_price = lambda p, step, order: on_grid(p, step, order) + Decimal("0.01")
    with capture_logs() as logs:
        await bot.start()
        await until(logged(logs, "order.rejected"), what="the 110")
        await asyncio.sleep(1.0)  # a few walk steps' worth: no retry
        intents = bot.store.intents()
        await bot.stop()
    [rejected] = events(logs, "order.rejected")
    ref = rejected["order_ref"]
    assert rejected["code"] == 110
    assert [(r.intent.order_ref, r.status) for r in intents] == [(ref, IntentStatus.REJECTED)]
    assert "grid" in intents[0].note and "grid" in rejected["reason"]
    assert not events(logs, "order.submitted") and not events(logs, "condor.opened")
    assert [(kind, r) for _, kind, _, r, _ in spy.orders()] == [("place", ref)]  # sent once, never again
    assert one_order_per_ref(sim) == {ref: 1} and sim.exchange.order(ref) is None
    assert [o.status for o in sim.gateway.book._select()] == ["rejected"]
    assert condor_position(sim) == {}


# --------------------------------------------------------------------------- 19: pacing


def busiest_second(times: list[float], window: float = 1.0) -> int:
    """The most requests that arrived within any `window` real seconds."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


async def test_19_every_request_goes_through_the_one_throttle(rig):
    """19: the entry (chain: contract details + snapshot quotes of a few dozen options, the
    placement and its walk) with a low message rate: at the gateway no second ever sees more
    requests than the configured rate, however many there are."""
    rate = 15  # the entry sends ~56 requests (its walk fills sooner now that prices move between steps)
    sim, cfg, spy, new_bot = rig
    with capture_logs() as logs:
        bot = await new_bot(rate=rate).start()
        synced = time.monotonic()  # ib_async's own start-up requests are before this
        await until(logged(logs, "order.submitted"), what="the entry", timeout=15)
        await asyncio.sleep(1.0)
        await bot.stop()
    sent = [t for t, _, _ in bot.sent if t > synced]  # what left the client
    arrived = [t for t, _, cid, *_ in spy.requests if cid == CLIENT and t > synced]
    assert len(sent) > 3 * rate  # the throttle had work to do
    assert busiest_second(sent, 0.98) <= rate, sorted(t - synced for t in sent)
    # at the gateway: one TCP stream, so the n-th request to arrive is the n-th sent; requests
    # arriving within w were sent within w + (the spread of their transit times), which a
    # loaded machine stretches (the gateway reads when the shared event loop gets to it)
    sent_ids = [mid for t, mid, _ in bot.sent if t > synced]
    arrived_ids = [mid for t, mid, cid, *_ in spy.requests if cid == CLIENT and t > synced]
    early = max(0, len(arrived) - len(sent))  # sent just before `synced`, arrived after it
    assert arrived_ids[early:early + len(sent)] == sent_ids[:len(arrived) - early]  # paired right
    transit = [a - t for a, t in zip(arrived[early:], sent)]
    spread = max(transit) - min(transit)
    assert busiest_second(arrived, max(0.0, 0.98 - spread)) <= rate, spread


async def test_19b_pacing_violation_slows_the_throttle(rig, ib_errors):
    """19 (continued): IB says 100 (over the message rate): the one throttle slows down."""
    ib_errors.allow("Error 100")
    sim, cfg, spy, new_bot = rig
    with capture_logs() as logs:
        bot = await new_bot(rate=20).start(run=False)
        sim.scenario.send_error(100, "Max rate of messages per second has been exceeded:max=50 rec=77 (1)")
        await until(logged(logs, "broker.error", code=100), what="100")
        assert bot.broker.throttle.rate_limit == 10
        started = time.monotonic()
        spx = await bot.broker.spot("SPX")
        strikes = [k for k in await bot.broker.strikes("SPX", "SPXW", EXPIRY) if abs(float(k) - spx) < 200]
        quotes = await bot.broker.quotes([OptionSpec("SPX", EXPIRY, k, Right.PUT, "SPXW") for k in strikes[:24]])
        await bot.stop()
    sent = [t for t, _, _ in bot.sent if t > started]
    # spot, chain, the expiry's contract details in one request, 24 snapshots
    assert len(quotes) == 24 and len(sent) >= 25
    assert busiest_second(sent, 0.98) <= 10


# --------------------------------------------------------------------------- 20, 21: instances, kill


async def test_20_second_instance_with_the_same_client_id_is_refused(rig, ib_errors):
    """20: a second bot starts with the running bot's client id: IB answers 326 and closes; the
    second instance refuses to start (fatal, no retry loop, nothing sent), the first one is
    undisturbed and trades on."""
    ib_errors.allow("Error 326", "API connection failed: TimeoutError", *CONNECTION_GONE)
    sim, cfg, spy, new_bot = rig
    with capture_logs() as logs:
        first = await new_bot().start()
        second = new_bot(timeout=2.0)
        with pytest.raises(FatalBrokerError, match="326|in use"):
            await asyncio.wait_for(second.engine.start(), 10)
        assert first.broker.connected and not second.broker.connected
        await until(logged(logs, "condor.opened"), what="the first instance's entry")
        await asyncio.sleep(0.3)
        await books_agree(first)
        await first.stop()
    assert not second.order_messages() and not second.broker._reconnect_task
    assert len(events(logs, "broker.connected")) == 1  # the second never counted as connected
    assert not events(logs, "reconcile.done")[1:]  # only the first instance reconciled
    entries_per_day(sim)
    one_order_per_ref(sim)


async def test_21_kill_switch_while_disconnected_cancels_first_after_reconnect(rig, ib_errors):
    """21: the connection is down when the kill switch is pressed: the halt is stored at once
    (killswitch.engaged reports what could not be cancelled); after the automatic reconnect the
    bot's first order message is the cancel of its working order, then the global cancel;
    nothing is placed again."""
    ib_errors.allow(*CONNECTION_GONE, "Error 202")
    sim, cfg, spy, new_bot = rig
    sim.scenario.hold_fills()
    with capture_logs() as logs:
        bot = await new_bot().start()
        await until(logged(logs, "order.modified"), what="the walk")
        ref = events(logs, "order.submitted")[0]["order_ref"]
        sim.scenario.drop(CLIENT)
        await until(lambda: not bot.broker.connected, what="the drop")
        dropped = time.monotonic()
        result = await bot.engine.kill(reason="operator, while disconnected")
        halted = Store(cfg.bot.store_path)
        try:
            assert halted.halted() == (True, "operator, while disconnected")  # durable at once
        finally:
            halted.close()
        await until(lambda: events(logs, "order.cancelled"), what="the cancel after the reconnect")
        await asyncio.sleep(0.5)
        await books_agree(bot)
        assert not bot.runner.done()
        status = await bot.engine.status()
        await bot.stop()
    assert result["halted"] and result["remaining"] == ["unknown"] and result["errors"]
    [engaged] = events(logs, "killswitch.engaged")
    assert engaged["remaining"] == ["unknown"]
    after = [(kind, t) for t, kind, _ in bot.order_messages() if t > dropped]
    assert [kind for kind, _ in after][:2] == ["cancel", "global_cancel"], after
    assert "place" not in [kind for kind, _ in after]
    n = names(logs)
    assert n.index("killswitch.engaged") < n.index("broker.resync") < n.index("order.cancelled")
    assert [e["order_ref"] for e in events(logs, "order.cancelled")] == [ref]
    assert not events(logs, "order.submitted")[1:] and not events(logs, "condor.opened")
    assert sim.gateway.book.open_orders() == [] and sim.exchange.open_orders() == []
    assert status["halted"] and status["working_orders"] == []
    assert_clean(logs)


# --------------------------------------------------------------------------- 5, 14, 16: beyond the brief


async def test_05_gateway_away_for_a_while_the_daemon_stays_up_and_reconnects(rig, ib_errors):
    """5: the gateway goes away (re-authentication) and does not come back at once: the daemon
    stays up, logs each failed reconnect (backing off), and reconnects and resyncs when the
    gateway returns; nothing is lost (no working order meanwhile: the entry filled before)."""
    ib_errors.allow(*CONNECTION_GONE, "API connection failed", "Make sure API port")
    sim, cfg, spy, new_bot = rig
    with capture_logs() as logs:
        bot = await new_bot().start()
        await until(logged(logs, "condor.opened"), what="the entry")
        port = sim.port
        await sim.gateway.close()
        await until(logged(logs, "broker.reconnect_failed"), what="a failed reconnect")
        assert not bot.runner.done() and not bot.broker.connected
        sim.gateway = SimGateway(sim.exchange, sim.clock, sim.calendar, port=port)
        spy.attach(sim.gateway)
        await sim.gateway.start()
        # the reconnect loop backs off 1, 2, 4 s: one attempt may still meet the gateway away
        await until(logged(logs, "broker.resync"), what="the reconnect", timeout=15)
        await until(lambda: len(events(logs, "reconcile.done")) == 2, what="the resync's reconcile")
        await books_agree(bot)
        await bot.stop()
    [failed, *_] = events(logs, "broker.reconnect_failed")
    assert failed["retry_in_s"] >= 2  # backing off
    assert events(logs, "broker.connected", reconnected=True)
    done = events(logs, "reconcile.done")[1]
    assert done["mismatches"] == 0 and not done["abandoned"]
    assert len(events(logs, "order.submitted")) == 1
    entries_per_day(sim)
    assert_clean(logs)


async def test_14_positions_differ_from_the_store_halt_entries_without_fixing(rig):
    """14: a manual trade (another front door of the account) leaves the broker with positions
    the store does not know: the broker is the truth; the difference is logged, entries stop,
    and no order is sent to "fix" it."""
    sim, cfg, spy, new_bot = rig
    bot = new_bot()
    await bot.broker.connect()
    spot = await bot.broker.spot("SPX")
    ps, cs = round(spot * 0.985 / 5) * 5, round(spot * 1.015 / 5) * 5
    opt = lambda k, r: OptionSpec("SPX", EXPIRY, Decimal(k), r, "SPXW")  # noqa: E731
    intent_legs = [Leg(opt(ps, Right.PUT), Action.SELL), Leg(opt(ps - 25, Right.PUT), Action.BUY),
                   Leg(opt(cs, Right.CALL), Action.SELL), Leg(opt(cs + 25, Right.CALL), Action.BUY)]
    quotes = await bot.broker.quotes([leg.option for leg in intent_legs])
    natural = sum((leg.signed_ratio * (quotes[leg.option.key].ask if leg.signed_ratio > 0 else
                                       quotes[leg.option.key].bid) for leg in intent_legs), Decimal(0))
    sim.exchange.place_combo("manual-1", intent_legs, 1, natural.quantize(Decimal("0.05")) + Decimal("0.50"),
                             sim.clock.now())
    assert condor_position(sim)  # it filled
    await bot.broker.disconnect()
    bot.broker._closing = False
    with capture_logs() as logs:
        await bot.start()
        await until(logged(logs, "condor.skipped"), what="the entry refused")
        await asyncio.sleep(0.3)
        await bot.stop()
    [mismatch] = events(logs, "reconcile.mismatch")
    assert set(mismatch["differences"]) == {leg.option.key for leg in intent_legs}
    assert "differ" in events(logs, "condor.skipped")[0]["reason"]
    assert not bot.order_messages() and not events(logs, "order.submitted")
    assert sorted(condor_position(sim).values()) == [-1, -1, 1, 1]  # left as it is


@pytest.mark.parametrize("code, text", [
    (10167, "Requested market data is not subscribed. Displaying delayed market data."),
    (10197, "No market data during competing live session"),
])
async def test_16_delayed_data_or_competing_session_blocks_entries(rig, ib_errors, code, text):
    """16: 10167 (delayed data) or 10197 (a competing live session) before the entry: the bot
    does not price on it; the entry is refused and logged; nothing is sent."""
    ib_errors.allow(f"Error {code}")
    sim, cfg, spy, new_bot = rig
    with capture_logs() as logs:
        bot = await new_bot().start(run=False)
        sim.scenario.send_error(code, text)
        await until(lambda: bot.broker.data_blocked, what=f"{code} seen")
        bot.run()  # the fault is in place before the entry can fire
        await until(lambda: events(logs, "job.failed"), what="the refusal")
        await asyncio.sleep(0.3)
        await bot.stop()
    [failed] = events(logs, "job.failed")
    assert failed["job"] == "condor.entry" and str(code) in failed["error"]
    assert not bot.order_messages() and not events(logs, "order.submitted") and not one_order_per_ref(sim)


# --------------------------------------------------------------------------- 18, 22: contracts and expiry


@pytest.mark.parametrize("field, wrong", [
    ("tradingClass", {"trading_class": "SPX"}),  # the AM-settled monthly class answered for a PM weekly
    ("lastTradeDate", {"last_trade_date": "20220318"}),  # another expiry
    ("multiplier", {"multiplier": "10"}),  # a mini contract
], ids=["trading-class", "last-trade-date", "multiplier"])
async def test_scenario_18_wrong_spx_class_is_never_ordered(rig, monkeypatch, field, wrong):
    """18: IB answers the SPXW options' contract details with a contract that differs from the
    one asked for (the AM monthly class, another expiry, another multiplier). The bot checks
    tradingClass, lastTradeDate and multiplier before using a contract: it logs the mismatch,
    never quotes nor orders that contract, and the engine's loop lives on."""
    from bot.sim.gateway import mapping

    sim, cfg, spy, new_bot = rig
    right_fields = mapping.contract_fields
    answered = []

    def trap(gateway, session, request, handle):
        contract = getattr(request, "contract", None)
        if request.msg_id != In.REQ_CONTRACT_DATA or contract is None or contract.sec_type != "OPT":
            return False
        with monkeypatch.context() as patch:
            patch.setattr(mapping, "contract_fields",
                          lambda inst, exchange=None: replace(right_fields(inst, exchange), **wrong))
            handle(session, request)
        answered.append(contract)
        return True

    spy.trap = trap
    with capture_logs() as logs:
        bot = await new_bot().start()
        await until(logged(logs, "schedule.fired"), what="the entry time")
        await until(lambda: events(logs, "condor.skipped") or events(logs, "job.failed"), what="the entry refused")
        await asyncio.sleep(0.3)
        assert not bot.runner.done()  # a wrong contract is not a crash
        await bot.stop()
    assert answered  # the staged answers were asked for
    mismatches = events(logs, "contract.mismatch")
    assert mismatches and all(e["asked"].startswith("SPXW ") for e in mismatches)
    assert all(list(e["differs"]) == [field] for e in mismatches), mismatches[0]
    assert not bot.order_messages() and not spy.orders()  # nothing was ordered
    assert not events(logs, "order.submitted") and not one_order_per_ref(sim)
    snapshots = [mid for _, mid, *_ in spy.requests if mid == In.REQ_MKT_DATA]
    assert len(snapshots) <= 2  # SPX and VIX at most: no wrong option was even quoted
    assert condor_position(sim) == {}


async def test_scenario_22_itm_short_leg_at_expiry_is_cash_settled_without_phantom(rig, ib_errors):
    """22: a condor whose short put finishes 15 points in the money at the SPXW close. After the
    close the bot books the cash settlement as fills at the intrinsic value (settle:<contract>),
    closes the condor with reason settlement and the settlement debit, and no position remains
    anywhere (store, IB, exchange), then or after a restart."""
    sim, cfg, spy, new_bot = rig
    settle = sim.market.settlement(EXPIRY)
    ps = int(settle // 5 * 5) + 15  # short put 10-15 points in the money at the close
    cs = int(settle * 1.03 // 5 * 5)  # calls far out of the money
    opt = lambda k, r: OptionSpec("SPX", EXPIRY, Decimal(k), r, "SPXW")  # noqa: E731
    legs = (Leg(opt(ps, Right.PUT), Action.SELL), Leg(opt(ps - 25, Right.PUT), Action.BUY),
            Leg(opt(cs, Right.CALL), Action.SELL), Leg(opt(cs + 25, Right.CALL), Action.BUY))
    with capture_logs() as logs:
        bot = await new_bot().start(run=False)
        ref = bot.store.next_order_ref("ic", START)
        intent = Intent(ref, OPEN, ref, ComboOrder(legs, 2), reason="scenario 22", created_at=sim.clock.now())
        outcome = await bot.engine.executor.execute(intent)
        assert outcome.status is IntentStatus.FILLED
        await bot.engine.reconcile()  # books the condor of the filled entry (as after a crash)
        [condor] = bot.store.open_condors()
        held = await books_agree(bot)
        assert held == {legs[0].option.key: -2, legs[1].option.key: 2, legs[2].option.key: -2, legs[3].option.key: 2}
        cash_before = sim.exchange.account(sim.clock.now()).cash
        interest_before = sim.exchange.interest
        _, close = sim.calendar.open_close(EXPIRY)
        sim.clock.jump_to(close + timedelta(minutes=1))
        await bot.engine.on_session_close()
        await until(lambda: not condor_position(sim), what="the exchange's settlement")
        await broker_positions_settle(bot, {})  # IB's position updates trail the exchange's
        await bot.engine.reconcile()  # the books agree: nothing left, nothing booked twice
        await bot.engine.on_session_close()
        store_after = bot.store.positions()
        broker_after = {p.option.key: p.quantity for p in await bot.broker.positions()}
        settlements = [f for f in bot.store.fills() if f.exec_id.startswith("settle:")]
        fees = sum(f.commission for f in bot.store.fills(ref))
        await bot.stop()
    intrinsic = Decimal(str(round(ps - settle, 2)))
    assert intrinsic > 0
    assert store_after == {} and broker_after == {} and condor_position(sim) == {}
    assert sorted((f.option.key, f.quantity, f.price) for f in settlements) == sorted([
        (legs[0].option.key, 2, intrinsic), (legs[1].option.key, -2, Decimal("0.00")),
        (legs[2].option.key, 2, Decimal("0.00")), (legs[3].option.key, -2, Decimal("0.00"))])
    [closed] = events(logs, "condor.closed")
    assert closed["condor_id"] == condor.condor_id and closed["reason"] == "settlement"
    assert Decimal(closed["close_price"]) == intrinsic
    assert Decimal(closed["pnl"]) == (condor.credit - intrinsic) * 100 * 2 - fees
    interest = sim.exchange.interest - interest_before  # the T-bill on cash, from each close passed
    assert sim.exchange.account(sim.clock.now()).cash - cash_before == -intrinsic * 100 * 2 + interest  # no commission
    assert_clean(logs)

    with capture_logs() as again:  # a restart after expiry: no phantom difference either
        later = await new_bot().start(run=False)
        await later.stop()
    [done] = events(again, "reconcile.done")
    assert done["positions"] == 0 and done["mismatches"] == 0
    assert_clean(again)
