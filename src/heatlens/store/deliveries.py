"""Webhook deliveries in the sync state: the ids taken, and each source's counters (DESIGN §5).

- `webhook-delivery:<source>:<id>` — one row per delivery taken, mapped or ignored, saved in
  the transaction of its records: `{"at", "event"}`, and `"ignored": <reason>` when it stored
  nothing. It makes a replay a duplicate, and it is the delivery's count: a group of webhooks
  writes its ids and nothing else of the sync state (one statement fewer a group than a
  counters row updated each time: docs/performance.md, "Ninth round").
- `webhook:<source>` — the counts of the deliveries whose id rows are gone (forgotten after
  `webhooks.delivery_retention_days`: `fold` adds them here in the transaction that deletes
  them) and of deliveries that came without an id (counted here directly: `taken`).

`counters` adds the two up: what `heatlens status` and the Data page show.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from heatlens.store import Store, SyncTally

STATS_PREFIX = "webhook:"  # webhook:<source> → the counts of deliveries without an id row
SEEN_PREFIX = "webhook-delivery:"  # webhook-delivery:<source>:<id> → a delivery taken
IGNORED = "ignored"  # the key of a delivery row that stored nothing (its reason)
FOLDING = "webhook-deliveries-fold"  # the lock `fold` holds (Store.try_lock)


def seen_name(source: str, delivery_id: str | None) -> str | None:
    """The id row of a delivery: `webhook-delivery:<source>:<id>`; None without an id."""
    return f"{SEEN_PREFIX}{source}:{delivery_id}" if delivery_id else None


def seen_row(event: str, at: datetime, reason: str | None) -> dict[str, Any]:
    """The state of a delivery's id row; `reason`: why it stored nothing, if it did not."""
    state: dict[str, Any] = {"at": at.isoformat(), "event": event}
    if reason is not None:
        state[IGNORED] = reason
    return state


def taken(
    current: Callable[[str], Mapping[str, Any] | None],
    source: str,
    delivery_id: str | None,
    event: str,
    reason: str | None,
) -> dict[str, dict[str, Any]]:
    """The sync state a delivery taken now saves (name → state): its id row; or, without an id,
    its source's counters row (`current(name)`: as saved so far) with one more delivery."""
    at = datetime.now(UTC)
    seen = seen_name(source, delivery_id)
    if seen is not None:
        return {seen: seen_row(event, at, reason)}
    name = STATS_PREFIX + source
    one = SyncTally(1, int(reason is not None))
    return {name: _added(current(name), source, one, seen_row(event, at, reason))}


def counters(store: Store) -> list[dict[str, Any]]:
    """Each source's counters, by source: `deliveries` taken, `ignored` ones with the last
    reason (`last_ignored`), the last delivery's time and event."""
    rows = {
        state.get("source") or name[len(STATS_PREFIX) :]: state
        for name, state, _ in store.sync_states(STATS_PREFIX)
    }
    tallies = store.tally_sync_states(SEEN_PREFIX, IGNORED)
    return [
        _merged(rows.get(source), source, tallies.get(source))
        for source in sorted(rows.keys() | tallies.keys())
    ]


def fold(store: Store, days: float, now: datetime | None = None) -> int:
    """Forget the delivery ids taken more than `days` days before `now`, their counts added to
    their sources' counters rows in the same transaction; how many. A sender replays a delivery
    within hours, so ids older than the retention cannot come back."""
    before = (now or datetime.now(UTC)) - timedelta(days=days)
    # server replicas on one Postgres store each fold: one at a time, or two would add the same
    # rows to the counters (the other finds them gone, or leaves them to the next fold)
    if not store.try_lock(FOLDING):
        return 0
    try:
        with store.transaction():
            tallies = store.tally_sync_states(SEEN_PREFIX, IGNORED, before=before)
            if not tallies:
                return 0
            store.save_sync_states(
                {
                    STATS_PREFIX + source: _merged(
                        store.sync_state(STATS_PREFIX + source), source, tally
                    )
                    for source, tally in tallies.items()
                }
            )
            return store.prune_sync_states(SEEN_PREFIX, before)
    finally:
        store.unlock(FOLDING)


def _merged(
    stats: Mapping[str, Any] | None, source: str, tally: SyncTally | None
) -> dict[str, Any]:
    if tally is None:
        return _added(stats, source, SyncTally(0, 0), None)
    return _added(stats, source, tally, tally.last, tally.last_flagged)


def _added(
    stats: Mapping[str, Any] | None,
    source: str,
    tally: SyncTally,
    last: Mapping[str, Any] | None,
    last_ignored: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`stats` (a counters row) with `tally` more deliveries, `last` the latest of them and
    `last_ignored` the latest that stored nothing (by default `last`, when it did)."""
    out: dict[str, Any] = {"deliveries": 0, IGNORED: 0, **(stats or {}), "source": source}
    out["deliveries"] = int(out["deliveries"]) + tally.count
    out[IGNORED] = int(out[IGNORED]) + tally.flagged
    if last is not None and _later(last.get("at"), out.get("last_delivery_at")):
        out["last_delivery_at"], out["last_event"] = last.get("at"), last.get("event")
    if last_ignored is None and last is not None and IGNORED in last:
        last_ignored = last
    if last_ignored is not None and _later(last_ignored.get("at"), out.get("last_ignored_at")):
        out["last_ignored_at"] = last_ignored.get("at")
        out["last_ignored"] = {"event": last_ignored.get("event"), "reason": last_ignored[IGNORED]}
    return out


def _later(at: Any, than: Any) -> bool:
    """Whether the ISO instant `at` is after `than` (absent: anything is after it)."""
    if not isinstance(than, str):
        return isinstance(at, str)
    if not isinstance(at, str):
        return False
    return datetime.fromisoformat(at) > datetime.fromisoformat(than)
