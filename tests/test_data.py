"""History loading: the real files (when present) and one-line errors on small bad files."""

import math
import os
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from bot.data import DataError, discount_to_continuous, load_history

DATA_DIR = Path(os.environ.get("SPX_BOT_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
real_data = pytest.mark.skipif(not (DATA_DIR / "spx_daily.csv").is_file(),
                               reason=f"history files not found in {DATA_DIR} (set SPX_BOT_DATA)")


# --------------------------------------------------------------------------- real files


@pytest.fixture(scope="module")
def full_history():
    return load_history(DATA_DIR)


@real_data
def test_real_files_spot_values(full_history):
    h = full_history
    spx_close = lambda d: h.spx[h.index(d), 3]  # noqa: E731
    assert spx_close(date(2020, 3, 16)) == 2386.13
    assert spx_close(date(2022, 12, 30)) == 3839.50
    row = h.row(date(2022, 3, 7))
    assert row.vix[3] == 36.45 and row.vix3m == 35.74
    assert row.vx[0] == pytest.approx(34.8105) and row.vx1_expiry == date(2022, 3, 15)
    assert h.row(date(2020, 3, 16)).vvix == 207.59
    assert h.row(date(2008, 11, 20)).vx[:2] == (66.23, 59.77)


@real_data
def test_real_files_alignment_and_quirks(full_history):
    h = full_history
    assert date(2024, 6, 19) not in h and date(2025, 1, 9) not in h  # VIX rows on SPX holidays ignored
    assert np.all(np.diff(h.dates.astype("int64")) > 0)
    rows = h.has_vix
    assert np.all((h.vix[rows, 0] >= h.vix[rows, 2]) & (h.vix[rows, 0] <= h.vix[rows, 1]))  # open clipped
    assert not h.has_vix[h.index(date(1999, 12, 31))]  # no VIX row: forward-filled, flat
    assert len(set(h.vix[h.index(date(1999, 12, 31))])) == 1
    assert h.rate[h.index(date(2022, 12, 30))] == pytest.approx(float(discount_to_continuous(np.array(4.30))))
    assert h.first == date(1927, 12, 30)
    assert h.complete_span() == (date(2004, 3, 26), date(2026, 7, 23))


@real_data
def test_real_files_window_and_covers():
    h = load_history(DATA_DIR, date(2022, 3, 1), date(2022, 3, 8))
    assert h.first == date(2022, 1, 20)  # 40 calendar days of warm-up
    assert h.last == date(2022, 3, 8)
    assert h.covers(date(2022, 3, 1), date(2022, 3, 8))
    assert not h.covers(date(2022, 3, 1), date(2022, 3, 9))
    assert not load_history(DATA_DIR, date(2026, 7, 1), date(2026, 8, 1)).covers(date(2026, 7, 1), date(2026, 8, 1))


# --------------------------------------------------------------------------- small files

GOOD = {
    "spx_daily.csv": "date,open,high,low,close\n"
                     "2022-03-01,4363.14,4378.45,4279.54,4306.26\n"
                     "2022-03-02,4322.56,4401.48,4322.56,4386.54\n"
                     "2022-03-03,4401.31,4416.78,4345.56,4363.49\n",
    "vix_daily.csv": "date,open,high,low,close\n"
                     "2022-03-01,31.0,33.5,29.0,33.32\n"
                     "2022-03-02,32.0,32.5,29.5,29.57\n"
                     "2022-03-03,29.0,30.6,28.2,30.0\n",
    "vix_futures_term.csv": "date,vx1,vx2,vx3,vx4,vx5,vx6,vx7,vx8,vx1_expiry,vx2_expiry,source\n"
                            "2022-03-01,32.12,30.68,29.59,,,,,,2022-03-15,2022-04-20,x\n"
                            "2022-03-02,29.61,29.09,28.32,,,,,,2022-03-15,2022-04-20,x\n"
                            "2022-03-03,29.91,29.47,28.74,,,,,,2022-03-15,2022-04-20,x\n",
}


def write(tmp_path: Path, **changes: str) -> Path:
    for name, text in {**GOOD, **changes}.items():
        if text is not None:
            (tmp_path / name).write_text(text)
    return tmp_path


def error_of(data_dir: Path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_history(data_dir, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_small_files_load_with_optional_series_absent(tmp_path):
    h = load_history(write(tmp_path))
    assert len(h) == 3 and h.covers(date(2022, 3, 1), date(2022, 3, 3))
    assert np.isnan(h.vix9d).all() and np.isnan(h.vvix).all()
    assert np.all(h.rate == 0.02)
    assert h.row(date(2022, 3, 2)).vx == (29.61, 29.09, 28.32)


def test_missing_required_file(tmp_path):
    data_dir = write(tmp_path, **{"vix_daily.csv": None})
    assert error_of(data_dir) == f"{tmp_path / 'vix_daily.csv'}: file not found"


def test_nan_value_names_file_and_line(tmp_path):
    bad = GOOD["vix_daily.csv"].replace("29.57", "NaN")
    assert error_of(write(tmp_path, **{"vix_daily.csv": bad})) == "vix_daily.csv line 3: close is NaN"


def test_empty_required_value(tmp_path):
    bad = GOOD["spx_daily.csv"].replace("4416.78", "")
    assert error_of(write(tmp_path, **{"spx_daily.csv": bad})) == "spx_daily.csv line 4: high is empty"


def test_out_of_order_date(tmp_path):
    bad = GOOD["spx_daily.csv"].replace("2022-03-03", "2022-03-01")
    message = error_of(write(tmp_path, **{"spx_daily.csv": bad}))
    assert message == "spx_daily.csv line 4: date 2022-03-01 is not after 2022-03-02"


def test_bad_date_and_missing_column(tmp_path):
    bad = GOOD["vix_futures_term.csv"].replace("2022-04-20,x\n2022-03-03", "2022-04-31,x\n2022-03-03")
    assert error_of(write(tmp_path, **{"vix_futures_term.csv": bad})) == \
        "vix_futures_term.csv line 3: vx2_expiry '2022-04-31' is not a YYYY-MM-DD date"
    no_close = GOOD["vix_daily.csv"].replace(",close", ",last")
    assert error_of(write(tmp_path, **{"vix_daily.csv": no_close})) == "vix_daily.csv line 1: missing column(s) close"


def test_high_below_low_fails_but_open_outside_range_is_clipped(tmp_path):
    bad = GOOD["vix_daily.csv"].replace("32.0,32.5,29.5", "32.0,29.0,29.5")
    assert error_of(write(tmp_path, **{"vix_daily.csv": bad})) == "vix_daily.csv line 3: high 29 is below low 29.5"
    quirk = GOOD["vix_daily.csv"].replace("32.0,32.5,29.5", "35.0,32.5,29.5")
    h = load_history(write(tmp_path, **{"vix_daily.csv": quirk}))
    assert h.vix[1, 0] == 32.5


def test_optional_files_allow_empty_cells(tmp_path):
    vix9d = "date,open,high,low,close\n2022-03-01,,,,30.1\n2022-03-02,,,,\n"
    tbill = "date,rate_pct\n2022-02-28,0.33\n"
    h = load_history(write(tmp_path, **{"vix9d_daily.csv": vix9d, "tbill_3m_daily.csv": tbill}))
    assert list(h.vix9d) == [30.1, 30.1, 30.1]  # forward-filled
    assert h.rate[0] == pytest.approx(-math.log(1 - 0.0033 * 91 / 360) * 365 / 91)


def test_rows_outside_the_window_are_not_validated(tmp_path):
    old = "date,open,high,low,close\n2021-01-04,1,1,1,\n"
    spx = old + GOOD["spx_daily.csv"].split("\n", 1)[1]
    data_dir = write(tmp_path, **{"spx_daily.csv": spx})
    assert load_history(data_dir, start=date(2022, 3, 1)).first == date(2022, 3, 1)
    assert error_of(data_dir) == "spx_daily.csv line 2: close is empty"
