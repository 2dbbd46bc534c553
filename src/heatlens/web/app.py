"""The app factory: one FastAPI app owning one store for its lifetime (DESIGN §5)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from heatlens.application import LocalApplication
from heatlens.connectors.schedule import Scheduler
from heatlens.report.html.pages import STATIC
from heatlens.settings import Settings
from heatlens.version import __version__
from heatlens.web import admin, api, dashboard, errors
from heatlens.web.auth import Sessions
from heatlens.web.service import Service

# sent on every response: nothing is to be framed, sniffed or cached (static files excepted)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# HTML pages: scripts and styles from this server only. Chart specs are JSON data blocks, which
# CSP does not treat as scripts; Vega runs its expression interpreter, so no 'unsafe-eval'.
# Vega's SVG renderer sets style properties from script (CSSOM), which `style-src 'self'` allows.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
STATIC_CACHE = "public, max-age=3600"


def create_app(settings: Settings, store_url: str, *, host: str = "127.0.0.1") -> FastAPI:
    """Build the app for a server listening on `host`. The store opens at startup and closes at
    shutdown (the app's lifespan); startup refuses what the application's policy refuses (an
    open API beyond loopback)."""
    service = Service(settings, store_url)
    application = LocalApplication(settings, service)
    # the config's [[sync]] entries, checked now so a bad one stops `serve` before it listens;
    # they write through the server's one writer, like every other write
    scheduler = Scheduler.from_settings(settings, service.write)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.open()
        try:
            application.ensure_servable(host)
        except BaseException:
            service.close()
            raise
        scheduler.start()
        try:
            yield
        finally:
            scheduler.stop()
            service.close()

    app = FastAPI(
        title="heatlens",
        version=__version__,
        description="HEAT and DORA metrics of an internal platform, and the records behind them.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.application = application
    app.state.scheduler = scheduler
    app.state.sessions = Sessions(settings.server_session_hours)
    app.state.pages = dashboard.PageCache()
    errors.install(app)
    app.include_router(api.router)
    app.include_router(admin.router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        if request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", STATIC_CACHE)
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return app
