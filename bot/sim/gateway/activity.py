"""Open interest, volume and the volatility ticks behind reqMktData's generic ticks 100, 101,
104, 106 and the volume tick (8): a simple model a simulated market can justify, not data.

- **Open interest** of an option (fixed for the day, as IB's is yesterday's): a bell over
  standardized moneyness at the previous close, `z = ln(K/S) / (sigma * sqrt(T))` with sigma the
  VIX-implied ATM level and T at least a day, times a class base (SPXW 4,000, SPX 8,000,
  VIX 20,000, VIXW 2,000 contracts at the money), 1.5x on strikes that are multiples of 100
  (VIX: 5), 1.2x on multiples of 25 (VIX: 1), and a +/-20% jitter fixed by the contract and the
  day (a hash, so every client sees the same number).
- **Volume** of an option so far today: its open interest x a daily turnover (0.6 for options
  expiring within two sessions, 0.2 otherwise) x the fraction of the regular session elapsed.
- **Totals for an index** (ticks 27-30 on SPX / VIX): the same bell summed in closed form over
  the strikes of each listed expiry, `base * sqrt(2 pi) * sigma sqrt(T) S / strike step`.
- **VX futures volume**: 60,000 contracts a day on the front month, falling by e^-1 every
  three months out, elapsed as above.
- **Historical volatility** (23): the annualized standard deviation of the last 30 daily log
  returns of the underlying. **Implied volatility** (24): the option's own model volatility;
  for SPX the 30-day ATM level of the exchange's vol model, for VIX 0.8 x VVIX.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime

from bot import pricing
from bot.domain import OptionSpec, Right

from .listing import NY
from .mapping import STRIKE_STEP

OPEN_INTEREST_ATM = {"SPXW": 4000.0, "SPX": 8000.0, "VIX": 20000.0, "VIXW": 2000.0, "SPY": 20000.0, "QQQ": 10000.0}
TURNOVER_NEAR, TURNOVER_FAR = 0.6, 0.2
FUTURE_VOLUME_FRONT = 60000.0
YEAR_S = 365.0 * 24 * 3600

# generic tick id -> the tick types it brings
OPTION_VOLUME, OPTION_OPEN_INTEREST, HISTORICAL_VOL, IMPLIED_VOL = 100, 101, 104, 106
CALL_OI, PUT_OI, CALL_VOLUME, PUT_VOLUME = 27, 28, 29, 30
HV_TICK, IV_TICK, VOLUME_TICK = 23, 24, 8


def parse_generic_ticks(text: str) -> frozenset[int]:
    out = set()
    for part in text.split(","):
        part = part.strip()
        if part.isdigit() and len(part) < 6:
            out.add(int(part))
    return frozenset(out)


def _jitter(key: str, day) -> float:
    h = hashlib.blake2b(f"{key}|{day}".encode(), digest_size=4).digest()
    return 0.8 + 0.4 * int.from_bytes(h, "big") / 2**32


def _atm_sigma(state, symbol: str) -> float:
    if symbol == "VIX":
        return max(0.3, 0.8 * state.vvix / 100.0)
    return max(0.05, state.vix / 100.0)


def _roundness(o: OptionSpec) -> float:
    k = float(o.strike)
    big, mid = (5.0, 1.0) if o.symbol in ("VIX", "SPY", "QQQ") else (100.0, 25.0)
    return 1.5 if k % big == 0 else 1.2 if k % mid == 0 else 1.0


def session_fraction(calendar, t: datetime) -> float:
    """How much of today's regular session has passed: 0 before the open, 1 after the close."""
    d = t.astimezone(NY).date()
    if not calendar.is_session(d):
        return 0.0
    opened, closed = calendar.open_close(d)
    if t <= opened:
        return 0.0
    return min(1.0, (t - opened).total_seconds() / (closed - opened).total_seconds())


def _underlying(state, o: OptionSpec) -> float:
    if o.symbol == "VIX":
        curve = dict(state.vx)
        return curve.get(o.expiry, state.vix)
    if o.symbol in ("SPY", "QQQ"):
        from bot.sim.equities import price

        return price(o.symbol, state.spx)
    return state.spx


def open_interest(o: OptionSpec, close_state, close_t: datetime, expiry_t: datetime) -> float:
    s = _underlying(close_state, o)
    t_years = max((expiry_t - close_t).total_seconds() / YEAR_S, 1.0 / 365)
    z = math.log(float(o.strike) / s) / (_atm_sigma(close_state, o.symbol) * math.sqrt(t_years))
    base = OPEN_INTEREST_ATM.get(o.trading_class, 1000.0)
    return float(round(base * math.exp(-z * z / 2) * _roundness(o) * _jitter(o.key, close_t.date())))


def option_volume(o: OptionSpec, oi: float, calendar, t: datetime) -> float:
    d = t.astimezone(NY).date()
    near = calendar.sessions_until(d, o.expiry) <= 2 if o.expiry >= d else True
    return float(round(oi * (TURNOVER_NEAR if near else TURNOVER_FAR) * session_fraction(calendar, t)))


def chain_totals(symbol: str, state, expiries: list[tuple[str, object, float]], calendar, t: datetime) -> tuple[float, float]:
    """(open interest, volume so far) of each right's whole chain (calls and puts alike):
    expiries are (trading class, expiry date, years to expiry)."""
    oi = vol = 0.0
    s = state.spx if symbol == "SPX" else state.vix
    sigma = _atm_sigma(state, symbol)
    frac = session_fraction(calendar, t)
    for tclass, expiry, t_years in expiries:
        width = sigma * math.sqrt(max(t_years, 1.0 / 365)) * s
        step = float(STRIKE_STEP.get(tclass, 5))
        total = OPEN_INTEREST_ATM.get(tclass, 1000.0) * math.sqrt(2 * math.pi) * width / step * 1.1
        oi += total
        near = t_years * 365 <= 3
        vol += total * (TURNOVER_NEAR if near else TURNOVER_FAR) * frac
    return float(round(oi)), float(round(vol))


def future_volume(days_to_expiry: float, calendar, t: datetime) -> float:
    return float(round(FUTURE_VOLUME_FRONT * math.exp(-max(days_to_expiry, 0) / 90.0) * session_fraction(calendar, t)))


def historical_vol(closes: list[float]) -> float | None:
    if len(closes) < 3:
        return None
    rets = [math.log(b / a) for a, b in zip(closes, closes[1:]) if a > 0 and b > 0]
    if len(rets) < 2:
        return None
    mean = sum(rets) / len(rets)
    var = sum((r - mean) ** 2 for r in rets) / (len(rets) - 1)
    return math.sqrt(var * 252)


def index_implied_vol(symbol: str, state) -> float:
    if symbol == "VIX":
        return 0.8 * state.vvix / 100.0
    return float(pricing.spx_atm_vol(30.0 / 365, state.vix, state.vix9d, state.vix3m))


def oi_tick(o: OptionSpec) -> int:
    return CALL_OI if o.right is Right.CALL else PUT_OI


def volume_tick(o: OptionSpec) -> int:
    return CALL_VOLUME if o.right is Right.CALL else PUT_VOLUME
