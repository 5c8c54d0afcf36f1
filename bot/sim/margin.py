"""IB's margin for what the simulator lists: the strategy-based (Reg T) rules of the Cboe margin
manual that IB applies in a margin account, to index options, ETF options (SPY, QQQ) and the
ETFs themselves. Pure functions.

- **Stocks** (Reg T): long 50% of the market value initial, 25% maintenance; short 50%
  initial on top of the sale's proceeds (150% in all), 30% maintenance (IB's minimum).
- **Covered calls / puts**: a short call with 100 long shares per contract (a short put with
  100 short shares) needs nothing beyond the stock's own margin.

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
  equity and ETF options (SPY, QQQ) 20%, floor 10%;
  calls floor on the underlying value, puts on the strike (the exercise value).
  A cash-secured put is this same naked put in a margin account (the cash backing it, the
  strike less the premium, is what a *cash* account would hold: `cash_secured_put`).

IB applies its own house margin on top (scans of the portfolio under moves), which the
simulator does not model: the figures here are the exchange minimum IB starts from. Initial
and maintenance requirements are the same for options; they differ for stocks.

The simulated *exchange* keeps its own, stricter check (an uncovered short call is unbounded
there): the bot's no-naked guard relies on it. These figures are what the gateway reports in
what-if orders and account values, as IB would.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain import OptionSpec, Right

RATES = {"SPX": (0.15, 0.10), "VIX": (0.20, 0.10)}  # (percentage of the underlying, floor)
EQUITY_OPTION_RATE = (0.20, 0.10)  # any other underlying: equity / ETF options
STOCK_LONG = (0.50, 0.25)  # Reg T (initial, maintenance) of a long stock's market value
STOCK_SHORT = (0.50, 0.30)  # of a short stock's market value, beyond the proceeds
SHARES_PER_CONTRACT = 100


@dataclass(frozen=True)
class Holding:
    option: OptionSpec | object  # an option, or a stock (`bot.sim.equities.Stock`: no strike)
    quantity: int  # signed: short < 0; contracts or shares
    mark: float  # price per share
    underlying: float  # the underlying's value (a stock's own price)

    @property
    def is_stock(self) -> bool:
        return not isinstance(self.option, OptionSpec)


def naked_requirement(option: OptionSpec, mark: float, underlying: float) -> float:
    """Margin of one naked short option contract."""
    pct, floor = RATES.get(option.symbol, EQUITY_OPTION_RATE)
    k = float(option.strike)
    otm = max(0.0, k - underlying) if option.right is Right.CALL else max(0.0, underlying - k)
    floor_base = underlying if option.right is Right.CALL else k
    per_share = mark + max(pct * underlying - otm, floor * floor_base)
    return per_share * option.multiplier


def _family(o: OptionSpec) -> tuple[str, Right]:
    return o.symbol, o.right


def cash_secured_put(option: OptionSpec, mark: float) -> float:
    """The cash a cash account holds against one short put: the strike less the premium."""
    return (float(option.strike) - mark) * option.multiplier


def stock_requirement(quantity: int, price: float, maintenance: bool = False) -> float:
    """Reg T margin of a stock position (signed shares) at a price."""
    rates = STOCK_LONG if quantity > 0 else STOCK_SHORT
    return abs(quantity) * price * rates[1 if maintenance else 0]


def _covered(holdings: list[Holding]) -> list[Holding]:
    """The option holdings left once short calls are covered by long shares and short puts by
    short shares (100 a contract), lowest call strike / highest put strike first (the ones
    the naked rule charges most). The stocks keep their own margin."""
    shares = {h.option.symbol: h.quantity for h in holdings if h.is_stock}
    out = []
    options = sorted((h for h in holdings if not h.is_stock),
                     key=lambda h: float(h.option.strike) * (1 if h.option.right is Right.CALL else -1))
    for h in options:
        have = shares.get(h.option.symbol, 0)
        if h.quantity < 0 and have:
            call = h.option.right is Right.CALL
            if (call and have > 0) or (not call and have < 0):
                take = min(-h.quantity, abs(have) // SHARES_PER_CONTRACT)
                shares[h.option.symbol] = have - take * SHARES_PER_CONTRACT * (1 if call else -1)
                h = Holding(h.option, h.quantity + take, h.mark, h.underlying)
        out.append(h)
    return out


def requirement(holdings: list[Holding], maintenance: bool = False) -> float:
    """The account's margin: stocks by Reg T (`maintenance`: the maintenance rate), short
    options covered by stock free, spreads at their maximum loss (the larger side of each
    expiry's condor), the rest of the shorts naked."""
    stocks = sum(stock_requirement(h.quantity, h.mark, maintenance) for h in holdings if h.is_stock and h.quantity)
    if stocks or any(h.is_stock for h in holdings):
        holdings = _covered(holdings)
    return stocks + _option_requirement(holdings)


def _option_requirement(holdings: list[Holding]) -> float:
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
