"""The demo organisation as records: `generate` assembles every record type from the registry
(organisation.py), delivery (delivery.py) and surveys (surveys.py) as Arrow tables; `write` puts
them all in one Parquet or NDJSON file (`heatlens generate`)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from heatlens.demo.delivery import delivery_tables
from heatlens.demo.organisation import (
    BOT,
    DAY,
    HOURS_P,
    ROW_GROUP,
    US,
    Org,
    OrgSpec,
    _pick,
    action_tables,
    build_org,
    number_groups,
    numbered_range,
    registry_tables,
    streams,
    strings,
    table,
    timestamps,
    usage_rates,
    usage_table,
)
from heatlens.demo.surveys import survey_tables
from heatlens.model import BY_NAME, RECORD_TYPES, Kind

__all__ = ["generate", "usage_chunks", "write", "write_streaming"]


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
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for name, data in tables.items():
            _write_type(writer, name, data, fields)


def _write_type(
    writer: pq.ParquetWriter, name: str, data: pa.Table, fields: dict[str, pa.DataType]
) -> None:
    """A type's records into a file of every type's `fields` (after `type`): in slices of that
    type only, so the all-null columns stay small and each row group holds one type."""
    for batch in data.to_batches(max_chunksize=ROW_GROUP):
        n = batch.num_rows
        have = dict(zip(batch.schema.names, batch.columns, strict=True))
        columns = [pa.repeat(name, n)]
        columns += [have.get(c, pa.nulls(n, t)) for c, t in fields.items()]
        writer.write_batch(pa.record_batch(columns, schema=writer.schema))


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


# Streaming: the same records, written a chunk at a time (the benches at 100 M usage records)


def write_streaming(
    spec: OrgSpec,
    path: Path,
    *,
    types: Collection[str] | None = None,
    chunk_rows: int = 4 * ROW_GROUP,
    compression: str = "zstd",
) -> dict[str, int]:
    """Write the records of `generate(spec)` (only `types`, when given) to one Parquet file laid
    out like `write`'s, building and writing the usage records a chunk at a time; returns the
    number of records per type.

    The file holds the same records as `write(generate(spec), path)`, in another row order (each
    chunk's CI retries follow it). Usage takes about 41 bytes a record while drawing, plus one
    chunk's Arrow tables, instead of every usage record as Arrow columns at once.
    """
    path = Path(path)
    if path.suffix.lower() != ".parquet":
        raise ValueError(f"cannot stream to {path.name}: use a .parquet file")
    unknown = set(types or ()) - set(BY_NAME)
    if unknown:
        raise ValueError(f"unknown record type(s): {sorted(unknown)}")
    wanted = [t.name for t in RECORD_TYPES if types is None or t.name in types]
    org_rng, usage_rng, delivery_rng, survey_rng = streams(spec.seed)
    org = build_org(spec, org_rng)
    others = registry_tables(org)
    if {"deployment", "change", "incident"} & set(wanted):
        others.update(delivery_tables(org, delivery_rng))
    if any(name.startswith("survey") for name in wanted):
        others.update(survey_tables(org, survey_rng))
    fields: dict[str, pa.DataType] = {}
    for name in wanted:
        data = table("usage", {"id": pa.array([], pa.string())}) if name == "usage" else None
        for f in (data if data is not None else others[name]).schema:
            fields.setdefault(f.name, f.type)
    schema = pa.schema([("type", pa.string()), *fields.items()])
    written = dict.fromkeys(wanted, 0)

    def put(writer: pq.ParquetWriter, name: str, data: pa.Table) -> None:
        _write_type(writer, name, data, fields)
        written[name] += data.num_rows

    with pq.ParquetWriter(path, schema, compression=compression) as writer:
        for name in wanted:
            if name == "usage":
                for chunk in usage_chunks(org, spec.usage_scale, usage_rng, chunk_rows):
                    put(writer, name, chunk)
            else:
                put(writer, name, others[name])
    return written


def usage_chunks(
    org: Org, scale: float, rng: np.random.Generator, chunk_rows: int = 4 * ROW_GROUP
) -> Iterator[pa.Table]:
    """The records of `usage_table(org, scale, rng)` as tables of whole days, about `chunk_rows`
    records each, each followed by its chunk's CI retries.

    `usage_table` draws each random quantity for all records at once, one quantity after the
    other. Here each such draw runs over the chunks in turn, in record order, which consumes the
    generator exactly as the one draw does, so every value is the same. Between the draws only
    compact NumPy columns are kept for all records; Arrow columns are built one chunk at a time.
    """
    n_teams, n_caps, days = len(org.team_ids), len(org.caps), org.days
    counts = rng.poisson(usage_rates(org).transpose(2, 0, 1) * scale).ravel()
    per_day = counts.reshape(days, -1).sum(1)
    bounds = np.concatenate([[0], np.cumsum(per_day)])
    n = int(bounds[-1])
    cuts = [0]  # chunks of whole days
    while cuts[-1] < days:
        d = int(np.searchsorted(bounds, bounds[cuts[-1]] + chunk_rows, side="right")) - 1
        cuts.append(min(max(d, cuts[-1] + 1), days))
    spans = list(itertools.pairwise(cuts))
    rows = [(int(bounds[a]), int(bounds[b])) for a, b in spans]

    # which team and capability, in day order, shuffled within each day; then the time of day
    grid = n_teams * n_caps
    team = np.empty(n, np.int32)
    cap = np.empty(n, np.int8 if n_caps < 128 else np.int32)
    for (d0, d1), (r0, r1) in zip(spans, rows, strict=True):
        cell = np.repeat(np.arange(d0 * grid, d1 * grid), counts[d0 * grid : d1 * grid])
        for d in range(d0, d1):
            rng.shuffle(cell[bounds[d] - r0 : bounds[d + 1] - r0])
        team[r0:r1] = cell // n_caps % n_teams
        cap[r0:r1] = cell % n_caps
        del cell
    del counts
    ts = np.empty(n, np.int64)
    carry = 0.0
    for (d0, d1), (r0, r1) in zip(spans, rows, strict=True):
        draws = rng.exponential(1.0, (r1 - r0) + (d1 - d0))
        gaps = np.cumsum(np.concatenate([[carry], draws]))[1:]
        day = np.repeat(np.arange(d1 - d0), per_day[d0:d1])
        ts[r0:r1] = org.day_start(day + d0) + _times_of_day_chunk(per_day[d0:d1], day, gaps, carry)
        carry = float(gaps[-1])
        del draws, gaps, day

    def each() -> Iterator[tuple[slice, np.ndarray]]:
        for r0, r1 in rows:
            yield slice(r0, r1), cap[r0:r1].astype(np.int32)

    # action: as usage_table
    width, cum, median, bare, names = action_tables(org)
    action = np.empty(n, np.int16 if n_caps * width < 32_000 else np.int32)
    for s, cp in each():
        u = rng.random(cp.size, dtype=np.float32)
        a = cp * width
        for k in range(width - 1):
            a += u >= cum[:, k][cp]
        action[s] = a

    launch_us = org.day_start(org.launch)
    matures = np.array([c.matures for c in org.caps], np.float32)

    def maturity(s: slice, cp: np.ndarray) -> np.ndarray:
        years = ((ts[s] - launch_us[cp]) / (365 * DAY)).astype(np.float32)
        return np.clip(years, 0, 1) * matures[cp]

    p = np.array([c.outcomes for c in org.caps], np.float32)
    outcome = np.empty(n, np.int8)
    for s, cp in each():
        success = p[:, 0][cp] + 0.5 * maturity(s, cp) * p[:, 2][cp]
        u = rng.random(cp.size, dtype=np.float32)
        o = (u >= success).astype(np.int32) + (u >= success + p[:, 1][cp])
        o += u >= 1 - p[:, 3][cp]
        outcome[s] = o
    has_outcome = np.empty(n, bool)
    for s, cp in each():
        has_outcome[s] = rng.random(cp.size, dtype=np.float32) >= bare.ravel()[action[s]]
    duration = np.empty(n, np.float64)
    sigmas = np.array([c.sigma for c in org.caps], np.float32)
    for s, cp in each():
        o = outcome[s].astype(np.int32)
        speed = (1 - 0.3 * maturity(s, cp)) * np.array([1.0, 0.6, 0.8, 0.5], np.float32)[o]
        noise = np.exp(sigmas[cp] * rng.standard_normal(cp.size, dtype=np.float32))
        a = action[s].astype(np.int32)
        duration[s] = np.round((median.ravel()[a] * speed * noise).astype(np.float64), 1)
    has_duration = np.empty(n, bool)
    for s, cp in each():
        again = rng.random(cp.size, dtype=np.float32) < 0.5
        has_duration[s] = has_outcome[s] & ((outcome[s] != 3) | again)

    # who: Org.members draws a member for every record, then again for those away at the time
    actor = np.empty(n, np.int32)
    away = np.empty(n, bool)
    ranges = org._ranges
    for s, _ in each():
        pick = _pick(ranges["members"], team[s], rng)
        away[s] = (ts[s] < org.mem_from[pick]) | (ts[s] >= org.mem_to[pick])
        actor[s] = org.mem_actor[pick]
    for s, _ in each():
        moved = np.flatnonzero(away[s]) + s.start
        actor[moved] = org.mem_actor[org.stay_idx[_pick(ranges["stayers"], team[moved], rng)]]
    del away
    service = np.empty(n, np.int32)
    for s, _ in each():
        service[s] = org.services(team[s], ts[s], rng)
    share = np.array([c.service_share for c in org.caps], np.float32)
    has_service = np.empty(n, bool)
    for s, cp in each():
        has_service[s] = rng.random(cp.size, dtype=np.float32) < share[cp]
    has_team = np.empty(n, bool)
    for s, cp in each():
        has_team[s] = rng.random(cp.size, dtype=np.float32) < 0.4
    has_actor = np.empty(n, bool)
    for s, cp in each():
        has_actor[s] = ~(has_team[s] | has_service[s]) | (
            rng.random(cp.size, dtype=np.float32) >= 0.04
        )
    attrs = [a for c in org.caps for a in c.attributes] or [""]
    n_attrs = np.array([len(c.attributes) for c in org.caps])
    first_attr = np.cumsum(n_attrs) - n_attrs
    attr = np.empty(n, np.int32)
    for s, cp in each():
        attr[s] = first_attr[cp] + (rng.random(cp.size, dtype=np.float32) * n_attrs[cp]).astype(
            np.int32
        )

    # CI retries and the bot, as _with_retries
    ci_index = org.cap("ci")
    bot = np.empty(n, bool)
    for s, cp in each():
        bot[s] = (cp == ci_index) & (rng.random(cp.size, dtype=np.float32) < 0.03)
    retried = np.empty(n, bool)
    for s, cp in each():
        o = outcome[s]
        r = (cp == ci_index) & has_outcome[s] & (o > 0) & (o < 3)
        retried[s] = r & (rng.random(cp.size, dtype=np.float32) < 0.35)
    minutes = [rng.integers(2, 20, int(retried[s].sum())) for s, _ in each()]
    ok = [rng.random(m.size) < 0.8 for m in minutes]

    groups = number_groups(n, 8)  # the ids of organisation.usage_table
    outcomes = ["success", "failure", "error", "abandoned"]
    for (s, cp), later, fine in zip(each(), minutes, ok, strict=True):
        ci = cp == ci_index
        columns = {
            "id": numbered_range("use-", s.start, s.stop, groups),
            "ts": timestamps(ts[s]),
            "capability": strings([c.id for c in org.caps], cp),
            "action": strings(names, action[s]),
            "actor": strings(org.actors, actor[s], has_actor[s]),
            "team": strings(org.team_ids, team[s], has_team[s]),
            "service": strings(org.svc_ids, service[s], has_service[s]),
            "outcome": strings(outcomes, outcome[s], has_outcome[s]),
            "duration_s": pa.array(duration[s], mask=~has_duration[s]),
            "attributes": strings(attrs, np.minimum(attr[s], len(attrs) - 1), n_attrs[cp] > 0),
        }
        usage = table("usage", columns)
        yield _retried(usage, team[s], bot[s], ci & has_outcome[s], retried[s], later, fine, org)


def _retried(
    usage: pa.Table,
    team: np.ndarray,
    bot: np.ndarray,
    has_run: np.ndarray,
    retried: np.ndarray,
    minutes: np.ndarray,
    ok: np.ndarray,
    org: Org,
) -> pa.Table:
    """`_with_retries` of organisation.py with its draws given: the bot's records, runs and
    attempts, and the retries appended."""
    actor = pc.if_else(pa.array(bot), pa.scalar(BOT), usage.column("actor"))
    own = pc.if_else(pa.array(bot), strings(org.team_ids, team), usage.column("team"))
    ids = usage.column("id")
    run = pc.if_else(pa.array(has_run), ids, None)
    attempt = pa.array(np.where(has_run, 1, 0), pa.int64(), mask=~has_run)
    first = usage
    for name, column in (("actor", actor), ("team", own), ("run", run), ("attempt", attempt)):
        first = first.set_column(first.schema.get_field_index(name), name, column)
    again = first.filter(pa.array(retried))
    k = again.num_rows
    later = again.column("ts").cast(pa.int64()).to_numpy() + minutes * 60 * US
    changes = (
        ("id", pc.binary_join_element_wise(again.column("id"), "/2", "")),
        ("ts", timestamps(later)),
        ("outcome", strings(["success", "error"], np.where(ok, 0, 1))),
        ("attempt", pa.array(np.full(k, 2), pa.int64())),
    )
    for name, column in changes:
        again = again.set_column(again.schema.get_field_index(name), name, column)
    return pa.concat_tables([first, again])


def _times_of_day_chunk(
    per_day: np.ndarray, day: np.ndarray, gaps: np.ndarray, before_first: float
) -> np.ndarray:
    """`_times_of_day` of organisation.py for a run of whole days, given their part of the running
    sums (`day` counts from the run's first day; `before_first` is the sum before it)."""
    bounds = np.concatenate([[0], np.cumsum(per_day)])
    first = bounds[:-1] + np.arange(per_day.size)
    before = np.where(first > 0, gaps[np.maximum(first - 1, 0)], before_first)
    total = gaps[first + per_day] - before
    u = (gaps[np.arange(day.size) + day] - before[day]) / total[day]
    cdf = np.concatenate([[0.0], np.cumsum(HOURS_P)])
    return np.interp(u, cdf, np.arange(25) * 3600.0).astype(np.int64) * US
