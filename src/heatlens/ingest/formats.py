"""Reading inputs into a raw table of the staging connection: NDJSON, JSON arrays, CSV, Parquet,
Arrow tables and in-memory records.

Every reader gives a `RawInput`: a table with a `__line` column (the line, or record number,
each row came from) and either one JSON object per row (`__j`) or one column per field.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from heatlens.errors import InputError

FORMATS = ("ndjson", "json", "csv", "parquet")
_SUFFIXES = {
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_CHUNK_LINES = 500_000

Progress = Callable[[int], None]


@dataclass
class RawInput:
    """One input read into the staging connection."""

    name: str  # shown in messages: the file name, "stdin", "request"
    table: str
    shape: str  # "json" | "columns"
    unit: str = "line"  # "line" or "record": what `__line` counts
    columns: dict[str, str] = field(default_factory=dict)  # shape "columns": name → DuckDB type
    rows: int = 0


def detect_format(path: Path, fmt: str | None = None) -> str:
    """The format of a file: given, or from its suffix."""
    if fmt:
        if fmt not in FORMATS:
            raise InputError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
        return fmt
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise InputError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}: use .ndjson, "
            ".jsonl, .json, .csv or .parquet, or pass --format"
        )
    return found


def sniff_format(head: bytes) -> str:
    """The format of stdin, from its first bytes."""
    if head.startswith(b"PAR1"):
        return "parquet"
    stripped = head.lstrip()
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith(b"{"):
        return "ndjson"
    return "csv"


def read_path(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: str,
    table: str,
    progress: Progress | None = None,
) -> RawInput:
    """Read a file into raw table `table`."""
    name = path.name
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file")
    if fmt == "ndjson":
        with path.open("rb") as fh:
            return _load_lines(con, name, table, _numbered_lines(fh), progress)
    if fmt == "json":
        return read_json_array(con, name, table, path.read_bytes())
    if fmt == "csv":
        return _read_csv(con, name, table, path)
    return _read_parquet(con, name, table, path)


def read_json_array(con: duckdb.DuckDBPyConnection, name: str, table: str, data: bytes) -> RawInput:
    """A JSON document holding an array of records (or one record)."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f"line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else "encoding"
        raise InputError(
            f"{name} {where}: not valid JSON ({exc}); expected an array of records "
            "or NDJSON (one record per line)"
        ) from None
    items = doc if isinstance(doc, list) else [doc]
    lines = ((i, _dumps(item)) for i, item in enumerate(items, start=1))
    raw = _load_lines(con, name, table, lines, None)
    raw.unit = "record"
    return raw


def _dumps(record: Any) -> str:
    """A parsed record back to JSON text for the raw table. orjson is ~10× faster than json, but
    refuses integers beyond 64 bits and lone surrogates, and writes infinities (1e400) as null:
    such records go through json, so validation still sees the value and explains it. Only a
    text holding a null can hide an infinity: the record is walked only then."""
    try:
        text = orjson.dumps(record)
    except TypeError:
        return json.dumps(record)
    if b"null" in text and not finite(record):
        return json.dumps(record)
    return text.decode("utf-8")


def finite(value: Any) -> bool:
    """False when a float anywhere in `value` is infinite or NaN."""
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is dict:
        return all(map(finite, value.values()))
    if type(value) is list:
        return all(map(finite, value))
    return True


def read_records(
    con: duckdb.DuckDBPyConnection,
    name: str,
    table: str,
    records: Iterable[dict[str, Any]],
    numbers: Iterable[int] | None = None,
) -> RawInput:
    """Records already parsed (the API): numbered from 1, or by `numbers`."""
    numbered = list(zip(numbers or itertools.count(1), records, strict=False))
    # records are in memory already: their text is handed to DuckDB as one Arrow table, seen
    # through a view of that name (dropped like any view) — no copy into a table
    batch = pa.table(
        {
            "__line": pa.array([i for i, _ in numbered], pa.int64()),
            "__text": pa.array([_dumps(r) for _, r in numbered], pa.string()),
        }
    )
    con.register(table, batch)
    return RawInput(name, table, "json", rows=len(numbered), unit="record")


def read_arrow(con: duckdb.DuckDBPyConnection, name: str, table: str, data: pa.Table) -> RawInput:
    """An Arrow table with one column per field (and optionally `type`)."""
    con.register(f"{table}_arrow", data)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT row_number() OVER () AS __line, * "
        f"FROM {table}_arrow"
    )
    return _columns_input(con, name, table, "record", data.num_rows)


def read_bytes(
    con: duckdb.DuckDBPyConnection, name: str, table: str, data: bytes, fmt: str, spill: Path
) -> RawInput:
    """Input given as bytes (stdin): parsed like a file of that format."""
    if fmt == "ndjson":
        return _load_lines(con, name, table, _numbered_lines(io.BytesIO(data)), None)
    if fmt == "json":
        return read_json_array(con, name, table, data)
    spill.write_bytes(data)
    reader = _read_csv if fmt == "csv" else _read_parquet
    raw = reader(con, name, table, spill)
    # a view over the spill file would dangle once the file is gone
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table}_copy AS SELECT * FROM {table}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT * FROM {table}_copy")
    return raw


def _numbered_lines(fh: io.BufferedIOBase | Any) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(fh, start=1):
        if line.strip():
            try:
                yield number, line.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                # kept as invalid text: validation reports it as "not valid JSON" at its line
                yield number, "\ufffd" + line.decode("utf-8", errors="replace").rstrip("\r\n")


def _load_lines(
    con: duckdb.DuckDBPyConnection,
    name: str,
    table: str,
    lines: Iterator[tuple[int, str]],
    progress: Progress | None,
) -> RawInput:
    total = 0
    while chunk := list(itertools.islice(lines, _CHUNK_LINES)):
        numbers, texts = zip(*chunk, strict=True)
        batch = pa.table(
            {"__line": pa.array(numbers, pa.int64()), "__text": pa.array(texts, pa.string())}
        )
        con.register(f"{table}_chunk", batch)
        if total:
            con.execute(f"INSERT INTO {table} SELECT * FROM {table}_chunk")
        else:  # the first chunk makes the table: one statement fewer for a small input
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM {table}_chunk")
        con.unregister(f"{table}_chunk")
        total += len(chunk)
    if not total:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} (__line BIGINT, __text VARCHAR)")
        if progress:
            progress(len(chunk))
    return RawInput(name, table, "json", rows=total)


def _read_csv(con: duckdb.DuckDBPyConnection, name: str, table: str, path: Path) -> RawInput:
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table}_csv AS SELECT * FROM "
            f"read_csv(?, header = true, all_varchar = true, auto_detect = true)",
            [str(path)],
        )
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise InputError(f"{name}: not a readable CSV file: {first}") from None
    # rowid follows file order; line 1 is the header
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT rowid + 2 AS __line, * FROM {table}_csv"
    )
    rows = con.execute(f"SELECT count(*) FROM {table}_csv").fetchone()
    return _columns_input(con, name, table, "line", int(rows[0]) if rows else 0)


def _read_parquet(con: duckdb.DuckDBPyConnection, name: str, table: str, path: Path) -> RawInput:
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {table} AS SELECT file_row_number + 1 AS __line, * "
            f"EXCLUDE (file_row_number) FROM read_parquet({_path_literal(path)}, "
            "file_row_number = true)"
        )
        rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        raise InputError(f"{name}: not a readable Parquet file: {first}") from None
    return _columns_input(con, name, table, "record", int(rows[0]) if rows else 0)


def _path_literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _columns_input(
    con: duckdb.DuckDBPyConnection, name: str, table: str, unit: str, rows: int
) -> RawInput:
    described = con.execute(f"DESCRIBE SELECT * FROM {table}").fetchall()
    columns = {row[0]: str(row[1]) for row in described if row[0] != "__line"}
    return RawInput(name, table, "columns", unit, columns, rows)
