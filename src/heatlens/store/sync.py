"""Sync state (DESIGN §2): what each connector has read so far, kept in the store it writes to.

A sync reads its state, ingests what is new, then saves the new state. The state is saved after
the records are committed, so a sync that dies in between reads the same records again next time;
record ids are stable, so that re-read replaces records with themselves and counts nothing twice.
State changes do not bump the data version: no record changed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from heatlens.errors import StoreError
from heatlens.store import Store

__all__ = ["delete_sync_state", "list_sync_states", "load_sync_state", "save_sync_state"]


def load_sync_state(store: Store, name: str) -> dict[str, Any] | None:
    """The state saved under `name`, or None when that sync never ran."""
    rows = store.fetchall("SELECT state FROM sync_state WHERE name = ?", [name])
    if not rows:
        return None
    state = json.loads(rows[0][0])
    if not isinstance(state, dict):
        raise StoreError(f"sync state {name!r} in {store.url} is not a JSON object")
    return state


def save_sync_state(store: Store, name: str, state: dict[str, Any]) -> None:
    """Replace the state saved under `name`."""
    if store.read_only:
        raise StoreError(f"store {store.url} was opened read-only")
    text = json.dumps(state, sort_keys=True, default=str)
    with store.backend.transaction():
        store.backend.execute("DELETE FROM sync_state WHERE name = ?", [name])
        store.backend.execute(
            "INSERT INTO sync_state VALUES (?, ?, ?)", [name, text, datetime.now(UTC)]
        )


def list_sync_states(store: Store, prefix: str = "") -> list[tuple[str, dict[str, Any], datetime]]:
    """(name, state, updated_at) of every saved state whose name starts with `prefix`."""
    # the table is small (one row per configured sync): filter here, not with LIKE escapes
    rows = store.fetchall("SELECT name, state, updated_at FROM sync_state ORDER BY name")
    return [(str(n), json.loads(s), at) for n, s, at in rows if str(n).startswith(prefix)]


def delete_sync_state(store: Store, name: str) -> None:
    """Forget the state saved under `name` (the next sync starts from scratch)."""
    with store.backend.transaction():
        store.backend.execute("DELETE FROM sync_state WHERE name = ?", [name])
