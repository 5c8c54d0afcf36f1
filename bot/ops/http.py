"""The read-only HTTP endpoint: `/health` (JSON; 503 when unhealthy), `/metrics`
(Prometheus text format) and the live dashboard (`/`, its event stream `/events`, its static
files under `/static/`: bot/ops/dashboard.py).

aiohttp, in the daemon's own event loop: the handlers await the control surface directly,
with no thread hand-off, and aiohttp bounds what a client may send (request line, headers),
which a hand-written parser would have to get right itself. Only GET (and HEAD) routes exist,
so every other method is answered 405 by the router; no handler changes state. Bound to
loopback by default; anywhere else the config requires a bearer token.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from pathlib import Path

from aiohttp import web

from bot.ops.metrics import render

STATUS_TIMEOUT_S = 10.0


class HttpConfigError(Exception):
    """The token file cannot be used; one line for the operator."""


class HttpServer:
    def __init__(self, cfg, surface, log, dashboard=None):
        self.cfg = cfg
        self.surface = surface
        self.log = log
        self.dashboard = dashboard  # bot.ops.dashboard.DashboardHub: the page at `/` and its event stream
        self.token = cfg.token
        if cfg.token_file:
            try:
                self.token = Path(cfg.token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise HttpConfigError(f"http.token_file: cannot read {cfg.token_file}: {exc.strerror}") from None
            if len(self.token) < 16:  # an empty file must not leave a non-loopback endpoint open
                raise HttpConfigError(f"http.token_file: {cfg.token_file} holds no token of 16+ characters")
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth], client_max_size=1024)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        if self.dashboard is not None:
            app.router.add_get("/", self.dashboard.page)
            app.router.add_get("/events", self.dashboard.stream)
            app.router.add_get("/static/{name:.+}", self.dashboard.static)
        else:
            app.router.add_get("/", self._index)
        return app

    async def start(self) -> str:
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.cfg.host, self.cfg.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}"
        endpoints = ["/health", "/metrics"] + (["/", "/events"] if self.dashboard is not None else [])
        self.log.info("http.listening", url=self.url, endpoints=endpoints, auth=bool(self.token))
        return self.url

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if self.dashboard is not None:
            await self.dashboard.close()  # ends the open event streams first
        if runner is not None:
            await runner.cleanup()
            self.log.info("http.closed", url=self.url)

    @web.middleware
    async def _auth(self, request: web.Request, handler):
        if self.token:
            given = request.headers.get("Authorization", "")
            if not given and "token" in request.query:  # a browser's EventSource cannot set headers
                given = f"Bearer {request.query['token']}"
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return web.json_response({"error": "bearer token required"}, status=401,
                                         headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    async def _health(self, request: web.Request) -> web.Response:
        health = self.surface.health()
        return web.Response(text=json.dumps(health, default=str, indent=1), content_type="application/json",
                            status=200 if health["healthy"] else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        try:
            status = await asyncio.wait_for(self.surface.status(), STATUS_TIMEOUT_S)
        except TimeoutError:
            return web.json_response({"error": f"status did not answer within {STATUS_TIMEOUT_S:g}s"}, status=503)
        body = render(json.loads(json.dumps(status, default=str)))
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def _index(self, request: web.Request) -> web.Response:
        return web.json_response({"endpoints": ["/health", "/metrics"], "read_only": True})
