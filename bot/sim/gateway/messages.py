"""Builders of the messages the gateway sends: each returns the field list of one message
(framing is `protocol.frame`). Field order and count mirror the decoders of ib_async 2.1.0 and
ib_insync 0.9.86 for server versions 176..178: a message one field short is silently dropped
by the clients (their decoder logs and goes on), so every builder here is unit-tested against
those decoders.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .mapping import ContractFields
from .protocol import UNSET_DOUBLE, Out


def managed_accounts(accounts: list[str]) -> list:
    return [Out.MANAGED_ACCTS, 1, ",".join(accounts)]


def next_valid_id(order_id: int) -> list:
    return [Out.NEXT_VALID_ID, 1, order_id]


def error(req_id: int, code: int, text: str, version: int) -> list:
    fields = [Out.ERR_MSG, 2, req_id, code, text]
    if version >= 166:
        fields.append("")  # advancedOrderRejectJson
    return fields


def current_time(epoch_seconds: int) -> list:
    return [Out.CURRENT_TIME, 1, epoch_seconds]


# --------------------------------------------------------------------------- contracts


@dataclass(frozen=True)
class DetailsInfo:
    """The contractDetails fields beyond the contract itself."""

    market_name: str = ""
    min_tick: float = 0.01
    order_types: str = "LMT,MKT,DAY,GTC,WHATIF"
    valid_exchanges: str = ""
    under_con_id: int = 0
    long_name: str = ""
    contract_month: str = ""
    time_zone_id: str = "US/Eastern"
    trading_hours: str = ""
    liquid_hours: str = ""
    under_symbol: str = ""
    under_sec_type: str = ""
    market_rule_ids: str = ""
    real_expiration_date: str = ""
    agg_group: int = 1


def contract_data(req_id: int, c: ContractFields, d: DetailsInfo, version: int) -> list:
    fields = [
        Out.CONTRACT_DATA, req_id, c.symbol, c.sec_type, c.last_trade_date, c.strike, c.right,
        c.exchange, c.currency, c.local_symbol, d.market_name, c.trading_class, c.con_id,
        d.min_tick, c.multiplier, d.order_types, d.valid_exchanges, 1, d.under_con_id,
        d.long_name, c.primary_exchange, d.contract_month, "", "", "", d.time_zone_id,
        d.trading_hours, d.liquid_hours, "", "", 0,  # evRule, evMultiplier, no secIds
        d.agg_group, d.under_symbol, d.under_sec_type, d.market_rule_ids,
        d.real_expiration_date, "",  # stockType
    ]
    if version >= 164:
        fields += [1, 1, 1]  # minSize, sizeIncrement, suggestedSizeIncrement
    return fields


def contract_data_end(req_id: int) -> list:
    return [Out.CONTRACT_DATA_END, 1, req_id]


def sec_def_opt_params(req_id: int, exchange: str, under_con_id: int, trading_class: str,
                       multiplier: str, expirations: list[str], strikes: list[float]) -> list:
    """Nothing may follow the strikes: the decoders take every field after their count."""
    return [
        Out.SECURITY_DEFINITION_OPTION_PARAMETER, req_id, exchange, under_con_id, trading_class,
        multiplier, len(expirations), *expirations, len(strikes), *strikes,
    ]


def sec_def_opt_params_end(req_id: int) -> list:
    return [Out.SECURITY_DEFINITION_OPTION_PARAMETER_END, req_id]


# --------------------------------------------------------------------------- market data


def market_data_type(req_id: int, data_type: int) -> list:
    return [Out.MARKET_DATA_TYPE, 1, req_id, data_type]


def tick_price(req_id: int, tick_type: int, price: float, size: float, attr_mask: int = 0) -> list:
    return [Out.TICK_PRICE, 6, req_id, tick_type, price, size, attr_mask]


def tick_size(req_id: int, tick_type: int, size: float) -> list:
    return [Out.TICK_SIZE, 6, req_id, tick_type, size]


def tick_option_computation(req_id: int, tick_type: int, iv: float, delta: float, price: float,
                            pv_dividend: float, gamma: float, vega: float, theta: float,
                            und_price: float, attrib: int = 1) -> list:
    """-1 (iv, price, pvDividend, undPrice) / -2 (greeks) mean "not computed"."""
    return [
        Out.TICK_OPTION_COMPUTATION, req_id, tick_type, attrib, iv, delta, price, pv_dividend,
        gamma, vega, theta, und_price,
    ]


def tick_snapshot_end(req_id: int) -> list:
    return [Out.TICK_SNAPSHOT_END, 1, req_id]


def historical_data(req_id: int, start: str, end: str, bars: list[tuple]) -> list:
    """bars: (date, open, high, low, close, volume, wap, count) each."""
    fields = [Out.HISTORICAL_DATA, req_id, start, end, len(bars)]
    for bar in bars:
        fields += list(bar)
    return fields


# --------------------------------------------------------------------------- orders


@dataclass(frozen=True)
class OrderView:
    """What openOrder / completedOrder echo of one order."""

    order_id: int
    client_id: int
    perm_id: int
    action: str
    total_quantity: float
    order_type: str
    lmt_price: float | None
    aux_price: float | None
    tif: str
    account: str
    order_ref: str
    outside_rth: bool = False
    oca_group: str = ""
    open_close: str = ""
    origin: int = 0
    parent_id: int = 0
    good_after_time: str = ""
    good_till_date: str = ""
    model_code: str = ""
    transmit: bool = True


@dataclass(frozen=True)
class ComboLegView:
    con_id: int
    ratio: int
    action: str
    exchange: str


@dataclass(frozen=True)
class WhatIfMargins:
    """Numeric margin fields of a what-if answer (dollars)."""

    init_before: float
    maint_before: float
    equity_before: float
    init_change: float
    maint_change: float
    equity_change: float
    init_after: float
    maint_after: float
    equity_after: float
    commission: float


@dataclass(frozen=True)
class OrderStateView:
    status: str
    what_if: WhatIfMargins | None = None
    warning: str = ""
    legs: tuple[ComboLegView, ...] = field(default_factory=tuple)
    legs_description: str = ""


def _price(value: float | None):
    return "" if value is None or value == UNSET_DOUBLE else value


def _legs(legs: tuple[ComboLegView, ...]) -> list:
    fields: list = [len(legs)]
    for leg in legs:
        # conId, ratio, action, exchange, openClose, shortSaleSlot, designatedLocation, exemptCode
        fields += [leg.con_id, leg.ratio, leg.action, leg.exchange, 0, 0, "", -1]
    return fields


def _margin_fields(state: OrderStateView) -> list:
    m = state.what_if
    if m is None:
        return ["", "", "", "", "", "", "", "", "", "", "", "", "", state.warning]
    money = lambda v: f"{v:.2f}"  # noqa: E731 - IB sends margins as text
    return [
        money(m.init_before), money(m.maint_before), money(m.equity_before),
        money(m.init_change), money(m.maint_change), money(m.equity_change),
        money(m.init_after), money(m.maint_after), money(m.equity_after),
        m.commission, m.commission, m.commission, "USD", state.warning,
    ]


def open_order(o: OrderView, c: ContractFields, state: OrderStateView, version: int, what_if: bool = False) -> list:
    """openOrder (no version field). Order of sections: contract, order basics, FA, order
    details, delta-neutral (absent), combo legs, scale/hedge/algo (absent), what-if state,
    conditions (none), adjusted-order fields, then the version-dependent tail."""
    fields = [Out.OPEN_ORDER, o.order_id, *c.wire()]
    fields += [
        o.action, o.total_quantity, o.order_type, _price(o.lmt_price), _price(o.aux_price), o.tif,
        o.oca_group, o.account, o.open_close, o.origin, o.order_ref, o.client_id, o.perm_id,
        o.outside_rth, False, 0, o.good_after_time,  # hidden, discretionaryAmt
        "",  # deprecated sharesAllocation
        "", "", "",  # faGroup, faMethod, faPercentage
    ]
    if version < 177:
        fields.append("")  # faProfile
    fields += [
        o.model_code, o.good_till_date, "", "", "",  # rule80A, percentOffset, settlingFirm
        0, "", -1,  # shortSaleSlot, designatedLocation, exemptCode
        0, "", "", "", "", "",  # auctionStrategy, startingPrice, stockRefPrice, delta, range
        0, False, False, False, "", 0,  # displaySize, blockOrder, sweepToFill, allOrNone, minQty, ocaType
        False, False, "",  # eTradeOnly, firmQuoteOnly, nbboPriceCap
        o.parent_id, 0, "", 0,  # triggerMethod, volatility, volatilityType
        "", "",  # deltaNeutralOrderType (empty: no delta-neutral section), deltaNeutralAuxPrice
        False, 0, "", "", "", "",  # continuousUpdate, referencePriceType, trail, basisPoints
        state.legs_description,
    ]
    fields += _legs(state.legs)
    fields += [0, 0]  # orderComboLegs, smartComboRoutingParams
    fields += ["", "", ""]  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement (unset)
    fields += [""]  # hedgeType
    fields += [False, "", "", False, 0]  # optOutSmartRouting, clearing x2, notHeld, no dnc
    fields += [""]  # algoStrategy
    fields += [False, what_if, state.status, *_margin_fields(state), False, False]
    fields += [0]  # conditions
    fields += [
        "", "", "", "", "", "", "", 0,  # adjusted order type .. adjustableTrailingUnit
        "", "", "",  # softDollarTier name, value, displayName
        "", False, False, "", False,  # cashQty, dontUseAutoPriceForHedge, isOmsContainer, ..
    ]
    if version >= 159:
        fields.append("")  # duration
    if version >= 160:
        fields.append("")  # postToAts
    if version >= 162:
        fields.append(False)  # autoCancelParent
    if version >= 170:
        fields += ["", "", "", "", ""]  # minTradeQty .. midOffsetAtHalf
    return fields


def open_order_end() -> list:
    return [Out.OPEN_ORDER_END, 1]


def completed_order(o: OrderView, c: ContractFields, state: OrderStateView, filled: float,
                    completed_time: str, completed_status: str, version: int) -> list:
    """completedOrder: no orderId / clientId (clients key these trades by permId)."""
    fields = [Out.COMPLETED_ORDER, *c.wire()]
    fields += [
        o.action, o.total_quantity, o.order_type, _price(o.lmt_price), _price(o.aux_price), o.tif,
        o.oca_group, o.account, o.open_close, o.origin, o.order_ref, o.perm_id, o.outside_rth,
        False, 0, o.good_after_time, "", "", "",  # hidden, discretionaryAmt, .., FA
    ]
    if version < 177:
        fields.append("")  # faProfile
    fields += [
        o.model_code, o.good_till_date, "", "", "",  # rule80A, percentOffset, settlingFirm
        0, "", -1,  # shortSaleSlot, designatedLocation, exemptCode
        "", "", "", "", "",  # startingPrice, stockRefPrice, delta, stockRange x2
        0, False, False, "", 0, 0, "", 0,  # displaySize .. volatilityType
        "", "",  # deltaNeutralOrderType, deltaNeutralAuxPrice
        False, 0, "", "",  # continuousUpdate, referencePriceType, trailStopPrice, trailingPercent
        state.legs_description,
    ]
    fields += _legs(state.legs)
    fields += [0, 0]  # orderComboLegs, smartComboRoutingParams
    fields += ["", "", ""]  # scale (unset increment: no scale section)
    fields += [""]  # hedgeType
    fields += ["", "", False, 0]  # clearingAccount, clearingIntent, notHeld, no dnc
    fields += [""]  # algoStrategy
    fields += [False, state.status, False, False]  # solicited, status, randomize x2
    fields += [0]  # conditions
    fields += [
        "", "", "", False, False, "", filled, 0, False, "", False, False, 0,
        completed_time, completed_status,
    ]
    if version >= 170:
        fields += ["", "", "", "", ""]
    return fields


def completed_orders_end() -> list:
    return [Out.COMPLETED_ORDERS_END]


def order_status(order_id: int, status: str, filled: float, remaining: float, avg_fill_price: float,
                 perm_id: int, parent_id: int, last_fill_price: float, client_id: int,
                 why_held: str = "", mkt_cap_price: float = 0.0) -> list:
    return [
        Out.ORDER_STATUS, order_id, status, filled, remaining, avg_fill_price, perm_id, parent_id,
        last_fill_price, client_id, why_held, mkt_cap_price,
    ]


@dataclass(frozen=True)
class ExecutionView:
    exec_id: str
    time: str  # "YYYYMMDD HH:MM:SS US/Eastern"
    account: str
    exchange: str
    side: str  # BOT | SLD
    shares: float
    price: float
    perm_id: int
    client_id: int
    order_id: int
    cum_qty: float
    avg_price: float
    order_ref: str


def exec_details(req_id: int, c: ContractFields, e: ExecutionView, version: int) -> list:
    fields = [
        Out.EXECUTION_DATA, req_id, e.order_id, *c.wire(), e.exec_id, e.time, e.account,
        e.exchange, e.side, e.shares, e.price, e.perm_id, e.client_id, 0, e.cum_qty,
        e.avg_price, e.order_ref, "", "", "", 2,  # evRule, evMultiplier, modelCode, lastLiquidity
    ]
    if version >= 178:
        fields.append(False)  # pendingPriceRevision
    return fields


def exec_details_end(req_id: int) -> list:
    return [Out.EXECUTION_DATA_END, 1, req_id]


def commission_report(exec_id: str, commission: float, realized_pnl: float | None = None) -> list:
    """Exactly 8 fields; an unknown realized P&L is IB's unset double."""
    pnl = UNSET_DOUBLE if realized_pnl is None else realized_pnl
    return [Out.COMMISSION_REPORT, 1, exec_id, commission, "USD", pnl, UNSET_DOUBLE, ""]


# --------------------------------------------------------------------------- account


def position(account: str, c: ContractFields, quantity: float, avg_cost: float) -> list:
    """Exactly 16 fields; positions carry no exchange."""
    return [Out.POSITION_DATA, 3, account, *c.wire(exchange=""), quantity, avg_cost]


def position_end() -> list:
    return [Out.POSITION_END, 1]


def account_value(key: str, value: str, currency: str, account: str) -> list:
    return [Out.ACCT_VALUE, 2, key, value, currency, account]


def portfolio_value(c: ContractFields, quantity: float, market_price: float, market_value: float,
                    average_cost: float, unrealized: float, realized: float, account: str) -> list:
    """Exactly 20 fields: primaryExchange stands where the other messages have exchange."""
    return [
        Out.PORTFOLIO_VALUE, 8, *c.wire(exchange=c.primary_exchange), quantity, market_price,
        market_value, average_cost, unrealized, realized, account,
    ]


def account_time(hhmm: str) -> list:
    return [Out.ACCT_UPDATE_TIME, 1, hhmm]


def account_download_end(account: str) -> list:
    return [Out.ACCT_DOWNLOAD_END, 1, account]


def account_update_multi(req_id: int, account: str, model_code: str, key: str, value: str, currency: str) -> list:
    return [Out.ACCOUNT_UPDATE_MULTI, 1, req_id, account, model_code, key, value, currency]


def account_update_multi_end(req_id: int) -> list:
    return [Out.ACCOUNT_UPDATE_MULTI_END, 1, req_id]


def account_summary(req_id: int, account: str, tag: str, value: str, currency: str) -> list:
    return [Out.ACCOUNT_SUMMARY, 1, req_id, account, tag, value, currency]


def account_summary_end(req_id: int) -> list:
    return [Out.ACCOUNT_SUMMARY_END, 1, req_id]



# --------------------------------------------------------------------------- the rest of the API
# (no version field after the id where the decoders use skip=1)


def tick_generic(req_id: int, tick_type: int, value: float) -> list:
    return [45, 6, req_id, tick_type, value]


def scanner_parameters(xml: str) -> list:
    return [19, 1, xml]


def position_multi(req_id: int, account: str, model_code: str, c: ContractFields, quantity: float,
                   avg_cost: float) -> list:
    return [71, 1, req_id, account, *c.wire(exchange=""), quantity, avg_cost, model_code]


def position_multi_end(req_id: int) -> list:
    return [72, 1, req_id]


def display_group_list(req_id: int, groups: str) -> list:
    return [67, 1, req_id, groups]


def display_group_updated(req_id: int, contract_info: str) -> list:
    return [68, 1, req_id, contract_info]


def soft_dollar_tiers(req_id: int) -> list:
    return [77, req_id, 0]


def family_codes(pairs: list[tuple[str, str]]) -> list:
    return [78, len(pairs), *[x for pair in pairs for x in pair]]


@dataclass(frozen=True)
class SymbolSample:
    con_id: int
    symbol: str
    sec_type: str
    primary_exchange: str
    derivative_sec_types: tuple[str, ...]
    description: str


def symbol_samples(req_id: int, samples: list[SymbolSample], version: int) -> list:
    fields = [79, req_id, len(samples)]
    for s in samples:
        fields += [s.con_id, s.symbol, s.sec_type, s.primary_exchange, "USD", len(s.derivative_sec_types),
                   *s.derivative_sec_types]
        if version >= 176:
            fields += [s.description, ""]  # description, issuerId
    return fields


def mkt_depth_exchanges(rows: list[tuple[str, str, str, str, int]]) -> list:
    return [80, len(rows), *[x for row in rows for x in row]]


def smart_components(req_id: int, rows: list[tuple[int, str, str]]) -> list:
    return [82, req_id, len(rows), *[x for row in rows for x in row]]


def news_providers(rows: list[tuple[str, str]]) -> list:
    return [85, len(rows), *[x for row in rows for x in row]]


def historical_news_end(req_id: int, has_more: bool = False) -> list:
    return [87, req_id, has_more]


def head_timestamp(req_id: int, text: str) -> list:
    return [88, req_id, text]


def historical_data_update(req_id: int, bar_count: int, when: str, open_: float, close: float, high: float,
                           low: float, average: float, volume: float) -> list:
    return [90, req_id, bar_count, when, open_, close, high, low, average, volume]


def market_rule(rule_id: int, increments: list[tuple[float, float]]) -> list:
    return [93, rule_id, len(increments), *[x for inc in increments for x in inc]]


def pnl(req_id: int, daily: float, unrealized: float, realized: float) -> list:
    return [94, req_id, daily, unrealized, realized]


def pnl_single(req_id: int, position: float, daily: float, unrealized: float, realized: float, value: float) -> list:
    return [95, req_id, position, daily, unrealized, realized, value]


def user_info(req_id: int, white_branding_id: str = "") -> list:
    return [107, req_id, white_branding_id]
