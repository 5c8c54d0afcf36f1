"""What the simulated exchange charges per order: one schedule, used by the daemon's exchange
(`SimExchange`, behind SimBroker and the simulated gateway) and by the backtest's copy of it, so
both charge the same to the cent.

- `flat`: `commission_per_contract` on every contract (the simulator's historical default);
- `ib`: IB's US options schedule (Smart-routed, <= 10,000 contracts a month): $0.65 a contract
  at a premium of $0.10 or more, $0.50 from $0.05 to $0.10, $0.25 below $0.05, at least $1.00
  an order. Exchange, clearing and regulatory fees are not modelled.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

SCHEDULES = ("flat", "ib")


@dataclass(frozen=True)
class CommissionSchedule:
    """Per-contract commission by premium (per share), and a minimum per order."""

    name: str
    tiers: tuple[tuple[float, float], ...]  # (premium below, $ per contract), ascending; last = any
    minimum_per_order: float = 0.0

    def per_contract(self, premium: Decimal) -> Decimal:
        p = abs(float(premium))
        for below, rate in self.tiers:
            if p < below:
                return Decimal(str(rate))
        return Decimal(str(self.tiers[-1][1]))

    def order_commissions(self, legs: list[tuple[int, Decimal]]) -> list[Decimal]:
        """Commission of each leg execution (signed quantity, price), the order minimum
        added to the first leg."""
        each = [self.per_contract(px) * abs(q) for q, px in legs]
        short = Decimal(str(self.minimum_per_order)) - sum(each, Decimal(0))
        if short > 0 and each:
            each[0] += short
        return each


IB_TIERED = CommissionSchedule("ib", ((0.05, 0.25), (0.10, 0.50), (float("inf"), 0.65)), 1.00)


def flat_schedule(rate: float) -> CommissionSchedule:
    return CommissionSchedule("flat", ((float("inf"), rate),), 0.0)


def schedule_by_name(name: str, flat_rate: float) -> CommissionSchedule:
    if name == "ib":
        return IB_TIERED
    if name == "flat":
        return flat_schedule(flat_rate)
    raise ValueError(f"unknown commission schedule {name!r} ({' | '.join(SCHEDULES)})")
