"""Hedge safety (issue 8; FAILURES.md 23-26): no order that could leave a short call uncovered or
sell what is not held, settlements per layer at the SOQ, activation steady within a session,
no short call left behind."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
import structlog
from structlog.testing import capture_logs

from bot.calendar import UTC, ny_time
from bot.clock import SimClock
from bot.domain import Action, ComboOrder, Fill, Intent, IntentStatus, Leg, OptionSpec, Right
from bot.engine import MISMATCH_KEY
from bot.hedging import HedgeManager
from bot.sim.market import build_market
from bot.store import Store

from conftest import ROOT, data_dir
from test_engine import Rig, synthetic  # noqa: F401 - the fixture

needs_history = pytest.mark.skipif(data_dir() is None, reason="history files not found (SPX_BOT_DATA or ../shared/data)")


def _bench():
    spec = importlib.util.spec_from_file_location("hedge_safety", ROOT / "bench" / "hedge_safety.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(cfg, start: str, duration: str) -> list[dict]:
    r = subprocess.run([sys.executable, "-m", "bot.cli", "run", "--config", str(cfg), "--speed", "max",
                        "--start", start, "--for", duration, "--data", str(data_dir())],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r


def _events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- 23: dependants of an action that did not fill are not sent; the guard refuses the rest -------
@needs_history
def test_scenario_23_a_month_of_2022_sends_nothing_unsafe_and_ends_with_no_short_call():
    """2022-07-18 + 30 days: on main before the guard, three writes were rejected by the
    exchange as naked (each after a blocked roll) and the run ended short VIXW calls."""
    r = _bench().run_window("2022-07-18", "30d", str(data_dir()))
    assert r["exit_code"] == 0, r["stderr_tail"]
    assert r["rejected_naked_or_not_held"] == 0 and r["orders_refused_by_guard"] == 0
    assert r["hedge_alerts"] == 0 and r["reconcile_mismatches"] == 0
    assert r["hedge_events"].get("hedge.written", 0) > 0  # the window does write calls
    assert r["audit"]["violations"] == 0 and r["audit"]["moments"] > 50
    assert r["audit"]["short_calls_at_end"] == {}  # FAILURES.md 26: wound down with none left
    assert r["stopped"] == "duration reached, book flat"


async def test_scenario_23_a_write_whose_cover_did_not_fill_is_refused_at_the_executor(make_cfg, calendar, synthetic):
    rig = Rig(make_cfg(), calendar, synthetic, ny_time(date(2022, 3, 1), "10:00"), speed="max")
    await rig.engine.start()
    monthly = await rig.broker.expiries("VIX", "VIX")
    short = OptionSpec("VIX", monthly[0], (await rig.broker.strikes("VIX", "VIX", monthly[0]))[-10], Right.CALL, "VIX")
    ref = rig.store.next_order_ref("vx", date(2022, 3, 1))
    intent = Intent(ref, "hedge.write", "mid", ComboOrder((Leg(short, Action.SELL),), 2), created_at=rig.clock.now())
    with capture_logs() as logs:
        outcome = await rig.engine.executor.execute(intent)
    assert outcome.status is IntentStatus.REJECTED and "uncovered" in outcome.note
    [refused] = [e for e in logs if e["event"] == "order.refused"]
    assert refused["order_ref"] == ref and short.key in refused["reason"]
    assert await rig.broker.order(ref) is None  # it never reached the broker
    assert rig.store.intent(ref).status is IntentStatus.REJECTED
    assert not [e for e in logs if e["event"] == "order.submitted"]
    await rig.engine.shutdown()
    rig.close()


# --- 24: a shared short settles to each layer by its own quantity ------------------------------------
def test_scenario_24_a_contract_two_layers_hold_settles_to_each_by_its_quantity(make_cfg, calendar, short_tmp):
    cfg = make_cfg(**{"hedge.enabled": True})
    store = Store(short_tmp / "books.sqlite")
    t = datetime(2022, 3, 1, 15, tzinfo=UTC)
    written = OptionSpec("VIX", date(2022, 3, 16), Decimal(30), Right.CALL, "VIX")
    for i, (layer, qty, price) in enumerate((("mid", -2, "1.00"), ("back", -1, "1.10"))):
        ref = f"vx-{i}"
        store.add_intent(Intent(ref, "hedge.write", layer, ComboOrder((Leg(written, Action.SELL),), -qty), created_at=t))
        store.add_fill(Fill(f"e{i}", ref, written, qty, Decimal(price), t))
    store.add_fill(Fill(f"settle:{written.key}", "", written, 3, Decimal("2.50"), t + timedelta(days=15)))
    hedge = HedgeManager(cfg, SimClock(t + timedelta(days=15), "max"), calendar, None, store, None,
                         structlog.get_logger())
    assert [lot for lot in hedge.lots() if lot.option == written] == []  # no phantom long or short
    flows = {}
    for layer, f in hedge._hedge_fills():  # noqa: SLF001 - the books' input, checked directly
        flows[layer] = flows.get(layer, Decimal(0)) - f.price * 100 * f.quantity
    assert flows == {"mid": Decimal("200.00") - Decimal("500.00"), "back": Decimal("110.00") - Decimal("250.00")}
    store.close()


# --- 25: a restart on a VIX expiry morning finds no phantom difference --------------------------------
@needs_history
def test_scenario_25_restart_on_a_vix_expiry_day_has_no_mismatch_and_entries_continue(short_tmp):
    cfg = _bench().fresh_config(short_tmp)
    _run(cfg, "2020-07-27", "388h")  # ends 2020-08-12 13:00 New York: VIXW 2020-08-12 settled at 09:30
    first = len(_events(short_tmp / "bot.jsonl"))
    _run(cfg, "2020-08-12", "5d")
    second = _events(short_tmp / "bot.jsonl")[first:]
    assert not [e for e in second if e["event"] == "reconcile.mismatch"]
    assert [e for e in second if e["event"] == "reconcile.done"][0]["mismatches"] == 0
    assert [e for e in second if e["event"] == "condor.opened"]  # entries continue
    # the expired weekly calls left the books that morning, not at the close
    settled = [e for e in _events(short_tmp / "bot.jsonl") if e["event"] == "hedge.written"
               and any("20200812" in leg for leg in e["legs"])]
    assert settled
    with Store(short_tmp / "bot.sqlite") as store:
        assert not [k for k in store.positions() if "20200812" in k]


# --- 26: kill --flatten buys back written calls --------------------------------------------------------
@needs_history
async def test_scenario_26_kill_flatten_buys_back_every_written_call(make_cfg, calendar):
    start = date(2022, 7, 18)
    market = build_market("history", data_dir(), calendar, start, start + timedelta(days=40), seed=7)
    cfg = make_cfg(**{"hedge.enabled": True})
    rig = Rig(cfg, calendar, market, ny_time(start, "09:00"), speed="max")
    await rig.engine.start()
    with capture_logs() as logs:
        run = asyncio.create_task(rig.engine.run())
        while not (rig.engine.hedge.has_shorts and calendar.is_open(rig.clock.now())):
            assert not run.done(), "no call was written"
            await asyncio.sleep(0)
        result = await rig.engine.kill(flatten=True, reason="test")
        rig.engine.stop()
        await run
    assert result["halted"] and not rig.engine.hedge.has_shorts
    backs = [e for e in logs if e["event"] == "hedge.bought_back" and e["reason"] == "kill --flatten"]
    assert backs
    positions = {p.option.key: p.quantity for p in await rig.broker.positions()}
    assert not [k for k, q in positions.items() if k.startswith("VIX") and q < 0]
    assert any(q > 0 for k, q in positions.items() if k.startswith("VIX"))  # the longs stay
    await rig.engine.shutdown()
    rig.close()


# --- a mismatch halt is visible, and a clean reconcile clears it ---------------------------------------
async def test_a_clean_reconcile_clears_a_mismatch_halt_and_says_so(make_cfg, calendar, synthetic):
    rig = Rig(make_cfg(), calendar, synthetic, ny_time(date(2022, 3, 1), "10:00"), speed="max")
    await rig.engine.start()
    rig.store.set_control(MISMATCH_KEY, json.dumps({"SPXW 20220301 4000 P": [1, 0]}))
    status = await rig.engine.status()
    assert status["entries_blocked"] and status["position_mismatch"] == {"SPXW 20220301 4000 P": {"store": 1, "broker": 0}}
    with capture_logs() as logs:
        await rig.engine.reconcile()
    assert [e for e in logs if e["event"] == "reconcile.mismatch_cleared"]
    status = await rig.engine.status()
    assert status["position_mismatch"] is None and not status["entries_blocked"]
    await rig.engine.shutdown()
    rig.close()


# --- activation steady within a session: 2018-02 and 2018-12 ------------------------------------------
def activation_timeline(events: list[dict]) -> list[dict]:
    """Every write and buy-back with the activation state at that moment."""
    active, out = False, []
    for e in events:
        if e["event"] == "hedge.activation":
            active = e["active"]
            out.append({"time": e["timestamp"], "event": "activation", "active": active, "vix": e["vix"]})
        elif e["event"] in ("hedge.written", "hedge.bought_back"):
            out.append({"time": e["timestamp"], "event": e["event"], "active": active, "legs": e["legs"],
                        "quantity": e["quantity"], "price": e["price"], "reason": e["reason"]})
    return out


@needs_history
@pytest.mark.parametrize("start", ["2018-01-29", "2018-11-26"])
def test_no_write_is_bought_back_the_same_day_because_activation_changed(short_tmp, start):
    cfg = _bench().fresh_config(short_tmp)
    _run(cfg, start, "35d")
    timeline = activation_timeline(_events(short_tmp / "bot.jsonl"))
    assert [x for x in timeline if x["event"] == "activation"], "the window has an activation"
    written_on = {}
    for x in timeline:
        day = x["time"][:10]
        if x["event"] == "hedge.written":
            assert not x["active"]
            written_on.setdefault(day, set()).update(leg.lstrip("-") for leg in x["legs"])
        elif x["event"] == "hedge.bought_back" and x["reason"] == "activation":
            assert not written_on.get(day, set()) & {leg.lstrip("+") for leg in x["legs"]}, x
    # once on, activation holds for the rest of that session (it may leave in the morning on the
    # completed bar and come back later the same day, but not the other way round)
    on_day = None
    for x in (x for x in timeline if x["event"] == "activation"):
        if x["active"]:
            on_day = x["time"][:10]
        else:
            assert x["time"][:10] != on_day, x
