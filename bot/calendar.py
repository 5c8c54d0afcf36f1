"""Trading sessions (holidays, early closes) from a maintained exchange calendar, and expiries.

SPX and VIX options trade on Cboe, which follows the NYSE holiday and early-close schedule
for regular trading hours; `exchange_calendars`' XNYS calendar carries both. Every answer is
cached per date: the engine asks the same questions thousands of times in a replay.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd

NY = ZoneInfo("America/New_York")
UTC = timezone.utc


class TradingCalendar:
    """Sessions of the US index-options market (regular hours, NYSE calendar)."""

    def __init__(self, start: date = date(1990, 1, 2), end: date | None = None, name: str = "XNYS"):
        end = end or date(datetime.now(UTC).year + 2, 12, 31)  # calendar data range, not logic time
        self._cal = xcals.get_calendar(name, start=pd.Timestamp(start), end=pd.Timestamp(end))
        self._sessions = [ts.date() for ts in self._cal.sessions]
        self._index = {d: i for i, d in enumerate(self._sessions)}
        self.first = self._sessions[0]
        self.last = self._sessions[-1]

    def is_session(self, d: date) -> bool:
        return d in self._index

    @lru_cache(maxsize=None)
    def open_close(self, d: date) -> tuple[datetime, datetime]:
        """UTC open and close of session `d` (close is early on half days)."""
        if d not in self._index:
            raise ValueError(f"{d} is not a trading session")
        ts = pd.Timestamp(d)
        o = self._cal.session_open(ts).to_pydatetime()
        c = self._cal.session_close(ts).to_pydatetime()
        return o.astimezone(UTC), c.astimezone(UTC)

    def is_open(self, t: datetime) -> bool:
        d = t.astimezone(NY).date()
        if d not in self._index:
            return False
        o, c = self.open_close(d)
        return o <= t < c

    def next_session(self, d: date, include: bool = False) -> date:
        """The first session after `d` (or `d` itself when `include` and it is one)."""
        if include and d in self._index:
            return d
        i = self._index.get(d)
        if i is not None and i + 1 < len(self._sessions):
            return self._sessions[i + 1]
        import bisect

        j = bisect.bisect_right(self._sessions, d)
        if j >= len(self._sessions):
            raise ValueError(f"{d} is past the end of the trading calendar ({self.last})")
        return self._sessions[j]

    def last_closed_session(self, t: datetime) -> date | None:
        """The last session whose close is at or before t (today once it has closed); None
        before the calendar's first session."""
        d = t.astimezone(NY).date()
        if self.is_session(d) and t >= self.open_close(d)[1]:
            return d
        if d > self.first:
            return self.previous_session(d)
        return None

    def previous_session(self, d: date) -> date:
        import bisect

        j = bisect.bisect_left(self._sessions, d)
        return self._sessions[j - 1]

    def add_sessions(self, d: date, n: int) -> date:
        """The session `n` sessions after session `d` (n may be negative)."""
        d = self.next_session(d, include=True)
        return self._sessions[self._index[d] + n]

    def sessions_between(self, start: date, end: date) -> list[date]:
        """Sessions with start <= d <= end."""
        import bisect

        i = bisect.bisect_left(self._sessions, start)
        j = bisect.bisect_right(self._sessions, end)
        return self._sessions[i:j]

    def sessions_until(self, d0: date, d1: date) -> int:
        """Number of sessions strictly after d0 up to and including d1 (trading days to expiry)."""
        return len(self.sessions_between(d0 + timedelta(days=1), d1))

    def spxw_expiry_time(self, d: date) -> datetime:
        """SPXW weeklies are PM-settled: they expire at the session's close (16:00 ET)."""
        return self.open_close(d)[1]

    def vix_expiry_time(self, d: date) -> datetime:
        """VIX options are AM-settled: they expire at the special opening quotation, the open
        (09:30 ET) of their expiry date."""
        return self.open_close(d)[0]

    def settlement_time(self, option) -> datetime:
        """When an option of `bot.domain.OptionSpec` leaves the books: VIX/VIXW at the morning
        SOQ of its expiry date, SPXW at the close."""
        return self.vix_expiry_time(option.expiry) if option.symbol == "VIX" else self.spxw_expiry_time(option.expiry)

    @lru_cache(maxsize=None)
    def vix_monthly_expiry(self, year: int, month: int) -> date:
        """VIX monthly expiry for the contract month: the Wednesday 30 days before the third
        Friday of the following month; if that Friday is not a session, 30 days before the
        session preceding it; if the Wednesday is not a session, the session before it."""
        ny, nm = (year + 1, 1) if month == 12 else (year, month + 1)
        first = date(ny, nm, 1)
        third_friday = first + timedelta(days=(4 - first.weekday()) % 7 + 14)
        anchor = third_friday if self.is_session(third_friday) else self.previous_session(third_friday)
        wed = anchor - timedelta(days=30)
        return wed if self.is_session(wed) else self.previous_session(wed)


def ny_time(d: date, hhmm: str | time) -> datetime:
    """The UTC instant of a New York wall-clock time on date d."""
    t = hhmm if isinstance(hhmm, time) else time.fromisoformat(hhmm)
    return datetime.combine(d, t, NY).astimezone(UTC)


@lru_cache(maxsize=1)
def default_calendar() -> TradingCalendar:
    return TradingCalendar()
