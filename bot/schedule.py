"""Cron jobs in America/New_York, fired on the injected clock, on trading sessions only.

APScheduler's `CronTrigger` computes fire times (day-of-week, hour, minute, DST); the
exchange calendar removes holidays and moves a time past an early close to before it. The
engine asks `next_fire(after)` and sleeps on its own clock, so the same jobs run in real
time, accelerated, or as fast as possible.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

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
        # every weekday, then filtered: a job may move off its cron day (first_of_week)
        self._trigger = CronTrigger(day_of_week="mon-fri", hour=self.hour, minute=self.minute, timezone=NY)
        self._days = CronTrigger(day_of_week=self.day_of_week, timezone=NY)

    def _day_matches(self, cal: TradingCalendar, t: datetime) -> bool:
        d = t.astimezone(NY).date()
        if not cal.is_session(d):
            return False
        if self.first_of_week:
            week_start = d - timedelta(days=d.weekday())
            return cal.next_session(week_start, include=True) == d
        midnight = datetime.combine(d, datetime.min.time(), NY)
        return self._days.get_next_fire_time(None, midnight) == midnight

    def next_fire(self, cal: TradingCalendar, after: datetime) -> datetime | None:
        t = after
        for _ in range(400):
            nxt = self._trigger.get_next_fire_time(None, t + timedelta(seconds=1))
            if nxt is None:
                return None
            t = nxt
            if not self._day_matches(cal, t):
                continue
            fire = t.astimezone(UTC)
            _, close = cal.open_close(t.astimezone(NY).date())
            if fire >= close:
                if self.before_close is None:
                    continue
                fire = close - self.before_close
            if fire > after:
                return fire
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
