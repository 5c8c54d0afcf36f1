"""Pure translation between IB fields and the domain: reversible conIds, contract resolution
against a listing, the order sign convention (BAG BUY/SELL, single legs, market orders),
tick checks, local symbols; and the historical-bar helpers."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.calendar import ny_time
from bot.domain import Action, Leg, OptionSpec, Quote, Right
from bot.sim.gateway import bars, mapping
from bot.sim.gateway.mapping import Bag, Future, Index, MappingError
from bot.sim.gateway.protocol import WireComboLeg, WireContract, WireOrder

UTC = timezone.utc
EXP = date(2022, 3, 2)


def spec(strike, right=Right.PUT, tclass="SPXW", expiry=EXP) -> OptionSpec:
    return OptionSpec("VIX" if tclass.startswith("VIX") else "SPX", expiry, Decimal(str(strike)), right, tclass)


# --------------------------------------------------------------------------- conIds


@given(
    tclass=st.sampled_from(mapping.CLASSES),
    right=st.sampled_from([Right.CALL, Right.PUT]),
    days=st.integers(0, mapping.N_DAYS - 1),
    units=st.integers(1, mapping.N_STRIKES - 1),
)
def test_option_con_ids_are_reversible_and_fit_31_bits(tclass, right, days, units):
    strike = mapping.STRIKE_STEP[tclass] * units
    opt = OptionSpec(mapping.CLASS_SYMBOL[tclass], mapping.EPOCH + timedelta(days=days), strike, right, tclass)
    con_id = mapping.encode_con_id(opt)
    assert 0 < con_id < 2**31 and con_id not in (mapping.SPX_CON_ID, mapping.VIX_CON_ID)
    back = mapping.decode_con_id(con_id)
    assert back == opt and back.key == opt.key


def test_con_ids_of_the_other_instruments():
    assert mapping.encode_con_id(Index("SPX")) == 416904 and mapping.decode_con_id(13455763) == Index("VIX")
    fut = Future(date(2022, 3, 16))
    assert mapping.decode_con_id(mapping.encode_con_id(fut)) == fut
    assert mapping.encode_con_id(spec(4302)) is None  # off the 5-point grid: not listed
    assert mapping.encode_con_id(spec("17.5", tclass="VIX")) is not None
    assert mapping.decode_con_id(12345) is None


def test_local_symbols():
    assert mapping.occ_symbol(spec(4300)) == "SPXW  220302P04300000"
    assert mapping.occ_symbol(spec("17.5", Right.CALL, "VIX", date(2022, 3, 16))) == "VIX   220316C00017500"
    assert mapping.parse_occ_symbol("SPXW  220302P04300000") == spec(4300)
    assert mapping.future_local_symbol(date(2022, 3, 16)) == "VXH2"


# --------------------------------------------------------------------------- resolution


class FakeListing:
    def __init__(self):
        self.expiries = {"SPXW": [EXP, date(2022, 3, 4)], "SPX": [date(2022, 3, 18)], "VIX": [], "VIXW": []}

    def option_expiries(self, tclass, include_expired):
        return self.expiries[tclass]

    def is_option_expiry(self, tclass, expiry, include_expired):
        return expiry in self.expiries[tclass]

    def option_strikes(self, tclass, expiry):
        return [Decimal(4295), Decimal(4300)]

    def future_expiries(self):
        return [date(2022, 3, 16), date(2022, 4, 20)]


def wc(**kw) -> WireContract:
    return WireContract(**kw)


def test_resolve_indexes_options_and_futures():
    listing = FakeListing()
    assert mapping.resolve(wc(symbol="SPX", sec_type="IND", exchange="CBOE"), listing) == [Index("SPX")]
    one = wc(symbol="SPX", sec_type="OPT", last_trade_date="20220302", strike=4300.0, right="P",
             exchange="SMART", trading_class="SPXW")
    assert mapping.resolve(one, listing) == [spec(4300)]
    chain = wc(symbol="SPX", sec_type="OPT", last_trade_date="20220302", exchange="SMART", trading_class="SPXW")
    assert len(mapping.resolve(chain, listing)) == 4  # 2 strikes x 2 rights
    month = wc(symbol="SPX", sec_type="OPT", last_trade_date="202203", strike=4300.0, right="C")
    assert {o.trading_class for o in mapping.resolve(month, listing)} == {"SPXW", "SPX"}  # ambiguous
    assert mapping.resolve(wc(symbol="SPX", sec_type="OPT", last_trade_date="20220302", strike=4302.0, right="P"),
                           listing) == []
    assert mapping.resolve(wc(symbol="SPX", sec_type="OPT", last_trade_date="20220305", strike=4300.0, right="P",
                              trading_class="SPXW"), listing) == []  # a Saturday: no expiry
    by_con_id = wc(con_id=mapping.encode_con_id(spec(4300)))
    assert mapping.resolve(by_con_id, listing) == [spec(4300)]
    assert mapping.resolve(wc(sec_type="OPT", local_symbol="SPXW  220302P04300000"), listing) == [spec(4300)]
    futures = mapping.resolve(wc(symbol="VIX", sec_type="FUT", exchange="CFE", last_trade_date="202204"), listing)
    assert futures == [Future(date(2022, 4, 20))]


def test_resolve_bag_by_leg_con_ids():
    listing = FakeListing()
    legs = (WireComboLeg(mapping.encode_con_id(spec(4300)), 1, "SELL", "SMART"),
            WireComboLeg(mapping.encode_con_id(spec(4295)), 1, "BUY", "SMART"))
    bag = mapping.resolve_bag(wc(symbol="SPX", sec_type="BAG", combo_legs=legs), listing)
    assert bag == Bag("SPX", (Leg(spec(4300), Action.SELL), Leg(spec(4295), Action.BUY)))
    unknown = (WireComboLeg(999, 1, "BUY", "SMART"),)
    assert mapping.resolve_bag(wc(symbol="SPX", sec_type="BAG", combo_legs=unknown), listing) is None


# --------------------------------------------------------------------------- orders

CONDOR = Bag("SPX", (Leg(spec(4300), Action.SELL), Leg(spec(4275), Action.BUY),
                     Leg(spec(4500, Right.CALL), Action.SELL), Leg(spec(4525, Right.CALL), Action.BUY)))


def test_bag_buy_at_a_negative_limit_is_a_credit_on_the_defined_legs():
    ex = mapping.to_exchange_order(CONDOR, WireOrder(action="BUY", total_quantity=2, order_type="LMT", lmt_price=-1.45))
    assert ex.legs == CONDOR.legs and ex.quantity == 2 and ex.limit == Decimal("-1.45") and ex.sign == 1
    assert ex.ib_price(Decimal("-1.50")) == -1.5


def test_bag_sell_is_the_legs_reversed_at_minus_the_limit():
    ex = mapping.to_exchange_order(CONDOR, WireOrder(action="SELL", total_quantity=1, order_type="LMT", lmt_price=1.45))
    assert [leg.action for leg in ex.legs] == [Action.BUY, Action.SELL, Action.BUY, Action.SELL]
    assert ex.limit == Decimal("-1.45") and ex.sign == -1
    assert ex.ib_price(Decimal("-1.50")) == 1.5  # the client sees the credit it sold for


def test_single_leg_orders_are_one_leg_combos():
    buy = mapping.to_exchange_order(spec(4300), WireOrder(action="BUY", total_quantity=1, order_type="LMT", lmt_price=2.5))
    assert buy.legs == (Leg(spec(4300), Action.BUY),) and buy.limit == Decimal("2.5")
    sell = mapping.to_exchange_order(spec(4300), WireOrder(action="SELL", total_quantity=3, order_type="MKT"))
    assert sell.legs == (Leg(spec(4300), Action.SELL),) and sell.limit is None and sell.quantity == 3


@pytest.mark.parametrize("order, code", [
    (WireOrder(action="BUY", total_quantity=1, order_type="LMT", lmt_price=3.05), 110),  # 0.10 ticks from $3
    (WireOrder(action="BUY", total_quantity=0, order_type="LMT", lmt_price=1.0), 434),
    (WireOrder(action="BUY", total_quantity=1.5, order_type="LMT", lmt_price=1.0), 10243),
    (WireOrder(action="BUY", total_quantity=1, order_type="STP", aux_price=1.0), 387),
    (WireOrder(action="HOLD", total_quantity=1, order_type="LMT", lmt_price=1.0), 201),
    (WireOrder(action="BUY", total_quantity=1, order_type="LMT"), 201),
])
def test_orders_ib_would_refuse(order, code):
    with pytest.raises(MappingError) as e:
        mapping.to_exchange_order(spec(4300), order)
    assert e.value.code == code


def test_indexes_are_not_tradable():
    with pytest.raises(MappingError) as e:
        mapping.to_exchange_order(Index("SPX"), WireOrder(action="BUY", total_quantity=1, order_type="MKT"))
    assert e.value.code == 201


def test_marketable_limit_is_the_natural_price_rounded_to_pay_more():
    quotes = {spec(4300).key: Quote(Decimal("2.10"), Decimal("2.30")),
              spec(4275).key: Quote(Decimal("1.02"), Decimal("1.13"))}
    legs = (Leg(spec(4300), Action.SELL), Leg(spec(4275), Action.BUY))
    assert mapping.marketable_limit(legs, quotes) == Decimal("-0.95")  # -2.10 + 1.13 = -0.97 -> -0.95


# --------------------------------------------------------------------------- bars


def test_parse_end_times():
    now = datetime(2022, 3, 1, 20, 0, tzinfo=UTC)
    assert bars.parse_end("", now) == now
    assert bars.parse_end("20220301 10:00:00 US/Eastern", now) == ny_time(date(2022, 3, 1), "10:00")
    assert bars.parse_end("20220301-15:00:00", now) == datetime(2022, 3, 1, 15, 0, tzinfo=UTC)
    assert bars.parse_end("20220301 11:00:00", now) == ny_time(date(2022, 3, 1), "11:00")  # gateway zone
    assert bars.parse_end("20220302 10:00:00 US/Eastern", now) == now  # never the future
    with pytest.raises(bars.HistoryError):
        bars.parse_end("yesterday", now)


def test_bar_sizes_and_durations(calendar):
    assert bars.parse_bar_size("1 day") is None
    assert bars.parse_bar_size("5 mins") == timedelta(minutes=5)
    assert bars.parse_bar_size("1 hour") == timedelta(hours=1)
    with pytest.raises(bars.HistoryError):
        bars.parse_bar_size("7 mins")
    end = ny_time(date(2022, 3, 1), "15:00")
    assert bars.parse_duration("1 D", end, calendar) == ny_time(date(2022, 3, 1), "00:00")
    assert bars.parse_duration("2 D", end, calendar) == ny_time(date(2022, 2, 28), "00:00")
    assert bars.parse_duration("1 W", end) == end - timedelta(weeks=1)
    assert bars.parse_duration("1 M", end).astimezone(UTC).month == 2
