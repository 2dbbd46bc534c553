"""`heatlens report` and `heatlens explain` end to end, on small stores with known answers."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from heatlens.errors import ConfigError
from heatlens.ingest import ingest_records
from heatlens.metrics.explain import explain, parse_segments
from heatlens.metrics.periods import too_many_periods
from heatlens.settings import Settings
from heatlens.store import Store
from tests.conftest import Cli

RECORDS: list[dict[str, Any]] = [
    {"type": "team", "id": "payments"},
    {"type": "service", "id": "checkout", "team": "payments"},
    {"type": "change", "id": "c1", "committed_at": "2026-03-02T08:00:00Z"},
    {"type": "change", "id": "c2", "committed_at": "2026-03-02T12:00:00Z"},
    # d1 ships c1 (lead 4 h); d2 ships c2, committed after d2 finished: dropped (negative)
    {
        "type": "deployment",
        "id": "d1",
        "service": "checkout",
        "finished_at": "2026-03-02T12:00:00Z",
        "commit_sha": "c1",
    },
    {
        "type": "deployment",
        "id": "d2",
        "service": "checkout",
        "finished_at": "2026-03-02T11:00:00Z",
        "commits": ["c2"],
    },
    {
        "type": "incident",
        "id": "i1",
        "service": "checkout",
        "opened_at": "2026-03-03T09:00:00Z",
        "resolved_at": "2026-03-03T10:00:00Z",
    },
    {
        "type": "usage",
        "id": "u1",
        "ts": "2026-03-03T10:00:00Z",
        "capability": "ci",
        "team": "payments",
        "outcome": "success",
        "duration_s": 10,
    },
    {
        "type": "usage",
        "id": "u2",
        "ts": "2026-03-04T10:00:00Z",
        "capability": "ci",
        "team": "payments",
        "outcome": "error",
    },
]


@pytest.fixture
def filled(run: Cli, settings: Settings) -> Cli:
    with Store.open(str(run.cwd / "heatlens.duckdb")) as store:
        ingest_records(store, RECORDS, settings, source="test")
    return run


def _rows(doc: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    return [r for r in doc["rows"] if r["metric"] == metric]


def test_report_json_is_the_v1_contract(filled: Cli) -> None:
    result = filled(
        "report",
        "--format",
        "json",
        "--grain",
        "week",
        "--from",
        "2026-03-02",
        "--to",
        "2026-03-09",
        "--metric",
        "dora",
        "--metric",
        "task.success_rate",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["schema"], doc["grain"], doc["from"], doc["to"], doc["timezone"]) == (
        "heatlens.report/v1",
        "week",
        "2026-03-02",
        "2026-03-09",
        "UTC",
    )
    assert [r["value"] for r in _rows(doc, "dora.deployments")] == [2]
    assert [r["value"] for r in _rows(doc, "dora.lead_time_p50")] == [4.0]
    # i1 opened 21 h after d1 (the latest deployment of checkout before it): linked
    assert [r["value"] for r in _rows(doc, "dora.change_failure_rate")] == [0.5]
    assert [r["value"] for r in _rows(doc, "task.success_rate")] == [0.5]
    assert {w["code"]: w["count"] for w in doc["warnings"]} == {"negative_lead_time": 1}
    row = _rows(doc, "dora.deployments")[0]
    assert set(row) == {
        "metric",
        "period",
        "segment",
        "value",
        "n",
        "ci",
        "suppressed",
        "tier",
        "complete",
    }


def test_report_csv_to_a_file(filled: Cli) -> None:
    result = filled(
        "report",
        "--format",
        "csv",
        "--out",
        "r.csv",
        "--grain",
        "month",
        "--from",
        "2026-03-01",
        "--to",
        "2026-04-01",
        "--by",
        "team",
        "--metric",
        "dora.deployments",
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO((filled.cwd / "r.csv").read_text(encoding="utf-8"))))
    assert [(r["metric"], r["period"], r["team"], r["value"]) for r in rows] == [
        ("dora.deployments", "2026-03-01", "payments", "2")
    ]


def test_report_table_groups_by_dimension(filled: Cli) -> None:
    result = filled("report", "--grain", "month", "--from", "2026-03-01", "--to", "2026-04-01")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.index("Adoption") < text.index("Task success") < text.index("DORA")
    assert "dora.change_failure_rate" in text and "50.0%" in text


def test_report_errors_are_one_line(filled: Cli) -> None:
    bad_metric = filled("report", "--metric", "dora.nope")
    assert bad_metric.exit_code == 2 and "unknown metric 'dora.nope'" in bad_metric.stderr
    bad_range = filled("report", "--from", "2026-03-09", "--to", "2026-03-02")
    assert bad_range.exit_code == 2 and "must be before --to" in bad_range.stderr
    bad_date = filled("report", "--from", "March")
    assert bad_date.exit_code == 2 and "expected a date YYYY-MM-DD" in bad_date.stderr


def test_report_on_an_empty_store_suggests_demo(run: Cli) -> None:
    Store.open(str(run.cwd / "heatlens.duckdb")).close()
    result = run("report")
    assert result.exit_code == 2 and "run `heatlens demo`" in result.stderr


def test_explain_lists_lead_times_and_drops(filled: Cli, settings: Settings) -> None:
    with Store.open(str(filled.cwd / "heatlens.duckdb"), read_only=True) as store:
        found = explain(
            store, "dora.lead_time_p50", date(2026, 3, 4), {"service": "checkout"}, settings
        )
    assert found.row is not None and found.row.value == 4.0
    assert [(r["change"], r["id"], r["hours"]) for r in found.records] == [("c1", "d1", 4.0)]
    assert [(r["change"], r["reason"]) for r in found.dropped] == [("c2", "negative hours")]


def test_explain_shows_each_incident_and_its_rule(filled: Cli) -> None:
    result = filled(
        "explain", "dora.change_failure_rate", "--period", "2026-03-04", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["row"]["value"] == 0.5 and doc["total"] == 2
    by_id = {r["id"]: r for r in doc["records"]}
    assert by_id["d1"]["incidents"] == ["i1"] and by_id["d1"]["rules"] == ["window"]
    assert by_id["d2"]["incidents"] is None


def test_explain_never_lists_survey_answers(settings: Settings, tmp_path: Path) -> None:
    answers = [
        {
            "type": "survey_response",
            "id": f"r{i}",
            "survey": "s",
            "question": "q",
            "kind": "csat",
            "respondent": f"p{i}",
            "ts": "2026-03-03T10:00:00Z",
            "score": 4,
            "team": "payments",
        }
        for i in range(6)
    ]
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        ingest_records(store, answers, settings, source="test")
        found = explain(store, "happiness.csat", date(2026, 3, 4), {}, settings)
    assert found.row is not None and found.row.value == 1.0
    assert found.records == [] and "never listed one by one" in found.notes[0]


def test_explain_refuses_unknown_metric_and_key(duck_store: Store, settings: Settings) -> None:
    day = date(2026, 3, 4)
    with pytest.raises(ConfigError, match="unknown metric"):
        explain(duck_store, "dora", day, {}, settings)
    with pytest.raises(ConfigError, match="cannot be segmented by 'capability'"):
        explain(duck_store, "dora.deployments", day, {"capability": "ci"}, settings)


def test_segments_are_key_value_pairs_and_key_equals_is_null() -> None:
    assert parse_segments(["team=payments", "service=", "action=a=b"]) == {
        "team": "payments",
        "service": None,
        "action": "a=b",
    }
    assert parse_segments([]) == {}
    with pytest.raises(ConfigError) as bad:
        parse_segments(["team=payments", "payments"], "--segment")
    assert str(bad.value) == "--segment 'payments': expected KEY=VALUE, e.g. team=payments"


def test_a_range_may_hold_at_most_5000_periods() -> None:
    start = date(2000, 1, 1)
    assert not too_many_periods("day", start, date.fromordinal(start.toordinal() + 5_000))
    assert too_many_periods("day", start, date.fromordinal(start.toordinal() + 5_001))
    assert not too_many_periods("week", start, date.fromordinal(start.toordinal() + 35_000))
    assert too_many_periods("week", start, date.fromordinal(start.toordinal() + 35_007))
    assert not too_many_periods("all", start, date(2100, 1, 1))
