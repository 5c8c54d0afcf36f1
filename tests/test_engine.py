"""The engine end to end over SimBroker and the simulated exchange (no mocks)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
import structlog
from structlog.testing import capture_logs

from bot.broker.base import FatalBrokerError
from bot.broker.sim import SimBroker
from bot.calendar import ny_time
from bot.clock import SimClock
from bot.domain import Intent, IntentStatus
from bot.engine import OPEN, Engine
from bot.sim.exchange import ExchangeSettings, SimExchange
from bot.sim.market import SyntheticMarket, build_market
from bot.store import Store

START = date(2022, 3, 1)  # a Tuesday
CALM = {"condor.credit_floor": 0.08}  # the synthetic market is calm: let entries fill


class Rig:
    """Engine, broker, exchange and store on one config; `restart()` builds new objects on the
    same files, as a new process would after a crash."""

    def __init__(self, cfg, calendar, market, start, speed="max", until=None, account="DU0000001", cash=1_000_000.0):
        self.cfg, self.cal, self.market, self.until = cfg, calendar, market, until
        self.settings = ExchangeSettings(account, cash, cfg.sim.commission_per_contract, cfg.sim.fill_fraction)
        self.clock = SimClock(start, speed)
        self._build()

    def _build(self):
        self.exchange = SimExchange(self.market, self.cal, self.settings, self.cfg.sim.state_path)
        self.store = Store(self.cfg.bot.store_path)
        self.broker = SimBroker(self.exchange, self.clock)
        self.engine = Engine(self.cfg, self.clock, self.cal, self.broker, self.store, structlog.get_logger(), self.until)

    def restart(self):
        """Drop everything without any cleanup (a kill -9), then build anew."""
        self.store.close()
        self.exchange.close()
        self._build()

    async def run(self):
        await self.engine.start()
        try:
            return await self.engine.run()
        finally:
            await self.engine.shutdown()

    def close(self):
        self.store.close()
        self.exchange.close()


@pytest.fixture
def synthetic(calendar):
    return SyntheticMarket(calendar, seed=3, start=START - timedelta(days=5), vix0=24.0)


def events(logs, name):
    return [e for e in logs if e["event"] == name]


async def test_a_week_of_1dte_condors_opens_and_closes_each_day(make_cfg, calendar, synthetic):
    cfg = make_cfg(**{"condor.credit_floor": 0.08})  # the synthetic week is calm: let every day trade
    start = ny_time(START, "09:00")
    rig = Rig(cfg, calendar, synthetic, start, until=start + timedelta(days=5))
    with capture_logs() as logs:
        reason = await rig.run()
    opened, closed = events(logs, "condor.opened"), events(logs, "condor.closed")
    assert reason == "duration reached, book flat"
    assert len(opened) == 4  # Tue..Fri
    assert {e["condor_id"] for e in closed} == {e["condor_id"] for e in opened}
    for e in opened:
        assert Decimal(e["credit"]) >= Decimal("0.08") * 25  # credit floor
    assert rig.store.positions() == {}
    assert {p.option.key: p.quantity for p in rig.exchange.positions()} == {}
    assert all(r.status in (IntentStatus.FILLED, IntentStatus.CANCELLED) for r in rig.store.intents())
    # every submitted order was for a distinct order_ref
    refs = [e["order_ref"] for e in events(logs, "order.submitted")]
    assert len(refs) == len(set(refs))
    rig.close()


async def test_store_positions_match_broker_mid_run(make_cfg, calendar, synthetic):
    cfg = make_cfg(**CALM)
    start = ny_time(START, "09:00")
    rig = Rig(cfg, calendar, synthetic, start, until=start + timedelta(hours=8))  # stops after the first entry
    rig.engine.until = None
    await rig.engine.start()
    runner = asyncio.create_task(rig.engine.run())
    for _ in range(2000):
        await asyncio.sleep(0)
        if rig.store.open_condors():
            break
    rig.engine.stop()
    await runner
    assert rig.store.open_condors()
    ours = rig.store.positions()
    theirs = {p.option.key: p.quantity for p in await rig.broker.positions()}
    assert ours == theirs and len(ours) == 4
    status = await rig.engine.status()
    assert status["halted"] is False and len(status["open_condors"]) == 1
    assert status["positions"] == ours and "realized" in status["pnl"]
    await rig.engine.shutdown()
    rig.close()


async def test_kill_switch_halts_cancels_and_survives_restart(make_cfg, calendar, synthetic):
    cfg = make_cfg(**CALM)
    start = ny_time(START, "15:29")
    rig = Rig(cfg, calendar, synthetic, start, speed=None)  # manual clock
    await rig.engine.start()
    with capture_logs() as logs:
        runner = asyncio.create_task(rig.engine.run())
        await rig.clock.advance(60)  # 15:30: entry fires, order placed at mid and walking
        for _ in range(50):
            await asyncio.sleep(0)
        working = rig.store.live_intents()
        result = await rig.engine.kill(reason="test")
        for _ in range(30):
            await rig.clock.advance(15)
        await rig.clock.advance(86400)  # the next day's entry time passes while halted
        rig.engine.stop()
        await runner
    names = [e["event"] for e in logs]
    k = names.index("killswitch.engaged")
    assert "order.submitted" not in names[k + 1:]
    assert result["remaining"] == []
    assert [r.intent.order_ref for r in working] == result["cancelled"] or not working
    assert rig.exchange.open_orders() == []
    assert any(e["event"] == "condor.skipped" and "halted" in e["reason"] for e in logs[k:])
    await rig.engine.shutdown()
    rig.restart()
    assert rig.store.halted() == (True, "test")
    await rig.engine.resume()
    assert rig.store.halted()[0] is False
    rig.close()


async def test_crash_after_send_adopts_order_and_never_places_twice(make_cfg, calendar, synthetic):
    """FAILURES.md 1 and 3: the order reached the broker, the bot died before recording it."""
    cfg = make_cfg(**CALM)
    start = ny_time(START, "15:30")
    rig = Rig(cfg, calendar, synthetic, start, speed=None)
    await rig.broker.connect()
    ic_intent = await _entry_intent(rig)
    rig.store.add_intent(ic_intent)
    # a limit far better than mid: it rests at the broker until the adopted walk moves it
    await rig.broker.place_combo(ic_intent.order_ref, ic_intent.order.legs, ic_intent.order.quantity, Decimal("-20.00"))
    rig.restart()  # crash: no mark_sent, no walk
    with capture_logs() as logs:
        await rig.engine.start()  # reconcile adopts the working order and continues its walk
        for _ in range(40):
            await rig.clock.advance(15)
        await asyncio.sleep(0)
    assert [e["order_ref"] for e in events(logs, "order.adopted")] == [ic_intent.order_ref]
    assert not events(logs, "order.submitted")  # nothing new was placed
    assert rig.store.intent(ic_intent.order_ref).status is IntentStatus.FILLED
    assert len(rig.store.open_condors()) == 1
    assert rig.store.positions() == {p.option.key: p.quantity for p in await rig.broker.positions()}
    await rig.engine.shutdown()
    rig.close()


async def test_crash_before_send_marks_intent_abandoned(make_cfg, calendar, synthetic):
    """FAILURES.md 2: the intent was stored, the order never left."""
    cfg = make_cfg(**CALM)
    rig = Rig(cfg, calendar, synthetic, ny_time(START, "15:30"), speed=None)
    await rig.broker.connect()
    intent = await _entry_intent(rig)
    rig.store.add_intent(intent)
    rig.restart()
    with capture_logs() as logs:
        await rig.engine.start()
    assert rig.store.intent(intent.order_ref).status is IntentStatus.ABANDONED
    assert events(logs, "reconcile.done")[0]["abandoned"] == [intent.order_ref]
    assert rig.exchange.order(intent.order_ref) is None
    await rig.engine.shutdown()
    rig.close()


async def test_filled_while_down_is_booked_once(make_cfg, calendar, synthetic):
    cfg = make_cfg(**CALM)
    rig = Rig(cfg, calendar, synthetic, ny_time(START, "15:30"), speed=None)
    await rig.broker.connect()
    intent = await _entry_intent(rig)
    rig.store.add_intent(intent)
    await rig.broker.place_combo(intent.order_ref, intent.order.legs, intent.order.quantity, Decimal("5.00"))  # fills
    rig.restart()
    await rig.engine.start()
    await rig.engine.reconcile()  # a second reconcile must not book anything twice
    assert len(rig.store.open_condors()) == 1
    assert rig.store.positions() == {p.option.key: p.quantity for p in await rig.broker.positions()}
    await rig.engine.shutdown()
    rig.close()


async def test_rejected_order_is_recorded_not_retried(make_cfg, calendar, synthetic):
    """A manual trade has used the cash: the broker refuses the margin (IB 201); the bot
    records the rejection once and does not retry."""
    from bot.domain import Action, Leg, OptionSpec, Right

    cfg = make_cfg(**{"condor.max_risk_fraction": 1.0, "condor.credit_floor": 0.05})
    start = ny_time(START, "15:25")
    rig = Rig(cfg, calendar, synthetic, start, until=start + timedelta(hours=1), cash=3000.0)
    await rig.engine.start()
    spx = await rig.broker.spot("SPX")
    calls = [OptionSpec("SPX", date(2022, 4, 14), Decimal(k), Right.CALL) for k in range(int(spx // 5 * 5), int(spx * 1.2), 5)]
    quotes = await rig.broker.quotes(calls)
    call = next(c for c in calls if 900 <= quotes[c.key].ask * 100 <= 1500)  # leaves too little cash
    ask = quotes[call.key].ask
    await rig.broker.place_combo("manual-1", [Leg(call, Action.BUY)], 1, ask)  # marketable: fills
    with capture_logs() as logs:
        await rig.engine.run()
    await rig.engine.shutdown()
    rejected = events(logs, "order.rejected")
    assert len(rejected) == 1 and "insufficient funds" in rejected[0]["reason"]
    assert rig.store.intent(rejected[0]["order_ref"]).status is IntentStatus.REJECTED
    assert len(events(logs, "order.submitted")) == 0
    assert not rig.store.open_condors()
    rig.close()


async def test_bad_quote_blocks_entry(make_cfg, calendar, synthetic):
    class NanVix:
        source = "synthetic"

        def __getattr__(self, name):
            return getattr(synthetic, name)

        def state_at(self, t):
            return replace(synthetic.state_at(t), vix=float("nan"))

    cfg = make_cfg()
    start = ny_time(START, "15:29")
    rig = Rig(cfg, calendar, NanVix(), start, until=start + timedelta(hours=1))
    with capture_logs() as logs:
        await rig.run()
    assert not events(logs, "order.submitted")
    failed = events(logs, "job.failed")
    assert failed and "VIX" in failed[0]["error"]
    rig.close()


async def test_live_account_refused_unless_allowed(make_cfg, calendar, synthetic):
    rig = Rig(make_cfg(), calendar, synthetic, ny_time(START, "09:00"), account="U1234567")
    with pytest.raises(FatalBrokerError, match="not a paper account"):
        await rig.engine.start()
    rig.close()
    rig = Rig(make_cfg(**{"bot.allow_live": True}), calendar, synthetic, ny_time(START, "09:00"), account="U1234567")
    await rig.engine.start()
    await rig.engine.shutdown()
    rig.close()


async def test_history_replay_week(make_cfg, calendar, shared_data):
    market = build_market("history", shared_data, calendar, START, START + timedelta(days=20), seed=7)
    cfg = make_cfg()
    start = ny_time(START, "09:00")
    rig = Rig(cfg, calendar, market, start, until=start + timedelta(days=5))
    with capture_logs() as logs:
        await rig.run()
    opened = events(logs, "condor.opened")
    assert [e["expiry"] for e in opened] == ["2022-03-02", "2022-03-03", "2022-03-04", "2022-03-07"]
    assert len(events(logs, "condor.closed")) == 4
    rig.close()


async def _entry_intent(rig) -> Intent:
    """The intent the engine would make at this moment (uses the same pure strategy)."""
    from strategies import iron_condor as ic

    now = rig.clock.now()
    expiry = ic.entry_expiry(await rig.broker.expiries("SPX", "SPXW"), now.date(), rig.cfg.condor)
    snapshot = await rig.engine._chain_snapshot(expiry, now)
    proposal = ic.decide_entry(snapshot, await rig.engine._book(), rig.cfg.condor, now)
    ref = rig.store.next_order_ref("ic", now.date())
    return Intent(ref, OPEN, ref, proposal.order, created_at=now)


async def test_expiry_is_cash_settled_and_booked_as_fills(make_cfg, calendar, synthetic):
    """FAILURES.md 22: a condor held to expiry is settled in cash at the SPX close; the store
    books it as fills (positions stay the sum of fills) and no phantom position remains."""
    cfg = make_cfg(**CALM)
    rig = Rig(cfg, calendar, synthetic, ny_time(START, "15:30"), speed=None)
    await rig.engine.start()
    with capture_logs() as logs:
        entry = asyncio.create_task(rig.engine.on_entry())
        while not entry.done():
            await rig.clock.advance(15)
        [condor] = rig.store.open_condors()
        expiry_close = calendar.open_close(condor.expiry)[1]
        await rig.clock.advance_to(expiry_close + timedelta(minutes=1))  # no monitor ran: held to expiry
        await rig.engine.on_session_close()
    [closed] = events(logs, "condor.closed")
    assert closed["reason"] == "settlement"
    assert rig.store.positions() == {} and rig.exchange.positions() == []
    settle = synthetic.settlement(condor.expiry)
    debit = sum(leg.signed_ratio * Decimal(str(round(leg.option.intrinsic(settle), 2)))
                for leg in condor.legs(opening=False))
    fees = sum(f.commission for f in rig.store.fills())
    assert Decimal(closed["pnl"]) == (condor.credit - debit) * 100 * condor.quantity - fees
    account = await rig.broker.account()
    assert rig.exchange.interest > 0  # the T-bill on cash, from each close to the next
    assert account.cash == Decimal("1000000") + Decimal(closed["pnl"]) + rig.exchange.interest
    await rig.engine.shutdown()
    rig.close()


async def test_a_stop_goes_out_at_the_next_step(make_cfg, calendar, synthetic):
    """bot.walk.at_next_price: a stop triggered by a price already seen is sent at the market's
    next step (the simulated daemon is given `next_step_time`, as the backtest uses it), not
    at the instant that saw it; other closes go out at once."""
    from bot.domain import ComboOrder
    from bot.walk import at_next_price

    assert at_next_price("stop_loss") and not any(at_next_price(r) for r in ("take_profit", "time_exit", "flatten"))
    cfg = make_cfg(**CALM)
    rig = Rig(cfg, calendar, synthetic, ny_time(START, "10:00"), speed=None)
    rig.engine.next_price = synthetic.next_step_time
    await rig.engine.start()
    entry = asyncio.create_task(rig.engine.on_entry())
    while not entry.done():
        await rig.clock.advance(15)
    [condor] = rig.store.open_condors()
    seen = ny_time(START, "11:02") + timedelta(seconds=30)
    await rig.clock.advance_to(seen)
    close = asyncio.create_task(rig.engine.close_condor(condor.condor_id, ComboOrder(
        condor.legs(opening=False), condor.quantity), "stop_loss"))
    while not close.done():
        await rig.clock.advance(15)
    [record] = [r for r in rig.store.intents() if r.intent.created_at >= seen]
    assert record.intent.created_at == ny_time(START, "11:05")  # the next 5-minute step, not 11:02:30
    assert record.sent_at >= ny_time(START, "11:05")
    assert close.result().status is not None
    rig.close()


async def test_positions_differing_from_the_broker_halt_entries_not_fixed(make_cfg, calendar, synthetic):
    """FAILURES.md 14: a manual trade at the broker; the broker is the truth, the difference is
    logged, entries stop, and no order tries to "fix" it until an operator resumes."""
    from bot.domain import Action, Leg, OptionSpec, Right

    cfg = make_cfg(**CALM)
    start = ny_time(START, "15:25")
    rig = Rig(cfg, calendar, synthetic, start, until=start + timedelta(hours=1))
    await rig.broker.connect()
    spx = await rig.broker.spot("SPX")
    put = OptionSpec("SPX", date(2022, 4, 14), Decimal(int(spx * 0.9 // 5 * 5)), Right.PUT)
    ask = (await rig.broker.quotes([put]))[put.key].ask
    await rig.broker.place_combo("manual-2", [Leg(put, Action.BUY)], 1, ask)  # outside the bot
    with capture_logs() as logs:
        await rig.run()
    [mismatch] = events(logs, "reconcile.mismatch")
    assert mismatch["differences"] == {put.key: {"store": 0, "broker": 1}}
    assert not events(logs, "order.submitted")
    assert any("differ" in e["reason"] for e in events(logs, "condor.skipped"))
    await rig.engine.resume()
    assert not rig.store.get_control("position_mismatch")
    rig.close()
