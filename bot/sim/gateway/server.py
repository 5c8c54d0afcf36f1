"""`SimGateway`: a TWS API server over the simulated exchange, for unmodified IB clients.

Connections are served on 127.0.0.1 only. Each connection is a `Session`: handshake, then
one request at a time, answered synchronously (the exchange is an in-process SQLite file, so
every answer is immediate). A background task (`_pump`) advances the exchange to the clock
every `pump_interval` real seconds and pushes what changed: fills (execDetails per leg plus the
BAG-level line, commissionReport, orderStatus) to the client that placed the order, position
and account updates to subscribers, and streaming ticks (every `quote_interval`).

The behaviour follows the public TWS API documentation and the decoders of ib_async /
ib_insync, not a recorded gateway: status sequences, error texts and commission timing are
educated guesses, made configurable in `scenarios.Scenario`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from bot.domain import OptionSpec
from bot.log import get_logger
from bot.sim import equities, equity_account
from bot.sim.equities import instrument_from_key

from . import bars as barsmod
from . import mapping
from . import messages as msg
from .listing import NY, ExchangeListing, ny_text
from .mapping import Bag, Index, Instrument, MappingError
from .orders import HOLD_LINK, HOLD_SCENARIO, HOLD_TRANSMIT, Execution, GwOrder, OrderBook
from .protocol import (
    API_PREFIX,
    HEADER,
    MAX_FRAME,
    MAX_VERSION,
    MIN_VERSION,
    In,
    ProtocolError,
    Request,
    UnknownRequest,
    decode_body,
    frame,
    handshake_reply,
    negotiate_version,
    parse_hello,
    parse_request,
    request_id_of,
)
from .activity import parse_generic_ticks
from .quotes import DELAY, QuoteSource, TickSet
from .scenarios import Scenario
from .services import Services

log = get_logger("bot.sim.gateway")

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# tickPrice type -> its tickSize type (bid, ask, last and their delayed twins)
SIZE_OF_PRICE = {1: 0, 2: 3, 4: 5, 66: 69, 67: 70, 68: 71}
NO_SECURITY = "No security definition has been found for the request"
LINK_BROKEN = "Connectivity between Trader Workstation and server is broken. It will be restored automatically."
FARM_MESSAGES = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)


@dataclass(frozen=True)
class Limits:
    """What one local client may cost the gateway (and, embedded, the bot's own process).

    A legitimate request is a few kilobytes (a placeOrder with conditions stays under 4 KiB),
    so a frame of more than `max_frame` bytes is refused as soon as its length is read, before
    any of it is buffered; `max_buffered` bounds the bytes of frames being read on all
    connections together; `handshake_timeout` bounds the time from accept to startApi."""

    max_connections: int = 32  # IB's own cap on API clients per TWS/Gateway
    max_frame: int = 1 * 2**20
    max_buffered: int = 16 * 2**20
    handshake_timeout: float = 10.0
    max_hello: int = 4096


class LimitExceeded(ProtocolError):
    """A client went past one of the `Limits`: its session is closed."""


SAMPLED_SHOW = ("TRADES", "MIDPOINT", "BID", "ASK")


@dataclass
class BarSubscription:
    """One keepUpToDate line: the bar that holds now is sent as it forms."""

    inst: Instrument
    what: str
    size: timedelta | None
    format_date: int
    last: tuple | None = None


@dataclass
class Subscription:
    """One reqMktData line of a session."""

    inst: Instrument
    snapshot: bool
    last: TickSet | None = None
    generic: frozenset[int] = frozenset()  # generic tick ids asked for (100, 101, 104, 106)


class Session:
    """One client connection."""

    def __init__(self, gateway: SimGateway, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.gw = gateway
        self.reader = reader
        self.writer = writer
        self.version = 0
        self.client_id: int | None = None
        self.market_data_type = 1
        self.tickers: dict[int, Subscription] = {}
        self.positions_sub = False
        self.account_sub = False
        self.multi_subs: set[int] = set()
        self.positions_multi: set[int] = set()
        self.pnl_subs: dict[int, str | None] = {}  # reqPnL (None) / reqPnLSingle (option key)
        self.groups: set[int] = set()
        self.bar_subs: dict[int, BarSubscription] = {}  # reqHistoricalData with keepUpToDate
        self.closed = False

    # --- io ----------------------------------------------------------------------------------
    def send(self, fields: list) -> None:
        if not self.closed and not self.writer.is_closing():
            self.writer.write(frame(fields))

    def error(self, req_id: int, code: int, text: str) -> None:
        self.send(msg.error(req_id, code, text, self.version))

    async def _read_frame(self, limit: int | None = None) -> bytes:
        """One frame's body. The length is checked before a byte of the body is buffered, and
        the body's bytes are reserved from the gateway-wide budget while they are read."""
        (size,) = HEADER.unpack(await self.reader.readexactly(HEADER.size))
        limit = min(limit or self.gw.limits.max_frame, MAX_FRAME)
        if size > limit:
            raise LimitExceeded(f"a message of {size} bytes exceeds the gateway's limit of {limit}")
        if not self.gw.reserve(size):
            raise LimitExceeded(f"a message of {size} bytes exceeds what the gateway buffers for all clients")
        try:
            return await self.reader.readexactly(size)
        finally:
            self.gw.release(size)

    def close(self, abort: bool = False) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            if abort:
                self.writer.transport.abort()
            else:
                self.writer.close()

    async def run(self) -> None:
        try:
            started = await asyncio.wait_for(self._handshake(), self.gw.limits.handshake_timeout)
        except asyncio.TimeoutError:
            log.warning("gateway.handshake_timeout", seconds=self.gw.limits.handshake_timeout)
            if self.version:
                self.error(-1, 502, "Couldn't connect to TWS: no startApi within "
                                    f"{self.gw.limits.handshake_timeout:g} s of the handshake")
            return
        if not started:
            return
        await self._serve()

    async def _handshake(self) -> bool:
        """`API\0`, the version offer, our version and time, then requests until startApi."""
        if await self.reader.readexactly(len(API_PREFIX)) != API_PREFIX:
            return False
        hello = parse_hello(await self._read_frame(self.gw.limits.max_hello))
        version = negotiate_version(hello)
        if version is None:
            self._refuse_version(hello)
            return False
        self.version = version
        self.writer.write(handshake_reply(version, self.gw.clock.now(), NY))
        while self.client_id is None and not self.closed:
            request = self._next_request(decode_body(await self._read_frame()))
            if request is not None and request.msg_id == In.START_API:
                self.gw.handle(self, request)  # nothing else is served before startApi, as at IB
                await self.writer.drain()
        return not self.closed

    def _refuse_version(self, hello) -> None:
        """Tell the client why instead of closing in silence: the two-field reply carries the
        nearest version this gateway speaks (a client whose minimum is above it reports the
        mismatch itself), then error 506 "Unsupported version" names both ranges."""
        offered = f"{hello.min_version}..{hello.max_version}"
        log.warning("gateway.version_refused", offered=offered, supported=f"{MIN_VERSION}..{MAX_VERSION}")
        nearest = MAX_VERSION if hello.min_version > MAX_VERSION else MIN_VERSION
        self.writer.write(handshake_reply(nearest, self.gw.clock.now(), NY))
        self.writer.write(frame(msg.error(-1, 506, f"Unsupported version: this gateway speaks API versions "
                                                   f"{MIN_VERSION}..{MAX_VERSION}, the client offered {offered}",
                                          nearest)))

    async def _serve(self) -> None:
        while not self.closed:
            request = self._next_request(decode_body(await self._read_frame()))
            if request is None:
                continue
            self.gw.handle(self, request)
            await self.writer.drain()

    def _next_request(self, fields: list[str]) -> Request | None:
        """The request a frame carries; None (answered with IB's 320) when it is malformed."""
        try:
            return parse_request(fields, self.version)
        except ProtocolError as e:
            msg_id = fields[0][:12] if fields else ""
            log.info("gateway.request_malformed", client_id=self.client_id, msg_id=msg_id, reason=str(e)[:200])
            self.error(request_id_of(fields), 320, f"Error reading request. Message id {msg_id}. "
                                                   f"Unable to parse data. {str(e)[:200]}")
            return None


class SimGateway:
    """The simulated IB paper gateway over a `SimExchange`."""

    def __init__(self, exchange, clock, calendar, host: str = "127.0.0.1", port: int = 4002,
                 account: str | None = None, scenario: Scenario | None = None, *,
                 pump_interval: float = 0.05, quote_interval: float = 0.25, account_interval: float = 180.0,
                 limits: Limits | None = None):
        if host not in LOOPBACK:
            raise ValueError(f"the simulated gateway binds the loopback interface only, not {host!r}")
        self.exchange = exchange
        self.clock = clock
        self.calendar = calendar
        self.host = "127.0.0.1" if host == "localhost" else host
        self._port = port
        self.account = account or exchange.account_id
        self.scenario = scenario or Scenario()
        self.scenario.attach(self)
        self.listing = ExchangeListing(exchange, calendar, clock)
        self.quotes = QuoteSource(exchange, calendar, _dividend_yield())
        self.book: OrderBook | None = None
        self.pump_interval = pump_interval
        self.quote_interval = quote_interval
        self.account_interval = account_interval
        self.limits = limits or Limits()
        self._buffered = 0  # bytes reserved by frames being read, all connections together
        self._sessions: dict[int, Session] = {}  # live sessions by client id
        self._connections: dict[Session, asyncio.Task] = {}
        self._server: asyncio.AbstractServer | None = None
        self._pump_task: asyncio.Task | None = None
        self._delayed: list[tuple[float, int, int, list]] = []  # (due, seq, client id, fields)
        self._seq = itertools.count()
        self._positions: dict[str, tuple[int, Decimal]] = {}
        self._next_quotes = 0.0
        self._next_account = 0.0
        self._handler_table = None
        self.services = Services(self)
        self._next_pnl = 0.0
        self._started = False
        self._closed = False
        # instrumentation (bench/latency.py): probe("tick", (session, instrument, ticks), perf_counter())
        # right after a streamed tick line is written, probe("order", request, perf_counter()) as a
        # placeOrder is handled; None (the default) costs one attribute test
        self.probe = None

    # --- lifecycle -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._server is not None and self._server.sockets:
            return self._server.sockets[0].getsockname()[1]
        return self._port

    async def start(self) -> SimGateway:
        if self._started:
            return self
        self._started = True
        self.book = OrderBook(self.exchange, self.calendar)
        self._forget_untransmitted()
        self._positions = self._position_snapshot()
        self._server = await asyncio.start_server(self._on_connect, self.host, self._port)
        self._port = self.port  # the real port when asked for port 0
        self._pump_task = asyncio.create_task(self._pump(), name="sim-gateway-pump")
        log.info("gateway.started", host=self.host, port=self.port, account=self.account,
                 sim_time=self.clock.now().isoformat())
        return self

    async def close(self) -> None:
        """Stop serving, close every client connection cleanly; calling it again is harmless."""
        if self._closed or not self._started:
            self._closed = True
            return
        self._closed = True
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._pump_task, 2.0)
        if self._server is not None:
            self._server.close()
        for session in list(self._connections):
            session.close()
        tasks = [t for t in self._connections.values() if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        log.info("gateway.stopped", port=self.port)

    async def __aenter__(self) -> SimGateway:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _forget_untransmitted(self) -> None:
        """Orders a client kept with transmit=False live only in TWS: they vanish on its restart."""
        now = self.clock.now()
        for o in self.book.active():
            if o.hold == HOLD_TRANSMIT:
                self.book.cancel(o, now, "not transmitted; gateway restarted")

    def reserve(self, size: int) -> bool:
        """Take `size` bytes of the gateway-wide read budget; False when it is spent."""
        if self._buffered + size > self.limits.max_buffered:
            return False
        self._buffered += size
        return True

    def release(self, size: int) -> None:
        self._buffered -= size

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(self, reader, writer)
        if len(self._connections) >= self.limits.max_connections:
            log.warning("gateway.connection_refused", connections=len(self._connections),
                        limit=self.limits.max_connections)
            session.close(abort=True)
            return
        self._connections[session] = asyncio.current_task()
        try:
            await session.run()
        except LimitExceeded as e:
            log.warning("gateway.client_over_limit", client_id=session.client_id, reason=str(e))
            if session.version:
                session.error(-1, 320, f"Error reading request. {e}; the connection is closed")
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(session.writer.drain(), 1.0)
        except (asyncio.IncompleteReadError, ConnectionError, ProtocolError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:  # noqa: BLE001 - one bad client must not stop the gateway
            log.exception("gateway.session_failed", client_id=session.client_id)
        finally:
            self._connections.pop(session, None)
            if session.client_id is not None and self._sessions.get(session.client_id) is session:
                del self._sessions[session.client_id]
                log.info("gateway.client_disconnected", client_id=session.client_id)
            session.close()

    # --- scenario hooks ------------------------------------------------------------------------------
    def drop_client(self, client_id: int) -> bool:
        session = self._sessions.pop(client_id, None)
        if session is None:
            return False
        log.info("gateway.client_dropped", client_id=client_id)
        session.close(abort=True)
        return True

    def send_error(self, code: int, text: str, req_id: int = -1, client_id: int | None = None) -> None:
        for cid, session in list(self._sessions.items()):
            if client_id is None or cid == client_id:
                session.error(req_id, code, text)

    def drop_subscriptions(self) -> None:
        for session in self._sessions.values():
            session.tickers.clear()

    def release_held(self, hold: str = HOLD_SCENARIO) -> None:
        """Send what a scenario held back (`hold_fills`, or orders placed during an 1100)."""
        now = self.clock.now()
        for o in self.book.active():
            if o.hold == hold:
                o.hold = ""
                o.release_at = now
                self.book.save(o)

    # --- dispatch ----------------------------------------------------------------------------------
    def handle(self, s: Session, r: Request) -> None:
        if self._handler_table is None:
            self._handler_table = self._handlers()
        handler = self._handler_table.get(r.msg_id)
        if handler is None:
            if isinstance(r, UnknownRequest):  # no client sends it: IB's "unknown message id"
                log.info("gateway.request_unknown", msg_id=r.msg_id, client_id=s.client_id)
                s.error(-1, 320, f"Error reading request. Message id {r.msg_id}. Unknown message id")
            return
        try:
            handler(s, r)
        except ProtocolError as e:  # a generic request's fields, read by its service
            s.error(getattr(r, "req_id", -1), 320, f"Error reading request. Message id {r.msg_id}. "
                                                   f"Unable to parse data. {str(e)[:200]}")
        except MappingError as e:
            s.error(getattr(r, "req_id", getattr(r, "order_id", -1)), e.code, e.message)
        except Exception as e:  # noqa: BLE001 - answer, log, keep serving
            log.exception("gateway.request_failed", msg_id=r.msg_id, client_id=s.client_id)
            s.error(getattr(r, "req_id", getattr(r, "order_id", -1)), 321, f"Error validating request: {e}")

    def _handlers(self):
        return {**self.services.handlers(), **self._own_handlers()}

    def _own_handlers(self):
        return {
            In.START_API: self._start_api,
            In.REQ_IDS: lambda s, r: s.send(msg.next_valid_id(self.book.next_order_id())),
            In.REQ_CURRENT_TIME: lambda s, r: s.send(msg.current_time(int(self.clock.now().timestamp()))),
            In.REQ_MANAGED_ACCTS: lambda s, r: s.send(msg.managed_accounts([self.account])),
            In.REQ_CONTRACT_DATA: self._contract_details,
            In.REQ_SEC_DEF_OPT_PARAMS: self._sec_def_opt_params,
            In.REQ_MKT_DATA: self._req_mkt_data,
            In.CANCEL_MKT_DATA: lambda s, r: s.tickers.pop(r.req_id, None),
            In.REQ_MARKET_DATA_TYPE: self._req_market_data_type,
            In.REQ_HISTORICAL_DATA: self._historical_data,
            In.CANCEL_HISTORICAL_DATA: lambda s, r: s.bar_subs.pop(r.req_id, None),
            In.PLACE_ORDER: self._place_order,
            In.CANCEL_ORDER: self._cancel_order,
            In.REQ_GLOBAL_CANCEL: self._global_cancel,
            In.REQ_OPEN_ORDERS: lambda s, r: self._open_orders(s, s.client_id),
            In.REQ_ALL_OPEN_ORDERS: lambda s, r: self._open_orders(s, None),
            In.REQ_AUTO_OPEN_ORDERS: lambda s, r: None,
            In.REQ_COMPLETED_ORDERS: self._completed_orders,
            In.REQ_EXECUTIONS: self._executions,
            In.REQ_POSITIONS: self._positions_request,
            In.CANCEL_POSITIONS: lambda s, r: setattr(s, "positions_sub", False),
            In.REQ_ACCT_DATA: self._account_updates,
            In.REQ_ACCOUNT_UPDATES_MULTI: self._account_updates_multi,
            In.CANCEL_ACCOUNT_UPDATES_MULTI: lambda s, r: s.multi_subs.discard(r.req_id),
            In.REQ_ACCOUNT_SUMMARY: self._account_summary,
            In.CANCEL_ACCOUNT_SUMMARY: lambda s, r: None,
        }

    def _start_api(self, s: Session, r) -> None:
        if s.client_id is not None:
            return
        stale = self._sessions.get(r.client_id)
        if stale is not None and (stale.reader.at_eof() or stale.writer.is_closing()):
            self._sessions.pop(r.client_id)  # it hung up; its EOF just was not processed yet
        if r.client_id in self._sessions:
            # as IB: refuse and close; the client times out waiting for nextValidId
            s.error(-1, 326, "Unable to connect as the client id is already in use. Retry with a unique client id.")
            log.warning("gateway.client_id_in_use", client_id=r.client_id)
            s.close()
            return
        s.client_id = r.client_id
        self._sessions[r.client_id] = s
        log.info("gateway.client_connected", client_id=r.client_id, version=s.version)
        s.send(msg.managed_accounts([self.account]))
        s.send(msg.next_valid_id(self.book.next_order_id()))
        if self.scenario.link_down:
            # as TWS does for a client that connects while its own link to IB is down: the
            # client is told at once, and hears 1101/1102 with everyone else when it is back
            s.error(-1, 2110, LINK_BROKEN)
            return
        for code, text in FARM_MESSAGES:
            s.error(-1, code, text)

    # --- contracts ----------------------------------------------------------------------------------
    def _resolve_one(self, s: Session, req_id: int, contract) -> Instrument | None:
        """The single instrument a request names; answers error 200 and returns None if none
        (or several) match."""
        if contract.sec_type.upper() == "BAG":
            found = mapping.resolve_bag(contract, self.listing)
            if found is None:
                s.error(req_id, 200, NO_SECURITY)
            return found
        found = mapping.resolve(contract, self.listing)
        if len(found) == 1:
            return found[0]
        if not found:
            s.error(req_id, 200, NO_SECURITY)
        else:
            s.error(req_id, 200, f"The contract description specified for {contract.symbol} is ambiguous.")
        return None

    def _contract_details(self, s: Session, r) -> None:
        found = mapping.resolve(r.contract, self.listing)
        if not found:
            s.error(r.req_id, 200, NO_SECURITY)
            return
        exchange = r.contract.exchange.upper() or None
        for inst in found:
            fields = mapping.contract_fields(inst, exchange if exchange in self._exchanges(inst) else None)
            s.send(msg.contract_data(r.req_id, fields, self.listing.details(inst), s.version))
        s.send(msg.contract_data_end(r.req_id))

    @staticmethod
    def _exchanges(inst: Instrument) -> tuple[str, ...]:
        if isinstance(inst, Index):
            return ("CBOE",)
        if isinstance(inst, mapping.Future):
            return ("CFE",)
        if isinstance(inst, mapping.Stock):
            return mapping.STOCK_EXCHANGES
        return mapping.EXCHANGES_OPT

    def _sec_def_opt_params(self, s: Session, r) -> None:
        symbol = r.underlying_symbol.upper()
        under = mapping.INDEX_CON_IDS.get(symbol) or mapping.STOCK_CON_IDS.get(symbol)
        if under is not None and r.underlying_con_id in (0, under):
            for tclass, multiplier, expirations, strikes in self.listing.option_chains(symbol):
                for exchange in mapping.EXCHANGES_OPT:
                    s.send(msg.sec_def_opt_params(r.req_id, exchange, under, tclass, multiplier, expirations, strikes))
        s.send(msg.sec_def_opt_params_end(r.req_id))

    # --- market data ------------------------------------------------------------------------------
    def _req_market_data_type(self, s: Session, r) -> None:
        if r.value in (1, 2, 3, 4):
            s.market_data_type = r.value

    def _shown_data_type(self, s: Session, now: datetime) -> int:
        """Frozen types (2, 4) only differ from live/delayed when the market is closed."""
        requested = s.market_data_type
        if requested in (2, 4) and self.calendar.is_open(now):
            return requested - 1
        return requested

    def _req_mkt_data(self, s: Session, r) -> None:
        inst = self._resolve_one(s, r.req_id, r.contract)
        if inst is None:
            return
        now = self.clock.now()
        sub = Subscription(inst, r.snapshot or r.regulatory_snapshot, generic=parse_generic_ticks(r.generic_ticks))
        data_type = self._shown_data_type(s, now)
        s.send(msg.market_data_type(r.req_id, data_type))
        if not sub.snapshot:
            s.tickers[r.req_id] = sub
        if self.scenario.ticks_paused or self.scenario.link_down:
            if sub.snapshot:
                s.send(msg.tick_snapshot_end(r.req_id))
            return
        delayed = data_type in (3, 4)
        ticks = self.quotes.ticks(inst, now - DELAY if delayed else now, generic=sub.generic)
        if ticks is not None:
            self._send_ticks(s, r.req_id, ticks.delayed() if delayed else ticks)
            sub.last = ticks
        if sub.snapshot:
            s.send(msg.tick_snapshot_end(r.req_id))  # mandatory: reqTickers waits for it

    def _send_ticks(self, s: Session, req_id: int, ticks: TickSet) -> None:
        for tick_type, (price, size) in ticks.prices.items():
            s.send(msg.tick_price(req_id, tick_type, price, size))
            size_type = SIZE_OF_PRICE.get(tick_type)
            if size_type is not None and size:
                s.send(msg.tick_size(req_id, size_type, size))  # IB follows a price with its size
        for tick_type, values in ticks.computations.items():
            s.send(msg.tick_option_computation(req_id, tick_type, *values))
        for tick_type, size in ticks.sizes.items():
            s.send(msg.tick_size(req_id, tick_type, size))
        for tick_type, value in ticks.generics.items():
            s.send(msg.tick_generic(req_id, tick_type, value))

    def _push_ticks(self, now: datetime) -> None:
        """Send every streaming line what changed, pricing all options of all lines at once."""
        if self.scenario.ticks_paused or self.scenario.link_down:
            return
        for delayed in (False, True):
            t = now - DELAY if delayed else now
            lines = [(s, rid, sub) for s in self._sessions.values() for rid, sub in s.tickers.items()
                     if (self._shown_data_type(s, now) in (3, 4)) == delayed]
            if not lines:
                continue
            options = {leg.option.key: leg.option for _, _, sub in lines for leg in _legs_of(sub.inst)}
            quotes = self.quotes.option_quotes(list(options.values()), t)
            for s, rid, sub in lines:
                ticks = self.quotes.ticks(sub.inst, t, quotes, sub.generic)
                if ticks is None:
                    continue
                change = ticks.changes_since(sub.last)
                sub.last = ticks
                if not change.empty():
                    self._send_ticks(s, rid, change.delayed() if delayed else change)
                    if self.probe is not None:
                        self.probe("tick", (s, sub.inst, change), time.perf_counter())

    def _historical_data(self, s: Session, r) -> None:
        inst = self._resolve_one(s, r.req_id, r.contract)
        if inst is None:
            return
        what = r.what_to_show.upper() or "TRADES"
        if isinstance(inst, Bag) or (not isinstance(inst, Index) and what not in SAMPLED_SHOW):
            s.error(r.req_id, 162, "Historical Market Data Service error message:No historical data query found "
                                   f"(the simulator serves {'/'.join(SAMPLED_SHOW)} bars of indexes, options and "
                                   "VX futures, not of combos)")
            return
        if r.keep_up_to_date and r.end.strip():
            s.error(r.req_id, 321, "Error validating request.-'bS' : cause - End date not supported with live "
                                   "updates")
            return
        now = self.clock.now()
        try:
            size = barsmod.parse_bar_size(r.bar_size)
            start, end, bars = self._bars(inst, what, r.end, r.duration, r.bar_size, now)
        except barsmod.HistoryError as e:
            s.error(r.req_id, 162, str(e))
            return
        rows = barsmod.bar_rows(bars, size is None, r.format_date)
        s.send(msg.historical_data(r.req_id, barsmod.header_time(start), barsmod.header_time(end), rows))
        if r.keep_up_to_date:
            s.bar_subs[r.req_id] = BarSubscription(inst, what, size, r.format_date)

    def _bars(self, inst: Instrument, what: str, end_text: str, duration: str, bar_size: str, now: datetime):
        if isinstance(inst, Index):
            start, end, bars, _ = barsmod.bars_for(self.exchange.market, self.calendar, inst.symbol, end_text,
                                                   duration, bar_size, now)
            return start, end, bars
        size = barsmod.parse_bar_size(bar_size)
        end = barsmod.parse_end(end_text, now)
        start = barsmod.parse_duration(duration, end, self.calendar)
        first = getattr(self.exchange.market, "first_session", None)
        last = inst.expiry if isinstance(inst, (OptionSpec, mapping.Future)) else None
        return start, end, barsmod.sampled_bars(self._value_at(inst, what), self.calendar, start, end, size,
                                                first, last)

    def _value_at(self, inst: Instrument, what: str):
        """The model price of an option (mid, bid or ask) or a VX future at t; None when it has none."""
        def option(t: datetime) -> float | None:
            q = self.exchange.price_options([inst], t).get(inst.key)
            if q is None:
                return None
            return float(q.bid if what == "BID" else q.ask if what == "ASK" else q.mid)

        def future(t: datetime) -> float | None:
            return dict(self.exchange.market.state_at(t).vx).get(inst.expiry)

        def stock(t: datetime) -> float | None:
            return equities.price_at(self.exchange.market, inst.symbol, t)

        if isinstance(inst, mapping.Stock):
            return stock
        return option if isinstance(inst, OptionSpec) else future

    def _push_bars(self, now: datetime) -> None:
        """keepUpToDate: the bar that holds now, as historicalDataUpdate, when it changed."""
        for s in list(self._sessions.values()):
            for req_id, sub in list(s.bar_subs.items()):
                b0 = barsmod.bar_start(self.calendar, now, sub.size)
                if b0 is None:
                    continue
                try:
                    if isinstance(sub.inst, Index):
                        bars = (barsmod.daily_bars(self.exchange.market, self.calendar, sub.inst.symbol, b0, now)
                                if sub.size is None else
                                barsmod.intraday_bars(self.exchange.market, self.calendar, sub.inst.symbol, b0, now,
                                                      sub.size))
                    else:
                        bars = barsmod.sampled_bars(self._value_at(sub.inst, sub.what), self.calendar, b0, now,
                                                    sub.size)
                except (barsmod.HistoryError, ValueError):
                    continue
                if not bars:
                    continue
                [row] = barsmod.bar_rows(bars[-1:], sub.size is None, sub.format_date)
                if row == sub.last:
                    continue
                sub.last = row
                label, o, h, low, c, volume, wap, count = row
                s.send(msg.historical_data_update(req_id, -1, label, o, c, h, low, wap, volume))

    # --- orders ------------------------------------------------------------------------------------
    def _advance(self, now: datetime) -> None:
        if not self.scenario.fills_held:
            self.exchange.advance_to(now)

    def _place_order(self, s: Session, r) -> None:
        if self.probe is not None:
            self.probe("order", r, time.perf_counter())
        now = self.clock.now()
        self._advance(now)
        if r.order.what_if:
            self._what_if(s, r, now)
            return
        existing = self.book.find(s.client_id, r.order_id)
        if existing is not None and existing.active:
            self._modify(s, existing, r, now)
            return
        if existing is not None and existing.status == "filled":  # a modify that lost to the fill
            s.error(r.order_id, 104, "Can't modify a filled order")
            return
        if existing is not None:
            s.error(r.order_id, 103, "Duplicate order id")
            return
        rejection = self.scenario.take_rejection()
        if rejection is not None:
            s.error(r.order_id, rejection.code, rejection.message)
            log.info("gateway.order_rejected", client_id=s.client_id, order_id=r.order_id, code=rejection.code)
            return
        inst = self._resolve_one(s, r.order_id, r.contract)
        if inst is None:
            return
        o = self.book.create(s.client_id, r.order_id, r.contract, inst, r.order, now)
        if not self._first_transmission(s, o, now):
            return
        log.info("gateway.order_placed", client_id=s.client_id, order_id=o.order_id, perm_id=o.perm_id,
                 order_ref=o.order_ref, status=o.status)
        self._acknowledge(s, o)
        self._sync_order(o, now)
        if o.active and o.order.tif.upper() == "IOC":
            self.book.cancel(o, now, "immediate or cancel")
            self._send_status(o)

    def _first_transmission(self, s: Session, o: GwOrder, now: datetime) -> bool:
        """Send a new order to the exchange as the scenario says; False (error sent) when the
        exchange refuses it."""
        partial = self.scenario.take_partial()
        if not o.order.transmit:
            o.hold = HOLD_TRANSMIT
        elif self.scenario.link_down:
            o.hold = HOLD_LINK  # TWS accepts it locally; IB gets it when the link is back
        elif self.scenario.fills_held:
            o.hold = HOLD_SCENARIO
        elif self.scenario.fill_delay_s > 0:
            o.release_at = now + timedelta(seconds=self.scenario.fill_delay_s)
        if o.hold or o.release_at is not None:
            self.book.save(o)
            return True
        quantity = min(partial.quantity, o.quantity) if partial else o.quantity
        try:
            sent = self.book.transmit(o, now, quantity)
        except (MappingError, _exchange_reject()) as e:
            code, text = _error_of(e)
            s.error(o.order_id, code, text)
            log.info("gateway.order_rejected", client_id=s.client_id, order_id=o.order_id, code=code, reason=text)
            return False
        if not sent:  # market closed: it waits for the open, as IB keeps it PreSubmitted
            s.error(o.order_id, 399, f"Order Message:\nWarning: your order will not be placed at the exchange until "
                                     f"{ny_text(o.release_at)}")
        elif partial and o.untransmitted:
            if partial.rest_after is None:
                o.hold = HOLD_SCENARIO
            else:
                o.release_at = now + timedelta(seconds=partial.rest_after)
            self.book.save(o)
        return True

    def _acknowledge(self, s: Session, o: GwOrder) -> None:
        statuses = list(self.scenario.status_sequence) or [o.ib_status()]
        if o.status == "pending":
            statuses = [x for x in statuses if x != "Submitted"] or ["PreSubmitted"]
        s.send(self._open_order_msg(o, s.version, statuses[0]))
        for status in statuses:
            s.send(self._status_msg(o, status))

    def _modify(self, s: Session, o: GwOrder, r, now: datetime) -> None:
        try:
            self.book.modify(o, r.order, now)
        except (MappingError, _exchange_reject()) as e:
            code, text = _error_of(e)
            s.error(o.order_id, code, text)
            return
        if o.hold == HOLD_TRANSMIT and r.order.transmit:
            o.hold = ""
            o.release_at = now
            self.book.save(o)
            self._transmit_due(o, now)
        s.send(self._open_order_msg(o, s.version))
        s.send(self._status_msg(o))
        self._sync_order(o, now)

    def _what_if(self, s: Session, r, now: datetime) -> None:
        """Margin before and after the order, no order placed: openOrder with whatIf=1."""
        inst = self._resolve_one(s, r.order_id, r.contract)
        if inst is None:
            return
        ex = mapping.to_exchange_order(inst, r.order)
        extra: dict[str, int] = {}
        for leg in ex.legs:
            extra[leg.option.key] = extra.get(leg.option.key, 0) + leg.signed_ratio * ex.quantity
        positions, marks, unders = self.services.book(now)
        marks.update({k: float(q.mid) for k, q in self.exchange.price_options(
            [instrument_from_key(k) for k in extra if k not in marks], now).items()})
        before = self.services.ib_margin(positions, marks, unders)
        margin_after = self.services.ib_margin(positions, marks, unders, extra)
        maint_before = self.services.ib_margin(positions, marks, unders, maintenance=True)
        maint_after = self.services.ib_margin(positions, marks, unders, extra, maintenance=True)
        equity = float(self.exchange.account(now).net_liquidation)
        if isinstance(inst, mapping.Stock):
            price = Decimal(str(marks.get(inst.key, 0.0)))
            commission = float(equity_account.stock_commission(ex.quantity, price,
                                                               tiered=self.exchange.settings.commissions == "ib"))
        else:
            commission = float(self.exchange.settings.commission_per_contract) * ex.quantity * sum(
                leg.ratio for leg in ex.legs)
        margins = msg.WhatIfMargins(before, maint_before, equity, margin_after - before, maint_after - maint_before,
                                    -commission, margin_after, maint_after, equity - commission, commission)
        view = msg.OrderView(r.order_id, s.client_id, 0, r.order.action, r.order.total_quantity,
                             r.order.order_type, r.order.lmt_price, r.order.aux_price, r.order.tif,
                             r.order.account or self.account, r.order.order_ref)
        state = msg.OrderStateView("PreSubmitted", margins, "", *self._legs_view(inst, r.contract))
        s.send(msg.open_order(view, mapping.contract_fields(inst), state, s.version, what_if=True))

    def _cancel_order(self, s: Session, r) -> None:
        o = self.book.find(s.client_id, r.order_id)
        now = self.clock.now()
        if o is None:
            s.error(r.order_id, 10147, f"OrderId {r.order_id} that needs to be cancelled is not found.")
            return
        if o.active:
            self._advance(now)
            self._sync_order(o, now)  # a fill that beat the cancel is reported first
        if o.active and self.scenario.take_fill_on_cancel():
            self.book.force_fill(o, now)
            self._sync_order(o, now)
        if not o.active:
            s.error(r.order_id, 10148, f"OrderId {r.order_id} that needs to be cancelled cannot be cancelled, "
                                       f"state: {o.ib_status()}.")
            return
        self.book.cancel(o, now)
        self._sync_order(o, now, force_status=True)
        if self.scenario.cancel_error_202:
            s.error(r.order_id, 202, "Order Canceled - reason:")
        log.info("gateway.order_cancelled", client_id=s.client_id, order_id=o.order_id, order_ref=o.order_ref)

    def _global_cancel(self, s: Session, r) -> None:
        """Cancel every working order of the account, whoever placed it (at the exchange too)."""
        now = self.clock.now()
        self._advance(now)
        for o in self.book.active():
            self._sync_order(o, now)
            if o.active:
                self.book.cancel(o, now, "global cancel")
                self._sync_order(o, now, force_status=True)
                owner = self._sessions.get(o.client_id)
                if owner is not None and self.scenario.cancel_error_202 and not self.scenario.link_down:
                    owner.error(o.order_id, 202, "Order Canceled - reason:")
        self.exchange.cancel_all(now)
        log.info("gateway.global_cancel", client_id=s.client_id)

    def _open_orders(self, s: Session, client_id: int | None) -> None:
        for o in self.book.open_orders(client_id):
            s.send(self._open_order_msg(o, s.version))
            s.send(self._status_msg(o))
        s.send(msg.open_order_end())

    def _completed_orders(self, s: Session, r) -> None:
        since = self.book.day_start(self.clock.now(), self.scenario.execution_days)
        for o in self.book.completed(since):
            view, contract, state = self._order_parts(o, o.ib_status())
            reason = "Filled" if o.status == "filled" else f"Cancelled: {o.reason}".strip()
            s.send(msg.completed_order(view, contract, state, float(o.filled), ny_text(o.updated), reason, s.version))
        s.send(msg.completed_orders_end())

    def _executions(self, s: Session, r) -> None:
        now = self.clock.now()
        since = self.book.day_start(now, self.scenario.execution_days)
        if r.time:
            with contextlib.suppress(barsmod.HistoryError):
                since = max(since, barsmod.parse_end(r.time, now))
        for e in self.book.executions(since):
            if not self._execution_matches(e, r):
                continue
            if e.is_bag and not self.scenario.report_bag_execution:
                continue
            s.send(self._exec_msg(r.req_id, e, s.version))
            if e.commission is not None:
                s.send(msg.commission_report(e.exec_id, e.commission))
        s.send(msg.exec_details_end(r.req_id))

    def _execution_matches(self, e: Execution, r) -> bool:
        contract = mapping.contract_fields(e.inst)
        return ((not r.client_id or e.client_id == r.client_id)
                and (not r.account or r.account == self.account)
                and (not r.symbol or r.symbol.upper() == contract.symbol)
                and (not r.sec_type or r.sec_type.upper() == contract.sec_type)
                and (not r.side or r.side.upper() in (mapping.side_text(e.quantity), "BUY" if e.quantity > 0 else "SELL")))

    # --- order messages ------------------------------------------------------------------------------
    def _legs_view(self, inst: Instrument, contract) -> tuple[tuple[msg.ComboLegView, ...], str]:
        if not isinstance(inst, Bag):
            return (), ""
        exchanges = [leg.exchange for leg in contract.combo_legs] if contract is not None else []
        legs = tuple(
            msg.ComboLegView(mapping.encode_con_id(leg.option), leg.ratio, leg.action.value,
                             (exchanges[i] if i < len(exchanges) and exchanges[i] else "SMART"))
            for i, leg in enumerate(inst.legs)
        )
        return legs, mapping.combo_legs_description(inst)

    def _order_parts(self, o: GwOrder, status: str):
        w = o.order
        view = msg.OrderView(
            o.order_id, o.client_id, o.perm_id, w.action, w.total_quantity, w.order_type, w.lmt_price,
            w.aux_price, w.tif, w.account or self.account, o.order_ref, w.outside_rth, w.oca_group,
            w.open_close, w.origin, w.parent_id, w.good_after_time, w.good_till_date, w.model_code, w.transmit,
        )
        exchange = o.contract.exchange.upper() or None
        contract = mapping.contract_fields(o.inst, exchange if exchange in self._exchanges(o.inst) else None)
        legs, description = self._legs_view(o.inst, o.contract)
        return view, contract, msg.OrderStateView(status, None, "", legs, description)

    def _open_order_msg(self, o: GwOrder, version: int, status: str | None = None) -> list:
        view, contract, state = self._order_parts(o, status or o.ib_status())
        return msg.open_order(view, contract, state, version)

    def _status_msg(self, o: GwOrder, status: str | None = None) -> list:
        return msg.order_status(o.order_id, status or o.ib_status(), float(o.filled), float(o.remaining),
                                o.avg_price, o.perm_id, o.order.parent_id, o.last_fill_price, o.client_id)

    def _exec_msg(self, req_id: int, e: Execution, version: int) -> list:
        venue = _execution_venue(e)
        contract = mapping.contract_fields(e.inst, "SMART" if e.is_bag else venue)
        view = msg.ExecutionView(
            e.exec_id, ny_text(e.time), self.account, venue, mapping.side_text(e.quantity), float(abs(e.quantity)),
            e.price, e.perm_id, e.client_id, e.order_id, e.cum_qty, e.avg_price, e.order_ref,
        )
        return msg.exec_details(req_id, contract, view, version)

    def _send_status(self, o: GwOrder) -> None:
        owner = self._sessions.get(o.client_id)
        if owner is not None and not self.scenario.link_down:
            owner.send(self._status_msg(o))

    def _sync_order(self, o: GwOrder, now: datetime, force_status: bool = False) -> None:
        """Bring one order up to the exchange and tell its owner what changed: executions
        (legs, then the BAG line), orderStatus, openOrder when filled, commission reports."""
        changed, executions = self.book.refresh(o, now)
        if changed or executions or force_status:
            self._report_order(o, executions)
        if executions:
            self._push_position_changes(now)  # after the executions, as IB orders them

    def _report_order(self, o: GwOrder, executions: list[Execution]) -> None:
        owner = self._sessions.get(o.client_id)
        if owner is None or self.scenario.link_down:
            return  # IB does not replay these: the client asks for executions when it returns
        stagger = self.scenario.leg_stagger_s
        delay = 0.0
        for e in executions:
            if e.is_bag and not self.scenario.report_bag_execution:
                continue
            self._send_later(owner, delay, self._exec_msg(-1, e, owner.version))
            if e.commission is not None:
                self._send_later(owner, delay + self.scenario.commission_delay_s, msg.commission_report(e.exec_id, e.commission))
            delay += stagger
        self._send_later(owner, delay, self._status_msg(o))
        if o.status == "filled":
            self._send_later(owner, delay, self._open_order_msg(o, owner.version))

    def _send_later(self, s: Session, delay: float, fields: list) -> None:
        if delay <= 0:
            s.send(fields)
        else:
            heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._seq), s.client_id, fields))

    def _flush_delayed(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, client_id, fields = heapq.heappop(self._delayed)
            session = self._sessions.get(client_id)
            if session is not None:
                session.send(fields)

    def _transmit_due(self, o: GwOrder, now: datetime) -> None:
        """Send a waiting order (or its next slice) to the exchange and tell its owner."""
        try:
            sent = self.book.transmit(o, now)
        except (MappingError, _exchange_reject()) as e:
            code, text = _error_of(e)
            owner = self._sessions.get(o.client_id)
            if owner is not None and not self.scenario.link_down:
                owner.error(o.order_id, code, text)
            self._sync_order(o, now, force_status=True)
            return
        if sent:
            self._sync_order(o, now, force_status=True)  # PreSubmitted -> Submitted (or a fill)

    # --- positions and account -----------------------------------------------------------------------
    def _position_snapshot(self) -> dict[str, tuple[int, Decimal]]:
        return {p.option.key: (p.quantity, p.avg_cost) for p in self.exchange.positions()}

    def _position_msg(self, key: str, qty: int, avg: Decimal) -> list:
        spec = instrument_from_key(key)
        return msg.position(self.account, mapping.contract_fields(spec), float(qty), float(avg) * spec.multiplier)

    def _positions_request(self, s: Session, r) -> None:
        s.positions_sub = True
        for key, (qty, avg) in self._position_snapshot().items():
            s.send(self._position_msg(key, qty, avg))
        s.send(msg.position_end())

    def _push_position_changes(self, now: datetime) -> None:
        current = self._position_snapshot()
        if current == self._positions:
            return
        changed = {k for k in set(current) | set(self._positions) if current.get(k) != self._positions.get(k)}
        self._positions = current
        if self.scenario.link_down:
            return
        for s in self._sessions.values():
            for key in sorted(changed):
                qty, avg = current.get(key, (0, Decimal(0)))
                if s.positions_sub:
                    s.send(self._position_msg(key, qty, avg))
                for req_id in s.positions_multi:
                    s.send(self.services.position_multi_msg(req_id, key, qty, avg))
        self._push_account(now, keys=changed)

    def _account_values(self, now: datetime) -> list[tuple[str, str, str]]:
        return self.services.account_values(now)

    def _portfolio_msgs(self, now: datetime, keys: set[str] | None = None) -> list[list]:
        positions = self.exchange.positions()
        current = {p.option.key for p in positions}
        quotes = self.exchange.price_options([p.option for p in positions], now)
        out = []
        for p in positions:
            if keys is not None and p.option.key not in keys:
                continue
            q = quotes.get(p.option.key)
            mark = float(q.mid) if q else 0.0
            mult = p.option.multiplier
            avg = float(p.avg_cost) * mult
            value = mark * mult * p.quantity
            out.append(msg.portfolio_value(mapping.contract_fields(p.option), float(p.quantity), mark, value, avg,
                                           value - avg * p.quantity, 0.0, self.account))
        for key in sorted((keys or set()) - current):  # closed or settled: a zero line removes it
            out.append(msg.portfolio_value(mapping.contract_fields(instrument_from_key(key)), 0.0, 0.0, 0.0, 0.0,
                                           0.0, 0.0, self.account))
        return out

    def _send_account(self, s: Session, now: datetime, keys: set[str] | None = None) -> None:
        for key, value, currency in self._account_values(now):
            s.send(msg.account_value(key, value, currency, self.account))
        for fields in self._portfolio_msgs(now, keys):
            s.send(fields)
        s.send(msg.account_time(now.astimezone(NY).strftime("%H:%M")))

    def _push_account(self, now: datetime, keys: set[str] | None = None) -> None:
        if self.scenario.link_down:
            return
        for s in self._sessions.values():
            if s.account_sub:
                self._send_account(s, now, keys)
            for req_id in s.multi_subs:
                for key, value, currency in self._account_values(now):
                    s.send(msg.account_update_multi(req_id, self.account, "", key, value, currency))

    def _account_updates(self, s: Session, r) -> None:
        s.account_sub = r.subscribe
        if not r.subscribe:
            return
        now = self.clock.now()
        self._send_account(s, now)
        s.send(msg.account_download_end(self.account))

    def _account_updates_multi(self, s: Session, r) -> None:
        s.multi_subs.add(r.req_id)
        for key, value, currency in self._account_values(self.clock.now()):
            s.send(msg.account_update_multi(r.req_id, self.account, r.model_code, key, value, currency))
        s.send(msg.account_update_multi_end(r.req_id))

    def _account_summary(self, s: Session, r) -> None:
        tags = {t.strip() for t in r.tags.split(",") if t.strip()}
        for key, value, currency in self._account_values(self.clock.now()):
            if currency == "BASE" or key in ("AccountCode", "Currency", "AccountReady"):
                continue
            if "All" in tags or key in tags or (tags & {"$LEDGER", "$LEDGER:ALL", "$LEDGER:USD"}):
                s.send(msg.account_summary(r.req_id, self.account, key, value, currency))
        s.send(msg.account_summary_end(r.req_id))

    # --- the background pump -------------------------------------------------------------------------
    async def _pump(self) -> None:
        while True:
            try:
                self._tick()
                for s in list(self._sessions.values()):
                    if s.writer.transport is not None and s.writer.transport.get_write_buffer_size() > 4 * 2**20:
                        log.warning("gateway.client_not_reading", client_id=s.client_id)
                        self.drop_client(s.client_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the pump must survive a bad cycle
                log.exception("gateway.pump_failed")
            await asyncio.sleep(self.pump_interval)

    def _tick(self) -> None:
        now = self.clock.now()
        self._advance(now)
        for o in self.book.expired_day_orders(now):
            self.book.cancel(o, now, "day order expired")
            self._sync_order(o, now, force_status=True)
        for o in self.book.due(now):
            self._transmit_due(o, now)
        for o in self.book.active():
            try:
                self._sync_order(o, now)
            except Exception:  # noqa: BLE001 - one broken order must not stall the others
                log.exception("gateway.order_sync_failed", perm_id=o.perm_id, order_ref=o.order_ref)
        self._push_position_changes(now)
        mono = time.monotonic()
        if mono >= self._next_quotes:
            self._next_quotes = mono + self.quote_interval
            self._push_ticks(now)
        if mono >= self._next_pnl:  # IB streams P&L about once a second, bar updates every few
            self._next_pnl = mono + 1.0
            if not self.scenario.link_down and not self.scenario.ticks_paused:
                self._push_bars(now)
            for s in list(self._sessions.values()):
                if s.pnl_subs and not self.scenario.link_down:
                    self.services.push_pnl(s)
        if mono >= self._next_account:
            if self._next_account:  # not at start: clients got everything on request
                self._push_account(now)
            self._next_account = mono + self.account_interval
        self._flush_delayed()


# --------------------------------------------------------------------------- helpers


def _legs_of(inst: Instrument):
    if isinstance(inst, Bag):
        return inst.legs
    if isinstance(inst, OptionSpec):
        return (_LegLike(inst),)
    return ()


@dataclass(frozen=True)
class _LegLike:
    option: OptionSpec


def _execution_venue(e: Execution) -> str:
    """Where an execution took place: CBOE for options, the primary listing for stocks, none
    for an exercise or assignment (the OCC's, not an exchange's)."""
    if e.order_ref in (equity_account.ASSIGNMENT_REF, equity_account.EXERCISE_REF) and not e.perm_id:
        return ""
    if isinstance(e.inst, mapping.Stock):
        return equities.EQUITIES[e.inst.symbol].primary_exchange
    return "CBOE"


def _exchange_reject():
    from bot.sim.exchange import ExchangeReject

    return ExchangeReject


def _error_of(e: Exception) -> tuple[int, str]:
    if isinstance(e, MappingError):
        return e.code, e.message
    code = getattr(e, "code", 201)
    reason = getattr(e, "reason", str(e))
    if code == 201 and not reason.startswith("Order rejected"):
        reason = f"Order rejected - reason:{reason}"
    return code, reason


def _dividend_yield() -> float:
    from bot.sim import exchange

    return float(getattr(exchange, "DIVIDEND_YIELD", 0.013))
