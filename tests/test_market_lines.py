"""Market-data lines (issue 9): the hedge's candidate calls and held options stream within
IB's line budget, and quotes of streamed options cost no request."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import structlog

from bot.broker.ib import SNAPSHOT_RESERVE, IBBroker
from bot.calendar import ny_time
from bot.clock import SimClock
from bot.domain import OptionSpec, Right
from bot.engine import Engine
from bot.sim.exchange import ExchangeSettings, SimExchange
from bot.sim.gateway import SimGateway
from bot.sim.gateway.protocol import MktDataRequest
from bot.sim.market import SyntheticMarket
from bot.store import Store

from test_gateway_support import ib_errors, wait_for  # noqa: F401 - fixture
from test_tick_trigger import write_covered_call

START = date(2022, 3, 1)


class Rig:
    async def start(self, calendar, cfg, tmp, lines: int = 100):
        market = SyntheticMarket(calendar, seed=3, start=START - timedelta(days=5), vix0=24.0)
        self.exchange = SimExchange(market, calendar, ExchangeSettings(), tmp / "sim.sqlite")
        self.clock = SimClock(ny_time(START, "13:00"), 60.0)
        self.gateway = SimGateway(self.exchange, self.clock, calendar, port=0)
        await self.gateway.start()
        self.requests: list = []
        handle = self.gateway.handle

        def counting(session, request):
            self.requests.append(request)
            return handle(session, request)

        self.gateway.handle = counting
        self.store = Store(cfg.bot.store_path)
        self.broker = IBBroker("127.0.0.1", self.gateway.port, 31, timeout=5, clock=self.clock, reconnect=False,
                               market_data_lines=lines)
        self.engine = Engine(cfg, self.clock, calendar, self.broker, self.store, structlog.get_logger())
        self.cfg = cfg
        return self

    def market_requests(self) -> int:
        return sum(isinstance(r, MktDataRequest) for r in self.requests)

    async def close(self):
        await self.engine.shutdown()
        await asyncio.sleep(0.05)
        await self.gateway.close()
        self.store.close()
        self.exchange.close()


async def test_streams_and_snapshots_never_exceed_the_line_budget(calendar, make_cfg, short_tmp, ib_errors):
    rig = await Rig().start(calendar, make_cfg(), short_tmp, lines=20)
    try:
        await rig.broker.connect()
        expiry = (await rig.broker.expiries("VIX", "VIX"))[1]
        strikes = await rig.broker.strikes("VIX", "VIX", expiry)
        calls = [OptionSpec("VIX", expiry, k, Right.CALL, "VIX") for k in strikes[:40]]
        await rig.broker.stream_quotes(calls[:30])  # more than the budget allows
        lines = rig.broker.market_data_lines()
        assert lines["streamed_options"] == 20 - SNAPSHOT_RESERVE and lines["in_use"] <= 20
        got = await rig.broker.quotes(calls)  # 20 snapshots at once, with 10 lines streaming
        assert len(got) >= 30
        assert rig.broker.peak_lines <= 20
        assert rig.broker.market_data_lines()["in_use"] == 10  # the snapshots gave their lines back
        # the gateway never held more streaming lines for us than the budget
        assert max(len(s.tickers) for s in rig.gateway._sessions.values()) <= 20  # noqa: SLF001
    finally:
        await rig.close()


async def test_streamed_quotes_cost_no_request(calendar, make_cfg, short_tmp, ib_errors):
    rig = await Rig().start(calendar, make_cfg(), short_tmp)
    try:
        await rig.broker.connect()
        expiry = (await rig.broker.expiries("VIX", "VIX"))[1]
        strikes = await rig.broker.strikes("VIX", "VIX", expiry)
        calls = [OptionSpec("VIX", expiry, k, Right.CALL, "VIX") for k in strikes[10:16]]
        await rig.broker.stream_quotes(calls)
        await wait_for(lambda: all(rig.broker._streamed_quote(o.key) for o in calls), 10)  # noqa: SLF001
        before = rig.market_requests()
        got = await rig.broker.quotes(calls)
        assert set(got) == {o.key for o in calls} and rig.market_requests() == before
        await rig.broker.stream_quotes(calls[:2])  # narrowed: the others are cancelled
        assert rig.broker.market_data_lines()["streamed_options"] == 2
    finally:
        await rig.close()


async def test_a_rebalance_streams_the_hedge_candidates_and_status_shows_the_lines(calendar, make_cfg, short_tmp,
                                                                                  ib_errors):
    rig = await Rig().start(calendar, make_cfg(**{"hedge.enabled": True}), short_tmp)
    try:
        await write_covered_call({"store": rig.store, "clock": rig.clock, "exchange": rig.exchange, "cfg": rig.cfg})
        assert await rig.engine.start()
        await rig.engine.hedge.evaluate(scheduled=True)
        lines = (await rig.engine.status())["market_data_lines"]
        assert 10 < lines["streamed_options"] and lines["in_use"] <= lines["peak"] <= 100
        held = {lot.option.key for lot in rig.engine.hedge.lots()}
        assert held <= set(rig.broker._option_streams)  # noqa: SLF001 - what is streamed
        # the next evaluation (a live update) asks the gateway for no option quote at all
        before = rig.market_requests()
        await rig.engine.hedge.evaluate(scheduled=False)
        assert rig.market_requests() == before
    finally:
        await rig.close()
