"""Partial records (DESIGN §3's vendor merge rules): a webhook delivery often knows only part of a
record — a merged PR's change has no author, an incident's resolve no severity — while the store
replaces whole records. `overlay` folds such a record onto the stored one with the same id before
it is ingested, so nothing the earlier deliveries said is lost.

Later non-null fields win, except an incident's two times: `opened_at` is the earliest seen (an
event that only knows the incident was open by then gives an upper bound), and `resolved_at` is
never cleared (being non-null wins, like any field).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
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
    return out


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
