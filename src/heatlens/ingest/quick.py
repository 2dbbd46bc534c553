"""A second executor of the same rules (heatlens.model's Field declarations), in Python, for the
server's small groups of parsed records: it stages them without DuckDB's validation queries.

It never judges a record invalid: it *accepts* a record only when every value is of a form whose
typed value it knows exactly as `heatlens.ingest.rules` would give it (a JSON string, a finite
number, an integer within 64 bits, an ISO 8601 timestamp `YYYY-MM-DDTHH:MM:SS[.ffffff]` with `Z`
or a `±HH:MM` offset, …), and defers everything else — any doubt, any invalid record, and the
types with derived ids or cross-field rules (membership, survey, survey_response,
survey_invitation) — to the SQL rules. A pass with one deferred record is validated wholly in
SQL, so every problem a user sees comes from one place. tests/test_ingest_quick.py runs the error
corpus and generated records through both executors and compares the staged rows.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from heatlens.ingest.formats import finite
from heatlens.model import RECORD_TYPES, Field, Kind, RecordType
from heatlens.store.schema import q

__all__ = [
    "MAX_RECORDS",
    "QUICK_TYPES",
    "by_part",
    "joined",
    "stage",
    "stage_typed",
    "stored_columns",
    "typed",
]

MAX_RECORDS = 2_000  # larger passes go to the vectorised SQL rules, cheaper per record there

_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])"
)
_LOW = datetime(1970, 1, 1, tzinfo=UTC)  # rules.TS_RANGE
_HIGH = datetime(2100, 1, 1, tzinfo=UTC)
_I64 = 1 << 63
_SQL_TYPE = {
    Kind.STRING: "VARCHAR",
    Kind.ENUM: "VARCHAR",
    Kind.TIMESTAMP: "TIMESTAMPTZ",
    Kind.NUMBER: "DOUBLE",
    Kind.INTEGER: "BIGINT",
    Kind.BOOLEAN: "BOOLEAN",
    Kind.STRING_LIST: "VARCHAR[]",
}
_ARROW_TYPE = {
    Kind.STRING: pa.string(),
    Kind.ENUM: pa.string(),
    Kind.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    Kind.NUMBER: pa.float64(),
    Kind.INTEGER: pa.int64(),
    Kind.BOOLEAN: pa.bool_(),
    Kind.STRING_LIST: pa.list_(pa.string()),
    Kind.OBJECT: pa.string(),
}


def _eligible(rtype: RecordType) -> bool:
    return (
        not rtype.id_from
        and rtype.name != "survey_response"  # score by kind
        and all(f.kind in _ARROW_TYPE for f in rtype.fields)
    )


QUICK_TYPES: dict[str, RecordType] = {t.name: t for t in RECORD_TYPES if _eligible(t)}
_ALLOWED: dict[str, frozenset[str]] = {
    name: frozenset(("type", *t.field_names)) for name, t in QUICK_TYPES.items()
}


class _Defer(Exception):
    """A value this executor cannot vouch for: the SQL rules decide."""


def _typed(f: Field, v: Any) -> Any:
    """The typed value of a present (non-null) value, as rules.typed_value gives it; or _Defer."""
    kind, t = f.kind, type(v)
    if kind is Kind.STRING:
        if t is str and (v or not f.required):
            return v
    elif kind is Kind.ENUM:
        if t is str and v in f.choices:
            return v
    elif kind is Kind.TIMESTAMP:
        if t is str and _TIMESTAMP.fullmatch(v):
            try:
                at = datetime.fromisoformat(v)
            except ValueError:
                raise _Defer from None
            if _LOW <= at < _HIGH:
                return at
    elif kind is Kind.NUMBER:
        number = (t is int and -_I64 <= v < _I64) or (t is float and math.isfinite(v))
        if number and (f.minimum is None or v >= f.minimum):
            return float(v)
    elif kind is Kind.INTEGER:
        low, high = f.minimum, f.maximum
        if (
            t is int
            and -_I64 <= v < _I64
            and (low is None or v >= low)
            and (high is None or v <= high)
        ):
            return v
    elif kind is Kind.BOOLEAN:
        if t is bool:
            return v
    elif kind is Kind.STRING_LIST:
        if t is list and all(type(x) is str for x in v):
            return v
    elif kind is Kind.OBJECT and t is dict and finite(v):
        try:
            return orjson.dumps(v).decode("utf-8")  # normalised by DuckDB when staged
        except TypeError:  # integers beyond 64 bits, lone surrogates
            raise _Defer from None
    raise _Defer


def _row(record: Any) -> tuple[str, list[Any]]:
    """The record's type and typed stored values (defaults applied), or _Defer."""
    if type(record) is not dict:
        raise _Defer
    name = record.get("type")
    rtype = QUICK_TYPES.get(name) if type(name) is str else None
    if rtype is None or not _ALLOWED[rtype.name].issuperset(record):
        raise _Defer
    values = []
    for f in rtype.fields:
        v = record.get(f.name)
        if v is None:
            if f.required:
                raise _Defer
            values.append(f.default)
        else:
            values.append(_typed(f, v))
    return rtype.name, values


def _tables(
    records: Sequence[tuple[int, Any]], number: str, limit: int | None = MAX_RECORDS
) -> dict[str, pa.Table] | None:
    """Numbered records as one Arrow table per type (column `number`, then the fields, typed
    as stored); None when any record is deferred to the SQL rules (or there are more than
    `limit`)."""
    if limit is not None and len(records) > limit:
        return None
    rows: dict[str, list[tuple[int, list[Any]]]] = defaultdict(list)
    try:
        for line, record in records:
            name, values = _row(record)
            rows[name].append((line, values))
    except _Defer:
        return None
    tables: dict[str, pa.Table] = {}
    try:
        for name, mine in rows.items():
            columns = {number: pa.array([line for line, _ in mine], pa.int64())}
            for i, f in enumerate(QUICK_TYPES[name].fields):
                columns[f.name] = pa.array([values[i] for _, values in mine], _ARROW_TYPE[f.kind])
            tables[name] = pa.table(columns)
    except (UnicodeEncodeError, pa.ArrowException):  # a lone surrogate: no UTF-8 for it
        return None
    return tables


def stage(
    con: duckdb.DuckDBPyConnection,
    prefix: str,
    records: Sequence[tuple[int, Any]],
) -> dict[str, str] | None:
    """Stage numbered records as tables `<prefix>_<type>` (columns `__line`, the stored fields,
    `__bad`), as heatlens.ingest.validate would for valid records; None (nothing staged) when
    any record is deferred to the SQL rules."""
    tables = _tables(records, "__line")
    return None if tables is None else _stage(con, prefix, tables)


def stage_typed(
    con: duckdb.DuckDBPyConnection,
    prefix: str,
    parts: Sequence[tuple[int, Mapping[str, pa.Table]]],
) -> dict[str, str]:
    """`stage` for requests typed already (`typed`): each given with the number of the line
    before its first record (its records are numbered from there)."""
    found: dict[str, list[pa.Table]] = defaultdict(list)
    for before, tables in parts:
        for name, table in tables.items():
            lines = pa.array(range(before + 1, before + 1 + table.num_rows), pa.int64())
            found[name].append(table.set_column(0, "__line", lines))
    return _stage(con, prefix, {name: pa.concat_tables(ts) for name, ts in found.items()})


def _stage(
    con: duckdb.DuckDBPyConnection, prefix: str, tables: Mapping[str, pa.Table]
) -> dict[str, str]:
    stages: dict[str, str] = {}
    for name, data in tables.items():
        view, table = f"{prefix}_{name}_quick", f"{prefix}_{name}"
        con.register(view, data)
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {table} AS "
                f"SELECT __line, {stored_columns(name)}, FALSE AS __bad FROM {view}"
            )
        finally:
            con.unregister(view)
        stages[name] = table
    return stages


def by_part(records: Sequence[tuple[int, Any]]) -> dict[str, pa.Table] | None:
    """Records tagged with their part (request) as one Arrow table per type: column `__part`,
    then the fields as this executor types them (select them with `stored_columns` to get
    the stored values); None when any record is deferred to the SQL rules."""
    return _tables(records, "__part")


def typed(records: Sequence[Any]) -> dict[str, pa.Table] | None:
    """One request's records as `by_part` types them (its `__part` 0), however many; None when
    any is deferred to the SQL rules. The HTTP front processes type a request's records here, so
    that the writer's process need not (heatlens.web.fronts, heatlens.web.writer)."""
    return _tables([(0, r) for r in records], "__part", limit=None)


def joined(parts: Sequence[tuple[int, dict[str, pa.Table]]]) -> dict[str, pa.Table]:
    """Requests typed by `typed`, as `by_part` gives their records together: each request's
    tables with its number as `__part`, concatenated per type in the requests' order."""
    found: dict[str, list[pa.Table]] = defaultdict(list)
    for part, tables in parts:
        for name, table in tables.items():
            numbers = pa.array([part] * table.num_rows, pa.int64())
            found[name].append(table.set_column(0, "__part", numbers))
    return {name: pa.concat_tables(tables) for name, tables in found.items()}


def stored_columns(type_name: str) -> str:
    """The SELECT list giving a table of `by_part`/`_tables` its stored values, by field."""
    return ", ".join(_stored(f) for f in QUICK_TYPES[type_name].fields)


def _stored(f: Field) -> str:
    if f.kind is Kind.OBJECT:  # re-written by DuckDB's JSON writer, as `json_extract` does there
        return f"CAST(json_extract(CAST({q(f.name)} AS JSON), '$') AS VARCHAR) AS {q(f.name)}"
    return f"CAST({q(f.name)} AS {_SQL_TYPE[f.kind]}) AS {q(f.name)}"
