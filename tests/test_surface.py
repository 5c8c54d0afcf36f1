"""The SPX surface's parameters: one file, loaded by default, overridable, refused in one line
when bad; the spread model widens with VIX and near expiry; every SPX price reads it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bot import cli, pricing
from bot.surface import FORMAT, Surface, SurfaceError, load_surface, surface_from_doc, write_surface


@pytest.fixture(autouse=True)
def _restore_active_surface():
    """A test that switches the active surface leaves the shipped one behind it."""
    before = pricing.active_surface()
    yield
    pricing.use_surface(before)


def _doc(**changes) -> dict:
    doc = Surface().to_doc()
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        doc[section][key] = value
    return doc


# --------------------------------------------------------------------------- the file


def test_the_shipped_surface_is_the_fitted_default():
    shipped = load_surface(None)
    assert pricing.active_surface() == shipped
    assert shipped.fit.get("by") == "spx-bot calibrate"  # written by the command, not by hand
    # the fit is what the file says: a regime-dependent ATM level, steeper calls, wider spreads with VIX
    assert len(shipped.atm_vix) > 1 and shipped.atm_ratio[0] < shipped.atm_ratio[-1]
    assert shipped.spread_vix_exp > 0 and shipped.spread_near > 0


def test_a_written_surface_reads_back_equal(tmp_path):
    s = Surface().with_values(atm_vix=(12, 20, 40), atm_ratio=(0.8, 0.9, 1.05), call_slope=0.3, spread_vix_exp=0.7,
                              fit={"note": "test"})
    write_surface(s, tmp_path / "s.json")
    back = load_surface(tmp_path / "s.json")
    assert back == s and back.fit == {"note": "test"}


@pytest.mark.parametrize("text, needle", [
    ("{not json", "not JSON"),
    ("[]", "expected a JSON object"),
    (json.dumps({**Surface().to_doc(), "format": "other/9"}), "format must be"),
    (json.dumps({**Surface().to_doc(), "extra": {}}), "unknown section"),
    (json.dumps(_doc(smile__tilt=1.0)), "unknown smile parameter"),
    (json.dumps(_doc(atm__vix=[20, 10], atm__ratio=[0.9, 0.9])), "ascending"),
    (json.dumps(_doc(atm__vix=[10, 20], atm__ratio=[0.9])), "VIX knots but"),
    (json.dumps(_doc(atm__ratio=[7.0])), "outside"),
    (json.dumps(_doc(atm__vix=15)), "list of numbers"),
    (json.dumps(_doc(spread__spread_fraction="wide")), "not a finite number"),
    (json.dumps(_doc(spread__min_spread=0.9, spread__max_spread=0.5)), "above max_spread"),
])
def test_a_bad_surface_file_is_one_line(tmp_path, text, needle):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(SurfaceError) as exc:
        load_surface(path)
    assert needle in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(SurfaceError, match="cannot read"):
        load_surface(tmp_path / "nope.json")


def test_bad_surface_on_the_command_line_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_doc(smile__put_slope=9.0)))
    rc = cli.main(["quote", "--surface", str(bad), "--at", "2021-03-16T10:00", "--symbol", "SPXW",
                   "--expiry", "2021-04-16", "--strike", "3000", "--right", "P"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "put_slope" in err and str(bad) in err, err


def test_bad_surface_in_the_config_exits_2(tmp_path, capsys):
    from conftest import ROOT

    bad = tmp_path / "bad.json"
    bad.write_text("{")
    cfg = tmp_path / "sim.toml"
    text = (ROOT / "config" / "sim.toml").read_text()
    assert "[sim]" in text
    cfg.write_text(text.replace("[sim]", f'[sim]\nsurface = "{bad}"', 1))
    rc = cli.main(["backtest", "--config", str(cfg), "--from", "2021-01-04", "--to", "2021-01-08",
                   "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "not JSON" in err, err


def test_the_surface_option_switches_every_price(tmp_path):
    """--surface (or sim.surface) makes the active surface the file's: the model the exchange,
    the gateway and the backtest price with (they all call pricing.spx_option_model)."""
    flat = Surface().with_values(atm_vix=(20.0,), atm_ratio=(0.6,))
    path = tmp_path / "flat.json"
    write_surface(flat, path)
    cli._use_surface(str(path))
    assert pricing.active_surface() == flat
    out = pricing.spx_option_model(4000.0, 4000.0, 30 / 365, 20.0, np.nan, np.nan, 0.02, False)
    assert float(out["iv"]) == pytest.approx(0.12)


# --------------------------------------------------------------------------- the model's rules


def test_atm_ratio_follows_the_regime_knots_and_the_term_slope():
    s = Surface().with_values(atm_vix=(12.0, 30.0), atm_ratio=(0.8, 1.1), term_beta=0.5)
    assert pricing.atm_level_ratio(12.0, None, s) == pytest.approx(0.8)
    assert pricing.atm_level_ratio(21.0, None, s) == pytest.approx(0.95)
    assert pricing.atm_level_ratio(60.0, None, s) == pytest.approx(1.1)  # flat outside the knots
    assert pricing.atm_level_ratio(8.0, np.nan, s) == pytest.approx(0.8)  # no VIX3M: no term factor
    assert pricing.atm_level_ratio(21.0, 21.0 * np.e, s) == pytest.approx(0.95 * np.exp(0.5))
    assert pricing.spx_atm_vol(30 / 365, 21.0, surface=s) == pytest.approx(0.21 * 0.95)


def test_call_slope_cheapens_otm_calls_and_skew_steepens_at_low_vol():
    S, T = 4000.0, 30 / 365
    flat = Surface().with_values(call_slope=0.1)
    steep = Surface().with_values(call_slope=0.4)
    K = 4200.0
    assert pricing.spx_smile(0.15, S, K, T, surface=steep) < pricing.spx_smile(0.15, S, K, T, surface=flat)
    tilted = Surface().with_values(skew_vol_exp=1.0, skew_ref_vol=0.16)
    low, high = 0.10, 0.40
    k_low, k_high = S * np.exp(-low * np.sqrt(T)), S * np.exp(-high * np.sqrt(T))  # both at m = -1
    assert (pricing.spx_smile(low, S, k_low, T, surface=tilted) / low
            > pricing.spx_smile(high, S, k_high, T, surface=tilted) / high)


SPREADY = Surface().with_values(spread_fraction=0.04, spread_vix_exp=1.0, spread_near=1.0, spread_near_days=2.0,
                                min_spread=0.05, max_spread=2.0)


def _width(mid, vix, days, surface=SPREADY):
    bid, ask = pricing.quote_spread(mid, vix, days / 365.0, surface=surface)
    return float(ask - bid)


def test_spreads_widen_with_vix():
    widths = [_width(20.0, vix, 30) for vix in (12.0, 20.0, 35.0, 60.0)]
    assert widths == sorted(widths) and widths[-1] > 2 * widths[1]
    frac, lo, hi = pricing.spx_spread_terms(40.0, 30 / 365, SPREADY)
    assert hi == pytest.approx(4.0) and lo == 0.05  # the cap widens with VIX too
    assert frac == pytest.approx(0.04 * 2.0 * (1 + np.exp(-15)))


def test_spreads_widen_near_expiry():
    widths = [_width(4.0, 20.0, days) for days in (30, 7, 1, 0.1)]
    assert widths == sorted(widths) and widths[-1] > 1.5 * widths[0]
    frac_far, _, _ = pricing.spx_spread_terms(20.0, 30 / 365, SPREADY)
    frac_now, _, _ = pricing.spx_spread_terms(20.0, 0.0, SPREADY)
    assert frac_far == pytest.approx(0.04, rel=1e-6) and frac_now == pytest.approx(0.08)


def test_quote_without_context_is_the_base_spread_and_decimal_agrees():
    assert pricing.spx_spread_terms(None, None, SPREADY) == (0.04, 0.05, 2.0)
    for mid, vix, T in ((1.23, 35.0, 0.5 / 365), (12.3, 14.0, 20 / 365), (150.0, 70.0, 3 / 365)):
        bid, ask = pricing.quote_spread(mid, vix, T)
        dbid, dask = pricing.quote_spread_decimal(mid, vix, T)
        assert (float(dbid), float(dask)) == pytest.approx((float(bid), float(ask)))
        assert bid <= mid <= ask


def test_the_exchange_quotes_with_the_surface_spread():
    """spx_option_model's bid/ask are quote_spread's at the option's own VIX and T."""
    S, K, T, vix = 4000.0, np.array([3800.0, 4000.0, 4200.0]), 2 / 365, 45.0
    out = pricing.spx_option_model(S, K, T, vix, np.nan, np.nan, 0.03, np.array([False, False, True]))
    bid, ask = pricing.quote_spread(out["mid"], vix, T)
    assert np.array_equal(out["bid"], bid) and np.array_equal(out["ask"], ask)
    calm = pricing.spx_option_model(S, K, T, 12.0, np.nan, np.nan, 0.03, np.array([False, False, True]))
    assert np.all((out["ask"] - out["bid"]) >= (calm["ask"] - calm["bid"]))


def test_surface_values_are_checked():
    with pytest.raises(SurfaceError):
        Surface(put_slope=float("nan"))
    with pytest.raises(SurfaceError):
        Surface(atm_vix=(10.0, 20.0), atm_ratio=(0.9,))
    assert surface_from_doc({"format": FORMAT}) == Surface()  # sections may be left out: the defaults


def test_check_config_loads_the_surface_file(tmp_path):
    from bot.config import check_config
    from conftest import ROOT

    text = (ROOT / "config" / "sim.toml").read_text()
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    write_surface(Surface(), good)
    bad.write_text(json.dumps(_doc(atm__ratio=[0.1])))
    for surface, code in ((good, 0), (bad, 2), ("good.json", 0)):  # relative: to the config's folder
        cfg = tmp_path / "sim.toml"
        cfg.write_text(text.replace("[sim]", f'[sim]\nsurface = "{surface}"', 1))
        got, line = check_config(cfg)
        assert got == code, line
        if code:
            assert "sim.surface" in line and "atm_ratio" in line and "\n" not in line


def test_control_commands_never_read_the_surface(tmp_path, capsys, monkeypatch):
    """status, health, kill, resume and logs price nothing: a broken `sim.surface` must not
    stand between an operator and the kill switch (the pricing commands still refuse it)."""
    from conftest import ROOT

    bad = tmp_path / "bad.json"
    bad.write_text("{")
    cfg = tmp_path / "sim.toml"
    text = (ROOT / "config" / "sim.toml").read_text().replace("../state/", "state/").replace("../logs/", "logs/")
    cfg.write_text(text.replace("[sim]", f'[sim]\nsurface = "{bad}"', 1))
    monkeypatch.delenv("SPX_BOT_CONFIG", raising=False)
    rc = cli.main(["status", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 1 and "surface" not in err, (rc, err)  # 1: no daemon answering; not 2
    assert cli.main(["backtest", "--config", str(cfg), "--from", "2021-01-04", "--to", "2021-01-08",
                     "--out", str(tmp_path / "o"), "--no-progress"]) == 2
