"""The bot's configuration: one TOML file validated once into frozen pydantic models.

A bad file must stop the bot before it connects, with one line that names the file, the key
and the problem (`ConfigError`), never a traceback. The models are frozen because runtime
switches (halted, paused) live in the store: nothing edits the config while the bot runs.
Command-line flags that override the file go through `Config.with_overrides`, which
validates the merged result exactly like the file.

Every strategy number from docs/ALVH.md is a field here, never a constant in code. The
`[condor]` section starts from one of two presets (`PRESETS`); any key the file sets wins.
"""

from __future__ import annotations

import math
import tomllib
from datetime import date, time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from bot.domain import TICK

SCHEMA_VERSION = 1
EXCHANGE_TIMEZONE = "America/New_York"
REGULAR_OPEN = time(9, 30)
REGULAR_CLOSE = time(16, 0)

Preset = Literal["1dte", "monthly"]

# What each condor preset sets when the file leaves the key out (docs/ALVH.md §1).
PRESETS: dict[str, dict[str, Any]] = {
    "1dte": {
        "dte_min": 1,
        "dte_max": 1,
        "dte_unit": "sessions",
        "short_delta": 0.16,
        "wing_width": 25,
        "entry_time": "15:30",
        "entry_days": "mon-fri",
        "max_open": 1,
        "close_dte": 0,
    },
    "monthly": {
        "dte_min": 30,
        "dte_max": 45,
        "dte_unit": "calendar",
        "short_delta": 0.16,
        "wing_width": 50,
        "entry_time": "10:00",
        "entry_days": "mon",
        "max_open": 3,
        "close_dte": 21,
    },
}


class ConfigError(Exception):
    """A configuration the bot refuses to run with; str() is one line for the operator."""


class RuleViolation(ValueError):
    """A cross-field rule broken; carries the key to blame, since a model validator's error
    would otherwise point at the whole section."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key


class Section(BaseModel):
    """Base of every config model: unknown keys are errors (a typo must not silently fall
    back to a default), values are frozen, and TOML's nan/inf are refused as numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BotConfig(Section):
    allow_live: bool = False
    log_path: str = Field("logs/bot.jsonl", min_length=1)
    log_level: Literal["debug", "info", "warning"] = "info"
    console_log: bool = True
    store_path: str = Field("state/bot.sqlite", min_length=1)
    control_socket: str = Field("state/control.sock", min_length=1)
    shutdown_cancel_orders: bool = True


class BrokerConfig(Section):
    # sim: in-process SimBroker (fast replay); sim-gateway: the simulated TWS gateway started
    # in-process, traded through IBBroker like a real account; ib: IB Gateway / TWS at host:port
    kind: Literal["sim", "sim-gateway", "ib"] = "sim"
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(4002, ge=1, le=65535)
    client_id: int = Field(1, ge=0, le=999_999)
    kill_client_id: int = Field(999, ge=0, le=999_999)
    connect_timeout_s: float = Field(10.0, ge=0.5, le=120)
    market_data_type: Literal[1, 2, 3, 4] = 1
    account: str = ""
    max_messages_per_s: float = Field(45.0, ge=1, le=50)

    @model_validator(mode="after")
    def _kill_switch_has_own_client_id(self) -> BrokerConfig:
        # IB drops the older of two connections with the same client id: the kill switch
        # would disconnect the bot instead of stopping it.
        if self.kill_client_id == self.client_id:
            raise RuleViolation(
                "kill_client_id", f"must differ from client_id ({self.client_id})"
            )
        return self


class SimConfig(Section):
    state_path: str = Field("state/sim_account.sqlite", min_length=1)
    account: str = Field("DU0000001", min_length=1)
    starting_cash: float = Field(1_000_000.0, ge=1000)
    seed: int = 7
    speed: float | Literal["max"] = 300.0
    start: date | None = None
    commission_per_contract: float = Field(0.65, ge=0, le=10)  # the flat schedule's rate
    commissions: Literal["flat", "ib"] = "flat"  # bot/sim/commissions.py: flat, or IB's tiered schedule
    fill_fraction: float = Field(0.25, ge=0, le=1)
    step_minutes: int = Field(5, ge=1, le=60)

    @field_validator("speed", mode="before")
    @classmethod
    def _speed(cls, value: object) -> float | str:
        """Accept `300`, `"300"`, `0.5` or `"max"` (as fast as the machine allows)."""
        if isinstance(value, str) and value.strip().lower() == "max":
            return "max"
        problem = 'must be a positive number of simulated seconds per real second, or "max"'
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(problem)
        try:
            speed = float(value)
        except ValueError:
            raise ValueError(problem) from None
        if not math.isfinite(speed) or speed <= 0:
            raise ValueError(problem)
        return speed


class MarketConfig(Section):
    source: Literal["auto", "history", "synthetic"] = "auto"
    data_dir: str = Field("data", min_length=1)


class ScheduleConfig(Section):
    timezone: str = EXCHANGE_TIMEZONE
    monitor_interval_s: int = Field(300, ge=10, le=3600)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (expected e.g. America/New_York)") from None
        return value


class CondorConfig(Section):
    """SPX iron condor rules (docs/ALVH.md §1). Preset-dependent keys have no default of
    their own: `_fill_from_preset` supplies them before validation."""

    preset: Preset = "1dte"
    # Days to expiry at entry, in the unit of `dte_unit`: "sessions" counts trading days
    # (1dte expires the next session, even over a weekend), "calendar" counts days.
    dte_min: int = Field(ge=0, le=365)
    dte_max: int = Field(ge=0, le=365)
    dte_unit: Literal["sessions", "calendar"]
    short_delta: float = Field(ge=0.05, le=0.5)
    wing_width: int = Field(gt=0, le=500, multiple_of=5)  # SPX strikes are 5 points apart
    wing_delta: float | None = Field(None, ge=0.01, le=0.3)  # set: wings by delta, not width
    credit_floor: float = Field(0.15, ge=0, le=1)  # of the wider wing's width
    max_risk_fraction: float = Field(0.20, gt=0, le=1)  # max loss of open condors / net liq
    max_quantity: int = Field(200, ge=1)  # a safety cap; the risk fraction sizes the entry
    take_profit: float = Field(0.5, gt=0, le=1)  # fraction of the credit
    stop_loss_multiple: float = Field(2.0, gt=0)  # close when loss = this x credit
    entry_time: str  # "HH:MM" in schedule.timezone
    entry_days: str  # cron day_of_week; "first trading day of the week" is the scheduler's
    max_open: int = Field(ge=1, le=100)
    close_dte: int = Field(ge=0, le=365)  # calendar days; 0 holds to cash settlement

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        """Preset values are defaults only: keys the file sets are kept as written."""
        if not isinstance(data, dict):
            return data
        preset = data.get("preset", "1dte")
        if preset not in PRESETS:
            return data  # the `preset` field reports it
        return {**PRESETS[preset], **data}

    @field_validator("entry_time")
    @classmethod
    def _hh_mm(cls, value: str) -> str:
        if len(value) != 5 or value[2] != ":":
            raise ValueError(f'must be "HH:MM", got {value!r}')
        try:
            time.fromisoformat(value)
        except ValueError:
            raise ValueError(f'must be "HH:MM", got {value!r}') from None
        return value

    @field_validator("entry_days")
    @classmethod
    def _cron_days(cls, value: str) -> str:
        try:
            CronTrigger(day_of_week=value, timezone=EXCHANGE_TIMEZONE)
        except ValueError as exc:
            raise ValueError(f"not a cron day_of_week ({exc})") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CondorConfig:
        if self.dte_min > self.dte_max:
            raise RuleViolation("dte_min", f"must be <= dte_max ({self.dte_max})")
        if self.wing_delta is not None and self.wing_delta >= self.short_delta:
            raise RuleViolation(
                "wing_delta",
                f"must be less than short_delta ({self.short_delta}): wings lie further out",
            )
        if self.close_dte > 0 and self.close_dte >= self.dte_min:
            raise RuleViolation(
                "close_dte",
                f"must be less than dte_min ({self.dte_min}), or a condor is due to close "
                "the day it opens",
            )
        return self

    @property
    def entry_time_of_day(self) -> time:
        return time.fromisoformat(self.entry_time)


class ExecutionConfig(Section):
    """How a combo limit order walks from mid toward the natural price."""

    step_s: float = Field(15.0, ge=1, le=600)  # seconds between price steps
    tick: Decimal = Field(Decimal("0.05"), gt=0, le=5, multiple_of=TICK)  # combos: 0.05 grid
    max_steps: int = Field(10, ge=0, le=100)
    final_wait_s: float = Field(60.0, ge=0, le=3600)  # at the last price, before cancelling


LayerName = Literal["front", "mid", "back"]


class LayerConfig(Section):
    """One hedge layer (ALVH.md §2): contracts per `hedge.per_notional` of condor notional,
    the DTE window of its monthly VIX expiry, the call delta. A layer whose expiry falls below
    `dte_min` is rolled into the window."""

    count: float = Field(ge=0, le=100)
    dte_min: int = Field(ge=1, le=365)
    dte_max: int | None = Field(None, ge=1, le=365)  # None: the nearest expiry with DTE >= dte_min
    delta: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _window(self) -> LayerConfig:
        if self.dte_max is not None and self.dte_max < self.dte_min:
            raise RuleViolation("dte_max", f"must be >= dte_min ({self.dte_min})")
        return self


class TierConfig(Section):
    """A VIX tier [lower, upper) and its multiplier on the 4/4/2 counts (ALVH.md §3).
    0 is a real bound."""

    lower: float = Field(ge=0, le=1000)
    upper: float = Field(gt=0, le=1000)
    multiplier: float = Field(ge=0, le=10)


class WriteConfig(Section):
    """The temporal theta press (ALVH.md §5): covered short calls against layers 2 and 3."""

    enabled: bool = True
    layers: tuple[LayerName, ...] = ("mid", "back")
    ratio: float = Field(0.5, ge=0, le=1.0)  # short quantity <= covering layer quantity x ratio
    dte_min: int = Field(7, ge=1, le=60)
    dte_max: int = Field(21, ge=1, le=90)
    delta: float = Field(0.20, gt=0, lt=1)
    min_credit: float = Field(0.10, ge=0, le=10)  # per share: a call bid below this is not worth writing
    weekly: bool = True  # VIXW expiries allowed
    buyback_profit: float = Field(0.8, gt=0, le=1)  # buy back once 80% of the sale price is earned
    stop_vix: float = Field(25.0, ge=0, le=200)  # no writes, and buy back at once, at or above
    # no writes while activation is armed: MACD above its signal and VIX within this many points
    # of hedge.activation_vix (a write then is bought back dearer the moment activation fires)
    arm_margin: float = Field(3.0, ge=0, le=100)

    @model_validator(mode="after")
    def _window(self) -> WriteConfig:
        if self.dte_max < self.dte_min:
            raise RuleViolation("dte_max", f"must be >= dte_min ({self.dte_min})")
        return self


class MonetizeConfig(Section):
    """Taking profit on spikes (ALVH.md §6)."""

    vix: float = Field(40.0, ge=0, le=200)  # spot VIX at or above which layers are monetized
    value_multiple: float = Field(3.0, ge=1, le=100)  # layer market value >= this x its cost
    fraction: float = Field(0.5, gt=0, le=1)  # of the layer sold
    rebuy_below: float = Field(30.0, ge=0, le=200)  # the tier target re-buys once VIX is under


def _default_tiers() -> tuple[TierConfig, ...]:
    bounds = [(0, 16, 0.5), (16, 20, 1.0), (20, 25, 1.25), (25, 30, 1.5), (30, 1000, 2.0)]
    return tuple(TierConfig(lower=lo, upper=hi, multiplier=m) for lo, hi, m in bounds)


class HedgeConfig(Section):
    """The Adaptive Layered VIX Hedge (ALVH.md §2-6); every number is a key."""

    enabled: bool = True
    notional_basis: Literal["max_loss", "underlying"] = "max_loss"
    per_notional: float = Field(100_000.0, gt=0)  # counts are per this much condor notional
    notional_memory_days: int = Field(5, ge=0, le=60)  # a closed condor's notional is kept this long
    sizing: Literal["count", "vega"] = "count"
    vega_target: float = Field(0.5, gt=0, le=2)  # hedge vega / condor vega for sizing "vega"
    min_per_layer: int = Field(1, ge=0, le=10)  # per active layer once notional > 0
    front: LayerConfig = LayerConfig(count=4, dte_min=8, dte_max=None, delta=0.35)
    mid: LayerConfig = LayerConfig(count=4, dte_min=30, dte_max=45, delta=0.30)
    back: LayerConfig = LayerConfig(count=2, dte_min=60, dte_max=120, delta=0.25)
    tiers: tuple[TierConfig, ...] = Field(default_factory=_default_tiers, min_length=1)
    hysteresis: float = Field(1.0, ge=0, le=20)  # VIX points a tier (and activation) is held below its bound
    rebalance_band: float = Field(0.2, ge=0, le=1)  # no trade while |target - held| < this x target
    expansion_rsi: float = Field(65.0, ge=0, le=100)
    expansion_bonus: float = Field(0.5, ge=0, le=10)
    rebalance_rsi: float = Field(70.0, ge=0, le=100)  # RSI crossing above: rebalance now
    activation_vix: float = Field(25.0, ge=0, le=200)
    activation_multiplier: float = Field(2.0, ge=0, le=10)
    rsi_period: int = Field(14, ge=2, le=100)
    macd_fast: int = Field(12, ge=1, le=100)
    macd_slow: int = Field(26, ge=2, le=200)
    macd_signal: int = Field(9, ge=1, le=100)
    rebalance_time: str = "10:00"  # scheduled evaluation, New York (also after each condor entry)
    write: WriteConfig = WriteConfig()
    monetize: MonetizeConfig = MonetizeConfig()

    @field_validator("rebalance_time")
    @classmethod
    def _hh_mm_rebalance(cls, value: str) -> str:
        try:
            time.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a time HH:MM") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> HedgeConfig:
        tiers = self.tiers
        if tiers[0].lower != 0:
            raise RuleViolation("tiers", "the first tier must start at 0")
        for i, t in enumerate(tiers):
            if t.upper <= t.lower:
                raise RuleViolation("tiers", f"tier {i}: upper {t.upper} must be above lower {t.lower}")
            if i and t.lower != tiers[i - 1].upper:
                raise RuleViolation("tiers", f"tier {i}: lower {t.lower} must equal the previous upper")
        if self.macd_fast >= self.macd_slow:
            raise RuleViolation("macd_fast", f"must be below macd_slow ({self.macd_slow})")
        return self

    def layer(self, name: str) -> LayerConfig:
        return {"front": self.front, "mid": self.mid, "back": self.back}[name]


class Config(Section):
    """The whole file. Sections left out take their defaults."""

    schema_version: int = SCHEMA_VERSION
    bot: BotConfig = BotConfig()
    broker: BrokerConfig = BrokerConfig()
    sim: SimConfig = SimConfig()
    market: MarketConfig = MarketConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    condor: CondorConfig = CondorConfig()
    execution: ExecutionConfig = ExecutionConfig()
    hedge: HedgeConfig = HedgeConfig()

    @field_validator("schema_version")
    @classmethod
    def _supported_schema(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported version {value} (this bot reads {SCHEMA_VERSION})")
        return value

    @model_validator(mode="after")
    def _entry_in_market_hours(self) -> Config:
        # Only checkable when entry times are exchange times; 1DTE entries after the close
        # could never fill.
        if self.schedule.timezone == EXCHANGE_TIMEZONE:
            entry = self.condor.entry_time_of_day
            if not REGULAR_OPEN <= entry < REGULAR_CLOSE:
                raise RuleViolation(
                    "condor.entry_time", "must be within regular hours 09:30-16:00 New York"
                )
        return self

    def with_overrides(self, **dotted: object) -> Config:
        """A copy with dotted keys replaced, e.g. `**{"sim.speed": "max"}`, validated like
        the file. None values are skipped so unset command-line flags can pass straight
        through. Raises ConfigError naming the key."""
        data = self.model_dump()
        for key, value in dotted.items():
            if value is None:
                continue
            if key == "condor.preset":
                # The other condor keys are already resolved from the file's preset.
                raise ConfigError(f"command line: {key}: set the preset in the config file")
            section, _, leaf = key.rpartition(".")
            table = data.get(section) if section else data
            if "." in section or not isinstance(table, dict):  # sections are one level deep
                raise ConfigError(f"command line: {key}: unknown key")
            table[leaf] = value
        try:
            return Config.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"command line: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    """`dotted.key: problem` for the first error, in the operator's words."""
    error: ErrorDetails = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    problem = error["msg"]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, RuleViolation):
        loc = [*loc, *cause.key.split(".")]
    if isinstance(cause, ValueError):
        problem = str(cause)  # without pydantic's "Value error, " prefix
    elif error["type"] == "extra_forbidden":
        problem = "unknown key"
    key = ".".join(loc) or "(top level)"
    return " ".join(f"{key}: {problem}".split())  # one line, whatever the message held


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; every user error becomes a one-line ConfigError."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {' '.join(str(exc).split())}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 text") from None
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc)}") from None


def check_config(path: str | Path) -> tuple[int, str]:
    """`spx-bot check-config`: exit code and the one line to print."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        return 2, str(exc)
    return 0, f"ok: {path} (preset {config.condor.preset}, broker {config.broker.kind})"
