"""The app factory: one FastAPI app owning one store for its lifetime (DESIGN §5)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from heatlens import __version__
from heatlens.settings import Settings
from heatlens.web import admin, api, errors
from heatlens.web.service import Service

# sent on every response: the API serves JSON only, never to be framed, sniffed or cached
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def create_app(settings: Settings, store_url: str) -> FastAPI:
    """Build the app. The store opens at startup and closes at shutdown (the app's lifespan)."""
    service = Service(settings, store_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.open()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="heatlens",
        version=__version__,
        description="HEAT and DORA metrics of an internal platform, and the records behind them.",
        lifespan=lifespan,
    )
    app.state.service = service
    errors.install(app)
    app.include_router(api.router)
    app.include_router(admin.router)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return app
