"""Shared fixtures: settings, stores on every backend, the CLI runner, record factories."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from heatlens.cli import cli
from heatlens.settings import Settings, load_settings
from heatlens.store import Store
from tests.postgres_server import postgres_bin, postgres_cluster

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(component: str, available: bool) -> None:
    """Skip when a component is absent on a laptop; under CI=true, fail instead."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{component} is required under CI=true but is not installed")
    pytest.skip(f"{component} is not installed")


@pytest.fixture
def settings() -> Settings:
    return load_settings(config=None, environ={})


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    need("PostgreSQL", postgres_bin() is not None)
    with postgres_cluster() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the session's cluster."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_server, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    yield postgres_server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL for each backend: a DuckDB file and a Postgres database."""
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'store.duckdb'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as s:
        yield s


@pytest.fixture
def duck_store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(str(tmp_path / "store.duckdb")) as s:
        yield s


class Cli:
    """Runs `heatlens` in-process, in a temporary directory, with a clean environment."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | bytes | None = None) -> Result:
        old = Path.cwd()
        os.chdir(self.cwd)
        try:
            env = {k: None for k in os.environ if k.startswith("HEATLENS_")}
            return self.runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)
        finally:
            os.chdir(old)


@pytest.fixture
def run(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def record(type_: str, **fields: Any) -> dict[str, Any]:
    """A canonical record: `record("usage", id="u1", ts=..., capability="ci")`."""
    return {"type": type_, **fields}


def stored(store: Store, type_name: str, *columns: str) -> list[tuple[Any, ...]]:
    """The stored records of one type, by id, as tuples of `columns` (read through the store)."""
    return [tuple(row[c] for c in columns) for row in store.rows(type_name)]


def run_sql(store_url: str, *statements: str) -> None:
    """Run SQL on a store's database behind heatlens's back (to make an older store, say):
    with the DuckDB or Postgres driver itself, while no Store has it open."""
    if store_url.startswith(("postgres://", "postgresql://")):
        import psycopg

        with psycopg.connect(store_url, autocommit=True) as con:
            for sql in statements:
                con.execute(sql)
        return
    import duckdb

    from heatlens.store import parse_store_url

    con = duckdb.connect(parse_store_url(store_url).target)
    try:
        for sql in statements:
            con.execute(sql)
    finally:
        con.close()
