"""The dashboard's server side: the page and its files come from the package, one event stream
per page fed by one status read per interval for all pages, history from the store, log events
recorded by the tap, read-only, behind the token when there is one. (The page itself runs in a
real browser in tests/test_dashboard_browser.py.)"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import aiohttp
import structlog

from bot.config import Config
from bot.ops.dashboard import STATIC, DashboardHub, static_bytes
from bot.ops.http import HttpServer
from bot.store import Store
from test_ops import FakeSurface

T0 = datetime(2022, 3, 1, 15, 0, tzinfo=UTC)


def store_with_history(path) -> Store:
    store = Store(path)
    for i in range(3):
        store.add_signal(T0 + timedelta(minutes=5 * i), "vix", {"vix": 20 + i, "rsi": 50, "macd": 0.1, "signal": 0.2,
                                                                "tier": 1, "activated": i == 2})
    store.add_signal(T0, "account", {"at": "start", "net_liquidation": "1000000"})
    return store


async def frames(resp, n: int) -> list[dict]:
    out = []
    while len(out) < n:
        line = (await asyncio.wait_for(resp.content.readline(), 20)).decode()
        if line.startswith("data: "):
            out.append(json.loads(line[6:]))
    return out


async def start(short_tmp, **http):
    surface = FakeSurface()
    store = store_with_history(short_tmp / "bot.sqlite")
    cfg = Config.model_validate({"http": {"enabled": True, "port": 0, "dashboard_interval_s": 0.2, **http}}).http
    hub = DashboardHub(surface, store, cfg.dashboard_interval_s, {"tier_bounds": [16.0, 20.0]})
    server = HttpServer(cfg, surface, structlog.get_logger(), hub)
    return surface, store, hub, server, await server.start()


async def test_page_and_files_come_from_the_package(short_tmp):
    _, store, _, server, url = await start(short_tmp)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/") as r:
                html = await r.text()
                assert r.status == 200 and r.content_type == "text/html"
            assert "static/vendor/uPlot.iife.min.js" in html
            assert "http://" not in html and "https://" not in html and "//cdn" not in html  # works offline
            for name, kind in STATIC.items():
                async with s.get(f"{url}/static/{name}") as r:
                    assert r.status == 200 and r.content_type == kind and await r.read() == static_bytes(name)
            async with s.get(url + "/static/vendor/uPlot.LICENSE") as r:
                assert "MIT License" in await r.text()
            for bad in ("/static/../http.py", "/static/dashboard.html.bak", "/static/%2e%2e/http.py"):
                async with s.get(url + bad) as r:
                    assert r.status == 404, bad
            for method in ("POST", "PUT", "DELETE"):
                for path in ("/", "/events", "/static/dashboard.js"):
                    async with s.request(method, url + path) as r:
                        assert r.status == 405, (method, path)
    finally:
        await server.close()
        store.close()


async def test_one_status_read_per_interval_for_every_open_page(short_tmp):
    surface, store, hub, server, url = await start(short_tmp)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/events") as a, s.get(url + "/events") as b:
                assert a.headers["Content-Type"] == "text/event-stream"
                first_a, first_b = (await frames(a, 1))[0], (await frames(b, 1))[0]
                for first in (first_a, first_b):
                    assert first["kind"] == "snapshot" and first["meta"]["tier_bounds"] == [16.0, 20.0]
                    assert [p[1] for p in first["vix"]] == [20, 21, 22] and first["vix"][2][6] == 1
                    assert first["equity"][0][1] == 1000000.0
                    assert first["status"]["account"]["net_liquidation"] == "1000000.5"
                calls = surface.calls
                hub({"event": "condor.opened", "level": "info", "timestamp": "2022-03-01T20:30:00Z",
                     "condor_id": "ic-1", "wall_time": "x"})
                store.add_signal(T0 + timedelta(minutes=15), "vix", {"vix": 23, "rsi": 55, "macd": 0.3, "signal": 0.2,
                                                                     "tier": 2, "activated": True})
                got_a, got_b = await frames(a, 3), await frames(b, 3)
                assert [f["frame"] for f in got_a] == [f["frame"] for f in got_b]  # the same frames
                updates = [f for f in got_a if f["kind"] == "update"]
                assert [p[1] for f in updates for p in f["vix"]] == [23]  # only what is new
                assert [e["event"] for f in updates for e in f["events"]] == ["condor.opened"]
                assert all("wall_time" not in e for f in updates for e in f["events"])
                reads = surface.calls - calls
                assert reads <= max(f["frame"] for f in got_a) + 1  # one read per frame, not per page
            # both pages gone: the frame task stops, no more status reads
            await asyncio.sleep(0.6)
            settled = surface.calls
            await asyncio.sleep(0.6)
            assert surface.calls == settled and not hub._clients
    finally:
        await server.close()
        store.close()


async def test_derived_pnl_today_and_since_start(short_tmp):
    store = Store(short_tmp / "bot.sqlite")
    store.add_signal(T0 - timedelta(days=1), "account", {"at": "start", "net_liquidation": "1000000"})
    store.add_signal(T0 - timedelta(hours=20), "account", {"at": "close", "net_liquidation": "1010000"})
    hub = DashboardHub(FakeSurface(), store)
    status = {"time": T0.isoformat(), "account": {"net_liquidation": "1012000"}}
    _, equity = hub._equity_points(0)
    assert hub._derived(status, equity) == {"pnl_today": 2000.0, "pnl_since_start": 12000.0,
                                            "baseline_today": 1010000.0}
    store.close()


async def test_event_stream_behind_the_token(short_tmp):
    token = "s3cret-token-0123456789"
    _, store, _, server, url = await start(short_tmp, token=token)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "/events") as r:
                assert r.status == 401
            async with s.get(url + "/?token=wrong") as r:
                assert r.status == 401
            async with s.get(url + "/events?token=" + token) as r:
                assert r.status == 200 and (await frames(r, 1))[0]["kind"] == "snapshot"
    finally:
        await server.close()
        store.close()
