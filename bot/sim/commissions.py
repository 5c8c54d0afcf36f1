"""What an option execution costs: one schedule, used by the daemon's exchange (`SimExchange`,
behind SimBroker and the simulated gateway) and by the backtest (the same `SimExchange`), so
both charge the same to the cent.

- `ib` (the default): IB Pro *Tiered*, US options, Smart-routed, <= 10,000 contracts a month,
  plus the third-party fees IB passes through on that plan, per contract and per leg:

  | part | rate | source |
  |---|---|---|
  | IB commission | $0.65 a contract at a premium >= $0.10, $0.50 from $0.05, $0.25 below $0.05; at least $1.00 an order | interactivebrokers.com, Commissions > Options (Tiered, US Smart Routed) |
  | Cboe exchange fee, SPX / SPXW (customer) | $0.36 at a premium < $1.00, $0.45 from $1.00 (fee codes CS, CT) | Cboe Options fee codes, effective 2024-11-01 |
  | Cboe exchange fee, VIX (customer) | simple orders $0.10 / $0.25 / $0.40 / $0.45, complex orders $0.05 / $0.17 / $0.30 / $0.45 at premiums $0.00-0.10 / 0.11-0.99 / 1.00-1.99 / >= 2.00 (CV-CY, CZ-DC) | same; DC from the Cboe Fees Schedule (2020-04-07) |
  | Cboe exchange fee, equity and ETF options (SPY, QQQ; customer) | $0.00 (fee code CK) | same |
  | Options Regulatory Fee (ORF) | $0.0330 a contract, buys and sells | interactivebrokers.com, US Regulatory Fees |
  | OCC clearing | $0.025 a contract | OCC Schedule of Fees, from 2025-02-14 (SEC notice 90 FR 10544; $0.02 before) |

  Left out: the SEC Section 31 fee (on the value of sales; $0.00 per million since 2025-05-14,
  SEC Release 34-102779; $27.80 before)
  and FINRA's trading activity fee on sales (a fraction of a cent a contract); IB's volume
  tiers above 10,000 contracts a month; fee changes over time (today's rates apply to every
  year of a backtest). A one-leg order is "simple", more legs "complex" (Cboe's VIX tiers).
- `flat`: `commission_per_contract` on every contract, no fees (the simulator's old default,
  kept for comparisons).

Interest on cash (`cash_interest`): a positive balance earns the market's rate (history: the
3-month T-bill, `tbill_3m_daily.csv`, as a continuous rate) from each session's close to the
next session's, compounded daily, in cents; a negative balance is charged nothing. The
simulated exchange books it, so the daemon's account and the backtest's earn the same.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache

SCHEDULES = ("ib", "flat")
INF = float("inf")

Tiers = tuple[tuple[float, float], ...]  # (premium per share below, $ per contract), ascending; last = any


@lru_cache(maxsize=None, typed=True)  # typed: 1 and 1.0 are different texts
def _dollars(rate: float) -> Decimal:
    """A schedule's rate as the Decimal of its text (a handful of them, asked for per leg)."""
    return Decimal(str(rate))


def _tier(tiers: Tiers, premium: Decimal) -> Decimal:
    p = abs(float(premium))
    for below, rate in tiers:
        if p < below:
            return _dollars(rate)
    return _dollars(tiers[-1][1])


@dataclass(frozen=True)
class Fees:
    """Third-party fees per contract: the exchange's by product and premium, ORF and OCC."""

    spx: Tiers
    vix_simple: Tiers
    vix_complex: Tiers
    orf: float
    occ: float

    def per_contract(self, symbol: str, premium: Decimal, complex_order: bool) -> Decimal:
        """Cboe's fee for SPX (SPXW) and VIX options; none for equity and ETF options (SPY,
        QQQ: Cboe's customer rate is $0.00, code CK); ORF and OCC on every option contract."""
        if symbol == "VIX":
            exchange = _tier(self.vix_complex if complex_order else self.vix_simple, premium)
        elif symbol == "SPX":
            exchange = _tier(self.spx, premium)
        else:
            exchange = Decimal(0)
        return exchange + _dollars(self.orf) + _dollars(self.occ)


CBOE_FEES = Fees(
    spx=((1.00, 0.36), (INF, 0.45)),
    vix_simple=((0.11, 0.10), (1.00, 0.25), (2.00, 0.40), (INF, 0.45)),
    vix_complex=((0.11, 0.05), (1.00, 0.17), (2.00, 0.30), (INF, 0.45)),
    orf=0.0330,
    occ=0.025,
)


@dataclass(frozen=True)
class CommissionSchedule:
    """The broker's commission per contract by premium (per share) with a minimum per order,
    plus the pass-through fees (`fees`, None = none)."""

    name: str
    tiers: Tiers
    minimum_per_order: float = 0.0
    fees: Fees | None = None

    def per_contract(self, premium: Decimal) -> Decimal:
        """The broker's commission alone, per contract."""
        return _tier(self.tiers, premium)

    def order_commissions(self, legs: list[tuple[int, Decimal]], symbols: list[str] | None = None) -> list[Decimal]:
        """What each leg execution of one order costs (signed quantity, price per share; the
        legs' symbols, SPX when not given): the commission, the order minimum added to the
        first leg, plus each leg's fees."""
        each = [self.per_contract(px) * abs(q) for q, px in legs]
        short = _dollars(self.minimum_per_order) - sum(each, Decimal(0))
        if short > 0 and each:
            each[0] += short
        if self.fees is not None:
            symbols = symbols or ["SPX"] * len(legs)
            complex_order = len(legs) > 1
            each = [c + self.fees.per_contract(s, px, complex_order) * abs(q)
                    for c, (q, px), s in zip(each, legs, symbols)]
        return each


IB_TIERED = CommissionSchedule("ib", ((0.05, 0.25), (0.10, 0.50), (INF, 0.65)), 1.00, CBOE_FEES)


def flat_schedule(rate: float) -> CommissionSchedule:
    return CommissionSchedule("flat", ((INF, rate),), 0.0)


def schedule_by_name(name: str, flat_rate: float) -> CommissionSchedule:
    if name == "ib":
        return IB_TIERED
    if name == "flat":
        return flat_schedule(flat_rate)
    raise ValueError(f"unknown commission schedule {name!r} ({' | '.join(SCHEDULES)})")


CENT = Decimal("0.01")


def cash_interest(cash: Decimal, rate: float, days: int) -> Decimal:
    """Interest earned by `cash` over `days` calendar days at the continuous annual `rate`
    (to the cent; nothing on a negative balance or a negative rate's days)."""
    if cash <= 0 or days <= 0 or not math.isfinite(rate):
        return Decimal(0)
    growth = Decimal(repr(math.expm1(rate * days / 365.0)))
    return (cash * growth).quantize(CENT, rounding=ROUND_HALF_EVEN)
