"""`spx-bot sim-gateway` as a user runs it, with plain ib_async and ib_insync scripts."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT


@pytest.fixture
def gateway(short_tmp):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = short_tmp / "cfg.toml"
    cfg.write_text(f'[sim]\nstate_path = "{short_tmp}/sim.sqlite"\n[bot]\nlog_path = "{short_tmp}/bot.jsonl"\n'
                   '[market]\nsource = "synthetic"\n')
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "sim-gateway", "--config", str(cfg), "--port", str(port),
                             "--speed", "60", "--start", "2022-03-01"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield port
    proc.terminate()
    assert proc.wait(timeout=10) == 0
    assert "Traceback" not in proc.stderr.read()


@pytest.mark.parametrize("lib", ["ib_async", "ib_insync"])
def test_plain_script_trades_a_condor_on_the_standalone_gateway(gateway, lib):
    r = subprocess.run([sys.executable, "examples/plain_client.py", "--lib", lib, "--port", str(gateway)],
                       cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "connected: server version" in out and "SPX conId 416904" in out
    assert "delta" in out and "Filled" in out
    assert out.count("execution ") >= 4 and out.count("position ") == 4
