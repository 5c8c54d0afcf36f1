"""The live dashboard at `/` of the read-only HTTP endpoint: a static page (package data, no
CDN: uPlot is vendored beside it with its MIT licence) fed by one server-sent event stream.

No polling storm: however many pages are open, one task reads the control surface's `status()`
every `interval_s` (wall clock) while at least one page listens, and sends each page the same
frame. A page that connects gets a first frame with the history (VIX/RSI/MACD from the store's
`vix` signals, the equity curve from its `account` signals, the last events); later frames carry
only what is new. A page too slow to take its frames is dropped (it reconnects by itself:
EventSource does). Nothing here changes state: the hub only reads the store and records the log
events it is shown (a log tap, like the notifier's).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from datetime import datetime
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

EVENTS_KEPT = 200  # the last events a new page is shown
SERIES_KEPT = 2000  # signal points a new page is shown
QUEUE_FRAMES = 8  # frames a page may fall behind before it is dropped
STATIC = {  # the only files served: name -> content type
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "vendor/uPlot.iife.min.js": "text/javascript",
    "vendor/uPlot.min.css": "text/css",
    "vendor/uPlot.LICENSE": "text/plain",
}
NY = ZoneInfo("America/New_York")
QUIET_EVENTS = {"order.modified", "http.listening"}


def static_bytes(name: str) -> bytes:
    return resources.files("bot.ops").joinpath("static", name).read_bytes()


def _num(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _point_vix(at, p: dict[str, Any]) -> list:
    return [at.timestamp(), _num(p.get("vix")), _num(p.get("rsi")), _num(p.get("macd")), _num(p.get("signal")),
            p.get("tier"), 1 if p.get("activated") else 0]


def _point_equity(at, p: dict[str, Any]) -> list:
    return [at.timestamp(), _num(p.get("net_liquidation")), p.get("at")]


class DashboardHub:
    """Keeps the page's history and fans status frames out to every open event stream."""

    def __init__(self, surface, store, interval_s: float = 1.0, meta: dict[str, Any] | None = None):
        self.meta = meta or {}  # fixed figures the page draws with (tier bounds)
        self.surface = surface
        self.store = store
        self.interval_s = interval_s
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self._event_seq = 0
        self._clients: set[asyncio.Queue] = set()
        self._task: asyncio.Task | None = None
        self._frame_no = 0
        self._vix_id = 0
        self._equity_id = 0
        self._sent_event_seq = 0
        self._equity_all: list = []

    # --- a log tap: record only --------------------------------------------------------------
    def __call__(self, event: dict[str, Any]) -> None:
        name = event.get("event", "")
        if name in QUIET_EVENTS:
            return
        self._event_seq += 1
        keep = {k: v for k, v in event.items() if k not in ("wall_time", "run_id")}
        self.events.append({"seq": self._event_seq, **json.loads(json.dumps(keep, default=str))})

    # --- frames ------------------------------------------------------------------------------
    async def _status(self) -> dict[str, Any]:
        try:
            status = await asyncio.wait_for(self.surface.status(), 10.0)
        except TimeoutError:
            status = {"error": "status did not answer within 10s", "health": self.surface.health()}
        return json.loads(json.dumps(status, default=str))

    def _vix_points(self, after: int) -> tuple[int, list]:
        rows = self.store.signals_after("vix", after, SERIES_KEPT)
        return (rows[-1][0] if rows else after), [_point_vix(at, p) for _, at, p in rows]

    def _equity_points(self, after: int) -> tuple[int, list]:
        rows = self.store.signals_after("account", after, SERIES_KEPT)
        return (rows[-1][0] if rows else after), [_point_equity(at, p) for _, at, p in rows]

    def _derived(self, status: dict[str, Any], equity: list) -> dict[str, Any]:
        """P&L today (against the last journaled account before today's session) and since the
        first journaled account: figures of the page that `status` does not carry itself."""
        nl = _num((status.get("account") or {}).get("net_liquidation"))
        out: dict[str, Any] = {"pnl_today": None, "pnl_since_start": None, "baseline_today": None}
        if nl is None or not equity:
            return out
        out["pnl_since_start"] = round(nl - equity[0][1], 2)
        today = _ny_day(datetime.fromisoformat(status["time"]).timestamp()) if status.get("time") else ""
        before = [p for p in equity if p[1] is not None and _ny_day(p[0]) < today]
        opened = [p for p in equity if p[1] is not None and _ny_day(p[0]) == today and p[2] in ("open", "start")]
        base = before[-1][1] if before else (opened[0][1] if opened else None)
        if base is not None:
            out["pnl_today"] = round(nl - base, 2)
            out["baseline_today"] = base
        return out

    async def first_frame(self) -> dict[str, Any]:
        status = await self._status()
        _, vix = self._vix_points(0)
        _, equity = self._equity_points(0)
        return {"kind": "snapshot", "frame": self._frame_no, "meta": self.meta, "status": status, "vix": vix, "equity": equity,
                "events": list(self.events), "derived": self._derived(status, equity)}

    async def next_frame(self) -> dict[str, Any]:
        status = await self._status()
        self._vix_id, vix = self._vix_points(self._vix_id)
        self._equity_id, equity = self._equity_points(self._equity_id)
        events = [e for e in self.events if e["seq"] > self._sent_event_seq]
        if events:
            self._sent_event_seq = events[-1]["seq"]
        self._frame_no += 1
        self._equity_all.extend(equity)
        return {"kind": "update", "frame": self._frame_no, "status": status, "vix": vix, "equity": equity,
                "events": events, "derived": self._derived(status, self._equity_all)}

    # --- clients ----------------------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue:
        if not self._clients:  # the stream starts after what a new page is sent in full
            self._vix_id, _ = self._vix_points(0)
            self._equity_id, self._equity_all = self._equity_points(0)
            self._sent_event_seq = self._event_seq
        q: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_FRAMES)
        self._clients.add(q)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="dashboard.frames")
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self._clients.discard(q)

    async def _run(self) -> None:
        while self._clients:
            await asyncio.sleep(self.interval_s)
            if not self._clients:
                break
            frame = json.dumps(await self.next_frame(), default=str)
            for q in list(self._clients):
                try:
                    q.put_nowait(frame)
                except asyncio.QueueFull:  # too slow: dropped (its EventSource reconnects)
                    self._clients.discard(q)
                    q.get_nowait()
                    q.put_nowait(None)
        self._task = None

    async def close(self) -> None:
        for q in self._clients:  # every open stream ends now, not at its next keep-alive
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        self._clients.clear()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5.0)

    # --- aiohttp handlers -------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=static_bytes("dashboard.html"), content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound()
        return web.Response(body=static_bytes(name), content_type=STATIC[name],
                            headers={"Cache-Control": "max-age=3600"})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        q = self.subscribe()
        try:
            await resp.write(f"retry: 3000\nevent: frame\ndata: {json.dumps(await self.first_frame(), default=str)}\n\n"
                             .encode())
            while True:
                try:
                    frame = await asyncio.wait_for(q.get(), 15.0)
                except TimeoutError:
                    if q not in self._clients:
                        break
                    await resp.write(b": keep-alive\n\n")
                    continue
                if frame is None:  # the server is closing
                    break
                await resp.write(f"event: frame\ndata: {frame}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.unsubscribe(q)
        return resp


def _ny_day(ts: float) -> str:
    """The session day (New York) of a timestamp."""
    return datetime.fromtimestamp(ts, NY).date().isoformat()
