"""`spx-bot report`: the bot's store as the backtest's report, beside a backtest of the same days.

A few sessions of 2022-03 traded by the daemon at `--speed max` (SimBroker over the same
simulated exchange the backtest replays), then the report: with the backtest charging what the
simulated exchange charges (IB's schedule plus fees, the default of both) the two agree to the
cent; with `--commissions flat` in the backtest the differences are commissions and what
follows from them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

BIN = [sys.executable, "-m", "bot.cli"]


@pytest.fixture(scope="module")
def traded(tmp_path_factory, ):
    from conftest import data_dir

    data = data_dir()
    if data is None:
        pytest.skip("history files not found: set SPX_BOT_DATA or place ../shared/data beside the checkout")
    tmp = Path(tmp_path_factory.mktemp("paper"))
    cfg = tmp / "cfg.toml"
    cfg.write_text(f"""
[bot]
log_path = "{tmp}/bot.jsonl"
store_path = "{tmp}/bot.sqlite"
control_socket = "/tmp/spx-paper-{tmp.name}.sock"
console_log = false
[sim]
state_path = "{tmp}/sim.sqlite"
""")
    out = subprocess.run([*BIN, "run", "--config", str(cfg), "--speed", "max", "--start", "2022-03-01", "--for", "4d",
                          "--data", str(data)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return tmp, cfg, data


def report(cfg, data, out, *extra):
    return subprocess.run([*BIN, "report", "--config", str(cfg), "--from", "2022-03-01", "--to", "2022-03-04",
                           "--out", str(out), "--data", str(data), *extra], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_the_store_beside_the_backtest_agrees_to_the_cent_with_the_same_commissions(traded):
    tmp, cfg, data = traded
    run = report(cfg, data, tmp / "ib")
    assert run.returncode == 0, run.stderr
    rep = json.loads((tmp / "ib" / "report.json").read_text())
    assert {"paper", "alvh", "unhedged"} <= set(rep["variants"])
    c = rep["paper_vs_backtest"]
    assert [d["date"] for d in c["days"]] == ["2022-03-01", "2022-03-02", "2022-03-03", "2022-03-04"]
    assert c["total"]["difference"] == 0 and all(d["difference"] == 0 for d in c["days"])
    assert c["total"]["commission_difference"] == 0
    assert all(d["paper_condor"] == d["backtest_condor"] != "none" for d in c["days"])
    assert rep["variants"]["paper"]["hedge"]["hedge_pnl"] == rep["variants"]["alvh"]["hedge"]["hedge_pnl"]
    md = (tmp / "ib" / "report.md").read_text()
    assert "## The bot's own trading beside the backtest" in md and "| paper |" in md
    for chart in ("equity.png", "drawdowns.png", "hedge_layers.png", "vix_tiers.png"):
        assert (tmp / "ib" / chart).stat().st_size > 0


def test_with_flat_commissions_the_largest_differences_are_explained(traded):
    tmp, cfg, data = traded
    run = report(cfg, data, tmp / "flat", "--commissions", "flat")
    assert run.returncode == 0, run.stderr
    c = json.loads((tmp / "flat" / "comparison.json").read_text())
    assert c["total"]["difference"] < 0  # the bot paid IB's $0.65 plus ~$0.47 of fees a contract, the backtest $0.65
    assert len(c["largest"]) == 3 and all(r["explanation"] for r in c["largest"])
    assert abs(sum(d["difference"] for d in c["days"]) - c["total"]["difference"]) < 0.05
    # the same condors every day, so the difference is the commissions, to the cent
    assert all(d["paper_condor"] == d["backtest_condor"] for d in c["days"])
    assert abs(c["total"]["difference"] - c["total"]["commission_difference"]) < 0.05
    assert all("commissions" in r["explanation"] for r in c["largest"] if r["difference"])
    assert all(abs(d["difference"] - d["commission_difference"]) < 0.05 for d in c["days"])


def test_no_closes_in_the_store_is_one_line_exit_2(traded, tmp_path):
    tmp, cfg, data = traded
    run = subprocess.run([*BIN, "report", "--config", str(cfg), "--from", "2021-03-01", "--to", "2021-03-04",
                          "--out", str(tmp_path), "--data", str(data)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 2 and "no session close journaled" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    run = subprocess.run([*BIN, "report", "--config", str(cfg), "--from", "2022-03-04", "--to", "2022-03-01",
                          "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 2 and "after --to" in run.stderr
