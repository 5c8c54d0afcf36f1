"""The exchange's meta cache (`SimExchange._meta` / `_set_meta`, bounded by `_Tx`): cash,
sim_time, counters and interest read from memory must always be what the SQLite file holds,
after commits, after rollbacks (rejected orders that had already moved sim_time or booked
interest), and when another connection writes the same file between two transactions."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.calendar import TradingCalendar, ny_time
from bot.domain import Action, Leg, OptionSpec, Right
from bot.sim.exchange import ExchangeReject, ExchangeSettings, SimExchange
from bot.sim.market import SyntheticMarket

D = Decimal
START = date(2022, 3, 1)  # a Tuesday
CAL = TradingCalendar(end=date(2023, 12, 31))
MARKET = SyntheticMarket(CAL, seed=3, start=START - timedelta(days=5), vix0=24.0)
SESSIONS = CAL.sessions_between(START, START + timedelta(days=10))


def raw_meta(ex: SimExchange) -> dict[str, str]:
    return dict(ex.db.execute("SELECT key, value FROM meta"))


def assert_cache_is_the_table(ex: SimExchange) -> None:
    table = raw_meta(ex)
    for key, value in ex._metas.items():
        assert table.get(key) == value, key
    for key in list(table) + ["no such key"]:
        assert ex._meta(key) == table.get(key)


def condor(t, width: int) -> list[Leg]:
    s = MARKET.state_at(t).spx
    ps, cs = int(round(s * 0.98 / 5) * 5), int(round(s * 1.02 / 5) * 5)
    expiry = CAL.next_session(t.date())
    return [Leg(OptionSpec("SPX", expiry, D(ps), Right.PUT), Action.SELL),
            Leg(OptionSpec("SPX", expiry, D(ps - width), Right.PUT), Action.BUY),
            Leg(OptionSpec("SPX", expiry, D(cs), Right.CALL), Action.SELL),
            Leg(OptionSpec("SPX", expiry, D(cs + width), Right.CALL), Action.BUY)]


op = st.tuples(
    st.sampled_from(["place", "place", "place", "dup", "unknown", "advance", "accrue", "cancel", "modify"]),
    st.integers(0, len(SESSIONS) - 1),  # session
    st.integers(0, 420),  # minutes after 09:30 (up to 16:30: after the close too)
    st.integers(1, 12),  # quantity
    st.integers(-400, 20),  # limit in ticks of 0.05
    st.sampled_from([10, 25, 50]),  # wing width
)


def apply(ex: SimExchange, step: int, o) -> object:
    kind, s, minutes, qty, ticks, width = o
    t = ny_time(SESSIONS[s], "09:30") + timedelta(minutes=minutes)
    limit = D(ticks) * D("0.05")
    try:
        if kind in ("place", "dup"):
            return ex.place_combo("o1" if kind == "dup" else f"o{step}", condor(t, width), qty, limit, t)
        if kind == "unknown":  # passes the checks before the transaction, rejected inside it
            legs = [Leg(OptionSpec("SPX", date(2020, 1, 17), D(3000), Right.PUT), Action.BUY)]
            return ex.place_combo(f"o{step}", legs, 1, D("1.00"), t)
        if kind == "advance":
            return ex.advance_to(t)
        if kind == "accrue":
            return ex.accrue_interest(t)
        refs = [o.order_ref for o in ex.open_orders()]
        if not refs:
            return None
        if kind == "cancel":
            return ex.cancel(refs[0], t)
        return ex.modify(refs[0], limit, t)
    except ExchangeReject as e:
        return ("reject", e.code)


def state(ex: SimExchange):
    return (ex.cash, ex.interest, ex.sim_time, ex.positions(), ex.open_orders(), ex.fills(), raw_meta(ex))


@settings(max_examples=40, deadline=None)
@given(st.lists(op, min_size=1, max_size=25), st.sampled_from([3_000.0, 20_000.0, 1_000_000.0]))
def test_cached_meta_is_the_database_and_a_file_account_agrees(ops, cash):
    """An in-memory account (cache across transactions) and a file account (cache within one)
    driven alike: the cache never holds a value the table does not, and both books agree."""
    settings_ = ExchangeSettings(starting_cash=cash)
    mem = SimExchange(MARKET, CAL, settings_, ":memory:")
    folder = Path(tempfile.mkdtemp(prefix="spx", dir="/tmp"))
    disk = SimExchange(MARKET, CAL, settings_, folder / "sim.sqlite")
    try:
        for i, o in enumerate(ops):
            got = apply(mem, i, o)
            assert got == apply(disk, i, o)
            assert_cache_is_the_table(mem)
            assert_cache_is_the_table(disk)
            assert state(mem) == state(disk)
            assert not disk._metas  # a file's cache ends with its transaction
    finally:
        mem.close()
        disk.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_a_rejected_order_leaves_no_cached_value(short_tmp):
    """Insufficient funds is found after place_combo moved sim_time: the rollback drops it."""
    ex = SimExchange(MARKET, CAL, ExchangeSettings(starting_cash=100.0), ":memory:")
    t = ny_time(SESSIONS[1], "10:00")
    assert ex.sim_time is None and ex.cash == D("100.0")
    with pytest.raises(ExchangeReject):
        ex.place_combo("big", condor(t, 50), 5, D("-1.00"), t)
    assert ex.sim_time is None and raw_meta(ex).get("sim_time") is None
    assert_cache_is_the_table(ex)
    ex.close()


def test_a_file_account_sees_another_writer_between_transactions(short_tmp):
    """A second connection (another process: `spx-bot kill`, a restarted gateway) writes the
    file between two transactions: the next read is the file's value, not a cached one."""
    path = short_tmp / "sim.sqlite"
    ex = SimExchange(MARKET, CAL, ExchangeSettings(), path)
    t = ny_time(SESSIONS[1], "10:00")
    ex.advance_to(t)
    assert ex.cash == D("1000000.0")
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("UPDATE meta SET value='123.45' WHERE key='cash'")
    other.execute("UPDATE meta SET value='41' WHERE key='next_order_id'")
    other.close()
    assert ex.cash == D("123.45")
    state = ex.place_combo("x", condor(t, 10), 1, D("-20.00"), t)  # rests: far from mid
    assert state.broker_id == "41"
    ex.close()
