"""Live VIX ticks act on the hedge at once, not at the next 5-minute check.

- End to end: the engine over IBBroker over the simulated gateway (as `spx-bot run` wires
  them), the hedge holding a covered short VIX call; VIX jumps above `write.stop_vix` (25) at
  a chosen simulated instant; the streamed tick reaches `Engine._on_vix_tick`, the hedge is
  evaluated and the short bought back long before the next `condor.monitor` would run.
- `HedgeManager.wants_evaluation` (the cheap per-tick check) on real objects: a Store in tmp,
  SimBroker over a SimExchange, VixSignals warmed up from designed VIX closes.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
import structlog
from structlog.testing import capture_logs

from bot.broker.ib import IBBroker
from bot.broker.sim import SimBroker
from bot.calendar import ny_time
from bot.clock import SimClock
from bot.domain import Action, ComboOrder, Fill, Intent, IntentStatus, Leg, OptionSpec, Right
from bot.engine import Engine
from bot.execution import Executor
from bot.hedging import STATE_KEY, HedgeManager
from bot.sim.exchange import ExchangeSettings, SimExchange
from bot.sim.gateway import SimGateway
from bot.sim.market import SyntheticMarket
from bot.store import Store

from test_gateway_support import ib_errors, wait_for  # noqa: F401 - fixture

START = date(2022, 3, 1)  # a Tuesday; the seeded synthetic VIX is ~20 in the afternoon
# six simulated seconds per real second: the windows below (45 s and 15 s simulated) are 7.5 s
# and 2.5 s of real time, the margin a loaded 2-core machine needs; at 60x they were 0.75 s
# and 0.25 s, and one slow snapshot round trip failed the test
SPEED = 6.0
# the covered call the hedge wrote earlier (listed in the simulator on START): short a weekly
# 25.5 call against two longs of the mid layer (later expiry, lower strike)
LONG = OptionSpec("VIX", date(2022, 4, 20), Decimal("23"), Right.CALL, "VIX")
SHORT = OptionSpec("VIX", date(2022, 3, 9), Decimal("25.5"), Right.CALL, "VIXW")


class VixJump:
    """A market model whose VIX (spot and futures curve, scaled alike) is `value` from a chosen
    simulated instant on; everything else, and every instant before, is the wrapped model's."""

    def __init__(self, market):
        self._market = market
        self.value: float | None = None
        self.at = None

    def __getattr__(self, name):
        return getattr(self._market, name)

    def jump(self, value: float, at) -> None:
        self.value, self.at = value, at

    def state_at(self, t):
        state = self._market.state_at(t)
        if self.value is None or t < self.at:
            return state
        ratio = self.value / state.vix
        return replace(state, vix=self.value, vx=tuple((e, p * ratio) for e, p in state.vx))


def named(logs, name):
    return [e for e in logs if e["event"] == name]


# --- end to end over the gateway ---------------------------------------------------------------
@pytest.fixture
async def live(calendar, make_cfg, short_tmp):
    cfg = make_cfg(**{"hedge.enabled": True})
    market = VixJump(SyntheticMarket(calendar, seed=3, start=START - timedelta(days=5), vix0=24.0))
    exchange = SimExchange(market, calendar, ExchangeSettings(), short_tmp / "sim.sqlite")
    clock = SimClock(ny_time(START, "13:00"), SPEED)
    gateway = SimGateway(exchange, clock, calendar, port=0)
    await gateway.start()
    store = Store(cfg.bot.store_path)
    broker = IBBroker("127.0.0.1", gateway.port, 21, timeout=5, clock=clock, reconnect=False)
    engine = Engine(cfg, clock, calendar, broker, store, structlog.get_logger())
    rig = dict(cfg=cfg, market=market, exchange=exchange, clock=clock, gateway=gateway, store=store,
               broker=broker, engine=engine)
    yield rig
    await engine.shutdown()
    await asyncio.sleep(0.05)
    await gateway.close()
    store.close()
    exchange.close()


async def write_covered_call(rig) -> None:
    """The book an earlier run of the bot left: bought 2 mid-layer calls, wrote 1 call against
    them, journaled and booked in the store like any hedge order (through the Executor, on the
    same simulated account)."""
    store, clock = rig["store"], rig["clock"]
    earlier = SimBroker(rig["exchange"], clock)
    await earlier.connect()
    executor = Executor(earlier, store, clock, rig["cfg"].execution, structlog.get_logger())
    for purpose, leg, qty in (("hedge.buy", Leg(LONG, Action.BUY), 2), ("hedge.write", Leg(SHORT, Action.SELL), 1)):
        ref = store.next_order_ref("vx", START)
        outcome = await executor.execute(Intent(ref, purpose, "mid", ComboOrder((leg,), qty), created_at=clock.now()))
        assert outcome.status is IntentStatus.FILLED, outcome


async def test_vix_tick_above_25_buys_back_the_short_before_the_next_check(live, calendar, ib_errors):
    engine, clock, market, store = live["engine"], live["clock"], live["market"], live["store"]
    await write_covered_call(live)
    assert store.positions() == {LONG.key: 2, SHORT.key: -1}

    def sim_time(logger, method, event):
        event["sim_time"] = clock.now()
        return event

    with capture_logs(processors=[sim_time]) as logs:
        assert await engine.start()
        await engine.hedge.evaluate(scheduled=False)  # what every check does: the hedge sees its short
        assert not named(logs, "hedge.bought_back")
        runner = asyncio.create_task(engine.run())
        try:
            monitor = next(job for job in engine.jobs if job.name == "condor.monitor")
            now = clock.now()
            check = monitor.next_fire(calendar, now)
            # jump well clear of a check, so that only the live tick can be what reacts
            at = now + timedelta(seconds=5) if check - now > timedelta(minutes=2) else check + timedelta(seconds=30)
            next_check = monitor.next_fire(calendar, at)
            market.jump(26.0, at)  # >= write.stop_vix; no activation change, no RSI cross at 26
            await wait_for(lambda: named(logs, "hedge.bought_back"), timeout=30, what="hedge.bought_back")
        finally:
            engine.stop()
            await runner
            await wait_for(lambda: engine._vix_task is None, timeout=10, what="the tick's evaluation to end")

    [triggered] = named(logs, "hedge.triggered")
    assert triggered["vix"] == 26.0
    [bought] = named(logs, "hedge.bought_back")
    assert bought["legs"] == [f"+{SHORT.key}"] and bought["quantity"] == 1
    assert bought["reason"] == "VIX 26.00 >= 25.0"
    [submitted] = [e for e in named(logs, "order.submitted") if e["purpose"] == "hedge.buy_back"]
    # the first ticks after the jump (ticks stream every 0.25 s real = 1.5 s simulated) act
    assert at <= triggered["sim_time"] <= at + timedelta(seconds=45)
    assert submitted["sim_time"] - triggered["sim_time"] <= timedelta(seconds=15)
    assert bought["sim_time"] < next_check, "bought back only by the 5-minute check"
    evaluated = [e for e in named(logs, "signal.evaluated") if e["sim_time"] >= at]
    assert evaluated[0]["vix"] == 26.0 and evaluated[0]["trigger"] == "update"
    positions = {p.option.key: p.quantity for p in await live["broker"].positions()}
    assert positions == {LONG.key: 2}


# --- wants_evaluation on real objects -------------------------------------------------------------
def alternating(n: int, level: float, swing: float) -> list[float]:
    return [level + (swing if i % 2 else -swing) for i in range(n)]


CALM = alternating(300, 15.0, 0.1)  # RSI ~50, MACD ~ signal
RISING = alternating(260, 15.0, 0.1) + [15.0 + 9.0 * (i + 1) / 40 for i in range(40)]  # last close 24
SPIKE = alternating(260, 15.0, 0.1) + [15.0 + 15.0 * (i + 1) / 40 for i in range(40)]  # last close 30


@pytest.fixture
async def hedge_rig(calendar, make_cfg, short_tmp):
    cfg = make_cfg(**{"hedge.enabled": True})
    market = SyntheticMarket(calendar, seed=3, start=START - timedelta(days=5), vix0=24.0)
    exchange = SimExchange(market, calendar, ExchangeSettings(), short_tmp / "sim.sqlite")
    clock = SimClock(ny_time(START, "13:00"))  # manual: nothing moves unless told
    store = Store(cfg.bot.store_path)
    broker = SimBroker(exchange, clock)
    await broker.connect()

    def manager(closes: list[float] | None = None, **state) -> HedgeManager:
        """A HedgeManager as after a (re)start: persisted state, indicators warmed up."""
        store.set_control(STATE_KEY, json.dumps({"tier": None, "activated": False, "rsi": None,
                                                 "monetized": [], "halted": False} | state))
        log = structlog.get_logger()
        executor = Executor(broker, store, clock, cfg.execution, log)
        hedge = HedgeManager(cfg, clock, calendar, broker, store, executor, log)
        if closes is not None:
            hedge.signals.warm_up(closes)
        return hedge

    yield dict(manager=manager, store=store, broker=broker, clock=clock, cfg=cfg)
    store.close()
    exchange.close()


def book_covered_call(store: Store, clock) -> None:
    """Journal and book the covered call directly (as the Executor would have)."""
    now = clock.now()
    for purpose, leg, qty, price in (("hedge.buy", Leg(LONG, Action.BUY), 2, "0.85"),
                                     ("hedge.write", Leg(SHORT, Action.SELL), 1, "0.40")):
        ref = store.next_order_ref("vx", START)
        store.add_intent(Intent(ref, purpose, "mid", ComboOrder((leg,), qty), created_at=now))
        store.add_fill(Fill(f"x-{ref}", ref, leg.option, leg.signed_ratio * qty, Decimal(price), now))
        store.set_intent_status(ref, IntentStatus.FILLED, now, filled=qty)


async def test_quiet_tick_wants_nothing(hedge_rig):
    probe = hedge_rig["manager"](CALM)
    hedge = hedge_rig["manager"](CALM, tier=0, rsi=probe.signals.peek(15.0).rsi)
    assert not hedge.wants_evaluation(15.1)
    assert not hedge.wants_evaluation(14.9)


async def test_rsi_crossing_above_70_wants_an_evaluation(hedge_rig):
    probe = hedge_rig["manager"](CALM)
    before, after = probe.signals.peek(15.0).rsi, probe.signals.peek(18.0).rsi
    assert before <= 70 < after  # the designed closes do cross
    assert hedge_rig["manager"](CALM, tier=0, rsi=before).wants_evaluation(18.0)
    assert not hedge_rig["manager"](CALM, tier=0, rsi=75.0).wants_evaluation(18.0)  # already above: no cross


async def test_activation_entering_or_leaving_wants_an_evaluation(hedge_rig):
    rsi = hedge_rig["manager"](RISING).signals.last.rsi  # above 70 already: no RSI cross below
    off = dict(tier=2, activated=False, rsi=rsi)
    on = dict(tier=3, activated=True, rsi=rsi)
    assert hedge_rig["manager"](RISING, **off).wants_evaluation(26.0)  # MACD > signal and VIX > 25: enters
    assert not hedge_rig["manager"](RISING, **off).wants_evaluation(24.5)  # not above 25
    assert hedge_rig["manager"](RISING, **on).wants_evaluation(20.0)  # leaves (under 25 - hysteresis)
    assert not hedge_rig["manager"](RISING, **on).wants_evaluation(24.5)  # held within the hysteresis


async def test_short_calls_at_vix_25_want_an_evaluation(hedge_rig):
    store, clock = hedge_rig["store"], hedge_rig["clock"]
    hedge = hedge_rig["manager"]()
    await hedge.warm_up()  # the synthetic market's own closes: at 26 neither activation nor an RSI cross
    values = hedge.signals.peek(26.0)
    assert values.rsi < 70 and values.macd < values.signal
    await hedge.evaluate(scheduled=False)  # a check with nothing held
    assert not hedge.wants_evaluation(26.0)  # VIX above 25 alone is no trigger
    book_covered_call(store, clock)
    await hedge.evaluate(scheduled=False)  # the next check sees the covered call, holds (VIX ~20)
    assert sorted((lot.option.key, lot.quantity) for lot in hedge.lots()) == [(LONG.key, 2), (SHORT.key, -1)]
    assert hedge.wants_evaluation(26.0)
    assert hedge.wants_evaluation(25.0)
    assert not hedge.wants_evaluation(24.9)


async def test_short_calls_are_seen_by_ticks_right_after_a_restart(hedge_rig):
    book_covered_call(hedge_rig["store"], hedge_rig["clock"])
    hedge = hedge_rig["manager"]()
    await hedge.warm_up()  # what Engine.start does before it subscribes to VIX
    assert hedge.wants_evaluation(26.0)


async def test_vix_40_wants_a_monetization(hedge_rig):
    manager = hedge_rig["manager"]
    rsi = manager(SPIKE).signals.last.rsi
    active = dict(tier=4, activated=True, rsi=rsi)  # activation holds: the last close was active too
    assert manager(SPIKE, **active).wants_evaluation(41.0)
    assert not manager(SPIKE, **active).wants_evaluation(39.0)
    assert not manager(SPIKE, **active, monetized=["back", "front", "mid"]).wants_evaluation(41.0)  # all sold


async def test_a_busy_or_halted_hedge_ignores_ticks(hedge_rig):
    manager = hedge_rig["manager"]
    probe = manager(CALM)
    before = probe.signals.peek(15.0).rsi
    assert not manager(CALM, tier=0, rsi=before, halted=True).wants_evaluation(18.0)
    busy = manager(CALM, tier=0, rsi=before)
    busy.busy = True  # an evaluation is running: the tick must not start a second one
    assert not busy.wants_evaluation(18.0)
