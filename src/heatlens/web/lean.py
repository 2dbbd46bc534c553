"""The ingest routes answered without FastAPI's routing (docs/performance.md, HTTP ingest).

`POST /api/v1/events` and `POST /webhooks/{github,gitlab,pagerduty}` are the routes a busy
organisation calls hundreds of times a second, one event each. `HeatlensApp` answers them
before FastAPI's middleware, routing and dependency injection — which cost more per request
than the route itself — by calling the very route functions FastAPI would (heatlens.web.api,
heatlens.web.webhooks), with the same credential check first (`require("ingest")` for events,
answered from the service's token cache when it knows the token: heatlens.store.tokens.TokenCache;
webhooks carry their signature), the same error shape (heatlens.web.errors.error_for), the
security headers, and the request's rate-limit charge once answered, as `SecurityHeaders`
does for every other route. Everything else, and any URL with a query string, goes to FastAPI,
where these routes stay declared: the OpenAPI document and every other method on these paths
(405) are FastAPI's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from heatlens.web import api, webhooks
from heatlens.web.auth import require
from heatlens.web.cost import work_units
from heatlens.web.errors import SECURITY_HEADERS, error_for
from heatlens.web.service import Service

Route = Callable[[Request], Awaitable[Response]]
_ingest = require("ingest", cached=True)  # tokens from the service's cache


async def _events(request: Request) -> Response:
    await _ingest(request)
    service: Service = request.app.state.service
    return await api.post_events(request, service)


ROUTES: dict[str, Route] = {
    "/api/v1/events": _events,
    "/webhooks/github": webhooks.github,
    "/webhooks/gitlab": webhooks.gitlab,
    "/webhooks/pagerduty": webhooks.pagerduty,
}


class HeatlensApp(FastAPI):
    """The FastAPI app, answering the lean ingest routes (see the module) itself."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (
            ROUTES.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST" and not scope["query_string"]
            else None
        )
        if route is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        scope.setdefault("state", {})
        request = Request(scope, receive)
        service: Service = self.state.service
        work = service.meter()
        try:
            try:
                response = await route(request)
            except Exception as exc:
                response = await error_for(request, exc)
            await response(scope, receive, _with_headers(send))
        finally:
            key = scope["state"].get("rate_key")
            if key is not None:
                service.limiter.charge(key, work_units(sum(work)))


_SECURITY = [
    (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()
]


def _with_headers(send: Send) -> Callable[[Message], Awaitable[None]]:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            # the security headers the response does not set itself (raw: cheaper than
            # MutableHeaders.setdefault, which scans the list once per header)
            headers = list(message.get("headers", ()))
            present = {name for name, _ in headers}
            message["headers"] = headers + [h for h in _SECURITY if h[0] not in present]
        await send(message)

    return send_with_headers
