"""API tokens (DESIGN §5): created once, stored hashed, checked in constant time.

A secret reads `hl_<id>_<random>`. The id lets a request find its row without scanning, and only
the SHA-256 of the whole secret is stored, so a copy of the store gives nobody a usable token.
Token changes are audited but do not bump the data version: no record changed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from heatlens.errors import ConfigError, StoreError
from heatlens.store import Store

__all__ = [
    "SCOPES",
    "Token",
    "TokenCache",
    "create_token",
    "has_tokens",
    "list_tokens",
    "revoke_token",
    "secret_token_id",
    "verify_token",
]

SCOPES = ("ingest", "read", "admin")
_PREFIX = "hl_"
# compared against when a secret names no known token, so a miss costs what a hit costs
_DUMMY_HASH = hashlib.sha256(b"heatlens-no-such-token").hexdigest()


@dataclass(frozen=True)
class Token:
    """A stored token, without its secret."""

    id: str
    name: str | None
    scope: str
    teams: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    def allows(self, scope: str) -> bool:
        """True when this token may act in `scope` (admin may do everything)."""
        return self.revoked_at is None and self.scope in (scope, "admin")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _writable(store: Store) -> None:
    if store.read_only:
        raise StoreError(f"store {store.url} was opened read-only")


_COLUMNS = "id, name, scope, teams, created_at, revoked_at"


def _token(row: tuple[Any, ...]) -> Token:
    tid, name, scope, teams, created, revoked = row
    return Token(
        str(tid),
        None if name is None else str(name),
        str(scope),
        tuple(teams or ()),
        created,
        revoked,
    )


def create_token(
    store: Store, scope: str, *, name: str | None = None, teams: Sequence[str] = ()
) -> tuple[Token, str]:
    """Create a token; return it and its secret, which is shown this once and never stored."""
    if scope not in SCOPES:
        raise ConfigError(f"unknown scope {scope!r}: expected one of {', '.join(SCOPES)}")
    _writable(store)
    tid = secrets.token_hex(6)
    secret = f"{_PREFIX}{tid}_{secrets.token_urlsafe(32)}"
    now = datetime.now(UTC)
    with store._backend.transaction():
        store._backend.execute(
            "INSERT INTO api_token (id, name, scope, secret_hash, teams, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [tid, name, scope, _hash(secret), list(teams) or None, now],
        )
        store.audit("token_create", {"id": tid, "scope": scope, "teams": list(teams)})
    _changed()
    return Token(tid, name, scope, tuple(teams), now, None), secret


def list_tokens(store: Store) -> list[Token]:
    """Every token, revoked ones included, oldest first."""
    rows = store._backend.fetchall(f"SELECT {_COLUMNS} FROM api_token ORDER BY created_at, id")
    return [_token(r) for r in rows]


def has_tokens(store: Store) -> bool:
    """True once a token was ever created, revoked ones included: such a store's API requires a
    token on every request for good, so revoking every token never opens it."""
    return bool(store._backend.fetchall("SELECT 1 FROM api_token LIMIT 1"))


def revoke_token(store: Store, token_id: str) -> Token:
    """Revoke a token by id; revoking twice is harmless. Unknown ids are a ConfigError."""
    _writable(store)
    with store._backend.transaction():
        rows = store._backend.fetchall(f"SELECT {_COLUMNS} FROM api_token WHERE id = ?", [token_id])
        if not rows:
            raise ConfigError(f"no token {token_id!r}: see `heatlens token list`")
        store._backend.execute(
            "UPDATE api_token SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            [datetime.now(UTC), token_id],
        )
        store.audit("token_revoke", {"id": token_id})
        rows = store._backend.fetchall(f"SELECT {_COLUMNS} FROM api_token WHERE id = ?", [token_id])
    _changed()
    return _token(rows[0])


def secret_token_id(secret: str) -> str:
    """The token id a secret names ("" when it has not the form of one), without asking the
    store: rate limits count a request before its token is looked up."""
    return secret.removeprefix(_PREFIX).split("_", 1)[0] if secret.startswith(_PREFIX) else ""


def verify_token(store: Store, secret: str) -> Token | None:
    """The live token whose secret this is, or None. The hash comparison is constant-time."""
    tid = secret_token_id(secret)
    rows = store._backend.fetchall(
        f"SELECT {_COLUMNS}, secret_hash FROM api_token WHERE id = ? AND revoked_at IS NULL",
        [tid],
    )
    stored = str(rows[0][-1]) if rows else _DUMMY_HASH
    if hmac.compare_digest(stored, _hash(secret)) and rows:
        return _token(rows[0][:-1])
    return None


# token changes committed by this process (create, revoke): a TokenCache forgets everything on one
_changes = 0


def _changed() -> None:
    global _changes
    _changes += 1


class TokenCache:
    """The answers of `has_tokens` and `verify_token` (live tokens only, by the SHA-256 of their
    secret) as last looked up, so a busy route need not ask the store on every request. It
    forgets them all when this process creates or revokes a token: use it only for a store no
    other process changes tokens in (a DuckDB file, locked by the server that holds it)."""

    MAX_TOKENS = 1_000  # a bound on memory: past it, tokens are looked up again

    def __init__(self) -> None:
        self._seen = _changes
        self._has: bool | None = None
        self._tokens: dict[str, Token] = {}

    def _fresh(self) -> bool:
        if self._seen != _changes:
            self._has, self._tokens, self._seen = None, {}, _changes
        return True

    def has_tokens(self) -> bool | None:
        """`has_tokens`'s answer, or None when not known."""
        self._fresh()
        return self._has

    def token(self, secret: str) -> Token | None:
        """The live token of this secret when known (None: look it up)."""
        self._fresh()
        return self._tokens.get(_hash(secret))

    def has_tokens_of(self, store: Store) -> bool:
        """`has_tokens(store)`, remembered unless a token changed meanwhile."""
        seen = _changes
        answer = has_tokens(store)
        if seen == _changes and self._fresh():
            self._has = answer
        return answer

    def verify(self, store: Store, secret: str) -> Token | None:
        """`verify_token(store, secret)`, remembered when live, unless a token changed
        meanwhile."""
        seen = _changes
        token = verify_token(store, secret)
        if token is not None and seen == _changes and self._fresh():
            if len(self._tokens) >= self.MAX_TOKENS:
                self._tokens.clear()
            self._tokens[_hash(secret)] = token
        return token
