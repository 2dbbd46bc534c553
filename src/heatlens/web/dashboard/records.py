"""The Data view: what the store holds — records per source and type, when each source last
delivered (file, API, webhook, sync), the sync cursors, and the records ingest refused."""

from __future__ import annotations

from typing import Any

from heatlens.model import RECORD_TYPES
from heatlens.store import Store
from heatlens.store.schema import q
from heatlens.web.dashboard.present import EMPTY_STORE, View

ERRORS_SHOWN = 50


def data(store: Store) -> View:
    """Counts per (type, source), last delivery per source, sync state, recent ingest errors."""
    view = View("Data", "data.html", "data")
    counts = store.counts_by_source()
    latest = " UNION ALL ".join(
        f"SELECT source, max(ingested_at) AS last_at FROM {q(t.table)} GROUP BY source"
        for t in RECORD_TYPES
    )
    sources = store.fetchall(
        f"SELECT source, max(last_at) FROM ({latest}) AS s GROUP BY source ORDER BY 2 DESC, 1"
    )
    syncs = store.fetchall("SELECT name, updated_at FROM sync_state ORDER BY name")
    total_errors = int(store.fetchall("SELECT count(*) FROM ingest_error")[0][0])
    errors = store.fetchall(
        'SELECT "at", source, location, type, field, value, message FROM ingest_error '
        f'ORDER BY "at" DESC LIMIT {ERRORS_SHOWN}'
    )
    by_type: dict[str, int] = {}
    for rtype, _, n in counts:
        by_type[rtype] = by_type.get(rtype, 0) + n
    context: dict[str, Any] = {
        "counts": counts,
        "by_type": [(t.name, by_type.get(t.name, 0)) for t in RECORD_TYPES],
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
