"""IB's margin for the option positions the gateway lists: the strategy-based (Reg T) rules of
the Cboe margin manual that IB applies to index options in a margin account. Pure functions.

- **Long options**: paid in full; no margin.
- **Spreads**: a short matched with a long of the same underlying, class family and right,
  expiring no earlier: the spread's maximum loss, `max(0, K_long - K_short)` per call spread,
  `max(0, K_short - K_long)` per put spread (times the multiplier).
- **Iron condors / butterflies**: where an expiry holds both put and call spreads, only the
  larger side is required (both cannot lose at once).
- **Naked short options**: 100% of the option's market value plus a percentage of the
  underlying's value less the out-of-the-money amount, with a floor:
  broad-based index options (SPX, SPXW) 15%, floor 10%;
  volatility index options (VIX, VIXW) 20%, floor 10% (treated like a narrow-based index);
  calls floor on the underlying value, puts on the strike (the exercise value).

IB applies its own house margin on top (scans of the portfolio under moves), which the
simulator does not model: the figures here are the exchange minimum IB starts from. Initial
and maintenance requirements are the same for options.

The simulated *exchange* keeps its own, stricter check (an uncovered short call is unbounded
there): the bot's no-naked guard relies on it. These figures are what the gateway reports in
what-if orders and account values, as IB would.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain import OptionSpec, Right

RATES = {"SPX": (0.15, 0.10), "VIX": (0.20, 0.10)}  # (percentage of the underlying, floor)


@dataclass(frozen=True)
class Holding:
    option: OptionSpec
    quantity: int  # signed: short < 0
    mark: float  # option price per share
    underlying: float  # the underlying index value


def naked_requirement(option: OptionSpec, mark: float, underlying: float) -> float:
    """Margin of one naked short option contract."""
    pct, floor = RATES.get(option.symbol, (0.20, 0.10))
    k = float(option.strike)
    otm = max(0.0, k - underlying) if option.right is Right.CALL else max(0.0, underlying - k)
    floor_base = underlying if option.right is Right.CALL else k
    per_share = mark + max(pct * underlying - otm, floor * floor_base)
    return per_share * option.multiplier


def _family(o: OptionSpec) -> tuple[str, Right]:
    return o.symbol, o.right


def requirement(holdings: list[Holding]) -> float:
    """The account's option margin: spreads at their maximum loss (the larger side of each
    expiry's condor), the rest of the shorts naked."""
    longs: dict[tuple[str, Right], list[list]] = {}
    shorts: list[tuple[Holding, int]] = []
    for h in holdings:
        if h.quantity > 0:
            longs.setdefault(_family(h.option), []).append([h.option, h.quantity])
        elif h.quantity < 0:
            shorts.append((h, -h.quantity))
    spread_by_expiry: dict[tuple[str, object], dict[Right, float]] = {}
    naked = 0.0
    # latest expiries first, so the longs they may use are not taken by earlier shorts needlessly
    for h, need in sorted(shorts, key=lambda x: (-x[0].option.expiry.toordinal(), float(x[0].option.strike))):
        o = h.option
        pool = [lg for lg in longs.get(_family(o), []) if lg[1] > 0 and lg[0].expiry >= o.expiry]
        while need > 0 and pool:
            # the long that makes the cheapest spread: the lowest call strike, the highest put strike
            best = min(pool, key=lambda lg: float(lg[0].strike) if o.right is Right.CALL else -float(lg[0].strike))
            take = min(need, best[1])
            best[1] -= take
            need -= take
            pool = [lg for lg in pool if lg[1] > 0]
            k_long, k_short = float(best[0].strike), float(o.strike)
            loss = max(0.0, k_long - k_short) if o.right is Right.CALL else max(0.0, k_short - k_long)
            sides = spread_by_expiry.setdefault((o.symbol, o.expiry), {})
            sides[o.right] = sides.get(o.right, 0.0) + loss * o.multiplier * take
        if need > 0:
            naked += naked_requirement(o, h.mark, h.underlying) * need
    spreads = sum(max(sides.values()) for sides in spread_by_expiry.values())
    return spreads + naked
