"""The app factory: one FastAPI app owning one store for its lifetime (DESIGN §5)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heatlens.application import LocalApplication
from heatlens.connectors.schedule import Scheduler
from heatlens.report.html.pages import STATIC
from heatlens.settings import Settings
from heatlens.version import __version__
from heatlens.web import admin, api, cdevents, dashboard, errors, surveys, webhooks
from heatlens.web.auth import Sessions
from heatlens.web.cost import work_units
from heatlens.web.errors import SECURITY_HEADERS, error_response
from heatlens.web.lean import HeatlensApp
from heatlens.web.service import Service
from heatlens.web.uploads import Uploads

log = logging.getLogger("heatlens.web")

# HTML pages: scripts and styles from this server only. Chart specs are JSON data blocks, which
# CSP does not treat as scripts; Vega runs its expression interpreter, so no 'unsafe-eval'.
# Vega's SVG renderer sets style properties from script (CSSOM), which `style-src 'self'` allows.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
STATIC_CACHE = "public, max-age=3600"


def create_app(
    settings: Settings,
    store_url: str,
    *,
    host: str = "127.0.0.1",
    announce: Callable[[str], object] | None = None,
) -> FastAPI:
    """Build the app for a server listening on `host`. The store opens at startup and closes at
    shutdown (the app's lifespan). Startup decides whether the API is open (the application's
    policy: loopback only, a store that never had a token), refuses an open API beyond loopback,
    and says which it is through `announce` (default: the log)."""
    service = Service(settings, store_url)
    application = LocalApplication(settings, service)
    # the config's [[sync]] entries, checked now so a bad one stops `serve` before it listens;
    # they write through the server's one writer, like every other write
    scheduler = Scheduler.from_settings(settings, service.write)
    uploads = Uploads(settings.server_max_upload_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.open()
        try:
            service.open_api = application.ensure_servable(host)
        except BaseException:
            service.close()
            raise
        (announce or log.info)(access_line(service.open_api))
        scheduler.start()
        # the engine's model, built in the background: the server answers meanwhile
        service.warmer.start()
        service.read_ids_ahead()
        try:
            yield
        finally:
            scheduler.stop()
            service.warmer.stop()
            service.close()
            uploads.discard_all()

    app = HeatlensApp(
        title="heatlens",
        version=__version__,
        description="HEAT and DORA metrics of an internal platform, and the records behind them.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.application = application
    app.state.settings = settings
    app.state.scheduler = scheduler
    app.state.sessions = Sessions(settings.server_session_hours, run=service.shared)
    app.state.pages = dashboard.PageCache()
    app.state.uploads = uploads
    errors.install(app)
    app.include_router(api.router)
    app.include_router(cdevents.router)
    app.include_router(admin.router)
    app.include_router(dashboard.router)
    app.include_router(surveys.router)
    app.include_router(webhooks.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    app.add_middleware(SecurityHeaders, service=service)

    return app


class SecurityHeaders:
    """Every response gets the security headers (and HTML its Content-Security-Policy, static
    files their cache lifetime); a URL holding a NUL byte is refused before any route; a
    request's store work is charged to its rate limit once answered.

    A plain ASGI middleware: Starlette's `BaseHTTPMiddleware` (`@app.middleware("http")`) runs
    each request in a task group with a streamed copy of its response, which cost more than the
    whole route of a one-record ingest (docs/performance.md)."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        # a NUL byte is no value heatlens stores or names: refuse it before any route (the
        # engines reject it in a query parameter with an error of their own)
        if b"%00" in scope.get("query_string", b"") or "\x00" in path:
            response = error_response(
                400, "bad_request", "the URL contains a NUL byte (%00): remove it"
            )
            await response(scope, receive, send)
            return
        static = path.startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if static:
                    headers.setdefault("Cache-Control", STATIC_CACHE)
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        work = self.service.meter()
        scope.setdefault("state", {})
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            state = scope.get("state") or {}
            key = state.get("rate_key") if isinstance(state, dict) else None
            if key is not None:
                self.service.limiter.charge(key, work_units(sum(work)))


def access_line(open_api: bool) -> str:
    """What the startup line says about who may use the server."""
    if open_api:
        return (
            "OPEN API: no token was ever created, so anyone on this machine may read and write "
            "(`heatlens token create` closes it for good)"
        )
    return "tokens required (see `heatlens token list`)"
