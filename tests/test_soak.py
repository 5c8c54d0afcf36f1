"""The chaos soak's short form (bench/soak.py): the daemon (Engine, IBBroker, the simulated
gateway) over nine days of real history (the seeded synthetic market without the files) with a
dense random fault plan from a fixed seed, every invariant checked after every step. And the
bug the soak found, staged on its own.

The soak's clock is moved by its driver only when the event loop is quiet, so the run does not
depend on the machine's speed: a loaded machine makes it slower, not different (about 40 s on
a busy 2-core machine). Its assertions are on counts the fault plan fixes, with margins.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys

import pytest
import structlog
from conftest import ROOT, data_dir
from structlog.testing import capture_logs
from test_faults import CONNECTION_GONE, events, logged, rig, structlog_defaults, until  # noqa: F401
from test_gateway_support import ib_errors, make_sim  # noqa: F401 - fixtures

from bot.domain import ComboOrder

SEED = 20221
WINDOW = "2022-02-01:9d"  # condors every day; calls written and bought back


def load_soak():
    spec = importlib.util.spec_from_file_location("bench_soak", ROOT / "bench" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def quiet_structlog():
    """The gateway's own log lines are not part of the soak; the configuration is put back."""
    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    yield
    structlog.configure(**before)


async def test_soak_short_form_keeps_every_invariant(quiet_structlog):
    soak = load_soak()
    data = data_dir()  # the history files when present, else the seeded synthetic market
    report = await soak.soak_window(soak.Window.parse(WINDOW), SEED, data, rate=0.4, per_day=3.0)
    soak.print_report(report)
    faults = {k: v for k, v in report.faults.items() if not k.startswith("@")}
    # the window was lived through, with faults of many kinds, and everything was checked
    assert report.ended.startswith("duration reached"), report.ended
    assert report.sessions >= 6 and report.condors >= 3
    logged_events = report.bot_events
    assert logged_events.get("hedge.written", 0) >= 1 and logged_events.get("hedge.bought_back", 0) >= 1, logged_events
    assert sum(faults.values()) >= 25 and len(faults) >= 10, faults
    assert report.restarts >= 1 and faults.get("gateway_restart", 0) >= 1
    checks = report.checks
    assert checks["placement_guard"] == report.order_requests["place"] > 10
    assert checks["step"] > 500 and checks["books_checkpoint"] >= 6 and checks["books_end"] == 1
    assert checks["logged_intent"] >= 10
    unknown = [v for v in report.violations if not v.get("known")]
    assert not unknown, unknown


# --------------------------------------------------------------------------- what the soak found


async def test_partly_filled_close_leaves_the_rest_of_the_condor(rig, ib_errors):
    """A close fills 1 lot, the rest never reaches the exchange and the walk cancels it (202
    keeps the partial fill). The condor left open must be the lots still held, so that the
    next close buys back and sells only those."""
    ib_errors.allow("Error 202")
    sim, cfg, spy, new_bot = rig
    with capture_logs() as logs:
        bot = await new_bot().start()
        await until(logged(logs, "condor.opened"), timeout=30, what="the entry")
        [condor] = bot.store.open_condors()
        assert condor.quantity > 1
        sim.scenario.partial_next(1, rest_after=None)  # 1 lot now, the rest held
        outcome = await asyncio.wait_for(bot.engine.close_condor(
            condor.condor_id, ComboOrder(condor.legs(opening=False), condor.quantity), "soak finding"), 30)
        held = {p.option.key: p.quantity for p in sim.exchange.positions()}
        left = [c.quantity for c in bot.store.open_condors()]
        await bot.stop()
    assert outcome.state is not None and outcome.state.filled == 1
    assert sorted(held.values()) == [-(condor.quantity - 1)] * 2 + [condor.quantity - 1] * 2
    [cancelled] = events(logs, "order.cancelled")
    assert cancelled["filled"] == 1
    assert left == [condor.quantity - 1], f"{condor.quantity - 1} lots held, open condors {left}"
    [reduced] = events(logs, "condor.reduced")
    assert reduced["closed"] == 1 and reduced["left"] == condor.quantity - 1


async def test_adopting_a_partly_filled_order_is_not_a_position_mismatch(rig, ib_errors):
    """Found by the soak (`--window 2022-03-01:21d --seed 2 --rate 0.4 --per-day 3`, vx-20220322-0043;
    again in the 2022 long run, vx-20220308-0165): a process that starts (or resyncs) and adopts a
    working order that is partly filled found the broker's positions ahead of its store by that
    part, logged `reconcile.mismatch` and halted entries, although the walk it resumes books those
    fills. The legs of adopted orders are left to their walk, as those of orders it already walks."""
    ib_errors.allow(*CONNECTION_GONE, "Error 202")
    sim, cfg, spy, new_bot = rig
    sim.scenario.partial_next(1, rest_after=None)  # 1 lot now, the rest held
    with capture_logs():
        first = await new_bot().start()
        await until(lambda: sim.exchange.positions(), timeout=30, what="the first lot filled")
        await first.crash()  # before the walk books it
    with capture_logs() as logs:
        second = await new_bot().start()
        await until(logged(logs, "order.adopted"), timeout=30, what="the adoption")
        sim.scenario.release_fills()
        await until(logged(logs, "condor.opened"), timeout=30, what="the rest filled")
        await asyncio.sleep(0.3)
        await second.stop()
    assert not events(logs, "reconcile.mismatch"), events(logs, "reconcile.mismatch")
    assert [e["mismatches"] for e in events(logs, "reconcile.done")][0] == 0
    assert len(events(logs, "condor.opened")) == 1
