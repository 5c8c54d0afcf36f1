"""Shared fixtures: a config with its state in tmp, the real data folder when present, else a
synthetic history for the tests that must run anyway (`history_dir`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from bot.calendar import TradingCalendar
from bot.config import load_config

ROOT = Path(__file__).resolve().parents[1]

# The daemon registry (bot/registry.py) is per user; tests must not see, or be seen by, the
# daemons of other test runs or of an operator on the same account. Subprocesses inherit it.
os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="spxrt", dir="/tmp")
os.environ.pop("SPX_BOT_CONFIG", None)


def pytest_configure(config):
    config.addinivalue_line("markers", "never_skip: a skip of this test is a failure (parity must always run)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test marked never_skip that skips fails instead: CI must not pass on parity tests
    that did not run."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and item.get_closest_marker("never_skip") is not None and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid} skipped, but it must always run (never_skip): {report.longrepr}"


def data_dir() -> Path | None:
    """The history files: $SPX_BOT_DATA, or ../shared/data beside the checkout."""
    for candidate in (os.environ.get("SPX_BOT_DATA"), ROOT.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "spx_daily.csv").exists():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def calendar() -> TradingCalendar:
    return TradingCalendar()


@pytest.fixture
def short_tmp():
    """A short directory (unix socket paths are limited to ~107 bytes)."""
    d = tempfile.mkdtemp(prefix="spx", dir="/tmp")
    yield Path(d)
    import shutil

    shutil.rmtree(d, ignore_errors=True)


def make_config(tmp: Path, **overrides):
    """config/sim.toml with every state file under tmp, plus dotted overrides."""
    cfg = load_config(ROOT / "config" / "sim.toml")
    base = {
        "bot.store_path": str(tmp / "bot.sqlite"),
        "bot.log_path": str(tmp / "bot.jsonl"),
        "bot.control_socket": str(tmp / "ctl.sock"),
        "bot.console_log": False,
        "sim.state_path": str(tmp / "sim.sqlite"),
        "hedge.enabled": False,  # condor tests; the hedge has its own
        "http.port": 0,  # a free port: tests run in parallel
    }
    base.update(overrides)
    return cfg.with_overrides(**base)


@pytest.fixture
def make_cfg(short_tmp):
    return lambda **o: make_config(short_tmp, **o)


@pytest.fixture(scope="session")
def history_dir(tmp_path_factory) -> Path:
    """History files for the tests that replay history: the real ones when present, else a
    synthetic history written once per session (tests/synthetic_history.py). Never skips."""
    real = data_dir()
    if real is not None:
        return real
    from synthetic_history import synthetic_history

    return synthetic_history(tmp_path_factory.mktemp("history"))


@pytest.fixture
def shared_data() -> Path:
    d = data_dir()
    if d is None:
        pytest.skip("history files not found: set SPX_BOT_DATA or place ../shared/data beside the checkout")
    return d
