"""What the simulated exchange lists: SPX/SPXW and VIX/VIXW expiries and strikes.

A model of the listing, in one place: `SimExchange` (behind SimBroker and the simulated gateway)
answers from it, and the backtest picks its chains from it.

- SPXW: an expiry every session (PM-settled at the close), listed `SPX_HORIZON_DAYS` ahead;
  strikes every 5 points within +/-20 % of spot.
- VIX: the next `VIX_MONTHLIES_LISTED` monthly expiries (class "VIX") and a weekly (class
  "VIXW") for every week of the next `VIXW_WEEKS_LISTED` that has no monthly expiry; an option
  expires at the SOQ, the open of its expiry date. Strikes: the grid of `VIX_STRIKE_STEPS`
  within [max(5, F/2), min(150, max(3F, F/2 + 10))] of the expiry's future F.

Pure functions of the calendar, the time and the underlying: no I/O.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from bot.calendar import NY, UTC, TradingCalendar

SPX_HORIZON_DAYS = 70  # SPXW expiries listed ahead (calendar days)
SPX_STRIKE_STEP = 5
VIX_MONTHLIES_LISTED = 9  # monthly VIX expiries listed ahead
VIXW_WEEKS_LISTED = 6  # weeks ahead with a VIXW weekly
# (from, to, step): 0.5 steps up to 20, 1 to 50, 2.5 to 80, 5 to 150
VIX_STRIKE_STEPS = ((1, 20, "0.5"), (20, 50, "1"), (50, 80, "2.5"), (80, 150, "5"))
VIX_STRIKE_MIN, VIX_STRIKE_MAX = 5.0, 150.0


# --------------------------------------------------------------------------- SPX


def spx_strike_range(spot: float) -> tuple[int, int]:
    """(lowest, highest) listed SPXW strike: every 5 points within +/-20 % of spot."""
    return int(spot * 0.8 // 5 * 5), int(spot * 1.2 // 5 * 5)


def spx_strikes(spot: float) -> list[Decimal]:
    lo, hi = spx_strike_range(spot)
    return [Decimal(k) for k in range(lo, hi + SPX_STRIKE_STEP, SPX_STRIKE_STEP)]


def spx_expiry_candidates(calendar: TradingCalendar, today: date, horizon_days: int = SPX_HORIZON_DAYS) -> list[date]:
    """The sessions that may be listed SPXW expiries from `today` (UTC date) on; those whose
    close is after the time asked are listed (`spx_expiries`)."""
    return calendar.sessions_between(today - timedelta(days=1), today + timedelta(days=horizon_days))


def spx_expiries(calendar: TradingCalendar, t: datetime, horizon_days: int = SPX_HORIZON_DAYS) -> list[date]:
    """SPXW lists an expiry every session: those whose close is after t."""
    days = spx_expiry_candidates(calendar, t.astimezone(UTC).date(), horizon_days)
    return [d for d in days if calendar.spxw_expiry_time(d) > t]


# --------------------------------------------------------------------------- VIX


def monthly_vix(calendar: TradingCalendar, year: int, month: int) -> date | None:
    """The monthly VIX expiry of a contract month, None past the calendar's range."""
    ny, nm = (year + 1, 1) if month == 12 else (year, month + 1)
    if date(ny, nm, 21) > calendar.last:
        return None
    return calendar.vix_monthly_expiry(year, month)


def weekly_vix(calendar: TradingCalendar, wednesday: date) -> date | None:
    """The VIXW expiry of a Wednesday's week: the Wednesday, or the session before it when
    it is a holiday; None in a monthly-expiry week (the monthly is that week's expiry)."""
    monthly = monthly_vix(calendar, wednesday.year, wednesday.month)
    if monthly is None or (wednesday - timedelta(days=2)) <= monthly <= wednesday:
        return None
    return wednesday if calendar.is_session(wednesday) else calendar.previous_session(wednesday)


def is_vix_listed(calendar: TradingCalendar, expiry: date, trading_class: str) -> bool:
    """Whether (expiry, class) follows the VIX listing rules (monthly "VIX", weekly "VIXW")."""
    if not calendar.is_session(expiry):
        return False
    if trading_class == "VIX":
        return monthly_vix(calendar, expiry.year, expiry.month) == expiry
    if trading_class == "VIXW":
        wednesday = expiry + timedelta(days=(2 - expiry.weekday()) % 7)
        return weekly_vix(calendar, wednesday) == expiry
    return False


def vix_expiries(calendar: TradingCalendar, t: datetime) -> list[tuple[date, str]]:
    """Listed VIX option expiries whose SOQ is after t, by date (see the module doc)."""
    today = t.astimezone(NY).date()
    out: list[tuple[date, str]] = []
    y, m = today.year, today.month
    while sum(1 for _, c in out if c == "VIX") < VIX_MONTHLIES_LISTED:
        expiry = monthly_vix(calendar, y, m)
        if expiry is None:
            break
        if calendar.vix_expiry_time(expiry) > t:
            out.append((expiry, "VIX"))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    wednesday = today + timedelta(days=2 - today.weekday())  # this week's (may be past)
    while wednesday <= today + timedelta(days=7 * VIXW_WEEKS_LISTED):
        expiry = weekly_vix(calendar, wednesday)
        if expiry is not None and calendar.vix_expiry_time(expiry) > t:
            out.append((expiry, "VIXW"))
        wednesday += timedelta(days=7)
    return sorted(out)


def _vix_strike_grid() -> tuple[Decimal, ...]:
    out: list[Decimal] = []
    for lo, hi, step in VIX_STRIKE_STEPS:
        k, inc = Decimal(lo), Decimal(step)
        while k < hi:
            out.append(Decimal(int(k)) if k == k.to_integral_value() else k)
            k += inc
    out.append(Decimal(VIX_STRIKE_STEPS[-1][1]))
    return tuple(out)


VIX_STRIKE_GRID = _vix_strike_grid()


def vix_strikes(future: float) -> list[Decimal]:
    """Listed VIX strikes of an expiry whose future is `future`."""
    lo = max(VIX_STRIKE_MIN, 0.5 * future)
    hi = min(VIX_STRIKE_MAX, max(3.0 * future, lo + 10.0))
    return [k for k in VIX_STRIKE_GRID if lo <= float(k) <= hi]
