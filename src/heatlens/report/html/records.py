"""The Data view: what the store holds — records per type and the time span they cover, records
per source and type, when each source last delivered (file, API, sync), the sync cursors, and
the records ingest refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from heatlens.model import RECORD_TYPES
from heatlens.report.html.present import EMPTY_STORE, View
from heatlens.store import Store

ERRORS_SHOWN = 50


def _day(at: datetime) -> str:
    """An instant as its UTC day (a span's ends, read at a glance)."""
    return at.astimezone(UTC).strftime("%Y-%m-%d")


def data(store: Store) -> View:
    """Counts per (type, source), last delivery per source, sync state, recent ingest errors."""
    view = View("Data", "data.html", "data")
    counts = store.counts_by_source()
    sources = store.last_ingested_by_source()
    syncs = [(name, at) for name, _, at in store.sync_states()]
    total_errors, errors = store.ingest_errors(ERRORS_SHOWN)
    by_type: dict[str, int] = {}
    for rtype, _, n in counts:
        by_type[rtype] = by_type.get(rtype, 0) + n
    spans = store.spans()
    context: dict[str, Any] = {
        "counts": counts,
        "by_type": [(t.name, by_type.get(t.name, 0)) for t in RECORD_TYPES],
        # each type's records and, for those placed in time, the field and the span it covers
        "types": [
            {
                "name": t.name,
                "records": by_type.get(t.name, 0),
                "at": t.at,
                "first": _day(spans[t.name].first) if t.name in spans else None,
                "last": _day(spans[t.name].last) if t.name in spans else None,
            }
            for t in RECORD_TYPES
        ],
        "sources": [{"source": s, "kind": str(s).split(":", 1)[0], "at": at} for s, at in sources],
        "syncs": syncs,
        "errors": errors,
        "total_errors": total_errors,
        "version": store.data_version(),
    }
    if not counts:
        context["empty"] = EMPTY_STORE  # the page still shows refused records, if any
    view.context.update(context)
    return view
