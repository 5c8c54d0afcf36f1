"""`spx-bot export`: the store's tables as CSV and JSON, read-only beside a running writer."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.domain import Action, ComboOrder, Fill, Intent, IntentStatus, Leg, OptionSpec, Right
from bot.export import COLUMNS, ExportError, export
from bot.store import Store, StoreError
from conftest import ROOT
from test_store import condor, fill, intent

NY = ZoneInfo("America/New_York")
T0 = datetime(2022, 3, 1, 15, 30, tzinfo=NY)
VIX_CALL = OptionSpec("VIX", datetime(2022, 3, 16).date(), Decimal("25"), Right.CALL, "VIX", 100)
VIX_SHORT = OptionSpec("VIX", datetime(2022, 3, 16).date(), Decimal("30"), Right.CALL, "VIX", 100)


def hedge_intent(ref: str, layer: str, purpose: str, option: OptionSpec, action: Action, qty: int) -> Intent:
    return Intent(ref, purpose, layer, ComboOrder((Leg(option, action),), qty), "test", T0)


def vfill(exec_id: str, ref: str, option: OptionSpec, qty: int, price: str, at: datetime) -> Fill:
    return Fill(exec_id, ref, option, qty, Decimal(price), at, Decimal("1.30") if not exec_id.startswith("settle") else 0)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "bot.sqlite"
    with Store(path) as s:
        # a condor opened 03-01 and closed 03-02 with a profit, a second one opened 03-02 still open
        s.add_intent(intent())
        s.set_intent_status("ic-20220301-0001", IntentStatus.FILLED, T0)
        for i, leg in enumerate(condor().legs()):
            s.add_fill(fill(f"e{i}", leg.option, leg.signed_ratio * 2, at=T0))
        s.add_condor(condor("ic-20220301-0001", opened_at=T0), "ic-20220301-0001")
        s.close_condor("ic-20220301-0001", T0 + timedelta(days=1), "take_profit", Decimal("1.55"), Decimal("320"))
        s.add_intent(intent("ic-20220302-0002", group="ic-20220302-0002"))
        s.add_condor(condor("ic-20220302-0002", opened_at=T0 + timedelta(days=1)), "ic-20220302-0002")
        # the hedge: front buys 4 calls, the mid layer writes 2 against ... then half is sold, the rest settles
        s.add_intent(hedge_intent("vx-1", "front", "hedge.buy", VIX_CALL, Action.BUY, 4))
        s.add_fill(vfill("h1", "vx-1", VIX_CALL, 4, "1.20", T0))
        s.add_intent(hedge_intent("vx-2", "mid", "hedge.write", VIX_SHORT, Action.SELL, 2))
        s.add_fill(vfill("h2", "vx-2", VIX_SHORT, -2, "0.40", T0))
        s.add_intent(hedge_intent("vx-3", "front", "hedge.monetize", VIX_CALL, Action.SELL, 2))
        s.add_fill(vfill("h3", "vx-3", VIX_CALL, -2, "3.70", T0 + timedelta(days=1)))
        s.add_fill(vfill("settle:VIX 20220316 25 C", "", VIX_CALL, -2, "5.00", T0 + timedelta(days=15)))
    return path


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_writes_the_four_tables_as_csv_and_json_with_the_documented_columns(store_path, tmp_path):
    out = tmp_path / "out"
    counts = export(store_path, out)
    assert counts == {"fills": 8, "orders": 5, "condors": 2, "hedge_lots": 2}
    readme = (ROOT / "README.md").read_text()
    for name, columns in COLUMNS.items():
        rows = read_csv(out / f"{name}.csv")
        with (out / f"{name}.csv").open() as fh:
            assert next(csv.reader(fh)) == list(columns)
        as_json = json.loads((out / f"{name}.json").read_text())  # numbers stay numbers; empty is null
        assert [{k: ("" if v is None else str(v)) for k, v in r.items()} for r in as_json] == rows
        for column in columns:  # every column is documented
            assert f"`{column}`" in readme, (name, column)

    condors = read_csv(out / "condors.csv")
    assert [(c["condor_id"], c["status"], c["pnl"]) for c in condors] == [
        ("ic-20220301-0001", "closed", "320"), ("ic-20220302-0002", "open", "")]
    assert Decimal(condors[0]["max_loss"]) == (Decimal(25) - Decimal("3.15")) * 100 * 2
    fills = read_csv(out / "fills.csv")
    assert fills[0]["purpose"] == "condor.open" and fills[-1]["purpose"] == "settlement"
    assert Decimal(fills[0]["cash_flow"]) == -(Decimal("1.35") * 100 * int(fills[0]["quantity"])) - Decimal("1.10")


def test_hedge_lots_follow_the_layers_and_split_the_settlement(store_path, tmp_path):
    export(store_path, tmp_path)
    lots = {(r["layer"], r["option"]): r for r in read_csv(tmp_path / "hedge_lots.csv")}
    front = lots[("front", "VIX 20220316 25 C")]
    assert (front["side"], front["status"], front["quantity_opened"], front["quantity_open"]) == ("long", "closed", "4", "0")
    # 4 bought at 1.20, 2 sold at 3.70, 2 settled at 5.00: (2*3.70 + 2*5.00 - 4*1.20) * 100 - 2 commissions
    assert Decimal(front["realized_pnl"]) == Decimal("1260") - Decimal("2.60")
    assert front["fills"] == "h1 h3 settle:VIX 20220316 25 C"
    mid = lots[("mid", "VIX 20220316 30 C")]
    assert (mid["side"], mid["status"], mid["premium"], mid["realized_pnl"]) == ("written", "open", "80", "")


def test_dates_filter_by_new_york_session(store_path, tmp_path):
    counts = export(store_path, tmp_path, start=T0.date() + timedelta(days=1), end=T0.date() + timedelta(days=1))
    assert counts["condors"] == 1 and read_csv(tmp_path / "condors.csv")[0]["condor_id"] == "ic-20220302-0002"
    assert counts["fills"] == 1  # the monetizing sale
    assert counts["hedge_lots"] == 0  # lots are dated by their opening fill
    with pytest.raises(ExportError, match="after --to"):
        export(store_path, tmp_path, start=T0.date(), end=T0.date() - timedelta(days=1))


def test_reads_while_a_writer_holds_the_lock(store_path, tmp_path):
    writer = sqlite3.connect(store_path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the daemon in the middle of a write
    writer.execute("INSERT INTO control (key, value) VALUES ('x', 'y')")
    try:
        assert export(store_path, tmp_path / "out")["condors"] == 2
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    with Store.open_readonly(store_path) as ro, pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro._db.execute("INSERT INTO control (key, value) VALUES ('x', 'y')")
    with pytest.raises(StoreError, match="no such file"):
        Store.open_readonly(tmp_path / "missing.sqlite")


@pytest.mark.parametrize("args, message", [
    (["--out", "{tmp}/o", "--from", "2022-02-30"], "bad date"),
    (["--out", "{tmp}/o", "--from", "2022-03-05", "--to", "2022-03-01"], "after --to"),
    (["--out", "{tmp}/cfg.toml/o"], "--out"),
    ([], "--out"),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, store_path, args, message):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'[bot]\nstore_path = "{store_path}"\n')
    out = subprocess.run([sys.executable, "-m", "bot.cli", "export", "--config", str(cfg),
                          *[a.format(tmp=tmp_path) for a in args]], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2, out
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_cli_writes_the_tables(tmp_path, store_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'[bot]\nstore_path = "{store_path}"\n')
    out = subprocess.run([sys.executable, "-m", "bot.cli", "export", "--config", str(cfg), "--out",
                          str(tmp_path / "o")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "condors=2" in out.stdout and (tmp_path / "o" / "hedge_lots.json").exists()
