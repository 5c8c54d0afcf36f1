"""`SimBroker`: the Broker port over the in-process simulated exchange (fast replay).

Every call first brings the exchange up to the injected clock's time, so fills, settlements
and quotes are those of "now" in simulated time. No threads, no sockets: a replayed year runs
as fast as the engine can decide.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal

from bot.broker.base import BrokerError, OrderRejected, TransientBrokerError
from bot.clock import Clock
from bot.domain import AccountSummary, BadQuote, Fill, Leg, OptionSpec, OrderState, Position, Quote
from bot.sim.exchange import ExchangeReject, SimExchange


class SimBroker:
    name = "sim"

    def __init__(self, exchange: SimExchange, clock: Clock):
        self.exchange = exchange
        self.clock = clock
        self._connected = False

    def _sync(self):
        if not self._connected:
            raise TransientBrokerError("not connected")
        now = self.clock.now()
        self.exchange.advance_to(now)
        return now

    async def connect(self) -> AccountSummary:
        self._connected = True
        return await self.account()

    async def disconnect(self) -> None:
        self._connected = False

    @property
    def connected(self) -> bool:
        return self._connected

    async def spot(self, symbol: str) -> float:
        now = self._sync()
        state = self.exchange.market.state_at(now)
        value = {"SPX": state.spx, "VIX": state.vix}.get(symbol)
        if value is None:
            raise BrokerError(f"no index {symbol}")
        if not math.isfinite(value) or value <= 0:
            raise BadQuote(f"{symbol}={value!r}")
        return value

    async def expiries(self, symbol: str, trading_class: str) -> list[date]:
        """SPXW: every session ahead. VIX: the monthlies for trading class "VIX", the weeklies
        for "VIXW" (both when the class is anything else)."""
        now = self._sync()
        if _is_vix(symbol, trading_class):
            listed = self.exchange.vix_expiries(now)
            if trading_class in ("VIX", "VIXW"):
                return [d for d, tc in listed if tc == trading_class]
            return [d for d, _ in listed]
        return self.exchange.expiries(now)

    async def strikes(self, symbol: str, trading_class: str, expiry: date) -> list[Decimal]:
        now = self._sync()
        if _is_vix(symbol, trading_class):
            return self.exchange.vix_strikes(expiry, now)
        return self.exchange.strikes(expiry, now)

    async def futures(self, symbol: str = "VIX") -> list[tuple[date, float]]:
        """The monthly VIX futures curve now: (expiry, price), nearest first."""
        now = self._sync()
        if symbol not in ("VIX", "VX"):
            raise BrokerError(f"no futures curve for {symbol}")
        curve = self.exchange.futures(now)
        bad = [p for _, p in curve if not math.isfinite(p) or p <= 0]
        if bad:
            raise BadQuote(f"VX future {bad[0]!r}")
        return curve

    async def daily_closes(self, symbol: str, sessions: int) -> list[tuple[date, float]]:
        """(session, close) of the last `sessions` completed sessions before now, oldest first."""
        now = self._sync()
        try:
            return self.exchange.daily_closes(symbol, sessions, now)
        except ValueError as e:
            raise BrokerError(str(e)) from None

    async def quotes(self, options: Sequence[OptionSpec]) -> dict[str, Quote]:
        return self.exchange.price_options(list(options), self._sync())

    async def stream_quotes(self, options: Sequence[OptionSpec]) -> None:
        """Quotes are computed on demand here: nothing to keep streaming."""

    def market_data_lines(self) -> dict[str, int]:
        return {"in_use": 0, "peak": 0, "limit": 0, "streamed_options": 0}

    async def place_combo(self, order_ref: str, legs: Sequence[Leg], quantity: int, limit: Decimal) -> OrderState:
        now = self._sync()
        try:
            return self.exchange.place_combo(order_ref, list(legs), quantity, limit, now)
        except ExchangeReject as e:
            raise OrderRejected(order_ref, e.reason, e.code) from None

    async def modify(self, order_ref: str, limit: Decimal) -> OrderState:
        now = self._sync()
        try:
            return self.exchange.modify(order_ref, limit, now)
        except ExchangeReject as e:
            raise OrderRejected(order_ref, e.reason, e.code) from None

    async def cancel(self, order_ref: str) -> OrderState:
        now = self._sync()
        try:
            return self.exchange.cancel(order_ref, now)
        except ExchangeReject as e:
            raise OrderRejected(order_ref, e.reason, e.code) from None

    async def cancel_all(self) -> None:
        self.exchange.cancel_all(self._sync())

    async def order(self, order_ref: str) -> OrderState | None:
        self._sync()
        return self.exchange.order(order_ref)

    async def open_orders(self) -> list[OrderState]:
        self._sync()
        return self.exchange.open_orders()

    async def fills(self, order_refs: Iterable[str] | None = None) -> list[Fill]:
        self._sync()
        return self.exchange.fills(None if order_refs is None else list(order_refs))

    async def positions(self) -> list[Position]:
        self._sync()
        return self.exchange.positions()

    async def account(self) -> AccountSummary:
        return self.exchange.account(self._sync())

    async def settlement_price(self, option: OptionSpec) -> Decimal | None:
        """Cash-settlement price per share of an expired option (the SPX close for SPXW)."""
        self._sync()
        s = self.exchange.settlement(option.key)
        return s[1] if s else None


def _is_vix(symbol: str, trading_class: str) -> bool:
    return symbol == "VIX" or trading_class in ("VIX", "VIXW")
