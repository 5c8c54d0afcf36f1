"""The executor (bot/execution.py): limit prices of the walk from mid toward natural, and the
order lifecycle over SimBroker with a manual SimClock (no mocks)."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from decimal import Decimal

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from bot.broker.sim import SimBroker
from bot.calendar import ny_time
from bot.clock import SimClock
from bot.config import ExecutionConfig
from bot.domain import (
    TICK,
    Action,
    ComboOrder,
    Intent,
    IntentStatus,
    Leg,
    OptionSpec,
    OrderStatus,
    Right,
    ceil_tick,
    floor_tick,
)
from bot.execution import FLATTEN, Executor, Halted, Pricing
from bot.sim.exchange import ExchangeSettings, SimExchange
from bot.sim.market import SyntheticMarket
from bot.store import Store

D = Decimal
START = date(2022, 3, 1)  # a Tuesday
EXP = date(2022, 3, 2)
T = ny_time(START, "15:30")


# --- step_price ------------------------------------------------------------------------------


def executor_for_pricing(max_steps: int = 10) -> Executor:
    """step_price is pure: it reads only the execution settings."""
    return Executor(None, None, None, ExecutionConfig(max_steps=max_steps), structlog.get_logger())


def test_step_price_examples():
    ex = executor_for_pricing(max_steps=4)
    p = Pricing(mid=D("-2.325"), natural=D("-1.90"))  # a condor credit: natural is the smaller credit
    order = ComboOrder((), 1)
    # step 0: mid floored to the grid (a better price than mid); then ceil toward natural
    assert [ex.step_price(p, s, order) for s in range(7)] == [
        D("-2.35"),  # floor(-2.325)
        D("-2.20"),  # ceil(-2.325 + 0.425/4 = -2.21875)
        D("-2.10"),  # ceil(-2.1125)
        D("-2.00"),  # ceil(-2.00625)
        D("-1.90"),  # natural
        D("-1.90"),  # never beyond natural
        D("-1.90"),
    ]
    floored = ComboOrder((), 1, limit_floor=D("-2.05"))  # at least 2.05 of credit
    assert [ex.step_price(p, s, floored) for s in range(6)] == [D("-2.35"), D("-2.20"), D("-2.10")] + [D("-2.05")] * 3
    # a debit (closing order): same rule, positive prices
    debit = Pricing(mid=D("1.175"), natural=D("1.60"))
    assert [ex.step_price(debit, s, order) for s in (0, 1, 4, 9)] == [D("1.15"), D("1.30"), D("1.60"), D("1.60")]
    # zero steps: the first step after mid is natural
    assert executor_for_pricing(max_steps=0).step_price(p, 1, order) == D("-1.90")


@settings(max_examples=400, deadline=None)
@given(
    natural_ticks=st.integers(-600, 600),
    half_cents=st.integers(0, 400),  # mid = natural - k x 0.005 (mid is never past natural)
    max_steps=st.integers(0, 30),
    step=st.integers(0, 40),
    floor_ticks=st.one_of(st.none(), st.integers(-700, 700)),
)
def test_step_price_property(natural_ticks, half_cents, max_steps, step, floor_ticks):
    natural = D(natural_ticks) * TICK
    mid = natural - D(half_cents) * D("0.005")
    limit_floor = None if floor_ticks is None else D(floor_ticks) * TICK
    ex = executor_for_pricing(max_steps)
    p, order = Pricing(mid, natural), ComboOrder((), 1, limit_floor)
    caps = [natural] + ([limit_floor] if limit_floor is not None else [])

    price = ex.step_price(p, step, order)
    assert price % TICK == 0  # on the 0.05 combo grid
    assert price <= natural  # never beyond natural
    assert limit_floor is None or price <= limit_floor  # never beyond the strategy's worst price
    if step == 0:
        assert price == min([floor_tick(mid)] + caps)  # mid, floored to the grid
    else:
        steps = max(1, max_steps)
        target = mid + (natural - mid) * min(step, steps) / steps
        assert price == min([ceil_tick(target)] + caps)  # the step's target, ceiled toward natural
        if step >= steps:
            assert price == min(caps)  # the walk ends at natural
    assert ex.step_price(p, step + 1, order) >= price  # the walk only moves toward natural


# --- the lifecycle over SimBroker --------------------------------------------------------------


class Rig:
    """Store, exchange, broker and executor on one manual clock."""

    def __init__(self, tmp, calendar, market, start=T, cash=1_000_000.0):
        self.clock = SimClock(start, None)
        self.exchange = SimExchange(market, calendar, ExchangeSettings(starting_cash=cash), tmp / "sim.sqlite")
        self.store = Store(tmp / "bot.sqlite")
        self.broker = SimBroker(self.exchange, self.clock)
        self.cfg = ExecutionConfig()  # 15 s steps, 10 steps, 60 s final wait
        self.executor = Executor(self.broker, self.store, self.clock, self.cfg, structlog.get_logger())

    def close(self):
        self.store.close()
        self.exchange.close()

    def legs(self, qty_sign: int = 1) -> tuple[Leg, ...]:
        """A 25-wide condor with shorts 2% out of the money on the 1dte expiry."""
        s = self.exchange.market.state_at(self.clock.now()).spx
        ps, cs = int(round(s * 0.98 / 5) * 5), int(round(s * 1.02 / 5) * 5)
        o = lambda k, r: OptionSpec("SPX", EXP, D(k), r)  # noqa: E731
        return (
            Leg(o(ps, Right.PUT), Action.SELL),
            Leg(o(ps - 25, Right.PUT), Action.BUY),
            Leg(o(cs, Right.CALL), Action.SELL),
            Leg(o(cs + 25, Right.CALL), Action.BUY),
        )

    def intent(self, order: ComboOrder, purpose: str = "condor.open") -> Intent:
        ref = self.store.next_order_ref("ic", START)
        return Intent(ref, purpose, ref, order, reason="test", created_at=self.clock.now())

    async def run(self, intent: Intent, max_steps: int = 60):
        """execute() as a task, the clock advanced a step at a time until it returns."""
        task = asyncio.create_task(self.executor.execute(intent))
        for _ in range(max_steps):
            if task.done():
                break
            await self.clock.advance(self.cfg.step_s)
        assert task.done(), "the walk did not finish"
        return await task


@pytest.fixture
def market(calendar):
    return SyntheticMarket(calendar, seed=3, start=START - timedelta(days=5), vix0=24.0)


@pytest.fixture
async def rig(short_tmp, calendar, market):
    r = Rig(short_tmp, calendar, market)
    await r.broker.connect()
    yield r
    r.close()


def events(logs, name):
    return [e for e in logs if e["event"] == name]


async def test_execute_stores_intent_then_walks_to_a_fill(rig):
    legs = rig.legs()
    intent = rig.intent(ComboOrder(legs, 2))
    pricing = await rig.executor.price(intent.order)
    assert pricing.mid < pricing.natural < 0
    with capture_logs() as logs:
        task = asyncio.create_task(rig.executor.execute(intent))
        for _ in range(10):
            await asyncio.sleep(0)
        # first placement done, at mid floored; the intent was journaled and marked SENT
        assert not task.done()
        record = rig.store.intent(intent.order_ref)
        assert record is not None and record.status is IntentStatus.SENT
        assert record.sent_at == T and record.intent.order.quantity == 2
        state = rig.exchange.order(intent.order_ref)
        assert state.status is OrderStatus.WORKING and state.limit == floor_tick(pricing.mid)
        for _ in range(40):
            if task.done():
                break
            await rig.clock.advance(rig.cfg.step_s)
        outcome = await task

    assert outcome.status is IntentStatus.FILLED
    state = outcome.state
    assert state.status is OrderStatus.FILLED and state.filled == 2
    # filled once the walk was a quarter of the way to natural: by step 3 of 10 (45 s)
    assert (state.limit - pricing.mid) / (pricing.natural - pricing.mid) >= D("0.25")
    assert rig.clock.now() <= T + timedelta(seconds=3 * rig.cfg.step_s)
    # one fill per leg in the store, matching the broker
    fills = rig.store.fills(intent.order_ref)
    assert [(f.option.key, f.quantity) for f in fills] == [(leg.option.key, leg.signed_ratio * 2) for leg in legs]
    assert rig.store.positions() == {p.option.key: p.quantity for p in await rig.broker.positions()}
    record = rig.store.intent(intent.order_ref)
    assert record.status is IntentStatus.FILLED and record.filled == 2 and record.limit == state.limit
    # one order at the broker, walked in place
    assert {f.order_ref for f in rig.exchange.fills()} == {intent.order_ref}
    assert rig.exchange.open_orders() == []
    # the log tells the story: submitted once, filled once
    names = [e["event"] for e in logs if e["event"].startswith("order.")]
    assert [n for n in names if n != "order.modified"] == ["order.submitted", "order.filled"]
    (sub,) = events(logs, "order.submitted")
    assert sub["order_ref"] == intent.order_ref and sub["limit"] == str(floor_tick(pricing.mid))
    assert sub["mid"] == str(pricing.mid) and sub["natural"] == str(pricing.natural) and sub["quantity"] == 2
    (filled,) = events(logs, "order.filled")
    assert filled["order_ref"] == intent.order_ref and filled["quantity"] == 2
    assert filled["price"] == str(state.avg_price)


async def test_walk_that_never_reaches_the_threshold_is_cancelled(rig):
    legs = rig.legs()
    pricing = await rig.executor.price(ComboOrder(legs, 1))
    # insists on 0.20 more credit than mid: never a quarter of the way to natural (model quotes
    # drift a little with time to expiry during the walk, so mid itself could become marketable)
    tight = floor_tick(pricing.mid) - D("0.20")
    intent = rig.intent(ComboOrder(legs, 1, limit_floor=tight))
    with capture_logs() as logs:
        outcome = await rig.run(intent)
    assert outcome.status is IntentStatus.CANCELLED and outcome.note == "walk timed out"
    # the whole walk: 10 steps of 15 s after mid, then the final wait, then the cancel
    assert rig.clock.now() >= T + timedelta(seconds=rig.cfg.max_steps * rig.cfg.step_s + rig.cfg.final_wait_s)
    state = rig.exchange.order(intent.order_ref)
    assert state.status is OrderStatus.CANCELLED and state.filled == 0 and state.limit == tight
    assert rig.exchange.positions() == [] and rig.exchange.open_orders() == []
    assert rig.store.fills(intent.order_ref) == [] and rig.store.positions() == {}
    record = rig.store.intent(intent.order_ref)
    assert record.status is IntentStatus.CANCELLED and record.note == "walk timed out"
    (cancelled,) = events(logs, "order.cancelled")
    assert cancelled["order_ref"] == intent.order_ref and cancelled["filled"] == 0
    assert cancelled["reason"] == "walk timed out"
    assert not events(logs, "order.filled")


async def test_halted_store_sends_nothing(rig):
    rig.store.set_halted(True, "test", T)
    intent = rig.intent(ComboOrder(rig.legs(), 1))
    with capture_logs() as logs:
        try:
            outcome = await rig.run(intent)
        except Halted:
            outcome = None
    assert outcome is None or outcome.status is not IntentStatus.FILLED
    assert rig.exchange.order(intent.order_ref) is None
    assert rig.exchange.open_orders() == [] and rig.exchange.positions() == []
    assert not events(logs, "order.submitted")


async def test_halted_store_ends_the_intent_cancelled(rig):
    rig.store.set_halted(True, "test", T)
    intent = rig.intent(ComboOrder(rig.legs(), 1))
    outcome = await rig.run(intent)
    assert outcome.status is IntentStatus.CANCELLED
    record = rig.store.intent(intent.order_ref)
    assert record is not None and record.status is IntentStatus.CANCELLED
    assert rig.exchange.order(intent.order_ref) is None


async def test_flatten_orders_pass_a_halted_store(rig):
    rig.store.set_halted(True, "test", T)
    intent = rig.intent(ComboOrder(rig.legs(), 1), purpose=FLATTEN)
    outcome = await rig.run(intent)
    assert outcome.status is IntentStatus.FILLED
    assert rig.exchange.order(intent.order_ref).status is OrderStatus.FILLED


async def test_halt_during_the_walk_cancels_the_working_order(rig):
    legs = rig.legs()
    pricing = await rig.executor.price(ComboOrder(legs, 1))
    intent = rig.intent(ComboOrder(legs, 1))
    with capture_logs() as logs:
        task = asyncio.create_task(rig.executor.execute(intent))
        for _ in range(10):
            await asyncio.sleep(0)
        assert rig.exchange.order(intent.order_ref).status is OrderStatus.WORKING
        rig.store.set_halted(True, "kill", T)
        for _ in range(20):
            if task.done():
                break
            await rig.clock.advance(rig.cfg.step_s)
        outcome = await task
    assert outcome.status is IntentStatus.CANCELLED and outcome.note == "kill switch"
    state = rig.exchange.order(intent.order_ref)
    assert state.status is OrderStatus.CANCELLED and state.limit == floor_tick(pricing.mid)  # never moved
    assert rig.exchange.positions() == []
    assert rig.store.intent(intent.order_ref).status is IntentStatus.CANCELLED
    assert [e["reason"] for e in events(logs, "order.cancelled")] == ["kill switch"]


async def test_rejected_order_is_recorded_once(short_tmp, calendar, market):
    rig = Rig(short_tmp, calendar, market, cash=1000.0)  # less than a 25-wide condor's max loss
    await rig.broker.connect()
    try:
        intent = rig.intent(ComboOrder(rig.legs(), 1))
        with capture_logs() as logs:
            outcome = await rig.run(intent)
        assert outcome.status is IntentStatus.REJECTED and "insufficient funds" in outcome.note
        record = rig.store.intent(intent.order_ref)
        assert record.status is IntentStatus.REJECTED and "insufficient funds" in record.note
        (rejected,) = events(logs, "order.rejected")
        assert rejected["code"] == 201 and rejected["order_ref"] == intent.order_ref
        assert not events(logs, "order.submitted")
        assert rig.exchange.order(intent.order_ref) is None
    finally:
        rig.close()


async def test_missing_quote_blocks_the_order(rig):
    """FAILURES.md 15: a leg without a usable quote (here: expired) is never priced."""
    legs = rig.legs()
    gone = OptionSpec("SPX", date(2022, 2, 28), legs[1].option.strike, Right.PUT)
    intent = rig.intent(ComboOrder((legs[0], Leg(gone, Action.BUY), *legs[2:]), 1))
    with capture_logs() as logs:
        outcome = await rig.run(intent)
    assert outcome.status is IntentStatus.CANCELLED and gone.key in outcome.note
    assert [e["order_ref"] for e in events(logs, "order.blocked")] == [intent.order_ref]
    assert rig.exchange.order(intent.order_ref) is None
    assert not events(logs, "order.submitted")


@pytest.fixture
def debug_events():
    """order.modified is a debug event: undo a filtering configuration another test
    (setup_logging) may have left behind, and put it back afterwards."""
    before = structlog.get_config()
    structlog.reset_defaults()
    yield
    structlog.configure(**before)


async def test_adopted_walk_resumes_after_the_step_that_set_its_limit(short_tmp, calendar, market, debug_events):
    """FAILURES.md 3: a process dies mid-walk; the next one adopts the order and walks on from
    the step after the one that set its stored limit (not from step 1, back toward mid)."""
    from dataclasses import replace

    rig = Rig(short_tmp, calendar, market)
    rig.exchange.settings = replace(rig.exchange.settings, fill_fraction=2.0)  # never fills
    await rig.broker.connect()
    try:
        intent = rig.intent(ComboOrder(rig.legs(), 1))
        with capture_logs() as before:
            task = asyncio.create_task(rig.executor.execute(intent))
            for _ in range(4):
                await rig.clock.advance(rig.cfg.step_s)
            task.cancel()  # the process dies here
            await asyncio.gather(task, return_exceptions=True)
        made = [e["step"] for e in events(before, "order.modified")]
        assert made and made[-1] >= 2
        again = Executor(rig.broker, rig.store, rig.clock, rig.cfg, structlog.get_logger())
        assert again.resume_step(intent.order_ref) == made[-1] + 1
        state = await rig.broker.order(intent.order_ref)
        with capture_logs() as after:
            walk = asyncio.create_task(again.walk(intent, state, again.resume_step(intent.order_ref)))
            for _ in range(2 * rig.cfg.max_steps):
                if walk.done():
                    break
                await rig.clock.advance(rig.cfg.step_s)
            outcome = await walk
        steps = [e["step"] for e in events(after, "order.modified")]
        assert steps and steps[0] > made[-1] and steps == sorted(steps)  # on from where it was
        assert max(steps) <= rig.cfg.max_steps  # one walk's worth of steps in all
        assert D(events(after, "order.modified")[0]["limit"]) > D(events(before, "order.modified")[-1]["limit"])
        assert outcome.status is IntentStatus.CANCELLED and outcome.note == "walk timed out"
        assert again.resume_step(intent.order_ref) == 1  # the finished order leaves no step behind
    finally:
        rig.close()


class RefusingBroker(SimBroker):
    """SimBroker whose IB link is down (1100) for the next `refusals` order messages."""

    refusals = 0

    async def modify(self, order_ref, limit):
        from bot.broker.base import Degraded

        if self.refusals:
            self.refusals -= 1
            raise Degraded("IB link degraded (1100)")
        return await super().modify(order_ref, limit)


async def test_a_step_refused_while_degraded_is_skipped_and_the_walk_goes_on(short_tmp, calendar, market,
                                                                            debug_events):
    """FAILURES.md 6: a modify refused while DEGRADED (connection up) does not end the walk: the
    order keeps its limit, the next step tries again, and the walk ends in a fill."""
    rig = Rig(short_tmp, calendar, market)
    rig.broker = RefusingBroker(rig.exchange, rig.clock)
    rig.executor = Executor(rig.broker, rig.store, rig.clock, rig.cfg, structlog.get_logger())
    await rig.broker.connect()
    try:
        rig.broker.refusals = 2
        intent = rig.intent(ComboOrder(rig.legs(), 1))
        with capture_logs() as logs:
            outcome = await rig.run(intent)
        refused = events(logs, "order.step_failed")
        assert [e["step"] for e in refused] == [1, 2] and {e["error_type"] for e in refused} == {"Degraded"}
        assert [e["step"] for e in events(logs, "order.modified")][0] == 3
        assert outcome.status is IntentStatus.FILLED
        assert rig.store.positions() == {p.option.key: p.quantity for p in rig.exchange.positions()}
    finally:
        rig.close()
