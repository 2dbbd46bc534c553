"""Bearer tokens on API routes (DESIGN §5).

With no live token the API is open (the CLI refuses to bind a non-loopback host then); once one
exists, every API request needs `Authorization: Bearer <secret>` with a token of the route's scope
(admin covers every scope).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from heatlens.store import Store
from heatlens.store.tokens import Token, has_tokens, verify_token
from heatlens.web.errors import ApiError
from heatlens.web.service import Service

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _check(store: Store, secret: str | None) -> tuple[bool, Token | None]:
    """(tokens required, the token the secret names) read under one store lock."""
    if not has_tokens(store):
        return False, None
    return True, verify_token(store, secret) if secret else None


def _limit(service: Service, key: str) -> None:
    wait = service.limiter.hit(key)
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"more than {service.limiter.per_minute} requests in a minute: retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )


def require(scope: str) -> Callable[[Request], Awaitable[Token | None]]:
    """A dependency giving the request's token (None on an open API), or raising 401/403."""

    async def dependency(request: Request) -> Token | None:
        service: Service = request.app.state.service
        header = request.headers.get("authorization", "")
        kind, _, secret = header.partition(" ")
        given = secret.strip() if kind.lower() == "bearer" and secret.strip() else None
        required, token = await service.run(_check, given)
        client = request.client.host if request.client else "unknown"
        _limit(service, f"token:{token.id}" if token is not None else f"client:{client}")
        if not required:
            return None
        if given is None:
            raise ApiError(
                401,
                "unauthorized",
                "this server requires a token: send Authorization: Bearer <token> "
                "(create one with `heatlens token create`)",
                headers=_CHALLENGE,
            )
        if token is None:
            raise ApiError(
                401, "unauthorized", "the token is unknown or revoked", headers=_CHALLENGE
            )
        if not token.allows(scope):
            raise ApiError(
                403,
                "forbidden",
                f"token {token.id} has scope {token.scope!r}; this needs {scope!r} or 'admin'",
            )
        return token

    return dependency
