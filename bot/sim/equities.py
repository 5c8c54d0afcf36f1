"""A small equity universe: SPY and QQQ, and their options, listed, quoted and traded.

Prices come from the same market path as SPX, so a simulated session moves them together:
SPY = SPX / 10 (the ETF's ratio to the index, its dividends aside), QQQ = 0.085 x SPX x
(SPX / 4000)^0.2 (a beta of 1.2 to SPX). Options are listed every Friday for the next eight
weeks and on the third Friday of the next six months (the session before when Friday is a
holiday), strikes every $1 within 20% of the price, and priced with the exchange's own SPX
volatility model (ATM from VIX, the same put skew; QQQ's level x 1.25), American-style
(`bot.american`: a binomial tree's early-exercise premium over Black-Scholes) with a
continuous dividend yield (SPY 1.3%, QQQ 0.6%; the yield is the whole dividend model: no
ex-dates, so no early exercise of calls before one). Option quotes are a penny grid: spread 4%
of the mid within $0.01..$0.50. The stock is quoted a cent either side of its price.

The exchange (`SimExchange`) books them beside the index options under text keys: options as
`OptionSpec.key` (`SPY 20220304 430 P`), stocks as `STK SPY` (`Stock.key`);
`instrument_from_key` reads both. The account side (commissions, margin check, exercise and
assignment at expiry) is `bot.sim.equity_account`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np

from bot import pricing
from bot.american import american_price_greeks
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
STOCK_PREFIX = "STK "


@dataclass(frozen=True)
class Stock:
    """A listed stock or ETF as an instrument: the exchange books it under `key`, one share a
    unit (`multiplier` 1), next to option contracts."""

    symbol: str

    @property
    def key(self) -> str:
        return f"{STOCK_PREFIX}{self.symbol}"

    @property
    def multiplier(self) -> int:
        return 1

    @property
    def trading_class(self) -> str:
        return self.symbol


def is_equity_key(key: str) -> bool:
    """Whether an exchange key names a stock or an option on one (not an index option)."""
    return key.startswith(STOCK_PREFIX) or key.split(" ", 1)[0] in EQUITIES


def instrument_from_key(key: str) -> OptionSpec | Stock:
    """The instrument of any exchange key: `STK SPY` a Stock, else an option."""
    if key.startswith(STOCK_PREFIX):
        return Stock(key[len(STOCK_PREFIX):])
    return OptionSpec.from_key(key)


def is_equity(inst) -> bool:
    return isinstance(inst, Stock) or inst.symbol in EQUITIES


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
        iv = np.broadcast_to(np.atleast_1d(iv), k.shape)
        g = american_price_greeks(s, k, tt, iv, state.rate, eq.dividend_yield, call)
        bid, ask = _quote_edges(g["mid"])
        for i, o in enumerate(live):
            greeks = Greeks(float(g["delta"][i]), float(g["gamma"][i]), float(g["vega"][i]), float(g["theta"][i]),
                            float(iv[i]))
            out[o.key] = Quote(Decimal(f"{bid[i]:.2f}"), Decimal(f"{ask[i]:.2f}"), greeks, s)
    return out


def stock_quote(market, symbol: str, t: datetime) -> Quote:
    """The stock's quote: a cent either side of its model price (the gateway's ticks too)."""
    p = price_at(market, symbol, t)
    return Quote(Decimal(f"{p - 0.01:.2f}"), Decimal(f"{p + 0.01:.2f}"), None, p)


def quotes(market, calendar, instruments, t: datetime) -> dict[str, Quote]:
    """Quotes of the stocks and equity options among `instruments` (others are ignored)."""
    out = price_options(market, calendar, [o for o in instruments if isinstance(o, OptionSpec)], t)
    for symbol in {i.symbol for i in instruments if isinstance(i, Stock) and i.symbol in EQUITIES}:
        out[Stock(symbol).key] = stock_quote(market, symbol, t)
    return out



def years_to_expiry(calendar, opt: OptionSpec, t: datetime) -> float:
    if not calendar.is_session(opt.expiry):
        return -1.0
    return (calendar.spxw_expiry_time(opt.expiry) - t).total_seconds() / YEAR_S


def pv_dividend(symbol: str, spot: float, years: float) -> float:
    return spot * (1.0 - math.exp(-EQUITIES[symbol].dividend_yield * max(years, 0.0)))
