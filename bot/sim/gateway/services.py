"""The requests beyond the bot's own path: every other id an EClient at server version
176..178 sends is either served here or answered with the error IB sends for it, never
dropped in silence (`REQUESTS` is the table, README "What the gateway serves" its prose).

Served from the simulation: P&L (account and single position, streamed), matching symbols,
market rules (the ids contract details name), head time stamps, option price / implied
volatility calculations (the exchange's own models), positions multi, family codes, user
info, smart components, soft-dollar tiers, display groups, scanner parameters, news providers
and historical news (none). Refused with IB's code where the simulation has no data: market
depth (10092), fundamentals (430), scanners, histograms, historical ticks (162), real-time
bars (420), FA (321, not an FA account), tick-by-tick, news articles, WSH and API
verification (321 with the cause). Cancels are accepted without an answer, as at IB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np

from bot import pricing
from bot.american import american_price_greeks
from bot.domain import OptionSpec, Right

from . import mapping
from . import messages as msg
from bot.sim.equities import EQUITIES, instrument_from_key, price
from .listing import NY
from bot.sim.margin import Holding, requirement
from .protocol import GenericRequest

# marketRuleIds named in contract details -> (lowEdge, increment) rows
MARKET_RULES = {
    110: [(0.0, 0.05), (3.0, 0.10)],  # Cboe index options: 0.05 below $3, 0.10 from $3
    26: [(0.0, 0.01)],  # stocks and penny-pilot options (SPY, QQQ)
}

SYMBOLS = [  # (symbol, secType, conId, primary exchange, derivative sec types, description)
    ("SPX", "IND", mapping.SPX_CON_ID, "CBOE", ("OPT",), mapping.INDEX_NAMES["SPX"]),
    ("VIX", "IND", mapping.VIX_CON_ID, "CBOE", ("FUT", "OPT"), mapping.INDEX_NAMES["VIX"]),
    *[(e.symbol, "STK", e.con_id, e.primary_exchange, ("OPT",), e.name) for e in EQUITIES.values()],
]

NOT_FA = "Error validating request.-'bA' : cause - FA data operations ignored for non FA customers."


def _cause(text: str) -> str:
    return f"Error validating request.-'sim' : cause - {text}"


# id -> (name, answer): "served", or (code, message) IB's error for it, or "accepted" (a cancel
# or setting: IB sends nothing back)
REFUSALS: dict[int, tuple[int, str]] = {
    10: (10092, "Deep market data is not supported for this combination of security type/exchange"),
    18: (321, NOT_FA),
    19: (321, NOT_FA),
    21: (321, _cause("SPX and VIX options are European-style; SPY and QQQ options are exercised and assigned "
                     "automatically at expiry (early exercise is not simulated)")),
    22: (162, "Historical Market Data Service error message:Scanner subscriptions are not simulated"),
    50: (420, "Invalid Real-time Query:real-time bars are not simulated; use reqHistoricalData with keepUpToDate"),
    52: (430, "We are sorry, but fundamentals data for the security specified is not available."),
    65: (321, _cause("API verification is not required by this gateway")),
    66: (321, _cause("API verification is not required by this gateway")),
    72: (321, _cause("API verification is not required by this gateway")),
    73: (321, _cause("API verification is not required by this gateway")),
    84: (321, _cause("no news provider is subscribed")),
    88: (162, "Historical Market Data Service error message:histogram data is not simulated"),
    96: (162, "Historical Market Data Service error message:historical ticks are not simulated"),
    97: (321, _cause("tick-by-tick data is not simulated; use reqMktData")),
    100: (321, _cause("Wall Street Horizon data is not subscribed")),
    102: (321, _cause("Wall Street Horizon data is not subscribed")),
}
ACCEPTED = {11, 13, 14, 23, 51, 53, 56, 57, 70, 75, 89, 90, 93, 95, 98, 101, 103}


@dataclass
class DayMark:
    """Account values when the gateway first saw a session day: the base of daily P&L."""

    day: object
    net_liquidation: float
    unrealized: float
    marks: dict[str, float]


class Services:
    """Handlers of the generic requests for one `SimGateway`."""

    def __init__(self, gw):
        self.gw = gw
        self._day: DayMark | None = None

    def handlers(self) -> dict:
        out = {i: self._refuse for i in REFUSALS}
        out.update({i: (lambda s, r: None) for i in ACCEPTED})
        out.update({
            12: lambda s, r: None,  # news bulletins: none are ever issued here
            24: lambda s, r: s.send(msg.scanner_parameters(SCANNER_XML)),
            54: self._calc_implied_vol,
            55: self._calc_option_price,
            67: lambda s, r: s.send(msg.display_group_list(r.req_id, "1|2|3|4|5|6|7")),
            68: self._subscribe_group,
            69: self._update_group,
            74: self._positions_multi,
            79: lambda s, r: s.send(msg.soft_dollar_tiers(r.req_id)),
            80: lambda s, r: s.send(msg.family_codes([(self.gw.account, "")])),
            81: self._matching_symbols,
            82: lambda s, r: s.send(msg.mkt_depth_exchanges([])),  # consistent with 10092 on depth
            83: lambda s, r: s.send(msg.smart_components(r.req_id, [(0, "CBOE", "C")])),
            85: lambda s, r: s.send(msg.news_providers([])),
            86: lambda s, r: s.send(msg.historical_news_end(r.req_id, False)),
            87: self._head_timestamp,
            91: self._market_rule,
            92: self._req_pnl,
            93: lambda s, r: s.pnl_subs.pop(r.req_id, None),
            94: self._req_pnl_single,
            95: lambda s, r: s.pnl_subs.pop(r.req_id, None),
            75: lambda s, r: s.positions_multi.discard(r.req_id),
            70: lambda s, r: s.groups.discard(r.req_id),
            104: lambda s, r: s.send(msg.user_info(r.req_id, "")),
        })
        return out

    def _refuse(self, s, r: GenericRequest) -> None:
        code, text = REFUSALS[r.msg_id]
        s.error(r.req_id, code, text)

    # --- display groups, symbols, rules --------------------------------------------------------
    def _subscribe_group(self, s, r: GenericRequest) -> None:
        s.groups.add(r.req_id)
        s.send(msg.display_group_updated(r.req_id, "none"))

    def _update_group(self, s, r: GenericRequest) -> None:
        info = r.args[0] if r.args else "none"
        if r.req_id in s.groups:
            s.send(msg.display_group_updated(r.req_id, info))

    def _matching_symbols(self, s, r: GenericRequest) -> None:
        pattern = (r.args[0] if r.args else "").strip().upper()
        rows = [msg.SymbolSample(con_id, sym, sec, exch, derivs, name)
                for sym, sec, con_id, exch, derivs, name in SYMBOLS
                if pattern and (sym.startswith(pattern) or pattern in name.upper())]
        s.send(msg.symbol_samples(r.req_id, rows, s.version))

    def _market_rule(self, s, r: GenericRequest) -> None:
        rule_id = r.fields().int(-1)
        rule = MARKET_RULES.get(rule_id)
        if rule is None:
            s.error(-1, 321, _cause(f"invalid market rule id {rule_id}"))
            return
        s.send(msg.market_rule(rule_id, rule))

    def _head_timestamp(self, s, r: GenericRequest) -> None:
        f = r.fields()
        contract = f.contract()
        f.bool()  # includeExpired
        f.bool()  # useRTH
        f.str()  # whatToShow
        format_date = f.int(1)
        inst = self.gw._resolve_one(s, r.req_id, contract)
        if inst is None:
            return
        market = self.gw.exchange.market
        first = getattr(market, "first_session", None) or self.gw.clock.now().date()
        if isinstance(inst, OptionSpec):  # an option's data starts when it was listed, at most a year back
            first = max(first, inst.expiry - timedelta(days=365))
        try:
            first = self.gw.calendar.next_session(first, include=True)
            start = self.gw.calendar.open_close(first)[0]
        except (ValueError, IndexError):
            start = datetime(first.year, first.month, first.day, 14, 30, tzinfo=timezone.utc)
        text = str(int(start.timestamp())) if format_date == 2 else f"{start.astimezone(timezone.utc):%Y%m%d-%H:%M:%S}"
        s.send(msg.head_timestamp(r.req_id, text))

    # --- option calculations ---------------------------------------------------------------------
    def _option_model(self, opt: OptionSpec, t: datetime, under: float | None):
        """(price function of sigma, underlying, T, rate): the exchange's own models, Black-Scholes
        on SPX with its dividend yield, Black-76 on the matching VX future for VIX."""
        from bot.sim.exchange import DIVIDEND_YIELD

        ex = self.gw.exchange
        state = ex.market.state_at(t)
        k = float(opt.strike)
        call = opt.right is Right.CALL
        if opt.symbol == "VIX":
            t_years = ex._vix_years_to_expiry(opt, t)
            f = under if under else ex.vix_future(opt.expiry, t)
            return (lambda sig: float(pricing.black76_price(f, k, t_years, sig, state.rate, call)),
                    lambda sig: pricing.black76_greeks(f, k, t_years, sig, state.rate, call), f, t_years, 0.0)
        if opt.symbol in EQUITIES:
            from bot.sim import equities

            eq = EQUITIES[opt.symbol]
            t_years = equities.years_to_expiry(self.gw.calendar, opt, t)
            spot = under if under else equities.price(opt.symbol, state.spx)
            def american(sig: float) -> dict:  # the exchange's own model: American, `bot.american`
                g = american_price_greeks(spot, k, t_years, sig, state.rate, eq.dividend_yield, call)
                return {name: float(v[0]) for name, v in g.items()}

            return (lambda sig: american(sig)["mid"], american, spot, t_years,
                    equities.pv_dividend(opt.symbol, spot, t_years))
        t_years = ex._years_to_expiry(opt, t)
        spot = under if under else state.spx
        return (lambda sig: float(pricing.bs_price(spot, k, t_years, sig, state.rate, DIVIDEND_YIELD, call)),
                lambda sig: pricing.bs_greeks(spot, k, t_years, sig, state.rate, DIVIDEND_YIELD, call), spot, t_years,
                spot * (1.0 - math.exp(-DIVIDEND_YIELD * max(t_years, 0.0))))

    def _calc_request(self, s, r: GenericRequest):
        f = r.fields()
        contract = f.contract()
        value, under = f.float(), f.float()
        if value is None or value <= 0:
            s.error(r.req_id, 321, _cause("the option price or volatility must be positive"))
            return None
        inst = self.gw._resolve_one(s, r.req_id, contract)
        if inst is None:
            return None
        if not isinstance(inst, OptionSpec):
            s.error(r.req_id, 321, _cause("calculations apply to options only"))
            return None
        model = self._option_model(inst, self.gw.clock.now(), under if under and under > 0 else None)
        if model[3] <= 0:
            s.error(r.req_id, 321, _cause("the option has expired"))
            return None
        return inst, value, model

    def _send_computation(self, s, req_id: int, sigma: float, model) -> None:
        price_of, greeks_of, under, _, pv_div = model
        g = greeks_of(sigma)
        s.send(msg.tick_option_computation(
            req_id, 13, round(sigma, 6), round(float(g["delta"]), 6), round(price_of(sigma), 4), round(pv_div, 4),
            round(float(g["gamma"]), 8), round(float(g["vega"]), 6), round(float(g["theta"]), 6), round(under, 4)))

    def _calc_option_price(self, s, r: GenericRequest) -> None:
        found = self._calc_request(s, r)
        if found is not None:
            _, sigma, model = found
            self._send_computation(s, r.req_id, sigma, model)

    def _calc_implied_vol(self, s, r: GenericRequest) -> None:
        found = self._calc_request(s, r)
        if found is None:
            return
        _, price, model = found
        sigma = implied_vol(model[0], price)
        if sigma is None:
            s.error(r.req_id, 321, _cause(f"no volatility prices the option at {price}"))
            return
        self._send_computation(s, r.req_id, sigma, model)

    # --- positions multi -------------------------------------------------------------------------
    def _positions_multi(self, s, r: GenericRequest) -> None:
        f = r.fields()
        account, model_code = f.str(), f.str()
        if account and account not in (self.gw.account, "All"):
            s.error(r.req_id, 321, _cause(f"unknown account {account}"))
            return
        s.positions_multi.add(r.req_id)
        for p in self.gw.exchange.positions():
            s.send(self.position_multi_msg(r.req_id, p.option.key, p.quantity, p.avg_cost, model_code))
        s.send(msg.position_multi_end(r.req_id))

    def position_multi_msg(self, req_id: int, key: str, qty, avg, model_code: str = "") -> list:
        spec = instrument_from_key(key)
        return msg.position_multi(req_id, self.gw.account, model_code, mapping.contract_fields(spec), float(qty),
                                  float(avg) * spec.multiplier)

    # --- P&L ---------------------------------------------------------------------------------------
    def _req_pnl(self, s, r: GenericRequest) -> None:
        account = r.fields().str()
        if account and account != self.gw.account:
            s.error(r.req_id, 321, _cause(f"unknown account {account}"))
            return
        s.pnl_subs[r.req_id] = None
        self.push_pnl(s, r.req_id)

    def _req_pnl_single(self, s, r: GenericRequest) -> None:
        f = r.fields()
        account, _model = f.str(), f.str()
        con_id = f.int()
        if account and account != self.gw.account:
            s.error(r.req_id, 321, _cause(f"unknown account {account}"))
            return
        inst = mapping.decode_con_id(con_id)
        if not isinstance(inst, (OptionSpec, mapping.Stock)):
            s.error(r.req_id, 200, "No security definition has been found for the request")
            return
        s.pnl_subs[r.req_id] = inst.key
        self.push_pnl(s, r.req_id)

    def book(self, now: datetime):
        """(positions, marks by key, underlying values) at now."""
        ex = self.gw.exchange
        positions = ex.positions()
        quotes = ex.price_options([p.option for p in positions], now)
        marks = {k: float(q.mid) for k, q in quotes.items()}
        state = ex.market.state_at(now)
        unders = {"SPX": state.spx, "VIX": state.vix}
        unders.update({symbol: price(symbol, state.spx) for symbol in EQUITIES})
        return positions, marks, unders

    def day_mark(self, now: datetime) -> DayMark:
        """Values at the first look of the session day (the gateway's 'previous close')."""
        day = now.astimezone(NY).date()
        if self._day is None or self._day.day != day:
            positions, marks, _ = self.book(now)
            acct = self.gw.exchange.account(now)
            unreal = sum((marks.get(p.option.key, 0.0) - float(p.avg_cost)) * p.option.multiplier * p.quantity
                         for p in positions)
            self._day = DayMark(day, float(acct.net_liquidation), unreal, dict(marks))
        return self._day

    def pnl_values(self, now: datetime, key: str | None):
        positions, marks, _ = self.book(now)
        base = self.day_mark(now)
        if key is None:
            nlv = float(self.gw.exchange.account(now).net_liquidation)
            unreal = sum((marks.get(p.option.key, 0.0) - float(p.avg_cost)) * p.option.multiplier * p.quantity
                         for p in positions)
            daily = nlv - base.net_liquidation
            return daily, unreal, daily - (unreal - base.unrealized)
        p = next((p for p in positions if p.option.key == key), None)
        if p is None:
            return 0, 0.0, 0.0, 0.0, 0.0
        mult = p.option.multiplier
        mark = marks.get(key, 0.0)
        unreal = (mark - float(p.avg_cost)) * mult * p.quantity
        since = base.marks.get(key, float(p.avg_cost))
        daily = (mark - since) * mult * p.quantity
        return p.quantity, daily, unreal, 0.0, mark * mult * p.quantity

    def push_pnl(self, s, req_id: int | None = None) -> None:
        now = self.gw.clock.now()
        for rid, key in list(s.pnl_subs.items()):
            if req_id is not None and rid != req_id:
                continue
            values = self.pnl_values(now, key)
            if key is None:
                s.send(msg.pnl(rid, *(round(v, 2) for v in values)))
            else:
                pos, *rest = values
                s.send(msg.pnl_single(rid, int(pos), *(round(v, 2) for v in rest)))

    # --- account values ------------------------------------------------------------------------------
    def ib_margin(self, positions, marks: dict[str, float], unders: dict[str, float], extra: dict[str, int] | None = None,
                  maintenance: bool = False):
        """IB's (Reg T) margin of the positions (options and stocks), plus `extra` contracts or
        shares by key; `maintenance`: the maintenance requirement (it differs for stocks)."""
        qty = {p.option.key: p.quantity for p in positions}
        for k, q in (extra or {}).items():
            qty[k] = qty.get(k, 0) + q
        holdings = []
        for k, q in qty.items():
            if q:
                o = instrument_from_key(k)
                holdings.append(Holding(o, q, marks.get(k, 0.0), unders.get(o.symbol, 0.0)))
        return requirement(holdings, maintenance)

    def account_values(self, now: datetime) -> list[tuple[str, str, str]]:
        """Every standard tag of reqAccountSummary and reqAccountUpdates, from one snapshot:
        cash, positions at their model mid, IB's option margin (`margin.py`)."""
        acct = self.gw.exchange.account(now)
        positions, marks, unders = self.book(now)
        cash, nlv = float(acct.cash), float(acct.net_liquidation)
        values = [marks.get(p.option.key, 0.0) * p.option.multiplier * p.quantity for p in positions]
        stocks_value = sum(v for v, p in zip(values, positions) if isinstance(p.option, mapping.Stock))
        options_value = sum(values) - stocks_value
        gross = sum(abs(v) for v in values)
        cost = sum(float(p.avg_cost) * p.option.multiplier * p.quantity for p in positions)
        margin = self.ib_margin(positions, marks, unders)
        maint = self.ib_margin(positions, marks, unders, maintenance=True)
        base = self.day_mark(now)
        unreal = options_value + stocks_value - cost
        realized = (nlv - base.net_liquidation) - (unreal - base.unrealized)
        available = nlv - margin
        excess = nlv - maint
        cushion = excess / nlv if nlv > 0 else 0.0
        leverage = gross / nlv if nlv > 0 else 0.0
        next_change = self._next_open_epoch(now)
        m = lambda v: f"{v:.2f}"  # noqa: E731
        usd = [
            ("NetLiquidation", m(nlv)), ("TotalCashValue", m(cash)), ("SettledCash", m(cash)),
            ("AccruedCash", "0.00"), ("BuyingPower", m(available)), ("EquityWithLoanValue", m(nlv)),
            ("PreviousDayEquityWithLoanValue", m(base.net_liquidation)), ("GrossPositionValue", m(gross)),
            ("RegTEquity", m(nlv)), ("RegTMargin", m(margin)), ("SMA", m(max(0.0, nlv - margin))),
            ("InitMarginReq", m(margin)), ("MaintMarginReq", m(maint)),
            ("AvailableFunds", m(available)), ("ExcessLiquidity", m(excess)),
            ("FullInitMarginReq", m(margin)), ("FullMaintMarginReq", m(maint)),
            ("FullAvailableFunds", m(available)), ("FullExcessLiquidity", m(excess)),
            ("LookAheadInitMarginReq", m(margin)), ("LookAheadMaintMarginReq", m(maint)),
            ("LookAheadAvailableFunds", m(available)), ("LookAheadExcessLiquidity", m(excess)),
            ("OptionMarketValue", m(options_value)), ("StockMarketValue", m(stocks_value)),
            ("UnrealizedPnL", m(unreal)), ("RealizedPnL", m(realized)),
        ]
        out = [("AccountCode", self.gw.account, ""), ("AccountType", "INDIVIDUAL", ""), ("AccountReady", "true", ""),
               ("Currency", "USD", "USD"), ("CashBalance", m(cash), "USD"), ("CashBalance", m(cash), "BASE")]
        out += [(k, v, "USD") for k, v in usd]
        out += [("Cushion", f"{cushion:.6f}", ""), ("Leverage", f"{leverage:.4f}", ""),
                ("LookAheadNextChange", str(next_change), ""), ("DayTradesRemaining", "-1", ""),
                ("HighestSeverity", "0", "")]
        return out

    def _next_open_epoch(self, now: datetime) -> int:
        cal = self.gw.calendar
        try:
            d = cal.next_session(now.astimezone(NY).date(), include=True)
            opened = cal.open_close(d)[0]
            if opened <= now:
                opened = cal.open_close(cal.next_session(d))[0]
            return int(opened.timestamp())
        except (ValueError, IndexError):
            return 0


def implied_vol(price_of, target: float, lo: float = 1e-4, hi: float = 5.0) -> float | None:
    """The volatility at which the model prices the option at `target` (bisection: the price
    rises with volatility); None when no volatility in [lo, hi] reaches it."""
    p_lo, p_hi = price_of(lo), price_of(hi)
    if not (p_lo <= target <= p_hi) or not np.isfinite(target):
        return None
    for _ in range(80):
        mid = (lo + hi) / 2
        if price_of(mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


SCANNER_XML = ('<?xml version="1.0" encoding="UTF-8"?><ScanParameterResponse><InstrumentList/><LocationTree/>'
               '<ScanTypeList/><FilterList/></ScanParameterResponse>')
