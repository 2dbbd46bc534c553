"""Where the data is (issue 13): spans per record type, whether a range holds what the metrics
read, the suggested range, and `--grain all` as all history — on a store whose records are known."""

from datetime import UTC, date, datetime

from heatlens.analysis.coverage import coverage
from heatlens.metrics.catalog import CATALOG
from heatlens.metrics.engine import Request, compute
from heatlens.settings import Settings
from heatlens.store import Store

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _store(tmp_path) -> Store:
    """Two deployments in 2011 and 2024 and one usage record in 2023: nothing near NOW."""
    from heatlens.application import LocalApplication
    from heatlens.application.access import DirectAccess

    url = str(tmp_path / "s.duckdb")
    access = DirectAccess(url)
    LocalApplication(Settings(store=url), access).ingest_records(
        [
            {
                "type": "deployment",
                "id": "d1",
                "service": "web",
                "finished_at": "2011-06-08T10:00:00Z",
            },
            {
                "type": "deployment",
                "id": "d2",
                "service": "web",
                "finished_at": "2024-04-16T10:00:00Z",
            },
            {
                "type": "usage",
                "id": "u1",
                "ts": "2023-02-01T10:00:00Z",
                "capability": "ci",
                "actor": "a",
            },
        ],
        source="test",
    )
    access.close()
    return Store.open(url, read_only=True)


def test_an_empty_range_names_the_spans_of_what_its_metrics_read_and_a_range_that_holds_them(
    tmp_path,
):
    store = _store(tmp_path)
    found = coverage(
        store, [CATALOG["dora.deployments"]], date(2029, 10, 1), date(2030, 1, 1), "UTC"
    )
    assert found.empty and not found.store_empty
    assert found.spans["deployment"].records == 2
    # 2011-06-08 … 2029-10-01 is more than two years: quarters, from the quarter holding the first
    assert found.suggestion() == ("quarter", date(2011, 4, 1))
    hint = found.hint()
    assert "deployments span 2011-06-08 … 2024-04-16" in hint
    assert "--grain quarter --from 2011-04-01" in hint
    assert "demo" not in hint
    usage_only = coverage(
        store, [CATALOG["adoption.active_users"]], date(2023, 1, 1), date(2023, 3, 1), "UTC"
    )
    assert not usage_only.empty and usage_only.covers(CATALOG["adoption.active_users"])
    # a range between the two deployments holds none, though it lies inside their span
    between = coverage(
        store, [CATALOG["dora.deployments"]], date(2015, 1, 1), date(2016, 1, 1), "UTC"
    )
    assert between.empty


def test_grain_all_without_from_is_all_history_to_today(tmp_path):
    store = _store(tmp_path)
    report = compute(store, Request("all", metrics=("dora.deployments",), now=NOW), Settings())
    assert (report.start, report.end) == (date(2011, 6, 8), date(2030, 1, 1))
    assert [float(r.value) for r in report.rows] == [2.0]
    bounded = compute(
        store,
        Request("all", start=date(2020, 1, 1), metrics=("dora.deployments",), now=NOW),
        Settings(),
    )
    assert [float(r.value) for r in bounded.rows] == [1.0]
