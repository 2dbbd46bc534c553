"""The store: the only code that opens a connection or writes (DESIGN §2).

`Store.open(url)` gives one object owning one connection: a DuckDB file by default, or Postgres.
Reads go through Ibis (`store.table(name)`); writes are SQL run here, in transactions, and each
write that changes records bumps the data version kept in the store itself, so caches can key on it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from heatlens.errors import EmptyStoreError, StoreError
from heatlens.model import RECORD_TYPES, RecordType
from heatlens.store.backends import DuckDBBackend, PostgresBackend
from heatlens.store.schema import MIGRATIONS, SCHEMA_VERSION, q, record_columns

__all__ = ["Staged", "Store", "WriteCounts", "parse_store_url"]


@dataclass(frozen=True)
class Staged:
    """Validated records of one type, staged in the store's staging connection.

    `table` has exactly the record type's field columns and at most one row per id.
    """

    rtype: RecordType
    table: str
    source: str


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


@dataclass(frozen=True)
class StoreLocation:
    """A parsed store URL."""

    dialect: str
    target: str  # a file path, ":memory:", or a Postgres URL


def parse_store_url(url: str) -> StoreLocation:
    """`duckdb:///rel.duckdb`, `duckdb:////abs.duckdb`, a plain path, or `postgres(ql)://…`."""
    if url.startswith(("postgres://", "postgresql://")):
        return StoreLocation("postgres", url)
    if url.startswith("duckdb://"):
        rest = url.removeprefix("duckdb://")
        path = rest[1:] if rest.startswith("/") else rest
        return StoreLocation("duckdb", path or ":memory:")
    if "://" in url:
        raise StoreError(
            f"unsupported store URL {url!r}: use duckdb:///path.duckdb or postgres://…"
        )
    return StoreLocation("duckdb", url)


@dataclass
class Store:
    """One open store. Use `Store.open(url)`; close it (or use `with`) when done."""

    url: str
    backend: DuckDBBackend | PostgresBackend
    read_only: bool = False
    _ibis: Any = field(default=None, repr=False)

    @classmethod
    def open(cls, url: str, *, read_only: bool = False) -> Store:
        """Open (and create or migrate, unless read-only) the store at `url`.

        A read-only open of a store that does not exist raises EmptyStoreError.
        """
        loc = parse_store_url(url)
        backend: DuckDBBackend | PostgresBackend
        if loc.dialect == "postgres":
            backend = PostgresBackend(loc.target)
            store = cls(url, backend, read_only)
            store._migrate()
            return store
        exists = loc.target == ":memory:" or Path(loc.target).exists()
        if read_only and not exists:
            raise EmptyStoreError(
                f"no store at {loc.target}: run `heatlens demo` for a sample organisation, "
                "or `heatlens ingest FILE` to load your records"
            )
        if read_only and loc.target != ":memory:":
            backend = DuckDBBackend(loc.target, read_only=True)
            if backend.table_exists("meta") and _schema_version(backend) == SCHEMA_VERSION:
                return cls(url, backend, True)
            backend.close()  # an older schema: migrate once, then read
        backend = DuckDBBackend(loc.target)
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
        self.backend.close()

    @property
    def dialect(self) -> str:
        return self.backend.dialect

    # -- schema -------------------------------------------------------------------------------

    def _migrate(self) -> None:
        b = self.backend
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
        return _schema_version(self.backend)

    def data_version(self) -> int:
        """A number bumped by every write that changed records."""
        rows = self.backend.fetchall("SELECT value FROM meta WHERE key = 'data_version'")
        return int(rows[0][0])

    def _bump(self) -> None:
        self.backend.execute(
            "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) "
            "WHERE key = 'data_version'"
        )

    # -- reads --------------------------------------------------------------------------------

    def ibis(self) -> Any:
        """The Ibis backend reading this store (metrics build expressions on its tables)."""
        if self._ibis is None:
            self._ibis = self.backend.ibis()
        return self._ibis

    def table(self, name: str) -> Any:
        """An Ibis table of the store."""
        return self.ibis().table(name)

    def counts(self) -> dict[str, int]:
        """Number of stored records per type."""
        parts = " UNION ALL ".join(
            f"SELECT '{t.name}', count(*) FROM {q(t.table)}" for t in RECORD_TYPES
        )
        return {name: int(n) for name, n in self.backend.fetchall(parts)}

    def counts_by_source(self) -> list[tuple[str, str, int]]:
        """(type, source, records) for every type and source."""
        parts = " UNION ALL ".join(
            f"SELECT '{t.name}' AS type, source, count(*) AS n FROM {q(t.table)} GROUP BY source"
            for t in RECORD_TYPES
        )
        return [(a, b, int(c)) for a, b, c in self.backend.fetchall(parts + " ORDER BY 1, 2")]

    def last_ingested_by_source(self) -> list[tuple[str, datetime]]:
        """(source, when it last delivered a record) for every source, latest first."""
        latest = " UNION ALL ".join(
            f"SELECT source, max(ingested_at) AS last_at FROM {q(t.table)} GROUP BY source"
            for t in RECORD_TYPES
        )
        return [
            (str(source), at)
            for source, at in self.backend.fetchall(
                f"SELECT source, max(last_at) FROM ({latest}) AS s GROUP BY source "
                "ORDER BY 2 DESC, 1"
            )
        ]

    def ingest_errors(self, limit: int) -> tuple[int, list[tuple[Any, ...]]]:
        """How many refused-record problems are logged, and the latest `limit` of them as
        (at, source, location, type, field, value, message)."""
        total = int(self.backend.fetchall("SELECT count(*) FROM ingest_error")[0][0])
        rows = self.backend.fetchall(
            'SELECT "at", source, location, type, field, value, message FROM ingest_error '
            'ORDER BY "at" DESC LIMIT ?',
            [limit],
        )
        return total, rows

    def capability_ids(self) -> list[str]:
        """The registry's capabilities, or (with no registry) every capability used."""
        found = self.backend.fetchall("SELECT id FROM capability ORDER BY id") or (
            self.backend.fetchall(
                "SELECT DISTINCT capability FROM usage WHERE capability IS NOT NULL ORDER BY 1"
            )
        )
        return [str(c) for (c,) in found]

    def leaf_team_ids(self) -> list[str]:
        """Teams that no other team names as parent (teams, not groups)."""
        return [
            str(t)
            for (t,) in self.backend.fetchall(
                "SELECT id FROM team WHERE id NOT IN "
                "(SELECT parent FROM team WHERE parent IS NOT NULL) ORDER BY id"
            )
        ]

    def is_empty(self) -> bool:
        """True when no record of any type is stored."""
        return not any(self.counts().values())

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query written in SQL common to every dialect (`?` placeholders)."""
        return self.backend.fetchall(sql, params)

    # -- writes -------------------------------------------------------------------------------

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError(f"store {self.url} was opened read-only")

    def staging_connection(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection ingest stages and validates records in."""
        return self.backend.staging_connection()

    def write(self, batches: Sequence[Staged]) -> dict[str, WriteCounts]:
        """Upsert staged batches in one transaction: whole records replace records with their id.

        Returns counts per type. Nothing is written when any batch fails.
        """
        self._writable()
        totals: dict[str, WriteCounts] = {}
        staging = self.staging_connection()
        with self.backend.transaction():
            for batch in batches:
                cols = list(batch.rtype.field_names)
                stage = self.backend.adopt_stage(staging, batch.table, batch.rtype.table, cols)
                counts = self._merge(batch.rtype, stage, batch.source)
                totals.setdefault(batch.rtype.name, WriteCounts()).add(counts)
            if any(c.inserted or c.updated for c in totals.values()):
                self._bump()
        return totals

    def _merge(self, rtype: RecordType, stage: str, source: str) -> WriteCounts:
        b = self.backend
        target = q(rtype.table)
        fields = list(rtype.field_names)
        cols = ", ".join(q(c) for c in record_columns(rtype))
        values = ", ".join(f"s.{q(f)}" for f in fields)
        now = datetime.now(UTC)
        staged = int(b.fetchall(f"SELECT count(*) FROM {q(stage)}")[0][0])
        if not b.fetchall(f"SELECT 1 FROM {target} LIMIT 1"):
            b.execute(
                f"INSERT INTO {target} ({cols}) SELECT {values}, ?, ? FROM {q(stage)} s",
                [source, now],
            )
            return WriteCounts(inserted=staged)
        same = " AND ".join(f"s.{q(f)} IS NOT DISTINCT FROM t.{q(f)}" for f in fields if f != "id")
        b.execute("DROP TABLE IF EXISTS merge_status")
        b.execute(
            f"CREATE TEMP TABLE merge_status AS SELECT s.id, t.id IS NULL AS is_new, "
            f"(t.id IS NOT NULL AND NOT ({same or 'TRUE'})) AS is_changed "
            f"FROM {q(stage)} s LEFT JOIN {target} t ON t.id = s.id"
        )
        new, changed = b.fetchall(
            "SELECT count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE is_changed) "
            "FROM merge_status"
        )[0]
        if changed:
            b.execute(
                f"DELETE FROM {target} WHERE id IN (SELECT id FROM merge_status WHERE is_changed)"
            )
        if new or changed:
            b.execute(
                f"INSERT INTO {target} ({cols}) SELECT {values}, ?, ? FROM {q(stage)} s "
                f"JOIN merge_status m ON m.id = s.id WHERE m.is_new OR m.is_changed",
                [source, now],
            )
        b.execute("DROP TABLE merge_status")
        return WriteCounts(
            inserted=int(new), updated=int(changed), unchanged=staged - int(new) - int(changed)
        )

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
        with self.backend.transaction():
            n = int(
                self.backend.fetchall(f"SELECT count(*) FROM {target} WHERE {where}", params)[0][0]
            )
            if n:
                self.backend.execute(f"DELETE FROM {target} WHERE {where}", params)
                self._bump()
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
        b = self.backend
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
                self._bump()
            self._audit("erase_actor", {"actors": len(actors), "records": counts})
        return counts

    def _audit(self, action: str, detail: dict[str, Any]) -> None:
        self.backend.execute(
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
        with self.backend.transaction():
            for row in rows:
                self.backend.execute("INSERT INTO ingest_error VALUES (?, ?, ?, ?, ?, ?, ?)", row)


def _schema_version(backend: DuckDBBackend | PostgresBackend) -> int:
    rows = backend.fetchall("SELECT value FROM meta WHERE key = 'schema_version'")
    return int(rows[0][0]) if rows else 0
