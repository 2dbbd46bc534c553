"""Canonical ingest (DESIGN §3): read → validate (vectorised) → normalise → upsert through staging.

Every way records come in goes through one pipeline (heatlens.ingest.pipeline). The functions here
give it one input each — files, Arrow tables, or records already parsed — and write it all or
nothing: an input with any invalid record stores nothing, unless `skip_invalid`, which writes the
invalid records with their problems to a rejects file and stores the rest. The server's writer
judges several requests in one pass with `prepare_records` + `write` (heatlens.web.writer).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from heatlens.errors import InputError
from heatlens.ingest import formats
from heatlens.ingest.formats import Progress, RawInput
from heatlens.ingest.pipeline import (
    IngestResult,
    Input,
    Part,
    Prepared,
    discard,
    prepare,
    write,
)
from heatlens.ingest.pseudonyms import pseudonym
from heatlens.ingest.validate import Problem
from heatlens.model import BY_NAME, TYPE_NAMES
from heatlens.settings import Settings
from heatlens.store import Store

__all__ = [
    "IngestResult",
    "Input",
    "Part",
    "Prepared",
    "Problem",
    "discard",
    "ingest_arrow",
    "ingest_files",
    "ingest_records",
    "prepare",
    "prepare_records",
    "pseudonym",
    "write",
]


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
        parts = [_file_part(p, fmt, default_type, source, Path(spill_dir), progress) for p in paths]
        return _ingest_one(
            store, Input(parts), settings, skip_invalid=skip_invalid, rejects=rejects
        )


def _file_part(
    path_text: str,
    fmt: str | None,
    default_type: str | None,
    source: str | None,
    spill_dir: Path,
    progress: Progress | None,
) -> Part:
    if path_text == "-":
        data = sys.stdin.buffer.read()
        kind = fmt or formats.sniff_format(data[:64])
        spill = spill_dir / f"stdin.{kind}"

        def read_stdin(con: duckdb.DuckDBPyConnection, table: str) -> RawInput:
            return formats.read_bytes(con, "stdin", table, data, kind, spill)

        return Part(source or "file:stdin", read_stdin, default_type=default_type)
    path = Path(path_text)
    file_kind = formats.detect_format(path, fmt)

    def read_file(con: duckdb.DuckDBPyConnection, table: str) -> RawInput:
        return formats.read_path(con, path, file_kind, table, progress)

    return Part(source or f"file:{path.name}", read_file, default_type=default_type)


def ingest_arrow(
    store: Store, tables: dict[str, pa.Table], settings: Settings, *, source: str
) -> IngestResult:
    """Ingest Arrow tables, one per record type (the demo), through the same rules."""
    parts = []
    for name, table in tables.items():

        def read(
            con: duckdb.DuckDBPyConnection, tmp: str, name: str = name, table: pa.Table = table
        ) -> RawInput:
            return formats.read_arrow(con, name, tmp, table)

        parts.append(Part(source, read, name=name, default_type=name))
    return _ingest_one(store, Input(parts), settings)


def ingest_records(
    store: Store,
    records: Iterable[dict[str, Any]],
    settings: Settings,
    *,
    source: str,
    name: str = "request",
    sync_state: Mapping[str, dict[str, Any]] | None = None,
) -> IngestResult:
    """Ingest records already parsed from JSON through the same rules. `sync_state` (name →
    state) is committed in the same transaction as the records (a connector's cursor)."""
    part = Part(source, records=list(records), name=name)
    return _ingest_one(store, Input([part]), settings, sync_state=sync_state)


def prepare_records(
    store: Store, inputs: Sequence[Sequence[dict[str, Any]]], settings: Settings, *, source: str
) -> Prepared:
    """Several requests' records validated in one pass, each judged on its own (the server's
    writer); write them with `write`, then `discard`."""
    return prepare(store, [Input([Part(source, records=rs)], advice="") for rs in inputs], settings)


def _ingest_one(
    store: Store,
    inp: Input,
    settings: Settings,
    *,
    skip_invalid: bool = False,
    rejects: Path | None = None,
    sync_state: Mapping[str, dict[str, Any]] | None = None,
) -> IngestResult:
    prepared = prepare(store, [inp], settings, skip_invalid=skip_invalid, rejects=rejects)
    try:
        [result] = prepared.results
        if isinstance(result, InputError):
            raise result
        write(store, prepared, sync_state=sync_state)
        return result
    finally:
        discard(store, prepared)
