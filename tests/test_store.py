"""The journal: what is written survives a reopen, and positions are always the sum of fills."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain import Action, ComboOrder, Condor, Fill, Intent, IntentStatus, Leg, OptionSpec, Right
from bot.store import Store, StoreError

NY = ZoneInfo("America/New_York")
T0 = datetime(2022, 3, 1, 10, 0, tzinfo=NY)
EXPIRY = date(2022, 3, 2)


def condor(condor_id: str = "c1", opened_at: datetime = T0, expiry: date = EXPIRY) -> Condor:
    return Condor(
        condor_id=condor_id,
        expiry=expiry,
        put_short=Decimal("4300"),
        put_long=Decimal("4275"),
        call_short=Decimal("4450"),
        call_long=Decimal("4475"),
        quantity=2,
        credit=Decimal("3.15"),
        opened_at=opened_at,
    )


def intent(ref: str = "ic-20220301-0001", group: str = "c1", purpose: str = "condor.open") -> Intent:
    return Intent(
        order_ref=ref,
        purpose=purpose,
        group=group,
        order=ComboOrder(legs=condor(group).legs(), quantity=2, limit_floor=Decimal("-2.50")),
        reason="scheduled entry",
        created_at=T0,
    )


def fill(exec_id: str, option: OptionSpec, qty: int, ref: str = "ic-20220301-0001", at: datetime = T0) -> Fill:
    return Fill(exec_id, ref, option, qty, Decimal("1.35"), at, Decimal("1.10"))


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "db" / "bot.sqlite") as s:
        yield s


def test_opens_in_wal_mode_with_a_schema_version(tmp_path: Path):
    path = tmp_path / "nested" / "bot.sqlite"
    Store(path).close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert raw.execute("SELECT version FROM schema_version").fetchone() == (1,)
    raw.close()


def test_refuses_a_store_from_another_schema_version(tmp_path: Path):
    path = tmp_path / "bot.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE schema_version SET version = 99")
    raw.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(path)


def test_close_twice_is_harmless_and_a_closed_store_says_so(tmp_path: Path):
    s = Store(tmp_path / "bot.sqlite")
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.positions()


def test_intent_round_trip(store: Store):
    store.add_intent(intent())
    rec = store.intent("ic-20220301-0001")
    assert rec is not None
    assert rec.intent == intent()
    assert rec.order_ref == "ic-20220301-0001"
    assert (rec.status, rec.broker_id, rec.limit, rec.filled, rec.note) == (IntentStatus.NEW, None, None, 0, "")
    assert rec.updated_at == T0 and rec.sent_at is None
    assert store.intent("nope") is None


def test_duplicate_order_ref_is_refused(store: Store):
    store.add_intent(intent())
    with pytest.raises(ValueError, match="already journaled"):
        store.add_intent(intent(group="other"))
    assert [r.intent.group for r in store.intents()] == ["c1"]


def test_order_lifecycle(store: Store):
    ref = "ic-20220301-0001"
    store.add_intent(intent(ref))
    t1, t2 = T0 + timedelta(seconds=1), T0 + timedelta(seconds=30)
    store.mark_sent(ref, t1)
    store.update_order(ref, Decimal("-3.10"), 0, "42")
    store.update_order(ref, Decimal("-3.05"), 1, None)  # None keeps the known broker id
    rec = store.intent(ref)
    assert (rec.status, rec.limit, rec.filled, rec.broker_id, rec.sent_at) == (
        IntentStatus.SENT, Decimal("-3.05"), 1, "42", t1
    )

    store.set_intent_status(ref, IntentStatus.FILLED, t2, note="filled at -3.05", filled=2)
    store.mark_sent(ref, t2)  # late: must not reopen a finished intent
    rec = store.intent(ref)
    assert (rec.status, rec.limit, rec.filled, rec.note, rec.updated_at) == (
        IntentStatus.FILLED, Decimal("-3.05"), 2, "filled at -3.05", t2
    )


def test_updates_to_an_unknown_intent_raise(store: Store):
    with pytest.raises(KeyError):
        store.mark_sent("ghost", T0)
    with pytest.raises(KeyError):
        store.set_intent_status("ghost", IntentStatus.CANCELLED, T0)
    with pytest.raises(KeyError):
        store.update_order("ghost", Decimal("1"), 0, None)


def test_live_intents_and_filters(store: Store):
    for n, purpose in ((1, "condor.open"), (2, "condor.open"), (3, "condor.close"), (4, "hedge.buy")):
        store.add_intent(intent(f"r{n}", group="c1" if n < 4 else "front", purpose=purpose))
    store.mark_sent("r2", T0)
    store.set_intent_status("r3", IntentStatus.CANCELLED, T0)
    store.set_intent_status("r4", IntentStatus.ABANDONED, T0)

    assert [(r.order_ref, r.status) for r in store.live_intents()] == [
        ("r1", IntentStatus.NEW), ("r2", IntentStatus.SENT)
    ]
    assert [r.order_ref for r in store.intents(group="c1")] == ["r1", "r2", "r3"]
    assert [r.order_ref for r in store.intents(purpose="condor.open")] == ["r1", "r2"]
    assert [r.order_ref for r in store.intents(group="c1", purpose="condor.close")] == ["r3"]
    assert [r.order_ref for r in store.intents()] == ["r1", "r2", "r3", "r4"]


def test_add_fill_is_idempotent_and_round_trips(store: Store):
    legs = condor().legs()
    f = fill("e1", legs[0].option, -2)
    assert store.add_fill(f) is True
    assert store.add_fill(f) is False
    assert store.add_fill(fill("e2", legs[1].option, 2, ref="other")) is True
    assert store.fills() == [f, fill("e2", legs[1].option, 2, ref="other")]
    assert store.fills("ic-20220301-0001") == [f]
    assert store.positions() == {legs[0].option.key: -2, legs[1].option.key: 2}


def test_positions_are_the_sum_of_fills_including_settlement(store: Store):
    opened = T0
    for i, leg in enumerate(condor().legs()):
        store.add_fill(fill(f"open{i}", leg.option, leg.signed_ratio * 2, at=opened))
    assert store.positions() == {leg.option.key: leg.signed_ratio * 2 for leg in condor().legs()}

    # Expiry: the short put finished in the money and is cash-settled; the others expire worthless.
    settle_at = datetime(2022, 3, 2, 16, 0, tzinfo=NY)
    for leg in condor().legs():
        key = leg.option.key
        qty = -leg.signed_ratio * 2
        store.add_fill(Fill(f"settle:{key}", f"settle:{key}", leg.option, qty, Decimal("0"), settle_at))
    assert store.positions() == {}
    assert store.add_fill(Fill(f"settle:{key}", f"settle:{key}", leg.option, qty, Decimal("0"), settle_at)) is False
    assert store.positions() == {}


def test_halted_survives_reopen(tmp_path: Path):
    path = tmp_path / "bot.sqlite"
    with Store(path) as s:
        assert s.halted() == (False, "")
        s.set_halted(True, "operator kill", T0)
    with Store(path) as s:
        assert s.halted() == (True, "operator kill")
        s.set_halted(False, "resumed", T0 + timedelta(hours=1))
        assert s.halted() == (False, "resumed")


def test_generic_control_values(store: Store):
    assert store.get_control("paused") is None
    store.set_control("paused", "1")
    store.set_control("paused", "0")
    assert store.get_control("paused") == "0"


def test_next_order_ref_is_unique_across_reopen(tmp_path: Path):
    path = tmp_path / "bot.sqlite"
    day = date(2022, 3, 1)
    with Store(path) as s:
        first = [s.next_order_ref("ic", day) for _ in range(3)]
    with Store(path) as s:
        later = [s.next_order_ref("ic", day), s.next_order_ref("hedge", date(2022, 3, 2))]
    assert first == ["ic-20220301-0001", "ic-20220301-0002", "ic-20220301-0003"]
    assert later == ["ic-20220301-0004", "hedge-20220302-0005"]


def test_condor_lifecycle(store: Store):
    store.add_intent(intent("o1", group="c1"))
    store.add_intent(intent("o2", group="c2"))
    c1, c2 = condor("c1"), condor("c2", opened_at=T0 + timedelta(days=1))
    store.add_condor(c1, "o1")
    store.add_condor(c2, "o2")
    assert store.open_condors() == [c1, c2]

    closed_at = T0 + timedelta(hours=3)
    store.close_condor("c1", closed_at, "take profit", Decimal("1.05"), Decimal("420.00"))
    store.close_condor("c2", closed_at, "expired", None, Decimal("-120.50"))
    assert store.open_condors() == []
    assert store.realized_pnl() == Decimal("299.50")

    rows = store.condor_rows()
    assert [r["condor_id"] for r in rows] == ["c2", "c1"]  # newest first
    assert rows[1]["status"] == "closed" and rows[0]["status"] == "closed"
    assert (rows[1]["reason"], rows[1]["close_price"], rows[1]["pnl"], rows[1]["closed_at"]) == (
        "take profit", Decimal("1.05"), Decimal("420.00"), closed_at
    )
    assert rows[0]["close_price"] is None and rows[0]["open_ref"] == "o2"
    assert [r["condor_id"] for r in store.condor_rows(limit=1)] == ["c2"]


def test_condor_errors(store: Store):
    with pytest.raises(ValueError, match="FOREIGN KEY"):
        store.add_condor(condor("c1"), "never-journaled")
    store.add_intent(intent("o1"))
    assert store.add_condor(condor("c1"), "o1") is True
    assert store.add_condor(condor("c1"), "o1") is False  # idempotent: booked once
    assert store.has_condor("c1") and not store.has_condor("c2")
    store.close_condor("c1", T0, "stop", Decimal("6.00"), Decimal("-570"))
    with pytest.raises(ValueError, match="already closed"):
        store.close_condor("c1", T0, "stop", Decimal("6.00"), Decimal("-570"))
    with pytest.raises(KeyError):
        store.close_condor("c9", T0, "stop", None, Decimal("0"))
    assert store.realized_pnl() == Decimal("-570")


def test_signals_round_trip(store: Store):
    store.add_signal(T0, "vix", {"vix": 21.5, "rsi": Decimal("48.2"), "entry": True})
    store.add_signal(T0 + timedelta(minutes=5), "macd", {"hist": -0.4})
    assert store.signals("vix") == [(T0, "vix", {"vix": 21.5, "rsi": "48.2", "entry": True})]
    assert [name for _, name, _ in store.signals()] == ["vix", "macd"]


def test_refuses_naive_times_and_float_prices(store: Store):
    with pytest.raises(ValueError, match="naive"):
        store.set_halted(True, "x", datetime(2022, 3, 1, 10))
    store.add_intent(intent("o1"))
    with pytest.raises(TypeError, match="Decimal"):
        store.update_order("o1", 1.1, 0, None)  # type: ignore[arg-type]


def test_times_come_back_as_the_same_instant_in_utc(store: Store):
    store.add_intent(intent("o1"))
    rec = store.intent("o1")
    assert rec.intent.created_at == T0 and rec.intent.created_at.tzinfo == UTC


def test_a_year_of_engine_writes_is_fast(tmp_path: Path):
    """The engine journals a few rows per simulated day; a year must replay well inside 30 s."""
    start = time.perf_counter()
    with Store(tmp_path / "bot.sqlite") as s:
        day = date(2022, 1, 3)
        for n in range(252):
            at = datetime.combine(day, datetime.min.time(), NY) + timedelta(hours=10)
            ref = s.next_order_ref("ic", day)
            c = condor(f"c{n}", opened_at=at, expiry=day)
            s.add_intent(Intent(ref, "condor.open", c.condor_id, ComboOrder(c.legs(), 1), created_at=at))
            s.mark_sent(ref, at)
            s.update_order(ref, Decimal("-3.00"), 0, str(n))
            for i, leg in enumerate(c.legs()):
                s.add_fill(fill(f"{ref}:{i}", leg.option, leg.signed_ratio, ref=ref, at=at))
            s.set_intent_status(ref, IntentStatus.FILLED, at, filled=1)
            s.add_condor(c, ref)
            s.add_signal(at, "entry", {"n": n})
            for leg in c.legs():
                s.add_fill(fill(f"settle:{leg.option.key}", leg.option, -leg.signed_ratio, ref="settle", at=at))
            s.close_condor(c.condor_id, at, "expired", None, Decimal("300"))
            s.live_intents()
            s.positions()
            day += timedelta(days=1)
        assert s.positions() == {}
        assert s.realized_pnl() == Decimal("300") * 252
    assert time.perf_counter() - start < 10


OPTIONS = [
    OptionSpec("SPX", EXPIRY, Decimal(k), r)
    for k in ("4275", "4300", "4450.5")
    for r in (Right.PUT, Right.CALL)
] + [OptionSpec("VIX", date(2022, 3, 16), Decimal("30"), Right.CALL, "VIX")]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, len(OPTIONS) - 1), st.integers(-50, 50), st.booleans()),
        max_size=40,
    )
)
def test_positions_equal_the_sum_of_any_sequence_of_fills(executions):
    """Redelivered executions (the boolean) must not count twice."""
    expected: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bot.sqlite") as s:
        for n, (i, qty, redeliver) in enumerate(executions):
            f = Fill(f"e{n}", "ref", OPTIONS[i], qty, Decimal("1.00"), T0 + timedelta(seconds=n))
            assert s.add_fill(f)
            if redeliver:
                assert not s.add_fill(f)
            expected[OPTIONS[i].key] = expected.get(OPTIONS[i].key, 0) + qty
        assert s.positions() == {k: q for k, q in expected.items() if q != 0}
        assert len(s.fills()) == len(executions)


def test_legs_keep_action_and_ratio(store: Store):
    opt = OptionSpec("VIX", date(2022, 3, 16), Decimal("30"), Right.CALL, "VIX")
    order = ComboOrder((Leg(opt, Action.BUY, 2),), 3)
    store.add_intent(Intent("h1", "hedge.buy", "front", order, created_at=None))
    rec = store.intent("h1")
    assert rec.intent.order == order and rec.intent.created_at is None and rec.updated_at is None
