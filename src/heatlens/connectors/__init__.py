"""Connectors (DESIGN §2): each reads one vendor's data and maps it onto canonical records.

A connector lives in `connectors/<vendor>/`: a reader or client for the vendor, a `mapping.py`
that turns vendor data into canonical records (pure: no I/O), and a sync that feeds those records
through `heatlens.ingest.ingest_records` — so its records pass the very rules files and the API
pass — and keeps what it has read in the store's sync state, committed in the same transaction
as the records it covers. Connectors never import metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from heatlens.store import WriteCounts

__all__ = ["ProgressFn", "SyncResult", "no_progress"]

# (what is being done, how far, out of how many — None when unknown)
ProgressFn = Callable[[str, int, int | None], None]


def no_progress(description: str, completed: int, total: int | None) -> None:
    """A progress callback that shows nothing (library use, the scheduler)."""


@dataclass
class SyncResult:
    """What one sync did: records written per type, and what the user should know about."""

    source: str
    counts: dict[str, WriteCounts] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # one line on what was read, e.g. "3 new commits, 1 new deployment (v1.2)"
    summary: str = ""
