"""The chaos soak's short form (bench/soak.py): the daemon (Engine, IBBroker, the simulated
gateway) over two weeks of real history with a dense random fault plan from a fixed seed,
every invariant checked after every step.

The soak's clock is moved by its driver only when the event loop is quiet, so the run does not
depend on the machine's speed: a loaded machine makes it slower, not different. The budget
below is generous for that reason; a run takes about a minute on a busy 2-core machine.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import pytest
import structlog
from conftest import ROOT, data_dir

SEED = 20221
WINDOW = "2022-03-07:9d"


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
    assert sum(faults.values()) >= 20 and len(faults) >= 8, faults
    assert report.restarts >= 1 and faults.get("gateway_restart", 0) >= 1
    checks = report.checks
    assert checks["placement_guard"] == report.order_requests["place"] > 10
    assert checks["step"] > 500 and checks["books_checkpoint"] >= 6 and checks["books_end"] == 1
    assert checks["logged_intent"] >= 10
    unknown = [v for v in report.violations if not v.get("known")]
    assert not unknown, unknown
