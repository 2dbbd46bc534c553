"""The demo organisation as records: `generate` assembles every record type from the registry
(organisation.py), delivery (delivery.py) and surveys (surveys.py) as Arrow tables; `write` puts
them all in one Parquet or NDJSON file (`heatlens generate`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from heatlens.demo.delivery import delivery_tables
from heatlens.demo.organisation import (
    ROW_GROUP,
    OrgSpec,
    build_org,
    registry_tables,
    streams,
    usage_table,
)
from heatlens.demo.surveys import survey_tables
from heatlens.model import BY_NAME, RECORD_TYPES, Kind

__all__ = ["generate", "write"]


def generate(spec: OrgSpec) -> dict[str, pa.Table]:
    """Generate a demo organisation: one Arrow table per record type, keyed by type name.

    Deterministic for a seed. Each domain draws from its own child generator, so `usage_scale`
    changes the usage records and nothing else.
    """
    org_rng, usage_rng, delivery_rng, survey_rng = streams(spec.seed)
    org = build_org(spec, org_rng)
    tables = registry_tables(org)
    tables["usage"] = usage_table(org, spec.usage_scale, usage_rng)
    tables.update(delivery_tables(org, delivery_rng))
    tables.update(survey_tables(org, survey_rng))
    return {t.name: tables[t.name] for t in RECORD_TYPES}


def write(tables: Mapping[str, pa.Table], path: Path) -> int:
    """Write all records to one file and return how many were written.

    `.parquet`: one Parquet file with a `type` column and the union of all fields (null where a
    type has no such field). `.ndjson`/`.jsonl`: one JSON object per line, `type` first, null fields
    left out, timestamps as ISO 8601 in UTC with `Z`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".ndjson", ".jsonl"):
        raise ValueError(f"cannot write {path.name}: use a .parquet, .ndjson or .jsonl file")
    unknown = set(tables) - set(BY_NAME)
    if unknown:
        raise ValueError(f"unknown record type(s): {sorted(unknown)}")
    ordered = {t.name: tables[t.name] for t in RECORD_TYPES if t.name in tables}
    if suffix == ".parquet":
        _write_parquet(ordered, path)
    else:
        with duckdb.connect() as con, path.open("wb") as out:
            for name, data in ordered.items():
                _write_ndjson(con, name, data, out)
    return sum(data.num_rows for data in ordered.values())


def _write_parquet(tables: dict[str, pa.Table], path: Path) -> None:
    fields: dict[str, pa.DataType] = {}
    for data in tables.values():
        for f in data.schema:
            fields.setdefault(f.name, f.type)
    schema = pa.schema([("type", pa.string()), *fields.items()])
    # slices of one type each, so the all-null columns stay small and row groups hold one type
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for name, data in tables.items():
            for batch in data.to_batches(max_chunksize=ROW_GROUP):
                n = batch.num_rows
                have = dict(zip(batch.schema.names, batch.columns, strict=True))
                columns = [pa.repeat(name, n)]
                columns += [have.get(c, pa.nulls(n, t)) for c, t in fields.items()]
                writer.write_batch(pa.record_batch(columns, schema=schema))


def _write_ndjson(con: duckdb.DuckDBPyConnection, name: str, data: pa.Table, out: BinaryIO) -> None:
    # naive UTC timestamps, so the text does not depend on the session's time zone
    naive = [
        c.cast(pa.timestamp("us")) if pa.types.is_timestamp(c.type) else c for c in data.columns
    ]
    con.register("t_out", pa.Table.from_arrays(naive, names=data.column_names))
    kinds = {f.name: f.kind for f in BY_NAME[name].fields}
    parts = [_literal('{"type":' + json.dumps(name))]
    for f in data.schema:
        col = '"' + f.name.replace('"', '""') + '"'
        if pa.types.is_timestamp(f.type):
            whole = f"strftime({col}, '%Y-%m-%dT%H:%M:%SZ')"
            fraction = f"strftime({col}, '%Y-%m-%dT%H:%M:%S.%fZ')"
            value = f"CASE WHEN microsecond({col}) % 1000000 = 0 THEN {whole} ELSE {fraction} END"
            value = f"to_json({value})::VARCHAR"
        elif kinds.get(f.name) in (Kind.OBJECT, Kind.QUESTIONS):
            value = col  # already JSON text
        else:
            value = f"to_json({col})::VARCHAR"
        # `||` is null when the value is, and then the whole member drops out
        parts.append(f"coalesce({_literal(',' + json.dumps(f.name) + ':')} || {value}, '')")
    sql = f"SELECT {' || '.join(parts)} || '}}' || chr(10) AS line FROM t_out"
    for batch in con.execute(sql).to_arrow_reader(500_000):
        lines = batch.column(0)
        width = np.int64 if pa.types.is_large_string(lines.type) else np.int32
        offsets = np.frombuffer(lines.buffers()[1], dtype=width)[lines.offset :]
        values = lines.buffers()[2]
        if values is not None and len(lines):
            # the lines lie back to back in the values buffer: write them in one go
            out.write(memoryview(values)[offsets[0] : offsets[len(lines)]])
    con.unregister("t_out")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
