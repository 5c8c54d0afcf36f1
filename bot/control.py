"""Local control channel: ask a running daemon for its status, engage or release the kill switch.

One control surface (docs/STYLE.md): the engine implements `ControlHandler` once; this socket,
the CLI and any later hook all call those same three functions.

Local only, by construction: a unix socket whose file is mode 0600, so only the daemon's own
user can halt or resume it; nothing listens on TCP.

Protocol: one JSON request line, one JSON response line, then the connection closes.

    {"cmd": "status" | "kill" | "resume", "flatten": bool, "reason": str}
    {"ok": true, "result": {...}}  or  {"ok": false, "error": "..."}

Results are encoded with `default=str`, so Decimals, dates and times from the store travel as text.

If the daemon does not answer, `request` raises `ControlUnavailable`; the CLI's `kill` then acts
on its own (docs/FAILURES.md, "Kill switch semantics").
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Coroutine, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any, Protocol

import structlog

log = structlog.get_logger(__name__)

MAX_LINE = 1 << 20  # bytes in one request or response line
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes including the final NUL
_LIVENESS_TIMEOUT = 1.0


class ControlUnavailable(Exception):
    """The daemon did not answer: no socket, nobody listening, or no answer in time (hung)."""


class ControlNotAnswering(ControlUnavailable):
    """Something accepted the connection but gave no answer in time: a hung or stopped daemon,
    not an absent one."""


class AlreadyRunning(RuntimeError):
    """Another live daemon listens on the control socket."""


class ControlHandler(Protocol):
    """What the daemon does for each command. Each returns a JSON-able dict."""

    async def status(self) -> dict[str, Any]: ...

    async def kill(self, flatten: bool, reason: str) -> dict[str, Any]:
        """Engage the kill switch: store the halt first, then cancel (and flatten if asked)."""
        ...

    async def resume(self) -> dict[str, Any]:
        """Release the kill switch: the only way a stored halt is cleared."""
        ...


class ControlServer:
    """Serves `ControlHandler` on a unix socket.

    A command that outlives `request_timeout` is not cancelled: a kill must not stop half way
    because a client gave up waiting. The client gets an error saying it is still running, and
    the command finishes in the daemon; `close` cancels whatever is still running then."""

    def __init__(self, handler: ControlHandler, socket_path: str | Path, request_timeout: float = 10.0):
        self._handler = handler
        self.socket_path = _checked_socket_path(socket_path)
        self.request_timeout = request_timeout
        self._server: asyncio.Server | None = None
        self._inode: int | None = None
        self._commands: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Listen. Removes a socket file left by a crashed daemon; raises `AlreadyRunning` if a
        live daemon answers on it (asyncio would otherwise silently take the path over)."""
        if self._server is not None:
            raise RuntimeError("control server already started")
        path = self.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        await _remove_stale_socket(path)
        # The umask makes bind() create the file 0600, so there is no moment at which another
        # user could connect; chmod and the check below are the belt and braces. umask is
        # process-wide, so a file created elsewhere meanwhile only comes out more private.
        previous = os.umask(0o177)
        try:
            server = await asyncio.start_unix_server(self._serve, path=path, limit=MAX_LINE)
        finally:
            os.umask(previous)
        os.chmod(path, 0o600)
        st = os.stat(path)
        if stat.S_IMODE(st.st_mode) != 0o600:
            server.close()
            raise PermissionError(f"control socket {path} has mode {stat.S_IMODE(st.st_mode):o}, expected 600")
        self._server, self._inode = server, st.st_ino
        log.info("control.listening", socket=str(path))

    async def close(self) -> None:
        """Stop listening, cancel commands still running, remove the socket file. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in self._commands:
            task.cancel()
        if self._commands:
            _, pending = await asyncio.wait(self._commands, timeout=self.request_timeout)
            if pending:
                log.warning("control.stragglers", count=len(pending))
        with suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), self.request_timeout)
        # Only our own file: a newer daemon may already have bound the same path.
        with suppress(FileNotFoundError):
            if os.stat(self.socket_path).st_ino == self._inode:
                self.socket_path.unlink()
        log.info("control.closed", socket=str(self.socket_path))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            response = await self._respond(reader)
            writer.write(json.dumps(response, default=str).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), self.request_timeout)
        except (ConnectionError, TimeoutError):
            pass  # the client went away; a command it started still runs to completion
        finally:
            writer.close()
            with suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), self.request_timeout)

    async def _respond(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            line = await asyncio.wait_for(reader.readline(), self.request_timeout)
        except TimeoutError:
            return _error(f"no request line within {self.request_timeout:g}s")
        except ValueError:
            return _error(f"request line longer than {MAX_LINE} bytes")
        try:
            request = json.loads(line)
            cmd, call = self._command(request)
        except ValueError as exc:
            return _error(f"bad request: {' '.join(str(exc).split())[:200]}")
        except RecursionError:
            return _error("bad request: nested too deeply")
        task = asyncio.create_task(call, name=f"control.{cmd}")
        self._commands.add(task)
        task.add_done_callback(self._command_done)
        # asyncio.wait neither cancels the command on timeout nor raises its outcome here.
        done, _ = await asyncio.wait({task}, timeout=self.request_timeout)
        if not done:
            return _error(f"{cmd} still running after {self.request_timeout:g}s; it continues in the daemon")
        if task.cancelled():
            return _error(f"{cmd} cancelled: the daemon is shutting down")
        if (exc := task.exception()) is not None:  # logged by _command_done
            return _error(f"{cmd} failed: {type(exc).__name__}: {exc}")
        return {"ok": True, "result": task.result()}

    def _command(self, request: object) -> tuple[str, Coroutine[Any, Any, dict[str, Any]]]:
        """Validate a request and pick the handler call. Raises ValueError with what is wrong."""
        if not isinstance(request, dict):
            raise ValueError("expected a JSON object")
        cmd = request.get("cmd")
        if cmd == "status":
            return cmd, self._handler.status()
        if cmd == "resume":
            return cmd, self._handler.resume()
        if cmd == "kill":
            flatten, reason = request.get("flatten", False), request.get("reason", "")
            if not isinstance(flatten, bool):
                raise ValueError("flatten must be true or false")
            if not isinstance(reason, str):
                raise ValueError("reason must be a string")
            return cmd, self._handler.kill(flatten=flatten, reason=reason)
        raise ValueError(f"unknown cmd {cmd!r}; expected status, kill or resume")

    def _command_done(self, task: asyncio.Task[Any]) -> None:
        """The one place a failed command is logged, whether or not its client still waited."""
        self._commands.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("control.failed", command=task.get_name(), error=repr(task.exception()))


async def request(socket_path: str | Path, payload: Mapping[str, Any], timeout: float = 3.0) -> dict[str, Any]:
    """Send one command, return the daemon's response (`{"ok": ..., ...}`) as it came.

    Raises `ControlUnavailable` when the daemon cannot be reached or does not answer within
    `timeout`: a hung daemon must not hang the operator's `kill`."""
    path = _checked_socket_path(socket_path)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(path, limit=MAX_LINE)
            try:
                writer.write(json.dumps(payload).encode() + b"\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
                with suppress(ConnectionError):
                    await writer.wait_closed()
        response = json.loads(line)
    except FileNotFoundError:
        raise ControlUnavailable(f"no control socket at {path}: the bot is not running") from None
    except ConnectionRefusedError:
        raise ControlUnavailable(f"nothing listens on {path}: the bot is not running (stale socket)") from None
    except TimeoutError:
        raise ControlNotAnswering(f"the bot did not answer on {path} within {timeout:g}s (hung?)") from None
    except OSError as exc:
        raise ControlUnavailable(f"cannot reach the bot on {path}: {exc.strerror or exc}") from None
    except ValueError:  # empty (closed without answering), over-long, or not JSON
        raise ControlUnavailable(f"the bot on {path} gave no readable answer") from None
    if not isinstance(response, dict) or "ok" not in response:
        raise ControlUnavailable(f"the bot on {path} gave no readable answer")
    return response


def request_sync(socket_path: str | Path, payload: Mapping[str, Any], timeout: float = 3.0) -> dict[str, Any]:
    """`request` for the CLI, which has no event loop of its own."""
    return asyncio.run(request(socket_path, payload, timeout))


async def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file nobody listens on (left by a crash); refuse to touch a live one or
    a file that is not a socket."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket; refusing to replace it")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), _LIVENESS_TIMEOUT)
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)
        return
    except TimeoutError:
        pass  # a listener with a full backlog: alive
    else:
        writer.close()
        with suppress(ConnectionError):
            await writer.wait_closed()
    raise AlreadyRunning(f"another instance is running: a daemon answers on {path}")


def _checked_socket_path(path: str | Path) -> Path:
    """A clear error for a path unix sockets cannot hold, instead of a bare OSError at bind time."""
    checked = Path(path)
    size = len(os.fsencode(checked))
    if size > _SUN_PATH_MAX:
        raise ValueError(
            f"control socket path is {size} bytes, over the {_SUN_PATH_MAX} a unix socket allows: {checked}"
        )
    return checked


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}
