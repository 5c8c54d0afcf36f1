"""The control socket: one request line in, one response line out, local and 0600 only."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.control import AlreadyRunning, ControlServer, ControlUnavailable, request, request_sync


class FakeHandler:
    """Records calls; `hang` makes status wait forever, as a wedged daemon would."""

    def __init__(self, hang: bool = False):
        self.calls: list[tuple[Any, ...]] = []
        self.hang = hang
        self.halted = False

    async def status(self) -> dict[str, Any]:
        self.calls.append(("status",))
        if self.hang:
            await asyncio.Event().wait()
        return {"halted": self.halted, "pnl": Decimal("12.50")}

    async def kill(self, flatten: bool, reason: str) -> dict[str, Any]:
        self.calls.append(("kill", flatten, reason))
        self.halted = True
        return {"halted": True, "cancelled": ["ic-20220301-0001"]}

    async def resume(self) -> dict[str, Any]:
        self.calls.append(("resume",))
        if not self.halted:
            raise RuntimeError("not halted")
        self.halted = False
        return {"halted": False}


@pytest.fixture
def sock_path():
    """Short on purpose: pytest's tmp_path can exceed the unix socket path limit."""
    directory = tempfile.mkdtemp(prefix="ctl", dir="/tmp")
    yield Path(directory) / "bot.sock"
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def server(sock_path: Path):
    handler = FakeHandler()
    srv = ControlServer(handler, sock_path)
    await srv.start()
    yield srv, handler
    await srv.close()


async def test_status_kill_resume_round_trip(server, sock_path: Path):
    _, handler = server
    assert await request(sock_path, {"cmd": "status"}) == {"ok": True, "result": {"halted": False, "pnl": "12.50"}}
    kill = await request(sock_path, {"cmd": "kill", "flatten": True, "reason": "vol spike"})
    assert kill == {"ok": True, "result": {"halted": True, "cancelled": ["ic-20220301-0001"]}}
    assert await request(sock_path, {"cmd": "resume"}) == {"ok": True, "result": {"halted": False}}
    assert handler.calls == [("status",), ("kill", True, "vol spike"), ("resume",)]


async def test_kill_defaults_to_no_flatten(server, sock_path: Path):
    _, handler = server
    await request(sock_path, {"cmd": "kill"})
    assert handler.calls == [("kill", False, "")]


async def test_handler_errors_and_bad_requests_answer_ok_false(server, sock_path: Path):
    _, handler = server
    failed = await request(sock_path, {"cmd": "resume"})
    assert failed["ok"] is False and "not halted" in failed["error"]
    unknown = await request(sock_path, {"cmd": "reboot"})
    assert unknown["ok"] is False and "unknown cmd" in unknown["error"]
    bad_flag = await request(sock_path, {"cmd": "kill", "flatten": "yes"})
    assert bad_flag["ok"] is False and "flatten" in bad_flag["error"]
    assert ("kill", "yes", "") not in handler.calls
    # the server is still serving after all of that
    assert (await request(sock_path, {"cmd": "status"}))["ok"] is True


async def test_not_json_answers_ok_false(server, sock_path: Path):
    reader, writer = await asyncio.open_unix_connection(sock_path)
    writer.write(b"status please\n")
    answer = await reader.readline()
    writer.close()
    assert b'"ok": false' in answer and b"bad request" in answer


async def test_socket_is_private(server, sock_path: Path):
    st = os.stat(sock_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600


async def test_unavailable_when_no_server(sock_path: Path):
    with pytest.raises(ControlUnavailable, match="not running"):
        await request(sock_path, {"cmd": "status"})


async def test_unavailable_on_a_stale_socket(sock_path: Path):
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))
    stale.close()  # the file stays, nobody listens: what a kill -9 leaves behind
    with pytest.raises(ControlUnavailable, match="stale"):
        await request(sock_path, {"cmd": "status"})


async def test_unavailable_when_the_daemon_hangs(sock_path: Path):
    srv = ControlServer(FakeHandler(hang=True), sock_path, request_timeout=30)
    await srv.start()
    try:
        with pytest.raises(ControlUnavailable, match="did not answer"):
            await request(sock_path, {"cmd": "status"}, timeout=0.2)
    finally:
        await srv.close()


async def test_a_slow_command_gets_an_answer_and_keeps_running(sock_path: Path):
    handler = FakeHandler(hang=True)
    srv = ControlServer(handler, sock_path, request_timeout=0.2)
    await srv.start()
    try:
        answer = await request(sock_path, {"cmd": "status"}, timeout=2)
        assert answer["ok"] is False and "still running" in answer["error"]
        assert (await request(sock_path, {"cmd": "kill"}, timeout=2))["ok"] is True
    finally:
        await srv.close()  # cancels the hung status instead of leaking it


def test_request_sync_outside_a_loop(sock_path: Path):
    with pytest.raises(ControlUnavailable):
        request_sync(sock_path, {"cmd": "status"}, timeout=0.5)


async def test_stale_socket_file_is_replaced(sock_path: Path):
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))
    stale.close()
    srv = ControlServer(FakeHandler(), sock_path)
    await srv.start()
    try:
        assert (await request(sock_path, {"cmd": "status"}))["ok"] is True
    finally:
        await srv.close()


async def test_refuses_to_start_beside_a_live_server(server, sock_path: Path):
    second = ControlServer(FakeHandler(), sock_path)
    with pytest.raises(AlreadyRunning, match="another instance is running"):
        await second.start()
    await second.close()  # never started: harmless, and must not remove the live socket
    assert (await request(sock_path, {"cmd": "status"}))["ok"] is True


async def test_refuses_to_replace_a_file_that_is_not_a_socket(sock_path: Path):
    sock_path.write_text("not a socket")
    with pytest.raises(FileExistsError):
        await ControlServer(FakeHandler(), sock_path).start()
    assert sock_path.read_text() == "not a socket"


async def test_close_twice_is_harmless_and_removes_the_socket(sock_path: Path):
    srv = ControlServer(FakeHandler(), sock_path)
    await srv.start()
    await srv.close()
    await srv.close()
    assert not sock_path.exists()
    with pytest.raises(ControlUnavailable):
        await request(sock_path, {"cmd": "status"}, timeout=0.5)


def test_overlong_socket_path_is_a_clear_error():
    with pytest.raises(ValueError, match="unix socket allows"):
        ControlServer(FakeHandler(), "/tmp/" + "x" * 200)
