"""The backtest over several seeds: median and range of each headline figure, the claims judged
on the median with a note when the seeds fall on both sides, the sizing cap's statistics, the
time-weighted hedge cost, the seed arguments; and a short multi-seed run whose seeds give what
one-seed runs give, whatever the number of processes."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pytest

from bot import cli
from bot.backtest import metrics as M
from bot.backtest import report as R
from bot.backtest import report_md as MD
from bot.backtest import run_backtest
from bot.backtest.seeds import parse_seed_list, seeds_from
from bot.config import load_config

from conftest import ROOT

CFG = ROOT / "config" / "sim.toml"


def _series(dates, nl, start=100.0) -> M.Series:
    return M.Series(np.array(dates, dtype="datetime64[D]"), np.asarray(nl, dtype=float), start)


# --------------------------------------------------------------------------- median and range


def test_spread_is_median_and_range_leaving_out_unmeasured():
    assert M.spread([0.3, 0.1, None, 0.2, 0.5]) == {"median": 0.25, "min": 0.1, "max": 0.5, "n": 4}
    assert M.spread([None, None]) == {"median": None, "min": None, "max": None, "n": 0}
    assert M.spread([2.0]) == {"median": 2.0, "min": 2.0, "max": 2.0, "n": 1}


def _report(cut: float, dd_u: float, cost: float, high_vix_cut: float | None) -> dict:
    """A one-seed report with what headline() and seed_claims() read."""
    variants = {
        "unhedged": {"kind": "unhedged", "sweep": False, "cagr": 0.05, "max_drawdown": dd_u,
                     "sizing": {"at_cap_share": 0.5, "risk_pct_nl_median": 10.0}},
        "alvh": {"kind": "alvh", "sweep": False, "cagr": 0.04, "max_drawdown": dd_u * (1 - cut),
                 "drawdown_cut_vs_unhedged": cut,
                 "hedge": {"hedge_pnl": -1000.0 * cost, "annual_cost_pct_nl": cost, "time_weighted_cost_pct": cost / 2,
                           "spike_days": {"ratio_of_sums": 0.5}}},
        "spx": {"kind": "spx", "sweep": False, "cagr": 0.07, "max_drawdown": 0.5, "drawdown_cut_vs_unhedged": None},
    }
    hv = {"variants": {"unhedged": {"max_drawdown": 0.2}, "alvh": {"max_drawdown": 0.1}},
          "cut": {"alvh": high_vix_cut}}
    return {"variants": variants, "high_vix_2022": hv, "claims": R.claims(variants, [], hv)}


def test_headline_median_and_range_per_variant():
    reps = [_report(0.30, 0.40, 1.5, 0.5), _report(0.10, 0.60, 2.5, 0.2), _report(0.20, 0.80, 0.5, None)]
    sm = R.seeds_summary([7, 8, 9], reps)
    a, u = sm["variants"]["alvh"], sm["variants"]["unhedged"]
    assert a["drawdown_cut"] == pytest.approx({"median": 0.20, "min": 0.10, "max": 0.30, "n": 3})
    assert u["max_drawdown"] == pytest.approx({"median": 0.60, "min": 0.40, "max": 0.80, "n": 3})
    assert a["hedge_cost_dollar_weighted"] == pytest.approx({"median": 1.5, "min": 0.5, "max": 2.5, "n": 3})
    assert a["hedge_cost_time_weighted"]["median"] == pytest.approx(0.75)
    assert a["high_vix_2022_cut"] == pytest.approx({"median": 0.35, "min": 0.2, "max": 0.5, "n": 2})
    assert u["drawdown_cut"]["n"] == 0 and sm["variants"]["spx"]["drawdown_cut"]["n"] == 0
    assert [p["seed"] for p in sm["per_seed"]] == [7, 8, 9]
    assert sm["per_seed"][1]["alvh"]["drawdown_cut"] == 0.10


def _claim(sm: dict, start: str) -> dict:
    return next(c for c in sm["claims"] if c["claim"].startswith(start))


def test_claims_judged_on_the_median_and_straddle_noted():
    # cuts 0.30, 0.38, 0.45: the median 0.38 is within 35-40%, the seeds fall on all three sides
    sm = R.seeds_summary([1, 2, 3], [_report(c, 0.5, 1.5, 0.4) for c in (0.30, 0.38, 0.45)])
    dd = _claim(sm, "35-40% lower maximum drawdown")
    assert dd["alvh"]["median"] == pytest.approx(0.38)
    assert dd["verdict"] == "yes: within the claim" and dd["straddles"]
    assert dd["seed_verdicts"] == {"NO": 1, "yes: within the claim": 1, "better than claimed": 1}
    # costs 1.5% in every seed: within, no straddle
    cost = _claim(sm, "hedge cost of 1-2% a year (article 1)")
    assert cost["verdict"] == "yes: within the claim" and not cost["straddles"]
    # all below the claim: NO on the median, no straddle
    sm = R.seeds_summary([1, 2], [_report(c, 0.5, 3.0, 0.4) for c in (0.05, 0.10)])
    assert _claim(sm, "35-40%")["verdict"] == "NO" and not _claim(sm, "35-40%")["straddles"]
    assert _claim(sm, "hedge cost of 1-2% a year (article 1)")["verdict"] == "NO: costlier than claimed"
    md = "\n".join(MD.seeds_markdown(R.seeds_summary([1, 2, 3], [_report(c, 0.5, 1.5, 0.4) for c in (0.30, 0.38, 0.45)])))
    assert "the range straddles the claim" in md and "38.0% (30.0% to 45.0%)" in md


def test_one_rule_judges_a_seed_and_a_median():
    assert R.judge(0.37, 0.35, 0.40, "higher") == "yes: within the claim"
    assert R.judge(0.20, 0.35, 0.40, "higher") == "NO"
    assert R.judge(0.50, 0.35, 0.40, "higher") == "better than claimed"
    assert R.judge(0.005, 0.01, 0.02, "cost") == "cheaper than claimed"
    assert R.judge(0.05, 0.08, 0.12, "lower") == "better than claimed"
    assert R.judge(None, 0, 1, "higher", "not testable") == "not testable"
    rep = _report(0.2, 0.5, 1.5, 0.4)
    for c in rep["claims"]:  # every seed's verdict is the rule applied to its own value
        if "better" in c:
            assert c["verdict"] == R.judge(c["alvh"], *c["claimed"], c["better"], c["missing"])


# --------------------------------------------------------------------------- hedge cost, time-weighted


def test_time_weighted_cost_is_the_mean_annual_return_gap():
    # two whole years: unhedged +20% then +10%; hedged +15% then +10%; gap 5% and 0% -> 2.5%/yr
    dates = ["2010-01-04", "2010-12-31", "2011-01-03", "2011-12-30"]
    base = _series(dates, [110, 120, 125, 132])
    hedged = _series(dates, [105, 115, 120, 126.5])
    gap = M.return_gap(base, hedged)
    assert [g["year"] for g in gap["by_year"]] == [2010, 2011]
    assert [g["gap"] for g in gap["by_year"]] == pytest.approx([0.05, 0.0])
    assert gap["mean_annual_gap"] == pytest.approx(0.025)
    # the dollar figure differs: a year's gap counts the same whatever the account's size
    big = _series(dates, [110, 120, 1200, 1320])
    big_h = _series(dates, [105, 115, 1150, 1265])
    assert M.return_gap(big, big_h)["mean_annual_gap"] == pytest.approx(0.025)


def test_a_part_year_counts_for_its_part():
    # 2010-07-01..2010-12-31 (half a year) and 2011 whole: gaps 1% and 2% over 1.5 years -> 2%/yr
    dates = ["2010-07-01", "2010-12-31", "2011-01-03", "2011-12-31"]
    base = _series(dates, [100, 101, 101, 101 * 1.02])
    hedged = _series(dates, [100, 100, 100, 100])
    _, _, fracs = M.annual_returns(base)
    assert fracs == pytest.approx([184 / 365, 1.0])
    assert M.return_gap(base, hedged)["mean_annual_gap"] == pytest.approx((0.01 + 0.02) / (1 + 184 / 365))


# --------------------------------------------------------------------------- sizing


def test_sizing_counts_entries_at_the_cap_and_risk_at_entry_by_year():
    dates = ["2012-06-01", "2012-06-04", "2013-06-03", "2013-06-04"]
    s = _series(dates, [1_000_000, 2_000_000, 4_000_000, 4_000_000], start=1_000_000)
    opened = np.array(["2012-06-01", "2012-06-04", "2013-06-03", "2013-06-04"], dtype="datetime64[D]")
    qty = np.array([95, 200, 200, 200])
    max_loss = qty * 2_000.0  # per condor
    z = M.sizing(s, opened, max_loss, qty, cap=200)
    assert (z["entries"], z["at_cap"], z["at_cap_share"]) == (4, 3, 0.75)
    y12, y13 = z["by_year"]
    # risk at entry: over the net liq at the close before (the start for the first session)
    assert (y12["year"], y12["entries"], y12["at_cap"]) == (2012, 2, 1)
    assert y12["risk_pct_nl_median"] == pytest.approx((19.0 + 40.0) / 2)
    assert y12["risk_pct_nl_max"] == pytest.approx(40.0)
    assert (y13["at_cap"], y13["risk_pct_nl_median"]) == (2, pytest.approx((20.0 + 10.0) / 2))
    none = M.sizing(s, opened, max_loss, qty, cap=None)  # no cap: none at it
    assert (none["cap"], none["at_cap"], none["at_cap_share"]) == (None, 0, 0.0)


# --------------------------------------------------------------------------- arguments


def test_seed_arguments():
    assert seeds_from(7, 3) == [7, 8, 9] and seeds_from(7, 1) == [7]
    assert parse_seed_list("9, 7,8") == [9, 7, 8]
    for bad in ("", "7,,8", "x", "-1", "7,7", str(2**32)):
        with pytest.raises(ValueError):
            parse_seed_list(bad)
    with pytest.raises(ValueError):
        seeds_from(7, 0)
    with pytest.raises(ValueError):
        seeds_from(2**32 - 1, 2)


@pytest.mark.parametrize("argv", [
    ["backtest", "--seeds", "0"], ["backtest", "--seeds", "x"], ["backtest", "--seeds", "-3"],
    ["backtest", "--seeds", "100000"], ["backtest", "--seed-list", "7,7"], ["backtest", "--seed-list", "a,b"],
    ["backtest", "--seeds", "2", "--seed-list", "3,4"], ["backtest", "--progress", "--no-progress"],
])
def test_bad_seed_arguments_are_one_line_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_seeds_past_the_seed_range_are_one_line_exit_2(tmp_path, capsys):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text((CFG.read_text()).replace("seed = 7 ", f"seed = {2**32 - 2} "))
    assert cli.main(["backtest", "--config", str(cfg), "--seeds", "3", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "seeds" in err, err


# --------------------------------------------------------------------------- a short run


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory, history_dir):
    out = tmp_path_factory.mktemp("seeds")
    rc = run_backtest(load_config(CFG), date(2018, 1, 29), date(2018, 2, 16), out, history_dir, progress=False,
                      charts=False, seeds=[8, 7], workers=2)
    assert rc == 0
    return out, json.loads((out / "report.json").read_text())


def test_each_seed_of_a_run_is_its_one_seed_run(two_seeds, tmp_path, history_dir):
    out, rep = two_seeds
    sm = rep["seeds"]
    assert sm["seeds"] == [8, 7] and rep["run"]["seed"] == 8  # the detail is the first seed's
    for seed, row in zip(sm["seeds"], sm["per_seed"]):
        rc = run_backtest(load_config(CFG), date(2018, 1, 29), date(2018, 2, 16), tmp_path / str(seed), history_dir,
                          progress=False, charts=False, seeds=[seed])
        assert rc == 0
        one = json.loads((tmp_path / str(seed) / "report.json").read_text())
        assert "seeds" not in one and one["run"]["seed"] == seed
        assert {k: v for k, v in row.items() if k != "seed"} == R._r(R.headline(one))
    for name, figures in sm["variants"].items():
        for key, x in figures.items():
            if x["n"]:
                assert x["min"] <= x["median"] <= x["max"], (name, key)
    md = (out / "report.md").read_text()
    assert "## Over 2 seeds: median (min to max)" in md and "# Seed 8 in detail" in md and "## Sizing" in md
    timing = json.loads((out / "timing.json").read_text())
    assert timing["seeds"] == 2 and timing["cpu_s"] > 0


def test_the_processes_do_not_change_the_report(two_seeds, tmp_path, history_dir):
    out, _ = two_seeds
    rc = run_backtest(load_config(CFG), date(2018, 1, 29), date(2018, 2, 16), tmp_path, history_dir, progress=False,
                      charts=False, seeds=[8, 7], workers=1)
    assert rc == 0
    assert (tmp_path / "report.json").read_bytes() == (out / "report.json").read_bytes()


def test_sizing_reported_and_uncapped_by_default(two_seeds):
    _, rep = two_seeds
    z = rep["variants"]["unhedged"]["sizing"]
    assert z["cap"] is None and z["at_cap"] == 0 and z["entries"] >= 1
    # max_risk_fraction 0.20 of the net liq at the entry (15:30); measured on the close before
    assert 15.0 < z["risk_pct_nl_median"] < 25.0


def test_sizing_by_year_over_seeds(two_seeds):
    _, rep = two_seeds
    rows = rep["seeds"]["sizing_by_year"]["unhedged"]
    assert [r["year"] for r in rows] == [2018]
    per_seed = [15.0 < x < 25.0 for x in (rows[0]["risk_pct_nl_median"]["min"], rows[0]["risk_pct_nl_median"]["max"])]
    assert all(per_seed) and rows[0]["at_cap_share"]["max"] == 0.0


def test_a_config_cap_is_counted(tmp_path, history_dir):
    cfg = load_config(CFG).with_overrides(**{"condor.max_quantity": 1})
    rc = run_backtest(cfg, date(2018, 1, 29), date(2018, 2, 9), tmp_path, history_dir, progress=False, charts=False,
                      variants=("unhedged",), seeds=[7])
    assert rc == 0
    z = json.loads((tmp_path / "report.json").read_text())["variants"]["unhedged"]["sizing"]
    assert z["cap"] == 1 and z["at_cap"] == z["entries"] >= 1 and z["at_cap_share"] == 1.0


def test_a_window_not_covered_stops_with_one_line_over_seeds(tmp_path, capsys, history_dir):
    rc = run_backtest(load_config(CFG), date(1990, 1, 2), date(1990, 2, 1), tmp_path, history_dir, progress=False,
                      charts=False, seeds=[7, 8], workers=2)
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err


def test_progress_bar_only_on_a_terminal_or_when_asked(tmp_path, history_dir):
    import subprocess
    import sys

    def run(*extra):
        return subprocess.run([sys.executable, "-m", "bot.cli", "backtest", "--config", str(CFG), "--from", "2018-01-29",
                               "--to", "2018-02-02", "--seeds", "2", "--workers", "1", "--data", str(history_dir),
                               "--out", str(tmp_path / ("o" + "".join(extra))), *extra],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)

    quiet = run()  # stderr is a pipe here, not a terminal: no bar
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert "2 seeds" in quiet.stdout
    shown = run("--progress")
    assert shown.returncode == 0 and "backtest x2 seeds" in shown.stderr
