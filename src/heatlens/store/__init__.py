"""The store: the only code that opens a connection or writes (DESIGN §2).

`Store.open(url)` gives one object owning one connection: a DuckDB file by default, or Postgres.
Reads go through Ibis (`store.table(name)`); writes are SQL run here, in transactions, and each
write that changes records bumps the data version kept in the store itself, so caches can key on it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from heatlens.errors import EmptyStoreError, StoreError
from heatlens.model import BY_NAME, RECORD_TYPES, RecordType
from heatlens.store.backends import DuckDBBackend, PostgresBackend
from heatlens.store.ids import IdDirectory
from heatlens.store.location import parse_store_url
from heatlens.store.merge import PART, Part, Staged, WriteCounts, merge
from heatlens.store.schema import MIGRATIONS, SCHEMA_VERSION, q, record_columns

MODEL_DB = "heatlens_model"  # DuckDB: the in-memory database of the model's tables

# DuckDB: how many writes of sync state each database (DuckDBBackend.database) had from any
# connection of this process, the only process writing it: a connection's directory of saved
# sync-state names (`Store._sync_names`) is valid while the count is the one it last saw
_SYNC_WRITES: Counter[str] = Counter()

# `Store.insert_new` passes at most this many rows as lists rather than as a registered view
SMALL_INSERT = 128
# the SQL type of each Arrow type heatlens.ingest.quick gives a column
_LIST_TYPES = {
    pa.string(): "VARCHAR",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
    pa.float64(): "DOUBLE",
    pa.int64(): "BIGINT",
    pa.bool_(): "BOOLEAN",
    pa.list_(pa.string()): "VARCHAR[]",
}

__all__ = ["PART", "Part", "Span", "Staged", "Store", "WriteCounts", "parse_store_url"]


@dataclass(frozen=True)
class Span:
    """The records of one type in time: how many, the earliest and the latest (UTC instants)."""

    records: int
    first: datetime
    last: datetime


# Postgres advisory lock keys (any two fixed numbers no other program on the database uses)
MIGRATION_LOCK = 0x6865_6174_0001  # "heat" 1: one replica migrates at a time
NAMED_LOCKS = 0x6865_6174  # "heat": the first key of `Store.try_lock`'s locks, hashtext(name)

# the values a `by` key may take, counted cheaply (a registry, else the distinct values used)
_SEGMENT_COUNTS = {
    "capability": "SELECT greatest((SELECT count(*) FROM capability), "
    "(SELECT count(DISTINCT capability) FROM usage))",
    "team": "SELECT count(*) FROM team",
    "group": "SELECT count(*) FROM team",
    "service": "SELECT greatest((SELECT count(*) FROM service), "
    "(SELECT count(DISTINCT service) FROM deployment))",
    "action": "SELECT count(DISTINCT action) FROM usage",
    "environment": "SELECT count(DISTINCT environment) FROM deployment",
    "survey": "SELECT count(*) FROM survey",
    "question": "SELECT count(DISTINCT question) FROM survey_response",
}


@dataclass
class Store:
    """One open store. Use `Store.open(url)`; close it (or use `with`) when done."""

    url: str
    _backend: DuckDBBackend | PostgresBackend
    read_only: bool = False
    _ibis: Any = field(default=None, repr=False)
    # the stored ids' hashes of the types this connection wrote with insert_new — or wrote at
    # all, with `keep_ids` (a server's writer connection) — on DuckDB (heatlens.store.ids)
    _ids: dict[str, IdDirectory] = field(default_factory=dict, repr=False)
    keep_ids: bool = False
    # with `keep_ids` on DuckDB, the saved sync-state names likewise (a server's webhook
    # delivery ids, asked for by every group it writes): see `known_sync_states`
    _sync_names: IdDirectory | None = field(default=None, repr=False)
    # and, while that directory is current, the states this connection read or wrote (name →
    # JSON): a webhook group reads and replaces its source's counters each time
    _sync_values: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, url: str, *, read_only: bool = False, memory_limit: int | None = None) -> Store:
        """Open (and create or migrate, unless read-only) the store at `url`.

        `memory_limit` (bytes, `Settings.duckdb_memory_bytes`) is DuckDB's memory_limit, of the
        store file's database in this process (shared by its connections) or of the DuckDB
        that stages ingest into Postgres; None leaves DuckDB's (80 % of RAM unless set before).
        A read-only open of a store that does not exist raises EmptyStoreError.
        """
        loc = parse_store_url(url)
        backend: DuckDBBackend | PostgresBackend
        if loc.dialect == "postgres":
            backend = PostgresBackend(loc.target, memory_limit=memory_limit)
            store = cls(url, backend, read_only)
            try:
                store._migrate()
            except BaseException:
                backend.close()
                raise
            return store
        exists = loc.target == ":memory:" or Path(loc.target).exists()
        if read_only and not exists:
            raise EmptyStoreError(
                f"no store at {loc.target}: run `heatlens demo` for a sample organisation, "
                "or `heatlens ingest FILE` to load your records"
            )
        if read_only and loc.target != ":memory:":
            backend = DuckDBBackend(loc.target, read_only=True, memory_limit=memory_limit)
            if backend.table_exists("meta") and _schema_version(backend) == SCHEMA_VERSION:
                return cls(url, backend, True)
            backend.close()  # an older schema: migrate once, then read
        backend = DuckDBBackend(loc.target, memory_limit=memory_limit)
        store = cls(url, backend, read_only)
        store._migrate()
        return store

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (and Ibis's, when it has its own)."""
        if self._ibis is not None and self.dialect != "duckdb":
            self._ibis.disconnect()
        self._ibis = None
        self._backend.close()

    @property
    def dialect(self) -> str:
        return self._backend.dialect

    # -- schema -------------------------------------------------------------------------------

    def _migrate(self) -> None:
        b = self._backend
        if b.dialect != "postgres":
            self._migrate_now()
            return
        # replicas starting together: one migrates, the others wait and find it done. A
        # session lock taken before the transaction begins, so that the transaction sees the
        # tables the one before created (names are looked up in a catalog read at its start).
        b.execute("SELECT pg_advisory_lock(?)", [MIGRATION_LOCK])
        try:
            self._migrate_now()
        finally:
            b.execute("SELECT pg_advisory_unlock(?)", [MIGRATION_LOCK])

    def _migrate_now(self) -> None:
        b = self._backend
        current = _schema_version(b) if b.table_exists("meta") else 0
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.url} has schema version {current}, newer than this heatlens "
                f"understands ({SCHEMA_VERSION}): upgrade heatlens"
            )
        if current == SCHEMA_VERSION:
            return
        with b.transaction():
            if current == 0:
                b.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                b.execute("INSERT INTO meta VALUES ('schema_version', '0'), ('data_version', '0')")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version - 1](b.dialect):
                    b.execute(statement)
            b.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)]
            )

    def schema_version(self) -> int:
        """The schema version this store is at."""
        return _schema_version(self._backend)

    def data_version(self) -> int:
        """A number bumped by every write that changed records. Inside a transaction, the
        version this connection keeps (DuckDBBackend.kept) when it has one: the server's writer
        asks after each group, and a group of replayed webhooks writes nothing to learn it from."""
        return _versions(self._backend, "data_version")["data_version"]

    def type_versions(self) -> dict[str, int]:
        """The data version and, per record type, the data version of the last write that
        changed records of that type (0: none since per-type versions were kept), in one query:
        caches of things built from a few types key on theirs (heatlens.metrics.model)."""
        rows = self._backend.fetchall(
            "SELECT key, value FROM meta WHERE key = 'data_version' OR key LIKE 'data_version:%'"
        )
        found = {str(k): int(v) for k, v in rows}
        out = {"": found["data_version"]}
        for t in RECORD_TYPES:
            out[t.name] = found.get(f"data_version:{t.name}", 0)
        return out

    def _bump(
        self, types: Sequence[str] = (), added: Mapping[str, Sequence[str]] | None = None
    ) -> int:
        """Bump the data version; the types named (none: every type) get it as their own (the
        caches of the model key on them). The new data version: one statement (a write of a
        few records pays for each of its statements).

        `added`: the ids the write stored, by type, for this connection's directories of stored
        ids (heatlens.store.ids), which stay current through it (a write that only removed ids
        gives `{}`: a directory may hold more than is stored). Without it the directories of
        the types bumped are dropped: the next write reads the ids again."""
        names = list(types or BY_NAME)
        keys = ["data_version", *(f"data_version:{n}" for n in names)]
        marks = ", ".join("?" for _ in keys)
        # an update (a type bumped before) is several times cheaper than DuckDB's upsert, and
        # one to a value known already (kept: read or written by this connection, see
        # DuckDBBackend.kept) twice cheaper again (a write by another connection since the
        # transaction began fails it either way)
        kept = self._backend.kept if isinstance(self._backend, DuckDBBackend) else {}
        if "data_version" in kept and all(kept.get(key, 0) > 0 for key in keys[1:]):
            # every key known, and stored (a type's version is 0 until its first bump): the
            # values written are the ones known plus one
            version = kept["data_version"] + 1
            self._backend.execute(
                f"UPDATE meta SET value = ? WHERE key IN ({marks})", [str(version), *keys]
            )
            rows = [(key, version) for key in keys]
        elif "data_version" in kept:
            rows = self._backend.fetchall(
                f"UPDATE meta SET value = ? WHERE key IN ({marks}) RETURNING key, value",
                [str(kept["data_version"] + 1), *keys],
            )
        else:
            rows = self._backend.fetchall(
                "UPDATE meta SET value = (SELECT CAST(CAST(value AS BIGINT) + 1 AS TEXT) "
                f"FROM meta WHERE key = 'data_version') WHERE key IN ({marks}) "
                "RETURNING key, value",
                keys,
            )
        found = {str(key): value for key, value in rows}
        version = int(found["data_version"])
        if missing := [key for key in keys if key not in found]:  # a type's first bump
            self._backend.execute(
                f"INSERT INTO meta VALUES {', '.join('(?, ?)' for _ in missing)} "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [v for key in missing for v in (key, str(version))],
            )
        if isinstance(self._backend, DuckDBBackend):
            self._backend.versions_written()
            if self._backend.in_transaction:  # the versions it kept are now these
                kept.update(dict.fromkeys(keys, version))
            else:
                kept.clear()
            for name in names:
                directory = self._ids.get(name)
                if directory is None:
                    continue
                if added is None:
                    del self._ids[name]
                else:
                    directory.added(added.get(name, ()), (version, self._backend.rollbacks))
        return version

    # -- the model's tables (heatlens.metrics.model) ------------------------------------------

    def model_scope(self) -> tuple[str, str]:
        """What identifies this store's database in this process, for the model cache: on
        DuckDB the in-memory database holding the model's tables (one per database instance,
        shared by every connection of the process to the file), elsewhere the URL."""
        if self.dialect != "duckdb":
            return (self.url, "")
        b = self._backend
        b.execute(f"ATTACH IF NOT EXISTS ':memory:' AS {MODEL_DB} (READ_WRITE)")
        b.execute(
            f"CREATE TABLE IF NOT EXISTS {MODEL_DB}.main.scope AS "
            "SELECT CAST(uuid() AS VARCHAR) AS token"
        )
        return (self.url, str(b.fetchall(f"SELECT token FROM {MODEL_DB}.main.scope")[0][0]))

    def materialise(self, name: str, expr: Any) -> Any:
        """Keep the result of an Ibis expression as the model table `name` and give it back as
        a table: on DuckDB a table of the in-memory model database, readable from every
        connection of the process; elsewhere the expression itself (not materialised)."""
        if self.dialect != "duckdb":
            return expr
        self.model_scope()
        self.ibis().create_table(name, expr, database=(MODEL_DB, "main"), overwrite=True)
        return self.model_table(name)

    def model_table(self, name: str) -> Any:
        """A model table kept by `materialise` (on this connection)."""
        return self.ibis().table(name, database=(MODEL_DB, "main"))

    def drop_model_table(self, name: str) -> None:
        if self.dialect == "duckdb":
            self._backend.execute(f"DROP TABLE IF EXISTS {MODEL_DB}.main.{q(name)}")

    # -- reads --------------------------------------------------------------------------------

    def ibis(self) -> Any:
        """The Ibis backend reading this store (metrics build expressions on its tables)."""
        if self._ibis is None:
            self._ibis = self._backend.ibis()
        return self._ibis

    def table(self, name: str) -> Any:
        """An Ibis table of the store."""
        return self.ibis().table(name)

    def counts(self) -> dict[str, int]:
        """Number of stored records per type."""
        parts = " UNION ALL ".join(
            f"SELECT '{t.name}', count(*) FROM {q(t.table)}" for t in RECORD_TYPES
        )
        return {name: int(n) for name, n in self._backend.fetchall(parts)}

    def counts_by_source(self) -> list[tuple[str, str, int]]:
        """(type, source, records) for every type and source."""
        parts = " UNION ALL ".join(
            f"SELECT '{t.name}' AS type, source, count(*) AS n FROM {q(t.table)} GROUP BY source"
            for t in RECORD_TYPES
        )
        return [(a, b, int(c)) for a, b, c in self._backend.fetchall(parts + " ORDER BY 1, 2")]

    def last_ingested_by_source(self) -> list[tuple[str, datetime]]:
        """(source, when it last delivered a record) for every source, latest first."""
        latest = " UNION ALL ".join(
            f"SELECT source, max(ingested_at) AS last_at FROM {q(t.table)} GROUP BY source"
            for t in RECORD_TYPES
        )
        return [
            (str(source), at)
            for source, at in self._backend.fetchall(
                f"SELECT source, max(last_at) FROM ({latest}) AS s GROUP BY source "
                "ORDER BY 2 DESC, 1"
            )
        ]

    def ingest_errors(self, limit: int) -> tuple[int, list[tuple[Any, ...]]]:
        """How many refused-record problems are logged, and the latest `limit` of them as
        (at, source, location, type, field, value, message)."""
        total = int(self._backend.fetchall("SELECT count(*) FROM ingest_error")[0][0])
        rows = self._backend.fetchall(
            'SELECT "at", source, location, type, field, value, message FROM ingest_error '
            'ORDER BY "at" DESC LIMIT ?',
            [limit],
        )
        return total, rows

    def capability_ids(self) -> list[str]:
        """The registry's capabilities, or (with no registry) every capability used."""
        found = self._backend.fetchall("SELECT id FROM capability ORDER BY id") or (
            self._backend.fetchall(
                "SELECT DISTINCT capability FROM usage WHERE capability IS NOT NULL ORDER BY 1"
            )
        )
        return [str(c) for (c,) in found]

    def leaf_team_ids(self) -> list[str]:
        """Teams that no other team names as parent (teams, not groups)."""
        return [
            str(t)
            for (t,) in self._backend.fetchall(
                "SELECT id FROM team WHERE id NOT IN "
                "(SELECT parent FROM team WHERE parent IS NOT NULL) ORDER BY id"
            )
        ]

    def segment_count(self, key: str) -> int:
        """How many values a report segment key may take (at least 1): what a report `by` it
        multiplies its rows by, known before the report is computed."""
        sql = _SEGMENT_COUNTS.get(key)
        return max(1, int(self._backend.fetchall(sql)[0][0])) if sql else 1

    def is_empty(self) -> bool:
        """True when no record of any type is stored."""
        return not any(self.counts().values())

    def usage_span(self) -> tuple[datetime, datetime] | None:
        """The first and last usage timestamps, or None when no usage is stored."""
        first, last = self._backend.fetchall("SELECT min(ts), max(ts) FROM usage")[0]
        return None if first is None else (first, last)

    def spans(self) -> dict[str, Span]:
        """For each record type placed in time (`RecordType.at`) that has records: how many, and
        the earliest and latest of their times. What an empty range is told about."""
        timed = [t for t in RECORD_TYPES if t.at is not None]
        parts = " UNION ALL ".join(
            f"SELECT '{t.name}', count(*), min({q(t.at or '')}), max({q(t.at or '')}) "
            f"FROM {q(t.table)}"
            for t in timed
        )
        return {
            name: Span(int(n), first, last)
            for name, n, first, last in self._backend.fetchall(parts)
            if n and first is not None
        }

    def count_between(self, type_name: str, start: datetime, end: datetime) -> int:
        """Records of one type placed in [start, end) by their time (`RecordType.at`)."""
        rtype = BY_NAME[type_name]
        if rtype.at is None:
            raise ValueError(f"{type_name} records are not placed in time")
        sql = (
            f"SELECT count(*) FROM {q(rtype.table)} WHERE {q(rtype.at)} >= ? AND {q(rtype.at)} < ?"
        )
        return int(self._backend.fetchall(sql, [start, end])[0][0])

    def rows(self, type_name: str, *, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Stored records of one type as dicts (fields, `source`, `ingested_at`), by id;
        only those with `ids` when given."""
        rtype = BY_NAME[type_name]
        cols = record_columns(rtype)
        sql = f"SELECT {', '.join(q(c) for c in cols)} FROM {q(rtype.table)}"
        params: list[Any] = []
        if ids is not None:
            ids = self._maybe_stored(type_name, ids)
            if not ids:
                return []
            sql += f" WHERE id IN ({', '.join('?' for _ in ids)})"
            params = list(ids)
        found = self._backend.fetchall(sql + " ORDER BY id", params)
        return [dict(zip(cols, row, strict=True)) for row in found]

    def _maybe_stored(self, type_name: str, ids: Sequence[str]) -> Sequence[str]:
        """`ids` without those this connection's directory of the type (see `insert_new`)
        knows are not stored; all of them when it has none, or one out of date."""
        directory = self._ids.get(type_name)
        backend = self._backend
        if directory is None or not ids or not isinstance(backend, DuckDBBackend):
            return ids
        if self._id_stamp(backend, type_name) != directory.stamp:
            return ids
        return [i for i, m in zip(ids, directory.maybe_stored(ids), strict=True) if m]

    def previous_deployment(
        self, service: str, environment: str, before: datetime, exclude: str
    ) -> tuple[str, str, datetime] | None:
        """(id, commit_sha, finished_at) of the latest successful deployment of `service` in
        `environment` with a `commit_sha`, finished before `before` (ties: highest id), other
        than `exclude`; None when there is none. Unset environment/result read as their
        defaults (production, success)."""
        found = self._backend.fetchall(
            "SELECT id, commit_sha, finished_at FROM deployment WHERE service = ? "
            "AND coalesce(environment, 'production') = ? AND coalesce(result, 'success') = "
            "'success' AND commit_sha IS NOT NULL AND finished_at < ? AND id <> ? "
            "ORDER BY finished_at DESC, id DESC LIMIT 1",
            [service, environment, before, exclude],
        )
        return (str(found[0][0]), str(found[0][1]), found[0][2]) if found else None

    def deployments_by_prefix(
        self, prefix: str, *, ingested_after: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Successful deployments with a `commit_sha` whose id begins with `prefix` (written
        after `ingested_after` when given), as `rows` gives them, by `finished_at` then id."""
        sql, params = self._deployments_sql(prefix)
        if ingested_after is not None:
            sql += " AND ingested_at > ?"
            params.append(ingested_after)
        return self._dicts("deployment", sql + " ORDER BY finished_at, id", params)

    def adjacent_deployment(
        self, prefix: str, row: Mapping[str, Any], *, later: bool
    ) -> dict[str, Any] | None:
        """The deployment of `deployments_by_prefix(prefix)` just before (or after, `later`)
        `row` in its service and environment, by (`finished_at`, id); None at either end."""
        sql, params = self._deployments_sql(prefix)
        op, order = (">", "ASC") if later else ("<", "DESC")
        sql += (
            " AND service = ? AND coalesce(environment, 'production') = ? AND (finished_at "
            f"{op} ? OR (finished_at = ? AND id {op} ?)) ORDER BY finished_at {order}, "
            f"id {order} LIMIT 1"
        )
        at = row["finished_at"]
        params += [row["service"], row.get("environment") or "production", at, at, row["id"]]
        found = self._dicts("deployment", sql, params)
        return found[0] if found else None

    def _deployments_sql(self, prefix: str) -> tuple[str, list[Any]]:
        cols = ", ".join(q(c) for c in record_columns(BY_NAME["deployment"]))
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        sql = (
            f"SELECT {cols} FROM deployment WHERE id LIKE ? ESCAPE '\\' AND coalesce(result, "
            "'success') = 'success' AND commit_sha IS NOT NULL AND finished_at IS NOT NULL"
        )
        return sql, [escaped + "%"]

    def _dicts(self, type_name: str, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        cols = record_columns(BY_NAME[type_name])
        return [dict(zip(cols, r, strict=True)) for r in self._backend.fetchall(sql, params)]

    def changes_committed_between(
        self, service: str, repo: str | None, after: datetime, until: datetime
    ) -> list[tuple[str, datetime]]:
        """(sha, committed_at) of the changes of `service` (and of `repo` when given) committed
        in (after, until], oldest first (ties: by sha)."""
        sql = (
            "SELECT id, committed_at FROM change WHERE service = ? AND committed_at > ? "
            "AND committed_at <= ?"
        )
        params: list[Any] = [service, after, until]
        if repo is not None:
            sql += " AND repo = ?"
            params.append(repo)
        found = self._backend.fetchall(sql + " ORDER BY committed_at, id", params)
        return [(str(sha), at) for sha, at in found]

    def records(self, type_name: str) -> pa.Table:
        """Every stored record of one type as an Arrow table (fields, `source`, `ingested_at`),
        ordered by id."""
        rtype = BY_NAME[type_name]
        return self.table(rtype.table).order_by("id").to_pyarrow()

    def audit_entries(self) -> list[tuple[datetime, str, dict[str, Any]]]:
        """The audit log, oldest first: (at, action, detail)."""
        found = self._backend.fetchall('SELECT "at", action, detail FROM audit_log ORDER BY "at"')
        return [(at, str(action), json.loads(detail)) for at, action, detail in found]

    # -- sync state (DESIGN §2): what each connector has read so far ------------------------------

    def sync_state(self, name: str) -> dict[str, Any] | None:
        """The state saved under `name`, or None when that sync never ran."""
        directory = self._sync_directory()
        if directory is not None and not directory.maybe_stored([name])[0]:
            return None
        text = self._sync_values.get(name) if directory is not None else None
        if text is None:
            found = self._backend.fetchall("SELECT state FROM sync_state WHERE name = ?", [name])
            if not found:
                return None
            text = str(found[0][0])
            if directory is not None:
                self._sync_values[name] = text
        state = json.loads(text)
        if not isinstance(state, dict):
            raise StoreError(f"sync state {name!r} in {self.url} is not a JSON object")
        return state

    def sync_states(
        self, prefix: str = "", *, excluding: Sequence[str] = ()
    ) -> list[tuple[str, dict[str, Any], datetime]]:
        """(name, state, updated_at) of every saved state whose name starts with `prefix` and
        with none of `excluding`, by name. (Webhook delivery ids share the table, a row per
        delivery for days: they are left out in the query, not read and dropped.)"""
        where, params = _name_ranges(prefix, excluding)
        found = self._backend.fetchall(
            f"SELECT name, state, updated_at FROM sync_state WHERE {where} ORDER BY name", params
        )
        return [(str(n), json.loads(s), at) for n, s, at in found]

    def tally_sync_states(
        self, prefix: str, flag: str, *, before: datetime | None = None
    ) -> dict[str, SyncTally]:
        """The states saved under `prefix<key>:…` (saved before `before`, if given), tallied
        per key — the part of the name after `prefix` up to the next `:`: how many, how many
        hold the JSON key `flag`, and the last saved of each: by `updated_at`, then (states
        saved together) by their JSON text. heatlens.store.deliveries counts webhook
        deliveries this way: each delivery's id row is its count."""
        if not flag.isalpha():  # (no LIKE wildcard in it)
            raise ValueError(f"a flag is a plain JSON key, not {flag!r}")
        where, params = _name_ranges(prefix)
        if before is not None:
            where += " AND updated_at < ?"
            params.append(before)
        # a key as `_state_text` writes it, or json.dumps before it (never inside a string)
        marked = f"%{json.dumps(flag)}:%"
        rows = (
            f"SELECT split_part(substr(name, {len(prefix) + 1}), ':', 1) AS key, state, "
            f"updated_at, state LIKE ? AS flagged FROM sync_state WHERE {where}"
        )
        counted = self._backend.fetchall(
            f"SELECT key, count(*), count(*) FILTER (WHERE flagged) FROM ({rows}) AS r "
            "GROUP BY key",
            [marked, *params],
        )
        last = self._backend.fetchall(
            "SELECT key, flagged, state, last_of_key FROM (SELECT key, flagged, state, "
            "row_number() OVER (PARTITION BY key ORDER BY updated_at DESC, state DESC) = 1 "
            "AS last_of_key, row_number() OVER (PARTITION BY key, flagged "
            f"ORDER BY updated_at DESC, state DESC) = 1 AS last_of_kind FROM ({rows}) AS r) AS l "
            "WHERE last_of_key OR (flagged AND last_of_kind)",
            [marked, *params],
        )
        tallies = {str(k): SyncTally(int(n), int(f)) for k, n, f in counted}
        for key, flagged, state, last_of_key in last:
            tally = tallies[str(key)]
            if last_of_key:
                tally.last = json.loads(state)
            if flagged:
                tally.last_flagged = json.loads(state)
        return tallies

    def save_sync_state(
        self, name: str, state: dict[str, Any], *, at: datetime | None = None
    ) -> None:
        """Replace the state saved under `name` (a sync that wrote no records; with records,
        pass it to `write` so both commit together)."""
        self._writable()
        with self._backend.transaction():
            self._put_sync_state(name, state, at or datetime.now(UTC))

    def save_sync_states(
        self,
        states: Mapping[str, dict[str, Any]],
        *,
        at: datetime | None = None,
        new: Collection[str] = (),
    ) -> None:
        """Replace the states saved under each name, in one transaction. `new`: names the
        caller found unsaved in the same transaction (a webhook group's delivery ids); they are
        inserted without the conflict check, which costs several times more per row."""
        self._writable()
        if not states:
            return
        when = at or datetime.now(UTC)
        fresh = [n for n in states if n in new]
        known = [n for n in states if n not in new]

        text = {n: _state_text(state) for n, state in states.items()}
        with self._backend.transaction():
            if fresh:  # the rows as two lists: one parameter each
                # Postgres: another replica may have saved one since the caller looked (the
                # same delivery at both at once): its row stands
                either = " ON CONFLICT (name) DO NOTHING" if self.dialect == "postgres" else ""
                self._backend.execute(
                    "INSERT INTO sync_state SELECT unnest(CAST(? AS TEXT[])), "
                    f"unnest(CAST(? AS TEXT[])), ?{either}",
                    [fresh, [text[n] for n in fresh], when],
                )
            if known:  # an update is several times cheaper than DuckDB's upsert
                cases = " ".join("WHEN ? THEN ?" for _ in known)
                updated = self._backend.fetchall(
                    f"UPDATE sync_state SET state = CASE name {cases} END, updated_at = ? "
                    f"WHERE name IN ({', '.join('?' for _ in known)}) RETURNING name",
                    [*(v for n in known for v in (n, text[n])), when, *known],
                )
                done = {str(n) for (n,) in updated}
                if missing := [n for n in known if n not in done]:
                    self._backend.execute(
                        f"INSERT INTO sync_state VALUES {', '.join('(?, ?, ?)' for _ in missing)} "
                        "ON CONFLICT (name) DO UPDATE SET state = excluded.state, "
                        "updated_at = excluded.updated_at",
                        [v for n in missing for v in (n, text[n], when)],
                    )
            self._sync_written(text)

    def known_sync_states(self, names: Sequence[str]) -> set[str]:
        """Which of `names` have a saved state (one query; none when this connection's
        directory of saved names knows that none of them is saved)."""
        if names and (directory := self._sync_directory()) is not None:
            names = [n for n, m in zip(names, directory.maybe_stored(names), strict=True) if m]
        if not names:
            return set()
        marks = ", ".join("?" for _ in names)
        found = self._backend.fetchall(
            f"SELECT name FROM sync_state WHERE name IN ({marks})", list(names)
        )
        return {str(n) for (n,) in found}

    def _sync_directory(self) -> IdDirectory | None:
        """With `keep_ids` on DuckDB: the hashes of the saved sync-state names, read again
        when a write by another connection of the process (or a rollback) made the last
        reading out of date (heatlens.store.ids; a name it holds may be saved, one it lacks
        surely is not)."""
        backend = self._backend
        if not self.keep_ids or not isinstance(backend, DuckDBBackend):
            return None
        stamp = (_SYNC_WRITES[backend.database], backend.rollbacks)
        if self._sync_names is None or self._sync_names.stamp != stamp:
            self._sync_values.clear()
            reader = backend.con.execute("SELECT name FROM sync_state")
            self._sync_names = IdDirectory.read(stamp, reader.to_arrow_reader())
        return self._sync_names

    def _sync_written(self, saved: Mapping[str, str] | None = None) -> None:
        """Sync state was written on this connection: the states `saved` (name → JSON), or
        None for a deletion. Count it for the process, and keep this connection's directory of
        saved names (and the states it keeps) current."""
        backend = self._backend
        if not isinstance(backend, DuckDBBackend):
            return
        before = (_SYNC_WRITES[backend.database], backend.rollbacks)
        _SYNC_WRITES[backend.database] += 1
        directory = self._sync_names
        if directory is None or directory.stamp != before:
            self._sync_names = None
            self._sync_values.clear()
            return
        # (a deletion leaves the directory holding more than is saved, which it may)
        directory.added(saved or (), (_SYNC_WRITES[backend.database], backend.rollbacks))
        if saved is None:
            self._sync_values.clear()
        else:
            self._sync_values.update(saved)

    def prune_sync_states(self, prefix: str, before: datetime) -> int:
        """Forget the states named `prefix…` last saved before `before`; how many."""
        self._writable()
        where, params = _name_ranges(prefix)
        where += " AND updated_at < ?"
        params.append(before)
        with self._backend.transaction():
            [(n,)] = self._backend.fetchall(
                f"SELECT count(*) FROM sync_state WHERE {where}", params
            )
            if n:
                self._backend.execute(f"DELETE FROM sync_state WHERE {where}", params)
                self._sync_written()
        return int(n)

    # -- locks between processes sharing a store (server replicas on Postgres) ----------------

    def try_lock(self, name: str) -> bool:
        """Take the lock called `name` for this connection, unless another connection holds it
        (False). On Postgres a session advisory lock: it is let go by `unlock`, or when the
        connection ends (a killed process holds nothing). A DuckDB store has one process
        writing it (the file lock), so it always gets the lock."""
        if self.dialect != "postgres":
            return True
        found = self._backend.fetchall(
            "SELECT pg_try_advisory_lock(?, hashtext(?))", [NAMED_LOCKS, name]
        )
        return bool(found[0][0])

    def unlock(self, name: str) -> None:
        """Let go of a lock `try_lock` took."""
        if self.dialect == "postgres":
            self._backend.execute("SELECT pg_advisory_unlock(?, hashtext(?))", [NAMED_LOCKS, name])

    def transaction(self) -> AbstractContextManager[None]:
        """One transaction around several of this store's writes (and the reads between them):
        the writes inside join it, and it commits at the end, or rolls back on any error."""
        self._writable()
        return self._backend.transaction()

    def delete_sync_state(self, name: str) -> None:
        """Forget the state saved under `name` (the next sync starts from scratch)."""
        self._writable()
        with self._backend.transaction():
            self._backend.execute("DELETE FROM sync_state WHERE name = ?", [name])
            self._sync_written()

    def _put_sync_state(self, name: str, state: dict[str, Any], at: datetime) -> None:
        # State changes do not bump the data version: no record changed.
        text = _state_text(state)
        if self.dialect == "postgres":
            # one statement: two replicas saving one name never meet a unique violation
            self._backend.execute(
                "INSERT INTO sync_state VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at",
                [name, text, at],
            )
            return
        self._backend.execute("DELETE FROM sync_state WHERE name = ?", [name])
        self._backend.execute("INSERT INTO sync_state VALUES (?, ?, ?)", [name, text, at])
        self._sync_written({name: text})

    # -- writes -------------------------------------------------------------------------------

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError(f"store {self.url} was opened read-only")

    def staging_connection(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection heatlens.ingest stages and validates records in (for ingest
        only: it is no way to read the store, which may not even live in DuckDB)."""
        return self._backend.staging_connection()

    def write(
        self,
        batches: Sequence[Staged],
        parts: Sequence[Part],
        *,
        sync_state: Mapping[str, dict[str, Any]] | None = None,
    ) -> list[dict[str, WriteCounts]]:
        """Upsert staged batches in ONE transaction, with the sync state they cover (name →
        state), if any: whole records replace records with their id.

        The parts' rows are written as if one part after another, in order: a record is
        `inserted` when neither the store nor an earlier part has its id, `updated` when it
        differs from the version before it (the store's or an earlier part's), else `unchanged`.
        Returns counts per input (`Part.input`), per type. Nothing is written when any step fails.
        """
        self._writable()
        inputs = 1 + max((p.input for p in parts), default=-1)
        counts: list[dict[str, WriteCounts]] = [{} for _ in range(inputs)]
        staging = self.staging_connection()
        now = datetime.now(UTC)
        with self._backend.transaction():
            changed: set[str] = set()
            added: dict[str, list[str]] = {}  # for the directories of stored ids (see _bump)
            for batch in batches:
                name = batch.rtype.name
                cols = [*batch.rtype.field_names, PART]
                stage = self._backend.adopt_stage(staging, batch.table, batch.rtype.table, cols)
                none_stored = False
                directory = self._kept_ids(batch.rtype)
                if directory is not None:
                    ids = [str(i) for (i,) in self._backend.fetchall(f"SELECT id FROM {stage}")]
                    # (ids an earlier batch of the write staged are not in the directory yet)
                    none_stored = name not in added and not any(directory.maybe_stored(ids))
                    added.setdefault(name, []).extend(ids)
                by_part = merge(self._backend, batch, stage, parts, now, none_stored=none_stored)
                for part, c in by_part.items():
                    counts[parts[part].input].setdefault(name, WriteCounts()).add(c)
                    if c.inserted or c.updated:
                        changed.add(name)
            if changed:
                self._bump(sorted(changed), added)
            for name, state in (sync_state or {}).items():
                self._put_sync_state(name, state, now)
        return counts

    def insert_new(self, rtype: RecordType, data: pa.Table, select: str) -> int | None:
        """Insert records of one type when the store has none of their ids — one statement,
        no merge — and bump the data version: the new data version; None, and nothing
        written, when one id is stored (then merge them with `write`) or the store is not
        DuckDB.

        `data` holds the records, each id once, as an Arrow table with a `__source` column
        (each record's source) and the columns `select` (a SELECT list) turns into the type's
        stored fields, in order. Inside `transaction()` it joins that transaction.
        """
        self._writable()
        if not isinstance(self._backend, DuckDBBackend):
            return None
        con = self._backend.con
        lists = _as_lists(data) if data.num_rows <= SMALL_INSERT else None
        view = f"insert_new_{rtype.name}"
        params: list[Any] = []
        if lists is None:
            con.register(view, data)
            rows = view
        else:
            # a few rows: passed as one list per column, which saves registering a view (a
            # catalog change of its own) and scanning it: about half the cost
            rows, params = lists
        try:
            with self._backend.transaction():
                directory = self._id_directory(con, rtype)
                ids = data.column("id").to_pylist()
                cols = ", ".join(q(c) for c in record_columns(rtype))
                insert = (
                    f"INSERT INTO {q(rtype.table)} ({cols}) SELECT {select}, __source, ? "
                    f"FROM {rows}"
                )
                params = [datetime.now(UTC), *params]
                if any(directory.maybe_stored(ids)):
                    # one statement: every row, or none when one id is stored
                    new_ids = f"SELECT id FROM {view}"
                    if lists is not None:
                        new_ids = "SELECT unnest(CAST(? AS VARCHAR[]))"
                        params.append(ids)
                    insert += (
                        f" WHERE NOT EXISTS (SELECT 1 FROM {q(rtype.table)} "
                        f"WHERE id IN ({new_ids}))"
                    )
                [(inserted,)] = self._backend.fetchall(insert, params)
                if not inserted:
                    return None
                version = self._bump([rtype.name], {rtype.name: ids})
        finally:
            if lists is None:
                con.unregister(view)
        return version

    def read_id_directory(self, type_name: str) -> IdDirectory | None:
        """This connection's reading of a type's stored ids, for the writer connection of the
        process to adopt (`adopt_ids`) before its first write needs them; None off DuckDB."""
        backend = self._backend
        if not isinstance(backend, DuckDBBackend):
            return None
        with backend.transaction():  # one snapshot: the version and the ids agree
            version, _ = self._id_stamp(backend, type_name)
            reader = backend.con.execute(f"SELECT id FROM {q(BY_NAME[type_name].table)}")
            return IdDirectory.read((version, -1), reader.to_arrow_reader())

    def adopt_ids(self, type_name: str, directory: IdDirectory) -> None:
        """Keep a directory another connection read (`read_id_directory`) as this one's, unless
        it has one: valid while the type's data version is the one it was read at."""
        if isinstance(self._backend, DuckDBBackend) and type_name not in self._ids:
            directory.stamp = (directory.stamp[0], self._backend.rollbacks)
            self._ids.setdefault(type_name, directory)

    def _kept_ids(self, rtype: RecordType) -> IdDirectory | None:
        """The directory of `rtype`'s stored ids when this connection keeps one (see `_ids`)."""
        backend = self._backend
        if not isinstance(backend, DuckDBBackend):
            return None
        if rtype.name not in self._ids and not self.keep_ids:
            return None
        return self._id_directory(backend.con, rtype)

    def _id_directory(self, con: duckdb.DuckDBPyConnection, rtype: RecordType) -> IdDirectory:
        """The directory of `rtype`'s stored ids (heatlens.store.ids), read again when the
        type's data version moved since it was last told."""
        assert isinstance(self._backend, DuckDBBackend)
        stamp = self._id_stamp(self._backend, rtype.name)
        directory = self._ids.get(rtype.name)
        if directory is None or directory.stamp != stamp:
            reader = con.execute(f"SELECT id FROM {q(rtype.table)}")
            directory = self._ids[rtype.name] = IdDirectory.read(stamp, reader.to_arrow_reader())
        return directory

    @staticmethod
    def _id_stamp(backend: DuckDBBackend, name: str) -> tuple[int, int]:
        """What a directory of `name`'s ids is valid for: the type's data version, and the
        transactions this connection rolled back (a directory told of ids a rolled-back write
        added could otherwise look valid again once another write reaches the same version)."""
        key = f"data_version:{name}"
        # (the data version is read and kept with it: `_bump` counts on it)
        return _versions(backend, "data_version", key)[key], backend.rollbacks

    def delete_records(
        self,
        rtype: RecordType,
        *,
        ids: Sequence[str] = (),
        source: str | None = None,
        ingested_between: tuple[datetime, datetime] | None = None,
    ) -> int:
        """Delete records of one type by id, by source or by ingestion time; logged."""
        self._writable()
        params: list[Any]
        if ids:
            marks = ", ".join("?" for _ in ids)
            where, params = f"id IN ({marks})", list(ids)
        elif source is not None:
            where, params = "source = ?", [source]
        elif ingested_between is not None:
            where, params = "ingested_at >= ? AND ingested_at < ?", list(ingested_between)
        else:
            raise StoreError("delete needs ids, a source or an ingestion time range")
        target = q(rtype.table)
        with self._backend.transaction():
            n = int(
                self._backend.fetchall(f"SELECT count(*) FROM {target} WHERE {where}", params)[0][0]
            )
            if n:
                self._backend.execute(f"DELETE FROM {target} WHERE {where}", params)
                self._bump([rtype.name], added={})
            self._audit(
                "delete", {"type": rtype.name, "where": where, "params": params, "deleted": n}
            )
        return n

    def erase_actor(self, actors: Sequence[str]) -> dict[str, int]:
        """Erase a person everywhere: memberships and survey answers deleted, identity removed.

        Usage keeps its team: a record with neither team nor an owned service gets the team the
        person belonged to at its time, so team metrics don't change when the person goes.
        """
        self._writable()
        marks = ", ".join("?" for _ in actors)
        params = list(actors)
        b = self._backend
        counts: dict[str, int] = {}
        with b.transaction():

            def count(sql: str) -> int:
                return int(b.fetchall(sql, params)[0][0])

            counts["usage"] = count(f"SELECT count(*) FROM usage WHERE actor IN ({marks})")
            b.execute(
                f"""UPDATE usage SET team = (
                      SELECT m.team FROM membership m
                      WHERE m.actor = usage.actor
                        AND (m."from" IS NULL OR m."from" <= usage.ts)
                        AND (m."to" IS NULL OR usage.ts < m."to")
                      ORDER BY m."from" DESC NULLS LAST LIMIT 1)
                    WHERE actor IN ({marks}) AND team IS NULL AND NOT EXISTS (
                      SELECT 1 FROM service s WHERE s.id = usage.service AND s.team IS NOT NULL)""",
                params,
            )
            b.execute(f"UPDATE usage SET actor = NULL WHERE actor IN ({marks})", params)
            counts["change"] = count(f"SELECT count(*) FROM change WHERE author IN ({marks})")
            b.execute(f"UPDATE change SET author = NULL WHERE author IN ({marks})", params)
            for table, column in (("membership", "actor"), ("survey_response", "respondent")):
                counts[table] = count(f"SELECT count(*) FROM {table} WHERE {column} IN ({marks})")
                b.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", params)
            if any(counts.values()):
                self._bump([name for name, n in counts.items() if n], added={})
            self._audit("erase_actor", {"actors": len(actors), "records": counts})
        return counts

    def _audit(self, action: str, detail: dict[str, Any]) -> None:
        self._backend.execute(
            "INSERT INTO audit_log VALUES (?, ?, ?)",
            [datetime.now(UTC), action, json.dumps(detail, default=str)],
        )

    def audit(self, action: str, detail: dict[str, Any]) -> None:
        """Append an entry to the audit log."""
        self._writable()
        self._audit(action, detail)

    def log_ingest_errors(self, source: str, problems: Sequence[Any]) -> None:
        """Keep refused records' problems (for the Data page); records are not touched."""
        if self.read_only or not problems:
            return
        now = datetime.now(UTC)
        rows = [[now, source, p.location, p.type, p.field, p.value, p.message] for p in problems]
        with self._backend.transaction():
            for row in rows:
                self._backend.execute("INSERT INTO ingest_error VALUES (?, ?, ?, ?, ?, ?, ?)", row)


def _schema_version(backend: DuckDBBackend | PostgresBackend) -> int:
    rows = backend.fetchall("SELECT value FROM meta WHERE key = 'schema_version'")
    return int(rows[0][0]) if rows else 0


def _as_lists(data: pa.Table) -> tuple[str, list[Any]] | None:
    """`data` as a subquery of one `unnest` per column and its parameters (a list each); None
    when a column's type has no SQL type here."""
    selects, params = [], []
    for name, column in zip(data.column_names, data.columns, strict=True):
        sql_type = _LIST_TYPES.get(column.type)
        if sql_type is None:
            return None
        selects.append(f"unnest(CAST(? AS {sql_type}[])) AS {q(name)}")
        params.append(column.to_pylist())
    return f"(SELECT {', '.join(selects)})", params


@dataclass
class SyncTally:
    """Saved states under one key (`Store.tally_sync_states`)."""

    count: int
    flagged: int  # how many hold the flag
    last: dict[str, Any] | None = None  # the last saved
    last_flagged: dict[str, Any] | None = None  # the last saved holding the flag


def _name_ranges(prefix: str, excluding: Sequence[str] = ()) -> tuple[str, list[Any]]:
    """A WHERE clause for sync-state names starting with `prefix` and none of `excluding`:
    ranges on the name, not LIKE, so no prefix needs escaping (and an index can serve them)."""
    clauses, params = ["TRUE"], []
    if prefix:
        clauses.append("name >= ? AND name < ?")
        params += [prefix, _after(prefix)]
    for other in excluding:
        clauses.append("NOT (name >= ? AND name < ?)")
        params += [other, _after(other)]
    return " AND ".join(clauses), params


def _after(prefix: str) -> str:
    """The least string after every string starting with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


# what `_state_text` leaves to `default`, as json.dumps(default=str) wrote them
_STATE_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_NON_STR_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _versions(backend: DuckDBBackend | PostgresBackend, *keys: str) -> dict[str, int]:
    """The data versions `keys` name in `meta` (0: never bumped). Inside a transaction, what
    the connection keeps (DuckDBBackend.kept: valid while no other connection of the process
    writes versions) answers when it holds them all; what is read there is kept."""
    kept = backend.kept if isinstance(backend, DuckDBBackend) and backend.in_transaction else None
    if kept is not None and all(key in kept for key in keys):
        return {key: int(kept[key]) for key in keys}
    marks = ", ".join("?" for _ in keys)
    found = dict(backend.fetchall(f"SELECT key, value FROM meta WHERE key IN ({marks})", keys))
    versions = {key: int(found.get(key, 0)) for key in keys}
    if kept is not None:
        kept.update(versions)
    return versions


def _state_text(state: Mapping[str, Any]) -> str:
    """A sync state as JSON text, keys sorted: orjson (a webhook group saves one per delivery,
    on the writer: several times cheaper than json), or json for what orjson refuses (an
    integer beyond 64 bits)."""
    try:
        return orjson.dumps(state, option=_STATE_OPTIONS, default=str).decode()
    except orjson.JSONEncodeError:
        return json.dumps(state, sort_keys=True, default=str)
