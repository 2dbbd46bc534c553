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
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from heatlens.web import api, webhooks
from heatlens.web.auth import require
from heatlens.web.cost import work_units
from heatlens.web.errors import SECURITY_HEADERS, error_for
from heatlens.web.service import Service

Guard = Callable[[Request], Awaitable[object]]


@dataclass(frozen=True)
class LeanRoute:
    """A lean route in three steps: `guard` checks the credentials (before the body is read),
    `read` reads and checks the body and gives what to write — it needs no store, so an HTTP front
    process runs it and sends its result here (heatlens.web.fronts) —, and `write` writes that
    and answers."""

    read: Callable[[Request], Awaitable[Any]]
    write: Callable[[Request, Any], Awaitable[Response]]
    guard: Guard | None = None


ROUTES: dict[str, LeanRoute] = {
    "/api/v1/events": LeanRoute(
        api.read_events, api.store_events, guard=require("ingest", cached=True)
    ),
    "/webhooks/github": LeanRoute(webhooks.read_github, webhooks.take),
    "/webhooks/gitlab": LeanRoute(webhooks.read_gitlab, webhooks.take),
    "/webhooks/pagerduty": LeanRoute(webhooks.read_pagerduty, webhooks.take),
}


_UNREAD = object()  # HeatlensApp.answer_lean: the body is still to be read


def lean_route(scope: Scope) -> LeanRoute | None:
    """The lean route a request takes, if any."""
    if scope["type"] == "http" and scope["method"] == "POST" and not scope["query_string"]:
        return ROUTES.get(scope["path"])
    return None


class HeatlensApp(FastAPI):
    """The FastAPI app, answering the lean ingest routes (see the module) itself."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = lean_route(scope)
        if route is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        scope.setdefault("state", {})
        request = Request(scope, receive)
        response = await self.answer_lean(request, route)
        await response(scope, receive, with_security_headers(send))

    async def answer_lean(
        self, request: Request, route: LeanRoute, read: Any = _UNREAD
    ) -> Response:
        """A lean route's answer (its security headers are added as it is sent): the guard,
        `read` unless given (an HTTP front process read it: heatlens.web.fronts), `write`,
        errors in their usual shape; the request's rate-limit charge once answered."""
        service: Service = self.state.service
        work = service.meter()
        try:
            try:
                if route.guard is not None:
                    await route.guard(request)
                if read is _UNREAD:
                    read = await route.read(request)
                return await route.write(request, read)
            except Exception as exc:
                return await error_for(request, exc)
        finally:
            key = request.scope["state"].get("rate_key")
            if key is not None:
                service.limiter.charge(key, work_units(sum(work)))


_SECURITY = [
    (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()
]


def with_security_headers(send: Send) -> Callable[[Message], Awaitable[None]]:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            # the security headers the response does not set itself (raw: cheaper than
            # MutableHeaders.setdefault, which scans the list once per header)
            headers = list(message.get("headers", ()))
            present = {name for name, _ in headers}
            message["headers"] = headers + [h for h in _SECURITY if h[0] not in present]
        await send(message)

    return send_with_headers
