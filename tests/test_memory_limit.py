"""`duckdb.memory_limit`: how much memory DuckDB may use for the store (issue 18).

Every expected limit here is computed by hand: sizes from their units, shares from the RAM that
/proc/meminfo (and the cgroup, when it limits less) reports. DuckDB prints its limit rounded
(`3.0 GiB`), so a computed number of bytes is compared through DuckDB's own rendering of it on a
plain connection.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import pytest

from heatlens.application import LocalApplication
from heatlens.settings import load_settings
from heatlens.store import Store
from heatlens.web.service import Service
from tests.conftest import Cli

MEMORY_LIMIT = "SELECT current_setting('memory_limit')"


def limit_of(store: Store) -> str:
    """DuckDB's memory_limit as the store's own connection reads it."""
    return str(store.staging_connection().execute(MEMORY_LIMIT).fetchone()[0])  # type: ignore[index]


def rendered(limit: int) -> str:
    """How DuckDB prints a limit of `limit` bytes (it rounds to 0.1 of its unit)."""
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET memory_limit = '{limit} bytes'")
        return str(con.execute(MEMORY_LIMIT).fetchone()[0])  # type: ignore[index]
    finally:
        con.close()


def ram_by_hand() -> int:
    """The machine's RAM from /proc/meminfo, or the cgroup's memory limit when lower."""
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        pytest.skip("no /proc/meminfo to check the share of RAM against")
    line = next(x for x in meminfo.read_text().splitlines() if x.startswith("MemTotal:"))
    total = int(line.split()[1]) * 1024  # kB
    for cgroup in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        text = Path(cgroup).read_text().strip() if Path(cgroup).exists() else "max"
        if text != "max":
            total = min(total, int(text))
    return total


def app_for(store: Path, limit: str | None) -> LocalApplication:
    environ = {"HEATLENS_STORE": str(store)}
    if limit is not None:
        environ["HEATLENS_DUCKDB_MEMORY_LIMIT"] = limit
    return LocalApplication(load_settings(config=None, environ=environ))


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("3GiB", "3.0 GiB"),  # 3 × 1024³ bytes
        ("512MB", "488.2 MiB"),  # 512 × 1000² bytes = 488.28 MiB
        ("2 GB", "1.8 GiB"),  # 2 × 1000³ bytes = 1.86 GiB
    ],
)
def test_a_size_is_the_limit_of_reads_and_writes(tmp_path: Path, given: str, shown: str) -> None:
    with app_for(tmp_path / "s.duckdb", given) as app:
        assert app.access.write(limit_of) == shown  # the read-write open creates the store
    with app_for(tmp_path / "s.duckdb", given) as app:
        assert app.read(limit_of) == shown  # a read-only open of the file


def test_a_share_is_of_the_machines_ram(tmp_path: Path) -> None:
    quarter = ram_by_hand() * 25 // 100
    settings = load_settings(config=None, environ={"HEATLENS_DUCKDB_MEMORY_LIMIT": "25%"})
    assert settings.duckdb_memory_bytes == quarter
    with app_for(tmp_path / "s.duckdb", "25%") as app:
        assert app.access.write(limit_of) == rendered(quarter)


def test_the_default_is_half_the_ram_not_duckdbs_four_fifths(tmp_path: Path) -> None:
    half = ram_by_hand() // 2
    assert load_settings(config=None, environ={}).duckdb_memory_limit == "50%"
    with app_for(tmp_path / "s.duckdb", None) as app:
        assert app.access.write(limit_of) == rendered(half)
    assert rendered(half) != rendered(ram_by_hand() * 80 // 100)  # DuckDB's own default


def test_every_connection_of_the_server_has_the_limit(tmp_path: Path) -> None:
    settings = load_settings(
        config=None,
        environ={
            "HEATLENS_STORE": str(tmp_path / "s.duckdb"),
            "HEATLENS_DUCKDB_MEMORY_LIMIT": "1GiB",
            "HEATLENS_SERVER_READ_CONNECTIONS": "2",
        },
    )
    service = Service(settings, settings.store)
    service.open()
    try:
        assert limit_of(service.store) == "1.0 GiB"
        assert service.read(limit_of) == "1.0 GiB"
        assert service.write(limit_of) == "1.0 GiB"
    finally:
        service.close()


def test_an_in_memory_store_spills_to_a_directory_of_its_own() -> None:
    """A `:memory:` store would spill to `.tmp` in the working directory; it spills under the
    system's temp directory instead, and DuckDB removes that when the store closes."""
    with Store.open("duckdb://", memory_limit=128 * 1024**2) as store:
        con = store.staging_connection()
        where = Path(str(con.execute("SELECT current_setting('temp_directory')").fetchone()[0]))  # type: ignore[index]
        assert where.parent == Path(tempfile.gettempdir())
        # 3 M rows of 32-character strings: ~150 MB, more than the 128 MiB limit holds
        con.execute("CREATE TABLE t AS SELECT i, md5(i::VARCHAR) AS s FROM range(3000000) r(i)")
        assert con.execute("SELECT count(DISTINCT s) FROM t").fetchone() == (3_000_000,)
        assert where.is_dir() and any(where.iterdir())  # it spilled there
        assert limit_of(store) == "128.0 MiB"
    assert not where.exists()


@pytest.mark.postgres
def test_postgres_ingest_stages_in_a_limited_duckdb(postgres_url: str) -> None:
    with Store.open(postgres_url, memory_limit=3 * 1024**3) as store:
        assert limit_of(store) == "3.0 GiB"


NOT_A_SIZE = "is not a memory size such as '8GB', '512MB', '8GiB' or a share of RAM such as '50%'"
EVENTS = [
    {"type": "team", "id": "payments"},
    {"type": "usage", "id": "u1", "ts": "2026-03-02T10:00:00Z", "capability": "ci", "actor": "a"},
]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lots", f"'lots' {NOT_A_SIZE}"),
        ("8", f"'8' {NOT_A_SIZE}"),
        ("80 percent", f"'80 percent' {NOT_A_SIZE}"),
        ("0%", "'0%': a share of RAM must be above 0% and at most 100%"),
        ("150%", "'150%': a share of RAM must be above 0% and at most 100%"),
        ("1MB", "'1MB' is 1,000,000 bytes: give at least 128MiB"),
    ],
)
def test_a_bad_value_is_one_line_and_nothing_is_created(run: Cli, value: str, message: str) -> None:
    (run.cwd / "events.ndjson").write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    (run.cwd / "heatlens.toml").write_text(f'[duckdb]\nmemory_limit = "{value}"\n')
    result = run("--store", "s.duckdb", "ingest", "events.ndjson")
    assert result.exit_code == 2
    assert result.stderr == f"error: config file heatlens.toml: duckdb.memory_limit: {message}\n"
    assert sorted(p.name for p in run.cwd.iterdir()) == ["events.ndjson", "heatlens.toml"]


def test_a_bad_value_leaves_a_store_as_it_was(run: Cli) -> None:
    (run.cwd / "events.ndjson").write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    assert run("--store", "s.duckdb", "ingest", "events.ndjson").exit_code == 0
    before = (run.cwd / "s.duckdb").read_bytes()
    more = {"type": "usage", "id": "u2", "ts": "2026-03-03T10:00:00Z", "capability": "ci"}
    (run.cwd / "more.ndjson").write_text(json.dumps(more) + "\n")
    (run.cwd / "heatlens.toml").write_text('duckdb.memory_limit = "lots"\n')
    result = run("--store", "s.duckdb", "ingest", "more.ndjson")
    assert result.exit_code == 2 and "duckdb.memory_limit: 'lots'" in result.stderr
    assert (run.cwd / "s.duckdb").read_bytes() == before
    assert not (run.cwd / "s.duckdb.wal").exists()
    with Store.open(str(run.cwd / "s.duckdb"), read_only=True) as store:
        assert store.counts()["usage"] == 1


def test_the_environment_variable_is_blamed_by_name(tmp_path: Path) -> None:
    env = {**os.environ, "HEATLENS_DUCKDB_MEMORY_LIMIT": "half"}
    done = subprocess.run(
        [sys.executable, "-m", "heatlens", "--store", "s.duckdb", "status"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "error: environment variable HEATLENS_DUCKDB_MEMORY_LIMIT (setting duckdb.memory_limit): "
        f"'half' {NOT_A_SIZE}\n"
    )
    assert list(tmp_path.iterdir()) == []
