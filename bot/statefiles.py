"""The bot's state files on disk: who may read them, and whether they can be trusted.

Two SQLite files hold a bot's state: the store (`bot.store_path`: intents, fills, the halt
flag) and, in the simulator, the paper account (`sim.state_path`: cash, positions, working
orders). Each is the other's witness: a store with intents beside an empty account file (or
the reverse) means one of them was truncated or replaced, and starting would silently forget
positions or orders (FAILURES.md 29). `check_pair` refuses that, and any file SQLite cannot
read, with one line that says how to recover, before anything opens them for writing.

Both files, their folder and the log are private to the user (0600 / 0700).
"""

from __future__ import annotations

import os
import sqlite3
import stat
from contextlib import closing, suppress
from pathlib import Path


class StateFileError(Exception):
    """A state file the bot refuses to open; str() is one line with the way out."""


def prepare_state_file(path: Path) -> None:
    """The state folder 0700 and the file 0600 before SQLite opens it. The folder is only
    tightened when it is ours and not a shared one such as /tmp (sticky)."""
    path = Path(path)
    folder = path.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    else:
        st = folder.stat()
        if st.st_uid == os.getuid() and not st.st_mode & stat.S_ISVTX and stat.S_IMODE(st.st_mode) & 0o077:
            with suppress(OSError):
                os.chmod(folder, 0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
        os.chmod(path, 0o600)


_RECOVER = ("nothing was changed. Restore it from a backup, or move it aside (with its -wal and -shm files)"
            " together with {partner} to start afresh")


MISSING, BLANK, FRESH, HISTORY = "missing", "blank", "fresh", "history"


def _history(path: Path, what: str, partner: str) -> str:
    """MISSING; BLANK (zero bytes, or no tables: nothing of ours was ever written); FRESH (ours,
    nothing recorded yet); HISTORY. Raises StateFileError for a file SQLite cannot read or that
    is not ours."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return MISSING
    except OSError as exc:
        raise StateFileError(f"{what} {path}: cannot read: {exc.strerror}") from None
    if not path.is_file():
        raise StateFileError(f"{what} {path} is not a regular file")
    if size == 0:
        return BLANK
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)) as db:
            check = db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check[0] if check else 'no answer'}")
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                return BLANK
            if what == "store":
                if "intents" not in tables:
                    raise sqlite3.DatabaseError("not an spx-bot store")
                used = db.execute("SELECT count(*) FROM intents").fetchone()[0] > 0
                return HISTORY if used else FRESH
            if "meta" not in tables or "positions" not in tables:
                raise sqlite3.DatabaseError("not an spx-bot simulated account")
            used = db.execute("SELECT count(*) FROM meta WHERE key = 'sim_time'").fetchone()[0] > 0
            return HISTORY if used or db.execute("SELECT count(*) FROM positions").fetchone()[0] > 0 else FRESH
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            return HISTORY  # a live writer holds it: not ours to judge now
        raise StateFileError(f"{what} {path} is damaged ({' '.join(str(exc).split())}); "
                             + _RECOVER.format(partner=partner)) from None
    except sqlite3.DatabaseError as exc:
        raise StateFileError(f"{what} {path} is damaged ({' '.join(str(exc).split())}); "
                             + _RECOVER.format(partner=partner)) from None
    except UnicodeDecodeError:  # a damaged page can hand back text that is not UTF-8 (even quick_check's)
        raise StateFileError(f"{what} {path} is damaged (text that is not UTF-8); "
                             + _RECOVER.format(partner=partner)) from None


def check_pair(store_path: str | Path, account_path: str | Path | None) -> None:
    """Refuse a damaged store or account, or one that is missing/empty while its partner has
    history. `account_path` None: no simulated account (a real broker is the store's witness)."""
    store_path = Path(store_path)
    store_has = _history(store_path, "store", f"the simulated account {account_path}" if account_path else "nothing")
    if account_path is None:
        # no partner file to ask (a real broker): zero bytes is never a store SQLite wrote
        if store_has == BLANK and store_path.stat().st_size == 0:
            raise StateFileError(f"store {store_path} is empty (0 bytes): it was truncated or replaced; nothing was"
                                 " changed. Restore it from a backup, or delete it to start a new journal")
        return
    account_path = Path(account_path)
    account_has = _history(account_path, "simulated account", f"the store {store_path}")
    for path, has, partner_path, partner_has, what in (
        (store_path, store_has, account_path, account_has, "store"),
        (account_path, account_has, store_path, store_has, "simulated account"),
    ):
        if partner_has == HISTORY and has == BLANK:
            raise StateFileError(
                f"{what} {path} is empty but {partner_path} has history: it was truncated or replaced; "
                f"nothing was changed. Restore {path} from a backup, or move both files aside to start afresh"
            )
