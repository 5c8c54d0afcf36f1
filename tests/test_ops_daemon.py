"""The daemon run unattended, as a real process over the simulated gateway: the gateway
restarts itself on schedule (like IB Gateway's nightly restart), inside the maintenance
window (expected: no alert, trading resumes, reconcile clean) and outside it (the webhook gets
the alert, entries halt, then resume once reconnected and reconciled); notifications for a
condor opened and closed and the kill switch; sd_notify messages on a NOTIFY_SOCKET.

The simulated clock runs at 180 simulated seconds per real second from 15:10 New York; the
entry is moved to 15:45 so the outage (15:14 + 7 simulated minutes) and IBBroker's reconnect
backoff (1, 2, 4 real seconds) end well before it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import ROOT

BIN = [sys.executable, "-m", "bot.cli"]


class Webhook:
    """A local webhook receiver (what Apprise's json:// posts to), on loopback."""

    def __init__(self):
        self.posts: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.posts.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def titles(self) -> list[str]:
        return [p["title"] for p in self.posts]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class NotifyListener:
    """What systemd listens on: a datagram socket named by NOTIFY_SOCKET."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while not self._stop:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (TimeoutError, OSError):
                continue

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def write_config(tmp: Path, webhook_url: str, maintenance: str, events: str) -> Path:
    path = tmp / "cfg.toml"
    path.write_text(f"""
[bot]
log_path = "{tmp}/bot.jsonl"
store_path = "{tmp}/bot.sqlite"
control_socket = "{tmp}/ctl.sock"
console_log = false
[broker]
kind = "sim-gateway"
[sim]
state_path = "{tmp}/sim.sqlite"
speed = 180
[market]
source = "synthetic"
[condor]
credit_floor = 0.05
entry_time = "15:45"
[hedge]
enabled = false
[http]
enabled = true
port = 0
[[notify.targets]]
url = "{webhook_url}"
events = {events}
[maintenance]
{maintenance}
alert_after_s = 120
halt_entries_after_s = 300
check_interval_s = 5
[sim_gateway]
restart_at = "15:14"
restart_down_s = 420
""")
    return path


def start_daemon(cfg: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([*BIN, "run", "--config", str(cfg), "--start", "2022-03-01T15:10"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def events(tmp: Path) -> list[dict]:
    """Every event, across a rotation (bot.jsonl.1 then bot.jsonl); each line must be whole JSON."""
    out = []
    for path in (tmp / "bot.jsonl.1", tmp / "bot.jsonl"):
        if path.exists():
            out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return out


def named(evs, name, **match):
    return [e for e in evs if e["event"] == name and all(e.get(k) == v for k, v in match.items())]


def wait_for(pred, timeout=60.0, what="condition", proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = pred()
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"daemon exited ({proc.returncode}) waiting for {what}: {proc.stderr.read()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError(f"{what}: not met within {timeout}s")


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_restart_inside_the_window_is_expected_no_alert_trading_resumes(short_tmp, webhook):
    """The gateway restarts at 15:14 inside a 15:12-15:32 window: broker.maintenance (expected),
    no broker.down, nothing posted for the broker class, reconnect, a clean reconcile, and the
    15:45 entry trades. systemd hears READY, STATUS and WATCHDOG meanwhile."""
    cfg = write_config(short_tmp, webhook.url,
                       'windows = [{ days = ["tue"], start = "15:12", minutes = 20 }]',
                       '["broker", "alert", "fatal", "mismatch"]')
    listener = NotifyListener(short_tmp / "notify.sock")
    proc = start_daemon(cfg, env={"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "1000000"})
    try:
        wait_for(lambda: named(events(short_tmp), "gateway.restarting"), what="the scheduled restart", proc=proc)
        wait_for(lambda: named(events(short_tmp), "broker.connected", reconnected=True), what="the reconnect",
                 proc=proc)
        wait_for(lambda: named(events(short_tmp), "condor.opened"), timeout=90, what="the 15:45 entry", proc=proc)
    finally:
        stop(proc)
        listener.close()
    evs = events(short_tmp)
    assert proc.returncode == 0, proc.stderr.read()[-2000:]
    [maintenance] = named(evs, "broker.maintenance")
    assert maintenance["expected"] is True and "15:12" in maintenance["window_start"].replace("T", " ")
    [restored] = named(evs, "broker.restored")
    assert restored["expected"] is True and restored["entries_halted"] is False
    assert not named(evs, "broker.down") and not named(evs, "broker.entries_halted")
    reconciles = named(evs, "reconcile.done")
    assert len(reconciles) == 2 and all(r["mismatches"] == 0 for r in reconciles)
    assert not named(evs, "reconcile.mismatch")
    names = [e["event"] for e in evs]
    assert names.index("gateway.restarting") < names.index("broker.disconnected") \
        < names.index("broker.maintenance") < names.index("reconcile.done", names.index("broker.disconnected")) \
        < names.index("condor.opened")
    assert webhook.posts == []  # no alert; condor events are not subscribed by this target
    # systemd: READY first with a status, a status for the outage, watchdog pings, STOPPING at the end
    msgs = listener.messages
    print("sd_notify messages:", json.dumps(msgs[:6] + ["..."] + msgs[-2:], indent=1))
    assert msgs[0] == f"READY=1\nSTATUS=connecting\nMAINPID={proc.pid}"

    assert "WATCHDOG=1" in msgs
    assert any(m == "STATUS=broker down (maintenance window)" for m in msgs)
    assert any(m == "STATUS=connected" for m in msgs[1:])
    assert msgs[-1].startswith("STOPPING=1")


def test_restart_outside_the_window_alerts_halts_entries_then_resumes(short_tmp, webhook):
    """The same restart with the window elsewhere: after 120 s the webhook gets broker.down,
    after 300 s entries halt (/health: 503, entries_blocked), the reconnect and reconcile release
    them, and the 15:45 entry trades. Then kill --flatten: the webhook gets the condor opened,
    closed with its P&L, and the kill switch."""
    cfg = write_config(short_tmp, webhook.url,
                       'windows = [{ days = ["mon", "tue", "wed", "thu", "fri"], start = "23:40", minutes = 35 }]',
                       '["broker", "alert", "fatal", "mismatch", "condor", "killswitch"]')
    proc = start_daemon(cfg)
    seen: list[tuple[int, dict]] = []
    try:
        listening = wait_for(lambda: named(events(short_tmp), "http.listening"), what="http.listening", proc=proc)
        url = listening[0]["url"]
        assert url.startswith("http://127.0.0.1:")
        # logrotate: move the file away, SIGHUP; the daemon writes on into a new bot.jsonl
        os.rename(short_tmp / "bot.jsonl", short_tmp / "bot.jsonl.1")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: (short_tmp / "bot.jsonl").exists(), what="the reopened log", proc=proc)

        def blocked():
            seen.append(get(url + "/health"))
            return seen[-1][1]["entries_blocked"]

        wait_for(blocked, what="entries halted", proc=proc)
        wait_for(lambda: named(events(short_tmp), "broker.entries_resumed"), what="entries resumed", proc=proc)
        seen.append(get(url + "/health"))
        wait_for(lambda: named(events(short_tmp), "condor.opened"), timeout=90, what="the 15:45 entry", proc=proc)
        health = subprocess.run([*BIN, "health", "--config", str(cfg)], cwd=ROOT, capture_output=True, text=True,
                                timeout=60)
        assert health.returncode == 0 and json.loads(health.stdout)["connected"] is True, health.stdout
        kill = subprocess.run([*BIN, "kill", "--flatten", "--reason", "test: flatten", "--config", str(cfg)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert kill.returncode == 0, kill.stderr
        wait_for(lambda: len(webhook.posts) >= 5, what="the condor and kill notifications")
    finally:
        stop(proc)
    evs = events(short_tmp)
    assert proc.returncode == 0, proc.stderr.read()[-2000:]
    assert not named(evs, "broker.maintenance")
    reopened = json.loads((short_tmp / "bot.jsonl").read_text().splitlines()[0])
    assert reopened["event"] == "log.reopened" and len(named(evs, "bot.started")) == 1
    [down] = named(evs, "broker.down")
    [halted] = named(evs, "broker.entries_halted")
    [resumed] = named(evs, "broker.entries_resumed")
    names = [e["event"] for e in evs]
    i_resumed = names.index("broker.entries_resumed")
    assert names.index("broker.down") < names.index("broker.entries_halted") < names.index("broker.connected", names.index("broker.down")) \
        < i_resumed < names.index("condor.opened")
    assert names[i_resumed - 1] == "reconcile.done" or "reconcile.done" in names[names.index("broker.entries_halted"):i_resumed]
    assert down["down_s"] >= 120 and halted["down_s"] >= 300
    codes = [(code, h["entries_blocked"]) for code, h in seen]
    assert any(code == 503 and blocked for code, blocked in codes), codes
    assert seen[-1][0] == 200 and seen[-1][1]["entries_blocked"] == {}
    titles = webhook.titles()
    print("webhook posts:", json.dumps(webhook.posts, indent=1))
    assert titles[:2] == ["spx-bot: broker.down", "spx-bot: broker.entries_halted"]
    assert "spx-bot: broker.entries_resumed" in titles
    for title in ("spx-bot: condor.opened", "spx-bot: condor.closed", "spx-bot: killswitch.engaged"):
        assert title in titles
    closed = next(p for p in webhook.posts if p["title"] == "spx-bot: condor.closed")
    [closed_event] = named(evs, "condor.closed")
    assert f"P&L {closed_event['pnl']}" in closed["message"] and "kill --flatten" in closed["message"]
    assert next(p for p in webhook.posts if p["title"] == "spx-bot: broker.down")["type"] == "failure"
