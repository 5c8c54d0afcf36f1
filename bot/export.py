"""`spx-bot export`: the store's fills, orders, condors and hedge lots as CSV and JSON.

Read through `Store.open_readonly` (SQLite's read-only mode over the WAL), so it runs beside a
daemon that is trading: it takes no lock and sees every committed write. Dates are session days
in New York; `--from` / `--to` are inclusive. The columns are listed in README ("Exporting
trades") and here in `COLUMNS`: one place, used for both formats.

Hedge lots: a lot is one (layer, option) position from the fill that opens it until it is flat
again. Fills belong to a layer through their intent's group, as the hedge books them
(bot/hedging.py); a settlement (a fill of no intent) is split across the layers holding that
contract, each by its own open quantity.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bot.domain import Fill
from bot.store import Store

NY = ZoneInfo("America/New_York")

COLUMNS: dict[str, tuple[str, ...]] = {
    "fills": ("exec_id", "time", "session", "order_ref", "purpose", "group", "option", "symbol", "trading_class",
              "expiry", "strike", "right", "quantity", "price", "multiplier", "commission", "cash_flow"),
    "orders": ("order_ref", "created_at", "session", "purpose", "group", "status", "quantity", "filled",
               "limit", "limit_floor", "broker_id", "sent_at", "updated_at", "legs", "reason", "note"),
    "condors": ("condor_id", "status", "opened_at", "session", "closed_at", "expiry", "trading_class", "quantity",
                "put_long", "put_short", "call_short", "call_long", "credit", "max_loss", "close_reason",
                "close_price", "pnl", "open_ref"),
    "hedge_lots": ("layer", "option", "side", "status", "opened_at", "session", "closed_at", "quantity_opened",
                   "quantity_open", "open_price", "premium", "close_price", "closed_value", "commission",
                   "realized_pnl", "fills"),
}


class ExportError(Exception):
    """One line for the operator (exit 2)."""


def session_of(at: datetime) -> date:
    return at.astimezone(NY).date()


def _in(day: date | None, start: date | None, end: date | None) -> bool:
    return day is not None and (start is None or day >= start) and (end is None or day <= end)


def _text(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value.normalize():f}" if value == value.to_integral() else str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


# --- rows ----------------------------------------------------------------------------------------
def fill_rows(store: Store, start: date | None = None, end: date | None = None) -> list[dict[str, Any]]:
    intents = {r.order_ref: r.intent for r in store.intents()}
    rows = []
    for f in store.fills():
        if not _in(session_of(f.time), start, end):
            continue
        intent = intents.get(f.order_ref)
        o = f.option
        rows.append({"exec_id": f.exec_id, "time": f.time, "session": session_of(f.time), "order_ref": f.order_ref,
                     "purpose": intent.purpose if intent else ("settlement" if f.exec_id.startswith("settle:") else ""),
                     "group": intent.group if intent else "", "option": o.key, "symbol": o.symbol,
                     "trading_class": o.trading_class, "expiry": o.expiry, "strike": o.strike, "right": o.right.value,
                     "quantity": f.quantity, "price": f.price, "multiplier": o.multiplier,
                     "commission": f.commission,
                     "cash_flow": -(f.price * o.multiplier * f.quantity) - f.commission})
    return rows


def order_rows(store: Store, start: date | None = None, end: date | None = None) -> list[dict[str, Any]]:
    rows = []
    for r in store.intents():
        at = r.intent.created_at or r.sent_at or r.updated_at
        if not _in(session_of(at) if at else None, start, end):
            continue
        order = r.intent.order
        rows.append({"order_ref": r.order_ref, "created_at": r.intent.created_at, "session": session_of(at),
                     "purpose": r.intent.purpose, "group": r.intent.group, "status": r.status.value,
                     "quantity": order.quantity, "filled": r.filled, "limit": r.limit, "limit_floor": order.limit_floor,
                     "broker_id": r.broker_id, "sent_at": r.sent_at, "updated_at": r.updated_at,
                     "legs": "; ".join(f"{leg.action.value} {leg.ratio} {leg.option.key}" for leg in order.legs),
                     "reason": r.intent.reason, "note": r.note})
    rows.sort(key=lambda row: (row["created_at"] or datetime.min.replace(tzinfo=NY), row["order_ref"]))
    return rows


def condor_rows(store: Store, start: date | None = None, end: date | None = None) -> list[dict[str, Any]]:
    rows = []
    for c in reversed(store.condor_rows()):  # oldest first
        if not _in(session_of(c["opened_at"]), start, end):
            continue
        width = max(c["put_short"] - c["put_long"], c["call_long"] - c["call_short"])
        rows.append({"condor_id": c["condor_id"], "status": c["status"], "opened_at": c["opened_at"],
                     "session": session_of(c["opened_at"]), "closed_at": c["closed_at"], "expiry": c["expiry"],
                     "trading_class": c["trading_class"], "quantity": c["quantity"], "put_long": c["put_long"],
                     "put_short": c["put_short"], "call_short": c["call_short"], "call_long": c["call_long"],
                     "credit": c["credit"], "max_loss": (width - c["credit"]) * 100 * c["quantity"],
                     "close_reason": c["reason"], "close_price": c["close_price"], "pnl": c["pnl"],
                     "open_ref": c["open_ref"]})
    return rows


@dataclass
class _Lot:
    layer: str
    option: str
    side: str
    opened_at: datetime
    multiplier: int
    opened: int = 0
    open: int = 0
    open_value: Decimal = Decimal(0)
    closed: int = 0
    closed_value: Decimal = Decimal(0)
    commission: Decimal = Decimal(0)
    closed_at: datetime | None = None
    fills: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        open_price = self.open_value / self.opened / self.multiplier if self.opened else None
        close_price = self.closed_value / self.closed / self.multiplier if self.closed else None
        sign = 1 if self.side == "long" else -1
        realized = None
        if self.closed:
            realized = sign * (self.closed_value - open_price * self.multiplier * self.closed) - self.commission
        return {"layer": self.layer, "option": self.option, "side": self.side,
                "status": "open" if self.open else "closed", "opened_at": self.opened_at,
                "session": session_of(self.opened_at), "closed_at": self.closed_at, "quantity_opened": self.opened,
                "quantity_open": abs(self.open), "open_price": open_price, "premium": self.open_value,
                "close_price": close_price, "closed_value": self.closed_value, "commission": self.commission,
                "realized_pnl": realized, "fills": " ".join(self.fills)}


def hedge_lot_rows(store: Store, start: date | None = None, end: date | None = None) -> list[dict[str, Any]]:
    layer_of = {r.order_ref: r.intent.group for r in store.intents() if r.intent.purpose.startswith("hedge.")}
    lots: list[_Lot] = []
    current: dict[tuple[str, str], _Lot] = {}

    def book(layer: str, f: Fill) -> None:
        key = (layer, f.option.key)
        lot = current.get(key)
        remaining = f.quantity
        while remaining:
            if lot is None:
                lot = _Lot(layer, f.option.key, "long" if remaining > 0 else "written", f.time, f.option.multiplier)
                lots.append(lot)
                current[key] = lot
            lot.fills.append(f.exec_id)
            if lot.open == 0 or (lot.open > 0) == (remaining > 0):  # opens or adds
                lot.opened += abs(remaining)
                lot.open += remaining
                lot.open_value += f.price * f.option.multiplier * abs(remaining)
                lot.commission += f.commission
                remaining = 0
            else:
                take = min(abs(remaining), abs(lot.open))
                step = take if remaining > 0 else -take
                lot.open += step
                lot.closed += take
                lot.closed_value += f.price * f.option.multiplier * take
                lot.commission += f.commission if remaining == f.quantity else Decimal(0)
                remaining -= step
                if lot.open == 0:
                    lot.closed_at = f.time
                    del current[key]
                    lot = None

    for f in store.fills():
        layer = layer_of.get(f.order_ref)
        if layer is not None:
            book(layer, f)
        elif f.option.symbol == "VIX":  # a settlement: each layer settles what it holds
            for (lay, key), lot in list(current.items()):
                if key == f.option.key:
                    book(lay, replace(f, quantity=-lot.open, commission=Decimal(0)))
    return [lot.row() for lot in lots if _in(session_of(lot.opened_at), start, end)]


# --- files ---------------------------------------------------------------------------------------
def write_table(out: Path, name: str, rows: list[dict[str, Any]]) -> None:
    columns = COLUMNS[name]
    with (out / f"{name}.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for row in rows:
            w.writerow([_text(row[c]) for c in columns])
    (out / f"{name}.json").write_text(
        json.dumps([{c: (None if row[c] is None else _text(row[c])) for c in columns} for row in rows], indent=1)
        + "\n", encoding="utf-8")


def export(store_path: str | Path, out: str | Path, start: date | None = None, end: date | None = None
           ) -> dict[str, int]:
    """Write the four tables as CSV and JSON under `out`; returns the row counts."""
    if start is not None and end is not None and start > end:
        raise ExportError(f"--from {start} is after --to {end}")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"--out {out}: cannot create: {exc.strerror or exc}") from None
    if not out.is_dir():
        raise ExportError(f"--out {out}: not a directory")
    store = Store.open_readonly(store_path)
    try:
        tables = {"fills": fill_rows(store, start, end), "orders": order_rows(store, start, end),
                  "condors": condor_rows(store, start, end), "hedge_lots": hedge_lot_rows(store, start, end)}
    finally:
        store.close()
    try:
        for name, rows in tables.items():
            write_table(out, name, rows)
    except OSError as exc:
        raise ExportError(f"--out {out}: cannot write: {exc.strerror or exc}") from None
    return {name: len(rows) for name, rows in tables.items()}
