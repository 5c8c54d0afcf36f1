"""The simulated exchange and paper account: quotes, combo order matching, positions, cash,
max-loss margin and SPXW cash settlement.

State lives in its own SQLite file (separate from the bot's store), as an IB account lives at
IB: a restarted bot finds its positions and working orders there. Every operation reads and
writes that file inside one transaction, so a second process (the `spx-bot kill` command
acting on its own while the daemon hangs) sees and changes the same account safely.

It is a model, not history: option prices come from `bot.pricing` on the market model's
SPX/VIX path (see DESIGN.md "The simulated market").

VIX options (ALVH.md section 2): European, cash-settled, multiplier 100, trading class VIX
(monthly, the calendar's expiry rule) or VIXW (weeklies on the other Wednesdays). Each expires
at the special opening quotation (SOQ), the open (09:30 New York) of its expiry date, and last
trades the session before. They are priced by Black-76 on the VIX future of the same expiry
(a weekly's future is interpolated on the monthly curve), with the vol `vix_option_vol(VVIX, T)`
and its call skew; quotes use `pricing.vix_quote_spread`. They settle in cash at intrinsic on
the SOQ, taken as the market's VIX at that session's open.

Margin: SPX options by the worst payoff at expiry per expiry (max loss of defined-risk
spreads). VIX calls by the hedge's covering rule (ALVH.md section 5): a short VIX call is
covered by a long VIX call that expires no earlier and has a strike no higher; covered pairs
need no margin, an uncovered short VIX call is refused (201 "naked short call"). VIX puts by
their worst payoff at expiry per expiry (a short put loses at most its strike). Long options
need only their premium.

Fill model: a combo limit (net debit per unit, negative = credit) fills in full when it is at
least `fill_fraction` of the way from the combo's mid toward its natural price; it fills at its
limit, or at the natural price when the limit is beyond it. Each leg gets an execution at
mid + f x (its natural side - mid), the same fraction f for all legs, so the leg prices add up
to the combo price exactly.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import numpy as np

from bot import pricing
from bot.calendar import NY, TradingCalendar
from bot.domain import (
    TICK,
    AccountSummary,
    Action,
    Fill,
    Greeks,
    Leg,
    OptionSpec,
    OrderState,
    OrderStatus,
    Position,
    Quote,
    Right,
)
from bot.sim import equities, equity_account, listing
from bot.sim.commissions import CommissionSchedule, cash_interest, schedule_by_name
from bot.sim.market import MarketModel
from bot.statefiles import prepare_state_file

UTC = timezone.utc
YEAR_S = 365.0 * 24 * 3600
DIVIDEND_YIELD = pricing.DIVIDEND_YIELD
REJECT_TICK = 110
REJECT_ORDER = 201
NO_SECURITY = 200
DUPLICATE_ORDER = 103

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions (key TEXT PRIMARY KEY, qty INTEGER NOT NULL, avg_cost TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    order_ref TEXT PRIMARY KEY, order_id INTEGER NOT NULL, legs TEXT NOT NULL, quantity INTEGER NOT NULL,
    lmt TEXT NOT NULL, status TEXT NOT NULL, filled INTEGER NOT NULL DEFAULT 0, avg_price TEXT,
    reason TEXT NOT NULL DEFAULT '', created TEXT NOT NULL, updated TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS orders_status ON orders(status);
CREATE TABLE IF NOT EXISTS executions (
    exec_id TEXT PRIMARY KEY, order_ref TEXT NOT NULL, key TEXT NOT NULL, qty INTEGER NOT NULL,
    price TEXT NOT NULL, time TEXT NOT NULL, commission TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS executions_ref ON executions(order_ref);
CREATE TABLE IF NOT EXISTS settlements (
    key TEXT PRIMARY KEY, qty INTEGER NOT NULL, price TEXT NOT NULL, time TEXT NOT NULL);
"""


class ExchangeReject(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def combo_prices(legs: list[Leg], quotes: dict[str, Quote]) -> tuple[float, float, list[tuple[float, float]]]:
    """(mid, natural, per-leg (mid, natural side)) per unit, as net debit. ExchangeReject 200
    when a leg has no quote (unknown or expired contract)."""
    mid = nat = 0.0
    per_leg = []
    for leg in legs:
        q = quotes.get(leg.option.key)
        if q is None:
            raise ExchangeReject(NO_SECURITY, f"no quote for {leg.option.key}")
        m = float(q.mid)
        side = float(q.ask) if leg.action is Action.BUY else float(q.bid)
        mid += leg.signed_ratio * m
        nat += leg.signed_ratio * side
        per_leg.append((m, side))
    return mid, nat, per_leg


def limit_fraction(limit: Decimal, mid: float, natural: float) -> float:
    """How far a combo limit is from mid toward natural (0 at mid, 1 at natural)."""
    span = natural - mid
    return 1.0 if abs(span) < 1e-9 else (float(limit) - mid) / span


def fills_at(limit: Decimal, mid: float, natural: float, fill_fraction: float) -> bool:
    """The fill rule: a combo limit fills once it is `fill_fraction` of the way from mid to
    natural (DESIGN-NOTES "Fill model")."""
    return limit_fraction(limit, mid, natural) >= fill_fraction - 1e-9


@dataclass(frozen=True)
class ExchangeSettings:
    account: str = "DU0000001"
    starting_cash: float = 1_000_000.0
    commission_per_contract: float = 0.65  # the `flat` schedule's rate
    fill_fraction: float = 0.25
    commissions: str = "ib"  # bot.sim.commissions.SCHEDULES: IB's tiered schedule plus fees, or flat

    @property
    def schedule(self) -> CommissionSchedule:
        return schedule_by_name(self.commissions, self.commission_per_contract)


_CENTS: dict[float, Decimal] = {}


def decimal_price(x: float) -> Decimal:
    """A model price as the exchange quotes and stores it: cents. Memoized (a backtest asks
    for the same few thousand prices millions of times; the dict is cleared when it grows)."""
    got = _CENTS.get(x)
    if got is None:
        if len(_CENTS) > 200_000:
            _CENTS.clear()
        got = _CENTS[x] = Decimal(str(round(x, 2)))
    return got


class _Tx:
    """One SQLite transaction of the account (`with exchange._tx(): ...`); a class defined
    once, not per call (building a class costs more than the two statements)."""

    __slots__ = ("db",)

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, et, ev, tb):
        self.db.execute("COMMIT" if et is None else "ROLLBACK")
        return False


class SimExchange:
    """One simulated paper account over one market model."""

    def __init__(self, market: MarketModel, calendar: TradingCalendar, settings: ExchangeSettings, state_path: str | Path,
                 busy_timeout: float = 10.0):
        self.market = market
        self.calendar = calendar
        self.settings = settings
        self._schedule = settings.schedule
        self._next_accrual_ts = -math.inf  # no interest is due before this close (POSIX s)
        path = Path(state_path)
        if str(state_path) != ":memory:":
            prepare_state_file(path)  # 0600 in a 0700 folder: the account is nobody else's business
        self.db = sqlite3.connect(str(path), timeout=busy_timeout, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        with self._tx():
            self._meta_default("cash", repr(settings.starting_cash))
            self._meta_default("next_order_id", "1")
            self._meta_default("next_exec_id", "1")
            self._meta_default("account", settings.account)

    # --- plumbing ------------------------------------------------------------------------
    def _tx(self):
        return _Tx(self.db)

    def _meta_default(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def _counter(self, key: str, n: int = 1) -> int:
        """The next value of a counter, taking n consecutive values (the first is returned)."""
        first = int(self._meta(key) or "1")
        self._set_meta(key, str(first + n))
        return first

    def close(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:
            pass

    @property
    def cash(self) -> Decimal:
        """The account's cash balance now (premiums, commissions and settlements booked)."""
        return Decimal(self._meta("cash"))

    @property
    def account_id(self) -> str:
        return self._meta("account") or self.settings.account

    @property
    def sim_time(self) -> datetime | None:
        """The last simulated time this account reached (a restarted run resumes from it)."""
        v = self._meta("sim_time")
        return datetime.fromisoformat(v) if v else None

    # --- pricing ---------------------------------------------------------------------------
    def _years_to_expiry(self, opt: OptionSpec, t: datetime) -> float:
        if not self.calendar.is_session(opt.expiry):
            return -1.0
        return (self.calendar.spxw_expiry_time(opt.expiry) - t).total_seconds() / YEAR_S

    def price_options(self, options: list[OptionSpec], t: datetime) -> dict[str, Quote]:
        """Model quotes (bid/ask/greeks) for SPX and VIX options, and for stocks and ETF options
        (`bot.sim.equities`), at time t; expired (and never listed) ones are absent."""
        out = self._price_spx(options, t)
        if any(o.symbol == "VIX" for o in options):
            out.update(self._price_vix(options, t))
        if any(equities.is_equity(o) for o in options):
            out.update(equities.quotes(self.market, self.calendar, options, t))
        return out

    def _price_spx(self, options: list[OptionSpec], t: datetime) -> dict[str, Quote]:
        live = [o for o in options if o.symbol == "SPX" and self._years_to_expiry(o, t) > 0]
        if not live:
            return {}
        state = self.market.state_at(t)
        S = state.spx
        K = np.array([float(o.strike) for o in live])
        T = np.array([self._years_to_expiry(o, t) for o in live])
        is_call = np.array([o.right is Right.CALL for o in live])
        a = pricing.spx_option_model(S, K, T, state.vix, state.vix9d, state.vix3m, state.rate, is_call)
        return {o.key: option_quote(a, i, "iv", S) for i, o in enumerate(live)}

    def strikes(self, expiry: date, t: datetime) -> list[Decimal]:
        """Listed SPXW strikes (`listing.spx_strikes` of spot)."""
        return listing.spx_strikes(self.market.state_at(t).spx)

    def expiries(self, t: datetime, horizon_days: int = listing.SPX_HORIZON_DAYS) -> list[date]:
        """SPXW lists an expiry every session (`listing.spx_expiries`)."""
        return listing.spx_expiries(self.calendar, t, horizon_days)

    # --- VIX options and futures -----------------------------------------------------------
    def vix_expiry_time(self, expiry: date) -> datetime:
        """A VIX option expires at the SOQ: the open (09:30 New York) of its expiry date."""
        return self.calendar.vix_expiry_time(expiry)

    def vix_last_trade(self, expiry: date) -> date:
        """The last trading day of a VIX option: the session before its expiry date."""
        return self.calendar.previous_session(expiry)

    def is_vix_listed(self, expiry: date, trading_class: str) -> bool:
        """Whether (expiry, class) follows the VIX listing rules (`listing.is_vix_listed`)."""
        return listing.is_vix_listed(self.calendar, expiry, trading_class)

    def vix_expiries(self, t: datetime) -> list[tuple[date, str]]:
        """Listed VIX option expiries whose SOQ is after t, by date (`listing.vix_expiries`)."""
        return listing.vix_expiries(self.calendar, t)

    def futures(self, t: datetime) -> list[tuple[date, float]]:
        """The monthly VIX futures curve at t: (expiry, price), nearest first."""
        return list(self.market.state_at(t).vx)

    def vix_future(self, expiry: date, t: datetime) -> float:
        """The VIX future of an option expiry at t: the listed monthly future of that expiry;
        otherwise (a weekly, or a month the curve does not show) linear in calendar days
        between the bracketing points of the curve, spot VIX standing at today; flat beyond
        the last listed future."""
        state = self.market.state_at(t)
        for e, price in state.vx:
            if e == expiry:
                return float(price)
        today = t.astimezone(NY).date()
        days = [0.0] + [float((e - today).days) for e, _ in state.vx if e > today]
        prices = [state.vix] + [float(p) for e, p in state.vx if e > today]
        return float(pricing.curve_at(float((expiry - today).days), days, prices))

    def vix_strikes(self, expiry: date, t: datetime) -> list[Decimal]:
        """Listed VIX strikes for an expiry: the grid (0.5 steps up to 20, 1 to 50, 2.5 to 80,
        5 to 150) within [max(5, F/2), min(150, max(3F, F/2 + 10))] of the expiry's future F."""
        return listing.vix_strikes(self.vix_future(expiry, t))

    def _vix_years_to_expiry(self, opt: OptionSpec, t: datetime) -> float:
        if not self.is_vix_listed(opt.expiry, opt.trading_class):
            return -1.0
        return (self.vix_expiry_time(opt.expiry) - t).total_seconds() / YEAR_S

    def _price_vix(self, options: list[OptionSpec], t: datetime) -> dict[str, Quote]:
        live = [o for o in options if o.symbol == "VIX" and self._vix_years_to_expiry(o, t) > 0]
        if not live:
            return {}
        state = self.market.state_at(t)
        futures = {e: self.vix_future(e, t) for e in {o.expiry for o in live}}
        F = np.array([futures[o.expiry] for o in live])
        K = np.array([float(o.strike) for o in live])
        T = np.array([self._vix_years_to_expiry(o, t) for o in live])
        is_call = np.array([o.right is Right.CALL for o in live])
        a = pricing.vix_option_model(F, K, T, state.vvix, state.rate, is_call)
        return {o.key: option_quote(a, i, "vol", float(F[i])) for i, o in enumerate(live)}

    # --- time --------------------------------------------------------------------------------
    def advance_to(self, t: datetime) -> None:
        """Settle what expired and try to fill working orders at time t."""
        with self._tx():
            last = self.sim_time
            if last is not None and t < last:
                t = last
            self._accrue_interest(t)
            self._settle_expired(t)
            for ref, in self.db.execute("SELECT order_ref FROM orders WHERE status='working'").fetchall():
                self._try_fill(ref, t)
            self._set_meta("sim_time", t.isoformat())

    def accrue_interest(self, t: datetime) -> None:
        """Book the T-bill interest on cash of every session closed by t (see `_accrue_interest`)."""
        if t.timestamp() < self._next_accrual_ts:
            return
        with self._tx():
            self._accrue_interest(t)

    @property
    def interest(self) -> Decimal:
        """Interest on cash booked so far."""
        return Decimal(self._meta("interest") or "0")

    def _accrue_interest(self, t: datetime) -> None:
        """Cash earns the market's rate (the 3-month T-bill in history) from each session's
        close to the next session's (`commissions.cash_interest`), booked at the first look
        after that close and before anything else moves cash (so on the cash as the close left
        it, before settlements booked at that close): the daemon looks often, the backtest
        seldom, and both book the same cents."""
        ts = t.timestamp()
        if ts < self._next_accrual_ts:
            return
        cal = self.calendar
        closed = cal.last_closed_session(t)
        if closed is None:
            return
        through = self._meta("interest_through")
        self._next_accrual_ts = cal.open_close(cal.next_session(closed))[1].timestamp()
        if through is None:  # a new account starts earning at its first close
            self._set_meta("interest_through", closed.isoformat())
            return
        d = date.fromisoformat(through)
        if d >= closed:
            return
        rate_on = getattr(self.market, "rate_on", None) or (lambda s: self.market.state_at(cal.open_close(s)[1]).rate)
        cash, total = Decimal(self._meta("cash")), self.interest
        while d < closed:
            d = cal.next_session(d)
            nxt = cal.next_session(d)
            earned = cash_interest(cash, rate_on(d), (nxt - d).days)
            cash, total = cash + earned, total + earned
        self._set_meta("cash", str(cash))
        self._set_meta("interest", str(total))
        self._set_meta("interest_through", closed.isoformat())

    def _settle_expired(self, t: datetime) -> None:
        rows = self.db.execute("SELECT key, qty, avg_cost FROM positions").fetchall()
        if any(equities.is_equity_key(key) for key, _, _ in rows):  # exercise and assignment into stock
            for e in equity_account.expiries([(k, q) for k, q, _ in rows], self.calendar, self.market, t):
                self._book_expiry(e)
        for key, qty, _ in rows:
            if equities.is_equity_key(key):
                continue
            opt = OptionSpec.from_key(key)
            if opt.symbol == "VIX":
                self._settle_vix(opt, qty, t)
                continue
            if opt.symbol != "SPX":
                continue
            if not self.calendar.is_session(opt.expiry) or self.calendar.spxw_expiry_time(opt.expiry) <= t:
                value = self.market.settlement(opt.expiry) if self.calendar.is_session(opt.expiry) else 0.0
                intrinsic = decimal_price(opt.intrinsic(value))
                cash = Decimal(self._meta("cash")) + intrinsic * opt.multiplier * qty
                self._set_meta("cash", str(cash))
                when = self.calendar.spxw_expiry_time(opt.expiry) if self.calendar.is_session(opt.expiry) else t
                self.db.execute(
                    "INSERT OR REPLACE INTO settlements(key, qty, price, time) VALUES (?,?,?,?)",
                    (key, qty, str(intrinsic), when.isoformat()),
                )
                self.db.execute("DELETE FROM positions WHERE key=?", (key,))

    def _book_expiry(self, e: equity_account.Expiry) -> None:
        """An equity option's expiry (`equity_account.expiries`): out of the book, and the
        stock delivered by executions from no order."""
        self.db.execute("INSERT OR REPLACE INTO settlements(key, qty, price, time) VALUES (?,?,?,?)",
                        (e.key, e.qty, str(e.price), e.when.isoformat()))
        self.db.execute("DELETE FROM positions WHERE key=?", (e.key,))
        for key, n, px in e.deliveries:
            exec_id = f"{self._counter('next_exec_id'):08d}.01"
            self.db.execute(
                "INSERT INTO executions(exec_id, order_ref, key, qty, price, time, commission) VALUES (?,?,?,?,?,?,?)",
                (exec_id, e.ref, key, n, str(px), e.when.isoformat(), "0"),
            )
        for key, n, px in e.deliveries[1:]:  # the stock; the option left the book above
            self._book_position(key, n, px)
        if e.cash:
            self._set_meta("cash", str(Decimal(self._meta("cash")) + e.cash))

    def _settle_vix(self, opt: OptionSpec, qty: int, t: datetime) -> None:
        """Cash settlement of a VIX option at its SOQ (the VIX at its expiry date's open); a
        contract that was never listed settles worthless at once."""
        listed = self.is_vix_listed(opt.expiry, opt.trading_class)
        if listed and self.vix_expiry_time(opt.expiry) > t:
            return
        if listed:
            when = self.vix_expiry_time(opt.expiry)
            value = self.vix_soq(opt.expiry)
        else:
            when, value = t, 0.0
        intrinsic = decimal_price(opt.intrinsic(value)) if listed else Decimal("0.00")
        cash = Decimal(self._meta("cash")) + intrinsic * opt.multiplier * qty
        self._set_meta("cash", str(cash))
        self.db.execute(
            "INSERT OR REPLACE INTO settlements(key, qty, price, time) VALUES (?,?,?,?)",
            (opt.key, qty, str(intrinsic), when.isoformat()),
        )
        self.db.execute("DELETE FROM positions WHERE key=?", (opt.key,))

    def vix_soq(self, expiry: date) -> float:
        """The special opening quotation of a VIX expiry: the market's VIX at that open."""
        return self.market.state_at(self.vix_expiry_time(expiry)).vix

    def settlement(self, key: str) -> tuple[int, Decimal, datetime] | None:
        """(quantity settled, settlement price per share, time) of an expired position."""
        row = self.db.execute("SELECT qty, price, time FROM settlements WHERE key=?", (key,)).fetchone()
        return (row[0], Decimal(row[1]), datetime.fromisoformat(row[2])) if row else None

    # --- orders ------------------------------------------------------------------------------
    def place_combo(self, order_ref: str, legs: list[Leg], quantity: int, limit: Decimal, t: datetime) -> OrderState:
        if quantity <= 0:
            raise ExchangeReject(REJECT_ORDER, "quantity must be positive")
        tick = equity_account.EQUITY_TICK if equity_account.is_equity_order(legs) else TICK
        if limit % tick != 0:
            raise ExchangeReject(REJECT_TICK, f"limit {limit} is not on the {tick} combo grid")
        if not self.calendar.is_open(t):
            raise ExchangeReject(REJECT_ORDER, "market closed")
        with self._tx():
            self._accrue_interest(t)
            self._set_meta("sim_time", max(t, self.sim_time or t).isoformat())
            quotes = self.price_options([leg.option for leg in legs], t)
            combo_prices(legs, quotes)  # raises 200 for an unknown or expired contract
            self._check_margin(legs, quantity, limit, quotes)
            if self.db.execute("SELECT 1 FROM orders WHERE order_ref=?", (order_ref,)).fetchone():
                raise ExchangeReject(DUPLICATE_ORDER, f"an order with orderRef {order_ref} exists")
            oid = self._counter("next_order_id")
            legs_json = json.dumps([[leg.option.key, leg.action.value, leg.ratio] for leg in legs])
            self.db.execute(
                "INSERT INTO orders(order_ref, order_id, legs, quantity, lmt, status, created, updated)"
                " VALUES (?,?,?,?,?, 'working', ?, ?)",
                (order_ref, oid, legs_json, quantity, str(limit), t.isoformat(), t.isoformat()),
            )
            # the working order just written, as this transaction holds it (not read back)
            self._fill_if_crossed(order_ref, legs, quantity, limit, t, quotes)
        return self.order(order_ref)

    def modify(self, order_ref: str, limit: Decimal, t: datetime) -> OrderState:
        with self._tx():
            row = self.db.execute("SELECT status, legs, quantity FROM orders WHERE order_ref=?", (order_ref,)).fetchone()
            if row is None:
                raise ExchangeReject(10147, f"order {order_ref} not found")
            legs = self._legs(row[1])
            tick = equity_account.EQUITY_TICK if equity_account.is_equity_order(legs) else TICK
            if limit % tick != 0:
                raise ExchangeReject(REJECT_TICK, f"limit {limit} is not on the {tick} combo grid")
            if row[0] == "working":
                self._accrue_interest(t)
                self.db.execute("UPDATE orders SET lmt=?, updated=? WHERE order_ref=?", (str(limit), t.isoformat(), order_ref))
                self._fill_if_crossed(order_ref, legs, row[2], limit, t)
        return self.order(order_ref)

    def cancel(self, order_ref: str, t: datetime) -> OrderState:
        """Cancel a working order. Cancelling a filled order is refused (IB 10148): the state
        returned says FILLED, and the caller books the fill."""
        with self._tx():
            row = self.db.execute("SELECT status FROM orders WHERE order_ref=?", (order_ref,)).fetchone()
            if row is None:
                raise ExchangeReject(10147, f"order {order_ref} not found")
            if row[0] == "working":
                self.db.execute(
                    "UPDATE orders SET status='cancelled', updated=? WHERE order_ref=?", (t.isoformat(), order_ref)
                )
        return self.order(order_ref)

    def cancel_all(self, t: datetime) -> list[str]:
        with self._tx():
            refs = [r for r, in self.db.execute("SELECT order_ref FROM orders WHERE status='working'")]
            self.db.execute("UPDATE orders SET status='cancelled', updated=? WHERE status='working'", (t.isoformat(),))
        return refs

    def _legs(self, legs_json: str) -> list[Leg]:
        return [Leg(equities.instrument_from_key(k), Action(a), r) for k, a, r in json.loads(legs_json)]

    def _check_margin(self, legs: list[Leg], quantity: int, limit: Decimal, quotes: dict[str, Quote]) -> None:
        """Max-loss margin: the worst payoff at expiry of the account's positions after this
        order must be covered by cash (defined-risk spreads only need their max loss)."""
        book = {k: q for k, q in self.db.execute("SELECT key, qty FROM positions")}
        for leg in legs:
            book[leg.option.key] = book.get(leg.option.key, 0) + leg.signed_ratio * quantity
        if any(equities.is_equity_key(k) for k in book):
            index_book = {k: q for k, q in book.items() if not equities.is_equity_key(k)}
            if equity_account.is_equity_order(legs):
                cash = float(self._meta("cash")) - float(limit) * legs[0].option.multiplier * quantity
                reserve = max(0.0, -_worst_payoff(index_book))
                equity_account.check_margin(self, book, cash, reserve, self.sim_time)  # place_combo set it to t
                return
            book = index_book
        naked = _uncovered_vix_calls(book)
        if naked:
            key, qty = naked[0]
            raise ExchangeReject(
                REJECT_ORDER,
                f"naked short call: {qty} x {key} not covered by a long VIX call expiring no earlier with a strike no higher",
            )
        worst = _worst_payoff(book, naked)
        cash = float(self._meta("cash")) - float(limit) * 100 * quantity
        if cash + worst < 0:
            raise ExchangeReject(REJECT_ORDER, f"insufficient funds: max loss {-worst:,.0f} exceeds cash {cash:,.0f}")

    def _try_fill(self, order_ref: str, t: datetime) -> None:
        """Fill a working order at t if its limit crosses the fill rule on t's quotes."""
        row = self.db.execute(
            "SELECT legs, quantity, lmt FROM orders WHERE order_ref=? AND status='working'", (order_ref,)
        ).fetchone()
        if row is None:
            return
        self._fill_if_crossed(order_ref, self._legs(row[0]), row[1], Decimal(row[2]), t)

    def _fill_if_crossed(self, order_ref: str, legs: list[Leg], quantity: int, limit: Decimal, t: datetime,
                         quotes: dict[str, Quote] | None = None) -> None:
        """The fill rule for the working order (legs, quantity, limit) `order_ref` at t (quotes:
        t's, when the caller has them): fill it in full, cancel it when a leg has no quote any
        more, or leave it working."""
        if not self.calendar.is_open(t):
            return
        if quotes is None:
            quotes = self.price_options([leg.option for leg in legs], t)
        try:
            mid, nat, per_leg = combo_prices(legs, quotes)
        except ExchangeReject:
            self.db.execute(
                "UPDATE orders SET status='cancelled', reason='contract expired', updated=? WHERE order_ref=?",
                (t.isoformat(), order_ref),
            )
            return
        if not fills_at(limit, mid, nat, self.settings.fill_fraction):
            return
        f = min(limit_fraction(limit, mid, nat), 1.0)
        combo_price = limit if f < 1.0 else decimal_price(nat)
        prices = [decimal_price(max(0.0, m + f * (side - m))) for m, side in per_leg]
        # cent rounding of each leg must not move the combo off its price: the last leg
        # takes the difference, so the legs add up to exactly the combo price
        rest = sum((leg.signed_ratio * px for leg, px in zip(legs[:-1], prices[:-1])), Decimal(0))
        prices[-1] = (combo_price - rest) / legs[-1].signed_ratio
        quantities = [leg.signed_ratio * quantity for leg in legs]
        if equity_account.is_equity_order(legs):
            commissions = equity_account.order_commissions(legs, list(zip(quantities, prices)), self._schedule)
        else:
            commissions = self._schedule.order_commissions(list(zip(quantities, prices)),
                                                           [leg.option.symbol for leg in legs])
        cash = Decimal(self._meta("cash"))
        first_exec = self._counter("next_exec_id", len(legs))  # one id per leg, in leg order
        when = t.isoformat()
        keys = [leg.option.key for leg in legs]
        self.db.executemany(
            "INSERT INTO executions(exec_id, order_ref, key, qty, price, time, commission) VALUES (?,?,?,?,?,?,?)",
            [(f"{first_exec + i:08d}.01", order_ref, key, qty, str(px), when, str(commission))
             for i, (key, px, qty, commission) in enumerate(zip(keys, prices, quantities, commissions))],
        )
        self._book_positions(list(zip(keys, quantities, prices)))
        for leg, px, qty, commission in zip(legs, prices, quantities, commissions):
            cash -= px * leg.option.multiplier * qty + commission
        self._set_meta("cash", str(cash))
        self.db.execute(
            "UPDATE orders SET status='filled', filled=quantity, avg_price=?, updated=? WHERE order_ref=?",
            (str(combo_price), t.isoformat(), order_ref),
        )

    def _book_position(self, key: str, qty: int, price: Decimal) -> None:
        self._book_positions([(key, qty, price)])

    def _book_positions(self, trades: list[tuple[str, int, Decimal]]) -> None:
        """Book executions (key, signed quantity, price) into the positions, one after the
        other (average cost of what is added to; a position that crosses zero starts afresh at
        the price). The rows are read in one query and each write is the one a trade at a
        time makes, in the same order."""
        keys = list(dict.fromkeys(k for k, _, _ in trades))
        marks = ",".join("?" * len(keys))
        held = {k: (q, Decimal(c)) for k, q, c in
                self.db.execute(f"SELECT key, qty, avg_cost FROM positions WHERE key IN ({marks})", keys)}
        for key, qty, price in trades:
            old, cost = held.get(key, (0, Decimal(0)))
            new = old + qty
            if new == 0:
                self.db.execute("DELETE FROM positions WHERE key=?", (key,))
                held.pop(key, None)
                continue
            if old == 0 or (old > 0) != (new > 0):
                cost = price
            elif abs(new) > abs(old):
                cost = (cost * abs(old) + price * abs(qty)) / abs(new)
            held[key] = (new, cost)
            self.db.execute("INSERT OR REPLACE INTO positions(key, qty, avg_cost) VALUES (?,?,?)",
                            (key, new, str(cost)))

    # --- queries ------------------------------------------------------------------------------
    def daily_closes(self, symbol: str, sessions: int, t: datetime) -> list[tuple[date, float]]:
        """(session, close) of the last `sessions` sessions completed at t, oldest first, from
        the market model (today only once it has closed). ValueError for an unknown symbol."""
        closes = getattr(self.market, "daily_closes", None)
        if closes is not None:
            return closes(symbol, sessions, t)
        attr = {"SPX": "spx", "VIX": "vix", "VIX9D": "vix9d", "VIX3M": "vix3m", "VVIX": "vvix"}.get(symbol)
        if attr is None:
            raise ValueError(f"no daily closes for {symbol!r}")
        # a market without the method: the close states of the sessions it has
        today = t.astimezone(NY).date()
        days = self.calendar.sessions_between(today - timedelta(days=sessions * 2 + 10), today)
        days = [d for d in days if self.calendar.open_close(d)[1] <= t]
        first = getattr(self.market, "first_session", None)
        days = [d for d in days if first is None or d >= first][-sessions:] if sessions > 0 else []
        return [(d, float(getattr(self.market.state_at(self.calendar.open_close(d)[1]), attr))) for d in days]

    def order(self, order_ref: str) -> OrderState | None:
        row = self.db.execute(
            "SELECT order_id, status, lmt, quantity, filled, avg_price, reason FROM orders WHERE order_ref=?",
            (order_ref,),
        ).fetchone()
        if row is None:
            return None
        oid, status, lmt, qty, filled, avg, reason = row
        return OrderState(
            order_ref, str(oid), OrderStatus(status), Decimal(lmt), filled, qty - filled,
            Decimal(avg) if avg is not None else None, reason,
        )

    def open_orders(self) -> list[OrderState]:
        refs = [r for r, in self.db.execute("SELECT order_ref FROM orders WHERE status='working' ORDER BY order_id")]
        return [self.order(r) for r in refs]

    def fills(self, order_refs: list[str] | None = None) -> list[Fill]:
        if order_refs is None:
            rows = self.db.execute("SELECT exec_id, order_ref, key, qty, price, time, commission FROM executions ORDER BY exec_id")
        else:
            refs = list(order_refs)
            if not refs:
                return []
            marks = ",".join("?" * len(refs))
            rows = self.db.execute(
                f"SELECT exec_id, order_ref, key, qty, price, time, commission FROM executions"
                f" WHERE order_ref IN ({marks}) ORDER BY exec_id",
                refs,
            )
        return [
            Fill(e, r, equities.instrument_from_key(k), q, Decimal(p), datetime.fromisoformat(tm), Decimal(c))
            for e, r, k, q, p, tm, c in rows
        ]

    def positions(self) -> list[Position]:
        return [
            Position(equities.instrument_from_key(k), q, Decimal(c))
            for k, q, c in self.db.execute("SELECT key, qty, avg_cost FROM positions ORDER BY key")
        ]

    def account(self, t: datetime) -> AccountSummary:
        self.accrue_interest(t)
        cash = Decimal(self._meta("cash"))
        positions = self.positions()
        quotes = self.price_options([p.option for p in positions], t)
        value = Decimal(0)
        for p in positions:
            q = quotes.get(p.option.key)
            mark = q.mid if q else Decimal(0)
            value += mark * p.option.multiplier * p.quantity
        worst = _worst_payoff({p.option.key: p.quantity for p in positions if not equities.is_equity(p.option)})
        acct = self.account_id
        return AccountSummary(acct, acct.startswith("D"), cash, cash + value, decimal_price(max(0.0, -worst)))


def _worst_expiry_payoff(book: dict[str, int]) -> float:
    """Worst dollar payoff at expiry of option positions, per expiry, summed: the payoff of a
    portfolio of calls and puts is piecewise linear in the underlying, so its minimum is at a
    strike or at the ends (0 and a far-away price, where a naked short call is unbounded)."""
    by_expiry: dict[str, list[tuple[OptionSpec, int]]] = {}
    for key, qty in book.items():
        if qty:
            opt = OptionSpec.from_key(key)
            by_expiry.setdefault(f"{opt.trading_class}{opt.expiry}", []).append((opt, qty))
    total = 0.0
    for legs in by_expiry.values():
        strikes = sorted({float(o.strike) for o, _ in legs})
        points = [0.0, *strikes, strikes[-1] * 10 + 1e6]
        worst = math.inf
        for s in points:
            payoff = sum(o.intrinsic(s) * o.multiplier * q for o, q in legs)
            worst = min(worst, payoff)
        total += min(0.0, worst)
    return total


def vix_option_model(F, K, T, vvix, rate, is_call):
    """(mid, greeks, vol) of VIX options (`pricing.vix_option_model`), as arrays."""
    a = pricing.vix_option_model(F, K, T, vvix, rate, is_call)
    return (np.atleast_1d(a["mid"]), {k: np.atleast_1d(a[k]) for k in pricing.GREEKS}, np.atleast_1d(a["vol"]))


def option_quote(a: dict[str, np.ndarray], i: int, vol: str, underlying: float) -> Quote:
    """The `Quote` of option i of a model's output (`pricing.spx_option_model` with vol "iv",
    `pricing.vix_option_model` with vol "vol")."""
    return Quote(decimal_price(a["bid"][i]), decimal_price(a["ask"][i]),
                 Greeks(float(a["delta"][i]), float(a["gamma"][i]), float(a["vega"][i]), float(a["theta"][i]),
                        float(a[vol][i])), underlying)


def _uncovered_vix_calls(book: dict[str, int]) -> list[tuple[str, int]]:
    """Short VIX calls left uncovered by the hedge's rule (ALVH.md section 5): each short call
    is matched, contract by contract, to a long VIX call with expiry >= its own and strike <=
    its own. Greedy and optimal: shorts from the latest expiry down, so the longs eligible by
    expiry only grow; each takes the eligible long with the highest strike that still fits.
    Returns (key, uncovered quantity) of the shorts left over."""
    shorts, longs = [], []
    for key, qty in book.items():
        if not qty:
            continue
        opt = OptionSpec.from_key(key)
        if opt.symbol != "VIX" or opt.right is not Right.CALL:
            continue
        (longs if qty > 0 else shorts).append([opt, abs(qty)])
    if not shorts:
        return []
    shorts.sort(key=lambda x: (-x[0].expiry.toordinal(), x[0].strike))
    longs.sort(key=lambda x: x[0].expiry, reverse=True)
    pool: list[list] = []  # longs eligible by expiry so far
    next_long = 0
    out = []
    for short, need in shorts:
        while next_long < len(longs) and longs[next_long][0].expiry >= short.expiry:
            pool.append(longs[next_long])
            next_long += 1
        while need > 0:
            fits = [lg for lg in pool if lg[1] > 0 and lg[0].strike <= short.strike]
            if not fits:
                break
            best = max(fits, key=lambda lg: (lg[0].strike, -lg[0].expiry.toordinal()))
            take = min(need, best[1])
            best[1] -= take
            need -= take
        if need:
            out.append((short.key, need))
    return out


def _worst_payoff(book: dict[str, int], uncovered: list[tuple[str, int]] | None = None) -> float:
    """Worst dollar payoff at expiry of a whole book for margin: SPX options by
    `_worst_expiry_payoff`; VIX puts by `_worst_expiry_payoff` too (bounded: the VIX cannot go
    below 0); VIX calls need nothing when covered (the covering long, expiring no earlier with
    a strike no higher, is worth at least the short's intrinsic when the short settles), and an
    uncovered short VIX call counts as unbounded (10 x its strike + 1e6, as for SPX).
    `uncovered`: `_uncovered_vix_calls(book)` when the caller has it already."""
    spx = {k: q for k, q in book.items() if q and not k.startswith("VIX")}
    vix_puts = {k: q for k, q in book.items() if q and k.startswith("VIX") and k.endswith(" P")}
    worst = _worst_expiry_payoff(spx) + _worst_expiry_payoff(vix_puts)
    for key, qty in _uncovered_vix_calls(book) if uncovered is None else uncovered:
        opt = OptionSpec.from_key(key)
        worst -= opt.intrinsic(float(opt.strike) * 10 + 1e6) * opt.multiplier * qty
    return worst
