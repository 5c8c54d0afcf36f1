"""The gateway's order table: which client placed which order, over the exchange's orders.

IB identifies an order by (clientId, orderId) for the client that placed it, by permId for
everyone, and lets the client attach a free-text orderRef. The exchange knows orders by its
own `order_ref` only. This table (`gw_orders`, in the exchange's SQLite file, so that state a
client created survives its disconnect and a gateway restart, as at IB) keeps the IB side:
clientId, orderId, permId, orderRef, the contract and order as the client sent them (echoed in
openOrder), and the exchange orders ("slices") the IB order was sent as. An order is usually
one slice; a staged partial fill sends it as several (scenarios.partial_next).

Exchange refs: the client's orderRef when free (so other front doors of the exchange, such as
`spx-bot kill` acting directly, see the bot's own refs), else `<orderRef>#p<permId>`; later
slices add `#<n>`. A client order without orderRef gets `gw-<clientId>-<orderId>-<permId>`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from bot.domain import Action, Leg, OptionSpec, OrderStatus
from bot.sim.equities import Stock

from .listing import NY
from .mapping import Bag, ExchangeOrder, Instrument, MappingError, marketable_limit, to_exchange_order
from .protocol import WireComboLeg, WireContract, WireOrder

SCHEMA = """
CREATE TABLE IF NOT EXISTS gw_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gw_orders (
    perm_id INTEGER PRIMARY KEY, client_id INTEGER NOT NULL, order_id INTEGER NOT NULL,
    order_ref TEXT NOT NULL, ex_ref TEXT NOT NULL UNIQUE, contract TEXT NOT NULL, inst TEXT NOT NULL,
    ib_order TEXT NOT NULL, status TEXT NOT NULL, filled INTEGER NOT NULL DEFAULT 0,
    avg_price REAL NOT NULL DEFAULT 0, last_fill_price REAL NOT NULL DEFAULT 0,
    slices TEXT NOT NULL DEFAULT '[]', untransmitted INTEGER NOT NULL, release_at TEXT,
    hold TEXT NOT NULL DEFAULT '', expires_at TEXT, reason TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL, updated TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS gw_orders_client ON gw_orders(client_id, order_id);
CREATE INDEX IF NOT EXISTS gw_orders_status ON gw_orders(status);
"""

ACTIVE = ("pending", "working")
FIRST_PERM_ID = 1_000_001
HOLD_TRANSMIT = "transmit"  # the client sent transmit=False: kept in the gateway only
HOLD_SCENARIO = "scenario"  # scenarios.hold_fills / partial_next(rest_after=None)
HOLD_LINK = "link"  # placed while the IB link was down (1100): sent when it is restored


# --------------------------------------------------------------------------- records


@dataclass
class GwOrder:
    perm_id: int
    client_id: int
    order_id: int
    order_ref: str
    ex_ref: str
    contract: WireContract
    inst: Instrument
    order: WireOrder
    status: str = "pending"  # pending | working | filled | cancelled | rejected
    filled: int = 0
    avg_price: float = 0.0  # per unit, in the client's terms
    last_fill_price: float = 0.0
    slices: list[str] = field(default_factory=list)
    untransmitted: int = 0
    release_at: datetime | None = None
    hold: str = ""
    expires_at: datetime | None = None
    reason: str = ""
    created: datetime | None = None
    updated: datetime | None = None

    @property
    def quantity(self) -> int:
        return int(self.order.total_quantity)

    @property
    def remaining(self) -> int:
        return 0 if self.status in ("cancelled", "rejected") else self.quantity - self.filled

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def ib_status(self) -> str:
        """IB's status text: not yet at the exchange = PreSubmitted, working = Submitted."""
        return {"pending": "PreSubmitted", "working": "Submitted", "filled": "Filled"}.get(self.status, "Cancelled")

    def exchange_order(self) -> ExchangeOrder:
        return to_exchange_order(self.inst, self.order)


@dataclass(frozen=True)
class Execution:
    """One execution as IB reports it: a leg, or the BAG-level line of a combo fill."""

    exec_id: str
    perm_id: int
    client_id: int
    order_id: int
    order_ref: str
    inst: Instrument  # OptionSpec or Stock (leg), or Bag
    quantity: int  # signed: + bought, - sold
    price: float  # per share (leg) or per combo unit in the client's terms (BAG)
    time: datetime
    commission: float | None  # None: no commission report for this line
    cum_qty: float
    avg_price: float

    @property
    def is_bag(self) -> bool:
        return isinstance(self.inst, Bag)


# --------------------------------------------------------------------------- (de)serialization


def inst_to_json(inst: Instrument) -> str:
    if isinstance(inst, Bag):
        return json.dumps({"bag": inst.symbol, "legs": [[leg.option.key, leg.action.value, leg.ratio] for leg in inst.legs]})
    if isinstance(inst, Stock):
        return json.dumps({"stock": inst.symbol})
    return json.dumps({"option": inst.key})


def inst_from_json(text: str) -> Instrument:
    d = json.loads(text)
    if "bag" in d:
        return Bag(d["bag"], tuple(Leg(OptionSpec.from_key(k), Action(a), r) for k, a, r in d["legs"]))
    if "stock" in d:
        return Stock(d["stock"])
    return OptionSpec.from_key(d["option"])


def _contract_to_json(c: WireContract) -> str:
    d = dataclasses.asdict(c)
    return json.dumps(d)


def _contract_from_json(text: str) -> WireContract:
    d = json.loads(text)
    d["combo_legs"] = tuple(WireComboLeg(**leg) for leg in d.get("combo_legs", ()))
    return WireContract(**d)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


# --------------------------------------------------------------------------- the book


class OrderBook:
    def __init__(self, exchange, calendar):
        self.exchange = exchange
        self.calendar = calendar
        self.db = exchange.db
        self.db.executescript(SCHEMA)
        self.db.execute("INSERT OR IGNORE INTO gw_meta(key, value) VALUES ('next_perm_id', ?)", (str(FIRST_PERM_ID),))
        # executions that exist before this gateway started are old news: never pushed live
        self._known_execs: set[str] = {f.exec_id for f in exchange.fills()}

    # --- persistence ------------------------------------------------------------------------
    def _row_to_order(self, row) -> GwOrder:
        (perm, client, oid, ref, ex_ref, contract, inst, ib_order, status, filled, avg, last, slices,
         untransmitted, release_at, hold, expires_at, reason, created, updated) = row
        return GwOrder(
            perm, client, oid, ref, ex_ref, _contract_from_json(contract), inst_from_json(inst),
            WireOrder(**json.loads(ib_order)), status, filled, avg, last, json.loads(slices),
            untransmitted, _time(release_at), hold, _time(expires_at), reason, _time(created), _time(updated),
        )

    def _select(self, where: str = "", args: tuple = ()) -> list[GwOrder]:
        rows = self.db.execute(f"SELECT * FROM gw_orders {where} ORDER BY perm_id", args).fetchall()
        return [self._row_to_order(r) for r in rows]

    def save(self, o: GwOrder) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO gw_orders VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (o.perm_id, o.client_id, o.order_id, o.order_ref, o.ex_ref, _contract_to_json(o.contract),
             inst_to_json(o.inst), json.dumps(dataclasses.asdict(o.order)), o.status, o.filled, o.avg_price,
             o.last_fill_price, json.dumps(o.slices), o.untransmitted, _iso(o.release_at), o.hold,
             _iso(o.expires_at), o.reason, _iso(o.created), _iso(o.updated)),
        )

    def _next_perm_id(self) -> int:
        perm = int(self.db.execute("SELECT value FROM gw_meta WHERE key='next_perm_id'").fetchone()[0])
        self.db.execute("UPDATE gw_meta SET value=? WHERE key='next_perm_id'", (str(perm + 1),))
        return perm

    # --- queries ------------------------------------------------------------------------------
    def get(self, perm_id: int) -> GwOrder | None:
        found = self._select("WHERE perm_id=?", (perm_id,))
        return found[0] if found else None

    def find(self, client_id: int, order_id: int) -> GwOrder | None:
        """The latest order a client placed under this order id."""
        found = self._select("WHERE client_id=? AND order_id=?", (client_id, order_id))
        return found[-1] if found else None

    def active(self) -> list[GwOrder]:
        return self._select("WHERE status IN ('pending', 'working')")

    def open_orders(self, client_id: int | None = None) -> list[GwOrder]:
        if client_id is None:
            return self.active()
        return self._select("WHERE status IN ('pending', 'working') AND client_id=?", (client_id,))

    def completed(self, since: datetime) -> list[GwOrder]:
        return [o for o in self._select("WHERE status IN ('filled', 'cancelled', 'rejected')")
                if o.updated is not None and o.updated >= since]

    def next_order_id(self) -> int:
        row = self.db.execute("SELECT MAX(order_id) FROM gw_orders").fetchone()
        return max(1, (row[0] or 0) + 1)

    # --- lifecycle ------------------------------------------------------------------------------
    def create(self, client_id: int, order_id: int, contract: WireContract, inst: Instrument,
               order: WireOrder, now: datetime) -> GwOrder:
        """A new order, stored before anything is sent to the exchange (status pending)."""
        to_exchange_order(inst, order)  # validate: raises MappingError before anything is stored
        perm = self._next_perm_id()
        ref = order.order_ref or f"gw-{client_id}-{order_id}-{perm}"
        if ref != order.order_ref:
            order = dataclasses.replace(order, order_ref=ref)
        ex_ref = ref if self._ref_free(ref) else f"{ref}#p{perm}"
        o = GwOrder(perm, client_id, order_id, ref, ex_ref, contract, inst, order,
                    untransmitted=int(order.total_quantity), created=now, updated=now)
        o.expires_at = self._day_end(now) if order.tif.upper() in ("", "DAY") else None
        self.save(o)
        return o

    def _ref_free(self, ref: str) -> bool:
        if self.exchange.order(ref) is not None:
            return False
        return self.db.execute("SELECT 1 FROM gw_orders WHERE ex_ref=?", (ref,)).fetchone() is None

    def _day_end(self, now: datetime) -> datetime:
        """When a DAY order placed now expires: the close of the session it works in."""
        d = now.astimezone(NY).date()
        cal = self.calendar
        if cal.is_session(d) and now < cal.open_close(d)[1]:
            return cal.open_close(d)[1]
        return cal.open_close(cal.next_session(d))[1]

    def next_open(self, now: datetime) -> datetime:
        d = now.astimezone(NY).date()
        cal = self.calendar
        if cal.is_session(d) and now < cal.open_close(d)[0]:
            return cal.open_close(d)[0]
        return cal.open_close(cal.next_session(d))[0]

    def transmit(self, o: GwOrder, now: datetime, quantity: int | None = None) -> bool:
        """Send (part of) the untransmitted quantity to the exchange. False when the market is
        closed: the order then waits for the next open (`release_at`). Raises ExchangeReject /
        MappingError when refused: a first slice refused rejects the order."""
        qty = min(quantity or o.untransmitted, o.untransmitted)
        if qty <= 0:
            return False
        if not self.calendar.is_open(now):
            o.release_at = self.next_open(now)
            self.save(o)
            return False
        ex = o.exchange_order()
        limit = ex.limit
        if limit is None:
            quotes = self.exchange.price_options([leg.option for leg in ex.legs], now)
            limit = marketable_limit(ex.legs, quotes)
        ref = o.ex_ref if not o.slices else f"{o.ex_ref}#{len(o.slices) + 1}"
        try:
            self.exchange.place_combo(ref, list(ex.legs), qty, limit, now)
        except Exception as e:
            o.untransmitted = 0
            o.release_at = None
            if not o.slices:
                o.status = "rejected"
                o.reason = getattr(e, "reason", str(e))
            o.updated = now
            self.save(o)
            raise
        o.slices.append(ref)
        o.untransmitted -= qty
        o.release_at = None
        o.status = "working"
        o.updated = now
        self.save(o)
        return True

    def due(self, now: datetime) -> list[GwOrder]:
        """Active orders with quantity waiting for a release time that has come."""
        return [o for o in self.active() if o.untransmitted > 0 and not o.hold
                and o.release_at is not None and o.release_at <= now]

    def modify(self, o: GwOrder, new: WireOrder, now: datetime) -> None:
        """A new limit (or order type) for a working order; the quantity cannot change here."""
        if int(new.total_quantity) != o.quantity:
            raise MappingError(105, "Order being modified does not match original order (quantity change not supported).")
        new = dataclasses.replace(new, order_ref=o.order_ref)
        ex = to_exchange_order(o.inst, new)
        limit = ex.limit
        if limit is None:
            quotes = self.exchange.price_options([leg.option for leg in ex.legs], now)
            limit = marketable_limit(ex.legs, quotes)
        for ref in self._working_slices(o):
            self.exchange.modify(ref, limit, now)  # raises 110 before changing anything
        o.order = new
        o.updated = now
        self.save(o)

    def _working_slices(self, o: GwOrder) -> list[str]:
        out = []
        for ref in o.slices:
            st = self.exchange.order(ref)
            if st is not None and st.status is OrderStatus.WORKING:
                out.append(ref)
        return out

    def cancel(self, o: GwOrder, now: datetime, reason: str = "cancelled") -> None:
        for ref in self._working_slices(o):
            self.exchange.cancel(ref, now)
        o.untransmitted = 0
        o.release_at = None
        o.hold = ""
        if o.status in ACTIVE:
            o.status = "cancelled"
            o.reason = reason
        o.updated = now
        self.save(o)

    def force_fill(self, o: GwOrder, now: datetime) -> None:
        """Fill the working slices at their limit now (a cancel that lost the race): the
        exchange's fill threshold is lifted for this one order's matching."""
        original = self.exchange.settings
        try:
            self.exchange.settings = dataclasses.replace(original, fill_fraction=-1e9)
            if o.untransmitted and not o.hold:
                self.transmit(o, now)
            ex = o.exchange_order()
            for ref in self._working_slices(o):
                state = self.exchange.order(ref)
                self.exchange.modify(ref, state.limit if ex.limit is None else ex.limit, now)
        finally:
            self.exchange.settings = original

    # --- synchronisation with the exchange -------------------------------------------------------
    def refresh(self, o: GwOrder, now: datetime) -> tuple[bool, list[Execution]]:
        """Bring one order up to the exchange: (status or fill changed, new executions)."""
        before = (o.status, o.filled)
        ex = o.exchange_order()
        new: list[Execution] = []
        filled, cost, working = 0, Decimal(0), False
        leg_cum: dict[str, tuple[int, Decimal]] = {}
        for ref in o.slices:
            st = self.exchange.order(ref)
            if st is None:
                continue
            working = working or st.status is OrderStatus.WORKING
            fills = self.exchange.fills([ref])
            for f in fills:
                n, c = leg_cum.get(f.option.key, (0, Decimal(0)))
                leg_cum[f.option.key] = (n + abs(f.quantity), c + f.price * abs(f.quantity))
                if f.exec_id in self._known_execs:
                    continue
                self._known_execs.add(f.exec_id)
                n, c = leg_cum[f.option.key]
                new.append(Execution(
                    f.exec_id, o.perm_id, o.client_id, o.order_id, o.order_ref, f.option, f.quantity,
                    float(f.price), f.time, float(f.commission), float(n), float(c / n),
                ))
            if st.filled:
                filled += st.filled
                cost += (st.avg_price or Decimal(0)) * st.filled
                fresh = fills and any(e.exec_id == fills[0].exec_id for e in new)
                if fresh:
                    o.last_fill_price = ex.ib_price(st.avg_price or 0)
                if fresh and isinstance(o.inst, Bag):
                    # the BAG-level line of this slice's fill, after its legs
                    new.append(Execution(
                        f"{fills[0].exec_id}.00", o.perm_id, o.client_id, o.order_id, o.order_ref, o.inst,
                        st.filled * ex.sign, ex.ib_price(st.avg_price or 0), fills[0].time, None,
                        float(filled), ex.ib_price(cost / filled),
                    ))
        o.filled = filled
        o.avg_price = ex.ib_price(cost / filled) if filled else 0.0
        if filled >= o.quantity:
            o.status = "filled"
        elif o.status in ACTIVE and not working and o.untransmitted == 0 and o.slices:
            o.status = "cancelled"  # the exchange ended it (contract expired)
            o.reason = o.reason or "cancelled by the exchange"
        changed = (o.status, o.filled) != before
        if changed or new:
            o.updated = now
            self.save(o)
        return changed, new

    def expired_day_orders(self, now: datetime) -> list[GwOrder]:
        return [o for o in self.active() if o.expires_at is not None and o.expires_at <= now]

    # --- executions ---------------------------------------------------------------------------
    def executions(self, since: datetime) -> list[Execution]:
        """Every execution in the account since `since`: the gateway's orders (legs and BAG
        lines) and fills of orders placed at the exchange by other front doors (orderId 0)."""
        by_ref: dict[str, tuple[GwOrder, int]] = {}
        for o in self._select():
            for i, ref in enumerate(o.slices):
                by_ref[ref] = (o, i)
        out: list[Execution] = []
        fills = [f for f in self.exchange.fills() if f.time >= since]
        grouped: dict[str, list] = {}
        for f in fills:
            grouped.setdefault(f.order_ref, []).append(f)
        cum: dict[tuple[int, str], tuple[int, Decimal]] = {}
        for ref, group in grouped.items():
            owner = by_ref.get(ref)
            if owner is None:
                for f in group:
                    out.append(Execution(f.exec_id, 0, 0, 0, ref, f.option, f.quantity, float(f.price), f.time,
                                         float(f.commission), float(abs(f.quantity)), float(f.price)))
                continue
            o, _ = owner
            ex = o.exchange_order()
            for f in group:
                n, c = cum.get((o.perm_id, f.option.key), (0, Decimal(0)))
                n, c = n + abs(f.quantity), c + f.price * abs(f.quantity)
                cum[(o.perm_id, f.option.key)] = (n, c)
                out.append(Execution(f.exec_id, o.perm_id, o.client_id, o.order_id, o.order_ref, f.option,
                                     f.quantity, float(f.price), f.time, float(f.commission), float(n), float(c / n)))
            if isinstance(o.inst, Bag):
                st = self.exchange.order(ref)
                if st is not None and st.filled:
                    n, c = cum.get((o.perm_id, "BAG"), (0, Decimal(0)))
                    n, c = n + st.filled, c + (st.avg_price or Decimal(0)) * st.filled
                    cum[(o.perm_id, "BAG")] = (n, c)
                    out.append(Execution(f"{group[0].exec_id}.00", o.perm_id, o.client_id, o.order_id, o.order_ref,
                                         o.inst, st.filled * ex.sign, ex.ib_price(st.avg_price or 0), group[0].time,
                                         None, float(n), ex.ib_price(c / n)))
        return out

    def day_start(self, now: datetime, days: int = 1) -> datetime:
        """Midnight New York `days - 1` days before now: IB answers executions of today."""
        d: date = now.astimezone(NY).date() - timedelta(days=max(1, days) - 1)
        return datetime(d.year, d.month, d.day, tzinfo=NY)
