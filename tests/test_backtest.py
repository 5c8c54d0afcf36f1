"""The backtest on short windows: the report, its metrics, one path for every variant and
determinism on real history from ../shared/data (they check facts of 2020 and 2022); one-line
errors on bad data, the pruned chains handed to the pure strategy code giving the choices the
full chains give, and the monthly preset on any history (the synthetic one when the real files
are absent: those never skip)."""

from __future__ import annotations

import csv
import json
import random
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from bot.config import load_config
from strategies import alvh
from strategies import iron_condor as ic

from bot.backtest import run_backtest
from bot.backtest.day import Day
from bot.backtest.runner import RunInputs, World, run_group, variant_specs

from conftest import ROOT, data_dir

real_history = pytest.mark.skipif(data_dir() is None, reason="checks facts of real history: SPX_BOT_DATA or ../shared/data")

CFG = ROOT / "config" / "sim.toml"


def _run(out: Path, start: date, end: date, **kw) -> tuple[int, dict]:
    rc = run_backtest(load_config(CFG), start, end, out, data_dir(), progress=False, **kw)
    rep = json.loads((out / "report.json").read_text()) if rc == 0 else {}
    return rc, rep


@pytest.fixture(scope="module")
def crash(tmp_path_factory):
    out = tmp_path_factory.mktemp("crash2020")
    rc, rep = _run(out, date(2020, 2, 3), date(2020, 4, 30))
    assert rc == 0
    return out, rep


@pytest.fixture(scope="module")
def q1_2022(tmp_path_factory):
    out = tmp_path_factory.mktemp("q1_2022")
    rc, rep = _run(out, date(2022, 1, 3), date(2022, 3, 31), charts=False)
    assert rc == 0
    return out, rep


def _closes(name: str) -> dict[str, tuple[float, float]]:
    with open(data_dir() / name) as f:
        return {r["date"]: (float(r["open"]), float(r["close"])) for r in csv.DictReader(f)}


@real_history
def test_report_files_and_variants(crash):
    out, rep = crash
    for name in ("report.md", "report.json", "equity.csv", "equity.png", "drawdowns.png", "hedge_layers.png",
                 "vix_tiers.png", "timing.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert list(rep["variants"]) == ["unhedged", "alvh", "vxth", "spx"]
    md = (out / "report.md").read_text()
    assert "Verdict on the hedge's claims" in md and "| 2020-03 |" in md


@real_history
def test_metrics_are_sane(crash, q1_2022):
    for _, rep in (crash, q1_2022):
        for name, v in rep["variants"].items():
            assert v["final_nl"] > 0, name
            assert 0 < v["max_drawdown"] < 1, name
            assert v["volatility"] > 0 and v["sharpe"] is not None, name
            assert len(v["worst_months"]) == 3
    _, rep = crash
    spx = _closes("spx_daily.csv")
    expected = 1_000_000 * spx["2020-04-30"][1] / spx["2020-02-03"][0]
    assert rep["variants"]["spx"]["final_nl"] == pytest.approx(expected, rel=1e-5)
    assert 0.25 < rep["variants"]["spx"]["max_drawdown"] < 0.40  # the COVID crash on the S&P 500
    a, x = rep["variants"]["alvh"], rep["variants"]["vxth"]
    assert sum(a["counts"]["hedge_actions"].values()) > 10 and a["counts"]["hedge_activations"] >= 1
    assert x["counts"]["vxth_buys"] >= 2
    assert set(a["hedge"]["hedge_pnl_by_layer"]) == {"front", "mid", "back"}
    for v in (a, x):
        assert v["drawdown_cut_vs_unhedged"] == pytest.approx(
            1 - v["max_drawdown"] / rep["variants"]["unhedged"]["max_drawdown"], rel=1e-4)
    crisis = {c["event"]: c for c in rep["crises"]}
    assert set(crisis) == {"2020-03"} and set(crisis["2020-03"]["variants"]) == {"unhedged", "alvh", "vxth", "spx"}
    claims = [c["claim"] for c in rep["claims"]]
    assert len(claims) == 8 and all(c["verdict"] for c in rep["claims"])
    _, rep22 = q1_2022
    assert rep22["high_vix_2022"]["variants"]["unhedged"]["days"] >= 1  # VIX closed >= 30 in March 2022


@real_history
def test_variants_trade_one_path(crash):
    out, _ = crash
    vix = _closes("vix_daily.csv")
    spx = _closes("spx_daily.csv")
    with open(out / "equity.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["date"] for r in rows][:2] == ["2020-02-03", "2020-02-04"]
    for r in rows:  # every variant's day ends on the data's closes
        assert float(r["vix_close"]) == pytest.approx(vix[r["date"]][1])
        assert float(r["spx_close"]) == pytest.approx(spx[r["date"]][1])
    inputs = RunInputs(load_config(CFG), date(2020, 2, 24), date(2020, 2, 28), data_dir())
    res = run_group(inputs, variant_specs(["unhedged", "alvh", "vxth"]))
    firsts = [sorted(v.stats["condor_rows"])[0][:6] for v in res.variants]
    assert firsts[0] == firsts[1] == firsts[2]  # same day, expiry and strikes in every account


@real_history
def test_same_inputs_give_identical_report_json(q1_2022, tmp_path):
    out, _ = q1_2022
    rc, _ = _run(tmp_path / "again", date(2022, 1, 3), date(2022, 3, 31), charts=False, workers=2)
    assert rc == 0
    assert (tmp_path / "again" / "report.json").read_bytes() == (out / "report.json").read_bytes()


# --------------------------------------------------------------------------- bad data


def _copy_data(tmp: Path, source: Path) -> Path:
    d = tmp / "data"
    d.mkdir()
    for name in ("spx_daily.csv", "vix_daily.csv", "vix_futures_term.csv", "vvix_daily.csv", "tbill_3m_daily.csv"):
        shutil.copy(source / name, d / name)
    return d


def _edit(path: Path, day: str, fn) -> int:
    lines = path.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(day))
    lines[i:i + 1] = fn(lines[i], lines)
    path.write_text("\n".join(lines) + "\n")
    return i + 1


def _bad_run(tmp: Path, d: Path, capsys) -> str:
    rc = run_backtest(load_config(CFG), date(2022, 1, 3), date(2022, 1, 31), tmp / "out", d, progress=False)
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_missing_file_stops_with_one_line(tmp_path, capsys, history_dir):
    d = _copy_data(tmp_path, history_dir)
    (d / "vix_daily.csv").unlink()
    line = _bad_run(tmp_path, d, capsys)
    assert "vix_daily.csv" in line and "missing" in line


def test_nan_row_stops_with_file_and_line(tmp_path, capsys, history_dir):
    d = _copy_data(tmp_path, history_dir)
    n = _edit(d / "spx_daily.csv", "2022-01-12", lambda row, _: [row.rsplit(",", 1)[0] + ",NaN"])
    line = _bad_run(tmp_path, d, capsys)
    assert f"spx_daily.csv line {n}" in line and "close is NaN" in line


def test_date_out_of_order_stops_with_file_and_line(tmp_path, capsys, history_dir):
    d = _copy_data(tmp_path, history_dir)
    n = _edit(d / "vix_daily.csv", "2022-01-12", lambda row, _: ["2022-01-10" + row[10:]])
    line = _bad_run(tmp_path, d, capsys)
    assert f"vix_daily.csv line {n}" in line and "not after" in line


@real_history
def test_window_not_covered(tmp_path, capsys):
    rc = run_backtest(load_config(CFG), date(2003, 1, 2), date(2003, 2, 1), tmp_path / "o", data_dir(), progress=False)
    assert rc == 2
    assert "does not cover" in capsys.readouterr().err


# --------------------------------------------------------------------------- pruned chains


@pytest.fixture(scope="module")
def world(history_dir):
    return World(RunInputs(load_config(CFG), date(2008, 1, 2), date(2025, 12, 31), history_dir))


def _full_snapshot(day: Day, inst, expiry, cfg):
    """The daemon's whole strike band (`iron_condor.strike_band` over the exchange's listing, as
    the engine asks for its entry chain), every row quoted."""
    from bot.domain import ChainRow, MarketSnapshot, OptionSpec, Right
    from bot.sim import listing

    spx, vix = inst.spx, inst.vix
    near, far = ic.strike_band(spx, vix, (day.pricer.spx_expiry_ts(expiry) - inst.ts) / (365 * 86400), cfg)
    puts, calls = ic.band_strikes(listing.spx_strikes(spx), spx, near, far)
    options = ([OptionSpec("SPX", expiry, k, Right.PUT, "SPXW") for k in puts]
               + [OptionSpec("SPX", expiry, k, Right.CALL, "SPXW") for k in calls])
    quotes = day.pricer.quotes(options, inst.t)
    return MarketSnapshot(inst.t, spx, vix, chain=tuple(ChainRow(o, quotes[o.key]) for o in options if o.key in quotes))


@pytest.mark.parametrize("wing_delta", [None, 0.05])
def test_pruned_entry_chain_gives_the_full_chains_decision(world, wing_delta):
    cfg = load_config(CFG).condor
    if wing_delta is not None:
        cfg = cfg.model_copy(update={"wing_delta": wing_delta, "credit_floor": 0.0})
    rng = random.Random(5)
    opened = 0
    for d in rng.sample(world.sessions, 40):
        day = Day(d, world.pricer, world.cal, world.schedule_of(False), False)
        inst = next(i for i in day.instants if "entry" in i.jobs)
        expiry = ic.entry_expiry(day.spx_expiries(inst), d, cfg)
        book = ic.Book((), Decimal(1_000_000))
        pruned = ic.decide_entry(day.entry_snapshot(inst, expiry, cfg), book, cfg, inst.t)
        full = ic.decide_entry(_full_snapshot(day, inst, expiry, cfg), book, cfg, inst.t)
        assert pruned == full, d
        opened += isinstance(full, ic.OpenProposal)
    assert opened >= 5


def test_pruned_hedge_chains_give_the_full_chains_decision(world):
    """alvh.decide on the pruned chains the backtest builds and on whole chains: same targets,
    same actions, for books holding longs (and covered shorts) bought earlier."""
    from bot.backtest.condors import CondorTrader
    from bot.backtest.hedges import AlvhHedge

    cfg = load_config(CFG)
    rng = random.Random(9)
    compared = 0
    for d in rng.sample(world.sessions, 25):
        day = Day(d, world.pricer, world.cal, world.schedule_of(False), False)
        inst = next(i for i in day.instants if "rebalance" in i.jobs)
        hedge = AlvhHedge(cfg.hedge, world.account("t"), CondorTrader(cfg.condor, world.account("c")))
        # a book: the layer calls nearest the target delta of a week ago's chains, a few strikes off
        listed = day.vix_expiries(inst)
        monthly = [e for e, tc in listed if tc == "VIX"]
        lots = []
        for layer in alvh.LAYERS:
            e = alvh.layer_expiry(monthly, d, cfg.hedge.layer(layer))
            chain = day.vix_chain(inst, e, "VIX")
            j = chain.by_delta(cfg.hedge.layer(layer).delta)
            if j is None:
                continue
            j = max(0, min(len(chain) - 1, j + rng.randint(-4, 4)))
            lots.append(alvh.Lot(layer, chain.option(j), rng.randint(2, 12), Decimal("1.00")))
        market = hedge.market(day, inst, tuple(lots), chains=True)
        full_chains = {}
        for purpose, rows in market.chains.items():
            chain = day.vix_chain(inst, rows[0].option.expiry, rows[0].option.trading_class)
            full_chains[purpose] = day.rows(inst, chain, set(range(len(chain))))
        full = alvh.HedgeMarket(market.today, market.vix, full_chains, market.quotes)
        book = alvh.HedgeBook(tuple(lots), Decimal(rng.choice([150_000, 400_000, 900_000])), 20_000.0)
        for vix in (14.0, 18.0, 22.0):  # tiers: writes at low VIX, buys at higher
            signals = alvh.Signals(vix, 50.0, -0.1, 0.0)
            state = alvh.HedgeState(tier=1)
            a = alvh.decide(signals, market, book, state, cfg.hedge, scheduled=True)
            b = alvh.decide(signals, full, book, state, cfg.hedge, scheduled=True)
            assert a == b, (d, vix)
            compared += len(a.actions)
    assert compared > 20


def test_empty_hedge_book_needs_no_chains(world):
    """Nothing held, no condor notional or vega: alvh.decide gives the same decision without
    chains (the backtest then skips building them)."""
    from bot.backtest.condors import CondorTrader
    from bot.backtest.hedges import AlvhHedge

    cfg = load_config(CFG)
    for sizing in ("count", "vega"):
        hcfg = cfg.hedge.model_copy(update={"sizing": sizing})
        for d in random.Random(3).sample(world.sessions, 10):
            day = Day(d, world.pricer, world.cal, world.schedule_of(False), False)
            inst = next(i for i in day.instants if "rebalance" in i.jobs)
            hedge = AlvhHedge(hcfg, world.account("t"), CondorTrader(cfg.condor, world.account("c")))
            with_chains = hedge.market(day, inst, (), chains=True)
            assert with_chains.chains
            book = alvh.HedgeBook((), Decimal(0), 0.0)
            for vix, rsi, macd in ((14.0, 50.0, -0.1), (31.0, 72.0, 0.5)):
                signals = alvh.Signals(vix, rsi, macd, 0.0)
                for state in (alvh.HedgeState(), alvh.HedgeState(tier=2, rsi=60.0)):
                    a = alvh.decide(signals, with_chains, book, state, hcfg, scheduled=True)
                    b = alvh.decide(signals, alvh.HedgeMarket(d, vix), book, state, hcfg, scheduled=True)
                    assert a == b and not a.actions


@pytest.mark.parametrize("start,end", [(date(2019, 1, 2), date(2019, 2, 28)), (date(2020, 2, 18), date(2020, 3, 31))])
def test_hedge_inputs_read_on_demand_give_the_eager_decisions(history_dir, monkeypatch, start, end):
    """The backtest hands alvh.decide its chains and held quotes as mappings priced when read
    (`hedges.OnRead`, `OnReadQuotes`): at every evaluation of a calm window (writes, rolls,
    buy-backs at profit) and of the 2020 crash (activation, buy-backs at the stop), the decision
    equals the one on the same inputs priced up front."""
    from collections import Counter

    decide = alvh.decide
    seen: Counter = Counter()

    def checked(signals, market, book, state, cfg, scheduled=False):
        got = decide(signals, market, book, state, cfg, scheduled)
        eager = alvh.HedgeMarket(market.today, market.vix, dict(market.chains.items()), dict(market.quotes.items()))
        assert decide(signals, eager, book, state, cfg, scheduled) == got, (signals, scheduled)
        seen[got.trigger] += 1
        seen.update(a.kind for a in got.actions)
        return got

    quiet_update = alvh.quiet_update

    def checked_quiet(signals, quotes, lots, state, cfg):
        # a live update the backtest settles without decide: decide on the eager quotes agrees
        got = quiet_update(signals, quotes, lots, state, cfg)
        if got is not None:
            d = decide(signals, alvh.HedgeMarket(signals.session, signals.vix, {}, dict(quotes.items())),
                       alvh.HedgeBook(lots, Decimal(0)), state, cfg)
            assert d.actions == () and d.state == got, signals
            seen["quiet"] += 1
        return got

    monkeypatch.setattr(alvh, "decide", checked)
    monkeypatch.setattr(alvh, "quiet_update", checked_quiet)
    inputs = RunInputs(load_config(CFG), start, end, history_dir)
    run_group(inputs, variant_specs(["alvh"]), world=World(inputs))
    assert seen["schedule"] > 20 and seen["quiet"] > 20
    assert sum(seen[k] for k in (alvh.BUY, alvh.SELL, alvh.WRITE)) > 5


def test_marks_are_the_accounts_net_liquidation_with_interest(history_dir, monkeypatch):
    """The marks the backtest takes from the day's paths (`Variant.nl` for sizing, `_record` for
    the equity series) are `Account.net_liquidation`: positions at the exchange's mid and cash
    with the T-bill interest of every close passed (`cash_at`), over nights with positions
    held and the interest booked."""
    from bot.backtest import variants as V

    nl, record = V.Variant.nl, V.Variant._record
    seen = {"nl": 0, "record": 0}

    def checked_nl(self, day, inst):
        got = nl(self, day, inst)
        assert got == self.account.net_liquidation(inst.t, day.pricer), (day.d, inst)
        seen["nl"] += 1
        return got

    def checked_record(self, day, inst):
        record(self, day, inst)
        assert self.series.nl[-1] == float(self.account.net_liquidation(inst.t, day.pricer)), (day.d, inst)
        seen["record"] += 1

    monkeypatch.setattr(V.Variant, "nl", checked_nl)
    monkeypatch.setattr(V.Variant, "_record", checked_record)
    inputs = RunInputs(load_config(CFG), date(2019, 1, 2), date(2019, 1, 31), history_dir)
    res = run_group(inputs, variant_specs(["alvh", "vxth"]), world=World(inputs))
    assert seen["nl"] > 20 and seen["record"] > 20
    assert all(v.stats["interest"] > 0 for v in res.variants)


# --------------------------------------------------------------------------- monthly preset, short


def test_monthly_preset_window(tmp_path, history_dir):
    rc = run_backtest(load_config(ROOT / "config" / "monthly.toml"), date(2018, 1, 2), date(2018, 3, 30),
                      tmp_path, history_dir, progress=False, variants=("unhedged", "alvh"), charts=False)
    assert rc == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    u = rep["variants"]["unhedged"]
    assert rep["run"]["preset"] == "monthly" and u["counts"]["condors_opened"] >= 3
    assert np.isfinite(u["final_nl"])


def test_the_day_loop_collects_less_often_and_restores_the_collector(history_dir):
    """`runner.few_collections`: during the day loop the objects made before it are frozen and
    the youngest generation is collected less often; afterwards the collector is as it was
    (also after an error inside the loop)."""
    import gc

    inputs = RunInputs(load_config(CFG), date(2019, 1, 2), date(2019, 1, 8), history_dir)
    before = gc.get_threshold()
    seen = []

    def progress(n):
        seen.append((gc.get_threshold()[0], gc.get_freeze_count() > 0))
        if n == 3:
            raise KeyboardInterrupt  # an operator's Ctrl-C in the middle of a run

    with pytest.raises(KeyboardInterrupt):
        run_group(inputs, variant_specs(["unhedged"]), progress, World(inputs))
    assert seen and all(young > before[0] and frozen for young, frozen in seen)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_a_walk_is_shared_by_orders_that_differ_only_in_quantity(world):
    """`Walker.walk` keeps today's walks by legs, worst price, start and close (the accounts of a
    run send the same condor orders at the same instants): an order of another size, or asked
    again, gets what a fresh walker computes; a new day starts afresh."""
    from dataclasses import replace as dc_replace

    from bot.backtest.account import Walker

    cfg = load_config(CFG)
    shared = Walker(cfg.execution, cfg.sim.fill_fraction)
    rng = random.Random(11)
    walked = 0
    for d in rng.sample(world.sessions, 12):
        day = Day(d, world.pricer, world.cal, world.schedule_of(False), False)
        for inst in rng.sample([i for i in day.instants if "monitor" in i.jobs], 3):
            expiry = ic.entry_expiry(day.spx_expiries(inst), d, cfg.condor)
            decision = ic.decide_entry(day.entry_snapshot(inst, expiry, cfg.condor), ic.Book((), Decimal(10**6)),
                                       cfg.condor, inst.t)
            if not isinstance(decision, ic.OpenProposal):
                continue
            order = decision.order
            for qty in (order.quantity, 1, 7, order.quantity):
                fresh = Walker(cfg.execution, cfg.sim.fill_fraction).walk(
                    dc_replace(order, quantity=qty), inst.ts, day.pricer, day.close_ts)
                assert shared.walk(dc_replace(order, quantity=qty), inst.ts, day.pricer, day.close_ts) == fresh
            # a worst acceptable price is part of what a walk depends on (a credit of 100 never fills)
            floor = dc_replace(order, limit_floor=Decimal("-100"))  # binds: the walk cannot fill
            fresh = Walker(cfg.execution, cfg.sim.fill_fraction).walk(floor, inst.ts, day.pricer, day.close_ts)
            assert shared.walk(floor, inst.ts, day.pricer, day.close_ts) == fresh
            walked += 1
        assert all(k[2] >= day.arrays.open_ts - 86400 for k in shared._walks)  # only today's walks kept
    assert walked >= 10
