"""Who may read and write (DESIGN §5, docs/security.md): Bearer tokens, browser sessions, a trusted
auth proxy.

A server is open (no credentials asked) only when it decided so at startup — on a loopback
address, for a store that never had a token — and only until a token is created; a store that
ever had a token is closed for good, revoked tokens included, so revoking every token never opens
it. On a closed server, every API request needs `Authorization: Bearer <secret>` with a token of
the route's scope (admin covers every scope). Reading — dashboard pages and the read API routes —
also accepts:

- a session cookie, made by the login page from a read (or admin) token: a random id kept in the
  store as its SHA-256 (every server on the store knows it, and a restart logs nobody out),
  mapped to the token's id, never the token itself; HttpOnly,
  SameSite=Strict, Secure on https; it ends after `server.session_hours`, at logout, or as soon
  as its token is revoked. A session reads with its token's team scope;
- when `server.auth_proxy_header` is set, that header from a client in `server.trusted_proxies`
  (an auth proxy in front of heatlens that signed the user in): organisation-wide read access.

Neither counts for ingest or admin routes, so a browser cannot be made to write by a cross-site
request. Every request is counted against its rate limit before any credential is looked up.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request

from heatlens.store import Store
from heatlens.store.tokens import (
    Token,
    TokenCache,
    has_tokens,
    list_tokens,
    secret_token_id,
    verify_token,
)
from heatlens.store.web_state import create_session, drop_session, find_session
from heatlens.web.errors import ApiError
from heatlens.web.service import Service

SESSION_COOKIE = "heatlens_session"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Session:
    """A browser login: which token it stands for, and until when."""

    id: str
    token_id: str
    expires: datetime


class Sessions:
    """Live browser sessions. Kept in the store when given `run` (a call on a store connection;
    the server's), so every server on the store knows them and a restart logs nobody out; in
    this process's memory without it."""

    def __init__(
        self,
        hours: float,
        clock: Callable[[], datetime] | None = None,
        run: Callable[[Callable[[Store], Any]], Any] | None = None,
    ) -> None:
        self.lifetime = timedelta(hours=hours)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.run = run
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, token: Token) -> Session:
        """A new session for `token`, with an unguessable id."""
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), token.id, now + self.lifetime)
        if self.run is not None:
            self.run(
                lambda store: create_session(store, session.id, token.id, session.expires, now)
            )
            return session
        with self._lock:
            # forget expired sessions as new ones come, so the table cannot grow without bound
            for sid in [s.id for s in self._sessions.values() if s.expires <= now]:
                del self._sessions[sid]
            self._sessions[session.id] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        """The live session with this id, or None (unknown or expired)."""
        if not sid:
            return None
        if self.run is not None:
            now = self.clock()
            found = self.run(lambda store: find_session(store, sid, now))
            return None if found is None else Session(sid, found[0], found[1])
        with self._lock:
            session = self._sessions.get(sid)
            if session is not None and session.expires <= self.clock():
                del self._sessions[sid]
                return None
            return session

    def drop(self, sid: str | None) -> None:
        """End a session (logout)."""
        if self.run is not None:
            if sid:
                self.run(lambda store: drop_session(store, sid))
            return
        with self._lock:
            self._sessions.pop(sid or "", None)


@dataclass(frozen=True)
class Credentials:
    """What a request presents: a Bearer secret, a session, a proxy-asserted user."""

    bearer: str | None
    session: Session | None
    proxy_user: str | None


@dataclass(frozen=True)
class Access:
    """The outcome of authentication. `required` is False on an open server; `token` is the
    token acting (a session's token; a read-only stand-in for a proxy user), `user` a name to
    show, `teams` the team scope (empty: all teams)."""

    required: bool
    token: Token | None
    user: str | None = None
    failure: str | None = None  # why credentials that were sent were refused

    @property
    def teams(self) -> tuple[str, ...]:
        return self.token.teams if self.token is not None else ()

    @property
    def allowed(self) -> bool:
        return not self.required or self.token is not None

    def permits(self, scope: str) -> bool:
        """True when this request may act in `scope` (an open server permits everything)."""
        return not self.required or (self.token is not None and self.token.allows(scope))


def sessions(request: Request) -> Sessions:
    """The app's session table."""
    table: Sessions = request.app.state.sessions
    return table


def credentials(request: Request) -> Credentials:
    """The credentials of a request, before checking them against the store."""
    header = request.headers.get("authorization", "")
    kind, _, secret = header.partition(" ")
    bearer = secret.strip() if kind.lower() == "bearer" and secret.strip() else None
    session = sessions(request).get(request.cookies.get(SESSION_COOKIE))
    service: Service = request.app.state.service
    name = service.settings.server_auth_proxy_header
    user = None
    if name and client_address(request) in service.settings.server_trusted_proxies:
        user = request.headers.get(name, "").strip() or None
    return Credentials(bearer, session, user)


def _live(store: Store, token_id: str) -> Token | None:
    return next((t for t in list_tokens(store) if t.id == token_id and t.revoked_at is None), None)


def _proxy_token(user: str) -> Token:
    """The read-only identity of a user an auth proxy vouches for."""
    return Token(f"proxy:{user}", user, "read", (), datetime.now(UTC), None)


def client_address(request: Request) -> str:
    """The client's address: the peer's, or what a trusted proxy forwarded (uvicorn believes
    forwarded headers from `server.trusted_proxies` only; heatlens.web.server)."""
    return request.client.host if request.client else "unknown"


def resolve(
    store: Store,
    given: Credentials,
    *,
    browser: bool,
    open_api: bool,
    cache: TokenCache | None = None,
) -> Access:
    """Check credentials against the store (a quick lookup). `open_api` is the server's startup
    decision; a store with a token (even a revoked one) is closed whatever it says. With
    `browser`, a session or a proxy header may stand in for a Bearer token (read access only).
    With `cache`, what was looked up is remembered there (see `known`)."""
    if open_api and not (cache.has_tokens_of(store) if cache else has_tokens(store)):
        return Access(False, None)
    if given.bearer is not None:
        token = cache.verify(store, given.bearer) if cache else verify_token(store, given.bearer)
        if token is None:
            return Access(True, None, failure="the token is unknown or revoked")
        return Access(True, token, token.name or token.id)
    if browser and given.session is not None:
        token = _live(store, given.session.token_id)
        if token is not None:
            return Access(True, token, token.name or f"token {token.id}")
    if browser and given.proxy_user is not None:
        return Access(True, _proxy_token(given.proxy_user), given.proxy_user)
    return Access(True, None)


def known(cache: TokenCache, given: Credentials, *, open_api: bool) -> Access | None:
    """What `resolve` would answer, when `cache` knows it without the store: an open server
    while no token exists, or a live token's Bearer secret; None otherwise (look it up)."""
    has = cache.has_tokens()
    if open_api and has is False:
        return Access(False, None)
    if given.bearer is not None and (has or not open_api):
        token = cache.token(given.bearer)
        if token is not None:
            return Access(True, token, token.name or token.id)
    return None


def _rate_key(given: Credentials, request: Request) -> str:
    """What a request is counted under, known without asking the store: the token its Bearer
    secret names or its session stands for, else the client address."""
    if given.bearer is not None and secret_token_id(given.bearer):
        return f"token:{secret_token_id(given.bearer)}"
    if given.bearer is None and given.session is not None:
        return f"token:{given.session.token_id}"
    return f"client:{client_address(request)}"


def _refuse(wait: int | None, service: Service) -> None:
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"more than {service.limiter.per_minute} requests (or their cost) in a minute: "
            f"retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )


def charge(request: Request, units: int) -> None:
    """Count `units` more against the request's rate limit (an expensive request costs more
    than one); 429 when they do not fit."""
    service: Service = request.app.state.service
    key = getattr(request.state, "rate_key", None) or f"client:{client_address(request)}"
    _refuse(service.limiter.hit(key, units), service)


async def authenticate(request: Request, *, browser: bool, cached: bool = False) -> Access:
    """Count the request against its rate limit (429 before any lookup), then check its
    credentials. A client whose requests with unknown tokens filled its allowance is refused
    whatever token it names next, so inventing token ids buys no fresh allowance. With `cached`
    (the lean ingest routes, heatlens.web.lean), the service's token cache answers when it
    can, and learns what the store answers."""
    service: Service = request.app.state.service
    given = credentials(request)
    key = _rate_key(given, request)
    client = f"client:{client_address(request)}"
    request.state.rate_key = key
    if key != client:
        _refuse(service.limiter.full(client), service)
    _refuse(service.limiter.hit(key), service)
    cache = service.tokens if cached else None
    access = known(cache, given, open_api=service.open_api) if cache is not None else None
    if access is None:
        access = await service.lookup(
            resolve, given, browser=browser, open_api=service.open_api, cache=cache
        )
    if access.required:
        service.open_api = False  # a token exists now: the server is closed for good
    if access.failure is not None and key != client:
        service.limiter.hit(client)
    return access


def require(scope: str, *, cached: bool = False) -> Callable[[Request], Awaitable[Token | None]]:
    """A dependency giving the request's token (None on an open API), or raising 401/403.

    Read routes also accept a browser session or a trusted proxy's header. `cached`: see
    `authenticate`."""

    async def dependency(request: Request) -> Token | None:
        access = await authenticate(request, browser=scope == "read", cached=cached)
        if not access.required:
            return None
        token = access.token
        if token is None and access.failure is None:
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
