"""The order walk as a pure plan: what the executor sends and when, given quotes.

An order is priced from its legs' quotes (`combo_pricing`: mid and natural net debit per
unit), placed at mid on the combo grid (step 0), then moved toward natural every `step_s`
(`step_price`), never past natural nor past the strategy's worst acceptable price; after
`max_steps` it waits to `final_wait_s` and is cancelled (`WalkPlan.offsets`).

`bot.execution.Executor` drives this plan over a broker and a clock; the backtest
(`bot.backtest.account.Walker`) drives it over the simulated exchange's quotes at the same
instants. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bot.domain import BadQuote, ComboOrder, Quote, ceil_tick, floor_tick


@dataclass(frozen=True)
class Pricing:
    mid: Decimal
    natural: Decimal


def combo_pricing(order: ComboOrder, quotes: dict[str, Quote]) -> Pricing:
    """Mid and natural net debit per unit; BadQuote when a leg has no usable quote."""
    mid = nat = Decimal(0)
    for leg in order.legs:
        q = quotes.get(leg.option.key)
        if q is None or q.ask <= 0:
            raise BadQuote(f"no usable quote for {leg.option.key}")
        mid += leg.signed_ratio * q.mid
        nat += leg.signed_ratio * (q.ask if leg.signed_ratio > 0 else q.bid)
    return Pricing(mid, nat)


@dataclass(frozen=True)
class WalkPlan:
    step_s: float
    max_steps: int
    final_wait_s: float
    tick: Decimal

    @classmethod
    def of(cls, cfg) -> WalkPlan:
        """From an `ExecutionConfig`."""
        return cls(float(cfg.step_s), cfg.max_steps, float(cfg.final_wait_s), Decimal(str(cfg.tick)))

    def step_price(self, p: Pricing, step: int, order: ComboOrder) -> Decimal:
        """Limit for walk step `step` (0 = mid): on the combo grid, never past natural nor past
        the strategy's worst acceptable price."""
        steps = max(1, self.max_steps)
        target = p.mid + (p.natural - p.mid) * Decimal(min(step, steps)) / Decimal(steps)
        limit = floor_tick(target, self.tick) if step == 0 else ceil_tick(target, self.tick)
        limit = min(limit, ceil_tick(p.natural, self.tick))
        if order.limit_floor is not None:
            limit = min(limit, floor_tick(order.limit_floor, self.tick))
        return limit

    @property
    def cancel_wait_s(self) -> float:
        """The wait after the last step's poll before the cancel."""
        return max(0.0, self.final_wait_s - self.step_s)

    def offsets(self) -> list[float]:
        """Seconds after the placement of every look at the order: the placement (0), the poll
        after each step (k * step_s, k = 1 .. max_steps + 1), and the cancel."""
        polls = [k * self.step_s for k in range(self.max_steps + 2)]
        return polls + [polls[-1] + self.cancel_wait_s]


def at_next_price(reason: str) -> bool:
    """Whether a close for this exit reason goes out at the market's next price rather than at
    once: a stop is triggered by a price already seen, and a stop order fills at the next
    price available, not at the one that triggered it. The simulated daemon (`Engine`, given
    the market's `next_step_time`) and the backtest (`CondorTrader.monitor`) both follow it;
    against a real broker there is no step to wait for."""
    return reason == "stop_loss"
