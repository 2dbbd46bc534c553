"""Several inputs (the server's concurrent requests) validated in one pass and written in one
transaction, each judged and counted on its own.

`prepare_group` validates (it writes nothing but refused records' problems); `write_group` counts
and writes, and is the step to serialise with the store's other writers.

The inputs' records go into one raw table, numbered `input * STRIDE + record`, so every problem
and every staged row knows its input. An input with an invalid record gets its own InputError and
its rows leave the stages; the others are written together. Each input's counts are what it would
have reported had the inputs been written one after another in order: a record is `inserted` when
neither the store nor an earlier input has its id, `updated` when it differs from the version
before it (the store's, or an earlier input's), else `unchanged`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb

from heatlens.errors import InputError
from heatlens.ingest import (
    MAX_SHOWN,
    IngestResult,
    Prepared,
    _ids,
    clean,
    discard,
    formats,
    keep_last,
)
from heatlens.ingest.validate import Problem, validate
from heatlens.model import BY_NAME, RecordType
from heatlens.settings import Settings
from heatlens.store import Staged, Store, WriteCounts
from heatlens.store.schema import q

__all__ = ["Group", "discard", "prepare_group", "write_group"]

STRIDE = 1 << 32  # records per input, at most: far above any request's
_STORED_CHUNK = 1_000  # ids per query when reading a non-DuckDB store's current rows


@dataclass
class Group:
    """Inputs validated together: `outcomes[i]` is input i's InputError, or None until written."""

    prepared: Prepared
    sizes: list[int]  # records per input
    outcomes: list[InputError | None]
    # per valid input, per type: counts as if written in order
    counts: dict[int, dict[str, WriteCounts]] = field(default_factory=dict)


def prepare_group(
    store: Store, inputs: Sequence[list[dict[str, Any]]], settings: Settings, *, source: str
) -> Group:
    """Validate and stage every input's records in one pass; see the module docstring."""
    con = store.staging_connection()
    prefix = f"ingest{next(_ids)}_0"
    prepared = Prepared(IngestResult())
    prepared.tables += [f"{prefix}_raw", f"{prefix}_src"]
    try:
        numbers = (i * STRIDE + n for i, rs in enumerate(inputs) for n in range(1, len(rs) + 1))
        records = (r for rs in inputs for r in rs)
        raw = formats.read_records(con, "request", f"{prefix}_raw", records, numbers)
        checked = validate(con, raw, tz=settings.timezone, prefix=prefix, limit=None)
        prepared.tables += list(checked.stages.values())
        group = Group(prepared, [len(rs) for rs in inputs], [None] * len(inputs))
        _refuse_invalid(store, group, checked.problems, source)
        bad = [i for i, o in enumerate(group.outcomes) if o is not None]
        for name, stage in checked.stages.items():
            if bad:
                con.execute(
                    f"DELETE FROM {stage} WHERE __line // {STRIDE} IN (SELECT unnest(?))", [bad]
                )
            clean(con, stage, name, settings)
            prepared.batches.append(Staged(BY_NAME[name], stage, source))
        return group
    except BaseException:
        discard(store, [prepared])
        raise


def write_group(store: Store, group: Group) -> list[IngestResult | InputError]:
    """Count, then write the group's valid inputs in ONE transaction; each input's result or
    InputError. Nothing else may write the store meanwhile: the counts compare with its rows."""
    con = store.staging_connection()
    for batch in group.prepared.batches:
        _count(store, con, batch.rtype, batch.table, group)
        keep_last(con, batch.table)
    store.write(group.prepared.batches)
    out: list[IngestResult | InputError] = []
    for i, outcome in enumerate(group.outcomes):
        if outcome is not None:
            out.append(outcome)
        else:
            out.append(IngestResult(counts=group.counts.get(i, {}), read=group.sizes[i]))
    return out


def _refuse_invalid(store: Store, group: Group, problems: list[Problem], source: str) -> None:
    """Give each input with an invalid record its own InputError, numbered within it."""
    by_input: dict[int, list[Problem]] = defaultdict(list)
    for p in problems:
        line = p.line or 0
        by_input[line // STRIDE].append(replace(p, line=line % STRIDE))
    for i, mine in sorted(by_input.items()):
        rejected = len({p.line for p in mine})
        store.log_ingest_errors(source, mine[:MAX_SHOWN])
        listed: list[object] = list(mine)
        group.outcomes[i] = InputError(
            f"{rejected} invalid record(s) in request; nothing was stored", problems=listed
        )


def _count(
    store: Store, con: duckdb.DuckDBPyConnection, rtype: RecordType, stage: str, group: Group
) -> None:
    """Counts per input of one type's stage, as if the inputs were written one after another."""
    fields = list(rtype.field_names)
    stored = _stored(store, con, rtype, stage, group.prepared.tables)
    same_as_stored = (
        " AND ".join(f"w.{q(f)} IS NOT DISTINCT FROM t.{q(f)}" for f in fields if f != "id")
        or "TRUE"
    )
    values = "struct_pack(" + ", ".join(f"{q(f)} := {q(f)}" for f in fields) + ")"
    rows = con.execute(
        f"""WITH v AS (
              SELECT *, __line // {STRIDE} AS __input FROM {stage}
              QUALIFY row_number() OVER (PARTITION BY __input, id ORDER BY __line DESC) = 1
            ), w AS (
              SELECT *, {values} AS __v,
                lag({values}) OVER (PARTITION BY id ORDER BY __input) AS __prev,
                row_number() OVER (PARTITION BY id ORDER BY __input) AS __k
              FROM v
            ), t AS (
              SELECT * FROM {stored} WHERE id IN (SELECT id FROM {stage})
            )
            SELECT __input,
              count(*) FILTER (WHERE __k = 1 AND t.id IS NULL),
              count(*) FILTER (WHERE (__k = 1 AND t.id IS NOT NULL AND NOT ({same_as_stored}))
                                  OR (__k > 1 AND __v IS DISTINCT FROM __prev)),
              count(*)
            FROM w LEFT JOIN t ON t.id = w.id
            GROUP BY __input"""
    ).fetchall()
    for i, inserted, updated, total in rows:
        counts = WriteCounts(int(inserted), int(updated), int(total) - int(inserted) - int(updated))
        group.counts.setdefault(int(i), {})[rtype.name] = counts


def _stored(
    store: Store,
    con: duckdb.DuckDBPyConnection,
    rtype: RecordType,
    stage: str,
    tables: list[str],
) -> str:
    """A table of the staging connection holding the stored rows with the stage's ids.

    A DuckDB store's tables are in the staging connection itself; another store's rows are read
    (by id, in chunks) into a temporary table shaped like the stage.
    """
    if store.dialect == "duckdb":
        return q(rtype.table)
    fields = ", ".join(q(f) for f in rtype.field_names)
    table = f"{stage}_stored"
    tables.append(table)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT {fields} FROM {stage} LIMIT 0")
    ids = [r[0] for r in con.execute(f"SELECT DISTINCT id FROM {stage}").fetchall()]
    marks = ", ".join("?" for _ in rtype.field_names)
    for start in range(0, len(ids), _STORED_CHUNK):
        chunk = ids[start : start + _STORED_CHUNK]
        found = store.fetchall(
            f"SELECT {fields} FROM {q(rtype.table)} WHERE id IN ({', '.join('?' for _ in chunk)})",
            chunk,
        )
        if found:
            con.executemany(f"INSERT INTO {table} VALUES ({marks})", found)
    return table
