"""Which daemons run for this user: a folder of one small JSON file per running daemon.

Why (FAILURES.md 27): `spx-bot kill` without `--config` must reach the daemon the operator
means, never silently act on the simulator's config while a paper daemon keeps trading. Each
daemon writes `<pid>.json` (its config file, control socket and store) into a per-user runtime
folder when it starts and removes it when it stops; entries whose process is gone (kill -9)
are pruned by whoever reads the folder next.

The folder is `$XDG_RUNTIME_DIR/spx-bot` when that is set, else `/tmp/spx-bot-<uid>`; it is
mode 0700 and must belong to this user (a folder another user made in /tmp is refused).
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path


class RegistryError(Exception):
    """The runtime folder cannot be used safely; str() is one line."""


@dataclass(frozen=True)
class Entry:
    pid: int
    config: str
    control_socket: str
    store_path: str

    def describe(self) -> str:
        return f"pid {self.pid} --config {self.config}"


def runtime_dir() -> Path:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
        return Path(xdg) / "spx-bot"
    return Path(tempfile.gettempdir()) / f"spx-bot-{os.getuid()}"


def _folder(create: bool) -> Path | None:
    folder = runtime_dir()
    if create:
        try:
            folder.mkdir(mode=0o700, parents=False, exist_ok=True)
        except OSError as exc:
            raise RegistryError(f"cannot create the daemon registry {folder}: {exc.strerror}") from None
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise RegistryError(f"daemon registry {folder} is not a folder of this user; remove it")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(folder, 0o700)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's: not ours, but not stale either
    return True


def register(config: str | Path, control_socket: str | Path, store_path: str | Path, pid: int | None = None) -> Path:
    """Announce a running daemon; returns the entry's path (for `unregister`)."""
    folder = _folder(create=True)
    assert folder is not None
    pid = os.getpid() if pid is None else pid
    entry = {"pid": pid, "config": os.path.abspath(config), "control_socket": os.path.abspath(control_socket),
             "store_path": os.path.abspath(store_path)}
    path = folder / f"{pid}.json"
    tmp = folder / f".{pid}.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(entry, fh)
    os.replace(tmp, path)
    return path


def unregister(path: Path) -> None:
    path.unlink(missing_ok=True)


def running() -> list[Entry]:
    """The daemons whose process is alive, oldest pid first; stale entries are removed."""
    folder = _folder(create=False)
    if folder is None:
        return []
    entries = []
    for path in sorted(folder.glob("*.json")):
        try:
            raw = json.loads(path.read_text())
            entry = Entry(int(raw["pid"]), str(raw["config"]), str(raw["control_socket"]), str(raw["store_path"]))
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # unreadable: written half by a crash
            continue
        if not _alive(entry.pid):
            path.unlink(missing_ok=True)
            continue
        entries.append(entry)
    return sorted(entries, key=lambda e: e.pid)


def by_socket(control_socket: str | Path) -> Entry | None:
    want = os.path.abspath(control_socket)
    return next((e for e in running() if e.control_socket == want), None)
