"""Canonical ingest (DESIGN §3): read → validate (vectorised) → normalise → upsert through staging.

Validation runs in DuckDB, used here as a library: the staging connection is the store's own
connection for a DuckDB store (no copy), a private in-memory one for other stores (the store copies
the staged result over). An input with any invalid record stores nothing, unless `skip_invalid`,
which writes the invalid records with their problems to a rejects file and stores the rest.
"""

from __future__ import annotations

import hmac
import itertools
import json
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from heatlens.errors import InputError
from heatlens.ingest import formats
from heatlens.ingest.formats import Progress, RawInput
from heatlens.ingest.validate import Problem, StagedInput, validate
from heatlens.model import BY_NAME, TYPE_NAMES
from heatlens.settings import Settings
from heatlens.store import Staged, Store, WriteCounts
from heatlens.store.schema import q

__all__ = [
    "IngestResult",
    "Prepared",
    "Problem",
    "discard",
    "ingest_arrow",
    "ingest_files",
    "ingest_records",
]

# fields holding a person's identity, pseudonymised at ingest when a key is set
PERSON_FIELDS = {"usage": "actor", "membership": "actor", "change": "author"}
MAX_SHOWN = 50
_ids = itertools.count()


@dataclass
class IngestResult:
    """What an ingest did."""

    counts: dict[str, WriteCounts] = field(default_factory=dict)
    rejected: int = 0
    problems: list[Problem] = field(default_factory=list)
    read: int = 0


Reader = Callable[[duckdb.DuckDBPyConnection, str], RawInput]


def ingest_files(
    store: Store,
    paths: Sequence[str],
    settings: Settings,
    *,
    fmt: str | None = None,
    default_type: str | None = None,
    skip_invalid: bool = False,
    rejects: Path | None = None,
    source: str | None = None,
    progress: Progress | None = None,
) -> IngestResult:
    """Ingest files (`-` is stdin) as one all-or-nothing write."""
    if skip_invalid and rejects is None:
        raise InputError("--skip-invalid needs --rejects FILE to keep the invalid records")
    if default_type is not None and default_type not in BY_NAME:
        raise InputError(
            f"unknown --type {default_type!r}: expected one of {', '.join(TYPE_NAMES)}"
        )
    with tempfile.TemporaryDirectory(prefix="heatlens-") as spill_dir:
        readers = _file_readers(paths, fmt, source, Path(spill_dir), progress)
        return _ingest(
            store,
            readers,
            settings,
            default_type=default_type,
            skip_invalid=skip_invalid,
            rejects=rejects,
        )


def _file_readers(
    paths: Sequence[str],
    fmt: str | None,
    source: str | None,
    spill_dir: Path,
    progress: Progress | None,
) -> list[tuple[str, Reader]]:
    readers: list[tuple[str, Reader]] = []
    for p in paths:
        if p == "-":
            data = sys.stdin.buffer.read()
            kind = fmt or formats.sniff_format(data[:64])
            spill = spill_dir / f"stdin.{kind}"

            def read_stdin(
                con: duckdb.DuckDBPyConnection,
                table: str,
                data: bytes = data,
                kind: str = kind,
                spill: Path = spill,
            ) -> RawInput:
                return formats.read_bytes(con, "stdin", table, data, kind, spill)

            readers.append((source or "file:stdin", read_stdin))
        else:
            path = Path(p)
            kind = formats.detect_format(path, fmt)

            def read_file(
                con: duckdb.DuckDBPyConnection, table: str, path: Path = path, kind: str = kind
            ) -> RawInput:
                return formats.read_path(con, path, kind, table, progress)

            readers.append((source or f"file:{path.name}", read_file))
    return readers


def ingest_arrow(
    store: Store, tables: dict[str, pa.Table], settings: Settings, *, source: str
) -> IngestResult:
    """Ingest Arrow tables, one per record type (the demo), through the same rules."""
    readers: list[tuple[str, Reader]] = []
    for name, table in tables.items():

        def read(
            con: duckdb.DuckDBPyConnection, tmp: str, name: str = name, table: pa.Table = table
        ) -> RawInput:
            return formats.read_arrow(con, name, tmp, table)

        readers.append((source, read))
    return _ingest(store, readers, settings, default_types=list(tables))


def ingest_records(
    store: Store,
    records: Iterable[dict[str, Any]],
    settings: Settings,
    *,
    source: str,
    name: str = "request",
) -> IngestResult:
    """Ingest records already parsed from JSON (the HTTP API) through the same rules."""
    rows = list(records)

    def read(con: duckdb.DuckDBPyConnection, table: str) -> RawInput:
        return formats.read_records(con, name, table, rows)

    return _ingest(store, [(source, read)], settings)


@dataclass
class Prepared:
    """Input read, validated and staged in the store's staging connection, not yet written.

    `batches` go to `Store.write`; `discard` drops `tables` after. Apart, the two steps let the
    server's writer (heatlens.ingest.grouped) judge several requests before writing them at once.
    """

    result: IngestResult
    batches: list[Staged] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)


def discard(store: Store, prepared: Iterable[Prepared]) -> None:
    """Drop the staging tables of prepared inputs (written or not)."""
    names = [t for p in prepared for t in p.tables]
    if names:
        _drop(store.staging_connection(), names)


def _ingest(
    store: Store,
    readers: Sequence[tuple[str, Reader]],
    settings: Settings,
    **options: Any,
) -> IngestResult:
    prepared = _prepare(store, readers, settings, **options)
    try:
        prepared.result.counts = store.write(prepared.batches)
    finally:
        discard(store, [prepared])
    return prepared.result


def _prepare(
    store: Store,
    readers: Sequence[tuple[str, Reader]],
    settings: Settings,
    *,
    default_type: str | None = None,
    default_types: Sequence[str] | None = None,
    skip_invalid: bool = False,
    rejects: Path | None = None,
) -> Prepared:
    con = store.staging_connection()
    run = next(_ids)
    prepared = Prepared(IngestResult())
    result, created = prepared.result, prepared.tables
    staged: list[tuple[str, StagedInput]] = []
    try:
        for i, (source, reader) in enumerate(readers):
            prefix = f"ingest{run}_{i}"
            created += [f"{prefix}_raw", f"{prefix}_src"]
            raw = reader(con, f"{prefix}_raw")
            kind = default_types[i] if default_types else default_type
            checked = validate(
                con,
                raw,
                tz=settings.timezone,
                prefix=prefix,
                default_type=kind,
                limit=None if skip_invalid else MAX_SHOWN,
            )
            created += list(checked.stages.values())
            result.read += raw.rows
            result.rejected += checked.bad_rows
            result.problems += checked.problems
            staged.append((source, checked))
        if result.rejected and not skip_invalid:
            _refuse(store, result, staged)
        if skip_invalid and rejects is not None:
            _write_rejects(con, staged, rejects)
        for source, checked in staged:
            for name, stage in checked.stages.items():
                _finalise(con, stage, name, settings)
                prepared.batches.append(Staged(BY_NAME[name], stage, source))
        return prepared
    except BaseException:
        discard(store, [prepared])
        raise


def _drop(con: duckdb.DuckDBPyConnection, names: list[str]) -> None:
    """Drop this ingest's temporary tables and views (a server's connection lives on)."""
    kinds = dict(
        con.execute(
            "SELECT table_name, table_type FROM information_schema.tables "
            "WHERE table_schema = 'main' AND table_catalog = 'temp'"
        ).fetchall()
    )
    for name in reversed(names):
        for obj in (name, f"{name}_csv", f"{name}_copy"):
            if obj in kinds:
                con.execute(f"DROP {'VIEW' if kinds[obj] == 'VIEW' else 'TABLE'} {obj}")


def _refuse(store: Store, result: IngestResult, staged: list[tuple[str, StagedInput]]) -> None:
    shown = result.problems[:MAX_SHOWN]
    for source, checked in staged:
        store.log_ingest_errors(source, [p for p in checked.problems if p in shown])
    bad_inputs = sorted({p.input for p in result.problems})
    raise InputError(
        f"{result.rejected} invalid record(s) in {', '.join(bad_inputs)}; nothing was stored "
        "(fix them, or pass --skip-invalid --rejects FILE to store the valid ones)",
        problems=list(result.problems),
    )


def _finalise(
    con: duckdb.DuckDBPyConnection, stage: str, type_name: str, settings: Settings
) -> None:
    """Drop bad rows, pseudonymise people, keep the last record of each id."""
    clean(con, stage, type_name, settings)
    keep_last(con, stage)


def clean(con: duckdb.DuckDBPyConnection, stage: str, type_name: str, settings: Settings) -> None:
    """Drop a stage's bad rows and pseudonymise people: its rows are then as they are stored."""
    con.execute(f"DELETE FROM {stage} WHERE __bad")
    person = PERSON_FIELDS.get(type_name)
    key = settings.pseudonymise_key
    if person is None or key is None:
        return
    values = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT {q(person)} FROM {stage} WHERE {q(person)} IS NOT NULL"
        ).fetchall()
    ]
    mapping = pa.table({"v": values, "h": [pseudonym(key.get_secret_value(), v) for v in values]})
    con.register(f"{stage}_people", mapping)
    con.execute(
        f"UPDATE {stage} SET {q(person)} = m.h FROM {stage}_people m "
        f"WHERE {stage}.{q(person)} = m.v"
    )
    if type_name == "membership":
        # the id embeds the actor: derive it again from the pseudonym
        con.execute(
            f"UPDATE {stage} SET id = actor || '/' || team || '/' || "
            f"coalesce(strftime({q('from')}, '%Y-%m-%dT%H:%M:%SZ'), '')"
        )
    con.unregister(f"{stage}_people")


def keep_last(con: duckdb.DuckDBPyConnection, stage: str) -> None:
    """Keep one row per id in a stage: the last one (highest `__line`)."""
    dup = con.execute(f"SELECT count(*) - count(DISTINCT id) FROM {stage}").fetchone()
    if dup and dup[0]:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {stage} AS SELECT * FROM {stage} "
            "QUALIFY row_number() OVER (PARTITION BY id ORDER BY __line DESC) = 1"
        )


def pseudonym(key: str, person: str) -> str:
    """The keyed HMAC of a person id that is stored instead of it."""
    return "p-" + hmac.new(key.encode(), person.encode(), sha256).hexdigest()[:20]


def _write_rejects(
    con: duckdb.DuckDBPyConnection, staged: list[tuple[str, StagedInput]], path: Path
) -> None:
    """Invalid records with their problems, one JSON object per line."""
    by_line: dict[tuple[str, int | None], list[str]] = {}
    for _, checked in staged:
        for p in checked.problems:
            by_line.setdefault((p.input, p.line), []).append(p.message)
    with path.open("w", encoding="utf-8") as out:
        for _, checked in staged:
            raw = checked.raw
            lines = sorted({line for (name, line) in by_line if name == raw.name and line})
            if not lines:
                continue
            record = "__text" if raw.shape == "json" else "to_json(r)"
            rows = con.execute(
                f"SELECT __line, CAST({record} AS VARCHAR) FROM {raw.table} r "
                f"WHERE __line IN (SELECT unnest(?))",
                [lines],
            ).fetchall()
            for line, text in sorted(rows):
                try:
                    parsed: Any = json.loads(text)
                except json.JSONDecodeError:
                    parsed = text
                if isinstance(parsed, dict):
                    parsed.pop("__line", None)
                out.write(
                    json.dumps(
                        {
                            "input": raw.name,
                            raw.unit: line,
                            "errors": by_line[(raw.name, line)],
                            "record": parsed,
                        }
                    )
                    + "\n"
                )
