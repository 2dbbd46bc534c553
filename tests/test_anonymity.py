"""Anonymity across queries, engine side (docs/anonymity.md): continuous surveys refused by the
week, decisions renewed by every write, rows naming their wave in every format, `explain` on a
period with two waves. The hand-computed cases run on the engine through tests/reference
(test_engine_fixtures.py); the attacker is tests/test_anonymity_attack.py."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from heatlens.errors import ConfigError
from heatlens.ingest import ingest_records
from heatlens.metrics import Request, compute
from heatlens.metrics.explain import explain
from heatlens.report.formats import to_csv
from heatlens.settings import load_settings
from heatlens.store import Store

NOW = datetime(2025, 1, 1, tzinfo=UTC)
JAN, APR = date(2024, 1, 1), date(2024, 4, 1)
SETTINGS = load_settings(environ={}, overrides={})


def answers(survey: str, team: str, people: int, ts: str, first: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "type": "survey_response",
            "id": f"{survey}/{team}/{i}",
            "survey": survey,
            "question": "q",
            "kind": "csat",
            "respondent": f"{team}-{i}",
            "team": team,
            "score": 5,
            "ts": ts,
        }
        for i in range(first, first + people)
    ]


def shown(store: Store, by: tuple[str, ...], grain: str = "all") -> dict[tuple[Any, ...], Any]:
    report = compute(store, Request(grain, JAN, APR, by, ("happiness.respondents",), NOW), SETTINGS)
    return {
        tuple(r.segment[k] for k in (*by, "survey")): None if r.suppressed else r.value
        for r in report.rows
        if r.n != 0  # zero-filled teams of no answer
    }


def test_a_write_renews_the_decisions() -> None:
    # k = 5: team a has 3 answers, so a and its partner b are hidden; two more answers for a
    # (a new data version) make both visible in the very same query
    survey = {"type": "survey", "id": "s", "k": 5, "opens_at": "2024-01-10T00:00:00Z"}
    with Store.open("duckdb:///:memory:") as store:
        records = [survey, *answers("s", "a", 3, "2024-01-10T10:00:00Z")]
        ingest_records(
            store, records + answers("s", "b", 8, "2024-01-10T10:00:00Z"), SETTINGS, source="t"
        )
        assert shown(store, ("team",)) == {("a", "s"): None, ("b", "s"): None}
        ingest_records(
            store, answers("s", "a", 2, "2024-01-11T10:00:00Z", first=3), SETTINGS, source="t"
        )
        assert shown(store, ("team",)) == {("a", "s"): 5, ("b", "s"): 8}


def test_a_continuous_survey_is_refused_by_the_week() -> None:
    survey = {"type": "survey", "id": "pulse", "k": 3, "continuous": True}
    with Store.open("duckdb:///:memory:") as store:
        ingest_records(
            store, [survey, *answers("pulse", "a", 4, "2024-01-10T10:00:00Z")], SETTINGS, source="t"
        )
        with pytest.raises(ConfigError, match="continuous survey pulse is shown by month only"):
            compute(store, Request("week", JAN, APR, (), ("happiness",), NOW), SETTINGS)
        # asked for everything, the report leaves the answers out and says why
        report = compute(store, Request("week", JAN, APR, (), (), NOW), SETTINGS)
        assert not [r for r in report.rows if r.metric.startswith("happiness.")]
        (warning,) = [w for w in report.warnings if w.code == "continuous_survey_grain"]
        assert warning.count == 4 and "`continuous`" in warning.message
        assert shown(store, (), grain="month") == {("pulse",): 4}


def test_rows_name_their_wave_in_every_format() -> None:
    surveys = [
        {"type": "survey", "id": "s1", "k": 3, "opens_at": "2024-01-03T00:00:00Z"},
        {"type": "survey", "id": "s2", "k": 3, "opens_at": "2024-01-20T00:00:00Z"},
    ]
    records = surveys + answers("s1", "a", 4, "2024-01-03T10:00:00Z")
    records += answers("s2", "a", 5, "2024-01-20T10:00:00Z")
    with Store.open("duckdb:///:memory:") as store:
        ingest_records(store, records, SETTINGS, source="t")
        report = compute(
            store, Request("month", JAN, date(2024, 2, 1), (), ("happiness.csat",), NOW), SETTINGS
        )
        assert to_csv(report).splitlines() == [
            "metric,period,survey,value,n,ci_low,ci_high,suppressed,tier,complete",
            *(
                f"happiness.csat,2024-01-01,{s},1.0,{n},{lo},1.0,false,,true"
                for s, n, lo in (("s1", 4, report.rows[0].ci[0]), ("s2", 5, report.rows[1].ci[0]))  # type: ignore[index]
            ),
        ]
        assert report.to_arrow().column("survey").to_pylist() == ["s1", "s2"]
        # explain: the month holds two waves, each its own number
        both = explain(store, "happiness.csat", JAN, {}, SETTINGS, grain="month", now=NOW)
        assert both.row is None and "2 survey waves (s1, s2)" in both.notes[0]
        one = explain(
            store, "happiness.csat", JAN, {"survey": "s2"}, SETTINGS, grain="month", now=NOW
        )
        assert one.row is not None and one.row.n == 5 and one.records == []
