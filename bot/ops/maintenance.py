"""IB's maintenance windows: pure functions of a moment and the configured windows."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.config import WEEKDAYS, MaintenanceWindow


def window_at(moment: datetime, windows: tuple[MaintenanceWindow, ...], timezone: str) -> tuple[datetime, datetime] | None:
    """(start, end) of the window `moment` falls in, or None. A window belongs to the day it
    starts on and may run past midnight, so yesterday's windows are checked too."""
    tz = ZoneInfo(timezone)
    local = moment.astimezone(tz)
    for days_back in (0, 1):
        day = local.date() - timedelta(days=days_back)
        weekday = WEEKDAYS[day.weekday()]
        for w in windows:
            if weekday not in w.days:
                continue
            start = datetime.combine(day, time.fromisoformat(w.start), tz)
            end = start + timedelta(minutes=w.minutes)
            if start <= local < end:
                return start, end
    return None


def next_daily(moment: datetime, at: str, days: tuple[str, ...], timezone: str) -> datetime:
    """The first `at` (HH:MM in `timezone`) on one of `days` strictly after `moment`."""
    tz = ZoneInfo(timezone)
    local = moment.astimezone(tz)
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        candidate = datetime.combine(day, time.fromisoformat(at), tz)
        if candidate > local and WEEKDAYS[day.weekday()] in days:
            return candidate
    raise ValueError(f"no day in {days!r}")
