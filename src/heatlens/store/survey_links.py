"""Single-use survey links (DESIGN §3, §5): `/s/<secret>` on `heatlens serve`.

A link is issued for a survey and a team, shown once, and stored only as the SHA-256 of its
secret, so a copy of the store opens no form. Using a link only flips its `used` flag: the table
keeps no time of use and nothing that names the response it gave, and responses carry no link
id, so no answer can be traced back to the link (or the person) it came through.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from heatlens.errors import StoreError
from heatlens.store import Store

__all__ = [
    "Link",
    "claim_link",
    "find_link",
    "issue_links",
    "link_counts",
    "release_link",
]


@dataclass(frozen=True)
class Link:
    """A stored link, without its secret."""

    survey: str
    team: str | None
    used: bool


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def issue_links(
    store: Store, survey: str, team: str | None, count: int, *, batch: str, now: datetime
) -> list[str]:
    """Create `count` unused links; return their secrets (shown this once, never stored)."""
    if store.read_only:
        raise StoreError(f"store {store.url} was opened read-only")
    found = [secrets.token_urlsafe(24) for _ in range(count)]
    with store._backend.transaction():
        for secret in found:
            store._backend.execute(
                "INSERT INTO survey_link (secret_hash, survey, team, batch, created_at, used) "
                "VALUES (?, ?, ?, ?, ?, FALSE)",
                [_hash(secret), survey, team, batch, now],
            )
        store.audit("survey_links", {"survey": survey, "team": team, "count": count})
    return found


def find_link(store: Store, secret: str) -> Link | None:
    """The link with this secret, or None."""
    rows = store._backend.fetchall(
        "SELECT survey, team, used FROM survey_link WHERE secret_hash = ?", [_hash(secret)]
    )
    if not rows:
        return None
    survey, team, used = rows[0]
    return Link(str(survey), None if team is None else str(team), bool(used))


def claim_link(store: Store, secret: str) -> bool:
    """Mark an unused link used; False when it is unknown or was used already. Run it on the
    store's one writer, so two submissions of one link cannot both claim it. On Postgres,
    where several servers may each have a writer, one statement claims it (the row lock makes
    the second wait and find it used)."""
    key = _hash(secret)
    if store.dialect == "postgres":
        return bool(
            store._backend.fetchall(
                "UPDATE survey_link SET used = TRUE WHERE secret_hash = ? AND NOT used RETURNING 1",
                [key],
            )
        )
    with store._backend.transaction():
        rows = store._backend.fetchall("SELECT used FROM survey_link WHERE secret_hash = ?", [key])
        if not rows or bool(rows[0][0]):
            return False
        store._backend.execute("UPDATE survey_link SET used = TRUE WHERE secret_hash = ?", [key])
    return True


def release_link(store: Store, secret: str) -> None:
    """Undo a claim whose answers could not be stored, so the link still works."""
    with store._backend.transaction():
        store._backend.execute(
            "UPDATE survey_link SET used = FALSE WHERE secret_hash = ?", [_hash(secret)]
        )


def link_counts(store: Store, survey: str) -> dict[str | None, tuple[int, int]]:
    """Team → (links issued, links used) of one survey."""
    rows = store._backend.fetchall(
        "SELECT team, count(*), count(*) FILTER (WHERE used) FROM survey_link "
        "WHERE survey = ? GROUP BY team ORDER BY team",
        [survey],
    )
    return {None if t is None else str(t): (int(n), int(u)) for t, n, u in rows}
