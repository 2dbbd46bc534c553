"""Schemathesis against the app's own /openapi.json, in-process: no request it generates — valid or
not, on any endpoint — gets a 5xx, on an empty store and (the read operations, so the engine runs
on records) on a small demo store with a fixed end date. Bounded (a few dozen examples per
operation) to stay fast.

One test per operation of the schema, so xdist spreads them. (schemathesis's lazy
`pytest.from_fixture` fails on pytest 9 — it sets `Function._nodeid` — so each test draws the
operation's cases with Hypothesis itself.)
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from heatlens.demo import OrgSpec, generate
from heatlens.ingest import ingest_arrow
from heatlens.settings import Settings, load_settings
from heatlens.store import Store
from heatlens.web import create_app

EXAMPLES = 20
# the demo store's records end on 2026-03-31; a date parameter that is absent or not a date is
# given one of these, so the requests read records whatever day the suite runs on
DEMO_END = date(2026, 3, 31)
DATES = {"from": "2026-01-05", "to": "2026-03-30", "period": "2026-03-02", "as_of": "2026-03-30"}
# the reads that run the engine, fewer examples each: a request on records takes longer
READS = ["/api/v1/metrics", "/api/v1/explain", "/api/v1/report", "/api/v1/impact"]
DEMO_EXAMPLES = 10

# building the app opens nothing (the store opens in its lifespan): it only lists the operations
OPERATIONS = [
    (method.upper(), path)
    for path, methods in create_app(load_settings(config=None, environ={}), "duckdb:///:memory:")
    .openapi()["paths"]
    .items()
    for method in methods
]


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo organisation (4 teams, 90 days to DEMO_END), built once per worker."""
    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    with Store.open(str(path)) as store:
        tables = generate(OrgSpec(teams=4, days=90, end=DEMO_END))
        ingest_arrow(store, tables, load_settings(config=None, environ={}), source="demo")
    return path


def _dated(case: Any) -> Any:
    """The case with each of its operation's date parameters a date of the demo's records."""
    names = {p.name for p in case.operation.query}
    query = dict(case.query or {})
    for name, value in DATES.items():
        if name in names and not _is_date(query.get(name)):
            query[name] = value
    case.query = query
    return case


def _is_date(value: object) -> bool:
    try:
        date.fromisoformat(str(value))
    except ValueError:
        return False
    return True


def _fuzz(app: Any, method: str, path: str, *, dated: bool = False) -> None:
    """Call the operation with the cases Hypothesis draws; none may get a 5xx."""
    with TestClient(app):  # runs the lifespan: the store is open while schemathesis calls
        operation = schemathesis.openapi.from_asgi("/openapi.json", app)[path][method]
        strategy = operation.as_strategy()

        @given(case=strategy.map(_dated) if dated else strategy)
        @hypothesis_settings(
            max_examples=DEMO_EXAMPLES if dated else EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_5xx(case: Any) -> None:
            response = case.call(timeout=120)  # a loaded CI machine is slow, not broken
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path}: {response.status_code} "
                f"{response.text[:500]}\nbody: {str(case.body)[:500]}\nquery: {case.query}"
            )

        no_5xx()


def _unlimited(settings: Settings) -> Settings:
    # no rate limit to run into: every generated request must reach its route
    return settings.model_copy(update={"server_rate_limit_per_minute": 1_000_000})


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_generated_request_gets_a_5xx(
    method: str, path: str, tmp_path: Path, settings: Settings
) -> None:
    app = create_app(_unlimited(settings), f"duckdb:///{tmp_path / 'fuzz.duckdb'}")
    _fuzz(app, method, path)


@pytest.mark.parametrize("path", READS)
def test_no_generated_read_of_the_demo_store_gets_a_5xx(
    path: str, tmp_path: Path, settings: Settings, demo_store: Path
) -> None:
    shutil.copy(demo_store, tmp_path / "demo.duckdb")
    app = create_app(_unlimited(settings), f"duckdb:///{tmp_path / 'demo.duckdb'}")
    _fuzz(app, "GET", path, dated=True)


def test_the_demo_store_reads_give_numbers(
    tmp_path: Path, settings: Settings, demo_store: Path
) -> None:
    """The fuzzed reads above run the engine on records: these, with the dates they are given,
    answer with numbers."""
    shutil.copy(demo_store, tmp_path / "demo.duckdb")
    app = create_app(settings, f"duckdb:///{tmp_path / 'demo.duckdb'}")
    dates = f"from={DATES['from']}&to={DATES['to']}"
    with TestClient(app) as client:
        rows = client.get(f"/api/v1/metrics?{dates}&metric=task.attempts").json()["rows"]
        assert len(rows) == 12 and all(r["value"] > 0 for r in rows)  # 12 weeks, each used
        explain = client.get(
            f"/api/v1/explain?metric=task.attempts&period={DATES['period']}&grain=week"
        ).json()
        assert explain["total"] == explain["row"]["value"] > 0
        assert explain["records"]
        report = client.get(f"/api/v1/report?{dates}&grain=month").json()["report"]
        assert {r["metric"] for r in report["rows"] if r["value"]} >= {"dora.deployments"}
        check = client.get(f"/api/v1/check?as_of={DATES['as_of']}")
        assert check.status_code == 200 and check.json()["as_of"] == DATES["as_of"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/metrics?to=9999-12-31",
        "/api/v1/metrics?from=0001-01-02&to=0001-01-10",
        "/api/v1/explain?metric=adoption.active_users&period=9999-12-31",
        "/api/v1/explain?metric=adoption.active_users&period=0001-01-01",
        "/api/v1/report?to=9999-12-31",
        "/api/v1/check?as_of=0001-01-01",
    ],
)
def test_dates_beyond_the_store_range_are_a_4xx(
    url: str, tmp_path: Path, settings: Settings
) -> None:
    app = create_app(settings, f"duckdb:///{tmp_path / 'dates.duckdb'}")
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get(url)
    assert response.status_code == 400, response.text
    assert "expected a date from 1970-01-01 to 2100-01-01" in response.json()["error"]["message"]


def test_a_report_of_too_many_periods_is_a_4xx(tmp_path: Path, settings: Settings) -> None:
    app = create_app(settings, f"duckdb:///{tmp_path / 'periods.duckdb'}")
    with TestClient(app, raise_server_exceptions=False) as client:
        # 20 years by day is 7,305 periods; by month it is 240
        too_many = client.get("/api/v1/metrics?grain=day&from=1990-01-01&to=2010-01-01")
        fine = client.get("/api/v1/metrics?grain=month&from=1990-01-01&to=2010-01-01")
    assert too_many.status_code == 400
    assert "more than 5,000 periods of a day" in too_many.json()["error"]["message"]
    assert fine.status_code == 200
