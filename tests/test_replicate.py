"""`spx-bot replicate` and `spx-bot quote` (issue 12, the measurement half).

- the metrics on series whose answers are known by construction;
- the rules' bookkeeping on a flat market (a PUT roll's account is N x K at expiry);
- `VolModel()` is the simulator's model (same iv and delta as SimExchange.price_options);
- both commands end to end on generated history files (always run) and on the real files
  (skipped only when ../shared/data is absent);
- batch quotes equal single quotes.
"""

from __future__ import annotations

import csv
import json
import math
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bot import cli
from bot import replicate as R
from bot.calendar import NY, UTC, TradingCalendar
from bot.domain import OptionSpec, Right
from bot.quote_cli import Quoter, Request, parse_at, parse_option
from bot.sim.exchange import ExchangeSettings, SimExchange
from bot.sim.market import SyntheticMarket
from conftest import data_dir

CAL = TradingCalendar()


# --------------------------------------------------------------------------- metrics


def _month_ends(n: int, start=date(2011, 1, 31)) -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="ME")


def test_metrics_of_a_known_series():
    """Monthly returns +1%, -2%, +3%, ... on month-end rows: the worst month, the drawdown and
    the annualized return are what arithmetic says."""
    returns = np.array([0.01, -0.02, 0.03, 0.01, -0.05, 0.02, 0.0, 0.01, 0.01, 0.01, 0.01, 0.01, 0.02])
    dates = _month_ends(len(returns) + 1, date(2010, 12, 31))
    level = 100.0 * np.concatenate(([1.0], np.cumprod(1.0 + returns)))
    m = R.series_metrics(dates, level)
    assert m["worst_month"] == pytest.approx(-0.05)
    assert m["worst_month_at"] == "2011-05"
    peak = level[:6].max()
    assert m["max_drawdown"] == pytest.approx(level[5] / peak - 1.0)
    years = (dates[-1] - dates[0]).days / 365.25
    assert m["annualized_return"] == pytest.approx((level[-1] / 100.0) ** (1 / years) - 1)
    got = R.monthly_returns(pd.Series(level, index=dates)).to_numpy()
    assert np.allclose(got, returns)  # the first row is only the base


def test_compare_identical_and_offset_series():
    """Replica = index: correlation 1, tracking error 0. Replica = index + alternating
    +/-1 % a month: tracking error = std(+/-1 %) x sqrt(12)."""
    rng = np.random.default_rng(3)
    r = rng.normal(0.005, 0.03, 48)
    dates = _month_ends(49, date(2009, 12, 31))
    idx = 100 * np.concatenate(([1.0], np.cumprod(1 + r)))
    same = R.compare(pd.DataFrame({"date": dates, "replica": idx, "index": idx}))
    assert same["monthly_correlation"] == pytest.approx(1.0)
    assert same["tracking_error"] == pytest.approx(0.0, abs=1e-12)
    assert same["replica"] == same["index"]
    wiggle = np.where(np.arange(48) % 2 == 0, 0.01, -0.01)
    rep = 100 * np.concatenate(([1.0], np.cumprod(1 + r + wiggle)))
    cmp = R.compare(pd.DataFrame({"date": dates, "replica": rep, "index": idx}))
    assert cmp["months"] == 48
    assert cmp["tracking_error"] == pytest.approx(np.std(wiggle, ddof=1) * math.sqrt(12), rel=1e-9)
    assert 0.9 < cmp["monthly_correlation"] < 1.0


def test_sub_span_starts_from_the_last_row_before_it():
    dates = pd.to_datetime(["2009-12-30", "2009-12-31", "2010-01-04", "2010-06-30", "2019-12-31", "2020-01-02"])
    vals = np.array([99.0, 100.0, 101.0, 110.0, 121.0, 130.0])
    m = R.compare(pd.DataFrame({"date": dates, "replica": vals, "index": vals}), date(2010, 1, 1), date(2019, 12, 31))
    assert (m["from"], m["to"]) == ("2009-12-31", "2019-12-31")
    assert m["index"]["start"] == 100.0 and m["index"]["end"] == 121.0


# --------------------------------------------------------------------------- rules on a flat market


def _flat_inputs(name: str, first: date, last: date, spx=1000.0, vix=20.0, rate=0.03) -> R.MarketInputs:
    rolls = R.roll_dates(CAL, first - timedelta(days=40), last)
    r0 = [r for r in rolls if r <= first][-1]
    days = CAL.sessions_between(r0, last)
    n = len(days)
    dates = np.array(days, dtype="datetime64[D]")
    index = np.full(n, 1000.0)
    return R.MarketInputs(name, dates, np.full(n, spx), np.full(n, spx), np.full(n, vix), np.full(n, np.nan),
                          np.full(n, np.nan), np.full(n, rate), index, days.index(CAL.next_session(first, include=True)),
                          tuple(r for r in rolls if r >= r0))


def test_roll_dates_are_third_fridays_or_the_session_before():
    rolls = R.roll_dates(CAL, date(2020, 1, 1), date(2020, 12, 31))
    assert rolls[:4] == [date(2020, 1, 17), date(2020, 2, 21), date(2020, 3, 20), date(2020, 4, 17)]
    assert date(2021, 1, 15) in rolls  # the month after the last
    # Good Friday 2014-04-18 is a holiday: the roll is Thursday
    assert date(2014, 4, 17) in R.roll_dates(CAL, date(2014, 4, 1), date(2014, 4, 30))


def test_put_roll_account_is_n_times_strike_at_expiry():
    """SPX never moves: each put expires worthless and the account at expiry is N x K
    (full collateralization), i.e. M K / (K e^{-rT} - P) from the roll before."""
    inputs = _flat_inputs("put", date(2021, 2, 1), date(2021, 6, 30))
    res = R.run(inputs, "put")
    trades = res.trades
    assert len(trades) >= 5
    for a, b in zip(trades, trades[1:]):
        K, P, r = a["strikes"][0], a["credit"], a["rate"]  # the premium received (a fill below the mid)
        assert P < a["mid"][0]
        T = ((date.fromisoformat(a["expiry"]) - date.fromisoformat(a["date"])).days - R.MIDDAY_HOURS / 24) / 365
        assert a["T"] == pytest.approx(T)  # from Cboe's 11:45 window to the expiry's open
        assert K == 1000.0 and a["settled"] == 0.0
        cash_days = (date.fromisoformat(b["date"]) - date.fromisoformat(a["date"])).days
        expected = a["account"] * K / (K * math.exp(-r * T) - P) * math.exp(r * (cash_days / 365 - T))
        assert b["account"] == pytest.approx(expected, rel=1e-6)  # mids are kept to 4 decimals
    assert res.level[inputs.first] == pytest.approx(1000.0)
    assert np.all(np.diff(res.level[inputs.first:]) > 0)  # a flat market only pays the seller


def test_cndr_strikes_and_size_follow_the_rules():
    inputs = _flat_inputs("cndr", date(2021, 2, 1), date(2021, 4, 30))
    res = R.run(inputs, "cndr")
    t = res.trades[0]
    lp, sp, sc, lc = t["strikes"]
    assert lp < sp < 1000.0 < sc < lc
    assert t["delta"][0] == pytest.approx(-0.05, abs=0.01) and t["delta"][1] == pytest.approx(-0.20, abs=0.02)
    assert t["delta"][2] == pytest.approx(0.20, abs=0.02) and t["delta"][3] == pytest.approx(0.05, abs=0.01)
    credit = t["mid"][1] + t["mid"][2] - t["mid"][0] - t["mid"][3]
    at_mid = R.run(inputs, "cndr", R.VolModel(fill=0.0)).trades[0]
    assert at_mid["credit"] == pytest.approx(credit, rel=1e-3)
    assert t["credit"] < credit  # the default fill crosses half the spread on each of the four legs
    max_loss = max(sp - lp, lc - sc) - t["credit"]
    assert t["quantity"] * max_loss * 10 == pytest.approx(t["account"])


def test_entry_at_the_open_prices_from_the_open():
    inputs = _flat_inputs("put", date(2021, 2, 1), date(2021, 6, 30))
    opened = R.MarketInputs(**{**inputs.__dict__, "spx_open": np.full(len(inputs.dates), 1010.0),
                               "vix_open": np.full(len(inputs.dates), 30.0)})
    t = R.run(opened, "put", entry="open").trades[1]
    assert t["spx"] == 1010.0 and t["vix"] == 30.0 and t["strikes"] == [1010.0]
    assert t["T"] == pytest.approx((date.fromisoformat(t["expiry"]) - date.fromisoformat(t["date"])).days / 365)
    assert R.run(opened, "put", entry="close").trades[1]["spx"] == 1000.0
    midday = R.run(opened, "put").trades[1]  # the default: Cboe's window, 35% of the way open -> close
    assert midday["entry"] == "midday" and midday["spx"] == pytest.approx(1010.0 + R.MIDDAY_SHARE * (1000.0 - 1010.0))
    with pytest.raises(R.ReplicationError):
        R.run(inputs, "put", entry="noon")


def test_a_wider_fill_or_a_lower_atm_ratio_pays_the_seller_less():
    inputs = _flat_inputs("put", date(2021, 2, 1), date(2021, 12, 31))
    base = R.run(inputs, "put").level[-1]
    assert R.run(inputs, "put", R.VolModel(fill=1.0)).level[-1] < base
    assert R.run(inputs, "put", R.VolModel(atm_ratio=0.7)).level[-1] < base
    with pytest.raises(R.ReplicationError):
        R.VolModel(smile={"no_such": 1.0})


def test_objective_is_a_pure_function_of_the_parameters():
    """What a calibration needs: the same answer for the same parameters, inputs untouched."""
    inputs = _flat_inputs("cndr", date(2021, 2, 1), date(2021, 8, 31))
    before = inputs.spx_close.copy()
    a = R.objective(inputs, "cndr", R.VolModel(atm_ratio=0.85))
    b = R.objective(inputs, "cndr", R.VolModel(atm_ratio=0.85))
    assert json.dumps(a) == json.dumps(b) and set(a) == {"full", "2010-2019"}  # (NaN != NaN)
    assert np.array_equal(inputs.spx_close, before)
    assert R.objective(inputs, "cndr")["full"]["replica"] != a["full"]["replica"]


def test_implied_put_vols_recover_the_model_from_its_own_replica():
    """Feed the replica back as the 'index': the premiums backed out of its levels are the
    model's mids, and their implied vols the model's (flat smile at the money)."""
    inputs = _flat_inputs("put", date(2021, 2, 1), date(2021, 8, 31), vix=25.0)
    # fills at the mid and entries at the close (where the day's mark is): the premium is the model's mid
    res = R.run(inputs, "put", R.VolModel(fill=0.0), entry="close")
    mirror = R.MarketInputs(**{**inputs.__dict__, "index_level": res.level.copy()})
    implied = R.implied_put_vols(R.Replication(mirror, res.level, res.trades))
    assert len(implied) >= 5
    assert np.allclose(implied["premium"], implied["model_mid"], atol=2e-3)  # mids kept to 4 decimals
    assert np.allclose(implied["implied_iv"], implied["model_iv"], atol=2e-4)
    buckets = R.by_vix(implied)
    assert buckets[0]["vix"] == "20-25" and buckets[0]["implied_ratio"] == pytest.approx(buckets[0]["model_ratio"], abs=1e-3)


def test_default_vol_model_is_the_simulators():
    """Same iv and delta as SimExchange.price_options for the same state, strike and expiry,
    and its bid/ask come from the same mid."""
    from bot import pricing

    market = SyntheticMarket(CAL, seed=3, start=date(2022, 3, 1))
    ex = SimExchange(market, CAL, ExchangeSettings(), ":memory:")
    t = datetime(2022, 3, 2, 15, 0, tzinfo=UTC)
    expiry = date(2022, 3, 18)
    state = market.state_at(t)
    strikes = [round(state.spx * f / 5) * 5 for f in (0.85, 0.95, 1.0, 1.05, 1.1)]
    opts = [OptionSpec("SPX", expiry, Decimal(k), right) for k in strikes for right in (Right.PUT, Right.CALL)]
    quotes = ex.price_options(opts, t)
    T = (CAL.spxw_expiry_time(expiry) - t).total_seconds() / (365 * 24 * 3600)
    model = R.VolModel()
    atm = model.atm(T, state.vix, state.vix9d, state.vix3m)
    K = np.array([float(o.strike) for o in opts])
    calls = np.array([o.right is Right.CALL for o in opts])
    mid, delta, iv = model.price(state.spx, K, T, atm, state.rate, calls)
    bid, ask = pricing.quote_spread(mid, state.vix, T)  # the spread at the option's VIX and time to expiry
    for i, o in enumerate(opts):
        q = quotes[o.key]
        assert q.greeks.iv == pytest.approx(iv[i], rel=1e-12)
        assert q.greeks.delta == pytest.approx(delta[i], rel=1e-12)
        assert float(q.bid) == pytest.approx(bid[i], abs=1e-9) and float(q.ask) == pytest.approx(ask[i], abs=1e-9)


# --------------------------------------------------------------------------- generated history files


def write_history(folder: Path, first: date, last: date, seed: int = 5) -> None:
    """Plausible daily files (SPX, VIX, VIX futures, T-bill, CNDR, PUT) for first..last."""
    rng = np.random.default_rng(seed)
    days = CAL.sessions_between(first - timedelta(days=60), last)
    n = len(days)
    spx = 3000 * np.exp(np.cumsum(rng.normal(0.0003, 0.01, n)))
    vix = np.clip(18 * np.exp(np.cumsum(rng.normal(0, 0.05, n)) * 0.3), 10, 60)
    opens = spx * np.exp(rng.normal(0, 0.003, n))
    hi, lo = np.maximum(spx, opens) * 1.004, np.minimum(spx, opens) * 0.996
    with open(folder / "spx_daily.csv", "w") as fh:
        fh.write("date,open,high,low,close\n")
        for d, o, h, l, c in zip(days, opens, hi, lo, spx):
            fh.write(f"{d},{o:.2f},{h:.2f},{l:.2f},{c:.2f}\n")
    with open(folder / "vix_daily.csv", "w") as fh:
        fh.write("date,open,high,low,close\n")
        for d, v in zip(days, vix):
            fh.write(f"{d},{v:.2f},{v * 1.05:.2f},{v * 0.95:.2f},{v:.2f}\n")
    expiries = sorted({CAL.vix_monthly_expiry(y, m) for y in range(first.year - 1, last.year + 2) for m in range(1, 13)})
    with open(folder / "vix_futures_term.csv", "w") as fh:
        fh.write("date," + ",".join(f"vx{i}" for i in range(1, 9)) + ",vx1_expiry,vx2_expiry,source\n")
        for d, v in zip(days, vix):
            e1, e2 = [e for e in expiries if e > d][:2]
            fh.write(f"{d},{v + 1:.3f},{v + 1.8:.3f}" + ",," * 3 + f",{e1},{e2},test\n")
    with open(folder / "tbill_3m_daily.csv", "w") as fh:
        fh.write("date,rate_pct\n" + "".join(f"{d},1.50\n" for d in days))
    for name, drift in (("cboe_put_daily.csv", 0.0003), ("cboe_cndr_daily.csv", 0.0001)):
        level = 1000 * np.exp(np.cumsum(rng.normal(drift, 0.004, n)))
        with open(folder / name, "w") as fh:
            fh.write("date,close\n" + "".join(f"{d},{x:.6f}\n" for d, x in zip(days, level)))


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gen")
    write_history(folder, date(2021, 1, 4), date(2021, 9, 30))
    return folder


@pytest.mark.parametrize("index", ["cndr", "put"])
def test_replicate_command_on_generated_files(generated, tmp_path, capsys, index):
    out = tmp_path / "out"
    rc = cli.main(["replicate", index, "--from", "2021-02-01", "--to", "2021-09-30", "--data", str(generated),
                   "--out", str(out), *(["--entry", "open"] if index == "put" else [])])
    assert rc == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(out / "replication.csv")))
    assert list(rows[0]) == ["date", "replica", "index"]
    assert rows[0]["date"] == "2021-02-01" and rows[0]["replica"] == rows[0]["index"]
    assert rows[-1]["date"] == "2021-09-30"
    doc = json.loads((out / "replication.json").read_text())
    for span in ("full", "2010-2019"):
        assert span in doc["metrics"]
    full = doc["metrics"]["full"]
    for key in ("monthly_correlation", "tracking_error"):
        assert math.isfinite(full[key])
    for who in ("replica", "index"):
        assert {"annualized_return", "max_drawdown", "worst_month"} <= set(full[who])
    assert (out / "replication.png").stat().st_size > 10_000
    assert "replica" in capsys.readouterr().out
    assert (out / "implied_atm.csv").is_file() == (index == "put")
    gap = doc["cycle_gap"]
    assert sum(b["cycles"] for b in gap["by_vix"]) == sum(b["cycles"] for b in gap["by_spx_move"]) >= 6
    for b in gap["by_vix"]:
        assert b["gap"] == pytest.approx(b["replica"] - b["index"])


@pytest.mark.parametrize("argv, needle", [
    (["replicate", "put", "--from", "2021-06-01", "--to", "2021-03-01"], "after"),
    (["replicate", "put", "--from", "2015-01-01", "--to", "2015-03-01"], "no common days"),
    (["replicate", "bfly"], "invalid choice"),
])
def test_replicate_bad_arguments_are_one_line(generated, tmp_path, capsys, argv, needle):
    rc = cli.main([*argv, "--data", str(generated), "--out", str(tmp_path / "o")]) if argv[1] != "bfly" else None
    if rc is None:
        with pytest.raises(SystemExit) as exc:
            cli.main([*argv, "--data", str(generated)])
        rc = exc.value.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_a_sparse_index_file_is_refused(tmp_path, capsys, generated):
    """PUT's file has 8 rows before 2007: metrics on rows years apart would mean nothing."""
    folder = tmp_path / "d"
    folder.mkdir()
    for f in generated.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    lines = (folder / "cboe_put_daily.csv").read_text().splitlines()
    (folder / "cboe_put_daily.csv").write_text("\n".join(lines[:1] + lines[1::10]) + "\n")
    assert cli.main(["replicate", "put", "--from", "2021-02-01", "--to", "2021-09-30", "--data", str(folder),
                     "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "too sparse" in err and len(err.splitlines()) == 1


def test_replicate_without_the_index_file_is_one_line(tmp_path, capsys, generated):
    folder = tmp_path / "d"
    folder.mkdir()
    for f in generated.iterdir():
        if f.name != "cboe_cndr_daily.csv":
            (folder / f.name).write_bytes(f.read_bytes())
    assert cli.main(["replicate", "cndr", "--data", str(folder), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cboe_cndr_daily.csv: file not found" in err and len(err.splitlines()) == 1


BATCH = [("2021-03-16T10:00", "SPXW", "2021-04-16", "{atm}", "P"),
         ("2021-03-16T10:00", "SPXW", "2021-04-16", "{otm}", "P"),
         ("2021-03-16T10:00", "SPX", "2021-04-16", "{atm}", "C"),
         ("2021-05-03T15:30", "SPXW", "2021-05-03", "{atm}", "C"),
         ("2021-05-03T15:30", "VIX", "2021-05-19", "25", "C"),
         ("2021-05-03T15:30", "VIXW", "2021-05-26", "20", "P"),
         ("2021-05-03T15:30", "SPXW", "2021-05-01", "{atm}", "C")]  # expired: empty


def _batch_rows(folder: Path) -> list[tuple]:
    spx = pd.read_csv(folder / "spx_daily.csv").set_index("date")["close"]
    out = []
    for at, sym, exp, k, r in BATCH:
        s = float(spx[at[:10]])
        out.append((at, sym, exp, k.format(atm=round(s / 5) * 5, otm=round(s * 0.9 / 5) * 5), r))
    return out


def _check_batch_equals_singles(folder: Path, tmp_path: Path, capsys) -> list[dict]:
    rows = _batch_rows(folder)
    src = tmp_path / "in.csv"
    src.write_text("at,symbol,expiry,strike,right\n" + "".join(",".join(r) + "\n" for r in rows))
    dst = tmp_path / "out.csv"
    assert cli.main(["quote", "--batch", str(src), "--out", str(dst), "--data", str(folder)]) == 0
    got = list(csv.DictReader(open(dst)))
    assert list(got[0]) == ["at", "symbol", "expiry", "strike", "right", "bid", "ask", "mid", "iv", "delta"]
    capsys.readouterr()
    for row, (at, sym, exp, k, r) in zip(got, rows):
        assert (row["at"], row["symbol"], row["expiry"], row["strike"], row["right"]) == (at, sym, exp, k, r)
        rc = cli.main(["quote", "--at", at, "--symbol", sym, "--expiry", exp, "--strike", k, "--right", r,
                       "--json", "--data", str(folder)])
        if row["bid"] == "":
            assert rc == 2
            capsys.readouterr()
            continue
        assert rc == 0
        one = json.loads(capsys.readouterr().out)
        for key in ("bid", "ask", "mid", "iv", "delta"):
            assert float(row[key]) == pytest.approx(one[key], abs=5e-4), (row, one)
        assert float(row["bid"]) <= float(row["mid"]) <= float(row["ask"])
    return got


def test_quote_batch_equals_single_quotes_on_generated_files(generated, tmp_path, capsys):
    got = _check_batch_equals_singles(generated, tmp_path, capsys)
    assert got[-1]["bid"] == ""  # the expired row
    assert sum(r["bid"] != "" for r in got) >= 5
    put, otm = got[0], got[1]
    assert float(put["delta"]) < 0 and float(otm["iv"]) > float(put["iv"])  # the put skew


@pytest.mark.parametrize("argv, needle", [
    (["quote", "--at", "2021-03-16T10:00", "--symbol", "SPXW", "--expiry", "2021-04-16", "--right", "P"], "--strike"),
    (["quote", "--at", "2021-03-16T25:00", "--symbol", "SPXW", "--expiry", "2021-04-16", "--strike", "3000",
      "--right", "P"], "bad time"),
    (["quote", "--at", "2030-03-16T10:00", "--symbol", "SPXW", "--expiry", "2030-04-16", "--strike", "3000",
      "--right", "P"], "does not cover"),
    (["quote", "--batch", "/nonexistent/in.csv"], "cannot read"),
])
def test_quote_bad_arguments_are_one_line(generated, capsys, argv, needle):
    rc = cli.main([*argv, "--data", str(generated)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_quote_bad_seed_is_refused_by_the_parser(generated, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["quote", "--at", "2021-03-16T10:00", "--symbol", "SPXW", "--expiry", "2021-04-16", "--strike",
                  "3000", "--right", "P", "--seed", "-1", "--data", str(generated)])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "bad seed" in err and len(err.splitlines()) == 1


def test_quote_batch_bad_row_names_the_line(generated, tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text("at,symbol,expiry,strike,right\n2021-03-16T10:00,SPXW,2021-04-16,3000,P\n"
                   "2021-03-16T10:00,SPY,2021-04-16,3000,P\n")
    assert cli.main(["quote", "--batch", str(src), "--data", str(generated)]) == 2
    err = capsys.readouterr().err.strip()
    assert "line 3" in err and "SPY" in err


# --------------------------------------------------------------------------- the real files

REAL = data_dir()
real = pytest.mark.skipif(REAL is None or not (REAL / "cboe_put_daily.csv").is_file(),
                          reason="../shared/data (with the Cboe index files) is absent")


@real
@pytest.mark.parametrize("index", ["put", "cndr"])
def test_replicate_command_on_a_short_real_span(tmp_path, capsys, index):
    out = tmp_path / index
    assert cli.main(["replicate", index, "--from", "2017-01-03", "--to", "2019-12-31", "--data", str(REAL),
                     "--out", str(out)]) == 0
    doc = json.loads((out / "replication.json").read_text())
    full = doc["metrics"]["full"]
    assert doc["from"] == "2017-01-03" and doc["to"] == "2019-12-31" and doc["rolls"] == 37
    assert full["months"] == 36
    # the same market moves drive both: their months go together
    assert full["monthly_correlation"] > (0.9 if index == "put" else 0.6)
    frame = pd.read_csv(out / "replication.csv")
    assert frame["replica"].iloc[0] == frame["index"].iloc[0]


@real
def test_quote_on_real_history_matches_the_simulators_market(tmp_path, capsys):
    _check_batch_equals_singles_real = [("2020-03-16T10:00", "SPXW", "2020-04-17", "2400", "P"),
                                        ("2020-03-16T10:00", "SPXW", "2020-04-17", "2800", "C"),
                                        ("2020-03-16T10:00", "VIX", "2020-04-15", "60", "C")]
    quoter = Quoter(REAL, date(2020, 3, 16), date(2020, 3, 16))
    reqs = [Request(parse_at(a), parse_option(s, e, k, r)) for a, s, e, k, r in _check_batch_equals_singles_real]
    many = quoter.quote_many(reqs)
    for req, q in zip(reqs, many):
        one = quoter.quote_many([req])[0]
        assert q == one and q is not None
    assert reqs[0].at == datetime(2020, 3, 16, 10, 0, tzinfo=NY).astimezone(UTC)
    state = quoter.market.state_at(reqs[0].at)
    assert 2000 < state.spx < 2800 and 50 < state.vix < 90
    assert many[0].greeks.delta < 0 < many[1].greeks.delta
