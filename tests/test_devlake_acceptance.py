"""Outside acceptance: Apache DevLake's own DORA fixtures, through heatlens's ingest and engine.

DevLake's "connect incident to deployment" end-to-end test (tests/fixtures/devlake, Apache-2.0,
see SOURCE.txt there) links each incident of a project to the latest successful production
deployment that finished before it was created, with no time limit. heatlens offers that rule as
`incident_link_window = "unbounded"` (DESIGN §4); the preset `definitions = "devlake"` sets it
with every other rule DevLake uses, and with that preset alone heatlens must reproduce DevLake's
expected links exactly, and the change failure rate they imply for project1: 2 of 5 deployments,
40 %.

Mapping (/work/shared/fixtures/devlake/README.md): project1 is one service, `project1`. Its
deployments are the `cicd_deployment_id`s of the rows whose `cicd_scope_id` maps to project1, one
per pipeline, built from the pipeline's SUCCESS rows and finished at the earliest `finished_date`
of them; FAILURE rows are ignored. The environment is passed through (lowercased), so heatlens's
own production filter drops the staging pipeline. The incidents are the rows whose
`(table, scope_id)` maps to project1, opened at `created_date` (UTC), on that service, with no
explicit link fields (so heatlens links them by time alone, rule 3).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from heatlens.ingest import ingest_records
from heatlens.metrics import Request, compute
from heatlens.metrics.frame import Frame
from heatlens.metrics.linking import links
from heatlens.settings import Settings, load_settings
from heatlens.store import Store

FIXTURES = Path(__file__).parent / "fixtures" / "devlake"
PROJECT = "project1"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
# A range covering every fixture date (deployments in September 2022, incidents up to November).
START, END = date(2022, 9, 1), date(2022, 12, 1)


def _csv(name: str) -> list[dict[str, str]]:
    with (FIXTURES / name).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _utc(text: str) -> str:
    """DevLake's two timestamp spellings (`2022-11-13 23:37:21`, `…T06:51:47.000+00:00`), both
    UTC, as canonical ISO 8601."""
    ts = datetime.fromisoformat(text)
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return ts.isoformat()


def _project_scopes() -> set[tuple[str, str]]:
    return {
        (r["table"], r["row_id"])
        for r in _csv("project_mapping.csv")
        if r["project_name"] == PROJECT
    }


def devlake_records() -> list[dict[str, Any]]:
    """The fixtures as canonical heatlens records, following the mapping in the module docstring."""
    scopes = _project_scopes()
    pipelines: dict[str, list[dict[str, str]]] = {}
    for r in _csv("cicd_deployment_commits_after.csv"):
        if ("cicd_scopes", r["cicd_scope_id"]) in scopes and r["result"] == "SUCCESS":
            pipelines.setdefault(r["cicd_deployment_id"], []).append(r)
    records: list[dict[str, Any]] = [{"type": "service", "id": PROJECT, "name": PROJECT}]
    for pipeline, rows in sorted(pipelines.items()):
        rows.sort(key=lambda r: _utc(r["finished_date"]))
        (environment,) = {r["environment"].lower() for r in rows}
        records.append(
            {
                "type": "deployment",
                "id": pipeline,
                "service": PROJECT,
                "environment": environment,
                "result": "success",
                "started_at": min(_utc(r["started_date"]) for r in rows),
                "finished_at": _utc(rows[0]["finished_date"]),
                "commit_sha": rows[0]["commit_sha"],
                "commits": [r["commit_sha"] for r in rows],
            }
        )
    for r in _csv("incidents.csv"):
        if (r["table"], r["scope_id"]) in scopes:
            records.append(
                {
                    "type": "incident",
                    "id": r["id"],
                    "service": PROJECT,
                    "opened_at": _utc(r["created_date"]),
                }
            )
    return records


def expected_links() -> dict[str, str]:
    """DevLake's expected output: project1's incident → deployment pairs."""
    return {
        r["id"]: r["deployment_id"]
        for r in _csv("project_incident_deployment_relationships.csv")
        if r["project_name"] == PROJECT
    }


def devlake_settings(**extra: Any) -> Settings:
    return load_settings(config=None, environ={}, overrides={"definitions": "devlake", **extra})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path = tmp_path_factory.mktemp("devlake") / "store.duckdb"
    with Store.open(f"duckdb:///{path}") as s:
        ingest_records(s, devlake_records(), devlake_settings(), source="file:devlake-fixtures")
        yield s


def test_mapping_gives_the_deployments_and_incidents_the_readme_names(store: Store) -> None:
    deployments = store.table("deployment").to_pyarrow().to_pylist()
    finished = {
        d["id"]: (d["environment"], d["finished_at"].astimezone(UTC).date().isoformat())
        for d in deployments
    }
    assert finished == {
        "pipeline1": ("production", "2022-09-11"),
        "pipeline2": ("production", "2022-09-14"),
        "pipeline4": ("production", "2022-09-16"),
        "pipeline5": ("staging", "2022-09-18"),
        "pipeline6": ("production", "2022-09-20"),
        "pipeline7": ("production", "2022-09-23"),
    }
    incidents = {i["id"] for i in store.table("incident").to_pyarrow().to_pylist()}
    assert incidents == set(expected_links())  # the repo3 incident belongs to no project


def test_incident_links_equal_devlakes(store: Store) -> None:
    settings = devlake_settings()
    frame = Frame.load(store, settings)
    found = links(frame.incidents(), frame.dora_deployments(), settings.link_window)
    rows = found.to_pyarrow().to_pylist()
    assert {r["incident_id"]: r["linked_deployment"] for r in rows} == expected_links()
    assert {r["rule"] for r in rows} == {"window"}


def test_change_failure_rate_is_devlakes_40_percent(store: Store) -> None:
    report = compute(
        store,
        Request(
            grain="all",
            start=START,
            end=END,
            by=("service",),
            metrics=("dora.change_failure_rate",),
            now=NOW,
        ),
        devlake_settings(),
    )
    (row,) = report.rows
    assert row.metric == "dora.change_failure_rate"
    assert row.segment == {"service": PROJECT}
    assert (row.x, row.n) == (2, 5)  # pipeline2 and pipeline7 of the five production ones
    assert row.value == pytest.approx(0.4, abs=1e-12)
    assert row.tier == "low"  # DevLake's 2021 tiers: above 30 % is low
    # the staging pipeline is the only thing left out, and the report says so
    assert [(w.code, w.count) for w in report.warnings] == [("excluded_environments", 1)]


def test_default_seven_day_window_links_only_the_near_incident(store: Store) -> None:
    """Not DevLake's rule: heatlens's default window (7 days) leaves the November incidents,
    seven to nine weeks after the last deployment, unlinked — so the rate is 1 of 5."""
    settings = load_settings(config=None, environ={}, overrides={"quantile": "lower"})
    report = compute(
        store,
        Request(
            grain="all",
            start=START,
            end=END,
            by=("service",),
            metrics=("dora.change_failure_rate",),
            now=NOW,
        ),
        settings,
    )
    (row,) = report.rows
    assert (row.x, row.n, row.value) == (1, 5, pytest.approx(0.2, abs=1e-12))
    assert [(w.code, w.count) for w in report.warnings] == [
        ("unlinked_incidents", 5),
        ("excluded_environments", 1),
    ]
