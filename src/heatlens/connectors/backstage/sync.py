"""`heatlens sync backstage`: the catalog's teams, memberships and services, as of now.

A catalog is a snapshot, so each sync maps all of it; unchanged records are replaced by themselves.
Memberships get their time from the syncs: those present at the first sync have no start (since
always), one that appears later starts at that sync, and one that disappears ends at the sync that
no longer sees it — so usage is attributed to the team a person was in at the time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from heatlens.connectors import ProgressFn, SyncResult, no_progress
from heatlens.connectors.backstage.catalog import _is_url, read_catalog
from heatlens.connectors.backstage.mapping import map_catalog
from heatlens.settings import Settings
from heatlens.store import Store


def catalog_key(catalog: str) -> str:
    """The catalog's URL, or its absolute path: names its source and its sync state."""
    return catalog if _is_url(catalog) else str(Path(catalog).expanduser().resolve())


def sync_backstage(
    store: Store,
    settings: Settings,
    catalog: str,
    *,
    pattern: str = "catalog-info.yaml",
    progress: ProgressFn = no_progress,
    now: datetime | None = None,
) -> SyncResult:
    """Read the catalog at `catalog` (file, directory or URL) into the store."""
    now = now or datetime.now(UTC)
    key = catalog_key(catalog)
    result = SyncResult(source=f"sync:backstage:{key}")
    read = read_catalog(catalog, pattern=pattern, progress=progress)
    mapped = map_catalog(read.entities)
    result.warnings += read.warnings + mapped.warnings
    name = f"backstage:{key}"
    previous = store.sync_state(name)
    open_before: dict[str, str | None] = (previous or {}).get("memberships") or {}
    started = None if previous is None else now.isoformat()
    # with pseudonymisation on, the state names people only by their pseudonyms, like the records
    person = _person_key(settings)
    people = {person(actor): actor for actor, _ in mapped.memberships} | {
        person(p): p for p in mapped.people
    }
    members: dict[str, str | None] = {}
    records: list[dict[str, Any]] = [*mapped.teams, *mapped.services]
    for actor, team in sorted(mapped.memberships):
        pair = f"{person(actor)}\t{team}"
        members[pair] = open_before.get(pair, started)
        records.append(_membership(actor, team, members[pair], None))
    ended: list[str] = []
    unknown: list[str] = []
    for pair in sorted(set(open_before) - set(members)):
        who, team = pair.split("\t")
        named = people.get(who, who if settings.pseudonymise_key is None else None)
        if named is None:
            unknown.append(pair)  # left the catalog, and only their pseudonym is known
            members[pair] = open_before[pair]
            continue
        ended.append(pair)
        records.append(_membership(named, team, open_before[pair], now.isoformat()))
    if unknown:
        result.warnings.append(
            f"{len(unknown)} membership(s) of people no longer in the catalog stay open: "
            "with pseudonymise_key set, heatlens cannot name them to close them"
        )
    from heatlens.ingest import ingest_records

    if records:
        progress("storing", 0, len(records))
    # the state commits with the records it covers, in one transaction
    ingested = ingest_records(
        store,
        records,
        settings,
        source=result.source,
        name=key,
        sync_state={name: {"memberships": members, "synced_at": now.isoformat()}},
    )
    result.counts = ingested.counts
    if records:
        progress("storing", len(records), len(records))
    result.summary = (
        f"{read.files:,} file(s), {len(read.entities):,} entities: {len(mapped.teams):,} "
        f"team(s), {len(members):,} membership(s), {len(mapped.services):,} service(s)"
        + (f"; {len(ended):,} membership(s) ended" if ended else "")
    )
    return result


def _person_key(settings: Settings) -> Callable[[str], str]:
    """How the sync state names a person: as the stored records do."""
    key = settings.pseudonymise_key
    if key is None:
        return str
    from heatlens.ingest import pseudonym

    secret = key.get_secret_value()
    return lambda actor: pseudonym(secret, actor)


def _membership(actor: str, team: str, start: str | None, end: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {"type": "membership", "actor": actor, "team": team}
    if start is not None:
        record["from"] = start
    if end is not None:
        record["to"] = end
    return record
