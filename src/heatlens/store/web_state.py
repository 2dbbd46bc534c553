"""What the servers on one store share besides records: browser sessions and rate-limit windows
(heatlens.web.auth, heatlens.web.limits), so that a restart logs nobody out and replicas behind a
load balancer need no sticky sessions.

A session is stored as the SHA-256 of its id (the cookie's value), so a copy of the store holds
no usable cookie. A rate-limit window is one row per key: the times (seconds since the epoch) and
costs of the requests it counted in the last minute. A request is counted by one statement that
waits for any other server counting the same key (`INSERT … ON CONFLICT DO UPDATE` locks the row),
so two servers share one window exactly.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from heatlens.store import Store

__all__ = [
    "charge_window",
    "create_session",
    "drop_session",
    "find_session",
    "forget_quiet_windows",
    "hit_window",
    "read_window",
]


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def create_session(
    store: Store, session_id: str, token_id: str, expires: datetime, now: datetime
) -> None:
    """Keep a new session; forget the sessions that ended by `now` (so the table stays as
    small as the live sessions)."""
    b = store._backend
    with b.transaction():
        b.execute("DELETE FROM web_session WHERE expires_at <= ?", [now])
        b.execute(
            "INSERT INTO web_session VALUES (?, ?, ?)", [_hash(session_id), token_id, expires]
        )


def find_session(store: Store, session_id: str, now: datetime) -> tuple[str, datetime] | None:
    """(token id, end) of the live session with this id, or None (unknown or ended)."""
    found = store._backend.fetchall(
        "SELECT token_id, expires_at FROM web_session WHERE id_hash = ? AND expires_at > ?",
        [_hash(session_id), now],
    )
    return (str(found[0][0]), found[0][1]) if found else None


def drop_session(store: Store, session_id: str) -> None:
    """End a session (logout), on every server."""
    store._backend.execute("DELETE FROM web_session WHERE id_hash = ?", [_hash(session_id)])


# the window's hits after `cutoff`, in order; `w` is the stored row
_KEPT = (
    "ARRAY(SELECT {col} FROM unnest(w.hits, w.units) WITH ORDINALITY AS x(h, u, i) "
    "WHERE h > ? ORDER BY i)"
)


def hit_window(store: Store, key: str, now: float, units: int, limit: int, window: float) -> bool:
    """Count `units` for `key` at `now` if the window (the last `window` seconds) has room for
    them within `limit`; False (nothing counted) when it has not. One statement."""
    cutoff = now - window
    found = store._backend.fetchall(
        "INSERT INTO rate_window AS w (key, hits, units) VALUES (?, ARRAY[?], ARRAY[?]) "
        f"ON CONFLICT (key) DO UPDATE SET hits = {_KEPT.format(col='h')} || EXCLUDED.hits, "
        f"units = {_KEPT.format(col='u')} || EXCLUDED.units "
        "WHERE (SELECT coalesce(sum(u), 0) FROM unnest(w.hits, w.units) AS x(h, u) "
        "WHERE h > ?) + ? <= ? RETURNING 1",
        [key, float(now), int(units), cutoff, cutoff, cutoff, int(units), int(limit)],
    )
    return bool(found)


def charge_window(store: Store, key: str, now: float, units: int, window: float) -> None:
    """Count `units` for `key` at `now` whatever the window holds (a cost known afterwards)."""
    cutoff = now - window
    store._backend.execute(
        "INSERT INTO rate_window AS w (key, hits, units) VALUES (?, ARRAY[?], ARRAY[?]) "
        f"ON CONFLICT (key) DO UPDATE SET hits = {_KEPT.format(col='h')} || EXCLUDED.hits, "
        f"units = {_KEPT.format(col='u')} || EXCLUDED.units",
        [key, float(now), int(units), cutoff, cutoff],
    )


def read_window(store: Store, key: str, now: float, window: float) -> list[tuple[float, int]]:
    """(time, units) of what `key` has counted in the window, oldest first."""
    found = store._backend.fetchall("SELECT hits, units FROM rate_window WHERE key = ?", [key])
    if not found:
        return []
    hits, units = found[0]
    return [(float(h), int(u)) for h, u in zip(hits, units, strict=True) if h > now - window]


def forget_quiet_windows(store: Store, now: float, window: float) -> None:
    """Forget keys with no hit in the window (the table stays as small as the last minute's
    clients)."""
    store._backend.execute(
        "DELETE FROM rate_window WHERE hits[array_length(hits, 1)] <= ?", [now - window]
    )
