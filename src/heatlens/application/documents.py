"""The JSON documents the application's operations return (heatlens.application).

The local application builds them from the store; the remote one receives the same documents from a
running server, which built them with the local application. Renderers (the CLI) read only these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from heatlens.connectors import SyncResult
from heatlens.errors import InputError
from heatlens.model import TYPE_NAMES
from heatlens.store import WriteCounts

if TYPE_CHECKING:
    from heatlens.analysis.bootstrap import Change
from heatlens.store.tokens import Token

__all__ = [
    "changes_doc",
    "changes_from_doc",
    "counts_doc",
    "empty_store_message",
    "parse_instant",
    "sync_doc",
    "token_doc",
    "tokens_doc",
]


def empty_store_message(url: str) -> str:
    return (
        f"store {url} holds no records yet: run `heatlens demo` for a sample organisation, "
        "or `heatlens ingest FILE`"
    )


def counts_doc(counts: dict[str, WriteCounts]) -> dict[str, dict[str, int]]:
    """Per-type write counts, in the data model's type order."""
    return {
        name: {"inserted": c.inserted, "updated": c.updated, "unchanged": c.unchanged}
        for name in TYPE_NAMES
        if (c := counts.get(name)) is not None
    }


def parse_instant(value: str) -> datetime:
    """An ISO 8601 date or timestamp; UTC when it has no offset."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"{value!r} is not an ISO 8601 date or timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def token_doc(token: Token) -> dict[str, Any]:
    """A token without its secret."""
    return {
        "id": token.id,
        "name": token.name,
        "scope": token.scope,
        "teams": list(token.teams),
        "created_at": token.created_at.isoformat(),
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


def changes_doc(changes: Mapping[tuple[str, Any], Change]) -> list[dict[str, Any]]:
    """The report table's significance column (analysis.report_changes) as JSON."""
    return [
        {
            "metric": metric,
            "segment": dict(segment),
            "delta": change.delta,
            "ci": list(change.ci) if change.ci is not None else None,
            "significant": change.significant,
        }
        for (metric, segment), change in changes.items()
    ]


def changes_from_doc(doc: Sequence[dict[str, Any]]) -> dict[tuple[str, Any], Change]:
    """`changes_doc` read back, keyed as the report renderers expect."""
    from heatlens.analysis.bootstrap import Change

    return {
        (c["metric"], tuple(sorted(c["segment"].items()))): Change(
            c["delta"], (c["ci"][0], c["ci"][1]) if c["ci"] else None, c["significant"]
        )
        for c in doc
    }


def tokens_doc(tokens: Sequence[Token]) -> dict[str, Any]:
    return {"tokens": [token_doc(t) for t in tokens]}


def sync_doc(result: SyncResult) -> dict[str, Any]:
    """What one sync did (heatlens.connectors.SyncResult) as JSON."""
    return {
        "source": result.source,
        "counts": counts_doc(result.counts),
        "warnings": list(result.warnings),
        "summary": result.summary,
    }
