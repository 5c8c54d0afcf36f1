"""Issue 10: the kill switch reaches the right account (FAILURES.md 27), a store that cannot be
written halts trading safely (28), damaged state files are refused (29), and bad input ends in
one line with exit 2."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from contextlib import closing
from datetime import date, timedelta
from pathlib import Path

import pytest

from bot import cli, registry
from bot.config import load_config
from bot.sim.exchange import ExchangeSettings, SimExchange
from bot.store import Store, StoreWriteError

from conftest import ROOT

BIN = [sys.executable, "-m", "bot.cli"]


def write_config(folder: Path, name: str = "cfg.toml", extra: str = "", relative: bool = True) -> Path:
    """A config whose paths are relative to its own folder (the rule under test), the hedge off."""
    folder.mkdir(parents=True, exist_ok=True)
    base = "" if relative else f"{folder}/"
    path = folder / name
    path.write_text(
        f"""
[bot]
log_path = "{base}logs/bot.jsonl"
store_path = "{base}state/bot.sqlite"
control_socket = "{base}state/ctl.sock"
console_log = false
[broker]
kind = "sim"
[sim]
state_path = "{base}state/sim.sqlite"
[hedge]
enabled = false
{extra}
"""
    )
    return path


def spx(*args, cwd=ROOT, env=None, timeout=90) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != cli.CONFIG_ENV}
    return subprocess.run([*BIN, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**environment, **(env or {})})


def one_clean_line(r: subprocess.CompletedProcess, code: int = 2) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def start_daemon(config: Path, *args: str) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if k != cli.CONFIG_ENV}
    return subprocess.Popen([*BIN, "run", "--config", str(config), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd="/", env=environment)


def wait_registered(config: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until the daemon is in the registry and answers on its socket (generous: 2 shared cores)."""
    cfg = load_config(config)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        if registry.by_socket(cfg.bot.control_socket) is not None:
            with closing(socket.socket(socket.AF_UNIX)) as s:
                try:
                    s.connect(cfg.bot.control_socket)
                    return
                except OSError:
                    pass
        time.sleep(0.1)
    raise AssertionError("daemon did not register in time")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# --- scenario 27: the kill switch reaches the right account -----------------------------------
def test_scenario_27_kill_from_another_folder_reaches_the_one_running_daemon(tmp_path):
    folder = Path(os.path.realpath(tmp_path)) / "paper"
    config = write_config(folder, "paper.toml")
    proc = start_daemon(config, "--speed", "60", "--start", "2022-03-01T10:00", "--for", "5d")
    try:
        wait_registered(config, proc)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        r = spx("kill", "--reason", "from afar", cwd=elsewhere)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["config"] == str(config) and out["halted"] is True
        status = json.loads(spx("status", "--json", cwd=elsewhere).stdout)
        assert status["halted"] is True and status["halt_reason"] == "from afar"
        # no config/sim.toml was touched: its files are not where this daemon keeps state
        assert (folder / "state" / "bot.sqlite").exists() and not (elsewhere / "state").exists()
    finally:
        stop(proc)
    assert proc.returncode == 0, proc.stderr.read()
    assert registry.by_socket(load_config(config).bot.control_socket) is None  # unregistered on exit


def test_scenario_27_two_daemons_and_no_config_refuses_naming_both(tmp_path):
    configs = [write_config(Path(os.path.realpath(tmp_path)) / n, f"{n}.toml") for n in ("a", "b")]
    procs = [start_daemon(c, "--speed", "60", "--start", "2022-03-01T10:00", "--for", "5d") for c in configs]
    try:
        for c, p in zip(configs, procs):
            wait_registered(c, p)
        line = one_clean_line(spx("kill", cwd=tmp_path))
        assert all(str(c) in line for c in configs) and "--config" in line
        for c in configs:  # neither was halted
            assert json.loads(spx("status", "--json", "--config", c).stdout)["halted"] is False
        # SPX_BOT_CONFIG picks one
        r = spx("kill", env={cli.CONFIG_ENV: str(configs[1])}, cwd=tmp_path)
        assert r.returncode == 0 and json.loads(r.stdout)["config"] == str(configs[1])
        assert json.loads(spx("status", "--json", "--config", configs[0]).stdout)["halted"] is False
    finally:
        for p in procs:
            stop(p)


def test_scenario_27_no_daemon_no_config_refuses_instead_of_the_simulator(tmp_path):
    for command in ("kill", "status", "resume"):
        line = one_clean_line(spx(command, cwd=tmp_path))
        assert "--config" in line and cli.CONFIG_ENV in line
    assert not (tmp_path / "state").exists()


def test_scenario_27_a_stopped_daemon_is_not_answering_and_kill_still_halts_and_cancels(tmp_path):
    config = write_config(Path(os.path.realpath(tmp_path)) / "d")
    proc = start_daemon(config, "--speed", "60", "--start", "2022-03-01T10:00", "--for", "5d")
    try:
        wait_registered(config, proc)
        assert json.loads(spx("status", "--json", "--config", config).stdout)["daemon"] != "not running"
        os.kill(proc.pid, signal.SIGSTOP)
        r = spx("status", "--config", config)
        assert r.returncode == 3 and f"not answering (pid {proc.pid})" in r.stdout
        r = spx("kill", "--config", config, "--reason", "hung")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["halted"] is True and out["daemon"].startswith("not answering") and out["errors"] == []
        os.kill(proc.pid, signal.SIGCONT)
        # the daemon, woken, sees the stored halt
        deadline = time.monotonic() + 60
        while json.loads(spx("status", "--json", "--config", config).stdout).get("daemon") != "running":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert json.loads(spx("status", "--json", "--config", config).stdout)["halted"] is True
    finally:
        stop(proc)


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"config": None, "flatten": False, "reason": "", "json": False, **kw})


def test_offline_kill_tries_the_broker_when_the_store_is_locked_and_says_it_did_not_confirm(tmp_path, capsys):
    config = write_config(tmp_path)
    cfg = load_config(config)
    Store(cfg.bot.store_path).close()
    exchange = SimExchange(None, None, ExchangeSettings("DU1", 1e6), cfg.sim.state_path)
    exchange.close()
    # another process (a hung daemon) holds the write lock of the store
    holder = sqlite3.connect(cfg.bot.store_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        t0 = time.monotonic()
        code = cli.cmd_kill(_args(config=str(config)))
        elapsed = time.monotonic() - t0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    out = json.loads(capsys.readouterr().out)
    assert code == cli.EXIT_FATAL
    assert out["halted"] is False and any("halt not stored" in e and "locked" in e for e in out["errors"])
    assert elapsed < cli.KILL_BUSY_TIMEOUT_S + 30  # bounded, not the 10 s per statement of before
    assert out["remaining"] == []  # the simulated account was still reached


def test_offline_kill_with_the_gateway_unreachable_exits_3_with_the_reason(tmp_path):
    with closing(socket.socket()) as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace('kind = "sim"', f'kind = "ib"\nport = {port}\nconnect_timeout_s = 1.0'))
    r = spx("kill", "--config", config)
    line = one_clean_line(r, code=3)
    assert "not confirmed" in line and f"127.0.0.1:{port} not reachable" in line
    assert json.loads(r.stdout)["halted"] is True  # the halt itself was stored


# --- scenario 28: the store cannot be written ----------------------------------------------
class FailingStore(Store):
    """A store whose disk fills up at a chosen moment: once `armed`, every write fails the way
    SQLite reports a full disk."""

    arm_on_sent_prefix = "ic-"
    armed = False
    refused = 0

    def _write(self):
        if self.armed:
            self.refused += 1
            raise StoreWriteError(f"store {self.path}: cannot write: database or disk is full")
        return super()._write()

    def mark_sent(self, order_ref, at):
        super().mark_sent(order_ref, at)
        if order_ref.startswith(self.arm_on_sent_prefix):
            self.armed = True  # the disk fills while the entry order is working


def test_scenario_28_store_write_failure_cancels_working_orders_logs_fatal_and_exits_3(tmp_path):
    config = write_config(tmp_path, extra="[condor]\ncredit_floor = 0.0\n[execution]\nstep_s = 60\n")
    cfg = load_config(config)
    stores: list[FailingStore] = []

    def factory(path):
        stores.append(FailingStore(path))
        return stores[-1]

    args = argparse.Namespace(config=str(config), start=(date(2022, 3, 1), "15:00"), duration=timedelta(days=3),
                              data=None, speed=None)
    cfg = cfg.with_overrides(**{"sim.speed": "max", "sim.start": date(2022, 3, 1)})
    code = asyncio.run(cli._run(cfg, args, store_factory=factory))
    assert code == cli.EXIT_FATAL
    assert stores and stores[0].refused >= 1
    events = [json.loads(line) for line in Path(cfg.bot.log_path).read_text().splitlines()]
    names = [e["event"] for e in events]
    fatal = [e for e in events if e["event"] == "bot.fatal"]
    assert len(fatal) == 1 and "disk is full" in fatal[0]["error"]
    before, after = names[:names.index("bot.fatal")], names[names.index("bot.fatal"):]
    assert "order.submitted" in before  # the entry order was working when the disk filled
    assert after.count("order.submitted") == 0  # no new order once the store failed
    # its cancel was tried even though recording it failed
    assert "order.cancel_failed" in after or "order.cancelled" in after
    assert names[-1] == "bot.stopped"
    exchange = SimExchange(None, None, ExchangeSettings("DU0000001", 1e6), cfg.sim.state_path)
    try:
        assert exchange.open_orders() == []  # the working entry order was cancelled at the broker
    finally:
        exchange.close()


def test_scenario_28_telemetry_write_failure_never_raises(tmp_path):
    store = FailingStore(tmp_path / "s.sqlite")
    store.armed = True
    from datetime import UTC, datetime

    assert store.add_signal(datetime(2022, 3, 1, tzinfo=UTC), "vix", {"v": 1}) is False
    assert store.telemetry_failures == 1
    with pytest.raises(StoreWriteError):  # an intent write is not telemetry: it must raise
        store.set_control("x", "1")
    store.close()


def test_scenario_28_store_on_a_full_disk_is_a_store_write_error(tmp_path):
    """A real full disk, not a double: a file-size limit in a child process (SIGXFSZ ignored,
    so writes fail with EFBIG as on a full disk)."""
    code = f"""
import resource, signal, sys
from datetime import UTC, datetime
sys.path.insert(0, {str(ROOT)!r})
from bot.store import Store, StoreWriteError
store = Store({str(tmp_path / 's.sqlite')!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
ok = sum(store.add_signal(datetime(2022, 3, 1, tzinfo=UTC), "x", {{"p": "y" * 2000}}) for _ in range(400))
try:
    for i in range(400):
        store.set_control("k%d" % i, "y" * 2000)
except StoreWriteError as e:
    print("refused:", e)
print("telemetry_failures", store.telemetry_failures, "ok", ok)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "refused:" in r.stdout and ("full" in r.stdout or "disk" in r.stdout or "I/O" in r.stdout), r.stdout
    assert int(r.stdout.split("telemetry_failures ")[1].split()[0]) > 0


# --- scenario 29: damaged or mismatched state files ----------------------------------------
def _with_history(tmp_path: Path) -> Path:
    """A config whose store and account have history (one short run)."""
    config = write_config(tmp_path, extra="[condor]\ncredit_floor = 0.0\n")
    r = spx("run", "--config", config, "--speed", "max", "--start", "2022-03-01", "--for", "1d", timeout=180)
    assert r.returncode == 0, r.stderr
    return config


@pytest.fixture(scope="module")
def history_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hist")
    config = _with_history(folder)
    cfg = load_config(config)
    return {"store": Path(cfg.bot.store_path).read_bytes(), "account": Path(cfg.sim.state_path).read_bytes()}


def _state(tmp_path: Path, history_files, store: bytes | None = None, account: bytes | None = None) -> Path:
    config = write_config(tmp_path, extra="[condor]\ncredit_floor = 0.0\n")
    cfg = load_config(config)
    Path(cfg.bot.store_path).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.bot.store_path).write_bytes(history_files["store"] if store is None else store)
    Path(cfg.sim.state_path).write_bytes(history_files["account"] if account is None else account)
    return config


@pytest.mark.parametrize("damage", ["zero-length", "truncated", "garbage", "garbage-header"])
@pytest.mark.parametrize("which", ["store", "account"])
def test_scenario_29_damaged_state_is_refused_in_one_line_and_left_as_it_was(tmp_path, history_files, which, damage):
    good = history_files[which]
    bad = {"zero-length": b"", "truncated": good[: len(good) // 3], "garbage": os.urandom(5000),
           "garbage-header": b"NOT A DATABASE" + good[14:]}[damage]
    config = _state(tmp_path, history_files, **{which: bad})
    cfg = load_config(config)
    path = Path(cfg.bot.store_path if which == "store" else cfg.sim.state_path)
    commands = [("run", "--speed", "max", "--start", "2022-03-01", "--for", "1d")]
    if which == "store":
        commands += [("status",), ("kill",), ("resume",)]
    for command in commands:
        r = spx(*command, "--config", config)
        if command[0] == "kill":  # the kill still tries the broker; it reports what failed
            assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr
            assert "halt not stored" in r.stderr
        else:
            line = one_clean_line(r)
            assert str(path) in line and ("backup" in line or "aside" in line), line
        assert path.read_bytes() == bad  # nothing overwritten or recreated


def test_scenario_29_state_files_are_private(tmp_path, history_files):
    config = _with_history(tmp_path / "p")
    cfg = load_config(config)
    for path in (cfg.bot.store_path, cfg.sim.state_path, cfg.bot.log_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert stat.S_IMODE(os.stat(Path(cfg.bot.store_path).parent).st_mode) == 0o700


def test_a_second_daemon_on_the_same_state_is_one_line(tmp_path):
    config = write_config(Path(os.path.realpath(tmp_path)) / "one")
    other = write_config(Path(os.path.realpath(tmp_path)) / "one", "other.toml")
    other.write_text(other.read_text().replace("state/ctl.sock", "state/other.sock"))
    proc = start_daemon(config, "--speed", "60", "--start", "2022-03-01T10:00", "--for", "5d")
    try:
        wait_registered(config, proc)
        line = one_clean_line(spx("run", "--config", other, "--speed", "60", "--start", "2022-03-01", "--for", "1d"))
        assert f"pid {proc.pid}" in line and "bot.sqlite" in line
    finally:
        stop(proc)


# --- one validation: check-config refuses what run refuses ----------------------------------
BAD_VALUES = [
    ("hedge", "rebalance_time", '"10"'),
    ("hedge", "rebalance_time", '"10:00:30"'),
    ("hedge", "rebalance_time", '"1000"'),
    ("condor", "entry_time", '"15:30:00"'),
    ("bot", "allow_live", '"yes"'),
    ("bot", "allow_live", "1"),
    ("bot", "console_log", '"no"'),
    ("sim", "speed", "1e-300"),
    ("sim", "speed", "1e300"),
    ("sim", "seed", "-1"),
    ("sim", "starting_cash", "1e308"),
    ("sim", "start", "1899-01-01"),
    ("sim", "start", "9999-12-31"),
    ("bot", "store_path", '"/"'),
    ("bot", "log_path", '"/tmp"'),
    ("bot", "control_socket", '"/tmp/' + "s" * 120 + '"'),
    ("condor", "max_quantity", "1000000000"),
]


@pytest.mark.parametrize(("section", "key", "value"), BAD_VALUES)
def test_check_config_and_run_refuse_the_same_thing_in_one_line(tmp_path, capsys, section, key, value):
    config = write_config(tmp_path)
    text = "\n".join(line for line in config.read_text().splitlines() if not line.startswith(f"{key} = ")) + "\n"
    header = f"[{section}]\n"
    text = text.replace(header, f"{header}{key} = {value}\n") if header in text else text + f"{header}{key} = {value}\n"
    config.write_text(text)
    assert cli.main(["check-config", str(config)]) == 2
    check_line = capsys.readouterr().err.strip()
    assert cli.main(["run", "--config", str(config), "--speed", "max", "--start", "2022-03-01", "--for", "1d"]) == 2
    run_line = capsys.readouterr().err.strip()
    for line in (check_line, run_line):
        assert len(line.splitlines()) == 1 and f"{section}.{key}" in line and str(config) in line, line


@pytest.mark.parametrize("argv", [
    ["run", "--for", "0d"], ["run", "--for", "99999w"], ["run", "--for", "1000000000d"], ["run", "--for", "-1d"],
    ["run", "--start", "9999-12-31"], ["run", "--start", "0001-01-01"], ["run", "--start", "1899-01-01"],
    ["run", "--start", "2022-03-01T25:00"], ["run", "--speed", "abc"], ["run", "--speed", "0"],
    ["sim-gateway", "--speed", "abc"], ["sim-gateway", "--port", "99999"], ["sim-gateway", "--port", "-1"],
    ["backtest", "--workers", "0"], ["backtest", "--from", "0001-01-01"], ["nonsense"],
])
def test_bad_arguments_are_one_line_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_relative_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    config = write_config(tmp_path / "conf")
    monkeypatch.chdir("/")
    cfg = load_config(config)
    assert cfg.bot.store_path == str(tmp_path / "conf" / "state" / "bot.sqlite")
    shipped = load_config(ROOT / "config" / "sim.toml")
    assert shipped.bot.store_path == str(ROOT / "state" / "bot.sqlite")  # `make run` still writes the repo's state/


def test_an_explicit_data_folder_that_cannot_be_used_is_an_error_not_the_model(tmp_path, capsys):
    config = write_config(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    code = cli.main(["run", "--config", str(config), "--speed", "max", "--start", "2022-03-01", "--for", "1d",
                     "--data", str(empty)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--data" in err, err


def test_status_and_logs_into_a_closed_pipe_are_quiet(tmp_path):
    config = _with_history(tmp_path)
    for command in ("status", "logs"):
        r = subprocess.run(f"{sys.executable} -m bot.cli {command} --config {config} | head -1", shell=True,
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


def test_scenario_29_an_empty_store_with_a_real_broker_is_refused_not_recreated(tmp_path):
    from bot.statefiles import StateFileError, check_pair

    empty = tmp_path / "paper.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(StateFileError, match="empty"):
        check_pair(empty, None)
    assert empty.read_bytes() == b""
    check_pair(tmp_path / "new.sqlite", None)  # missing: a new journal, fine
    Store(tmp_path / "fresh.sqlite").close()
    check_pair(tmp_path / "fresh.sqlite", None)  # ours, nothing recorded yet: fine


def test_registry_prunes_entries_of_dead_daemons_and_is_private(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = registry.register(tmp_path / "old.toml", tmp_path / "old.sock", tmp_path / "old.sqlite", pid=dead.pid)
    live = registry.register(tmp_path / "cur.toml", tmp_path / "cur.sock", tmp_path / "cur.sqlite")
    try:
        assert [e.config for e in registry.running()] == [str(tmp_path / "cur.toml")]
        assert not stale.exists()
        assert stat.S_IMODE(os.stat(registry.runtime_dir()).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(live).st_mode) == 0o600
    finally:
        registry.unregister(live)


@pytest.mark.parametrize("day", ["2022-03-01", "2019-07-09", "2026-12-07"])
def test_the_default_config_opens_a_condor_in_the_first_session(tmp_path, day):
    """`make run`'s config: the 1dte preset's credit floor lets an ordinary day's condor open
    (the synthetic market, as on a fresh clone without history)."""
    shipped = (ROOT / "config" / "sim.toml").read_text()
    for rel in ("../state/", "../logs/"):
        shipped = shipped.replace(f'"{rel}', f'"{tmp_path}/')
    shipped = shipped.replace('source = "auto"', 'source = "synthetic"').replace("console_log = true", "console_log = false")
    config = tmp_path / "sim.toml"
    config.write_text(shipped)
    r = spx("run", "--config", config, "--speed", "max", "--start", day, "--for", "1d", timeout=300)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in (tmp_path / "bot.jsonl").read_text().splitlines()]
    opened = [e for e in events if e["event"] == "condor.opened"]
    skipped = [e for e in events if e["event"] == "condor.skipped"]
    assert opened, [e["reason"] for e in skipped]


class AccountDiskFull(Store):
    """Stands in for the simulated account's file failing on a full disk: the first entry's
    order ref raises SQLite's own error, not the store's wrapped one."""

    def next_order_ref(self, prefix, day):
        if prefix == "ic":
            raise sqlite3.OperationalError("database or disk is full")
        return super().next_order_ref(prefix, day)


def test_scenario_28_a_raw_sqlite_failure_is_fatal_exit_3_not_a_traceback(tmp_path):
    config = write_config(tmp_path, extra="[condor]\ncredit_floor = 0.0\n")
    cfg = load_config(config).with_overrides(**{"sim.speed": "max", "sim.start": date(2022, 3, 1)})
    args = argparse.Namespace(config=str(config), start=(date(2022, 3, 1), "15:00"), duration=timedelta(days=2),
                              data=None, speed=None)
    assert asyncio.run(cli._run(cfg, args, store_factory=AccountDiskFull)) == cli.EXIT_FATAL
    events = [json.loads(line) for line in Path(cfg.bot.log_path).read_text().splitlines()]
    fatal = [e for e in events if e["event"] == "bot.fatal"]
    assert len(fatal) == 1 and "disk is full" in fatal[0]["error"]
    assert not [e for e in events if e["event"] == "order.submitted"]
    assert events[-1]["event"] == "bot.stopped"


def test_a_console_reader_that_goes_away_does_not_stop_the_daemon(tmp_path):
    config = write_config(tmp_path, extra="[condor]\ncredit_floor = 0.0\n")
    config.write_text(config.read_text().replace("console_log = false", "console_log = true"))
    r = subprocess.run(f"{sys.executable} -m bot.cli run --config {config} --speed max --start 2022-03-01 --for 2d"
                       " 2>&1 | head -1", shell=True, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert "Traceback" not in r.stdout + r.stderr
    events = [json.loads(line) for line in (tmp_path / "logs" / "bot.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "bot.stopped" and events[-1]["reason"].startswith("duration reached")


def test_scenario_29_a_damaged_account_whose_text_is_not_utf8_is_refused_in_one_line(tmp_path, history_files):
    """A damaged page can hand back text that is not UTF-8 (hypothesis found one byte of the
    account that made even `PRAGMA quick_check`'s answer undecodable): refused like any damage."""
    bad = tmp_path / "bad.sqlite"
    with closing(sqlite3.connect(bad)) as db:
        db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT); CREATE TABLE positions (k TEXT);"
                         "CREATE TABLE x (k TEXT); PRAGMA writable_schema = ON;"
                         "UPDATE sqlite_master SET name = CAST(x'81' AS TEXT) WHERE name = 'x';")
    config = _state(tmp_path, history_files, account=bad.read_bytes())
    cfg = load_config(config)
    path = Path(cfg.sim.state_path)
    before = path.read_bytes()
    r = spx("status", "--config", config)
    line = one_clean_line(r)
    assert str(path) in line and "damaged" in line and "aside" in line, line
    assert path.read_bytes() == before
