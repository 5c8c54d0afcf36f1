"""Logging: the JSON-lines file, the console line, and the `spx-bot logs` reader."""

from __future__ import annotations

import io
import json
import os
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from bot.log import EVENTS, get_logger, setup_logging
from bot.logview import format_event, show_logs


class FixedClock:
    """Stands in for the simulator's clock: the bot's time, not the wall's."""

    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now


SIM_NOW = datetime(2022, 3, 1, 20, 30, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _restore_structlog():
    yield
    structlog.reset_defaults()


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_json_lines_carry_timestamp_level_event_and_the_clock_time(tmp_path):
    path = tmp_path / "logs" / "bot.jsonl"  # parent directory created on demand
    setup_logging(path, console=False, clock=FixedClock(SIM_NOW), bind={"run_id": "r1"})
    log = get_logger("bot.engine")
    log.info("condor.opened", credit=Decimal("1.25"), expiry=date(2022, 3, 2), qty=2)
    log.debug("signal.evaluated")  # below the level: dropped

    [line] = read_lines(path)  # readable before any close: flushed per event
    assert list(line)[:3] == ["timestamp", "level", "event"]
    assert line["timestamp"] == "2022-03-01T20:30:00.000Z"
    assert line["level"] == "info"
    assert line["event"] == "condor.opened"
    assert (line["credit"], line["expiry"], line["qty"]) == ("1.25", "2022-03-02", 2)
    assert line["run_id"] == "r1"
    assert line["logger_name"] == "bot.engine"
    wall = datetime.fromisoformat(line["wall_time"].replace("Z", "+00:00"))
    assert abs((datetime.now(timezone.utc) - wall).total_seconds()) < 60


def test_without_a_clock_the_timestamp_is_wall_time(tmp_path):
    path = tmp_path / "bot.jsonl"
    setup_logging(path, level="debug", console=False)
    get_logger().debug("bot.started")
    [line] = read_lines(path)
    stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert abs((datetime.now(timezone.utc) - stamp).total_seconds()) < 60
    assert "wall_time" not in line


def test_exceptions_are_logged_as_text(tmp_path):
    path = tmp_path / "bot.jsonl"
    setup_logging(path, console=False)
    try:
        raise RuntimeError("socket closed")
    except RuntimeError:
        get_logger().exception("broker.disconnected")
    [line] = read_lines(path)
    assert line["level"] == "error"
    assert "RuntimeError: socket closed" in line["exception"]


def test_console_line_is_readable_and_colourless(tmp_path, capsys):
    setup_logging(tmp_path / "bot.jsonl", clock=FixedClock(SIM_NOW))
    get_logger().warning("order.rejected", order_ref="c-1", price=Decimal("-1.25"))
    err = capsys.readouterr().err
    assert "2022-03-01T20:30:00.000Z" in err
    assert "order.rejected" in err and "warning" in err
    assert "order_ref=c-1" in err and "price=-1.25" in err
    assert "\x1b[" not in err
    assert err.count("\n") == 1


def test_console_can_be_off(tmp_path, capsys):
    setup_logging(tmp_path / "bot.jsonl", console=False)
    get_logger().info("bot.started")
    assert capsys.readouterr().err == ""


def test_setting_up_again_moves_every_logger_to_the_new_file(tmp_path):
    module_logger = get_logger("bot.x")  # as made at import time, before any setup
    setup_logging(tmp_path / "a.jsonl", console=False)
    bound = module_logger.bind(order_ref="c-1")
    bound.info("order.submitted")
    setup_logging(tmp_path / "b.jsonl", console=False)
    module_logger.info("bot.started")
    bound.info("order.filled")
    assert [e["event"] for e in read_lines(tmp_path / "a.jsonl")] == ["order.submitted"]
    assert [e["event"] for e in read_lines(tmp_path / "b.jsonl")] == ["bot.started", "order.filled"]


def test_capture_logs_sees_events(tmp_path):
    setup_logging(tmp_path / "bot.jsonl", console=False)
    with capture_logs() as events:
        get_logger().info("hedge.bought", layer="front", qty=4)
    assert events == [{"event": "hedge.bought", "layer": "front", "qty": 4, "log_level": "info"}]
    assert not (tmp_path / "bot.jsonl").read_text()


def test_unknown_level_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging(tmp_path / "bot.jsonl", level="loud")


def test_required_event_names():
    required = {
        "bot.started", "bot.stopped", "broker.connected", "broker.disconnected",
        "schedule.fired", "signal.evaluated", "condor.opened", "condor.closed", "hedge.target",
        "hedge.bought", "hedge.rolled", "hedge.written", "hedge.bought_back", "hedge.monetized",
        "order.submitted", "order.filled", "order.cancelled", "order.rejected",
        "killswitch.engaged", "killswitch.released", "reconcile.done",
    }  # fmt: skip
    assert set(EVENTS) == required
    assert len(EVENTS) == len(required)


# --- spx-bot logs -------------------------------------------------------------------------


def event_line(event: str, **fields: object) -> str:
    return json.dumps({"timestamp": "2022-03-01T20:30:00Z", "level": "info", "event": event, **fields}) + "\n"


def test_format_event():
    text = format_event(
        {"timestamp": "2022-03-01T20:30:00Z", "level": "info", "event": "condor.opened",
         "order_ref": "c-1", "credit": "1.25", "note": "two words", "legs": [1, 2], "ok": True}
    )  # fmt: skip
    assert text == (
        '2022-03-01T20:30:00Z info  condor.opened  order_ref=c-1 credit=1.25 note="two words" '
        "legs=[1,2] ok=true"
    )


def test_format_event_puts_the_traceback_below():
    text = format_event({"event": "broker.disconnected", "exception": "Traceback\nError: x\n"})
    assert text == "- -     broker.disconnected\n    Traceback\n    Error: x"


def test_show_logs_prints_and_filters(tmp_path):
    path = tmp_path / "bot.jsonl"
    path.write_text(event_line("order.submitted", order_ref="a") + event_line("condor.opened") + event_line("order.filled"))
    out = io.StringIO()
    assert show_logs(path, out=out) == 0
    assert len(out.getvalue().splitlines()) == 3
    out = io.StringIO()
    assert show_logs(path, event_glob="order.*", out=out) == 0
    assert out.getvalue().splitlines() == [
        "2022-03-01T20:30:00Z info  order.submitted  order_ref=a",
        "2022-03-01T20:30:00Z info  order.filled",
    ]


def test_malformed_lines_are_skipped_and_reported(tmp_path, capsys):
    path = tmp_path / "bot.jsonl"
    path.write_bytes(
        (event_line("bot.started") + "not json\n" + "[1, 2]\n" + '{"no": "event"}\n' + "\n").encode()
        + b"\xff\xfe\n"
        + event_line("bot.stopped").encode()
        + b'{"event": "bot.st'  # a line cut short by a crash
    )
    out = io.StringIO()
    assert show_logs(path, out=out) == 0
    assert [line.split()[2] for line in out.getvalue().splitlines()] == ["bot.started", "bot.stopped"]
    assert capsys.readouterr().err == f"{path}: skipped 5 malformed line(s)\n"


def test_missing_log_file(tmp_path, capsys):
    path = tmp_path / "nope.jsonl"
    assert show_logs(path) == 2
    assert capsys.readouterr().err == f"{path}: file not found\n"


def test_unreadable_log_path(tmp_path, capsys):
    assert show_logs(tmp_path) == 2
    assert capsys.readouterr().err.startswith(f"{tmp_path}: cannot read: ")


def test_follow_survives_partial_lines_truncation_and_rotation(tmp_path):
    path = tmp_path / "bot.jsonl"
    path.write_text(event_line("a.one"))
    half = event_line("c.three")

    def append(text: str, target: Path = path) -> None:
        with open(target, "a") as fh:
            fh.write(text)

    steps = [
        lambda: append(event_line("b.two") + half[:10]),  # a writer mid-line
        lambda: append(half[10:]),
        lambda: path.write_text(event_line("d.four")),  # truncated and rewritten
        lambda: (
            os.replace(path, tmp_path / "bot.jsonl.1"),  # rotated, late line in the old file
            append(event_line("e.five"), tmp_path / "bot.jsonl.1"),
            path.write_text(event_line("f.six")),
        ),
    ]

    def fake_sleep(_seconds: float) -> None:
        if not steps:
            raise KeyboardInterrupt
        steps.pop(0)()

    out = io.StringIO()
    assert show_logs(path, follow=True, out=out, sleep=fake_sleep) == 0
    events = [line.split()[2] for line in out.getvalue().splitlines()]
    assert events == ["a.one", "b.two", "c.three", "d.four", "e.five", "f.six"]
