"""The one ingest pipeline (DESIGN §2, §3): staging → vectorised validation → merge → counts.

Everything that writes records comes through here: files, Arrow tables, the API's requests,
syncs. An ingest is a list of *inputs*, each judged on its own — an input with any invalid
record stores nothing (unless `skip_invalid`, which writes the invalid records to a rejects file
and stores the rest) — and each input is a list of *parts* (a file, an Arrow table, a request's
records), each stored with its own `source`.

1. `prepare` reads every part into the store's staging connection (a DuckDB connection: the
   store's own for a DuckDB store, a private in-memory one otherwise) and validates it there.
   Consecutive parts given as records (the server's concurrent requests) are read into ONE raw
   table, numbered `part * STRIDE + record`, and validated in one pass; every problem and every
   staged row still knows its part. It then judges each input, and cleans the accepted rows
   (bad rows dropped, people pseudonymised, the last record of each id per part kept).
2. `write` hands the staged rows to `Store.write`, which merges them in ONE transaction (with
   the sync state they cover, if given) and counts, per input, as if the parts had been written
   one after another in order. Whether a record changed is decided there, and only there.
3. `discard` drops the staging tables (a server's staging connection lives on).

`prepare` writes nothing but refused records' problems (for the Data page), so a server can run
it outside its write lock and hold the lock only around `write`.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from heatlens.errors import InputError
from heatlens.ingest import formats, quick
from heatlens.ingest.formats import RawInput
from heatlens.ingest.pseudonyms import pseudonymise
from heatlens.ingest.rejects import write_rejects
from heatlens.ingest.validate import Problem, StagedInput, validate
from heatlens.model import BY_NAME, TYPE_NAMES
from heatlens.settings import Settings
from heatlens.store import PART, Staged, Store, WriteCounts
from heatlens.store import Part as StoredPart
from heatlens.store.schema import q

__all__ = [
    "SKIP_ADVICE",
    "IngestResult",
    "Input",
    "Part",
    "Prepared",
    "Reader",
    "discard",
    "prepare",
    "write",
]

MAX_SHOWN = 50  # problems explained per input when the input is refused
STRIDE = 1 << 32  # records per part, at most, in a raw table shared by several parts
SKIP_ADVICE = " (fix them, or pass --skip-invalid --rejects FILE to store the valid ones)"
_ids = itertools.count()

Reader = Callable[[duckdb.DuckDBPyConnection, str], RawInput]


@dataclass
class IngestResult:
    """What an ingest did with one input."""

    counts: dict[str, WriteCounts] = field(default_factory=dict)
    rejected: int = 0
    problems: list[Problem] = field(default_factory=list)
    read: int = 0


@dataclass(frozen=True)
class Part:
    """One piece of an input: read by `read` (a file, an Arrow table) or given as `records`
    (parsed JSON objects); its records are stored with `source`. `name` is shown in problems."""

    source: str
    read: Reader | None = None
    records: Sequence[dict[str, Any]] | None = None
    name: str = "request"
    default_type: str | None = None
    # the records as heatlens.ingest.quick.typed gave them, when it was called: staged from
    # these, without being typed or validated again
    typed: Mapping[str, pa.Table] | None = None


@dataclass(frozen=True)
class Input:
    """Parts judged together: one invalid record refuses them all. `advice` ends the refusal."""

    parts: Sequence[Part]
    advice: str = SKIP_ADVICE


@dataclass
class Prepared:
    """Inputs read, validated, judged and staged, not yet written.

    `results[i]` is input i's InputError, or its IngestResult (counted by `write`).
    """

    results: list[IngestResult | InputError]
    batches: list[Staged] = field(default_factory=list)
    parts: list[StoredPart] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)


@dataclass
class _Pass:
    """Parts read into one raw table and validated together: parts `first`…`first + n - 1`."""

    first: int
    parts: list[Part]
    checked: StagedInput | None = None

    @property
    def shared(self) -> bool:
        return len(self.parts) > 1


def prepare(
    store: Store,
    inputs: Sequence[Input],
    settings: Settings,
    *,
    skip_invalid: bool = False,
    rejects: Path | None = None,
) -> Prepared:
    """Read, validate and judge every input, and stage what will be written; see the module."""
    con = store.staging_connection()
    run = next(_ids)
    parts = [(i, part) for i, inp in enumerate(inputs) for part in inp.parts]
    prepared = Prepared(
        [IngestResult() for _ in inputs],
        parts=[StoredPart(i, part.source) for i, part in parts],
    )
    try:
        passes = _passes([part for _, part in parts])
        for n, p in enumerate(passes):
            _validate(con, p, f"ingest{run}_{n}", settings, skip_invalid, prepared.tables)
        problems, bad = _by_part(passes, len(parts))
        refused: set[int] = set()
        for i, inp in enumerate(inputs):
            mine = [k for k, (owner, _) in enumerate(parts) if owner == i]
            result = prepared.results[i]
            assert isinstance(result, IngestResult)
            result.read = sum(_rows(passes, k) for k in mine)
            result.rejected = sum(bad[k] for k in mine)
            result.problems = [p for k in mine for p in problems[k]]
            if result.rejected and not skip_invalid:
                mine_problems = [(parts[k][1], problems[k]) for k in mine]
                prepared.results[i] = _refuse(store, inp, result.rejected, mine_problems)
                refused.update(mine)
        if skip_invalid and rejects is not None:
            write_rejects(con, [p.checked for p in passes if p.checked], rejects)
        prepared.batches = _stage(con, passes, refused, settings, f"ingest{run}", prepared.tables)
        return prepared
    except BaseException:
        discard(store, prepared)
        raise


def write(
    store: Store, prepared: Prepared, *, sync_state: Mapping[str, dict[str, Any]] | None = None
) -> list[IngestResult | InputError]:
    """Merge the prepared inputs in ONE transaction, with `sync_state` (name → state) if given;
    each input's result, counted, or its InputError. Nothing else may write the store meanwhile
    (the counts compare with its rows)."""
    counts = store.write(prepared.batches, prepared.parts, sync_state=sync_state)
    for i, result in enumerate(prepared.results):
        if isinstance(result, IngestResult):
            result.counts = counts[i] if i < len(counts) else {}
    return prepared.results


def discard(store: Store, prepared: Prepared) -> None:
    """Drop the staging tables of prepared inputs (written or not)."""
    if prepared.tables:
        _drop(store.staging_connection(), prepared.tables)
        prepared.tables = []


def _passes(parts: Sequence[Part]) -> list[_Pass]:
    """One pass per part read by a reader; one per run of parts given as records."""
    passes: list[_Pass] = []
    for k, part in enumerate(parts):
        last = passes[-1] if passes else None
        if (
            last is not None
            and part.records is not None
            and last.parts[-1].records is not None
            and last.parts[-1].name == part.name
        ):
            last.parts.append(part)
        else:
            passes.append(_Pass(k, [part]))
    return passes


def _validate(
    con: duckdb.DuckDBPyConnection,
    p: _Pass,
    prefix: str,
    settings: Settings,
    skip_invalid: bool,
    tables: list[str],
) -> None:
    tables += [f"{prefix}_raw", f"{prefix}_src"]
    head = p.parts[0]
    if head.records is not None:
        numbered = [
            (k * STRIDE + n, r)
            for k, part in enumerate(p.parts)
            for n, r in enumerate(part.records or (), 1)
        ]
        typed = [(k * STRIDE, part.typed) for k, part in enumerate(p.parts) if part.typed]
        if len(typed) == len(p.parts):  # (typed: every record valid)
            stages: dict[str, str] | None = quick.stage_typed(con, prefix, typed)
        else:
            stages = quick.stage(con, prefix, numbered)
        if stages is not None:  # every record valid, staged without the SQL rules
            raw = RawInput(head.name, f"{prefix}_raw", "json", unit="record", rows=len(numbered))
            p.checked = StagedInput(raw, stages, 0, [])
            tables += list(stages.values())
            return
        numbers = (
            k * STRIDE + n for k, part in enumerate(p.parts) for n in range(1, _count(part) + 1)
        )
        records = (r for part in p.parts for r in part.records or ())
        raw = formats.read_records(con, head.name, f"{prefix}_raw", records, numbers)
    else:
        assert head.read is not None
        raw = head.read(con, f"{prefix}_raw")
    p.checked = validate(
        con,
        raw,
        tz=settings.read_timezone,
        prefix=prefix,
        default_type=head.default_type,
        # an input sharing the pass must hear all its problems, not those of the first 50 rows
        limit=None if skip_invalid or p.shared else MAX_SHOWN,
    )
    tables += list(p.checked.stages.values())


def _count(part: Part) -> int:
    return len(part.records or ())


def _rows(passes: list[_Pass], k: int) -> int:
    for p in passes:
        if p.first <= k < p.first + len(p.parts):
            if p.shared:
                return _count(p.parts[k - p.first])
            return p.checked.raw.rows if p.checked else 0
    return 0


def _by_part(passes: list[_Pass], n: int) -> tuple[list[list[Problem]], list[int]]:
    """Each part's problems (numbered within the part) and its number of invalid records."""
    problems: list[list[Problem]] = [[] for _ in range(n)]
    bad = [0] * n
    for p in passes:
        assert p.checked is not None
        if not p.shared:
            problems[p.first] = list(p.checked.problems)
            bad[p.first] = p.checked.bad_rows
            continue
        lines: dict[int, set[int]] = defaultdict(set)
        for problem in p.checked.problems:
            line = problem.line or 0
            k = p.first + line // STRIDE
            problems[k].append(replace(problem, line=line % STRIDE))
            lines[k].add(line)
        for k, seen in lines.items():
            bad[k] = len(seen)
    return problems, bad


def _refuse(
    store: Store, inp: Input, rejected: int, parts: list[tuple[Part, list[Problem]]]
) -> InputError:
    """The InputError of an input with `rejected` invalid records; its first problems are
    logged."""
    everything = [p for _, mine in parts for p in mine]
    shown = everything[:MAX_SHOWN]
    for part, mine in parts:
        store.log_ingest_errors(part.source, [p for p in mine if p in shown])
    names = sorted({p.input for p in everything})
    return InputError(
        f"{rejected} invalid record(s) in {', '.join(names)}; nothing was stored{inp.advice}",
        problems=list(everything),
    )


def _stage(
    con: duckdb.DuckDBPyConnection,
    passes: list[_Pass],
    refused: set[int],
    settings: Settings,
    prefix: str,
    tables: list[str],
) -> list[Staged]:
    """Clean the accepted rows of every pass, and give the store one staged view per type."""
    selects: dict[str, list[str]] = defaultdict(list)
    present: dict[str, set[int]] = defaultdict(set)
    for p in passes:
        assert p.checked is not None
        mine = set(range(p.first, p.first + len(p.parts)))
        if mine <= refused:
            continue
        gone = sorted(k - p.first for k in mine & refused)
        for name, stage in p.checked.stages.items():
            if gone:
                con.execute(
                    f"DELETE FROM {stage} WHERE __line // {STRIDE} IN (SELECT unnest(?))", [gone]
                )
            if p.checked.bad_rows:
                con.execute(f"DELETE FROM {stage} WHERE __bad")
            pseudonymise(con, stage, name, settings)
            # a part of one record cannot repeat an id
            if any(part.records is None or len(part.records) > 1 for part in p.parts):
                _keep_last(con, stage, shared=p.shared)
            if p.shared:
                found = con.execute(f"SELECT DISTINCT __line // {STRIDE} FROM {stage}").fetchall()
                present[name].update(p.first + int(k) for (k,) in found)
            else:
                present[name].add(p.first)
            fields = ", ".join(q(f) for f in BY_NAME[name].field_names)
            part = f"{p.first} + __line // {STRIDE}" if p.shared else str(p.first)
            selects[name].append(f"SELECT {fields}, {part} AS {PART} FROM {stage}")
    batches: list[Staged] = []
    for name in sorted(selects, key=TYPE_NAMES.index):
        if not present[name]:
            continue
        view = f"{prefix}_{name}"
        con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS {' UNION ALL '.join(selects[name])}")
        tables.append(view)
        batches.append(Staged(BY_NAME[name], view, tuple(sorted(present[name]))))
    return batches


def _keep_last(con: duckdb.DuckDBPyConnection, stage: str, *, shared: bool) -> None:
    """Keep one row per id and part in a stage: the last one (highest `__line`)."""
    part = f"__line // {STRIDE}"
    if shared:
        dup = con.execute(
            f"SELECT count(*) - (SELECT count(*) FROM (SELECT DISTINCT {part}, id FROM {stage})) "
            f"FROM {stage}"
        ).fetchone()
    else:
        # distinct hashes prove the ids distinct, and are cheaper to count than the ids; a
        # collision only sends a stage without repeats through the exact pass below
        dup = con.execute(f"SELECT count(*) - count(DISTINCT hash(id)) FROM {stage}").fetchone()
    if dup and dup[0]:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {stage} AS SELECT * FROM {stage} "
            f"QUALIFY row_number() OVER (PARTITION BY {part}, id ORDER BY __line DESC) = 1"
        )


def _drop(con: duckdb.DuckDBPyConnection, names: list[str]) -> None:
    """Drop an ingest's temporary tables and views (a server's connection lives on), in one
    call: DuckDB's own catalog functions are far cheaper than information_schema."""
    kinds = dict(
        con.execute(
            "SELECT table_name, 'TABLE' FROM duckdb_tables() WHERE temporary "
            "UNION ALL SELECT view_name, 'VIEW' FROM duckdb_views() WHERE temporary"
        ).fetchall()
    )
    drops = [
        f"DROP {kinds[obj]} {obj};"
        for name in reversed(names)
        for obj in (name, f"{name}_csv", f"{name}_copy")
        if obj in kinds
    ]
    if drops:
        con.execute(" ".join(drops))
