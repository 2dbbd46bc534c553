"""The v2 rules outside the metric definitions that the reference covers: naive timestamps read in
`ingest_timezone`, and `explain` naming the bots it left out of adoption. (The metric rules — bots,
runs, history start, archived teams, services awaiting — are the reference's hand-computed
fixtures, run on the engine by tests/test_engine_fixtures.py.)"""

from __future__ import annotations

from datetime import UTC, date, datetime

from heatlens.ingest import ingest_records
from heatlens.metrics.explain import explain
from heatlens.settings import load_settings
from heatlens.store import Store

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def test_naive_timestamps_are_read_in_ingest_timezone_not_the_report_timezone() -> None:
    record = {"type": "usage", "id": "u", "ts": "2024-01-10T12:00:00", "capability": "ci"}
    # reports bucket in Tokyo, files are read in Berlin (UTC+1 in January): 11:00 UTC
    s = load_settings(
        config=None,
        environ={},
        overrides={"timezone": "Asia/Tokyo", "ingest_timezone": "Europe/Berlin"},
    )
    with Store.open("duckdb:///:memory:") as store:
        ingest_records(store, [record], s, source="test")
        (ts,) = store.table("usage").ts.to_pyarrow().to_pylist()
    assert ts == datetime(2024, 1, 10, 11, tzinfo=UTC)
    # unset, the report time zone reads them (Tokyo, UTC+9): 03:00 UTC
    s = load_settings(config=None, environ={}, overrides={"timezone": "Asia/Tokyo"})
    with Store.open("duckdb:///:memory:") as store:
        ingest_records(store, [record], s, source="test")
        (ts,) = store.table("usage").ts.to_pyarrow().to_pylist()
    assert ts == datetime(2024, 1, 10, 3, tzinfo=UTC)


def test_explain_lists_bots_as_left_out_of_adoption_but_counted_in_tasks() -> None:
    records = [
        {"type": "team", "id": "pay"},
        *(
            {
                "type": "usage",
                "id": f"u{i}",
                "ts": f"2024-01-1{i}T10:00:00Z",
                "capability": "ci",
                "team": "pay",
                "actor": actor,
                "outcome": "success",
            }
            for i, actor in enumerate(["ana", "Renovate[bot]", "dependabot[bot]"])
        ),
    ]
    s = load_settings(config=None, environ={})
    with Store.open("duckdb:///:memory:") as store:
        ingest_records(store, records, s, source="test")
        users = explain(
            store, "adoption.active_users", date(2024, 1, 1), {}, s, grain="month", now=NOW
        )
        tasks = explain(store, "task.success_rate", date(2024, 1, 1), {}, s, grain="month", now=NOW)
    assert users.row is not None and users.row.value == 1  # ana only
    assert [r["actor"] for r in users.records] == ["ana"]
    assert {(r["actor"], r["reason"]) for r in users.dropped} == {
        ("Renovate[bot]", "bot actor (`bot_actors`)"),
        ("dependabot[bot]", "bot actor (`bot_actors`)"),
    }
    assert tasks.row is not None and tasks.row.n == 3
    assert sorted(r["bot"] for r in tasks.records) == [False, True, True]
