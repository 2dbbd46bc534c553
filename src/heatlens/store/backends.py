"""Connections to the SQL engines a store can live in. Only `heatlens.store` uses this module.

A backend runs SQL written with `?` placeholders, runs transactions, and can take a table staged in
a DuckDB connection (ingest validates there) as a temporary table of its own.
"""

from __future__ import annotations

import re
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from heatlens.errors import StoreError, StoreLockedError
from heatlens.store.schema import q

_LOCK = re.compile(r"Conflicting lock is held in (?P<prog>.+?) \(PID (?P<pid>\d+)\)")

# how many times any connection of this process wrote the data versions of each database
# (DuckDBBackend.database), counted when the write is made and again when its transaction ends:
# DuckDB lets one process write a file, so a connection's `kept` versions, read or written by
# a transaction during which no other connection counted one, are still the stored ones while
# the count has not moved since that transaction committed
_VERSION_WRITES: Counter[str] = Counter()
_COUNTING = threading.Lock()  # (connections write in several threads)

# statements a connection keeps parsed (DuckDBBackend._parsed): the writer's are a dozen or so;
# reports' are new text each time, and clear the kept ones when they reach this many
PARSED_KEPT = 256


def _count_version_write(database: str) -> int:
    with _COUNTING:
        _VERSION_WRITES[database] += 1
        return _VERSION_WRITES[database]


class DuckDBBackend:
    """An embedded DuckDB database file (or `:memory:`)."""

    dialect = "duckdb"

    def __init__(
        self, path: str, *, read_only: bool = False, memory_limit: int | None = None
    ) -> None:
        self.path = path
        self.kept = {}
        self._statements: dict[str, duckdb.Statement] = {}  # see `_parsed`
        # which database this connection is to, in this process (one per file; each
        # connection to ':memory:' has its own)
        self.database = f":memory:{id(self)}" if path == ":memory:" else str(Path(path).resolve())
        if path != ":memory:" and Path(path).is_dir():
            raise StoreError(
                f"store {path} is a directory, not a DuckDB file: give a file path such as "
                f"--store {Path(path) / 'heatlens.duckdb'}"
            )
        if path != ":memory:" and not Path(path).parent.is_dir():
            raise StoreError(
                f"store {path}: its directory {Path(path).parent} does not exist "
                "(create it, or give another --store)"
            )
        try:
            self.con = duckdb.connect(path, read_only=read_only)
        except duckdb.IOException as exc:
            match = _LOCK.search(str(exc))
            if match:
                prog = Path(match["prog"]).name
                raise StoreLockedError(
                    f"store {path} is in use by another process (PID {match['pid']}, {prog}); "
                    "if that is `heatlens serve`, send this command through it with "
                    "--server URL (or HEATLENS_SERVER), otherwise stop that process"
                ) from None
            raise StoreError(f"cannot open store {path}: {exc}") from None
        except duckdb.Error as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from None
        # Bucketing and timestamp parsing must never depend on the session's zone.
        self.con.execute("SET TimeZone = 'UTC'")
        if memory_limit is not None:
            _limit_memory(self.con, memory_limit, in_memory=path == ":memory:")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.con.execute(self._parsed(sql), list(params))

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.con.execute(self._parsed(sql), list(params)).fetchall()

    def _parsed(self, sql: str) -> duckdb.Statement | str:
        """`sql` parsed once per connection: DuckDB parses a statement given as text every time
        it runs, a fifth of a small write's cost (the writer's statements repeat with new
        parameters: docs/performance.md, "Ninth round"). Text of several statements is left
        as it is; the kept ones are forgotten all at once when they reach PARSED_KEPT."""
        found = self._statements.get(sql)
        if found is None:
            statements = self.con.extract_statements(sql)
            if len(statements) != 1:
                return sql
            if len(self._statements) >= PARSED_KEPT:
                self._statements.clear()
            found = self._statements[sql] = statements[0]
        return found

    _depth = 0  # transactions open: an inner one joins the outer (DuckDB does not nest them)
    rollbacks = 0  # transactions rolled back (or whose commit failed) on this connection
    # the data versions (meta key → value) this connection read or wrote in a transaction; they
    # stay kept for its next transactions while no connection of the process wrote versions
    # since its last one committed (`_kept_at`), and are emptied when one rolls back
    kept: dict[str, Any]
    _kept_at: int | None = None  # _VERSION_WRITES when the transaction keeping them committed
    _began_at = 0  # _VERSION_WRITES when the open transaction began, plus its own counts
    _wrote_versions = False  # the open transaction wrote data versions

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def versions_written(self) -> None:
        """The data versions were written (Store._bump): other connections' `kept` ones are
        no longer current."""
        _count_version_write(self.database)
        self._began_at += 1
        self._wrote_versions = self._depth > 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            # joined: a failure raises through the outer transaction, which rolls it all back
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.con.begin()
        self._depth = 1
        self._began_at = _VERSION_WRITES[self.database]
        if self._kept_at != self._began_at:
            self.kept = {}
        try:
            yield
        except BaseException:
            self._ended(committed=False)
            self.con.rollback()
            raise
        try:
            self.con.commit()
        except BaseException:
            self._ended(committed=False)
            raise
        self._ended(committed=True)

    def _ended(self, *, committed: bool) -> None:
        self._depth = 0
        now = _VERSION_WRITES[self.database]
        if self._wrote_versions:  # what others kept while it was open may be older now
            now = _count_version_write(self.database)
            self._began_at += 1
            self._wrote_versions = False
        if committed and now == self._began_at:  # no other connection wrote versions meanwhile
            self._kept_at = now
        else:
            self.kept, self._kept_at = {}, None
        if not committed:
            self.rollbacks += 1

    def table_exists(self, name: str) -> bool:
        rows = self.fetchall(
            "SELECT 1 FROM information_schema.tables WHERE table_name = ? "
            "AND table_schema = 'main' AND table_catalog = current_database()",
            [name],
        )
        return bool(rows)

    def staging_connection(self) -> duckdb.DuckDBPyConnection:
        """Ingest stages records in the store's own connection: no copy is needed."""
        return self.con

    def adopt_stage(
        self, staging: duckdb.DuckDBPyConnection, table: str, like: str, columns: list[str]
    ) -> str:
        """Name under which this backend sees a staged table (here: the same table)."""
        assert staging is self.con
        return table

    def ibis(self) -> Any:
        import ibis

        return ibis.duckdb.from_connection(self.con)

    def close(self) -> None:
        self.con.close()


class PostgresBackend:
    """A PostgreSQL database: the store for several server replicas."""

    dialect = "postgres"

    def __init__(self, url: str, *, memory_limit: int | None = None) -> None:
        import psycopg

        self.url = url
        self.memory_limit = memory_limit  # of the DuckDB that stages ingest
        try:
            self.con = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to Postgres store {_redact(url)}: {exc}") from None
        self.con.execute("SET TIME ZONE 'UTC'")
        self._scratch: duckdb.DuckDBPyConnection | None = None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.con.execute(_pg(sql), list(params))

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.con.execute(_pg(sql), list(params)).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.con.transaction():
            yield

    def table_exists(self, name: str) -> bool:
        rows = self.fetchall("SELECT to_regclass(?) IS NOT NULL", [f"public.{q(name)}"])
        return bool(rows[0][0])

    def staging_connection(self) -> duckdb.DuckDBPyConnection:
        """Ingest validates in a private in-memory DuckDB; `adopt_stage` copies the result over."""
        if self._scratch is None:
            self._scratch = duckdb.connect(":memory:")
            self._scratch.execute("SET TimeZone = 'UTC'")
            if self.memory_limit is not None:
                _limit_memory(self._scratch, self.memory_limit, in_memory=True)
        return self._scratch

    def adopt_stage(
        self, staging: duckdb.DuckDBPyConnection, table: str, like: str, columns: list[str]
    ) -> str:
        """Copy a staged DuckDB table into a Postgres temporary table (`like`'s columns) by COPY."""
        types = dict(
            staging.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = ?",
                [table],
            ).fetchall()
        )
        exprs = [_pg_text(c, types[c]) for c in columns]
        like_cols = {
            str(r[0])
            for r in self.fetchall(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name = ?",
                [like],
            )
        }
        pg_table = f"pg_{table}"
        self.con.execute(f"DROP TABLE IF EXISTS {q(pg_table)}")
        # the record table's columns, and any column of the stage that it lacks (`__part`)
        extra = "".join(f", CAST(NULL AS BIGINT) AS {q(c)}" for c in columns if c not in like_cols)
        self.con.execute(
            f"CREATE TEMP TABLE {q(pg_table)} AS SELECT *{extra} FROM {q(like)} WITH NO DATA"
        )
        with tempfile.NamedTemporaryFile(suffix=".csv") as tmp:
            staging.execute(
                f"COPY (SELECT {', '.join(exprs)} FROM {q(table)}) TO '{tmp.name}' "
                "(FORMAT csv, HEADER false, NULLSTR '\\N')"
            )
            cols = ", ".join(q(c) for c in columns)
            with (
                self.con.cursor().copy(
                    f"COPY {q(pg_table)} ({cols}) FROM STDIN (FORMAT csv, NULL '\\N')"
                ) as copy,
                open(tmp.name, "rb") as fh,
            ):
                while chunk := fh.read(1 << 20):
                    copy.write(chunk)
        return pg_table

    def ibis(self) -> Any:
        import ibis

        # a second connection: Ibis sets its own session options on the one it owns
        return ibis.connect("postgres://" + self.url.split("://", 1)[1])

    def close(self) -> None:
        self.con.close()
        if self._scratch is not None:
            self._scratch.close()


def _limit_memory(con: duckdb.DuckDBPyConnection, limit: int, *, in_memory: bool) -> None:
    """Set DuckDB's memory_limit (bytes) — a setting of the database, not of the connection:
    every connection of this process to the same file shares it, and the last one set holds.

    Beyond it DuckDB spills to its temp_directory: `<store>.tmp` next to a file store. An
    in-memory database would spill to `.tmp` in the working directory; it gets a directory of
    its own under the system's temp directory instead (DuckDB creates it when it first spills
    and removes it when the database closes).
    """
    con.execute(f"SET memory_limit = '{int(limit)} bytes'")
    if in_memory:
        where = Path(tempfile.gettempdir()) / f"heatlens-duckdb-{uuid.uuid4().hex}"
        con.execute(f"SET temp_directory = '{str(where).replace(chr(39), chr(39) * 2)}'")


def _pg(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


def _pg_text(column: str, duck_type: str) -> str:
    """A DuckDB expression rendering a column as Postgres reads it from CSV."""
    if duck_type.endswith("[]"):
        quoted = (
            f"list_transform({q(column)}, x -> '\"' || replace(replace(x, '\\', '\\\\'), "
            f"'\"', '\\\"') || '\"')"
        )
        return (
            f"CASE WHEN {q(column)} IS NULL THEN NULL ELSE '{{' || "
            f"array_to_string({quoted}, ',') || '}}' END"
        )
    if duck_type.startswith("TIMESTAMP"):
        return f"strftime({q(column)}, '%Y-%m-%d %H:%M:%S.%f+00')"
    return q(column)


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
