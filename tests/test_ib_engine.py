"""The engine through IBBroker over the simulated gateway: what only the IB path can show."""

from __future__ import annotations

import asyncio

import structlog
from structlog.testing import capture_logs

from bot.broker.ib import IBBroker
from bot.engine import Engine
from bot.store import Store

from test_gateway_support import ib_errors, make_sim, wait_for  # noqa: F401 - fixtures


async def test_delayed_market_data_blocks_entries(make_sim, make_cfg):
    """FAILURES.md 16: with delayed data (market data type 3) the bot never opens a condor."""
    sim = await make_sim(start_time="15:29")
    cfg = make_cfg(**{"condor.credit_floor": 0.05})
    broker = IBBroker("127.0.0.1", sim.port, 21, timeout=5, clock=sim.clock, reconnect=False, market_data_type=3)
    store = Store(cfg.bot.store_path)
    engine = Engine(cfg, sim.clock, sim.calendar, broker, store, structlog.get_logger())
    with capture_logs() as logs:
        assert await engine.start()
        runner = asyncio.create_task(engine.run())
        await wait_for(lambda: [e for e in logs if e["event"] == "condor.skipped"], timeout=10, what="entry")
        engine.stop()
        await runner
        await engine.shutdown()
    skipped = [e for e in logs if e["event"] == "condor.skipped"]
    assert "stale" in skipped[0]["reason"]
    assert not [e for e in logs if e["event"] == "order.submitted"]
    store.close()


async def test_connected_event_carries_server_version(make_sim, make_cfg):
    sim = await make_sim()
    cfg = make_cfg()
    broker = IBBroker("127.0.0.1", sim.port, 22, timeout=5, clock=sim.clock, reconnect=False)
    store = Store(cfg.bot.store_path)
    engine = Engine(cfg, sim.clock, sim.calendar, broker, store, structlog.get_logger())
    with capture_logs() as logs:
        await engine.start()
        await engine.shutdown()
    [connected] = [e for e in logs if e["event"] == "broker.connected"]
    assert connected["broker"] == "ib" and connected["server_version"] == 178 and connected["paper"] is True
    store.close()
