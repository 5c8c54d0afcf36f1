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
import re
import os
import stat
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
    StrictBool,
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
        # 8% of the wing (2.00 on 25 points). The 15:30 mid credit of a 16-delta, 25-wide
        # 1DTE condor priced on 600 sessions of 2004-2026 history: median 9.9% of width
        # (VIX < 15: 8.1%, VIX 15-20: 10.1%, 20-30: 13.2%, 30+: 15.3%); 8% lets 72% of
        # entries through and skips the thinnest quarter; ALVH's 15% lets through 21%, only
        # in high VIX, so a 1DTE book sat idle (README, "The credit floor").
        "credit_floor": 0.08,
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
        "credit_floor": 0.15,  # ALVH.md §1: 15-25% of the wing for 30-45 DTE condors
    },
}


# Bounds that keep the simulator's arithmetic finite and its calendar buildable.
SOCKET_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes including the final NUL
MAX_CASH = 1e12  # dollars: 1e308 overflows the first P&L sum
MIN_SPEED, MAX_SPEED = 0.01, 1_000_000.0
FIRST_START = date(1990, 1, 2)  # the first VIX close; earlier has no market to replay
LAST_START = date(2100, 12, 31)  # the exchange calendar ends; the CLI also refuses the far future

# Config keys that name files or folders: relative values are relative to the config file's
# folder, so `spx-bot status` run from anywhere reaches the same state as `make run`.
PATH_KEYS = (
    ("bot", "log_path"),
    ("bot", "store_path"),
    ("bot", "control_socket"),
    ("sim", "state_path"),
    ("market", "data_dir"),
    ("sim", "surface"),
)
_HH_MM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


def hh_mm(value: str) -> str:
    """A strict "HH:MM": "10", "1000" and "10:00:30" are refused (Python's time parser takes them)."""
    if not isinstance(value, str) or not _HH_MM.fullmatch(value):
        raise ValueError(f'must be "HH:MM" (24-hour, e.g. "10:00"), got {value!r}')
    return value


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
    allow_live: StrictBool = False  # "yes" or 1 must not open a live account
    log_path: str = Field("logs/bot.jsonl", min_length=1)
    log_level: Literal["debug", "info", "warning"] = "info"
    console_log: StrictBool = True
    store_path: str = Field("state/bot.sqlite", min_length=1)
    control_socket: str = Field("state/control.sock", min_length=1)
    shutdown_cancel_orders: StrictBool = True


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
    market_data_lines: int = Field(100, ge=20, le=10_000)  # concurrent market-data lines (IB default 100)

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
    starting_cash: float = Field(1_000_000.0, ge=1000, le=MAX_CASH)
    seed: int = Field(7, ge=0, le=2**32 - 1)  # numpy seeds are unsigned 32-bit
    speed: float | Literal["max"] = 300.0
    start: date | None = Field(None, ge=FIRST_START, le=LAST_START)
    commission_per_contract: float = Field(0.65, ge=0, le=10)  # the flat schedule's rate
    commissions: Literal["flat", "ib"] = "ib"  # bot/sim/commissions.py: IB's tiered schedule plus fees, or flat
    fill_fraction: float = Field(0.25, ge=0, le=1)
    step_minutes: int = Field(5, ge=1, le=60)
    # the SPX surface file (`spx-bot calibrate --out`); unset: the shipped fit, bot/params/surface.json
    surface: str | None = Field(None, min_length=1)

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
        if not MIN_SPEED <= speed <= MAX_SPEED:
            # 1e-300 would never reach the next event; 1e300 overflows the clock's arithmetic
            raise ValueError(f'must be between {MIN_SPEED:g} and {MAX_SPEED:g} simulated seconds per real second, '
                             f'or "max"; got {speed:g}')
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
    credit_floor: float = Field(ge=0, le=1)  # of the wider wing's width; from the preset
    max_risk_fraction: float = Field(0.20, gt=0, le=1)  # max loss of open condors / net liq
    # None: the documented sizing (ALVH.md §1: max_risk_fraction alone); set: condors per entry, at most
    max_quantity: int | None = Field(None, ge=1, le=10_000)
    take_profit: float = Field(0.5, gt=0, le=1)  # fraction of the credit
    stop_loss_multiple: float = Field(2.0, gt=0, le=100)  # close when loss = this x credit
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
        if not isinstance(preset, str) or preset not in PRESETS:
            return data  # the `preset` field reports it
        return {**PRESETS[preset], **data}

    @field_validator("entry_time")
    @classmethod
    def _hh_mm(cls, value: str) -> str:
        return hh_mm(value)

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

    enabled: StrictBool = True
    layers: tuple[LayerName, ...] = ("mid", "back")
    ratio: float = Field(0.5, ge=0, le=1.0)  # short quantity <= covering layer quantity x ratio
    dte_min: int = Field(7, ge=1, le=60)
    dte_max: int = Field(21, ge=1, le=90)
    delta: float = Field(0.20, gt=0, lt=1)
    min_credit: float = Field(0.10, ge=0, le=10)  # per share: a call bid below this is not worth writing
    weekly: StrictBool = True  # VIXW expiries allowed
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

    enabled: StrictBool = True
    notional_basis: Literal["max_loss", "underlying"] = "max_loss"
    per_notional: float = Field(100_000.0, gt=0, le=MAX_CASH)  # counts are per this much condor notional
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
        return hh_mm(value)

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


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
EventClass = Literal["condor", "hedge", "alert", "killswitch", "mismatch", "fatal", "broker", "summary"]
EVENT_CLASSES: tuple[str, ...] = ("condor", "hedge", "alert", "killswitch", "mismatch", "fatal", "broker", "summary")


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpConfig(Section):
    """The read-only health and metrics endpoint (`/health`, `/metrics`). Port 0 picks a free
    port (tests); the daemon logs `http.listening` with the URL."""

    enabled: bool = False
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8787, ge=0, le=65535)
    token: str = ""  # bearer token; required when host is not loopback
    token_file: str = ""  # or a file holding it (a Docker/systemd secret)
    dashboard_interval_s: float = Field(1.0, ge=0.2, le=60)  # wall seconds between the dashboard's live frames

    @model_validator(mode="after")
    def _token_off_loopback(self) -> HttpConfig:
        if self.token and self.token_file:
            raise RuleViolation("token_file", "set token or token_file, not both")
        if self.token and len(self.token) < 16:
            raise RuleViolation("token", "must be at least 16 characters")
        if not _is_loopback(self.host) and not (self.token or self.token_file):
            raise RuleViolation("token", f"required when host ({self.host}) is not loopback")
        return self


class NotifyTarget(Section):
    """One notification target: an Apprise URL (tgram://, discord://, slack://, ntfy://,
    mailto://, json://...) and the event classes it receives."""

    url: str = ""
    url_file: str = ""  # a file holding the URL (it carries a token: keep it out of the config)
    events: tuple[EventClass, ...] = EVENT_CLASSES

    @model_validator(mode="after")
    def _one_url(self) -> NotifyTarget:
        if bool(self.url) == bool(self.url_file):
            raise RuleViolation("url", "set exactly one of url and url_file")
        if self.url and "://" not in self.url:
            raise RuleViolation("url", "must be an Apprise URL like tgram://TOKEN/CHAT or json://host:port/path")
        return self


class NotifyConfig(Section):
    """Push notifications (Apprise): sent from a queue by a worker, never from the trading loop."""

    targets: tuple[NotifyTarget, ...] = ()
    max_per_hour: int = Field(30, ge=1, le=3600)  # per event class; the rest are dropped and counted
    queue_size: int = Field(200, ge=1, le=100_000)
    timeout_s: float = Field(15.0, ge=1, le=300)  # one delivery, all targets
    title: str = Field("spx-bot", min_length=1, max_length=64)


class MaintenanceWindow(Section):
    """A time when IB or its gateway is expected to be away: `minutes` from `start` on `days`
    (a window may run past midnight; it belongs to the day it starts)."""

    days: tuple[Weekday, ...] = WEEKDAYS  # type: ignore[assignment]
    start: str
    minutes: int = Field(ge=1, le=24 * 60)

    @field_validator("start")
    @classmethod
    def _hh_mm_start(cls, value: str) -> str:
        try:
            time.fromisoformat(value)
        except ValueError:
            raise ValueError(f'must be "HH:MM", got {value!r}') from None
        return value


def _default_windows() -> tuple[MaintenanceWindow, ...]:
    # IB Gateway's own daily auto-restart (IBC AUTO_RESTART_TIME 11:45 PM) and IB's nightly
    # server reset; the weekly re-authentication early on Sunday (New York time)
    return (MaintenanceWindow(start="23:40", minutes=35), MaintenanceWindow(days=("sun",), start="00:15", minutes=165))


class MaintenanceConfig(Section):
    """IB's schedule: disconnects inside a window are expected (logged, no alert); outside,
    one longer than `alert_after_s` alerts and one longer than `halt_entries_after_s` stops new
    entries until the connection is back and reconciled. Seconds on the bot's clock."""

    timezone: str = EXCHANGE_TIMEZONE
    windows: tuple[MaintenanceWindow, ...] = Field(default_factory=_default_windows)
    alert_after_s: float = Field(300.0, ge=0, le=86_400)
    halt_entries_after_s: float = Field(600.0, ge=0, le=86_400)
    check_interval_s: float = Field(5.0, ge=0.1, le=300)

    @field_validator("timezone")
    @classmethod
    def _known_zone_maintenance(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (expected e.g. America/New_York)") from None
        return value

    @model_validator(mode="after")
    def _ordered(self) -> MaintenanceConfig:
        if self.halt_entries_after_s < self.alert_after_s:
            raise RuleViolation("halt_entries_after_s", f"must be >= alert_after_s ({self.alert_after_s:g})")
        return self


class SimGatewayConfig(Section):
    """The in-process simulated gateway restarts itself, like IB Gateway's nightly restart:
    at `restart_at` (New York, on `restart_days`) it drops every client and is away for
    `restart_down_s` simulated seconds. Unset: never."""

    restart_at: str | None = None
    restart_days: tuple[Weekday, ...] = WEEKDAYS  # type: ignore[assignment]
    restart_down_s: float = Field(120.0, ge=1, le=86_400)

    @field_validator("restart_at")
    @classmethod
    def _hh_mm_restart(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                time.fromisoformat(value)
            except ValueError:
                raise ValueError(f'must be "HH:MM", got {value!r}') from None
        return value


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
    http: HttpConfig = HttpConfig()
    notify: NotifyConfig = NotifyConfig()
    maintenance: MaintenanceConfig = MaintenanceConfig()
    sim_gateway: SimGatewayConfig = SimGatewayConfig()

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

    def relative_to(self, folder: str | Path) -> Config:
        """A copy whose relative PATH_KEYS are absolute paths under `folder`."""
        base = os.path.abspath(folder)
        sections: dict[str, dict[str, str]] = {}
        for section, key in PATH_KEYS:
            value = getattr(getattr(self, section), key)
            if value is not None and not os.path.isabs(value):
                sections.setdefault(section, {})[key] = os.path.normpath(os.path.join(base, value))
        return self.model_copy(update={s: getattr(self, s).model_copy(update=u) for s, u in sections.items()})

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
    """Read and validate a config file; every user error becomes a one-line ConfigError.
    Relative paths in it (PATH_KEYS, given or defaulted) are made absolute against the
    file's own folder, never against the working directory."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {' '.join(str(exc).split())}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 text") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: values nested too deeply") from None
    return config.relative_to(Path(path).parent)


def check_files(config: Config, source: str | Path = "config") -> None:
    """The file-system half of validation, shared by `check-config` and `run`: every path the
    bot will write is a file (not a folder) in a folder it can create or write, and the
    control socket fits a unix socket address. Raises ConfigError naming the key."""
    for section, key in PATH_KEYS:
        value = getattr(getattr(config, section), key)
        where = f"{source}: {section}.{key}"
        if section == "market":
            continue  # read only, and only with market.source history/auto: bot.data checks it
        if (section, key) == ("sim", "surface"):  # read only: a surface file the pricing can load
            if value is not None:
                from bot.surface import SurfaceError, load_surface

                try:
                    load_surface(value)
                except SurfaceError as exc:
                    raise ConfigError(f"{where}: {exc}") from None
            continue
        _check_writable_file(Path(value), where, socket=key == "control_socket")


def _check_writable_file(path: Path, where: str, socket: bool = False) -> None:
    if "\0" in str(path):
        raise ConfigError(f"{where}: contains a NUL byte")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot use {path}: {exc.strerror}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{where}: {path} is a folder; name a file inside it")
        if socket and not stat.S_ISSOCK(st.st_mode):
            raise ConfigError(f"{where}: {path} exists and is not a socket; remove it or choose another path")
        if not socket and not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{where}: {path} is not a regular file")
        if not os.access(path, os.R_OK | os.W_OK):
            raise ConfigError(f"{where}: {path} is not writable by this user")
    if socket:
        size = len(os.fsencode(path))
        if size > SOCKET_PATH_MAX:
            raise ConfigError(f"{where}: {size} bytes, over the {SOCKET_PATH_MAX} a unix socket path allows: {path}")
    # the nearest folder that exists must be a folder we can create the rest in
    parent = path.parent
    while not parent.exists():
        if parent == parent.parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{where}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{where}: cannot create {path}: folder {parent} is not writable")


def check_config(path: str | Path) -> tuple[int, str]:
    """`spx-bot check-config`: exit code and the one line to print. Refuses exactly what
    `spx-bot run` would refuse before it starts."""
    try:
        config = load_config(path)
        check_files(config, path)
    except ConfigError as exc:
        return 2, str(exc)
    return 0, f"ok: {path} (preset {config.condor.preset}, broker {config.broker.kind})"
