"""`IBBroker`: the Broker port over ib_async (IB Gateway / TWS, or the simulated gateway).

Design (FAILURES.md "ib_async behaviours to design around"):
- Everything the bot sends goes through one asyncio-throttle (45 messages/s by default).
- ib_async forgets everything on a disconnect and never resubscribes; the adapter reconnects
  with backoff and then calls the `on_resync` callbacks (the engine reconciles), as it does on
  1101 / 1102. Between 1100 and the restore the broker is DEGRADED: no new order, modify or
  cancel leaves (TransientBrokerError).
- An error carrying an order id makes ib_async mark the order Cancelled locally; the adapter
  never treats that alone as final for a cancel race (10148): `order()` reports what the
  trade says, and reconcile books what executions prove.
- Orders are found by orderRef, never by remembered order ids (they restart after a gateway
  restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import date
from decimal import Decimal

from asyncio_throttle import Throttler
from ib_async import IB, Contract, Future, TradeLogEntry

from bot.broker import ib_mapping as m
from bot.broker.base import (
    BrokerError,
    Degraded,
    FatalBrokerError,
    OrderRejected,
    TransientBrokerError,
    UnknownState,
)
from bot.calendar import NY
from bot.clock import Clock, SystemClock
from bot.domain import AccountSummary, Action, BadQuote, Fill, Leg, OptionSpec, OrderState, Position, Quote

ACK_TIMEOUT = 10.0
PENDING = ("PendingSubmit", "ApiPending", "")  # statuses of an order IB has not acknowledged yet
FILLS_WAIT = 2.0  # real seconds fills() waits for trailing executions and commission reports


SNAPSHOT_RESERVE = 10  # market-data lines never given to streams
BATCH_QUALIFY = 4  # options of one expiry missing at once: qualify the whole expiry in one request


def _fresh(ticker, since: float) -> bool:
    """ib_async keeps one Ticker per contract across snapshots: a snapshot that brings no tick
    (link lost, farm broken) returns the previous values unchanged. Fresh = updated since."""
    stamp = getattr(ticker, "timestamp", None)
    return stamp is None or stamp >= since


def _unconfirmed(trade) -> bool:
    """ib_async marks an order Cancelled on any error that carries its id (a refused modify,
    a cancel refused with 10148, 103/104...): that is ib_async's guess, not IB's word
    (FAILURES.md: never act on that event alone)."""
    if trade.orderStatus.status not in ("Cancelled", "ApiCancelled"):
        return False
    for entry in reversed(trade.log):
        if entry.message.startswith("Fill "):  # executions do not set the status
            continue
        return entry.errorCode != 0 and entry.errorCode not in m.CANCEL_CONFIRMED
    return False


def _unacknowledged(trade) -> bool:
    """A placement ib_async keeps locally that IB never answered: not an order IB has seen."""
    return trade.orderStatus.status in ("PendingSubmit", "ApiPending", "")


def _transient(method):
    """The port promises BrokerErrors only: ib_async raises ConnectionError when the socket is
    gone (or goes away while a request waits) and a request may time out. Both mean "retry
    later", never a crash of the engine's loop."""

    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        try:
            return await method(self, *args, **kwargs)
        except ConnectionError as e:
            raise TransientBrokerError(f"{method.__name__}: connection lost ({e})") from None
        except (asyncio.TimeoutError, TimeoutError):
            raise TransientBrokerError(f"{method.__name__}: no answer within the timeout") from None

    return wrapper


class IBBroker:
    name = "ib"

    def __init__(self, host: str, port: int, client_id: int, *, timeout: float = 10.0, account: str = "",
                 market_data_type: int = 1, max_messages_per_s: float = 45.0, log=None,
                 reconnect: bool = True, ib: IB | None = None, clock: Clock | None = None,
                 market_data_lines: int = 100):
        self.host, self.port, self.client_id = host, port, client_id
        self.timeout = timeout
        self.account_id = account
        self.market_data_type = market_data_type
        self.delayed = market_data_type in (3, 4)  # never trade on delayed data (FAILURES.md 16)
        self._rate = max(1, int(max_messages_per_s))
        # a token is taken before the message is written; 5% slack on the window keeps the write
        # times, which the event loop may delay, within the rate too
        self.throttle = Throttler(rate_limit=self._rate, period=1.05)
        self._client_id_in_use = False
        self.log = log
        self.clock = clock or SystemClock()
        self.ib = ib or IB()
        self.reconnect = reconnect
        self.degraded = False
        self.data_blocked: str | None = None
        self.on_resync: list[Callable] = []
        self._conids: dict[str, int] = {}
        self._contracts: dict[str, Contract] = {}
        self._legs: dict[str, list[Leg]] = {}  # orderRef -> legs, to read states back
        self._rejections: dict[int, tuple[int, str]] = {}  # orderId -> (code, message)
        self._chains: dict[tuple[str, str], tuple[list[date], list[Decimal]]] = {}
        self._closing = False
        self._reconnect_task: asyncio.Task | None = None
        self.server_version: int | None = None
        self._watches: dict[str, Callable[[float], None]] = {}
        self._streams: dict[str, object] = {}
        # market-data lines (IB's default budget is 100): index streams + option streams +
        # snapshots in flight never exceed `line_limit`; SNAPSHOT_RESERVE of them stay free for
        # snapshots whatever is streamed
        self.line_limit = market_data_lines
        self._option_streams: dict[str, object] = {}
        self._wanted: list[OptionSpec] = []
        self._snapshot_lines = 0
        self.peak_lines = 0
        self._lines = asyncio.Condition()
        self.last_tick_at = None
        self.ib.errorEvent += self._on_error
        self.ib.disconnectedEvent += self._on_disconnected

    # --- connection ----------------------------------------------------------------------------
    async def connect(self) -> AccountSummary:
        self._client_id_in_use = False
        self.throttle.rate_limit = self._rate
        # a new connection starts with a healthy link unless the gateway says otherwise while
        # connecting (2110 right after nextValidId when its own link to IB is down)
        self.degraded = False
        try:
            await self.ib.connectAsync(self.host, self.port, clientId=self.client_id, timeout=self.timeout,
                                       account=self.account_id)
        except (ConnectionRefusedError, OSError, asyncio.TimeoutError, TimeoutError) as e:
            if self._client_id_in_use:
                raise FatalBrokerError(f"client id {self.client_id} is in use at {self.host}:{self.port} (IB 326): "
                                       "another instance is running") from None
            raise TransientBrokerError(f"cannot connect to {self.host}:{self.port} (client {self.client_id}): "
                                       f"{e or type(e).__name__}") from None
        if self._client_id_in_use:
            self.ib.disconnect()
            raise FatalBrokerError(f"client id {self.client_id} is in use at {self.host}:{self.port} (IB 326): "
                                   "another instance is running")
        if not self.ib.isConnected():
            raise TransientBrokerError(f"connection to {self.host}:{self.port} refused (client id in use?)")
        self.server_version = self.ib.client.serverVersion()
        accounts = self.ib.managedAccounts()
        if not self.account_id:
            if not accounts:
                raise FatalBrokerError("the gateway reports no managed account")
            self.account_id = accounts[0]
        elif self.account_id not in accounts:
            raise FatalBrokerError(f"account {self.account_id} is not among {accounts}")
        await self.throttle.acquire()
        self.ib.reqMarketDataType(self.market_data_type)
        self._chains.clear()
        self._streams.clear()
        self._option_streams.clear()  # ib_async dropped them with the connection
        for symbol in self._watches:
            self._subscribe(symbol)
        if self._wanted:
            await self.stream_quotes(self._wanted)
        return await self.account()

    async def disconnect(self) -> None:
        self._closing = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        if self.ib.isConnected():
            self.ib.disconnect()

    @property
    def connected(self) -> bool:
        return self.ib.isConnected()

    def _on_disconnected(self) -> None:
        if self._closing:
            return
        if self.log:
            self.log.warning("broker.disconnected", broker=self.name, reason="connection lost")
        if self.reconnect and not self._closing and self._reconnect_task is None:
            self._reconnect_task = asyncio.ensure_future(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        delay = 1.0
        try:
            while not self._closing:
                await asyncio.sleep(delay)
                try:
                    await self.connect()
                except BrokerError as e:
                    if self.log:
                        self.log.warning("broker.reconnect_failed", error=str(e), retry_in_s=min(delay * 2, 60))
                    delay = min(delay * 2, 60.0)
                    continue
                if self.log:
                    self.log.info("broker.connected", broker=self.name, account=self.account_id,
                                  server_version=self.server_version, reconnected=True)
                await self._resync("reconnected")
                return
        finally:
            self._reconnect_task = None

    async def _resync(self, why: str) -> None:
        for callback in list(self.on_resync):
            try:
                await callback(why)
            except Exception as e:  # a failed reconcile must not kill the reconnect loop
                if self.log:
                    self.log.error("broker.resync_failed", error=str(e), why=why)

    async def _restored(self, code: int) -> None:
        """1101 / 1102: IB does not re-send what happened during the gap (fills, cancels,
        position changes) and ib_async asks for nothing: refresh orders, executions and
        positions first (still DEGRADED meanwhile), then let the engine reconcile."""
        try:
            await self._refresh()
        except Exception as e:  # noqa: BLE001 - a reconnect (and its resync) will follow
            if self.log:
                self.log.error("broker.resync_failed", error=str(e) or type(e).__name__, why=f"IB {code}")
            return
        finally:
            self.degraded = False
        await self._resync(f"IB {code}")

    async def _refresh(self) -> None:
        """Orders, executions and positions brought to IB's word: after a gap in what IB told
        us (1101/1102, an order that was never acknowledged or ended unseen), position messages
        may have been lost with the rest."""
        await self._confirm()
        await self._refresh_positions()

    async def _refresh_positions(self) -> None:
        """Ask IB for every position and drop the ones it no longer reports (a position closed
        in a gap is not re-sent with quantity 0). The view stays whole meanwhile: a reader
        (the guard, a reconcile) never sees it emptied, and a position streamed while the
        request runs is kept."""
        held = dict(self.ib.wrapper.positions.get(self.account_id, {}))
        async with self.throttle:
            reported = await asyncio.wait_for(self.ib.reqPositionsAsync(), self.timeout)
        seen = {p.contract.conId for p in reported if p.account == self.account_id}
        view = self.ib.wrapper.positions.get(self.account_id, {})
        for con_id, before in held.items():
            if con_id not in seen and view.get(con_id) is before:  # not reported, not updated since
                view.pop(con_id, None)

    async def _confirm(self) -> None:
        """Bring the local trades to IB's word: executions (missing ones join their trades by
        permId), open orders (their orderStatus), completed orders (status and filled quantity
        of the orders that ended unseen, or that ib_async marked Cancelled after an error)."""
        async with self.throttle:
            await asyncio.wait_for(self.ib.reqExecutionsAsync(), self.timeout)
        async with self.throttle:
            await asyncio.wait_for(self.ib.reqOpenOrdersAsync(), self.timeout)
        async with self.throttle:
            completed = await asyncio.wait_for(self.ib.reqCompletedOrdersAsync(False), self.timeout)
        ended = {t.order.permId: t for t in completed if t.order.permId}
        for trade in self.ib.trades():
            done = ended.get(trade.order.permId)
            if done is None or (trade.isDone() and not _unconfirmed(trade)):
                continue
            st = trade.orderStatus
            st.status = done.orderStatus.status
            filled = m._number(getattr(done.order, "filledQuantity", 0))
            if filled:
                st.filled = filled
                st.remaining = max(0.0, float(trade.order.totalQuantity) - filled)
                st.avgFillPrice = m._avg_fill_price(trade, filled) or st.avgFillPrice
            trade.log.append(TradeLogEntry(self.ib.wrapper.lastTime, st.status, "completed order (resync)"))

    def _on_error(self, req_id: int, code: int, message: str, contract) -> None:
        kind = m.classify(code)
        if kind == "lost":
            self.degraded = True
        elif kind in ("restored", "restored_data_lost"):
            asyncio.ensure_future(self._restored(code))
        elif kind == "data_blocked":
            self.data_blocked = f"IB {code}: {message}"
        elif code in m.DATA_FARM_OK:
            self.data_blocked = None
        if m.refuses_order(code):
            self._rejections[req_id] = (code, message)
        if code in m.CLIENT_ID_IN_USE:
            self._client_id_in_use = True
        if m.is_pacing(code, message):
            # over IB's message rate: slow the one throttle down until the next connect
            self.throttle.rate_limit = max(1, self.throttle.rate_limit // 2)
        if self.log and kind not in ("info",):
            self.log.warning("broker.error", code=code, kind=kind, req_id=req_id, message=message)

    def _require_orders_allowed(self) -> None:
        if not self.connected:
            raise TransientBrokerError("not connected")
        if self.degraded:
            raise Degraded("IB link degraded (1100): no new orders until it is restored")

    # --- contracts & market data ------------------------------------------------------------------
    @_transient
    async def _qualify(self, options: Sequence[OptionSpec]) -> dict[str, Contract]:
        missing = [o for o in options if o.key not in self._contracts]
        groups: dict[tuple, list[OptionSpec]] = {}
        for o in missing:
            groups.setdefault((o.symbol, o.trading_class, o.expiry, o.right), []).append(o)
        for group in groups.values():
            if len(group) >= BATCH_QUALIFY:  # one request answers every strike of an expiry
                await self._qualify_expiry(group[0])
        missing = [o for o in missing if o.key not in self._contracts]
        if missing:
            async def qualify(contract):  # one reqContractDetails per token, not one per batch
                async with self.throttle:
                    [qualified] = await self.ib.qualifyContractsAsync(contract)
                return qualified

            result = await asyncio.gather(*(qualify(m.option_contract(o)) for o in missing))
            for spec, qualified in zip(missing, result):
                if isinstance(qualified, Contract) and qualified.conId:
                    differs = m.contract_differences(spec, qualified)
                    if differs:  # FAILURES.md 18: never quoted, never ordered (absent, like a 200)
                        if self.log:
                            self.log.error("contract.mismatch", asked=spec.key, differs=differs,
                                           local_symbol=qualified.localSymbol)
                        continue
                    self._contracts[spec.key] = qualified
                    self._conids[spec.key] = qualified.conId
        return {o.key: self._contracts[o.key] for o in options if o.key in self._contracts}

    async def _qualify_expiry(self, like: OptionSpec) -> None:
        """Contract details of every strike of one expiry, class and right in one request
        (the strike left open), cached like single qualifications."""
        wild = m.option_contract(like)
        wild.strike = 0.0
        try:
            async with self.throttle:
                details = await asyncio.wait_for(self.ib.reqContractDetailsAsync(wild), self.timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return  # the single requests that follow decide
        for d in details:
            spec = m.option_spec(d.contract)
            # only exactly what was asked for, multiplier included (FAILURES.md 18): anything else
            # is left to the single qualification, which refuses and logs it
            if spec is None or not d.contract.conId or m.contract_differences(replace(like, strike=spec.strike),
                                                                                d.contract):
                continue
            self._contracts[spec.key] = d.contract
            self._conids[spec.key] = d.contract.conId

    def watch(self, symbol: str, callback: Callable[[float], None]) -> None:
        """Stream an index and call `callback(value)` on every usable update (the hedge's live
        VIX triggers). Subscriptions are renewed after every reconnect: ib_async drops them."""
        self._watches[symbol] = callback
        if self.connected:
            self._subscribe(symbol)

    def _subscribe(self, symbol: str) -> None:
        ticker = self.ib.reqMktData(m.index_contract(symbol), "", False, False)
        self._streams[symbol] = ticker
        self._note_lines()
        ticker.updateEvent += lambda t, s=symbol: self._on_tick(s, t)

    def _on_tick(self, symbol: str, ticker) -> None:
        try:
            value = m.index_value(ticker)
        except BadQuote:
            return
        self.last_tick_at = self.clock.now()  # health: age of the last market tick
        callback = self._watches.get(symbol)
        if callback is not None:
            callback(value)

    @_transient
    async def spot(self, symbol: str) -> float:
        if self.data_blocked:
            raise BadQuote(f"market data blocked ({self.data_blocked})")
        stream = self._streams.get(symbol)
        if stream is not None and self.connected:
            try:
                return m.index_value(stream)  # a streamed value costs no request
            except BadQuote:
                pass
        async with self._snapshot_line(), self.throttle:
            asked = time.time()
            [ticker] = await asyncio.wait_for(self.ib.reqTickersAsync(m.index_contract(symbol)), self.timeout)
        if not _fresh(ticker, asked):
            raise BadQuote(f"{symbol}: no data in the snapshot (the last value is stale)")
        return m.index_value(ticker)

    @_transient
    async def _chain(self, symbol: str, trading_class: str) -> tuple[list[date], list[Decimal]]:
        key = (symbol, trading_class)
        if key not in self._chains:
            async with self.throttle:
                chains = await asyncio.wait_for(
                    self.ib.reqSecDefOptParamsAsync(symbol, "", "IND", m.INDEX_CONIDS[symbol]), self.timeout)
            for c in chains:
                if c.tradingClass == trading_class:
                    expiries = sorted({m.parse_expiry(e) for e in c.expirations})
                    strikes = sorted({Decimal(str(k)) for k in c.strikes})
                    self._chains[key] = (expiries, strikes)
                    break
            else:
                raise BrokerError(f"no option chain {trading_class} for {symbol}")
        return self._chains[key]

    async def expiries(self, symbol: str, trading_class: str) -> list[date]:
        return (await self._chain(symbol, trading_class))[0]

    async def strikes(self, symbol: str, trading_class: str, expiry: date) -> list[Decimal]:
        return (await self._chain(symbol, trading_class))[1]

    # --- market-data lines -------------------------------------------------------------------------
    @property
    def lines_in_use(self) -> int:
        return len(self._streams) + len(self._option_streams) + self._snapshot_lines

    def _note_lines(self) -> None:
        self.peak_lines = max(self.peak_lines, self.lines_in_use)

    def market_data_lines(self) -> dict[str, int]:
        return {"in_use": self.lines_in_use, "peak": self.peak_lines, "limit": self.line_limit,
                "streamed_options": len(self._option_streams)}

    @contextlib.asynccontextmanager
    async def _snapshot_line(self):
        """Hold one line for a snapshot, waiting while the budget is used up."""
        async with self._lines:
            await self._lines.wait_for(lambda: self.lines_in_use < self.line_limit)
            self._snapshot_lines += 1
            self._note_lines()
        try:
            yield
        finally:
            async with self._lines:
                self._snapshot_lines -= 1
                self._lines.notify_all()

    async def stream_quotes(self, options: Sequence[OptionSpec]) -> None:
        """Keep exactly these options streaming (reqMktData), in the order given until the
        budget less SNAPSHOT_RESERVE is used; the rest are left to snapshots. Renewed after
        every reconnect."""
        self._wanted = list(options)
        if not self.connected:
            return
        contracts = await self._qualify(options) if options else {}
        wanted = list(dict.fromkeys(o.key for o in options if o.key in contracts))
        for key in [k for k in self._option_streams if k not in wanted]:
            ticker = self._option_streams.pop(key)
            if ticker is not None:
                async with self.throttle:
                    self.ib.cancelMktData(ticker.contract)
        async with self._lines:
            self._lines.notify_all()
        for key in wanted:
            if key in self._option_streams:
                continue
            async with self._lines:
                if self.lines_in_use >= self.line_limit - SNAPSHOT_RESERVE:
                    break
                self._option_streams[key] = None  # the line is taken before the request goes
                self._note_lines()
            async with self.throttle:
                self._option_streams[key] = self.ib.reqMktData(contracts[key], "", False, False)

    def _streamed_quote(self, key: str) -> Quote | None:
        ticker = self._option_streams.get(key)
        if ticker is None or not self.connected or self.degraded:
            return None
        try:
            return m.quote_of(ticker)
        except BadQuote:
            return None  # not yet priced, or unusable: a snapshot decides

    @_transient
    async def quotes(self, options: Sequence[OptionSpec]) -> dict[str, Quote]:
        if not options:
            return {}
        if self.data_blocked:
            raise BadQuote(f"market data blocked ({self.data_blocked})")
        out: dict[str, Quote] = {}
        for o in options:
            q = self._streamed_quote(o.key)
            if q is not None:
                out[o.key] = q  # streamed: no request
        rest = [o for o in options if o.key not in out]
        if not rest:
            return out
        contracts = await self._qualify(rest)
        keys = [o.key for o in rest if o.key in contracts]
        tickers = await self._snapshots([contracts[k] for k in keys])
        for k, t in zip(keys, tickers):
            if t is None:
                continue  # nothing came (1100, broken farm): the ticker holds an old snapshot
            try:
                out[k] = m.quote_of(t)
            except BadQuote:
                continue  # absent: never priced on
        return out

    async def _snapshots(self, contracts: list[Contract]) -> list:
        """One snapshot per contract, each sent after its own throttle token (a batch sent at
        once bursts past the rate, FAILURES.md 19). None for a ticker no tick came for."""
        async def one(contract):
            async with self._snapshot_line():
                async with self.throttle:
                    asked = time.time()
                    [ticker] = await asyncio.wait_for(self.ib.reqTickersAsync(contract), self.timeout)
            return ticker if _fresh(ticker, asked) else None

        return list(await asyncio.gather(*(one(c) for c in contracts)))

    @_transient
    async def futures(self, symbol: str = "VIX") -> list[tuple[date, float]]:
        async with self.throttle:
            details = await self.ib.reqContractDetailsAsync(Future(symbol, exchange="CFE", currency="USD"))
        contracts = sorted((d.contract for d in details if d.contract.tradingClass in ("VX", symbol)),
                           key=lambda c: c.lastTradeDateOrContractMonth)
        tickers = await self._snapshots(contracts)
        out = []
        for c, t in zip(contracts, tickers):
            if t is None:
                continue
            v = t.marketPrice()
            if v is not None and math.isfinite(v) and v > 0:
                out.append((m.parse_expiry(c.lastTradeDateOrContractMonth), float(v)))
        return out

    @_transient
    async def daily_closes(self, symbol: str, sessions: int) -> list[tuple[date, float]]:
        years = max(1, math.ceil(sessions / 250))
        async with self.throttle:
            bars = await asyncio.wait_for(self.ib.reqHistoricalDataAsync(
                m.index_contract(symbol), endDateTime="", durationStr=f"{years} Y", barSizeSetting="1 day",
                whatToShow="TRADES", useRTH=True, formatDate=1), self.timeout * 3)
        today = self.clock.now().astimezone(NY).date()
        rows = [(b.date if isinstance(b.date, date) else m.parse_expiry(str(b.date)), float(b.close)) for b in bars]
        rows = [(d, c) for d, c in rows if math.isfinite(c) and d < today]  # today's bar is still forming
        return rows[-sessions:]

    @_transient
    async def settlement_price(self, option: OptionSpec) -> Decimal | None:
        """Intrinsic at the settlement value: SPXW at the SPX close of expiry day, VIX options at
        the special opening quotation (approximated by VIX's open that morning)."""
        async with self.throttle:
            bars = await self.ib.reqHistoricalDataAsync(
                m.index_contract(option.symbol), endDateTime="", durationStr="10 D", barSizeSetting="1 day",
                whatToShow="TRADES", useRTH=True, formatDate=1)
        for b in bars:
            d = b.date if isinstance(b.date, date) else m.parse_expiry(str(b.date))
            if d == option.expiry:
                value = b.open if option.symbol == "VIX" else b.close
                return Decimal(str(round(option.intrinsic(float(value)), 2)))
        return None

    # --- orders ------------------------------------------------------------------------------------
    def _trade(self, order_ref: str):
        found = [t for t in self.ib.trades() if t.order.orderRef == order_ref]
        return found[-1] if found else None

    @_transient
    async def place_combo(self, order_ref: str, legs: Sequence[Leg], quantity: int, limit: Decimal) -> OrderState:
        self._require_orders_allowed()
        legs = list(legs)
        contracts = await self._qualify([leg.option for leg in legs])
        missing = [leg.option.key for leg in legs if leg.option.key not in contracts]
        if missing:
            raise OrderRejected(order_ref, f"no security definition for {', '.join(missing)}", 200)
        contract, order = m.combo_order(legs, [contracts[leg.option.key].conId for leg in legs], quantity, limit,
                                        order_ref, self.account_id)
        if len(legs) == 1:
            # the qualified contract, not a bare conId: ib_async attaches the order's contract to
            # its executions, and a bare one could not be read back as an option
            contract = contracts[legs[0].option.key]
        self._legs[order_ref] = legs
        async with self.throttle:
            trade = self.ib.placeOrder(contract, order)
        return await self._acknowledged(trade, order_ref)

    async def _trade_event(self, trade, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait until `ready()` holds, on ib_async's own events: check first, then subscribe
        to the trade's status, fill and cancel events, IB's errors and a disconnect, wait with
        a timeout, unsubscribe in `finally`. True when ready. (Our error handler runs before
        the wake-up: a rejection is recorded by the time `ready` is asked again.)"""
        if ready():
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        wake = asyncio.Event()

        def poke(*_) -> None:
            wake.set()

        events = (trade.statusEvent, trade.filledEvent, trade.cancelledEvent, self.ib.errorEvent,
                  self.ib.disconnectedEvent)
        for event in events:
            event += poke
        try:
            while not ready():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                wake.clear()
                try:
                    # not wait_for: on 3.11 it swallows a cancel that lands as the event fires, and a
                    # stopping daemon's task would go on walking (asyncio.timeout passes it through)
                    async with asyncio.timeout(remaining):
                        await wake.wait()
                except TimeoutError:
                    return ready()
            return True
        finally:
            for event in events:
                event -= poke

    async def _acknowledged(self, trade, order_ref: str) -> OrderState:
        """Wait (with a timeout) until the order is past PendingSubmit, or rejected."""
        order_id = trade.order.orderId
        await self._trade_event(trade, lambda: (order_id in self._rejections or not self.connected
                                                or trade.orderStatus.status not in PENDING), ACK_TIMEOUT)
        rejection = self._rejections.pop(order_id, None)
        if rejection is not None:  # only codes that refuse an order are recorded (m.refuses_order)
            code, message = rejection
            raise OrderRejected(order_ref, message, code)
        if trade.orderStatus.status not in PENDING:
            return m.order_state(trade, self._legs.get(order_ref))
        if not self.connected:  # it may or may not have reached IB: reconcile decides
            raise TransientBrokerError(f"disconnected before order {order_ref} was acknowledged")
        # no acknowledgement: ask IB (executions, open and completed orders, positions) before
        # calling the order unknown (FAILURES.md 9). Never re-placed here.
        await self._refresh()
        if trade.orderStatus.status not in PENDING:
            return m.order_state(trade, self._legs.get(order_ref))
        raise TransientBrokerError(f"order {order_ref} not acknowledged within {ACK_TIMEOUT:.0f}s "
                                   "and IB does not know it (yet): state unknown")

    @_transient
    async def modify(self, order_ref: str, limit: Decimal) -> OrderState:
        self._require_orders_allowed()
        trade = self._trade(order_ref)
        if trade is None:
            raise OrderRejected(order_ref, "order not found", 10147)
        if trade.isDone():
            return m.order_state(trade, self._legs.get(order_ref))
        legs = self._legs.get(order_ref) or []
        async with self.throttle:
            # the fill may have come while the throttle held us: a done order is not modified
            # (ib_async asserts on it, and IB would answer 10148 / 104)
            if trade.isDone():
                return m.order_state(trade, self._legs.get(order_ref))
            trade.order.lmtPrice = float(limit * legs[0].action.sign) if len(legs) == 1 else float(limit)
            trade = self.ib.placeOrder(trade.contract, trade.order)
        return await self._acknowledged(trade, order_ref)

    @_transient
    async def cancel(self, order_ref: str) -> OrderState:
        self._require_orders_allowed()
        trade = self._trade(order_ref)
        if trade is None:
            raise OrderRejected(order_ref, "order not found", 10147)
        if not trade.isDone():
            async with self.throttle:
                if not trade.isDone():  # it may have filled while the throttle held us
                    self.ib.cancelOrder(trade.order)
            await self._trade_event(trade, lambda: trade.isDone() or not self.connected, ACK_TIMEOUT)
            if not trade.isDone() and not self.connected:
                raise TransientBrokerError(f"disconnected while cancelling {order_ref}")
        rejection = self._rejections.pop(trade.order.orderId, None)
        if rejection and rejection[0] == 10148:  # too late: it filled; the fills will show it
            await asyncio.sleep(0.05)
        if _unconfirmed(trade):  # ib_async's verdict after an error, not IB's: ask IB
            await self._refresh()
        return m.order_state(trade, self._legs.get(order_ref))

    @_transient
    async def cancel_all(self) -> None:
        if not self.connected:
            raise TransientBrokerError("not connected")
        async with self.throttle:
            self.ib.reqGlobalCancel()
        await asyncio.sleep(0.2)

    @_transient
    async def order(self, order_ref: str) -> OrderState | None:
        trade = self._trade(order_ref)
        if (trade is None or _unacknowledged(trade)) and not self.connected:  # unknown, not absent
            raise UnknownState(f"not connected: order {order_ref} unknown")
        if trade is None:
            async with self.throttle:
                completed = await asyncio.wait_for(self.ib.reqCompletedOrdersAsync(False), self.timeout)
            trade = next((t for t in completed if t.order.orderRef == order_ref), None)
            if trade is not None and not trade.fills:  # its executions came before it: attach them
                trade.fills = [f for f in self.ib.fills() if f.execution.permId == trade.order.permId]
        elif (_unconfirmed(trade) or _unacknowledged(trade)) and self.connected:
            await self._refresh()
        if trade is None or _unacknowledged(trade):
            return None  # placed by this process but IB never confirmed it (FAILURES.md 9)
        return m.order_state(trade, self._legs.get(order_ref) or self._legs_of(trade))

    def _legs_of(self, trade) -> list[Leg] | None:
        """Legs of an order this process did not place (adopted after a restart)."""
        if trade.contract.secType == "OPT":
            spec = m.option_spec(trade.contract)
            return [Leg(spec, Action(trade.order.action))] if spec else None
        return None

    @_transient
    async def open_orders(self) -> list[OrderState]:
        if not self.connected:
            raise UnknownState("not connected: open orders unknown")
        async with self.throttle:
            trades = await asyncio.wait_for(self.ib.reqAllOpenOrdersAsync(), self.timeout)
        return [m.order_state(t, self._legs.get(t.order.orderRef) or self._legs_of(t)) for t in trades
                if not t.isDone()]

    async def fills(self, order_refs: Iterable[str] | None = None) -> list[Fill]:
        if not self.connected:
            raise UnknownState("not connected: executions unknown")
        refs = None if order_refs is None else set(order_refs)
        # an order's executions may trail its status and commission reports trail executions
        # (FAILURES.md 12): wait a little for them rather than book an incomplete fill (the
        # store keeps the first version of an execution)
        deadline = asyncio.get_running_loop().time() + FILLS_WAIT
        while True:
            chosen = [f for f in self.ib.fills() if refs is None or f.execution.orderRef in refs]
            waiting = []
            if refs is not None:  # the fills of given orders, to be booked (not a positions view)
                waiting = [f.execution.execId for f in chosen
                           if f.contract.secType != "BAG" and not f.commissionReport.execId]
                waiting += [ref for ref in refs if not self._executions_complete(ref)]
            if not waiting or asyncio.get_running_loop().time() > deadline or not self.connected:
                break
            await asyncio.sleep(0.02)
        if waiting and self.log:
            self.log.warning("broker.fills_incomplete", waiting=waiting[:8])
        out = []
        for f in chosen:
            fill = m.domain_fill(f)
            if fill is not None:
                out.append(fill)
        return out

    def _executions_complete(self, order_ref: str) -> bool:
        """Every leg of the order has executions for the quantity its status says is filled."""
        trade = self._trade(order_ref)
        if trade is None:
            return True
        filled = float(trade.orderStatus.filled or 0) or m._number(getattr(trade.order, "filledQuantity", 0))
        if not filled:
            return True
        legs = [(c.conId, c.ratio) for c in trade.contract.comboLegs] if trade.contract.secType == "BAG" \
            else [(trade.contract.conId, 1)]
        done: dict[int, float] = {}
        for f in self.ib.fills():
            if f.execution.permId == trade.order.permId and f.contract.secType != "BAG":
                done[f.contract.conId] = done.get(f.contract.conId, 0.0) + float(f.execution.shares)
        return all(done.get(con, 0.0) >= filled * ratio - 1e-9 for con, ratio in legs)

    async def positions(self) -> list[Position]:
        if not self.connected:
            raise UnknownState("not connected: positions unknown")
        out = []
        for p in self.ib.positions(self.account_id):
            pos = m.domain_position(p)
            if pos is not None:
                out.append(pos)
        return out

    async def account(self) -> AccountSummary:
        values = {(v.tag, v.currency): v.value for v in self.ib.accountValues(self.account_id)}

        def num(tag: str) -> Decimal:
            raw = values.get((tag, "USD")) or values.get((tag, "BASE")) or "0"
            try:
                return Decimal(raw)
            except ArithmeticError:
                return Decimal(0)

        return AccountSummary(self.account_id, self.account_id.startswith("D"), num("TotalCashValue"),
                              num("NetLiquidation"), num("MaintMarginReq"))
