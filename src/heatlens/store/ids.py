"""Which ids a DuckDB store cannot hold, known without scanning the table.

DuckDB keeps no index on a record table's `id` (an ART index made bulk ingest 3.5× slower and the
file 3.4× larger in a measurement: docs/performance.md), so "is any of these 64 ids stored?" scans
the whole id column: about 150–300 ms per question at 10 M usage records, which a server asks for
every small group of events and webhook deliveries it writes. The process that opens a DuckDB file
is its only writer, so its writer connection can keep the answer in memory instead:

`IdDirectory` holds the hashes (Python's, of this process) of one record type's stored ids,
sorted, read once from the table and then kept current by the writes that tell it (`added`). It is
valid for the type's data version it last saw (`Store.type_versions`) and as long as no
transaction of the connection rolled back; a write by any other path moves that version, and the
next question reads the ids again. An id whose hash is absent is
surely not stored; one whose hash is present may be (a write that deleted it, or another id with
the same hash), and the caller then asks the table. 8 bytes per stored record (80 MB at 10 M).

The same directory holds the names of the saved sync states for a server's writer connection
(`Store.known_sync_states`: is this webhook delivery id new?). Sync state bumps no data version,
so that directory is valid for the count of sync-state writes the process made to the database
(every one goes through `Store`). A name saved by another connection whose transaction was still
open when the directory was read is missed until the next write; inserting it again breaks the
table's key, which rolls the group back (and the directory is read again): never a delivery
counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa

# new hashes are kept aside in a set, and sorted into a level of their own once there are this
# many; a level is merged with the one before while that one is not much larger, so merges of
# the big first level (the stored ids as read) stay rare and a lookup searches a few levels
_MERGE_AT = 65_536
_LEVEL_RATIO = 4


class IdDirectory:
    """The hashes of one record type's stored ids, as of `stamp` (the type's data version and
    the connection's count of rollbacks)."""

    def __init__(self, stamp: tuple[int, int], hashes: np.ndarray) -> None:
        self.stamp = stamp
        self._levels = [np.sort(hashes)]  # sorted arrays, from the largest
        self._recent: set[int] = set()

    @classmethod
    def read(cls, stamp: tuple[int, int], batches: Iterable[pa.RecordBatch]) -> IdDirectory:
        """From the stored ids, read a batch at a time (`id`, the first column)."""
        parts = [
            np.fromiter(map(hash, batch.column(0).to_pylist()), np.int64, batch.num_rows)
            for batch in batches
        ]
        return cls(stamp, np.concatenate(parts) if parts else np.empty(0, np.int64))

    def __len__(self) -> int:
        return sum(len(level) for level in self._levels) + len(self._recent)

    def maybe_stored(self, ids: Sequence[str]) -> list[bool]:
        """For each id: whether it may be stored (False: surely not)."""
        if not ids:
            return []
        wanted = np.fromiter(map(hash, ids), np.int64, len(ids))
        found = np.zeros(len(wanted), dtype=bool)
        for level in self._levels:
            at = np.searchsorted(level, wanted)
            inside = at < len(level)
            found[inside] |= level[at[inside]] == wanted[inside]
        recent = self._recent
        return [bool(f) or int(h) in recent for f, h in zip(found, wanted, strict=True)]

    def added(self, ids: Iterable[str], stamp: tuple[int, int]) -> None:
        """These ids were stored by the write that made `stamp`."""
        self._recent.update(map(hash, ids))
        self.stamp = stamp
        if len(self._recent) < _MERGE_AT:
            return
        levels = self._levels
        levels.append(np.sort(np.fromiter(self._recent, np.int64, len(self._recent))))
        self._recent = set()
        while len(levels) > 1 and len(levels[-2]) < _LEVEL_RATIO * len(levels[-1]):
            last = levels.pop()
            levels[-1] = np.sort(np.concatenate([levels[-1], last]), kind="stable")
