"""Partial records (DESIGN §3's vendor merge rules): a webhook delivery often knows only part of a
record — a merged PR's change has no author, an incident's resolve no severity — while the store
replaces whole records. `overlay` folds such a record onto the stored one with the same id before
it is ingested, so nothing the earlier deliveries said is lost.

Later non-null fields win, except an incident's two times: `opened_at` is the earliest seen (an
event that only knows the incident was open by then gives an upper bound), and `resolved_at` is
never cleared (being non-null wins, like any field).

`ship_commits` then fills a deployment's shipped commits the way Four Keys does (DESIGN §3): a
deployment that lists no `commits` ships the stored changes of its service committed after the
service's previously deployed sha and up to its own `commit_sha`, else only its `commit_sha`.
Stored changes carry no parent links (a push payload lists its commits, not their parents), so
"between" is by `committed_at` within the service (and the deployed commit's repository):
the changes committed in (previous deployed commit's `committed_at`, this one's]. The previously
deployed sha is that of the latest earlier (by `finished_at`) successful deployment of the same
service in the same environment. A list once filled is stored with the deployment and kept by
later deliveries of it (the overlay keeps non-null fields), so a redelivered status changes
nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from heatlens.model import BY_NAME, Kind
from heatlens.store import Store

Record = dict[str, Any]

# earliest wins for these (type → fields); every other field: the later non-null value
EARLIEST: dict[str, tuple[str, ...]] = {"incident": ("opened_at",)}


def overlay(stored: Mapping[str, Any] | None, new: Mapping[str, Any]) -> Record:
    """`new` (a later, partial record) folded onto `stored` (the same record as it was, or None)."""
    if stored is None:
        return dict(new)
    if stored.get("id") != new.get("id") or stored.get("type", new.get("type")) != new.get("type"):
        raise ValueError(f"cannot overlay {new.get('type')} {new.get('id')!r} on another record")
    merged = dict(stored)
    merged.update({k: v for k, v in new.items() if v is not None})
    for name in EARLIEST.get(str(new.get("type")), ()):
        times = [t for t in (stored.get(name), new.get(name)) if t]
        if times:
            merged[name] = min(times, key=_instant)
    return merged


def overlay_stored(store: Store, records: Sequence[Mapping[str, Any]]) -> list[Record]:
    """Each record overlaid on the stored record of its type and id (and on earlier records of
    this list with the same id). Run it in the transaction that writes the result."""
    by_type: dict[str, set[str]] = {}
    for r in records:
        if r.get("type") in BY_NAME and isinstance(r.get("id"), str):
            by_type.setdefault(str(r["type"]), set()).add(str(r["id"]))
    current: dict[tuple[str, str], Record] = {}
    for type_name, ids in by_type.items():
        for row in store.rows(type_name, ids=sorted(ids)):
            current[(type_name, row["id"])] = canonical(type_name, row)
    out: list[Record] = []
    for r in records:
        key = (str(r.get("type")), str(r.get("id")))
        merged = overlay(current.get(key), r)
        if key[0] in BY_NAME:
            current[key] = merged
        out.append(merged)
    return ship_commits(store, out)


def ship_commits(store: Store, records: Sequence[Record]) -> list[Record]:
    """`records` with each deployment that lists no `commits` but has a `commit_sha` given the
    commits it shipped (see the module's doc): looked up in the store and among the records
    before it in this list (a push and its deployment may be written together)."""
    out: list[Record] = []
    # this list's changes and deployments so far, per service (only those can matter)
    earlier: dict[str, list[Record]] = {}
    for r in records:
        if r.get("type") == "deployment" and r.get("commit_sha") and not r.get("commits"):
            r = {**r, "commits": _shipped(store, r, earlier.get(str(r.get("service")), []))}
        if r.get("type") in ("change", "deployment") and r.get("service"):
            earlier.setdefault(str(r["service"]), []).append(r)
        out.append(r)
    return out


def _shipped(store: Store, deployment: Record, earlier: Sequence[Record]) -> list[str]:
    sha, service = str(deployment["commit_sha"]), str(deployment.get("service") or "")
    only = [sha]
    finished = _at(deployment.get("finished_at"))
    if not service or finished is None:
        return only
    environment = str(deployment.get("environment") or "production")
    previous = _previous(store, deployment, environment, finished, earlier)
    if previous is None or previous == sha:
        return only
    changes = _changes(store, earlier, [sha, previous])
    this, before = changes.get(sha), changes.get(previous)
    if this is None or before is None or this[0] != service or before[0] != service:
        return only
    repo = this[1]
    after, until = before[2], this[2]
    if until <= after:  # a rollback or a redeploy: nothing newer ships
        return only
    found = dict(store.changes_committed_between(service, repo, after, until))
    for r in earlier:  # this list's changes, not stored yet
        at = _at(r.get("committed_at"))
        if (
            r.get("type") == "change"
            and r.get("service") == service
            and (repo is None or r.get("repo") == repo)
            and at is not None
            and after < at <= until
        ):
            found[str(r["id"])] = at
    found[sha] = until
    return [s for s, _ in sorted(found.items(), key=lambda item: (item[1], item[0]))]


def _previous(
    store: Store,
    deployment: Record,
    environment: str,
    finished: datetime,
    earlier: Sequence[Record],
) -> str | None:
    """The commit_sha of the latest earlier successful deployment of the same service and
    environment: stored, or earlier in this list."""
    own = str(deployment.get("id"))
    best: tuple[datetime, str, str] | None = None
    stored = store.previous_deployment(str(deployment["service"]), environment, finished, own)
    if stored is not None:
        best = (_utc(stored[2]), stored[0], stored[1])
    for r in earlier:
        at = _at(r.get("finished_at"))
        if (
            r.get("type") == "deployment"
            and r.get("id") != own
            and r.get("service") == deployment["service"]
            and str(r.get("environment") or "production") == environment
            and str(r.get("result") or "success") == "success"
            and r.get("commit_sha")
            and at is not None
            and at < finished
            and (best is None or (at, str(r["id"])) > best[:2])
        ):
            best = (at, str(r["id"]), str(r["commit_sha"]))
    return best[2] if best else None


def _changes(
    store: Store, earlier: Sequence[Record], shas: Sequence[str]
) -> dict[str, tuple[str | None, str | None, datetime]]:
    """sha → (service, repo, committed_at) of these changes: stored, or earlier in this list."""
    found: dict[str, tuple[str | None, str | None, datetime]] = {}
    for row in store.rows("change", ids=sorted(set(shas))):
        found[row["id"]] = (row.get("service"), row.get("repo"), _utc(row["committed_at"]))
    for r in earlier:
        at = _at(r.get("committed_at"))
        if r.get("type") == "change" and r.get("id") in shas and at is not None:
            found[str(r["id"])] = (r.get("service"), r.get("repo"), at)
    return found


def _at(value: Any) -> datetime | None:
    """A record's timestamp as an aware instant (naive: UTC); None when absent or unreadable."""
    if value is None:
        return None
    try:
        return _utc(_instant(value))
    except ValueError:
        return None


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def canonical(type_name: str, row: Mapping[str, Any]) -> Record:
    """A stored row as the canonical JSON record ingest reads (no `source`, `ingested_at`)."""
    rtype = BY_NAME[type_name]
    record: Record = {"type": type_name}
    for f in rtype.fields:
        value = row.get(f.name)
        if value is None:
            continue
        if isinstance(value, datetime | date):
            value = value.isoformat()
        elif f.kind in (Kind.OBJECT, Kind.QUESTIONS) and isinstance(value, str):
            value = json.loads(value)
        elif isinstance(value, tuple):
            value = list(value)
        record[f.name] = value
    return record


def _instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
