"""The model per data version (heatlens.metrics.model): built once per version of the record
types each part reads, shared by every report on any connection of the process, rebuilt only for
the types a write touched — and the reports' numbers follow the write."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from heatlens.ingest import ingest_records
from heatlens.metrics import Request, compute
from heatlens.metrics.model import view
from heatlens.settings import Settings
from heatlens.store import Store
from tests.test_dashboard import _usage, organisation

MARCH = Request("month", date(2026, 3, 1), date(2026, 4, 1), metrics=("adoption", "dora"))


def _value(report, metric: str) -> float | int | None:  # type: ignore[no-untyped-def]
    (row,) = [r for r in report.rows if r.metric == metric]
    return row.value


def test_reports_share_the_model_and_a_usage_write_rebuilds_only_usage(
    tmp_path: Path, settings: Settings
) -> None:
    url = f"duckdb:///{tmp_path / 'model.duckdb'}"
    with Store.open(url) as store:
        ingest_records(store, organisation(), settings, source="file:org.ndjson")
    with Store.open(url) as one, Store.open(url) as two:
        first = compute(one, MARCH, settings)
        builds = view(one, settings).model.builds  # type: ignore[union-attr]
        assert builds["usage_resolved"] == builds["links"] == builds["deployments"] == 1
        # another connection of the process, same version: nothing is built again
        again = compute(two, MARCH, settings)
        assert dict(builds) == dict(view(two, settings).model.builds)  # type: ignore[union-attr]
        assert [r.value for r in again.rows] == [r.value for r in first.rows]
        # by hand (organisation()): March, alpha and beta of alpha, beta, tiny used ci; alpha's
        # deployments d1 (incident i1 linked) and d2: change failure rate 1 of 2
        assert _value(first, "adoption.team_adoption_rate") == 2 / 3
        assert _value(first, "dora.change_failure_rate") == 0.5

        ingest_records(
            one,
            [_usage(100, "2026-03-25T10:00:00Z", "tiny", "success")],
            settings,
            source="file:more.ndjson",
        )
        after = compute(two, MARCH, settings)
        assert builds["usage_resolved"] == 2
        assert builds["links"] == builds["deployments"] == builds["incidents"] == 1
        assert _value(after, "adoption.team_adoption_rate") == 1.0  # tiny too: 3 of 3
        assert _value(after, "dora.change_failure_rate") == 0.5


def test_the_store_keeps_a_version_per_record_type(tmp_path: Path, settings: Settings) -> None:
    with Store.open(f"duckdb:///{tmp_path / 'v.duckdb'}") as store:
        assert set(store.type_versions().values()) == {0}
        ingest_records(store, organisation(), settings, source="file:org.ndjson")
        v = store.type_versions()
        assert v[""] == v["usage"] == v["deployment"] == v["team"] == 1
        assert v["survey_invitation"] == 0  # organisation() has none
        ingest_records(
            store,
            [_usage(100, "2026-03-25T10:00:00Z", "tiny", "success")],
            settings,
            source="file:more.ndjson",
        )
        v = store.type_versions()
        assert v[""] == v["usage"] == 2
        assert v["deployment"] == v["team"] == 1
