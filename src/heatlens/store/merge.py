"""The merge of staged records into their table: the one place that decides whether a record is
new, changed or unchanged, and counts it for the part (file, table, request) it came from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from heatlens.model import RecordType
from heatlens.store.backends import DuckDBBackend, PostgresBackend
from heatlens.store.schema import q, record_columns

__all__ = ["PART", "Part", "Staged", "WriteCounts", "merge"]

Backend = DuckDBBackend | PostgresBackend

# the column of a stage naming the part (index into the write's parts) each row came from
PART = "__part"


@dataclass(frozen=True)
class Part:
    """One piece of an ingest (a file, an Arrow table, a request's records): the input whose
    counts its records add to, and the `source` they are stored with."""

    input: int
    source: str


@dataclass(frozen=True)
class Staged:
    """Validated records of one type, staged in the store's staging connection.

    `table` has exactly the record type's field columns plus `__part`, with at most one row per
    (id, part); `parts` are the parts it holds rows of, in write order.
    """

    rtype: RecordType
    table: str
    parts: tuple[int, ...]


@dataclass
class WriteCounts:
    """What an upsert did to one record type."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def add(self, other: WriteCounts) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged


def merge(
    b: Backend,
    batch: Staged,
    stage: str,
    parts: Sequence[Part],
    now: datetime,
    *,
    none_stored: bool = False,
) -> dict[int, WriteCounts]:
    """Merge one type's stage into its table; counts per part. Whether a record changed is
    decided here, and only here. `none_stored`: the caller knows that the table holds none of
    the staged ids (heatlens.store.ids), so no row need be looked up."""
    if b.dialect == "postgres":
        return _merge_postgres(b, batch, stage, parts, now)
    rtype = batch.rtype
    target = q(rtype.table)
    fields = list(rtype.field_names)
    field_list = ", ".join(q(f) for f in fields)
    # a chain: some id staged by several parts, each version judged against the one before
    # one query: whether ids repeat across parts, whether the table is empty
    repeats = (
        f"SELECT count(*) - count(DISTINCT id) FROM {q(stage)}" if len(batch.parts) > 1 else "0"
    )
    [(repeated, stored)] = b.fetchall(f"SELECT ({repeats}), EXISTS (SELECT 1 FROM {target})")
    chain = bool(repeated)
    # DuckDB replaces a temporary table in one statement; Postgres drops it first
    duck = b.dialect == "duckdb"
    create = "CREATE OR REPLACE TEMP TABLE" if duck else "CREATE TEMP TABLE"
    if not chain and (not stored or none_stored):
        # a bulk load into an empty table, or of ids it does not hold: every row is new
        if len(batch.parts) == 1:
            staged = b.fetchall(f"SELECT count(*) FROM {q(stage)}")[0][0]
            found = [(batch.parts[0], staged)] if staged else []
        else:
            found = b.fetchall(f"SELECT {PART}, count(*) FROM {q(stage)} GROUP BY {PART}")
        _insert(b, batch, stage, parts, now)
        return {int(part): WriteCounts(inserted=int(n)) for part, n in found}
    # each staged row against the version it replaces: the stored one, or (in a chain) the
    # previous part's version of the same id
    if chain:
        if not duck:
            b.execute("DROP TABLE IF EXISTS merge_seq")
        b.execute(
            f"{create} merge_seq AS SELECT {field_list}, {PART}, "
            f"row_number() OVER (PARTITION BY id ORDER BY {PART}) AS k FROM {q(stage)}"
        )
        current = "merge_seq"
        previous = (
            f"(SELECT {field_list}, k + 1 AS k FROM merge_seq UNION ALL "
            f"SELECT {field_list}, 1 AS k FROM {target} "
            f"WHERE id IN (SELECT id FROM merge_seq)) AS p ON p.id = c.id AND p.k = c.k"
        )
    else:
        current, previous = q(stage), f"{target} p ON p.id = c.id"
    same = " AND ".join(f"c.{q(f)} IS NOT DISTINCT FROM p.{q(f)}" for f in fields if f != "id")
    if not duck:
        b.execute("DROP TABLE IF EXISTS merge_status")
    b.execute(
        f"{create} merge_status AS SELECT c.id, c.{PART}, p.id IS NULL AS is_new, "
        f"(p.id IS NOT NULL AND NOT ({same or 'TRUE'})) AS is_changed "
        f"FROM {current} c LEFT JOIN {previous}"
    )
    by_part = {
        int(part): WriteCounts(int(new), int(changed), int(n) - int(new) - int(changed))
        for part, new, changed, n in b.fetchall(
            f"SELECT {PART}, count(*) FILTER (WHERE is_new), "
            f"count(*) FILTER (WHERE is_changed), count(*) FROM merge_status GROUP BY {PART}"
        )
    }
    if any(c.updated for c in by_part.values()):
        b.execute(
            f"DELETE FROM {target} WHERE id IN (SELECT id FROM merge_status WHERE is_changed)"
        )
    if any(c.inserted or c.updated for c in by_part.values()):
        # a record is written once: its last version that was new or changed
        if chain:
            if not duck:
                b.execute("DROP TABLE IF EXISTS merge_written")
            b.execute(
                f"{create} merge_written AS SELECT id, max({PART}) AS {PART} "
                "FROM merge_status WHERE is_new OR is_changed GROUP BY id"
            )
            only = "merge_written"
        else:  # no id repeats: the new and changed rows of merge_status, as they are
            only = "(SELECT id, __part FROM merge_status WHERE is_new OR is_changed)"
        _insert(b, batch, stage, parts, now, only=only)
    if not duck:
        # DuckDB's are replaced by the next merge on this connection
        for table in ("merge_status", "merge_seq", "merge_written"):
            b.execute(f"DROP TABLE IF EXISTS {table}")
    return by_part


def _merge_postgres(
    b: Backend, batch: Staged, stage: str, parts: Sequence[Part], now: datetime
) -> dict[int, WriteCounts]:
    """The merge on Postgres, safe for several writers at once (server replicas): each id's
    first staged version goes through `INSERT … ON CONFLICT (id) DO UPDATE … WHERE <changed>`,
    which waits for a concurrent writer of the same id and judges against what it committed;
    `RETURNING (xmax = 0)` tells an inserted row from an updated one, and a row it returns not
    is unchanged. The conflicting rows stay locked to the end of the transaction, so the later
    versions of a chain (an id staged by several parts) are judged against the version before
    them, as on DuckDB, and the last changed one is written over the first."""
    rtype = batch.rtype
    fields = list(rtype.field_names)
    field_list = ", ".join(q(f) for f in fields)
    chain = len(batch.parts) > 1 and bool(
        b.fetchall(f"SELECT count(*) - count(DISTINCT id) FROM {q(stage)}")[0][0]
    )
    by = f"SELECT {PART}, count(*) FROM {q(stage)} GROUP BY {PART}"
    if len(batch.parts) == 1:
        by = f"SELECT {int(batch.parts[0])}, count(*) FROM {q(stage)}"
    totals = {int(part): int(n) for part, n in b.fetchall(by)}
    if chain:
        b.execute("DROP TABLE IF EXISTS merge_seq")
        b.execute(
            f"CREATE TEMP TABLE merge_seq AS SELECT {field_list}, {PART}, "
            f"row_number() OVER (PARTITION BY id ORDER BY {PART}) AS k FROM {q(stage)}"
        )
        first = "(SELECT * FROM merge_seq WHERE k = 1)"
    else:
        first = q(stage)
    found = _upsert(b, batch, first, parts, now, only_changed=True)
    counts = {part: WriteCounts() for part in totals}
    for part, new, changed in found:
        counts[int(part)].inserted += int(new)
        counts[int(part)].updated += int(changed)
    if chain:
        same = " AND ".join(f"c.{q(f)} IS NOT DISTINCT FROM p.{q(f)}" for f in fields if f != "id")
        b.execute("DROP TABLE IF EXISTS merge_status")
        b.execute(
            f"CREATE TEMP TABLE merge_status AS SELECT c.id, c.{PART}, c.k, "
            f"NOT ({same or 'TRUE'}) AS is_changed "
            "FROM merge_seq c JOIN merge_seq p ON p.id = c.id AND p.k = c.k - 1"
        )
        for part, changed in b.fetchall(
            f"SELECT {PART}, count(*) FROM merge_status WHERE is_changed GROUP BY {PART}"
        ):
            counts[int(part)].updated += int(changed)
        # the last changed later version of each id replaces the first one written above
        last = (
            "(SELECT s.* FROM merge_seq s JOIN (SELECT id, max(k) AS k FROM merge_status "
            "WHERE is_changed GROUP BY id) m ON m.id = s.id AND m.k = s.k)"
        )
        _upsert(b, batch, last, parts, now, only_changed=False)
        for table in ("merge_status", "merge_seq"):
            b.execute(f"DROP TABLE {table}")
    for part, c in counts.items():
        c.unchanged = totals[part] - c.inserted - c.updated
    return {part: c for part, c in counts.items() if totals[part]}


def _upsert(
    b: Backend,
    batch: Staged,
    rows: str,
    parts: Sequence[Part],
    now: datetime,
    *,
    only_changed: bool,
) -> list[tuple[int, int, int]]:
    """`INSERT … ON CONFLICT (id) DO UPDATE` of `rows` (at most one per id), in id order (two
    writers lock the same ids in the same order, so they wait for each other rather than
    deadlock); with `only_changed`, a stored row equal to the new one is left as it is.
    Returns (part, inserted, updated) for the parts that wrote any row."""
    rtype = batch.rtype
    target = q(rtype.table)
    fields = list(rtype.field_names)
    cols = ", ".join(q(c) for c in record_columns(rtype))
    values = ", ".join(f"s.{q(f)}" for f in fields)
    sources = sorted({parts[p].source for p in batch.parts})
    params: list[object] = []
    if len(sources) == 1:
        source = "?"
        params.append(sources[0])
    else:
        whens = []
        for p in batch.parts:
            whens.append(f"WHEN {int(p)} THEN ?")
            params.append(parts[p].source)
        source = f"CASE s.{PART} {' '.join(whens)} END"
    params.append(now)
    assign = ", ".join(f"{q(c)} = EXCLUDED.{q(c)}" for c in record_columns(rtype) if c != "id")
    where = ""
    if only_changed:
        same = " AND ".join(
            f"{target}.{q(f)} IS NOT DISTINCT FROM EXCLUDED.{q(f)}" for f in fields if f != "id"
        )
        where = f" WHERE NOT ({same or 'TRUE'})"
    counted = "count(*) FILTER (WHERE w.is_new), count(*) FILTER (WHERE NOT w.is_new)"
    if len(batch.parts) == 1:  # every row is of the one part: no need to look its part up
        by_part = f"SELECT {int(batch.parts[0])}, {counted} FROM w"
    else:
        by_part = f"SELECT s.{PART}, {counted} FROM w JOIN {rows} s ON s.id = w.id GROUP BY 1"
    found = b.fetchall(
        f"WITH w AS (INSERT INTO {target} ({cols}) SELECT {values}, {source}, ? "
        f"FROM {rows} s ORDER BY s.id ON CONFLICT (id) DO UPDATE SET {assign}{where} "
        f"RETURNING id, (xmax = 0) AS is_new) {by_part}",
        params,
    )
    return [(int(p), int(n), int(c)) for p, n, c in found if n or c]


def _insert(
    b: Backend,
    batch: Staged,
    stage: str,
    parts: Sequence[Part],
    now: datetime,
    only: str | None = None,
) -> None:
    """Insert a stage's rows (those of `only`'s (id, part) pairs), each with its part's
    source."""
    rtype = batch.rtype
    cols = ", ".join(q(c) for c in record_columns(rtype))
    values = ", ".join(f"s.{q(f)}" for f in rtype.field_names)
    by_source: dict[str, list[int]] = {}
    for part in batch.parts:
        by_source.setdefault(parts[part].source, []).append(part)
    rows = f"{q(stage)} s"
    if only is not None:
        rows += f" JOIN {only} m ON m.id = s.id AND m.{PART} = s.{PART}"
    for source, mine in by_source.items():
        where = (
            f" WHERE s.{PART} IN ({', '.join(str(int(p)) for p in mine)})"
            if len(by_source) > 1
            else ""
        )
        b.execute(
            f"INSERT INTO {q(rtype.table)} ({cols}) SELECT {values}, ?, ? FROM {rows}{where}",
            [source, now],
        )
