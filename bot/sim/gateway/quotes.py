"""Market-data ticks for each instrument at one instant, from the exchange's model quotes.

A `TickSet` is what one reqMktData line shows: prices (tickPrice type -> price, size) and
option computations (type -> the 8 numbers of tickOptionComputation). Streaming sends only
the entries that changed since the last push.

Sizes are model constants (there is no order book): bid/ask size 10 for options and combos,
0 for indexes (IB shows no bid/ask for an index). Option bid/ask/last computations use the
model's volatility and greeks with the respective price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from bot.domain import Action, OptionSpec, Quote

from bot.sim import equities

from . import activity
from .listing import NY
from .mapping import FUTURE_TICK, Bag, Future, Index, Instrument, Stock

BID, ASK, LAST, HIGH, LOW, CLOSE, OPEN = 1, 2, 4, 6, 7, 9, 14
BID_SIZE, ASK_SIZE, LAST_SIZE, VOLUME = 0, 3, 5, 8
BID_GREEKS, ASK_GREEKS, LAST_GREEKS, MODEL_GREEKS = 10, 11, 12, 13
QUOTE_SIZE = 10.0
YEAR_S = 365.0 * 24 * 3600
DELAY = timedelta(minutes=15)  # IB's delayed data lag
# live tick type -> its delayed twin (reqMarketDataType 3/4)
DELAYED = {BID: 66, ASK: 67, LAST: 68, HIGH: 72, LOW: 73, CLOSE: 75, OPEN: 76, BID_SIZE: 69, ASK_SIZE: 70,
           LAST_SIZE: 71, VOLUME: 74, BID_GREEKS: 80, ASK_GREEKS: 81, LAST_GREEKS: 82, MODEL_GREEKS: 83}


@dataclass
class TickSet:
    prices: dict[int, tuple[float, float]] = field(default_factory=dict)
    computations: dict[int, tuple[float, ...]] = field(default_factory=dict)
    sizes: dict[int, float] = field(default_factory=dict)  # tickSize alone: volume, open interest
    generics: dict[int, float] = field(default_factory=dict)  # tickGeneric: historical / implied vol

    def delayed(self) -> TickSet:
        return TickSet({DELAYED[k]: v for k, v in self.prices.items()},
                       {DELAYED[k]: v for k, v in self.computations.items()},
                       {DELAYED.get(k, k): v for k, v in self.sizes.items()}, dict(self.generics))

    def changes_since(self, before: TickSet | None) -> TickSet:
        if before is None:
            return self
        return TickSet({k: v for k, v in self.prices.items() if before.prices.get(k) != v},
                       {k: v for k, v in self.computations.items() if before.computations.get(k) != v},
                       {k: v for k, v in self.sizes.items() if before.sizes.get(k) != v},
                       {k: v for k, v in self.generics.items() if before.generics.get(k) != v})

    def empty(self) -> bool:
        return not self.prices and not self.computations and not self.sizes and not self.generics


class QuoteSource:
    """Ticks over the exchange (option quotes) and its market model (indexes, VX futures)."""

    def __init__(self, exchange, calendar, dividend_yield: float = 0.013):
        self.exchange = exchange
        self.calendar = calendar
        self.dividend_yield = dividend_yield
        self._closes: dict[tuple[str, datetime], float | None] = {}

    def option_quotes(self, options: list[OptionSpec], t: datetime) -> dict[str, Quote]:
        if not options:
            return {}
        listed = [o for o in options if o.symbol not in equities.EQUITIES]
        out = self.exchange.price_options(listed, t) if listed else {}
        if len(listed) < len(options):
            out.update(equities.price_options(self.exchange.market, self.calendar, options, t))
        return out

    def ticks(self, inst: Instrument, t: datetime, quotes: dict[str, Quote] | None = None,
              generic: frozenset[int] = frozenset()) -> TickSet | None:
        """Ticks of one instrument at t, with the generic ticks asked for (`activity.py`);
        None when there is nothing to show (expired)."""
        if isinstance(inst, Index):
            ticks = self._index(inst.symbol, t)
            self._index_activity(inst.symbol, t, generic, ticks)
            return ticks
        if isinstance(inst, Stock):
            return self._stock(inst.symbol, t, generic)
        if isinstance(inst, Future):
            ticks = self._future(inst, t)
            if ticks is not None:
                days = (inst.expiry - t.astimezone(NY).date()).days
                ticks.sizes[activity.VOLUME_TICK] = activity.future_volume(days, self.calendar, t)
            return ticks
        if quotes is None:
            options = [leg.option for leg in inst.legs] if isinstance(inst, Bag) else [inst]
            quotes = self.option_quotes(options, t)
        if isinstance(inst, Bag):
            return self._bag(inst, quotes)
        ticks = self._option(inst, quotes.get(inst.key), t)
        if ticks is not None:
            self._option_activity(inst, quotes.get(inst.key), t, generic, ticks)
        return ticks

    # --- volume, open interest, volatility (activity.py) -----------------------------------------
    def _close_state(self, t: datetime):
        close_t = self._previous_close_time(t)
        return (close_t, self.exchange.market.state_at(close_t)) if close_t is not None else (None, None)

    def _open_interest(self, opt: OptionSpec, t: datetime) -> float:
        close_t, state = self._close_state(t)
        if close_t is None:
            return 0.0
        key = ("oi", opt.key, close_t)
        if key not in self._closes:
            if len(self._closes) > 20_000:
                self._closes.clear()
            expiry_t = (self.exchange.vix_expiry_time(opt.expiry) if opt.symbol == "VIX"
                        else self.calendar.spxw_expiry_time(opt.expiry))
            self._closes[key] = activity.open_interest(opt, state, close_t, expiry_t)
        return self._closes[key]

    def _historical_vol(self, symbol: str, t: datetime) -> float | None:
        close_t = self._previous_close_time(t)
        key = ("hv", symbol, close_t)
        if key not in self._closes:
            try:
                closes = [c for _, c in self.exchange.daily_closes(symbol, 31, t)]
            except ValueError:
                closes = []
            self._closes[key] = activity.historical_vol(closes)
        return self._closes[key]

    def _option_activity(self, opt: OptionSpec, q: Quote | None, t: datetime, generic: frozenset[int],
                         ticks: TickSet) -> None:
        oi = self._open_interest(opt, t)
        ticks.sizes[activity.VOLUME_TICK] = activity.option_volume(opt, oi, self.calendar, t)
        if activity.OPTION_OPEN_INTEREST in generic:
            ticks.sizes[activity.oi_tick(opt)] = oi
        if activity.OPTION_VOLUME in generic:
            ticks.sizes[activity.volume_tick(opt)] = ticks.sizes[activity.VOLUME_TICK]
        if activity.HISTORICAL_VOL in generic:
            hv = self._historical_vol("SPX" if opt.symbol in equities.EQUITIES else opt.symbol, t)
            if hv is not None:
                ticks.generics[activity.HV_TICK] = round(hv, 6)
        if activity.IMPLIED_VOL in generic and q is not None and q.greeks is not None:
            ticks.generics[activity.IV_TICK] = round(q.greeks.iv, 6)

    def _index_activity(self, symbol: str, t: datetime, generic: frozenset[int], ticks: TickSet) -> None:
        if not generic:
            return
        state = self.exchange.market.state_at(t)
        if generic & {activity.OPTION_VOLUME, activity.OPTION_OPEN_INTEREST}:
            expiries = []
            for d, tclass in self._listed_expiries(symbol, t):
                expiry_t = self.exchange.vix_expiry_time(d) if symbol == "VIX" else self.calendar.spxw_expiry_time(d)
                expiries.append((tclass, d, (expiry_t - t).total_seconds() / YEAR_S))
            oi, vol = activity.chain_totals(symbol, state, expiries, self.calendar, t)
            if activity.OPTION_OPEN_INTEREST in generic:
                ticks.sizes[activity.CALL_OI] = ticks.sizes[activity.PUT_OI] = oi
            if activity.OPTION_VOLUME in generic:
                ticks.sizes[activity.CALL_VOLUME] = ticks.sizes[activity.PUT_VOLUME] = vol
        if activity.HISTORICAL_VOL in generic:
            hv = self._historical_vol(symbol, t)
            if hv is not None:
                ticks.generics[activity.HV_TICK] = round(hv, 6)
        if activity.IMPLIED_VOL in generic:
            ticks.generics[activity.IV_TICK] = round(activity.index_implied_vol(symbol, state), 6)

    def _listed_expiries(self, symbol: str, t: datetime) -> list[tuple[object, str]]:
        if symbol == "VIX":
            return list(self.exchange.vix_expiries(t))
        return [(d, "SPXW") for d in self.exchange.expiries(t, horizon_days=45)]

    # --- instruments ------------------------------------------------------------------------
    def _previous_close_time(self, t: datetime) -> datetime | None:
        cal = self.calendar
        d = t.astimezone(NY).date()
        try:
            prev = cal.previous_session(d) if not (cal.is_session(d) and t >= cal.open_close(d)[1]) else d
            return cal.open_close(prev)[1]
        except (ValueError, IndexError):
            return None

    def _index(self, symbol: str, t: datetime) -> TickSet:
        market = self.exchange.market
        value = _index_value(market.state_at(t), symbol)
        ticks = TickSet({LAST: (round(value, 2), 0.0)})
        close_t = self._previous_close_time(t)
        if close_t is not None:
            ticks.prices[CLOSE] = (round(_index_value(market.state_at(close_t), symbol), 2), 0.0)
        return ticks

    def _stock(self, symbol: str, t: datetime, generic: frozenset[int]) -> TickSet:
        """A penny-wide quote around the model price; volume grows through the session."""
        market = self.exchange.market
        q = equities.stock_quote(market, symbol, t)  # the quote the exchange fills stock orders against
        ticks = TickSet({BID: (float(q.bid), 100.0), ASK: (float(q.ask), 100.0), LAST: (q.underlying, 100.0)})
        close_t = self._previous_close_time(t)
        if close_t is not None:
            ticks.prices[CLOSE] = (equities.price_at(market, symbol, close_t), 0.0)
        ticks.sizes[VOLUME] = float(round(60_000_000 * activity.session_fraction(self.calendar, t) / 100))
        if activity.HISTORICAL_VOL in generic:
            hv = self._historical_vol("SPX", t)
            if hv is not None:
                ticks.generics[activity.HV_TICK] = round(hv * equities.EQUITIES[symbol].vol_scale, 6)
        if activity.IMPLIED_VOL in generic:
            state = market.state_at(t)
            ticks.generics[activity.IV_TICK] = round(activity.index_implied_vol("SPX", state)
                                                     * equities.EQUITIES[symbol].vol_scale, 6)
        return ticks

    def _future(self, fut: Future, t: datetime) -> TickSet | None:
        curve = dict(self.exchange.market.state_at(t).vx)
        price = curve.get(fut.expiry)
        if price is None:
            return None
        bid = math.floor(price / float(FUTURE_TICK)) * float(FUTURE_TICK)
        ticks = TickSet({BID: (round(bid, 2), QUOTE_SIZE), ASK: (round(bid + float(FUTURE_TICK), 2), QUOTE_SIZE),
                         LAST: (round(price, 2), 1.0)})
        close_t = self._previous_close_time(t)
        if close_t is not None:
            prev = dict(self.exchange.market.state_at(close_t).vx).get(fut.expiry)
            if prev is not None:
                ticks.prices[CLOSE] = (round(prev, 2), 0.0)
        return ticks

    def _option(self, opt: OptionSpec, q: Quote | None, t: datetime) -> TickSet | None:
        if q is None:
            return None
        bid, ask = float(q.bid), float(q.ask)
        last = round(float(q.mid), 2)
        ticks = TickSet({BID: (bid, QUOTE_SIZE), ASK: (ask, QUOTE_SIZE), LAST: (last, 1.0)})
        close = self._option_close(opt, t)
        if close is not None:
            ticks.prices[CLOSE] = (close, 0.0)
        g = q.greeks
        if g is not None:
            und = float(q.underlying) if q.underlying is not None else -1.0
            pv_div = self._pv_dividend(opt, und, t)
            for tick_type, price in ((BID_GREEKS, bid), (ASK_GREEKS, ask), (LAST_GREEKS, last), (MODEL_GREEKS, last)):
                ticks.computations[tick_type] = (
                    round(g.iv, 6), round(g.delta, 6), price, pv_div, round(g.gamma, 8),
                    round(g.vega, 6), round(g.theta, 6), und,
                )
        return ticks

    def _option_close(self, opt: OptionSpec, t: datetime) -> float | None:
        """The model mid at the previous close (cached: it changes once a day)."""
        close_t = self._previous_close_time(t)
        if close_t is None:
            return None
        key = (opt.key, close_t)
        if key not in self._closes:
            if len(self._closes) > 20_000:
                self._closes.clear()
            prev = self.option_quotes([opt], close_t).get(opt.key)
            self._closes[key] = round(float(prev.mid), 2) if prev is not None else None
        return self._closes[key]

    def _pv_dividend(self, opt: OptionSpec, spot: float, t: datetime) -> float:
        if spot <= 0 or not self.calendar.is_session(opt.expiry):
            return -1.0
        years = max(0.0, (self.calendar.spxw_expiry_time(opt.expiry) - t).total_seconds() / YEAR_S)
        if opt.symbol in equities.EQUITIES:
            return round(equities.pv_dividend(opt.symbol, spot, years), 4)
        return round(spot * (1.0 - math.exp(-self.dividend_yield * years)), 4)

    def _bag(self, bag: Bag, quotes: dict[str, Quote]) -> TickSet | None:
        """A combo's bid is what selling it would fetch (sell the bought legs at their bid,
        buy back the sold ones at their ask); its ask is the cost of buying it."""
        bid = ask = Decimal(0)
        for leg in bag.legs:
            q = quotes.get(leg.option.key)
            if q is None:
                return None
            if leg.action is Action.BUY:
                bid += q.bid * leg.ratio
                ask += q.ask * leg.ratio
            else:
                bid -= q.ask * leg.ratio
                ask -= q.bid * leg.ratio
        mid = (bid + ask) / 2
        return TickSet({BID: (float(bid), QUOTE_SIZE), ASK: (float(ask), QUOTE_SIZE), LAST: (round(float(mid), 2), 1.0)})


def _index_value(state, symbol: str) -> float:
    return state.spx if symbol == "SPX" else state.vix
