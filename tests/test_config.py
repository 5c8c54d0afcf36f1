"""Config: defaults, presets, overrides, and the one-line errors an operator sees."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.config import PRESETS, Config, ConfigError, check_config, load_config

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
ROOT = CONFIG_DIR.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.toml"
    path.write_text(text)
    return path


def test_empty_file_gives_the_documented_defaults(tmp_path):
    config = load_config(write(tmp_path, ""))
    assert config == Config().relative_to(tmp_path)  # defaults, with paths under the file's folder
    assert load_config(write(tmp_path, "[sim]\nseed = 7\n")) == config  # equal values, equal configs
    assert config.schema_version == 1
    assert config.bot.allow_live is False
    assert config.bot.log_path == str(tmp_path / "logs" / "bot.jsonl")
    assert config.broker.kind == "sim"
    assert (config.broker.port, config.broker.client_id, config.broker.kill_client_id) == (4002, 1, 999)
    assert config.sim.speed == 300.0
    assert config.sim.start is None
    assert config.market.source == "auto"
    assert config.schedule.timezone == "America/New_York"
    assert config.execution.tick == Decimal("0.05")
    assert isinstance(config.execution.tick, Decimal)


def test_1dte_preset_is_the_default():
    condor = Config().condor
    assert condor.preset == "1dte"
    assert (condor.dte_min, condor.dte_max, condor.dte_unit) == (1, 1, "sessions")
    assert (condor.short_delta, condor.wing_width, condor.wing_delta) == (0.16, 25, None)
    assert (condor.entry_time, condor.entry_days) == ("15:30", "mon-fri")
    assert (condor.max_open, condor.close_dte) == (1, 0)
    assert (condor.credit_floor, condor.max_risk_fraction, condor.max_quantity) == (0.08, 0.20, None)
    assert (condor.take_profit, condor.stop_loss_multiple) == (0.5, 2.0)


def test_monthly_preset_fills_its_values(tmp_path):
    condor = load_config(write(tmp_path, '[condor]\npreset = "monthly"\n')).condor
    expected = PRESETS["monthly"]
    assert {key: getattr(condor, key) for key in expected} == expected
    assert (condor.dte_min, condor.dte_max, condor.wing_width, condor.close_dte) == (30, 45, 50, 21)
    assert (condor.entry_time, condor.entry_days, condor.max_open) == ("10:00", "mon", 3)


def test_a_key_the_file_sets_wins_over_the_preset(tmp_path):
    text = '[condor]\npreset = "monthly"\nwing_width = 75\nentry_time = "11:15"\n'
    condor = load_config(write(tmp_path, text)).condor
    assert condor.wing_width == 75
    assert condor.entry_time == "11:15"
    assert condor.dte_max == 45  # untouched keys still come from the preset


def test_wing_delta_below_short_delta_is_accepted(tmp_path):
    condor = load_config(write(tmp_path, "[condor]\nwing_delta = 0.05\n")).condor
    assert condor.wing_delta == 0.05


@pytest.mark.parametrize(
    ("given", "expected"),
    [('"300"', 300.0), ("600", 600.0), ("0.5", 0.5), ('"max"', "max"), ('"MAX"', "max")],
)
def test_speed_is_normalized(tmp_path, given, expected):
    assert load_config(write(tmp_path, f"[sim]\nspeed = {given}\n")).sim.speed == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[condor]\nshrot_delta = 0.2\n", "condor.shrot_delta: unknown key"),
        ("[hedge]\nfront = 4\n", "hedge.front: Input should be a valid dictionary"),
        ("[hedgehog]\nfront = 4\n", "hedgehog: unknown key"),
        ("[hedge.write]\nratio = 1.5\n", "hedge.write.ratio: Input should be less than or equal to 1"),
        ('[broker]\nport = "abc"\n', "broker.port: Input should be a valid integer"),
        ("[bot]\nallow_live = [1]\n", "bot.allow_live: Input should be a valid boolean"),
        (
            "[condor]\nshort_delta = 0.6\n",
            "condor.short_delta: Input should be less than or equal to 0.5",
        ),
        ("[condor]\nwing_delta = 0.16\n", "condor.wing_delta: must be less than short_delta"),
        ("[condor]\nwing_delta = 0.2\nshort_delta = 0.18\n", "condor.wing_delta: must be less"),
        ('[sim]\nspeed = "fast"\n', "sim.speed: must be a positive number"),
        ("[sim]\nspeed = 0\n", "sim.speed: must be a positive number"),
        ("[broker]\nkill_client_id = 1\n", "broker.kill_client_id: must differ from client_id"),
        ("[broker]\nclient_id = 999\n", "broker.kill_client_id: must differ from client_id"),
        ("schema_version = 2\n", "schema_version: unsupported version 2"),
        ('[condor]\npreset = "weekly"\n', "condor.preset: Input should be '1dte' or 'monthly'"),
        ('[condor]\nentry_time = "25:00"\n', 'condor.entry_time: must be "HH:MM"'),
        ('[condor]\nentry_time = "9:30"\n', 'condor.entry_time: must be "HH:MM"'),
        ('[condor]\nentry_time = "16:30"\n', "condor.entry_time: must be within regular hours"),
        ('[condor]\nentry_days = "monday"\n', "condor.entry_days: not a cron day_of_week"),
        ("[condor]\ndte_min = 50\n", "condor.dte_min: must be <= dte_max"),
        ('[condor]\npreset = "monthly"\nclose_dte = 30\n', "condor.close_dte: must be less than"),
        ("[condor]\nwing_width = 27\n", "condor.wing_width: Input should be a multiple of 5"),
        ('[schedule]\ntimezone = "Mars/Base"\n', "schedule.timezone: unknown time zone"),
        ("[execution]\ntick = 0.03\n", "execution.tick: Input should be a multiple of 0.05"),
        ("[sim]\nstarting_cash = nan\n", "sim.starting_cash: Input should be a finite number"),
        ("[condor]\nshort_delta = 0.6\nshrot = 1\n", "condor.short_delta:"),  # first error only
    ],
)
def test_bad_file_is_one_line_naming_the_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    code, message = check_config(path)
    assert code == 2
    assert message.startswith(f"{path}: {expected}")
    assert "\n" not in message
    with pytest.raises(ConfigError, match="^" + str(path)):
        load_config(path)


def test_malformed_toml(tmp_path):
    code, message = check_config(write(tmp_path, "[condor\nshort_delta = 0.2\n"))
    assert code == 2
    assert message.startswith(f"{tmp_path / 'x.toml'}: invalid TOML: ")
    assert "\n" not in message


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "x.toml"
    path.write_bytes(b"\xff\xfe[bot]\n")
    assert check_config(path) == (2, f"{path}: invalid TOML: not UTF-8 text")


def test_missing_file():
    assert check_config("config/nope.toml") == (2, "config/nope.toml: file not found")


def test_check_config_ok_line(tmp_path):
    path = write(tmp_path, '[broker]\nkind = "ib"\n')
    assert check_config(path) == (0, f"ok: {path} (preset 1dte, broker ib)")


def test_config_is_frozen():
    config = Config()
    with pytest.raises(ValidationError):
        config.sim.seed = 8  # type: ignore[misc]


def test_overrides_apply_and_revalidate(tmp_path):
    config = load_config(write(tmp_path, "[sim]\nseed = 11\n"))
    changed = config.with_overrides(
        **{"sim.speed": "max", "sim.start": "2022-03-01", "market.data_dir": "/tmp/d"}
    )
    assert changed.sim.speed == "max"
    assert changed.sim.start == date(2022, 3, 1)
    assert changed.market.data_dir == "/tmp/d"
    assert changed.sim.seed == 11  # the file's values stay
    assert changed.condor.preset == "1dte"
    assert config.sim.speed == 300.0  # the original is untouched


def test_overrides_skip_unset_flags():
    assert Config().with_overrides(**{"sim.speed": None, "sim.start": None}) == Config()


def test_overrides_keep_an_explicit_condor_setup(tmp_path):
    config = load_config(write(tmp_path, '[condor]\npreset = "monthly"\nshort_delta = 0.2\n'))
    condor = config.with_overrides(**{"condor.max_open": 2}).condor
    assert (condor.preset, condor.dte_min, condor.short_delta, condor.max_open) == ("monthly", 30, 0.2, 2)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"sim.speed": "fast"}, "command line: sim.speed: must be a positive number"),
        ({"sim.start": "yesterday"}, "command line: sim.start: Input should be a valid date"),
        ({"sim.sped": 2}, "command line: sim.sped: unknown key"),
        ({"sim.speed.x": 2}, "command line: sim.speed.x: unknown key"),
        ({"hedgehog.front": 4}, "command line: hedgehog.front: unknown key"),
        ({"condor.preset": "monthly"}, "command line: condor.preset: set the preset in the config file"),
    ],
)
def test_bad_override_names_the_key(overrides, expected):
    with pytest.raises(ConfigError) as caught:
        Config().with_overrides(**overrides)
    assert str(caught.value).startswith(expected)


def test_every_shipped_config_validates():
    files = sorted(CONFIG_DIR.glob("*.toml"))
    assert {p.name for p in files} >= {"sim.toml", "paper.toml", "monthly.toml"}
    for path in files:
        code, message = check_config(path)
        assert code == 0, message


def test_shipped_configs_say_what_they_promise():
    sim = load_config(CONFIG_DIR / "sim.toml")
    assert (sim.broker.kind, sim.market.source, sim.market.data_dir) == ("sim-gateway", "auto", str(ROOT / "data"))
    # relative to the file's folder: the repository's state/ and logs/ from any working directory
    assert sim.bot.store_path == str(ROOT / "state" / "bot.sqlite")
    assert sim.bot.log_path == str(ROOT / "logs" / "bot.jsonl")
    assert sim.sim.speed == 300.0
    paper = load_config(CONFIG_DIR / "paper.toml")
    assert (paper.broker.kind, paper.broker.host, paper.broker.port) == ("ib", "127.0.0.1", 4002)
    assert paper.bot.allow_live is False
    monthly = load_config(CONFIG_DIR / "monthly.toml")
    assert (monthly.broker.kind, monthly.condor.preset) == ("sim", "monthly")
