"""`spx-bot logs [-f] [--event GLOB]`: the JSON-lines log, one readable line per event.

    2022-03-01T20:30:00.000Z info  condor.opened  order_ref=c-1 credit=1.25

The log is an interface (docs/DESIGN.md), but this reader must still survive whatever a
crash or an editor leaves in the file: lines that are not JSON events are skipped, counted
and reported once at the end, on stderr, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from fnmatch import fnmatchcase
from pathlib import Path
from textwrap import indent
from typing import Any, BinaryIO, NoReturn, TextIO

POLL_S = 0.5  # follow mode: how often to look for new lines, rotation or truncation
_HEAD = ("timestamp", "level", "event", "exception")


def format_event(event: dict[str, Any]) -> str:
    """`<timestamp> <level> <event>  key=value ...`, then an indented traceback if any."""
    fields = " ".join(f"{key}={_value(value)}" for key, value in event.items() if key not in _HEAD)
    text = f"{event.get('timestamp', '-')} {event.get('level', '-'):<5} {event['event']}"
    if fields:
        text += "  " + fields
    if "exception" in event:
        text += "\n" + indent(str(event["exception"]).rstrip("\n"), "    ")
    return text


def _value(value: Any) -> str:
    """Plain words stay bare; anything that would blur the key=value layout is JSON."""
    if isinstance(value, str) and value and not any(c.isspace() or c in "\"'=" for c in value):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _Printer:
    """Parses, filters and prints lines; counts the malformed ones."""

    def __init__(self, out: TextIO, event_glob: str | None) -> None:
        self._out = out
        self._glob = event_glob
        self.malformed = 0

    def line(self, raw: bytes) -> None:
        if not raw.strip():
            return
        try:
            event = json.loads(raw)
        except ValueError:  # also invalid UTF-8
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            self.malformed += 1
            return
        if self._glob is None or fnmatchcase(event["event"], self._glob):
            print(format_event(event), file=self._out, flush=True)

    def feed(self, data: bytes) -> bytes:
        """Print the complete lines in `data`; return the unfinished tail to feed again."""
        *lines, rest = data.split(b"\n")
        for raw in lines:
            self.line(raw)
        return rest


def show_logs(
    path: str | Path,
    follow: bool = False,
    event_glob: str | None = None,
    out: TextIO | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print the log readably (to `out`, default stdout); with `follow`, keep printing
    appended lines until Ctrl-C. Exit code: 0, or 2 when the file cannot be opened.
    `sleep` is the follow mode's wait between polls, injectable so tests need no timing."""
    path = Path(path)
    printer = _Printer(sys.stdout if out is None else out, event_glob)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        print(f"{path}: file not found", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        if follow:
            _follow(path, fh, printer, sleep)
        else:
            for raw in fh:
                printer.line(raw)
    except KeyboardInterrupt:
        pass
    finally:
        fh.close()
        if printer.malformed:
            print(f"{path}: skipped {printer.malformed} malformed line(s)", file=sys.stderr)
    return 0


def _follow(path: Path, fh: BinaryIO, printer: _Printer, sleep: Callable[[float], None]) -> NoReturn:
    """Poll for appended lines until KeyboardInterrupt, following the path across rotation
    (a new file under the same name) and truncation (the file shrank). Closes what it opens."""
    pending = b""
    try:
        while True:
            chunk = fh.read()
            if chunk:
                pending = printer.feed(pending + chunk)
                continue
            sleep(POLL_S)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                continue  # between rotation's rename and the new file's creation
            if current.st_ino != os.fstat(fh.fileno()).st_ino:
                # Rotated: finish the old file, its last line even without a newline.
                printer.line(printer.feed(pending + fh.read()))
                pending = b""
                try:
                    new = open(path, "rb")
                except FileNotFoundError:
                    continue
                fh.close()
                fh = new
            elif current.st_size < fh.tell():
                fh.seek(0)
                pending = b""
    finally:
        fh.close()
