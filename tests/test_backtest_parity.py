"""The backtest against the daemon itself (bot/engine.py on SimBroker, as `spx-bot run --speed
max` runs it) on short windows of history (the real files, or the synthetic history when they
are absent: these tests never skip): the same condors, the same hedge trades (to the minute)
and the same net liquidation to the cent, with IB's commission schedule (the backtest's
default) and with the flat one."""

from __future__ import annotations

from datetime import date

import pytest

from bot.config import load_config

from bot.backtest.parity import parity

from conftest import ROOT

pytestmark = pytest.mark.never_skip


COMMISSIONS = pytest.mark.parametrize("commissions", ["ib", "flat"])


@COMMISSIONS
def test_unhedged_condors_match_the_daemon(history_dir, commissions):
    r = parity(load_config(ROOT / "config" / "sim.toml"), history_dir, date(2022, 1, 3), 14, hedge=False,
               commissions=commissions)
    assert r.daemon_condors and r.condor_mismatches() == [], r.summary()
    assert r.daemon_nl == r.backtest_nl


@COMMISSIONS
def test_hedged_condors_match_the_daemon_through_the_2020_crash(history_dir, commissions):
    """Activation, RSI trigger, rolls, buy-backs and monetization (VIX > 40) in two weeks."""
    r = parity(load_config(ROOT / "config" / "sim.toml"), history_dir, date(2020, 2, 20), 14, hedge=True,
               commissions=commissions)
    kinds = {h[1] for h in r.daemon_hedge}
    assert {"bought", "monetized", "bought_back"} <= kinds, kinds
    assert r.condor_mismatches() == [] and r.hedge_mismatches() == [], r.summary()
    assert r.daemon_nl == r.backtest_nl


def test_monthly_preset_matches_the_daemon(history_dir):
    cfg = load_config(ROOT / "config" / "monthly.toml")
    r = parity(cfg, history_dir, date(2018, 1, 22), 21, hedge=True)
    assert r.daemon_condors and r.daemon_hedge
    assert r.condor_mismatches() == [] and r.hedge_mismatches() == [], r.summary()
    assert r.daemon_nl == r.backtest_nl
