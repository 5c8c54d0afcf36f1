"""Unattended-operation pieces one by one: maintenance windows, the supervisor's outage rules,
notifications against a local webhook, sd_notify on a listening socket, the HTTP endpoint,
metrics, log reopening across rotation, config validation and the CLI's polish."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
import structlog
from structlog.testing import capture_logs

from bot.calendar import NY
from bot.clock import SimClock
from bot.config import Config, MaintenanceWindow, NotifyConfig, check_config
from bot.log import get_logger, reopen_log, setup_logging
from bot.ops.http import HttpServer
from bot.ops.maintenance import next_daily, window_at
from bot.ops.metrics import render as render_metrics
from bot.ops.notify import Notifier, NotifyError, render
from bot.ops.supervisor import BROKER_DOWN, ControlSurface, Supervisor
from bot.ops.systemd import SdNotifier

from conftest import ROOT
from test_ops_daemon import NotifyListener, Webhook

WINDOWS = (MaintenanceWindow(start="23:40", minutes=35), MaintenanceWindow(days=("sun",), start="00:15", minutes=165))


@pytest.fixture(autouse=True)
def structlog_defaults():
    before = structlog.get_config()
    structlog.reset_defaults()
    yield
    structlog.configure(**before)


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


def ny(day: str, hhmm: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=NY)


# --- maintenance windows ---------------------------------------------------------------------------
@pytest.mark.parametrize("moment, inside", [
    (ny("2022-03-01", "23:39"), False),
    (ny("2022-03-01", "23:40"), True),
    (ny("2022-03-02", "00:10"), True),  # past midnight: yesterday's window
    (ny("2022-03-02", "00:15"), False),  # its end is exclusive; not a Sunday
    (ny("2022-03-06", "02:00"), True),  # Sunday: the weekly re-authentication
    (ny("2022-03-06", "03:00"), False),
    (ny("2022-03-07", "02:00"), False),  # Monday
])
def test_window_at(moment, inside):
    assert (window_at(moment, WINDOWS, "America/New_York") is not None) is inside


def test_window_bounds_and_next_daily():
    start, end = window_at(ny("2022-03-02", "00:10"), WINDOWS, "America/New_York")
    assert (start, end) == (ny("2022-03-01", "23:40"), ny("2022-03-02", "00:15"))
    assert next_daily(ny("2022-03-01", "23:45"), "23:45", ("tue", "wed"), "America/New_York") == ny("2022-03-02", "23:45")
    assert next_daily(ny("2022-03-04", "10:00"), "23:45", ("sun",), "America/New_York") == ny("2022-03-06", "23:45")


# --- the supervisor's rules -------------------------------------------------------------------------
class FakeStore:
    def halted(self):
        return False, ""

    def get_control(self, key):
        return ""


def supervisor(clock, **maintenance):
    cfg = Config.model_validate({"maintenance": {"windows": [{"days": ["tue"], "start": "15:00", "minutes": 20}],
                                                 "alert_after_s": 120, "halt_entries_after_s": 300, **maintenance}})
    broker = SimpleNamespace(connected=True, name="fake")
    engine = SimpleNamespace(entry_blockers={}, store=FakeStore(), last_loop=None)
    return Supervisor(cfg, engine, broker, clock, structlog.get_logger(), sd=SdNotifier({})), broker, engine


async def test_outage_inside_window_is_expected_and_outside_alerts_then_halts_until_reconciled():
    clock = SimClock(ny("2022-03-01", "15:00"), None)
    sup, broker, engine = supervisor(clock)
    sup.start(watch=False)
    with capture_logs() as logs:
        sup.check(clock.now())  # connected
        broker.connected = False
        for minute in range(1, 30):  # down from 15:01; the window ends 15:20
            await clock.advance_to(ny("2022-03-01", "15:00") + timedelta(minutes=minute))
            sup.check(clock.now())
        names = [e["event"] for e in logs]
        assert names.count("broker.maintenance") == 1
        # outside since 15:20: alert at 15:22, halt at 15:25
        [down] = [e for e in logs if e["event"] == "broker.down"]
        assert down["since"].startswith("2022-03-01T15:20") and down["down_s"] == 120
        assert BROKER_DOWN in engine.entry_blockers
        assert sup.health()["healthy"] is False and sup.health()["entries_blocked"]
        broker.connected = True
        await clock.advance_to(ny("2022-03-01", "15:31"))
        sup.check(clock.now())
        assert BROKER_DOWN in engine.entry_blockers  # connected, not yet reconciled
        sup({"event": "reconcile.done"})
        await asyncio.sleep(0)
        assert engine.entry_blockers == {}
    names = [e["event"] for e in logs]
    assert names.index("broker.down") < names.index("broker.entries_halted") < names.index("broker.restored") \
        < names.index("broker.entries_resumed")
    await sup.close()


async def test_short_outage_outside_window_neither_alerts_nor_halts():
    clock = SimClock(ny("2022-03-01", "10:00"), None)
    sup, broker, engine = supervisor(clock)
    with capture_logs() as logs:
        sup.check(clock.now())
        broker.connected = False
        for t in ("10:01", "10:02"):  # 60 s < alert_after 120
            await clock.advance_to(ny("2022-03-01", t))
            sup.check(clock.now())
        assert sup.health()["healthy"] is False  # disconnected outside a window: 503 meanwhile
        broker.connected = True
        await clock.advance_to(ny("2022-03-01", "10:03"))
        sup.check(clock.now())
    assert [e["event"] for e in logs] == ["broker.restored"] and engine.entry_blockers == {}
    assert sup.health()["healthy"] is True


def test_counters_from_events():
    sup, _, _ = supervisor(SimClock(ny("2022-03-01", "10:00"), None))
    for e in [{"event": "order.submitted"}, {"event": "order.filled"}, {"event": "broker.error", "code": 2104},
              {"event": "broker.connected", "reconnected": True}, {"event": "bot.fatal", "error": "x"},
              {"event": "signal.evaluated", "vix": 21.5, "rsi": 55.0, "macd": 0.1, "signal_line": 0.2, "tier": 2,
               "multiplier": 1.25, "activation": False}]:
        sup(e)
    c = sup.counters()
    assert c["orders"] == {"submitted": 1, "filled": 1} and c["broker_errors"] == {"2104": 1}
    assert c["reconnects"] == 1 and c["signal"]["vix"] == 21.5
    assert sup.health()["reasons"] == ["fatal: x"]


# --- notifications ---------------------------------------------------------------------------------
def test_render_condor_and_kill():
    title, body, kind = render({"event": "condor.closed", "condor_id": "ic-1", "reason": "take_profit", "pnl": "512.4",
                                "credit": "3.2", "close_price": "1.6", "quantity": 4})
    assert title == "spx-bot: condor.closed" and "P&L 512.4" in body and kind == "success"
    _, body, kind = render({"event": "killswitch.engaged", "reason": "operator", "cancelled": ["a"], "remaining": []})
    assert body.startswith("KILL SWITCH ENGAGED: operator") and kind == "warning"


async def test_notifier_delivers_to_the_webhook_filters_and_rate_limits(webhook):
    cfg = NotifyConfig(targets=[{"url": webhook.url, "events": ["condor", "fatal"]}], max_per_hour=2)
    n = Notifier(cfg, structlog.get_logger())
    n.start()
    n({"event": "condor.opened", "condor_id": "ic-1", "quantity": 2, "credit": "3.1"})
    n({"event": "hedge.bought", "layer": "front"})  # class not subscribed
    n({"event": "order.filled"})  # not a notification
    n({"event": "condor.closed", "condor_id": "ic-1", "pnl": "-10"})
    n({"event": "condor.opened", "condor_id": "ic-2"})  # third condor message this hour: dropped
    n({"event": "bot.fatal", "error": "store not writable"})
    await n.close()
    assert [p["title"] for p in webhook.posts] == ["spx-bot: condor.opened", "spx-bot: condor.closed",
                                                  "spx-bot: bot.fatal"]
    assert webhook.posts[2]["type"] == "failure" and "store not writable" in webhook.posts[2]["message"]
    assert n.sent == {"condor": 2, "fatal": 1} and n.dropped == {"condor": 1}


async def test_notifier_failure_is_logged_never_raised():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    n = Notifier(NotifyConfig(targets=[{"url": f"json://127.0.0.1:{port}/x"}], timeout_s=5), structlog.get_logger())
    n.start()
    with capture_logs() as logs:
        n({"event": "bot.fatal", "error": "boom"})
        await n.close()
    assert n.failed == {"fatal": 1}
    assert [e["event"] for e in logs] == ["notify.failed"]


async def test_notifier_never_blocks_the_caller():
    """A full queue drops (and counts); submitting is synchronous and returns at once."""
    n = Notifier(NotifyConfig(targets=[{"url": "json://127.0.0.1:9/x"}], queue_size=1, max_per_hour=100),
                 structlog.get_logger())
    n.start()
    n._worker.cancel()  # nobody delivers: the queue fills
    for _ in range(5):
        n({"event": "hedge.alert", "reason": "x"})
    assert n.dropped == {"alert": 4}
    n._worker = None


def test_bad_target_and_url_file(short_tmp):
    with pytest.raises(NotifyError):
        Notifier(NotifyConfig(targets=[{"url": "nosuchscheme://x"}]), None)
    secret = short_tmp / "url"
    secret.write_text("json://127.0.0.1:9/x\n")
    assert Notifier(NotifyConfig(targets=[{"url_file": str(secret)}]), None).enabled
    with pytest.raises(NotifyError, match="url_file"):
        Notifier(NotifyConfig(targets=[{"url_file": str(short_tmp / "missing")}]), None)


# --- sd_notify ---------------------------------------------------------------------------------------
def test_sd_notify_messages_reach_the_listener(short_tmp):
    listener = NotifyListener(short_tmp / "n.sock")
    try:
        sd = SdNotifier({"NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "30000000"})
        assert sd.enabled and sd.watchdog_s == 30
        assert sd.ready("connecting") and sd.status("connected") and sd.watchdog() and sd.stopping()
        for _ in range(100):
            if len(listener.messages) == 4:
                break
            threading.Event().wait(0.02)
    finally:
        listener.close()
    assert listener.messages == [f"READY=1\nSTATUS=connecting\nMAINPID={os.getpid()}", "STATUS=connected",
                                 "WATCHDOG=1", "STOPPING=1\nSTATUS=stopping"]


def test_sd_notify_without_systemd_is_a_no_op():
    sd = SdNotifier({})
    assert not sd.enabled and sd.watchdog_s is None and sd.ready("x") is False
    assert SdNotifier({"NOTIFY_SOCKET": "@abstract", "WATCHDOG_USEC": "5", "WATCHDOG_PID": "1"}).watchdog_s is None


# --- HTTP --------------------------------------------------------------------------------------------
class FakeSurface:
    def __init__(self):
        self.healthy = True
        self.calls = 0

    def health(self):
        return {"healthy": self.healthy, "reasons": [] if self.healthy else ["broker disconnected"],
                "connected": self.healthy, "entries_blocked": {}}

    async def status(self):
        self.calls += 1
        return {"halted": False, "account": {"net_liquidation": "1000000.5", "cash": "990000"},
                "pnl": {"realized": "12.5", "unrealized": "-3"}, "open_condors": [{}], "working_orders": [],
                "hedge": {"tier": 2, "activated": False,
                          "layers": {"front": {"held": 4, "short": 0, "market_value": "1250", "unrealized_pnl": "50",
                                               "realized_pnl": "0"}}},
                "health": self.health(),
                "ops": {"orders": {"filled": 3}, "broker_errors": {"1100": 1}, "reconnects": 2, "ib_messages_sent": 99,
                        "ib_messages_per_s": 4.5, "signal": {"vix": 21.0, "rsi": 61.2, "macd": 0.3},
                        "notifications": {"sent": {"condor": 2}}}}


async def test_http_health_metrics_read_only(short_tmp):
    surface = FakeSurface()
    cfg = Config.model_validate({"http": {"enabled": True, "port": 0}}).http
    server = HttpServer(cfg, surface, structlog.get_logger())
    with capture_logs() as logs:
        url = await server.start()
    assert logs[0]["event"] == "http.listening" and logs[0]["url"] == url and url.startswith("http://127.0.0.1:")
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/health") as r:
                assert r.status == 200 and (await r.json())["healthy"] is True
            surface.healthy = False
            async with s.get(url + "/health") as r:
                assert r.status == 503 and (await r.json())["reasons"] == ["broker disconnected"]
            async with s.get(url + "/metrics") as r:
                text = await r.text()
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            for method in ("POST", "PUT", "DELETE", "PATCH"):
                async with s.request(method, url + "/health") as r:
                    assert r.status == 405
            async with s.post(url + "/kill") as r:
                assert r.status in (404, 405)
    finally:
        await server.close()
    for line in ("spxbot_net_liquidation_dollars 1.0000005e+06", "spxbot_realized_pnl_dollars 12.5",
                 "spxbot_open_condors 1.0", 'spxbot_hedge_contracts{layer="front",side="long"} 4.0',
                 'spxbot_hedge_value_dollars{layer="front"} 1250.0', "spxbot_vix 21.0", "spxbot_vix_rsi 61.2",
                 "spxbot_hedge_tier 2.0", 'spxbot_orders_total{outcome="filled"} 3.0',
                 'spxbot_broker_errors_total{code="1100"} 1.0', "spxbot_reconnects_total 2.0",
                 "spxbot_ib_messages_per_second 4.5", 'spxbot_notifications_total{class="condor",result="sent"} 2.0',
                 "spxbot_healthy 0.0"):
        assert line in text, line
    assert surface.calls == 1  # /metrics read the status once; /health read no broker state


async def test_http_bearer_token(short_tmp):
    token_file = short_tmp / "token"
    token_file.write_text("s3cret-token-0123456789\n")
    cfg = Config.model_validate({"http": {"enabled": True, "port": 0, "host": "127.0.0.1",
                                          "token_file": str(token_file)}}).http
    server = HttpServer(cfg, FakeSurface(), structlog.get_logger())
    url = await server.start()
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/health") as r:
                assert r.status == 401
            async with s.get(url + "/health", headers={"Authorization": "Bearer wrong"}) as r:
                assert r.status == 401
            async with s.get(url + "/health", headers={"Authorization": "Bearer s3cret-token-0123456789"}) as r:
                assert r.status == 200
    finally:
        await server.close()


async def test_control_surface_adds_health_to_the_engine_status():
    sup, _, engine = supervisor(SimClock(ny("2022-03-01", "10:00"), None))

    async def status():
        return {"halted": False}

    engine.status = status
    out = await ControlSurface(engine, sup).status()
    assert out["health"]["connected"] is True and "orders" in out["ops"]


# --- log rotation ------------------------------------------------------------------------------------
def test_log_reopen_keeps_every_json_line_across_rotation(short_tmp):
    """A writer thread logs while the file is renamed away and reopened many times (what
    logrotate + SIGHUP do): every line lands whole in one of the files, none lost."""
    path = short_tmp / "bot.jsonl"
    setup_logging(path, console=False)
    log = get_logger("rot")
    n = 3000
    done = threading.Event()

    def writer():
        for i in range(n):
            log.info("tick.logged", i=i, pad="x" * 200)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    rotated = 0
    while not done.is_set() and rotated < 20:
        os.rename(path, short_tmp / f"bot.jsonl.{rotated}")
        assert reopen_log()
        rotated += 1
        threading.Event().wait(0.005)
    t.join()
    seen = []
    for f in sorted(short_tmp.glob("bot.jsonl*")):
        for line in f.read_text().splitlines():
            seen.append(json.loads(line)["i"])  # every line is whole JSON
    assert sorted(seen) == list(range(n)) and rotated > 1


# --- config ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, needle", [
    ('[http]\nhost = "0.0.0.0"\n', "http.token: required when host (0.0.0.0) is not loopback"),
    ('[http]\ntoken = "short"\n', "http.token: must be at least 16 characters"),
    ('[http]\nport = 70000\n', "http.port"),
    ('[http]\nenable = true\n', "http.enable: unknown key"),
    ('[[notify.targets]]\nurl = "x"\n', "notify.targets.0.url: must be an Apprise URL"),
    ('[[notify.targets]]\nevents = ["condor"]\n', "notify.targets.0.url: set exactly one of url and url_file"),
    ('[[notify.targets]]\nurl = "json://h/x"\nevents = ["trades"]\n', "notify.targets.0.events.0"),
    ('[maintenance]\nalert_after_s = 600\nhalt_entries_after_s = 300\n', "maintenance.halt_entries_after_s: must be >="),
    ('[maintenance]\nwindows = [{ start = "25:00", minutes = 10 }]\n', "maintenance.windows.0.start"),
    ('[maintenance]\nwindows = [{ days = ["sunday"], start = "01:00", minutes = 10 }]\n', "maintenance.windows.0.days.0"),
    ('[sim_gateway]\nrestart_at = "noon"\n', "sim_gateway.restart_at"),
])
def test_bad_ops_config_is_one_line_naming_the_key(short_tmp, text, needle):
    path = short_tmp / "bad.toml"
    path.write_text(text)
    code, line = check_config(path)
    assert code == 2 and needle in line and "\n" not in line, line
    assert line.startswith(str(path))


def test_off_loopback_with_a_token_is_accepted():
    cfg = Config.model_validate({"http": {"host": "0.0.0.0", "token": "0123456789abcdef0123"}})
    assert cfg.http.host == "0.0.0.0"


# --- CLI polish ----------------------------------------------------------------------------------------
def cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def test_version_completion_and_help_on_every_option():
    from bot.cli import build_parser

    r = cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("spx-bot 0.")
    r = cli("completion", "bash")
    assert r.returncode == 0 and "complete" in r.stdout and "check-config" in r.stdout
    import argparse

    missing = []
    for action in build_parser()._actions:  # argparse has no public walk of its actions
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += [(name, a.dest) for a in sub._actions if not a.help]
        elif not action.help:
            missing.append(("spx-bot", action.dest))
    assert missing == []


def test_status_exits_1_when_no_daemon_answers(short_tmp):
    cfg = short_tmp / "c.toml"
    cfg.write_text(f'[bot]\nstore_path = "{short_tmp}/b.sqlite"\ncontrol_socket = "{short_tmp}/c.sock"\n'
                   f'log_path = "{short_tmp}/b.jsonl"\n')
    r = cli("status", "--config", str(cfg), "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["daemon"] == "not running"
    r = cli("health", "--config", str(cfg))
    assert r.returncode == 1 and json.loads(r.stdout) == {"healthy": False, "reasons": ["no daemon answered"]}


async def test_engine_skips_entries_while_blocked(make_cfg, calendar):
    """The one hook in the engine: a reason in entry_blockers skips the scheduled entry."""
    from datetime import timedelta as td

    from bot.calendar import ny_time
    from bot.sim.market import SyntheticMarket

    from test_engine import START, Rig

    cfg = make_cfg(**{"condor.credit_floor": 0.05})
    market = SyntheticMarket(calendar, seed=3, start=START - td(days=5), vix0=24.0)
    rig = Rig(cfg, calendar, market, ny_time(START, "15:30"))
    try:
        await rig.engine.start()
        rig.engine.entry_blockers[BROKER_DOWN] = "broker down since 15:00"
        with capture_logs() as logs:
            await rig.engine.on_entry()
        assert [(e["event"], e.get("reason")) for e in logs] == [("condor.skipped", "broker down since 15:00")]
        assert rig.store.open_condors() == []
        rig.engine.entry_blockers.clear()
        with capture_logs() as logs:
            await rig.engine.on_entry()
        assert [e["event"] for e in logs if e["event"] == "condor.opened"] == ["condor.opened"]
    finally:
        await rig.engine.shutdown()
        rig.close()


async def test_ib_1100_counts_as_down():
    """Connected but DEGRADED (1100): the same rules as a dropped socket."""
    clock = SimClock(ny("2022-03-01", "10:00"), None)
    sup, broker, engine = supervisor(clock)
    broker.degraded = True
    with capture_logs() as logs:
        for t in ("10:00", "10:03", "10:06"):
            await clock.advance_to(ny("2022-03-01", t))
            sup.check(clock.now())
    assert [e["event"] for e in logs] == ["broker.down", "broker.entries_halted"]
    assert sup.health()["reasons"] == ["IB link lost (1100) outside a maintenance window"]


def test_sim_gateway_restart_option_reaches_the_runner(make_cfg):
    from bot.sim.gateway.runner import params_from_config

    cfg = make_cfg(**{"sim_gateway.restart_at": "23:45", "sim_gateway.restart_down_s": 60})
    p = params_from_config(cfg, port=0)
    assert (p.restart_at, p.restart_down_s) == ("23:45", 60)
    assert params_from_config(make_cfg(), port=0).restart_at is None


@pytest.mark.parametrize("section, needle", [
    ('[http]\nenabled = true\nport = 0\ntoken_file = "{tmp}/missing"\n', "http.token_file: cannot read"),
    ('[http]\nenabled = true\nport = 0\ntoken_file = "{tmp}/empty"\n', "holds no token"),
    ('[[notify.targets]]\nurl = "nosuchscheme://x"\n', "not a URL Apprise understands"),
])
def test_run_refuses_unusable_ops_files_with_one_line(short_tmp, section, needle):
    (short_tmp / "empty").write_text("\n")
    cfg = short_tmp / "c.toml"
    cfg.write_text(f'[bot]\nstore_path = "{short_tmp}/b.sqlite"\ncontrol_socket = "{short_tmp}/c.sock"\n'
                   f'log_path = "{short_tmp}/b.jsonl"\nconsole_log = false\n[sim]\nstate_path = "{short_tmp}/s.sqlite"\n'
                   f'[market]\nsource = "synthetic"\n' + section.format(tmp=short_tmp))
    r = cli("run", "--config", str(cfg), "--start", "2022-03-01", "--for", "1d", "--speed", "max")
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_run_refuses_a_taken_http_port_with_one_line(short_tmp):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = short_tmp / "c.toml"
        cfg.write_text(f'[bot]\nstore_path = "{short_tmp}/b.sqlite"\ncontrol_socket = "{short_tmp}/c.sock"\n'
                       f'log_path = "{short_tmp}/b.jsonl"\nconsole_log = false\n[sim]\nstate_path = "{short_tmp}/s.sqlite"\n'
                       f'[market]\nsource = "synthetic"\n[http]\nenabled = true\nport = {port}\n')
        r = cli("run", "--config", str(cfg), "--start", "2022-03-01", "--for", "1d", "--speed", "max")
    assert r.returncode == 2 and f"http: cannot listen on 127.0.0.1:{port}" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (short_tmp / "c.sock").exists()  # the control socket was closed again
