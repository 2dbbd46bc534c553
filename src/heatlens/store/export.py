"""Parquet exports of a store, and the engines that read them (issue 20).

`export_parquet(store, DIR)` writes every record type as Parquet, one directory per type,
partitioned by the month (UTC) of its main timestamp (`RecordType.at`; `month=none` holds records
without one and the empty file of a type with no records; types not placed in time are one
unpartitioned file), plus `manifest.json`: the store's data and schema versions, each type's
records and span. It writes to a temporary directory beside DIR and renames it into place, so a
reader sees the old export or the new one, never half of one.

`ExportTables(DIR, engine)` gives an export's tables as Ibis tables (the metrics' `Tables`) on
DuckDB or on PySpark (`master`: `local[2]`, or a cluster's URL), plus the `spans()` and
`count_between()` that report coverage asks of a store.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from heatlens.errors import ConfigError, StoreError
from heatlens.model import BY_NAME, RECORD_TYPES, RecordType
from heatlens.store.schema import SCHEMA_VERSION

FORMAT = "heatlens.export/v1"
MANIFEST = "manifest.json"
NO_MONTH = "none"
BATCH_ROWS = 500_000
ENGINES = ("duckdb", "pyspark")
SPARK_EXTRA = "pip install 'heatlens[spark]'"

# (type name, records written so far, records of the type)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ExportSpan:
    """The records of one type in time (the store's `Span`, read from a manifest)."""

    records: int
    first: datetime
    last: datetime


def is_export(path: Path) -> bool:
    """Whether `path` is a directory holding a heatlens export's manifest."""
    try:
        doc = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == FORMAT


def export_parquet(store: Any, target: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Write the store's records under `target` (replacing an earlier export there); give the
    manifest written."""
    target = Path(target)
    replaceable = not target.exists() or is_export(target)
    if not replaceable and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(
            f"{target} exists and is not a heatlens export: give a new or empty directory "
            "(an earlier export there is replaced)"
        )
    parent = target.absolute().parent
    if not parent.is_dir():
        raise ConfigError(f"{target}: its directory {parent} does not exist (create it first)")
    tmp = parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        counts = store.counts()
        types: dict[str, Any] = {}
        for rtype in RECORD_TYPES:
            types[rtype.name] = _write_type(store, rtype, tmp, counts[rtype.name], progress)
        manifest = {
            "format": FORMAT,
            "schema_version": store.schema_version(),
            "data_version": store.data_version(),
            "exported_at": datetime.now(UTC).isoformat(),
            "types": types,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _swap(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _swap(tmp: Path, target: Path) -> None:
    """Put `tmp` at `target`: renames only (an earlier export is moved aside, then removed)."""
    if not target.exists():
        tmp.rename(target)
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _write_type(
    store: Any, rtype: RecordType, root: Path, total: int, progress: Progress | None
) -> dict[str, Any]:
    out = root / rtype.table
    out.mkdir()
    table = store.table(rtype.table)
    done, first, last = 0, None, None
    months: set[str] = set()
    if rtype.at is None:
        data = table.to_pyarrow()
        pq.write_table(data, out / "part-0.parquet")
        done = data.num_rows
        if progress:
            progress(rtype.name, done, total)
        return {"records": done, "partitioned_by": None}
    # one Arrow table (Ibis's batch reader on DuckDB warns, which the suite treats as an
    # error), written in slices for progress
    whole = table.to_pyarrow()
    schema = whole.schema
    for i, batch in enumerate(whole.to_batches(max_chunksize=BATCH_ROWS)):
        data = pa.Table.from_batches([batch], schema=schema)
        if data.num_rows == 0:
            continue
        at = data.column(rtype.at)
        month = pc.fill_null(pc.strftime(at, format="%Y-%m"), NO_MONTH)
        months |= set(pc.unique(month).to_pylist())
        lo, hi = pc.min(at).as_py(), pc.max(at).as_py()
        first = lo if first is None or (lo is not None and lo < first) else first
        last = hi if last is None or (hi is not None and hi > last) else last
        ds.write_dataset(
            data.append_column("month", month),
            out,
            format="parquet",
            partitioning=ds.partitioning(pa.schema([("month", pa.string())]), flavor="hive"),
            basename_template=f"part-{i}-{{i}}.parquet",
            existing_data_behavior="overwrite_or_ignore",
        )
        done += data.num_rows
        if progress:
            progress(rtype.name, done, total)
    if done == 0:
        # an empty type still has its columns: one empty file (engines need a schema)
        empty = schema.empty_table()
        (out / f"month={NO_MONTH}").mkdir()
        pq.write_table(empty, out / f"month={NO_MONTH}" / "part-0.parquet")
        months.add(NO_MONTH)
        if progress:
            progress(rtype.name, 0, total)
    return {
        "records": done,
        "partitioned_by": f"month of {rtype.at} (UTC)",
        "months": sorted(months),
        "first": first.isoformat() if first is not None else None,
        "last": last.isoformat() if last is not None else None,
    }


def read_manifest(path: Path) -> dict[str, Any]:
    """An export's manifest, or a StoreError saying what is wrong with `path`."""
    path = Path(path)
    if not path.is_dir():
        raise StoreError(
            f"no export at {path}: make one with `heatlens export --format parquet {path}`"
        )
    if not is_export(path):
        raise StoreError(
            f"{path} is not a heatlens export (no {MANIFEST}): make one with "
            f"`heatlens export --format parquet {path}`"
        )
    doc: dict[str, Any] = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise StoreError(
            f"export {path} has schema version {doc.get('schema_version')}, this heatlens reads "
            f"{SCHEMA_VERSION}: export the store again with this version"
        )
    return doc


class ExportTables:
    """An export's tables as Ibis tables on DuckDB or PySpark (the metrics' `Tables`)."""

    def __init__(self, path: Path, engine: str = "duckdb", master: str | None = None) -> None:
        if engine not in ENGINES:
            raise ConfigError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}")
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.engine = engine
        self._tables: dict[str, Any] = {}
        self._persisted: list[Any] = []
        if engine == "duckdb":
            import ibis

            self.con = ibis.duckdb.connect()
            self.con.raw_sql("SET TimeZone = 'UTC'")
        else:
            self.con = spark_backend(master)
        # Spark re-plans every query from the sources: the metrics' intermediate tables are
        # materialised at any size there (heatlens.metrics.frame.Frame.load reads this)
        self.materialise = engine == "pyspark"

    def data_version(self) -> int:
        """The exported store's data version (caches key on it, as on a store's)."""
        return int(self.manifest["data_version"])

    def schema_version(self) -> int:
        return int(self.manifest["schema_version"])

    def table(self, name: str) -> Any:
        if name not in self._tables:
            rtype = BY_NAME[name]
            where = self.path / rtype.table
            if self.engine == "duckdb":
                files = str(where / ("**/*.parquet" if rtype.at else "*.parquet"))
                t = self.con.read_parquet(files, hive_partitioning=rtype.at is not None)
            else:
                session = self.con._session
                df = session.read.option("basePath", str(where)).parquet(str(where))
                if rtype.at is not None:
                    df = df.drop("month")
                view = f"heatlens_{rtype.table}"
                df.createOrReplaceTempView(view)
                t = self.con.table(view)
            if "month" in t.columns and "month" not in rtype.field_names:
                t = t.drop("month")
            self._tables[name] = t
        return self._tables[name]

    # -- what report coverage asks of a store -------------------------------------------------

    def spans(self) -> dict[str, ExportSpan]:
        out = {}
        for name, doc in self.manifest["types"].items():
            if doc.get("records") and doc.get("first"):
                out[name] = ExportSpan(
                    int(doc["records"]),
                    datetime.fromisoformat(doc["first"]),
                    datetime.fromisoformat(doc["last"]),
                )
        return out

    def count_between(self, type_name: str, start: datetime, end: datetime) -> int:
        import ibis
        import ibis.expr.datatypes as dt

        rtype = BY_NAME[type_name]
        if rtype.at is None:
            raise ValueError(f"{type_name} records are not placed in time")
        t = self.table(type_name)
        lo = ibis.literal(start, type=dt.Timestamp(timezone="UTC"))
        hi = ibis.literal(end, type=dt.Timestamp(timezone="UTC"))
        return int(t.filter((t[rtype.at] >= lo) & (t[rtype.at] < hi)).count().to_pyarrow().as_py())

    def is_empty(self) -> bool:
        return not any(doc.get("records") for doc in self.manifest["types"].values())

    def close(self) -> None:
        self._tables.clear()
        if self.engine == "duckdb":
            self.con.disconnect()
        # a Spark session is shared by the process (and its tests): it stays up

    def __enter__(self) -> ExportTables:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def spark_session(master: str | None = None) -> Any:
    """The process's Spark session (created on first use): `master` defaults to `local[2]`."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError(f"--engine pyspark needs PySpark: {SPARK_EXTRA}") from None
    if not _java_found():
        raise ConfigError(
            "--engine pyspark needs Java 17: install a JRE (Debian: apt-get install "
            "openjdk-17-jre-headless) or set JAVA_HOME"
        )
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = (
        SparkSession.builder.appName("heatlens")
        .master(master or "local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
    )
    if (master or "local").startswith("local"):
        # one machine's cores: few partitions per shuffle (the default 200 are 200 tasks)
        builder = builder.config("spark.sql.shuffle.partitions", "2")
    try:
        session = builder.getOrCreate()
    except Exception as exc:
        where = master or "local[2]"
        raise ConfigError(f"cannot start Spark ({where}): {str(exc).splitlines()[0]}") from None
    session.sparkContext.setLogLevel("ERROR")
    return session


def spark_backend(master: str | None = None) -> Any:
    """An Ibis PySpark backend on the process's Spark session."""
    session = spark_session(master)
    import warnings

    import ibis

    # pyspark 4.0's toPandas uses what pandas 3 deprecates (`copy=`, `future.infer_string`):
    # warnings about pyspark's code, noise for our users
    from pandas.errors import Pandas4Warning

    warnings.filterwarnings("ignore", category=Pandas4Warning)

    ibis.pyspark  # noqa: B018 -- registers the backend's options before the class is used
    from ibis.backends.pyspark import Backend

    class _Backend(Backend):
        """Ibis 12's PySpark `cache()` compiles before registering the in-memory tables the
        expression reads (TABLE_OR_VIEW_NOT_FOUND); register them first."""

        def _create_cached_table(self, name: str, expr: Any) -> Any:
            self._run_pre_execute_hooks(expr)
            return super()._create_cached_table(name, expr)

        # Spark's TIMESTAMP is an instant (shown in the session's zone, UTC here) that Ibis
        # types without a zone, so values came back to Python naive where a store's are
        # UTC-aware (ENGINE_NOTES): type them as UTC, for source and cached tables alike.
        def get_schema(self, *args: Any, **kwargs: Any) -> Any:
            return _utc_schema(super().get_schema(*args, **kwargs))

        def _get_schema_using_query(self, query: str) -> Any:
            return _utc_schema(super()._get_schema_using_query(query))

    return _Backend().connect(session)


def _utc_schema(schema: Any) -> Any:
    import ibis.expr.datatypes as dt
    import ibis.expr.schema as sch

    return sch.Schema(
        {
            name: dt.Timestamp(timezone="UTC", nullable=ty.nullable)
            if ty.is_timestamp() and ty.timezone is None
            else ty
            for name, ty in schema.items()
        }
    )


def _java_found() -> bool:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return True
    return shutil.which("java") is not None
