"""A small equity universe for the gateway's listing: SPY and QQQ, and their options.

Prices come from the same market path as SPX, so a simulated session moves them together:
SPY = SPX / 10 (the ETF's ratio to the index, its dividends aside), QQQ = 0.085 x SPX x
(SPX / 4000)^0.2 (a beta of 1.2 to SPX). Options are listed every Friday for the next eight
weeks and on the third Friday of the next six months (the session before when Friday is a
holiday), strikes every $1 within 20% of the price, and priced with the exchange's own SPX
volatility model (ATM from VIX, the same put skew; QQQ's level x 1.25) through Black-Scholes
with a continuous dividend yield (SPY 1.3%, QQQ 0.6%). They are American-style at IB; the
model prices them as European (the early-exercise premium of deep in-the-money puts is
ignored). Quotes are a penny-wide grid: spread 4% of the mid within $0.01..$0.50.

What is served: contract details (stock and options), option chains (reqSecDefOptParams),
streaming and snapshot quotes with greeks, generic ticks, historical bars, option
calculations and IB's margin in what-if figures. Orders on them are refused (201): the
simulated exchange's book holds SPX and VIX options only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np

from bot import pricing
from bot.domain import Greeks, OptionSpec, Quote, Right

YEAR_S = 365.0 * 24 * 3600


@dataclass(frozen=True)
class Equity:
    symbol: str
    con_id: int  # IB's real conIds
    name: str
    primary_exchange: str
    dividend_yield: float
    vol_scale: float


EQUITIES = {
    "SPY": Equity("SPY", 756733, "SPDR S&P 500 ETF TRUST", "ARCA", 0.013, 1.0),
    "QQQ": Equity("QQQ", 320227571, "INVESCO QQQ TRUST SERIES 1", "NASDAQ", 0.006, 1.25),
}
WEEKS_LISTED, MONTHS_LISTED = 8, 6
STRIKE_RANGE = 0.20


def price(symbol: str, spx: float) -> float:
    if symbol == "SPY":
        return spx / 10.0
    return 0.085 * spx * (spx / 4000.0) ** 0.2


def price_at(market, symbol: str, t: datetime) -> float:
    return round(price(symbol, market.state_at(t).spx), 2)


def third_friday(calendar, year: int, month: int) -> date:
    first = date(year, month, 1)
    friday = first + timedelta(days=(4 - first.weekday()) % 7 + 14)
    return friday if calendar.is_session(friday) else calendar.previous_session(friday)


def expiries(calendar, today: date) -> list[date]:
    out = set()
    friday = today + timedelta(days=(4 - today.weekday()) % 7)
    for i in range(WEEKS_LISTED):
        d = friday + timedelta(weeks=i)
        out.add(d if calendar.is_session(d) else calendar.previous_session(d))
    y, m = today.year, today.month
    for _ in range(MONTHS_LISTED):
        out.add(third_friday(calendar, y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return sorted(d for d in out if d >= today)


def is_expiry(calendar, d: date) -> bool:
    if not calendar.is_session(d):
        return False
    friday = d + timedelta(days=(4 - d.weekday()) % 7)
    return d == friday or (not calendar.is_session(friday) and calendar.previous_session(friday) == d)


def strikes(underlying: float) -> list[Decimal]:
    lo, hi = int(underlying * (1 - STRIKE_RANGE)), int(underlying * (1 + STRIKE_RANGE)) + 1
    return [Decimal(k) for k in range(max(1, lo), hi + 1)]


def _quote_edges(mid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    half = np.clip(0.04 * mid, 0.01, 0.50) / 2
    bid = np.maximum(np.floor(np.round((mid - half) * 100, 6)) / 100, 0.0)
    ask = np.maximum(np.ceil(np.round((mid + half) * 100, 6)) / 100, 0.01)
    return bid, ask


def price_options(market, calendar, options: list[OptionSpec], t: datetime) -> dict[str, Quote]:
    """Model quotes of equity options alive at t (absent when expired or unknown)."""
    out: dict[str, Quote] = {}
    by_symbol: dict[str, list[OptionSpec]] = {}
    for o in options:
        if o.symbol in EQUITIES and calendar.is_session(o.expiry) and calendar.spxw_expiry_time(o.expiry) > t:
            by_symbol.setdefault(o.symbol, []).append(o)
    if not by_symbol:
        return out
    state = market.state_at(t)
    for symbol, live in by_symbol.items():
        eq = EQUITIES[symbol]
        s = price(symbol, state.spx)
        k = np.array([float(o.strike) for o in live])
        tt = np.array([(calendar.spxw_expiry_time(o.expiry) - t).total_seconds() / YEAR_S for o in live])
        call = np.array([o.right is Right.CALL for o in live])
        atm = pricing.spx_atm_vol(tt, state.vix, state.vix9d, state.vix3m) * eq.vol_scale
        iv = pricing.spx_smile(atm, s, k, tt)
        mid = np.atleast_1d(pricing.bs_price(s, k, tt, iv, state.rate, eq.dividend_yield, call))
        g = pricing.bs_greeks(s, k, tt, iv, state.rate, eq.dividend_yield, call)
        bid, ask = _quote_edges(mid)
        iv = np.atleast_1d(iv)
        for i, o in enumerate(live):
            greeks = Greeks(float(np.atleast_1d(g["delta"])[i]), float(np.atleast_1d(g["gamma"])[i]),
                            float(np.atleast_1d(g["vega"])[i]), float(np.atleast_1d(g["theta"])[i]), float(iv[i]))
            out[o.key] = Quote(Decimal(f"{bid[i]:.2f}"), Decimal(f"{ask[i]:.2f}"), greeks, s)
    return out


def years_to_expiry(calendar, opt: OptionSpec, t: datetime) -> float:
    if not calendar.is_session(opt.expiry):
        return -1.0
    return (calendar.spxw_expiry_time(opt.expiry) - t).total_seconds() / YEAR_S


def pv_dividend(symbol: str, spot: float, years: float) -> float:
    return spot * (1.0 - math.exp(-EQUITIES[symbol].dividend_yield * max(years, 0.0)))
