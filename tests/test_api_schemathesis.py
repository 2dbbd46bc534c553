"""Schemathesis against the app's own /openapi.json, in-process: no request it generates — valid or
not, on any endpoint — gets a 5xx. Bounded (a few dozen examples per operation) to stay fast.

One test per operation of the schema, so xdist spreads them. (schemathesis's lazy
`pytest.from_fixture` fails on pytest 9 — it sets `Function._nodeid` — so each test draws the
operation's cases with Hypothesis itself.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from heatlens.settings import Settings, load_settings
from heatlens.web import create_app

EXAMPLES = 20

# building the app opens nothing (the store opens in its lifespan): it only lists the operations
OPERATIONS = [
    (method.upper(), path)
    for path, methods in create_app(load_settings(config=None, environ={}), "duckdb:///:memory:")
    .openapi()["paths"]
    .items()
    for method in methods
]


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_generated_request_gets_a_5xx(
    method: str, path: str, tmp_path: Path, settings: Settings
) -> None:
    # no rate limit to run into: every generated request must reach its route
    unlimited = settings.model_copy(update={"server_rate_limit_per_minute": 1_000_000})
    app = create_app(unlimited, f"duckdb:///{tmp_path / 'fuzz.duckdb'}")
    with TestClient(app):  # runs the lifespan: the store is open while schemathesis calls
        operation = schemathesis.openapi.from_asgi("/openapi.json", app)[path][method]

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_5xx(case: Any) -> None:
            response = case.call()
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path}: {response.status_code} "
                f"{response.text[:500]}\nbody: {str(case.body)[:500]}\nquery: {case.query}"
            )

        no_5xx()


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
