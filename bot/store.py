"""The bot's SQLite journal: intents, fills, condors, signals and control state.

Why it exists (DESIGN principle 4, FAILURES scenarios 1-3 and 9): every order is written here as
an intent *before* it is sent, so that after a crash the reconciler knows what may be out at the
broker and never places a second order for the same intent. Every write is committed before the
method returns, so a kill -9 loses nothing that a caller was told was stored.

Storage choices:
- one connection, WAL, synchronous=NORMAL: a commit is durable against a process crash (the
  kill -9 case) without an fsync per write, which keeps a year of replay fast;
- writes run in `BEGIN IMMEDIATE` transactions so that a second process on the same file (the
  CLI storing a halt when the daemon does not answer) waits on the busy timeout instead of
  failing half way;
- times are ISO-8601 UTC text with a fixed width, so they sort as text; Decimals are text so no
  price ever passes through a float; legs are JSON with options as `OptionSpec.key`.

Positions are not stored: they are the sum of the stored executions (settlements are recorded as
fills too), so there is no second copy that could drift from the fills.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

from bot.domain import (
    Action,
    ComboOrder,
    Condor,
    Fill,
    Intent,
    IntentStatus,
    Leg,
    OptionSpec,
)
from bot.statefiles import prepare_state_file

SCHEMA_VERSION = 1

_SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE control (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    )""",
    """CREATE TABLE intents (
        order_ref TEXT PRIMARY KEY,
        purpose TEXT NOT NULL,
        grp TEXT NOT NULL,
        legs TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        limit_floor TEXT,
        reason TEXT NOT NULL,
        created_at TEXT,
        status TEXT NOT NULL,
        broker_id TEXT,
        limit_price TEXT,
        filled INTEGER NOT NULL DEFAULT 0,
        note TEXT NOT NULL DEFAULT '',
        sent_at TEXT,
        updated_at TEXT
    )""",
    "CREATE INDEX intents_status ON intents (status)",
    "CREATE INDEX intents_grp ON intents (grp, purpose)",
    "CREATE INDEX intents_purpose ON intents (purpose)",
    # No foreign key to intents: a fill may belong to no intent of ours (a settlement, or a
    # manual trade the reconciler books because the broker is the truth for positions).
    """CREATE TABLE fills (
        exec_id TEXT PRIMARY KEY,
        order_ref TEXT NOT NULL,
        option_key TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        price TEXT NOT NULL,
        time TEXT NOT NULL,
        commission TEXT NOT NULL
    )""",
    "CREATE INDEX fills_order_ref ON fills (order_ref)",
    "CREATE INDEX fills_option_key ON fills (option_key, quantity)",
    "CREATE INDEX fills_time ON fills (time)",
    """CREATE TABLE condors (
        condor_id TEXT PRIMARY KEY,
        open_ref TEXT NOT NULL REFERENCES intents (order_ref),
        expiry TEXT NOT NULL,
        put_short TEXT NOT NULL,
        put_long TEXT NOT NULL,
        call_short TEXT NOT NULL,
        call_long TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        credit TEXT NOT NULL,
        opened_at TEXT NOT NULL,
        trading_class TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'open',
        closed_at TEXT,
        reason TEXT NOT NULL DEFAULT '',
        close_price TEXT,
        pnl TEXT
    )""",
    "CREATE INDEX condors_status ON condors (status, opened_at)",
    "CREATE INDEX condors_opened_at ON condors (opened_at)",
    "CREATE INDEX condors_open_ref ON condors (open_ref)",
    """CREATE TABLE signals (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        name TEXT NOT NULL,
        payload TEXT NOT NULL
    )""",
    "CREATE INDEX signals_name ON signals (name, id)",
)

_LIVE = (IntentStatus.NEW.value, IntentStatus.SENT.value)
_ORDER_REF_COUNTER = "order_ref"
_HALTED, _HALT_REASON, _HALTED_AT = "halted", "halted_reason", "halted_at"


class StoreError(RuntimeError):
    """The store cannot be used: it is closed, damaged, or was written by another schema version."""


class StoreWriteError(StoreError):
    """A write did not reach the file (disk full, read-only, I/O error, locked past the busy
    timeout). The engine halts trading on it (FAILURES.md 28): an order whose intent was not
    journaled must never be sent."""


BUSY_TIMEOUT_S = 10.0  # a second process (the CLI's offline kill) waits this long for the write lock


def damaged(path: Path, what: str, exc: BaseException) -> StoreError:
    """One line for a file SQLite cannot read, with what the operator can do."""
    return StoreError(
        f"{what} {path} is damaged ({' '.join(str(exc).split())}); nothing was changed. Restore it from a backup,"
        f" or move it (with its -wal and -shm files) aside to start afresh"
    )


@dataclass(frozen=True)
class IntentRecord:
    """An intent as journaled, with what is known of its order.

    `limit` and `filled` are the last values the executor recorded (the working limit while it
    walks the price, the filled quantity); `updated_at` is the time of the last status change,
    as given by the caller's clock."""

    intent: Intent
    status: IntentStatus
    broker_id: str | None
    limit: Decimal | None
    filled: int
    note: str
    sent_at: datetime | None
    updated_at: datetime | None

    @property
    def order_ref(self) -> str:
        return self.intent.order_ref


class Store:
    """The journal. One instance per process, used from the event loop's thread."""

    def __init__(self, path: str | Path, timeout: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        self.telemetry_failures = 0
        self._conn: sqlite3.Connection | None = None
        try:
            prepare_state_file(self.path)
        except OSError as exc:
            raise StoreError(f"store {self.path}: cannot open: {exc.strerror or exc}") from None
        # Autocommit mode: transactions are opened explicitly by `_write`, never implicitly.
        self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        try:
            self._check_readable()
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._ensure_schema()
            if self._conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                self._conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            self.close()
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreWriteError(f"store {self.path} is locked by another process: {exc}") from None
            raise damaged(self.path, "store", exc) from None
        except sqlite3.DatabaseError as exc:
            self.close()
            raise damaged(self.path, "store", exc) from None
        except BaseException:
            self.close()
            raise

    @classmethod
    def open_readonly(cls, path: str | Path) -> Store:
        """A reader beside a running daemon (export, report): SQLite's read-only mode over the
        WAL, so it never takes the write lock, creates nothing and sees every committed write.
        StoreError when the file is missing, damaged or of another schema version."""
        self = cls.__new__(cls)
        self.path = Path(path)
        self.telemetry_failures = 0
        self._conn = None
        if not self.path.is_file():
            raise StoreError(f"store {self.path}: no such file")
        try:
            self._conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
            self._check_version(self._conn)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise damaged(self.path, "store", exc) from None
        except BaseException:
            self.close()
            raise
        return self

    def _check_readable(self) -> None:
        """A file that is not an intact SQLite database (garbage, truncated) is refused before
        anything writes to it; an empty file is a new store only when nothing else says the
        bot has history (the CLI checks the partner files, see bot.statefiles)."""
        row = self._db.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError(f"integrity check: {row[0] if row else 'no answer'}")

    def close(self) -> None:
        """Close the connection; calling it again is harmless."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------
    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"store {self.path} is closed")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One committed transaction. IMMEDIATE takes the write lock up front, so a concurrent
        writer waits for it rather than failing when a read turns into a write."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreWriteError(f"store {self.path}: cannot write: {exc}") from exc
        try:
            yield db
        except sqlite3.IntegrityError:
            _rollback(db)
            raise
        except sqlite3.Error as exc:
            _rollback(db)
            raise StoreWriteError(f"store {self.path}: cannot write: {exc}") from exc
        except BaseException:
            _rollback(db)
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(db)
            raise StoreWriteError(f"store {self.path}: cannot write: {exc}") from exc

    def _ensure_schema(self) -> None:
        # Read first: an existing store needs no write lock to open, so the CLI's offline kill
        # can open it while a hung daemon holds the lock.
        db = self._db
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone():
            self._check_version(db)
            return
        if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise sqlite3.DatabaseError("not an spx-bot store (tables of something else)")
        with self._write() as db:
            has_version = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if not has_version:
                for statement in _SCHEMA:
                    db.execute(statement)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                db.execute("INSERT INTO counters (name, value) VALUES (?, 0)", (_ORDER_REF_COUNTER,))
                return
            self._check_version(db)

    def _check_version(self, db: sqlite3.Connection) -> None:
        row = db.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            raise sqlite3.DatabaseError("schema_version is empty")
        if row[0] != SCHEMA_VERSION:
            raise StoreError(f"store {self.path} has schema version {row[0]}; this bot reads {SCHEMA_VERSION}")

    # --- control state -------------------------------------------------------------------
    def get_control(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM control WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_control(self, key: str, value: str) -> None:
        with self._write() as db:
            _upsert_control(db, key, value)

    def delete_control(self, key: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM control WHERE key = ?", (key,))

    def halted(self) -> tuple[bool, str]:
        """(halted, reason). The flag outlives restarts; only `set_halted(False, ...)` clears it."""
        return self.get_control(_HALTED) == "1", self.get_control(_HALT_REASON) or ""

    def set_halted(self, flag: bool, reason: str, at: datetime) -> None:
        """Flag, reason and time in one transaction, so a reader never sees a halt without its reason."""
        with self._write() as db:
            _upsert_control(db, _HALTED, "1" if flag else "0")
            _upsert_control(db, _HALT_REASON, reason)
            _upsert_control(db, _HALTED_AT, _ts(at))

    # --- order refs ----------------------------------------------------------------------
    def next_order_ref(self, prefix: str, day: date) -> str:
        """A fresh order_ref such as `ic-20220301-0007`. The number comes from one counter for
        the whole store, so refs never repeat, whatever the prefix or the day."""
        with self._write() as db:
            (n,) = db.execute(
                "UPDATE counters SET value = value + 1 WHERE name = ? RETURNING value", (_ORDER_REF_COUNTER,)
            ).fetchone()
        return f"{prefix}-{day:%Y%m%d}-{n:04d}"

    # --- intents -------------------------------------------------------------------------
    def add_intent(self, intent: Intent) -> None:
        """Journal an intent as NEW. Must happen before the order is sent: this row is what the
        reconciler looks for after a crash. A reused order_ref raises ValueError."""
        order = intent.order
        legs = json.dumps(
            [{"option": leg.option.key, "action": leg.action.value, "ratio": leg.ratio} for leg in order.legs]
        )
        created = _ts_opt(intent.created_at)
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO intents (order_ref, purpose, grp, legs, quantity, limit_floor, reason,"
                    " created_at, status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        intent.order_ref,
                        intent.purpose,
                        intent.group,
                        legs,
                        order.quantity,
                        _dec_opt(order.limit_floor),
                        intent.reason,
                        created,
                        IntentStatus.NEW.value,
                        created,
                    ),
                )
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"order_ref {intent.order_ref!r} already journaled") from exc

    def mark_sent(self, order_ref: str, at: datetime) -> None:
        """NEW -> SENT. An intent already past NEW keeps its status (a fill or a cancel may be
        recorded before the sender gets here), so calling it late or twice is harmless."""
        with self._write() as db:
            _require_intent(db, order_ref)
            db.execute(
                "UPDATE intents SET status = ?, sent_at = ?, updated_at = ? WHERE order_ref = ? AND status = ?",
                (IntentStatus.SENT.value, _ts(at), _ts(at), order_ref, IntentStatus.NEW.value),
            )

    def set_intent_status(
        self,
        order_ref: str,
        status: IntentStatus,
        at: datetime,
        note: str = "",
        limit: Decimal | None = None,
        filled: int | None = None,
    ) -> None:
        """Record a status. Any transition is accepted: a cancel that lost the race to a fill
        (FAILURES scenario 10) turns CANCELLED into FILLED. `limit`/`filled` given as None keep
        the recorded values."""
        with self._write() as db:
            _require_intent(db, order_ref)
            db.execute(
                "UPDATE intents SET status = ?, updated_at = ?, note = ?,"
                " limit_price = COALESCE(?, limit_price), filled = COALESCE(?, filled) WHERE order_ref = ?",
                (IntentStatus(status).value, _ts(at), note, _dec_opt(limit), filled, order_ref),
            )

    def update_order(self, order_ref: str, limit: Decimal, filled: int, broker_id: str | None) -> None:
        """Record the working limit and filled quantity (each step of the price walk), so that a
        restart can continue the walk from where it was (FAILURES scenario 3). A None broker_id
        keeps the one already known."""
        with self._write() as db:
            _require_intent(db, order_ref)
            db.execute(
                "UPDATE intents SET limit_price = ?, filled = ?, broker_id = COALESCE(?, broker_id)"
                " WHERE order_ref = ?",
                (_dec(limit), filled, broker_id, order_ref),
            )

    def intent(self, order_ref: str) -> IntentRecord | None:
        row = self._db.execute(f"SELECT {_INTENT_COLUMNS} FROM intents WHERE order_ref = ?", (order_ref,)).fetchone()
        return _intent_record(row) if row else None

    def live_intents(self) -> list[IntentRecord]:
        """Intents that may have an order at the broker (NEW or SENT): what reconcile checks."""
        rows = self._db.execute(
            f"SELECT {_INTENT_COLUMNS} FROM intents WHERE status IN (?, ?) ORDER BY rowid", _LIVE
        ).fetchall()
        return [_intent_record(r) for r in rows]

    def intents(self, group: str | None = None, purpose: str | None = None) -> list[IntentRecord]:
        """Intents in the order they were journaled, optionally filtered by group and purpose."""
        where, params = _where(grp=group, purpose=purpose)
        rows = self._db.execute(f"SELECT {_INTENT_COLUMNS} FROM intents{where} ORDER BY rowid", params).fetchall()
        return [_intent_record(r) for r in rows]

    # --- fills and positions -------------------------------------------------------------
    def add_fill(self, fill: Fill) -> bool:
        """Store one execution; False when its exec_id is already stored. Executions are
        re-delivered after every reconnect and resync, so this must be idempotent."""
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO fills (exec_id, order_ref, option_key, quantity, price, time, commission)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (exec_id) DO NOTHING",
                (
                    fill.exec_id,
                    fill.order_ref,
                    fill.option.key,
                    fill.quantity,
                    _dec(fill.price),
                    _ts(fill.time),
                    _dec(fill.commission),
                ),
            )
        return cur.rowcount == 1

    def fills(self, order_ref: str | None = None) -> list[Fill]:
        """Fills in execution-time order (ties in the order they were stored)."""
        where, params = _where(order_ref=order_ref)
        rows = self._db.execute(
            f"SELECT exec_id, order_ref, option_key, quantity, price, time, commission FROM fills{where}"
            " ORDER BY time, rowid",
            params,
        ).fetchall()
        return [_fill(row) for row in rows]

    def fills_since(self, rowid: int) -> tuple[int, list[Fill]]:
        """Fills stored after `rowid`, in the order stored, and the last rowid seen: lets a
        reader keep its books up to date without re-reading every fill on every look."""
        rows = self._db.execute(
            "SELECT rowid, exec_id, order_ref, option_key, quantity, price, time, commission FROM fills"
            " WHERE rowid > ? ORDER BY rowid", (rowid,),
        ).fetchall()
        return (rows[-1][0] if rows else rowid), [_fill(row[1:]) for row in rows]

    def positions(self) -> dict[str, int]:
        """Signed quantity by `OptionSpec.key`: the sum of every stored execution, flat keys omitted."""
        rows = self._db.execute(
            "SELECT option_key, SUM(quantity) FROM fills"
            " GROUP BY option_key HAVING SUM(quantity) != 0 ORDER BY option_key"
        ).fetchall()
        return dict(rows)

    # --- condors -------------------------------------------------------------------------
    def add_condor(self, condor: Condor, open_ref: str) -> bool:
        """Book an open condor, tied to the intent that opened it (which must be journaled).
        Idempotent: returns False when that condor is already booked (reconcile may apply a
        finished order's effect a second time)."""
        if self.has_condor(condor.condor_id):
            return False
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO condors (condor_id, open_ref, expiry, put_short, put_long, call_short, call_long,"
                    " quantity, credit, opened_at, trading_class) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        condor.condor_id,
                        open_ref,
                        condor.expiry.isoformat(),
                        _dec(condor.put_short),
                        _dec(condor.put_long),
                        _dec(condor.call_short),
                        _dec(condor.call_long),
                        condor.quantity,
                        _dec(condor.credit),
                        _ts(condor.opened_at),
                        condor.trading_class,
                    ),
                )
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"condor {condor.condor_id!r} (open_ref {open_ref!r}): {exc}") from exc
        return True

    def has_condor(self, condor_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM condors WHERE condor_id = ?", (condor_id,)).fetchone() is not None

    def close_condor(
        self, condor_id: str, at: datetime, reason: str, close_price: Decimal | None, pnl: Decimal
    ) -> None:
        """Mark a condor closed with its realized P&L (dollars). `close_price` is None when it
        expired or settled rather than being bought back. Closing twice raises ValueError: the
        second close would overwrite the first one's P&L."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE condors SET status = 'closed', closed_at = ?, reason = ?, close_price = ?, pnl = ?"
                " WHERE condor_id = ? AND status = 'open'",
                (_ts(at), reason, _dec_opt(close_price), _dec(pnl), condor_id),
            )
            if cur.rowcount == 0:
                if db.execute("SELECT 1 FROM condors WHERE condor_id = ?", (condor_id,)).fetchone():
                    raise ValueError(f"condor {condor_id!r} is already closed")
                raise KeyError(f"no condor {condor_id!r}")

    def open_condors(self) -> list[Condor]:
        rows = self._db.execute(
            f"SELECT {_CONDOR_COLUMNS} FROM condors WHERE status = 'open' ORDER BY opened_at, rowid"
        ).fetchall()
        return [_condor(r) for r in rows]

    def condor_rows(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Condors for status display, newest first: every column, typed (Decimal, date, datetime)."""
        cur = self._db.execute(
            "SELECT * FROM condors ORDER BY opened_at DESC, rowid DESC LIMIT ?", (-1 if limit is None else limit,)
        )
        names = [d[0] for d in cur.description]
        return [_typed_condor_row(dict(zip(names, row, strict=True))) for row in cur.fetchall()]

    def reduce_condor(self, condor_id: str, order_ref: str, quantity: int, price: Decimal) -> bool:
        """A close that filled `quantity` lots at `price` (net debit) and ended there: the condor
        keeps the rest open. The part closed is remembered with it (`closed_parts`), in the same
        transaction, so applying the same order twice (reconcile re-applies effects) changes
        nothing: False then."""
        key = f"closed_part:{condor_id}"
        with self._write() as db:
            row = db.execute("SELECT value FROM control WHERE key = ?", (key,)).fetchone()
            parts = json.loads(row[0]) if row else {}
            if order_ref in parts:
                return False
            cur = db.execute("UPDATE condors SET quantity = quantity - ? WHERE condor_id = ? AND status = 'open'"
                             " AND quantity > ?", (quantity, condor_id, quantity))
            if cur.rowcount != 1:
                raise ValueError(f"condor {condor_id}: cannot take {quantity} lots off it (closed, or not that many)")
            parts[order_ref] = [quantity, str(price)]
            _upsert_control(db, key, json.dumps(parts))
        return True

    def closed_parts(self, condor_id: str) -> list[tuple[int, Decimal]]:
        """(quantity, net debit) of each part of a condor closed before the rest (`reduce_condor`)."""
        raw = self.get_control(f"closed_part:{condor_id}")
        return [(int(q), Decimal(p)) for q, p in json.loads(raw).values()] if raw else []

    def realized_pnl(self) -> Decimal:
        """Sum of closed condors' P&L, added as Decimals (SQL SUM would go through floats)."""
        rows = self._db.execute("SELECT pnl FROM condors WHERE status = 'closed'").fetchall()
        return sum((Decimal(pnl) for (pnl,) in rows), Decimal("0"))

    # --- signals -------------------------------------------------------------------------
    def add_signal(self, at: datetime, name: str, payload: dict[str, Any]) -> bool:
        """Journal an evaluated signal (VIX, RSI, MACD...). Decimals and dates in the payload are
        stored as text. Telemetry: a failed write is counted (`telemetry_failures`) and
        returns False, never raises, so a full disk does not stop trading by itself; the next
        write that matters (an intent) halts the bot instead."""
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO signals (at, name, payload) VALUES (?, ?, ?)",
                    (_ts(at), name, json.dumps(payload, default=str)),
                )
        except StoreWriteError:
            self.telemetry_failures += 1
            return False
        return True

    def signals_after(self, name: str, after_id: int = 0, limit: int | None = None
                      ) -> list[tuple[int, datetime, dict[str, Any]]]:
        """(id, at, payload) of one signal journaled after `after_id`, oldest first; with
        `limit`, only the newest `limit` of them (a live reader catches up incrementally)."""
        rows = self._db.execute(
            "SELECT id, at, payload FROM (SELECT id, at, payload FROM signals WHERE name = ? AND id > ?"
            " ORDER BY id DESC LIMIT ?) ORDER BY id", (name, after_id, -1 if limit is None else limit),
        ).fetchall()
        return [(i, _parse_ts(at), json.loads(payload)) for i, at, payload in rows]

    def signals(self, name: str | None = None) -> list[tuple[datetime, str, dict[str, Any]]]:
        """(at, name, payload) in the order journaled, optionally for one signal name."""
        where, params = _where(name=name)
        rows = self._db.execute(f"SELECT at, name, payload FROM signals{where} ORDER BY id", params).fetchall()
        return [(_parse_ts(at), n, json.loads(payload)) for at, n, payload in rows]


# --- row mapping -------------------------------------------------------------------------

_INTENT_COLUMNS = (
    "order_ref, purpose, grp, legs, quantity, limit_floor, reason, created_at,"
    " status, broker_id, limit_price, filled, note, sent_at, updated_at"
)
_CONDOR_COLUMNS = (
    "condor_id, expiry, put_short, put_long, call_short, call_long, quantity, credit, opened_at, trading_class"
)


def _intent_record(row: tuple[Any, ...]) -> IntentRecord:
    ref, purpose, grp, legs, quantity, floor, reason, created = row[:8]
    status, broker_id, limit, filled, note, sent, updated = row[8:]
    order = ComboOrder(
        legs=tuple(
            Leg(OptionSpec.from_key(leg["option"]), Action(leg["action"]), leg["ratio"]) for leg in json.loads(legs)
        ),
        quantity=quantity,
        limit_floor=_parse_dec_opt(floor),
    )
    return IntentRecord(
        intent=Intent(ref, purpose, grp, order, reason, _parse_ts_opt(created)),
        status=IntentStatus(status),
        broker_id=broker_id,
        limit=_parse_dec_opt(limit),
        filled=filled,
        note=note,
        sent_at=_parse_ts_opt(sent),
        updated_at=_parse_ts_opt(updated),
    )


def _condor(row: tuple[Any, ...]) -> Condor:
    condor_id, expiry, ps, pl, cs, cl, quantity, credit, opened_at, tclass = row
    return Condor(
        condor_id=condor_id,
        expiry=date.fromisoformat(expiry),
        put_short=Decimal(ps),
        put_long=Decimal(pl),
        call_short=Decimal(cs),
        call_long=Decimal(cl),
        quantity=quantity,
        credit=Decimal(credit),
        opened_at=_parse_ts(opened_at),
        trading_class=tclass,
    )


def _typed_condor_row(row: dict[str, Any]) -> dict[str, Any]:
    for name in ("put_short", "put_long", "call_short", "call_long", "credit", "close_price", "pnl"):
        row[name] = _parse_dec_opt(row[name])
    row["expiry"] = date.fromisoformat(row["expiry"])
    row["opened_at"] = _parse_ts(row["opened_at"])
    row["closed_at"] = _parse_ts_opt(row["closed_at"])
    return row


def _fill(row) -> Fill:
    exec_id, ref, key, qty, price, time, commission = row
    return Fill(exec_id=exec_id, order_ref=ref, option=OptionSpec.from_key(key), quantity=qty,
                price=Decimal(price), time=_parse_ts(time), commission=Decimal(commission))


def _where(**equal: object) -> tuple[str, tuple[object, ...]]:
    """A WHERE clause for the filters given (None = no filter). Spelled out rather than
    `? IS NULL OR col = ?`, which SQLite cannot answer from an index. Columns come from code."""
    given = {column: value for column, value in equal.items() if value is not None}
    if not given:
        return "", ()
    return " WHERE " + " AND ".join(f"{column} = ?" for column in given), tuple(given.values())


def _rollback(db: sqlite3.Connection) -> None:
    with suppress(sqlite3.Error):
        db.execute("ROLLBACK")


def _require_intent(db: sqlite3.Connection, order_ref: str) -> None:
    """Updates to an unknown order_ref are bugs (the intent is always stored first): say so."""
    if not db.execute("SELECT 1 FROM intents WHERE order_ref = ?", (order_ref,)).fetchone():
        raise KeyError(f"no intent with order_ref {order_ref!r}")


def _upsert_control(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute(
        "INSERT INTO control (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


# --- value encoding ----------------------------------------------------------------------


def _ts(at: datetime) -> str:
    """UTC, fixed width (always microseconds) so that text order is time order. A naive time is
    refused: storing it as UTC would silently shift New York times by hours."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at!r}: pass an aware time from the clock")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _ts_opt(at: datetime | None) -> str | None:
    return None if at is None else _ts(at)


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _parse_ts_opt(text: str | None) -> datetime | None:
    return None if text is None else _parse_ts(text)


def _dec(value: Decimal) -> str:
    """Refuses floats: a price that went through binary floating point is already wrong."""
    if isinstance(value, float):
        raise TypeError(f"float {value!r} where a Decimal is required")
    return str(value)


def _dec_opt(value: Decimal | None) -> str | None:
    return None if value is None else _dec(value)


def _parse_dec_opt(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)
