"""The hedge on real history, through the daemon as a user runs it (issue: ALVH must-show)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import pytest

from bot.calendar import TradingCalendar
from bot.domain import OptionSpec
from bot.sim.audit import audit_account
from bot.sim.exchange import ExchangeSettings, SimExchange
from strategies.alvh import naked_shorts

from conftest import ROOT, data_dir

CAL = TradingCalendar()
pytestmark = pytest.mark.skipif(data_dir() is None, reason="history files not found (SPX_BOT_DATA or ../shared/data)")


class Replay(list):
    """The run's events, and the folder holding its store and simulated account."""

    folder: Path


def replay(start: str, days: str, extra: str = "") -> Replay:
    tmp = Path(tempfile.mkdtemp(prefix="hedge", dir="/tmp"))
    cfg = tmp / "cfg.toml"
    cfg.write_text(f"""
[bot]
log_path = "{tmp}/bot.jsonl"
store_path = "{tmp}/bot.sqlite"
control_socket = "{tmp}/ctl.sock"
console_log = false
[sim]
state_path = "{tmp}/sim.sqlite"
{extra}
""")
    r = subprocess.run([sys.executable, "-m", "bot.cli", "run", "--config", str(cfg), "--speed", "max",
                        "--start", start, "--for", days, "--data", str(data_dir())],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    events = Replay(json.loads(line) for line in (tmp / "bot.jsonl").read_text().splitlines())
    events.folder = tmp
    return events


def named(events, name):
    return [e for e in events if e["event"] == name]


@pytest.fixture(scope="module")
def crash_2020():
    # The dates asserted below are those of ALVH.md's 15% credit floor (condors, and so the
    # hedge, start later than with the 1dte preset's 8%); the floor is not what these test.
    return replay("2020-02-03", "60d", "[condor]\ncredit_floor = 0.15\n")


def test_all_three_layers_bought(crash_2020):
    assert {e["layer"] for e in named(crash_2020, "hedge.bought")} == {"front", "mid", "back"}


def test_front_layer_rolled_at_dte_7(crash_2020):
    rolls = [e for e in named(crash_2020, "hedge.rolled") if e["layer"] == "front"]
    assert rolls and all(e["dte_old"] == 7 for e in rolls)
    # the first condor (and so the hedge) opens 2020-02-07 on this path: the Feb 19 expiry rolls
    # at DTE 7 on 02-12, the March 18 expiry on 03-11
    assert rolls[0]["timestamp"].startswith("2020-02-12")
    assert {e["timestamp"][:10] for e in rolls} == {"2020-02-12", "2020-03-11"}


def test_activation_enters_late_february_and_blocks_writes(crash_2020):
    changes = named(crash_2020, "hedge.activation")
    first_on = next(e for e in changes if e["active"])
    assert first_on["timestamp"].startswith("2020-02-24")
    active, writes_while_active = False, []
    for e in crash_2020:
        if e["event"] == "hedge.activation":
            active = e["active"]
        elif e["event"] == "hedge.written" and active:
            writes_while_active.append(e)
    assert not writes_while_active
    evaluated = named(crash_2020, "signal.evaluated")
    assert all({"vix", "rsi", "macd", "signal_line", "tier", "multiplier", "activation"} <= e.keys() for e in evaluated)


def test_shorts_open_at_activation_are_bought_back(crash_2020):
    """No written call stays open while the activation is on: those open when it turns on are
    bought back (reason "activation") within the next events, none is written while it is on.
    On this path (condors from 2020-02-07) the calls written on 02-07 and 02-10 were bought back
    at 80 % of their premium on 02-14 and 02-18, before the 02-24 activation."""
    written = named(crash_2020, "hedge.written")
    assert written, "calls were written before activation"
    open_shorts: dict[OptionSpec, int] = {}
    active, since = False, 0
    for i, e in enumerate(crash_2020):
        now = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
        open_shorts = {o: q for o, q in open_shorts.items() if q and CAL.settlement_time(o) > now}
        if e["event"] == "hedge.activation":
            active, since = e["active"], i
        elif e["event"] == "hedge.written":
            assert not active
            for leg in e["legs"]:
                o = OptionSpec.from_key(leg[1:])
                open_shorts[o] = open_shorts.get(o, 0) + e["quantity"]
        elif e["event"] == "hedge.bought_back":
            assert e["reason"] == "activation" or not active
            for leg in e["legs"]:
                o = OptionSpec.from_key(leg[1:])
                open_shorts[o] = open_shorts.get(o, 0) - e["quantity"]
        if active and i > since + 40:
            assert not {o for o, q in open_shorts.items() if q}, (e["timestamp"], open_shorts)


def test_monetized_as_vix_passes_40(crash_2020):
    monetized = named(crash_2020, "hedge.monetized")
    assert monetized and all(float(e["reason"].split()[1].rstrip(",")) >= 40 for e in monetized)
    assert monetized[0]["timestamp"].startswith("2020-02-28")


def test_never_a_naked_short_call(crash_2020):
    """From the log (every hedge trade, options leaving at their morning SOQ) and from the
    simulated account's own executions and settlements (bot.sim.audit)."""
    assert not named(crash_2020, "hedge.alert")
    positions: dict[OptionSpec, int] = {}
    for e in crash_2020:
        now = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
        positions = {o: q for o, q in positions.items() if CAL.settlement_time(o) > now}
        if e["event"].startswith("hedge.") and "legs" in e:
            for leg in e["legs"]:
                opt = OptionSpec.from_key(leg[1:])
                positions[opt] = positions.get(opt, 0) + (1 if leg[0] == "+" else -1) * e["quantity"]
            assert not naked_shorts(positions.items()), e
    exchange = SimExchange(None, None, ExchangeSettings(), crash_2020.folder / "sim.sqlite")
    try:
        audit = audit_account(exchange)
    finally:
        exchange.close()
    assert audit.executions > 50 and not audit.violations


def test_quiet_window_half_tier_and_premium_collected():
    events = replay("2017-03-01", "40d", "[condor]\ncredit_floor = 0.05\n")
    assert {e["multiplier"] for e in named(events, "signal.evaluated")} >= {0.5}
    written = named(events, "hedge.written")
    assert written and sum(float(e["premium"]) for e in written) > 0
    summary = named(events, "hedge.summary")[-1]
    assert sum(float(v["premium_collected"]) for v in summary["layers"].values()) > 0
