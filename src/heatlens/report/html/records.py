"""The Data view: what the store holds — records per type and the time span they cover, records
per source and type, when each source last delivered (file, API, sync), each webhook source's
counters and the deliveries the server refused, the sync cursors, and the records ingest
refused."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from heatlens.model import RECORD_TYPES
from heatlens.report.html.present import EMPTY_STORE, View
from heatlens.store import Store, deliveries
from heatlens.store.deliveries import SEEN_PREFIX, STATS_PREFIX

ERRORS_SHOWN = 50


def _day(at: datetime) -> str:
    """An instant as its UTC day (a span's ends, read at a glance)."""
    return at.astimezone(UTC).strftime("%Y-%m-%d")


def data(store: Store, refused: Mapping[str, Any] | None = None) -> View:
    """Counts per (type, source), last delivery per source, webhooks, sync state, recent ingest
    errors. `refused`: the server's refused webhook deliveries (heatlens.web.refusals), kept in
    its memory, not in the store."""
    view = View("Data", "data.html", "data")
    counts = store.counts_by_source()
    sources = store.last_ingested_by_source()
    syncs = [(name, at) for name, _, at in store.sync_states(excluding=(STATS_PREFIX, SEEN_PREFIX))]
    webhooks = [_webhook(state) for state in deliveries.counters(store)]
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
        "webhooks": webhooks,
        "refused": None
        if refused is None
        else {
            **refused,
            "last": [{**r, "at": _moment(r.get("at")) or ""} for r in refused.get("last", [])],
        },
        "errors": errors,
        "total_errors": total_errors,
        "version": store.data_version(),
    }
    if not counts:
        context["empty"] = EMPTY_STORE  # the page still shows refused records, if any
    view.context.update(context)
    return view


def _webhook(state: Mapping[str, Any]) -> dict[str, Any]:
    """One webhook source's counters as the page shows them."""
    ignored = state.get("last_ignored")
    ignored = ignored if isinstance(ignored, Mapping) else {}
    return {
        "source": state.get("source", ""),
        "deliveries": int(state.get("deliveries", 0) or 0),
        "ignored": int(state.get("ignored", 0) or 0),
        "last_at": _moment(state.get("last_delivery_at")) or "",
        "last_event": state.get("last_event") or "",
        "ignored_event": ignored.get("event") or "",
        "ignored_reason": ignored.get("reason") or "",
    }


def _moment(value: Any) -> str | None:
    """An ISO instant as `YYYY-MM-DD HH:MM:SS UTC`; None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
