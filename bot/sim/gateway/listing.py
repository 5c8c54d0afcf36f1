"""What the simulated market lists right now: option expiries and strikes, VX futures, trading
hours, and the contract-details text IB attaches to each contract. Implements
`mapping.Listing` over the exchange, the market model and the trading calendar.

VIX options are listed only when the exchange prices them (it answers a probe quote): the
gateway answers what the exchange supports and error 200 otherwise.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from bot.calendar import TradingCalendar
from bot.domain import OptionSpec, Right

from bot.sim import equities

from . import mapping
from .mapping import Bag, Future, Index, Instrument
from .messages import DetailsInfo

NY = ZoneInfo("America/New_York")
TZ_LABEL = "US/Eastern"  # the zone name IB writes in time stamps and contract details
VIX_STRIKES = [Decimal(k) / 2 for k in range(20, 61)] + [Decimal(k) for k in range(31, 101)]


class ExchangeListing:
    def __init__(self, exchange, calendar: TradingCalendar, clock):
        self.exchange = exchange
        self.calendar = calendar
        self.clock = clock
        self._vix_options: bool | None = None

    @property
    def now(self) -> datetime:
        return self.clock.now()

    # --- mapping.Listing --------------------------------------------------------------
    def option_expiries(self, trading_class: str, include_expired: bool) -> list[date]:
        t = self.now
        if trading_class == "SPXW":
            return list(self.exchange.expiries(t))
        if trading_class in mapping.EQUITY_CLASSES:
            days = equities.expiries(self.calendar, t.astimezone(NY).date())
            return [d for d in days if self._alive(trading_class, d, t)]
        if trading_class == "SPX":
            return [d for d in self._monthly(t, 12, self.spx_monthly_expiry) if self._alive(trading_class, d, t)]
        if not self.vix_options_supported():
            return []
        if trading_class == "VIX":
            return [d for d in self.future_expiries() if self._alive(trading_class, d, t)]
        if trading_class == "VIXW":
            today = t.astimezone(NY).date()
            monthly = set(self.future_expiries())
            days = self.calendar.sessions_between(today, today + timedelta(days=42))
            return [d for d in days if d.weekday() == 2 and d not in monthly and self._alive(trading_class, d, t)]
        return []

    def is_option_expiry(self, trading_class: str, expiry: date, include_expired: bool) -> bool:
        if not self.calendar.is_session(expiry):
            return False
        if not include_expired and not self._alive(trading_class, expiry, self.now):
            return False
        if trading_class == "SPXW":
            return True
        if trading_class in mapping.EQUITY_CLASSES:
            return equities.is_expiry(self.calendar, expiry)
        if trading_class == "SPX":
            return expiry == self.spx_monthly_expiry(expiry.year, expiry.month)
        if trading_class in ("VIX", "VIXW") and not self.vix_options_supported():
            return False
        monthly = expiry == self.calendar.vix_monthly_expiry(expiry.year, expiry.month)
        if trading_class == "VIX":
            return monthly
        return trading_class == "VIXW" and expiry.weekday() == 2 and not monthly

    def option_strikes(self, trading_class: str, expiry: date) -> list[Decimal]:
        if trading_class in ("SPXW", "SPX"):
            return list(self.exchange.strikes(expiry, self.now))
        if trading_class in mapping.EQUITY_CLASSES:
            return equities.strikes(equities.price_at(self.exchange.market, trading_class, self.now))
        return list(VIX_STRIKES)

    def future_expiries(self) -> list[date]:
        return [e for e, _ in self.exchange.market.state_at(self.now).vx]

    # --- helpers ------------------------------------------------------------------------
    def _alive(self, trading_class: str, expiry: date, t: datetime) -> bool:
        """Not yet expired: SPXW at the session close; SPX AM and VIX options at the open
        (their settlement value is fixed by the opening prices)."""
        if not self.calendar.is_session(expiry):
            return False
        open_, close = self.calendar.open_close(expiry)
        return (close if trading_class in ("SPXW", *mapping.EQUITY_CLASSES) else open_) > t

    def spx_monthly_expiry(self, year: int, month: int) -> date:
        """SPX AM options: the third Friday, or the session before it when it is a holiday."""
        first = date(year, month, 1)
        friday = first + timedelta(days=(4 - first.weekday()) % 7 + 14)
        return friday if self.calendar.is_session(friday) else self.calendar.previous_session(friday)

    def _monthly(self, t: datetime, months: int, rule) -> list[date]:
        d = t.astimezone(NY).date()
        y, m = d.year, d.month
        out = []
        for _ in range(months):
            try:
                out.append(rule(y, m))
            except (ValueError, IndexError):
                break
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return out

    def vix_options_supported(self) -> bool:
        """Whether the exchange quotes VIX options (probed once, with a call near the front
        VX future on its expiry)."""
        if self._vix_options is None:
            try:
                t = self.now
                expiry, future = self.exchange.market.state_at(t).vx[0]
                probe = OptionSpec("VIX", expiry, Decimal(max(10, round(future))), Right.CALL, "VIX")
                self._vix_options = bool(self.exchange.price_options([probe], t))
            except Exception:  # noqa: BLE001 - an exchange without VIX support may fail any way
                self._vix_options = False
        return self._vix_options

    # --- contract details ---------------------------------------------------------------------
    def trading_hours(self, days: int = 7) -> str:
        """IB's tradingHours text for the next `days` calendar days, in New York time."""
        today = self.now.astimezone(NY).date()
        parts = []
        for i in range(days):
            d = today + timedelta(days=i)
            if not self.calendar.is_session(d):
                parts.append(f"{d:%Y%m%d}:CLOSED")
                continue
            o, c = (x.astimezone(NY) for x in self.calendar.open_close(d))
            parts.append(f"{o:%Y%m%d:%H%M}-{c:%Y%m%d:%H%M}")
        return ";".join(parts)

    def details(self, inst: Instrument) -> DetailsInfo:
        hours = self.trading_hours()
        if isinstance(inst, Index):
            return DetailsInfo(
                market_name=inst.symbol, min_tick=0.01, order_types="", valid_exchanges="CBOE",
                long_name=mapping.INDEX_NAMES[inst.symbol], time_zone_id=TZ_LABEL,
                trading_hours=hours, liquid_hours=hours, market_rule_ids="",
            )
        if isinstance(inst, Future):
            return DetailsInfo(
                market_name="VX", min_tick=float(mapping.FUTURE_TICK), valid_exchanges="CFE",
                under_con_id=mapping.VIX_CON_ID, long_name="CBOE Volatility Index",
                contract_month=f"{inst.expiry:%Y%m}", time_zone_id=TZ_LABEL, trading_hours=hours,
                liquid_hours=hours, under_symbol="VIX", under_sec_type="IND", market_rule_ids="",
                real_expiration_date=f"{inst.expiry:%Y%m%d}",
            )
        if isinstance(inst, Bag):
            return DetailsInfo(market_name=inst.symbol, valid_exchanges="SMART", time_zone_id=TZ_LABEL)
        if isinstance(inst, mapping.Stock):
            eq = equities.EQUITIES[inst.symbol]
            return DetailsInfo(
                market_name=inst.symbol, min_tick=0.01, order_types="LMT,MKT,DAY,GTC,WHATIF",
                valid_exchanges=",".join(mapping.STOCK_EXCHANGES), long_name=eq.name, time_zone_id=TZ_LABEL,
                trading_hours=hours, liquid_hours=hours, market_rule_ids=",".join(["26"] * len(mapping.STOCK_EXCHANGES)),
            )
        if inst.symbol in equities.EQUITIES:
            eq = equities.EQUITIES[inst.symbol]
            return DetailsInfo(
                market_name=inst.trading_class, min_tick=0.01, valid_exchanges="SMART,CBOE",
                under_con_id=eq.con_id, long_name=eq.name, contract_month=f"{inst.expiry:%Y%m}",
                time_zone_id=TZ_LABEL, trading_hours=hours, liquid_hours=hours, under_symbol=inst.symbol,
                under_sec_type="STK", market_rule_ids="26,26", real_expiration_date=f"{inst.expiry:%Y%m%d}",
            )
        under = mapping.INDEX_CON_IDS[inst.symbol]
        return DetailsInfo(
            market_name=inst.trading_class, min_tick=0.05, valid_exchanges="SMART,CBOE",
            under_con_id=under, long_name=mapping.INDEX_NAMES[inst.symbol],
            contract_month=f"{inst.expiry:%Y%m}", time_zone_id=TZ_LABEL, trading_hours=hours,
            liquid_hours=hours, under_symbol=inst.symbol, under_sec_type="IND",
            market_rule_ids="110,110", real_expiration_date=f"{inst.expiry:%Y%m%d}",
        )

    def option_chains(self, symbol: str) -> list[tuple[str, str, list[str], list[float]]]:
        """(trading class, multiplier, expirations, strikes) of each option class on an index."""
        out = []
        for tclass in mapping.SYMBOL_CLASSES.get(symbol.upper(), ()):
            expiries = self.option_expiries(tclass, False)
            if not expiries:
                continue
            strikes = sorted({k for d in expiries[:1] for k in self.option_strikes(tclass, d)})
            out.append((tclass, str(mapping.OPTION_MULTIPLIER), [f"{d:%Y%m%d}" for d in expiries],
                        [float(k) for k in strikes]))
        return out


def ny_text(t: datetime) -> str:
    """`YYYYMMDD HH:MM:SS US/Eastern`: how execution and bar times are labelled."""
    return t.astimezone(NY).strftime("%Y%m%d %H:%M:%S ") + TZ_LABEL
