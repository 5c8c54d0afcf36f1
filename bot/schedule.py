"""Cron jobs in America/New_York, fired on the injected clock, on trading sessions only.

APScheduler's `CronTrigger` parses the cron day-of-week; the New York wall-clock time (DST
included) is placed on each matching session, and the exchange calendar removes holidays and
moves a time past an early close to before it (`CronJob.fire_on`, the one rule). The engine
asks `next_fire(after)` and sleeps on its own clock, so the same jobs run in real time,
accelerated, or as fast as possible; the backtest asks `fire_on` per session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from apscheduler.triggers.cron import CronTrigger

from bot.calendar import NY, TradingCalendar

UTC = timezone.utc


@dataclass
class CronJob:
    """A job at a New York wall-clock time on the sessions matching `day_of_week`.

    `first_of_week`: fire only on the first session of each week (a Monday holiday moves the
    job to Tuesday). `before_close`: on an early-close day a time at or after the close fires
    this long before the close instead (an entry must be made while the market is open)."""

    name: str
    hour: int
    minute: int
    day_of_week: str = "mon-fri"
    first_of_week: bool = False
    before_close: timedelta | None = None

    def __post_init__(self):
        # APScheduler parses the cron day_of_week once: the weekdays (Monday = 0) it matches
        days = CronTrigger(day_of_week=self.day_of_week, timezone=NY)
        monday = datetime(2024, 1, 1, tzinfo=NY)
        self.weekdays = frozenset(i for i in range(7) if days.get_next_fire_time(
            None, monday + timedelta(days=i)) == monday + timedelta(days=i))

    def runs_on(self, cal: TradingCalendar, d: date) -> bool:
        """Whether the job fires in session d at all."""
        if not cal.is_session(d):
            return False
        if self.first_of_week:
            return cal.next_session(d - timedelta(days=d.weekday()), include=True) == d
        return d.weekday() in self.weekdays

    def fire_on(self, cal: TradingCalendar, d: date, close: datetime | None = None) -> datetime | None:
        """When the job fires in session d (UTC), None when it does not fire that day. `close`:
        the session's close when the caller knows it already."""
        if not self.runs_on(cal, d):
            return None
        fire = datetime.combine(d, time(self.hour, self.minute), NY).astimezone(UTC)
        if close is None:
            close = cal.open_close(d)[1]
        if fire >= close:
            if self.before_close is None:
                return None
            fire = close - self.before_close
        return fire

    def next_fire(self, cal: TradingCalendar, after: datetime) -> datetime | None:
        d = after.astimezone(NY).date()
        for _ in range(400):
            fire = self.fire_on(cal, d)
            if fire is not None and fire > after:
                return fire
            d += timedelta(days=1)
        return None


@dataclass
class IntervalJob:
    """Every `seconds` while the market is open (first run one interval after the open; the
    last one at the close)."""

    name: str
    seconds: int

    def next_fire(self, cal: TradingCalendar, after: datetime) -> datetime | None:
        d = after.astimezone(NY).date()
        for _ in range(15):
            if cal.is_session(d):
                open_, close = cal.open_close(d)
                if after < close:
                    if after < open_:
                        return open_ + timedelta(seconds=self.seconds)
                    n = int((after - open_).total_seconds() // self.seconds) + 1
                    return min(open_ + timedelta(seconds=n * self.seconds), close)
            d = cal.next_session(d)
        return None


@dataclass
class SessionJob:
    """At the open or the close of every session, shifted by `offset`."""

    name: str
    at: str  # "open" | "close"
    offset: timedelta = timedelta(0)

    def next_fire(self, cal: TradingCalendar, after: datetime) -> datetime | None:
        d = after.astimezone(NY).date() - timedelta(days=1)
        for _ in range(15):
            if cal.is_session(d):
                open_, close = cal.open_close(d)
                fire = (open_ if self.at == "open" else close) + self.offset
                if fire > after:
                    return fire
            d = cal.next_session(d)
        return None
