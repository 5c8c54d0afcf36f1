"""The one Broker port. The engine, the executor and the reconciler talk to this and nothing else.

Adapters: `SimBroker` (in-process simulated exchange, for replay speed) and `IBBroker`
(ib_async, over a real IB Gateway/TWS paper account or the simulated gateway), which also
offers the optional `LiveFeed` capabilities (streaming, resync callbacks, data delay, server
version).

Errors are named by what the operator (or the engine) must do:
- `TransientBrokerError`: retry with backoff (dropped connection, pacing).
- `OrderRejected`: final for that order; record, skip, alert; never blind-retry.
- `FatalBrokerError`: halt entries, stay up, alert (wrong account, permissions).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Protocol, runtime_checkable

from bot.domain import AccountSummary, Fill, Leg, OptionSpec, OrderState, Position, Quote


class BrokerError(Exception):
    """Base of every error a broker adapter raises."""


class TransientBrokerError(BrokerError):
    """Retry later (with backoff): not connected, pacing, timeout."""


class Degraded(TransientBrokerError):
    """Connected, but IB's own link is down (1100): no order, modify or cancel may leave until
    it is restored. Waiting is the cure; the connection and the orders at IB are intact."""


class OrderRejected(BrokerError):
    """The broker refused an order (margin, tick grid, permissions). Final for that order."""

    def __init__(self, order_ref: str, reason: str, code: int | None = None):
        super().__init__(f"order {order_ref} rejected: {reason}")
        self.order_ref = order_ref
        self.reason = reason
        self.code = code


class FatalBrokerError(BrokerError):
    """Stop trading: the account or the connection cannot be used as configured."""


class UnknownState(BrokerError):
    """A query failed half way: the answer is unknown, not empty. Skip the cycle."""


@runtime_checkable
class Broker(Protocol):
    """Async broker port. Every call may raise a `BrokerError`."""

    name: str

    async def connect(self) -> AccountSummary: ...

    async def disconnect(self) -> None: ...

    @property
    def connected(self) -> bool: ...

    # --- market data -------------------------------------------------------------------
    async def spot(self, symbol: str) -> float:
        """Last index value ("SPX", "VIX"). Raises BadQuote (domain) when unusable."""
        ...

    async def expiries(self, symbol: str, trading_class: str) -> list[date]:
        """Listed option expiries ahead, ascending. ("SPX", "SPXW"): the daily SPXW expiries;
        ("VIX", "VIX"): the monthly VIX expiries; ("VIX", "VIXW"): the weekly ones."""
        ...

    async def strikes(self, symbol: str, trading_class: str, expiry: date) -> list[Decimal]:
        """Listed strikes of one expiry, ascending (SPX or VIX, as for `expiries`)."""
        ...

    async def futures(self, symbol: str = "VIX") -> list[tuple[date, float]]:
        """The futures curve now: (expiry, price) of the listed monthly futures, nearest
        first. Only "VIX" (the VX futures, underlyings of the VIX options). Raises BadQuote
        when a price is unusable."""
        ...

    async def daily_closes(self, symbol: str, sessions: int) -> list[tuple[date, float]]:
        """(session date, close) of the last `sessions` COMPLETED sessions before now, oldest
        first, for indexes such as "SPX" and "VIX": today is included only once its session
        has closed. Fewer may come back where history is short. The indicators' warm-up (IB:
        reqHistoricalData with daily bars)."""
        ...

    async def quotes(self, options: Sequence[OptionSpec]) -> dict[str, Quote]:
        """Quotes with greeks by `OptionSpec.key`. Options with no usable quote are absent."""
        ...

    async def stream_quotes(self, options: Sequence[OptionSpec]) -> None:
        """Keep exactly these options' quotes streaming, best effort within the market-data
        line budget (IB: about 100 concurrent lines); `quotes` then answers them from memory
        instead of a snapshot round trip. Replaces the previous set. A broker whose quotes cost
        nothing (SimBroker) ignores it."""
        ...

    def market_data_lines(self) -> dict[str, int]:
        """Market-data lines: {"in_use", "peak", "limit", "streamed_options"}."""
        ...

    # --- orders ------------------------------------------------------------------------
    async def place_combo(self, order_ref: str, legs: Sequence[Leg], quantity: int, limit: Decimal) -> OrderState:
        """Place a combo limit order (net debit per unit; negative = credit). `order_ref` is
        unique and travels with the order so it can be found after a crash."""
        ...

    async def modify(self, order_ref: str, limit: Decimal) -> OrderState:
        """Change the limit of a working order in place."""
        ...

    async def cancel(self, order_ref: str) -> OrderState: ...

    async def cancel_all(self) -> None:
        """Global cancel (IB reqGlobalCancel): the kill switch's backstop."""
        ...

    async def order(self, order_ref: str) -> OrderState | None:
        """Open or completed order by orderRef; None when the broker has never seen it."""
        ...

    async def open_orders(self) -> list[OrderState]: ...

    async def fills(self, order_refs: Iterable[str] | None = None) -> list[Fill]:
        """Executions (one per leg), optionally only those of the given orderRefs."""
        ...

    # --- account -----------------------------------------------------------------------
    async def positions(self) -> list[Position]: ...

    async def account(self) -> AccountSummary: ...

    async def settlement_price(self, option: OptionSpec) -> Decimal | None:
        """Cash-settlement price per share of an expired option (intrinsic at the settlement
        value), or None while it is not known yet."""
        ...


@runtime_checkable
class LiveFeed(Protocol):
    """What a broker on a live connection (IBBroker) offers beyond the port. SimBroker has none
    of it: it is polled, never drops, and its data are never delayed. Checked once, when the
    engine is wired (`live_feed`), never attribute by attribute while it runs."""

    delayed: bool  # market data are delayed: never trade on them (FAILURES.md 16)
    server_version: int | None  # the API server version, once connected
    on_resync: list[Callable[[], Awaitable[None]]]  # called after a reconnect (the engine reconciles)

    def watch(self, symbol: str, callback: Callable[[float], None]) -> None:
        """Stream an index: `callback(value)` on every usable update (the hedge's live VIX)."""
        ...


def live_feed(broker: Broker) -> LiveFeed | None:
    """The broker's live capabilities, or None for a broker without them."""
    return broker if isinstance(broker, LiveFeed) else None
