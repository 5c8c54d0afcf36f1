"""SPY/QQQ at the simulated exchange (bot.sim.equity_account, bot.sim.margin): stock and ETF
option orders, IB's stock commission, the Reg T / Cboe margin check, exercise and assignment
into stock at the expiry close; index options keep their own path."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from bot.calendar import ny_time
from bot.domain import Action, Leg, OptionSpec, Right
from bot.sim.equities import Stock, instrument_from_key, price_at
from bot.sim.equity_account import stock_commission
from bot.sim.exchange import ExchangeReject, ExchangeSettings, SimExchange
from bot.sim.margin import Holding, cash_secured_put, requirement
from bot.sim.market import SyntheticMarket

FRIDAY = date(2022, 3, 4)
SPY = Stock("SPY")


@pytest.fixture
def ex(calendar):
    market = SyntheticMarket(calendar, seed=3, start=FRIDAY - timedelta(days=8), vix0=20.0)
    exchange = SimExchange(market, calendar, ExchangeSettings(commissions="flat"), ":memory:")  # IB fixed stock rates
    yield exchange
    exchange.close()


def at(hhmm: str, day: date = FRIDAY):
    return ny_time(day, hhmm)


def spy_option(ex, right: Right, moneyness: float, expiry: date = FRIDAY, t=None) -> OptionSpec:
    s = price_at(ex.market, "SPY", t or at("15:00"))
    return OptionSpec("SPY", expiry, Decimal(round(s * (1 + moneyness))), right, "SPY")


def sell_at_bid(ex, opt: OptionSpec, t, qty: int = 1, ref: str = "o"):
    bid = ex.price_options([opt], t)[opt.key].bid
    return ex.place_combo(ref, [Leg(opt, Action.SELL, 1)], qty, -bid, t)


def test_keys_and_quotes():
    assert instrument_from_key("STK SPY") == SPY and SPY.key == "STK SPY" and SPY.multiplier == 1
    opt = instrument_from_key("QQQ 20220304 350 C")
    assert (opt.symbol, opt.trading_class, opt.multiplier) == ("QQQ", "QQQ", 100)
    assert instrument_from_key("SPXW 20220304 4300 P").symbol == "SPX"


def test_stock_orders_commission_and_positions(ex):
    t = at("10:00")
    q = ex.price_options([SPY], t)[SPY.key]
    assert q.ask - q.bid == Decimal("0.02")
    st = ex.place_combo("buy", [Leg(SPY, Action.BUY, 1)], 300, q.ask, t)
    assert st.filled == 300 and st.avg_price == q.ask
    [fill] = ex.fills(["buy"])
    assert fill.option == SPY and fill.quantity == 300 and fill.commission == Decimal("1.50")
    assert ex.cash == Decimal("1000000") - q.ask * 300 - Decimal("1.50")
    ex.place_combo("sell", [Leg(SPY, Action.SELL, 1)], 100, -q.bid, t)
    [p] = ex.positions()
    assert p.option == SPY and p.quantity == 200 and p.avg_cost == q.ask
    acct = ex.account(t)
    assert acct.net_liquidation == pytest.approx(ex.cash + 200 * q.mid, abs=Decimal("0.01"))
    assert acct.maintenance_margin == 0  # the index max-loss figure: no index options
    with pytest.raises(ExchangeReject) as e:
        ex.place_combo("bad", [Leg(SPY, Action.BUY, 1)], 1, q.ask + Decimal("0.005"), t)
    assert e.value.code == 110


def test_ib_stock_commissions():
    # IB's own examples of its fixed rate: 100 @ $25 = $1.00, 1,000 @ $25 = $5.00, 1,000 @ $0.25 = $2.50
    assert stock_commission(100, Decimal("25")) == Decimal("1.00")  # the $1 minimum
    assert stock_commission(1000, Decimal("25")) == Decimal("5.00")  # $0.005 a share
    assert stock_commission(-1000, Decimal("25")) == Decimal("5.00")
    assert stock_commission(1000, Decimal("0.25")) == Decimal("2.50")  # 1% of value, below the minimum too
    assert stock_commission(100, Decimal("25"), tiered=True) == Decimal("0.35")
    assert stock_commission(1000, Decimal("25"), tiered=True) == Decimal("3.50")


def test_the_ib_schedule_charges_tiered_stock_commissions(calendar):
    market = SyntheticMarket(calendar, seed=3, start=FRIDAY - timedelta(days=8), vix0=20.0)
    ex = SimExchange(market, calendar, ExchangeSettings(commissions="ib"), ":memory:")
    t = at("10:00")
    ask = ex.price_options([SPY], t)[SPY.key].ask
    ex.place_combo("buy", [Leg(SPY, Action.BUY, 1)], 1000, ask, t)
    assert ex.fills(["buy"])[0].commission == Decimal("3.50")
    ex.close()


def test_reg_t_refuses_more_than_twice_the_equity_in_stock(ex):
    t = at("10:00")
    ask = ex.price_options([SPY], t)[SPY.key].ask
    too_many = int(2_100_000 / float(ask))
    with pytest.raises(ExchangeReject) as e:
        ex.place_combo("big", [Leg(SPY, Action.BUY, 1)], too_many, ask, t)
    assert e.value.code == 201 and "Initial Margin requirement" in e.value.reason
    ex.place_combo("ok", [Leg(SPY, Action.BUY, 1)], int(1_900_000 / float(ask)), ask, t)
    assert ex.cash < 0  # bought on margin


def test_short_put_assigned_at_the_close(ex):
    t = at("15:00")
    put = spy_option(ex, Right.PUT, 0.03)  # in the money
    otm = spy_option(ex, Right.PUT, -0.05)
    sold = sell_at_bid(ex, put, t, ref="put")
    sell_at_bid(ex, otm, t, ref="otm")
    cash, interest = ex.cash, ex.interest
    ex.advance_to(at("15:59"))
    assert {p.option.key for p in ex.positions()} == {put.key, otm.key}  # not before the close
    ex.advance_to(at("16:01"))
    [p] = ex.positions()
    assert p.option == SPY and p.quantity == 100 and p.avg_cost == put.strike
    assert ex.cash == cash - put.strike * 100 + (ex.interest - interest)  # and the close's T-bill interest
    opt_fill, stock_fill = ex.fills(["assignment"])
    assert (opt_fill.option, opt_fill.quantity, opt_fill.price, opt_fill.commission) == (put, 1, 0, 0)
    assert (stock_fill.option, stock_fill.quantity, stock_fill.price) == (SPY, 100, put.strike)
    assert ex.settlement(otm.key)[1] == 0 and ex.settlement(put.key)[0] == -1
    assert sold.filled == 1


def test_long_call_exercised_and_covered_call_called_away(ex):
    t = at("15:00")
    ask = ex.price_options([SPY], t)[SPY.key].ask
    ex.place_combo("shares", [Leg(SPY, Action.BUY, 1)], 100, ask, t)
    short_call = spy_option(ex, Right.CALL, -0.03)  # in the money: called away
    sell_at_bid(ex, short_call, t, ref="covered")
    long_call = spy_option(ex, Right.CALL, -0.02)
    q = ex.price_options([long_call], t)[long_call.key]
    ex.place_combo("long", [Leg(long_call, Action.BUY, 1)], 1, q.ask, t)
    ex.advance_to(at("16:01"))
    [p] = ex.positions()  # 100 bought, 100 called away, 100 by exercise
    assert p.option == SPY and p.quantity == 100 and p.avg_cost == long_call.strike
    refs = {f.order_ref: f for f in ex.fills() if f.option == SPY and f.order_ref in ("assignment", "exercise")}
    assert refs["assignment"].quantity == -100 and refs["assignment"].price == short_call.strike
    assert refs["exercise"].quantity == 100 and refs["exercise"].price == long_call.strike


def test_naked_short_put_margin_check(ex):
    t = at("15:00")
    put = spy_option(ex, Right.PUT, -0.05, expiry=date(2022, 3, 18))
    q = ex.price_options([put], t)[put.key]
    s = price_at(ex.market, "SPY", t)
    per_contract = requirement([Holding(put, -1, float(q.mid), s)])
    affordable = int(1_000_000 / per_contract)
    with pytest.raises(ExchangeReject):
        sell_at_bid(ex, put, t, qty=affordable + 3, ref="too-many")
    sell_at_bid(ex, put, t, qty=affordable - 3, ref="fits")


def test_index_options_keep_their_max_loss_check_beside_stock(ex):
    t = at("10:00")
    ask = ex.price_options([SPY], t)[SPY.key].ask
    ex.place_combo("shares", [Leg(SPY, Action.BUY, 1)], 100, ask, t)
    spx = ex.market.state_at(t).spx
    k = Decimal(int(spx * 1.02 / 5) * 5)
    call = OptionSpec("SPX", date(2022, 3, 7), k, Right.CALL, "SPXW")
    bid = ex.price_options([call], t)[call.key].bid
    with pytest.raises(ExchangeReject) as e:  # a naked SPX call is still unbounded at the exchange
        ex.place_combo("naked", [Leg(call, Action.SELL, 1)], 1, -bid, t)
    assert "insufficient funds" in e.value.reason


def test_margin_rules():
    put = OptionSpec("SPY", FRIDAY, Decimal(430), Right.PUT, "SPY")
    call = OptionSpec("SPY", FRIDAY, Decimal(450), Right.CALL, "SPY")
    # naked: premium + max(20% x 440 - OTM, 10% x (strike for puts, underlying for calls))
    assert requirement([Holding(put, -1, 2.0, 440.0)]) == pytest.approx(100 * (2 + 88 - 10))
    assert requirement([Holding(call, -1, 1.0, 440.0)]) == pytest.approx(100 * (1 + 88 - 10))
    far = OptionSpec("SPY", FRIDAY, Decimal(300), Right.PUT, "SPY")
    assert requirement([Holding(far, -1, 0.05, 440.0)]) == pytest.approx(100 * (0.05 + 30))  # the 10% floor
    shares = Holding(SPY, 100, 440.0, 440.0)
    assert requirement([shares]) == pytest.approx(22_000) and requirement([shares], True) == pytest.approx(11_000)
    assert requirement([shares, Holding(call, -1, 1.0, 440.0)]) == pytest.approx(22_000)  # covered
    assert requirement([Holding(SPY, -100, 440.0, 440.0)], True) == pytest.approx(13_200)  # short: 30%
    assert cash_secured_put(put, 2.0) == pytest.approx(42_800)


def test_expiry_rule_exercise_assignment_and_worthless(ex):
    """`equity_account.expiries`, the rule the exchange books: ITM by a cent or more at the
    close is exercised (long) or assigned (short) into 100 shares a contract at the strike;
    OTM leaves at 0.00 with nothing delivered; nothing expires before the close; stock and
    index positions are not its business."""
    from bot.sim.equity_account import ASSIGNMENT_REF, EXERCISE_REF, expiries

    short_put = spy_option(ex, Right.PUT, 0.03)
    long_call = spy_option(ex, Right.CALL, -0.03)
    otm_put = spy_option(ex, Right.PUT, -0.05)
    held = [(short_put.key, -2), (long_call.key, 1), (otm_put.key, 3), (SPY.key, 100), ("SPX 20220304 4300 P", -1)]
    assert expiries(held, ex.calendar, ex.market, at("15:59")) == []
    got = {e.key: e for e in expiries(held, ex.calendar, ex.market, at("16:01"))}
    assert set(got) == {short_put.key, long_call.key, otm_put.key}
    close = price_at(ex.market, "SPY", ex.calendar.spxw_expiry_time(FRIDAY))

    p = got[short_put.key]  # assigned: buys 200 shares at the strike
    assert p.ref == ASSIGNMENT_REF and p.price == Decimal(f"{short_put.intrinsic(close):.2f}") > 0
    assert p.deliveries == ((short_put.key, 2, Decimal("0.00")), (SPY.key, 200, short_put.strike))
    assert p.cash == -200 * short_put.strike
    c = got[long_call.key]  # exercised: buys 100 shares at the strike
    assert c.ref == EXERCISE_REF and c.deliveries[1] == (SPY.key, 100, long_call.strike)
    assert c.cash == -100 * long_call.strike
    o = got[otm_put.key]
    assert o.price == 0 and o.deliveries == () and o.ref is None and o.cash == 0
