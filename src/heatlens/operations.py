"""What the CLI's store commands do, as functions from a store to a JSON document.

The same functions run in the CLI on a local store and in the server's admin routes, and a CLI
given `--server URL` receives the same documents over HTTP (heatlens/client.py): one definition of
each operation, whichever process owns the store. Renderers in cli.py read only these documents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from heatlens.analysis.bootstrap import Change
from heatlens.errors import ConfigError, InputError
from heatlens.model import BY_NAME, TYPE_NAMES
from heatlens.settings import Settings
from heatlens.store import Store, WriteCounts
from heatlens.store.tokens import Token

__all__ = [
    "changes_doc",
    "changes_from_doc",
    "counts_doc",
    "delete_doc",
    "empty_store_message",
    "ingest_doc",
    "parse_instant",
    "status_doc",
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


def ingest_doc(
    store: Store,
    paths: Sequence[str],
    settings: Settings,
    *,
    fmt: str | None = None,
    default_type: str | None = None,
    source: str | None = None,
    skip_invalid: bool = False,
    rejects: Path | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Ingest files all or nothing (heatlens.ingest.ingest_files) and say what happened."""
    from heatlens.ingest import ingest_files

    result = ingest_files(
        store,
        paths,
        settings,
        fmt=fmt,
        default_type=default_type,
        skip_invalid=skip_invalid,
        rejects=rejects,
        source=source,
        progress=progress,
    )
    return {
        "read": result.read,
        "rejected": result.rejected,
        "counts": counts_doc(result.counts),
        "data_version": store.data_version(),
    }


def status_doc(store: Store) -> dict[str, Any]:
    """What the store holds: records per type and source, schema and data version, and the
    last run of each scheduled sync."""
    from heatlens.connectors.schedule import sync_status

    return {
        "store": store.url,
        "schema": store.schema_version(),
        "data_version": store.data_version(),
        "sources": [{"type": t, "source": s, "records": n} for t, s, n in store.counts_by_source()],
        "syncs": [
            {
                "name": job.name,
                "kind": job.kind,
                "at": job.at.isoformat(),
                "ok": job.ok,
                "summary": job.summary,
                "source": job.source,
            }
            for job in sync_status(store)
        ],
    }


def parse_instant(value: str) -> datetime:
    """An ISO 8601 date or timestamp; UTC when it has no offset."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"{value!r} is not an ISO 8601 date or timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def delete_doc(
    store: Store,
    settings: Settings,
    *,
    type_name: str | None = None,
    ids: Sequence[str] = (),
    source: str | None = None,
    ingested_between: Sequence[str] | None = None,
    actors: Sequence[str] = (),
) -> dict[str, Any]:
    """Delete records by type and one selector, or erase people everywhere (audit-logged)."""
    from heatlens.ingest import pseudonym

    selectors = sum(bool(x) for x in (ids, source, ingested_between))
    if actors:
        if type_name or selectors:
            raise ConfigError("--actor erases a person everywhere: use it without --type")
        people = list(actors)
        key = settings.pseudonymise_key
        if key is not None:
            people += [pseudonym(key.get_secret_value(), a) for a in actors]
        return {"erased": store.erase_actor(people)}
    if not type_name or selectors != 1:
        raise ConfigError(
            "delete needs --type TYPE and exactly one of --id, --source, "
            "--ingested-between (or --actor)"
        )
    if type_name not in BY_NAME:
        raise ConfigError(f"unknown type {type_name!r}: expected one of {', '.join(TYPE_NAMES)}")
    between = None
    if ingested_between:
        if len(ingested_between) != 2:
            raise ConfigError("--ingested-between needs two instants: FROM TO")
        between = (parse_instant(ingested_between[0]), parse_instant(ingested_between[1]))
    n = store.delete_records(
        BY_NAME[type_name], ids=list(ids), source=source, ingested_between=between
    )
    return {"deleted": {type_name: n}}


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
    return {
        (c["metric"], tuple(sorted(c["segment"].items()))): Change(
            c["delta"], (c["ci"][0], c["ci"][1]) if c["ci"] else None, c["significant"]
        )
        for c in doc
    }


def tokens_doc(tokens: Sequence[Token]) -> dict[str, Any]:
    return {"tokens": [token_doc(t) for t in tokens]}
