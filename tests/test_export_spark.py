"""`heatlens export --format parquet` and reports on an export (issue 20): the layout and manifest,
atomic replacement, and the whole catalog computed by PySpark (local[2]) equal to DuckDB's rows —
counts and rates exactly, exact quantiles within 1e-9.

The Spark tests share one session (started once, ~10 s); they skip when Java or PySpark is absent on
a laptop and fail under CI=true (tests.conftest.need).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from heatlens.errors import ConfigError
from heatlens.ingest import ingest_records
from heatlens.metrics import Request, compute
from heatlens.metrics.catalog import CATALOG
from heatlens.settings import load_settings
from heatlens.store import Store
from heatlens.store.export import ExportTables, export_parquet
from tests.conftest import Cli, need, record
from tests.metrics_data import organisation

JAVA_17 = "/usr/lib/jvm/java-17-openjdk-amd64"
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def _java() -> bool:
    if not os.environ.get("JAVA_HOME") and Path(JAVA_17, "bin", "java").exists():
        os.environ["JAVA_HOME"] = JAVA_17
    home = os.environ.get("JAVA_HOME")
    return bool(home and Path(home, "bin", "java").exists()) or shutil.which("java") is not None


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The one Spark session of the test run (local[2])."""
    need("Java (a JRE 17)", _java())
    need("PySpark (pip install 'heatlens[spark]')", importlib.util.find_spec("pyspark") is not None)
    from heatlens.store.export import spark_session

    # not stopped at the end: its JVM ends with the test process (stopping it leaves py4j's
    # sockets to the collector, warnings in whichever test runs last)
    yield spark_session("local[2]")


SMALL = [
    record("team", id="t1"),
    record("usage", id="u1", ts="2026-01-31T23:30:00Z", capability="ci", actor="ana"),
    record("usage", id="u2", ts="2026-02-01T00:30:00Z", capability="ci", actor="bo"),
    record("usage", id="u3", ts="2026-02-10T12:00:00Z", capability="docs", actor="ana"),
]


def _filled(path: Path) -> Store:
    store = Store.open(str(path))
    ingest_records(store, SMALL, load_settings(environ={}), source="test")
    return store


def test_export_is_parquet_by_type_and_month_with_a_manifest(tmp_path: Path) -> None:
    with _filled(tmp_path / "s.duckdb") as store:
        manifest = export_parquet(store, tmp_path / "out")
        version, schema = store.data_version(), store.schema_version()
    out = tmp_path / "out"
    doc = json.loads((out / "manifest.json").read_text())
    assert doc == manifest
    assert (doc["data_version"], doc["schema_version"]) == (version, schema)
    assert doc["types"]["usage"]["records"] == 3
    assert doc["types"]["usage"]["months"] == ["2026-01", "2026-02"]
    # months of the main timestamp in UTC: u1 (23:30 on 31 January) is January's
    jan = pq.read_table(out / "usage" / "month=2026-01").column("id").to_pylist()
    feb = pq.read_table(out / "usage" / "month=2026-02").column("id").to_pylist()
    assert (sorted(jan), sorted(feb)) == (["u1"], ["u2", "u3"])
    # a type without a timestamp is one file; an empty timed type still has its columns
    assert pq.read_table(out / "team" / "part-0.parquet").column("id").to_pylist() == ["t1"]
    empty = pq.read_table(out / "deployment" / "month=none")
    assert empty.num_rows == 0 and "finished_at" in empty.column_names
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_export_replaces_an_earlier_export_and_refuses_anything_else(tmp_path: Path) -> None:
    with _filled(tmp_path / "s.duckdb") as store:
        export_parquet(store, tmp_path / "out")
        ingest_records(
            store,
            [record("usage", id="u4", ts="2026-03-01T00:00:00Z", capability="ci")],
            load_settings(environ={}),
            source="test",
        )
        again = export_parquet(store, tmp_path / "out")
        assert again["types"]["usage"]["records"] == 4
        assert again["data_version"] == store.data_version()
        other = tmp_path / "mine"
        other.mkdir()
        (other / "notes.txt").write_text("keep me")
        with pytest.raises(ConfigError, match="exists and is not a heatlens export"):
            export_parquet(store, other)
    assert (other / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "out", "s.duckdb"]


def test_cli_export_then_report_from_it_gives_the_store_s_rows(run: Cli, tmp_path: Path) -> None:
    _filled(tmp_path / "heatlens.duckdb").close()
    done = run("export", "--format", "parquet", "out")
    assert done.exit_code == 0, done.output
    assert "exported 4 records (parquet) to out" in done.output
    args = ["report", "--format", "json", "--from", "2026-01-26", "--to", "2026-02-16"]
    stored = json.loads(run(*args).output)
    exported = run(*args, "--from-export", "out")
    assert exported.exit_code == 0
    assert "computed by duckdb on export out (data version" in exported.stderr
    doc = json.loads(exported.stdout)
    assert doc["rows"] == stored["rows"]
    active = {
        r["period"]: r["value"] for r in doc["rows"] if r["metric"] == "adoption.active_users"
    }
    # ana on 31 January; bo and ana in the week of 9 February (u2 on 1 February is a Sunday)
    assert active == {"2026-01-26": 2, "2026-02-02": 0, "2026-02-09": 1}


def test_cli_engine_pyspark_needs_an_export(run: Cli, tmp_path: Path) -> None:
    done = run("report", "--engine", "pyspark")
    assert done.exit_code == 2
    assert "--engine pyspark computes on an export: add --from-export DIR" in done.output
    missing = run("report", "--from-export", "nowhere")
    assert missing.exit_code == 2
    assert "no export at nowhere: make one with `heatlens export --format parquet" in (
        missing.output
    )
    _filled(tmp_path / "heatlens.duckdb").close()
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    refused = run("export", "x")
    assert refused.exit_code == 2 and "x exists and is not a heatlens export" in refused.output


# -- the whole catalog on PySpark against DuckDB ----------------------------------------------


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["metric"], row["period"], json.dumps(row["segment"], sort_keys=True))


def _same(metric: str, a: Any, b: Any) -> bool:
    if CATALOG[metric].aggregate == "quantile" and a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b and type(a) is type(b)


@pytest.mark.slow
# pyspark 4.0.5's toPandas uses what pandas 3 deprecates (harmless; heatlens hides it)
@pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")
# py4j leaves its gateway sockets to the garbage collector (ResourceWarning)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_pyspark_computes_the_whole_catalog_as_duckdb_does(spark: Any, tmp_path: Path) -> None:
    """Reference-sized random organisation (tests.metrics_data, three times the records of the
    reference comparisons), every metric by team, weeks in Europe/Berlin (daylight saving)."""
    s = load_settings(environ={}, overrides={"timezone": "Europe/Berlin"})
    request = Request("week", date(2026, 1, 5), date(2026, 3, 16), ("team",), (), now=NOW)
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        ingest_records(store, organisation(random.Random(7), 3), s, source="test")
        want = compute(store, request, s).to_json()
        export_parquet(store, tmp_path / "out")
    with ExportTables(tmp_path / "out", "pyspark") as tables:
        got = compute(tables, request, s).to_json()
    w, g = {_key(r): r for r in want["rows"]}, {_key(r): r for r in got["rows"]}
    assert sorted(g) == sorted(w)
    # every metric has rows but three this organisation has nothing for (no likert question,
    # no service created in the range)
    quiet = {"happiness.likert_mean", "happiness.likert_median", "efficiency.time_to_first_deploy"}
    assert {k[0] for k in w} == set(CATALOG) - quiet
    for key, row in w.items():
        other = g[key]
        for field in ("value", "n"):
            assert _same(key[0], row[field], other[field]), (key, field, row, other)
        for field in ("ci", "suppressed", "tier", "complete", "x", "d", "k"):
            assert row.get(field) == other.get(field), (key, field)
    assert got["warnings"] == want["warnings"]


def test_without_pyspark_or_java_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sys

    from heatlens.store.export import spark_session

    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    with pytest.raises(ConfigError, match=r"pip install 'heatlens\[spark\]'"):
        spark_session()
    monkeypatch.delitem(sys.modules, "pyspark.sql")
    if importlib.util.find_spec("pyspark") is None:
        return
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="needs Java 17: install a JRE"):
        spark_session()
