"""`data check`, `data fetch` and Cboe's own file formats, on small files written here (no
network: the downloader is given a fake fetch, and an offline one)."""

from __future__ import annotations

import io
import json
import shutil
from datetime import date

import pytest

from bot.data import DataError, load_history
from bot.datacheck import (
    CBOE_INDEX_URL,
    Offline,
    build_term,
    convert_index,
    data_check,
    data_fetch,
    prepare,
    read_table,
    read_vx_contract,
)

from conftest import ROOT, data_dir

VIX_CBOE = """DATE,OPEN,HIGH,LOW,CLOSE
01/02/2024,13.21,14.23,13.10,13.20
01/03/2024,13.38,14.22,13.38,14.04
01/04/2024,13.97,14.20,13.64,14.13
"""
VVIX_CBOE = "DATE,VVIX\n01/02/2024,88.52\n01/03/2024,90.10\n01/04/2024,89.75\n"
VX_HEADER = "Trade Date,Futures,Open,High,Low,Close,Settle,Change,Total Volume,EFP,Open Interest\n"


def _vx_new(expiry: str, rows: list[tuple[str, float]]) -> str:
    return VX_HEADER + "".join(f"{d},F (Jan 2024),0,0,0,0,{s},0,100,0,1000\n" for d, s in rows)


CFE_K04 = VX_HEADER + """3/26/2004,K (May 04),212.4,212.5,202.7,202.7,203.2,0,216,0,144
3/29/2004,K (May 04),199,199.9,197.5,197.7,198,0,52,0,113
4/1/2004,K (May 04),0,0,0,0,0,0,0,0,0
5/19/2004,K (May 04),0,0,0,0,183.55,-8.95,0,0,1111
"""


def test_cboe_index_file_reads_and_converts(tmp_path):
    src = tmp_path / "VIX_History.csv"
    src.write_text(VIX_CBOE)
    t = read_table(src)
    assert t.fmt == "cboe" and t.dates == [date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)]
    convert_index(src, tmp_path / "vix_daily.csv", "vix_daily.csv")
    assert (tmp_path / "vix_daily.csv").read_text().splitlines()[:2] == ["date,open,high,low,close",
                                                                         "2024-01-02,13.21,14.23,13.10,13.20"]
    one = tmp_path / "VVIX_History.csv"
    one.write_text(VVIX_CBOE)
    convert_index(one, tmp_path / "vvix_daily.csv", "vvix_daily.csv")
    assert (tmp_path / "vvix_daily.csv").read_text().splitlines()[1] == "2024-01-02,88.52"


@pytest.mark.parametrize("bad, problem", [
    ("01/03/2024,13.38,14.22,13.38,NaN", "CLOSE is NaN"),
    ("2024/01/03,13.38,14.22,13.38,14.04", "is not a MM/DD/YYYY date"),
    ("01/01/2024,13.38,14.22,13.38,14.04", "is not after"),
    ("01/03/2024,13.38,13.00,13.38,14.04", "high 13 is below low 13.38"),
])
def test_cboe_errors_name_file_and_line(tmp_path, bad, problem):
    lines = VIX_CBOE.splitlines()
    lines[2] = bad
    src = tmp_path / "VIX_History.csv"
    src.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        convert_index(src, tmp_path / "vix_daily.csv", "vix_daily.csv")
    msg = str(e.value)
    assert msg.startswith("VIX_History.csv line 3: ") and problem.lower() in msg.lower() and "\n" not in msg


def test_vx_contract_files_and_term_structure(tmp_path):
    jan = tmp_path / "VX_2024-01-17.csv"
    jan.write_text(_vx_new("2024-01-17", [("2024-01-02", 14.1), ("2024-01-16", 13.9), ("2024-01-17", 13.6)]))
    feb = tmp_path / "VX_2024-02-14.csv"
    feb.write_text(_vx_new("2024-02-14", [("2024-01-02", 15.2), ("2024-01-16", 15.0), ("2024-01-17", 14.8)]))
    mar = tmp_path / "VX_2024-03-20.csv"
    mar.write_text(_vx_new("2024-03-20", [("2024-01-02", 16.0), ("2024-01-16", 15.9), ("2024-01-17", 15.7)]))
    rows = read_vx_contract(jan)
    assert rows[0] == (date(2024, 1, 2), 14.1, date(2024, 1, 17))
    old = tmp_path / "CFE_K04_VX.csv"
    old.write_text(CFE_K04)
    k04 = read_vx_contract(old)
    assert k04[0] == (date(2004, 3, 26), pytest.approx(20.32), date(2004, 5, 19))  # 10 x VIX before 2007-03-26
    assert len(k04) == 3  # the row without a settlement is not a price
    n = build_term([read_vx_contract(p) for p in (jan, feb, mar)], tmp_path / "vix_futures_term.csv")
    lines = (tmp_path / "vix_futures_term.csv").read_text().splitlines()
    assert n == 3 and lines[0].startswith("date,vx1,vx2")
    assert lines[1].startswith("2024-01-02,14.1,15.2,16,") and ",2024-01-17,2024-02-14,cboe" in lines[1]
    assert lines[3].startswith("2024-01-17,14.8,15.7,")  # on its expiry day Jan is no longer VX1
    nan = tmp_path / "VX_2024-04-17.csv"
    nan.write_text(_vx_new("2024-04-17", [("2024-01-02", 16.0)]).replace("16.0,", "nan,"))
    with pytest.raises(DataError, match=r"^VX_2024-04-17.csv line 2: Settle is NaN"):
        read_vx_contract(nan)


def test_data_check_ok_and_errors(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    (good / "VIX_History.csv").write_text(VIX_CBOE)
    (good / "spx_daily.csv").write_text("date,open,high,low,close\n2024-01-02,4745.2,4754.33,4722.67,4742.83\n"
                                        "2024-01-04,4697.42,4726.78,4687.53,4688.68\n")
    (good / "VX_2024-01-17.csv").write_text(_vx_new("2024-01-17", [("2024-01-02", 14.1)]))
    out = io.StringIO()
    assert data_check(good, out) == 0
    text = out.getvalue()
    assert "OK    VIX_History.csv: 3 rows 2024-01-02..2024-01-04" in text
    assert "spx_daily.csv: 1 NYSE sessions without a row (1 gaps: 2024-01-03)" in text
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    (bad / "spx_daily.csv").write_text("date,open,high,low,close\n2024-01-02,4745.2,4754.33,4722.67,\n")
    out = io.StringIO()
    assert data_check(bad, out) == 2
    assert "ERROR spx_daily.csv line 2: close is empty" in out.getvalue()
    (bad / "spx_daily.csv").unlink()
    out = io.StringIO()
    assert data_check(bad, out) == 2 and "ERROR spx_daily.csv: missing" in out.getvalue()


@pytest.mark.skipif(data_dir() is None, reason="history files not found (SPX_BOT_DATA or ../shared/data)")
def test_data_check_on_the_shipped_files():
    out = io.StringIO()
    assert data_check(data_dir(), out) == 0
    text = out.getvalue()
    assert "OK    vix_daily.csv: 9235 rows 1990-01-02..2026-07-23" in text
    assert "33 rows on days that are not NYSE sessions" in text  # Cboe publishes VIX on some holidays
    assert "ERROR vix6m_daily.csv line 2898" in text and "not used by the backtest" in text


def test_data_fetch_offline_is_one_line(tmp_path, capsys):
    def offline(url):
        raise Offline("cannot reach cdn.cboe.com ([Errno -3] Temporary failure in name resolution)")

    assert data_fetch(tmp_path, fetch=offline, out=io.StringIO()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach cdn.cboe.com" in err[0] and "offline" in err[0]


def test_data_fetch_writes_normalized_files(tmp_path):
    served = {CBOE_INDEX_URL.format(name="VIX"): VIX_CBOE, CBOE_INDEX_URL.format(name="VVIX"): VVIX_CBOE}
    served.update({
        "https://cdn.cboe.com/data/us/futures/market_statistics/historical_data/VX/VX_2024-01-17.csv":
            _vx_new("2024-01-17", [("2024-01-02", 14.1), ("2024-01-03", 14.5)]),
        "https://cdn.cboe.com/data/us/futures/market_statistics/historical_data/VX/VX_2024-02-14.csv":
            _vx_new("2024-02-14", [("2024-01-02", 15.2), ("2024-01-03", 15.6)]),
    })

    def fake(url):
        if url not in served:
            raise FileNotFoundError(f"{url}: HTTP 404")
        return served[url].encode()

    out = io.StringIO()
    assert data_fetch(tmp_path, since=date(2024, 1, 1), fetch=fake, out=out) == 0
    assert (tmp_path / "raw" / "VIX_History.csv").read_text() == VIX_CBOE
    assert (tmp_path / "vix_daily.csv").read_text().startswith("date,open,high,low,close\n2024-01-02,13.21")
    term = (tmp_path / "vix_futures_term.csv").read_text().splitlines()
    assert term[1].startswith("2024-01-02,14.1,15.2,")
    assert "SKIP  SPX: not published by Cboe" in out.getvalue()


@pytest.mark.skipif(data_dir() is None, reason="history files not found (SPX_BOT_DATA or ../shared/data)")
def test_backtest_reads_cboe_files(tmp_path):
    """VIX as Cboe's VIX_History.csv (MM/DD/YYYY), the rest normalized: the same backtest."""
    from bot.backtest import run_backtest
    from bot.config import load_config

    d = tmp_path / "cboe"
    d.mkdir()
    for name in ("spx_daily.csv", "vix_futures_term.csv", "vvix_daily.csv", "tbill_3m_daily.csv", "vix9d_daily.csv",
                 "vix3m_daily.csv"):
        shutil.copy(data_dir() / name, d / name)
    lines = (data_dir() / "vix_daily.csv").read_text().splitlines()
    out = ["DATE,OPEN,HIGH,LOW,CLOSE"]
    for line in lines[1:]:
        iso, rest = line.split(",", 1)
        y, m, dd = iso.split("-")
        out.append(f"{m}/{dd}/{y},{rest}")
    (d / "VIX_History.csv").write_text("\n".join(out) + "\n")
    prepared = prepare(d, tmp_path / "cache")
    assert prepared == tmp_path / "cache"
    h = load_history(prepared, date(2022, 3, 1), date(2022, 3, 8))
    assert h.row(date(2022, 3, 7)).vix[3] == 36.45
    cfg = load_config(ROOT / "config" / "sim.toml")
    kw = dict(progress=False, variants=("unhedged",), charts=False)
    assert run_backtest(cfg, date(2022, 3, 1), date(2022, 3, 31), tmp_path / "a", d, **kw) == 0
    assert run_backtest(cfg, date(2022, 3, 1), date(2022, 3, 31), tmp_path / "b", data_dir(), **kw) == 0
    a = json.loads((tmp_path / "a" / "report.json").read_text())["variants"]
    b = json.loads((tmp_path / "b" / "report.json").read_text())["variants"]
    assert a == b
