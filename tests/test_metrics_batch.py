"""One query per metric family (issue 18): `heatlens.metrics.batch.Batch` runs a family's parts —
Ibis expressions built without running them — as one UNION ALL query and hands each part its
own rows; the usage and DORA families use it, their warnings included."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa
import pytest

from heatlens.ingest import ingest_records
from heatlens.metrics import Request, compute, compute_all
from heatlens.metrics import batch as batch_module
from heatlens.metrics.batch import Batch
from heatlens.settings import load_settings
from heatlens.store import Store
from tests.conftest import record


class _Context:
    """The two things a Batch asks of its metric context: `quiet` and `warn`."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.warnings: dict[str, tuple[str, int]] = {}

    def warn(self, code: str, message: str, count: int) -> None:
        if count > 0:
            self.warnings[code] = (message, count)


def _events() -> Any:
    """A table in a DuckDB database (a family's parts always read the store's tables)."""
    return ibis.duckdb.connect().create_table(
        "events",
        pa.table(
            {
                "period": pa.array([date(2026, 1, 5)] * 3 + [date(2026, 1, 12)] * 2, pa.date32()),
                "team": ["a", "a", "b", "a", None],
                "capability": ["ci", "cd", "ci", "ci", "ci"],
                "env": ["prod", "staging", "prod", "qa", "qa"],
                "minutes": [1.0, 2.0, 3.0, 4.0, -5.0],
            }
        ),
    )


def test_each_part_gets_its_own_rows_and_columns() -> None:
    ctx = _Context()
    b = Batch(ctx, ["team", "capability"])  # type: ignore[arg-type]
    t = _events()
    # a derived table read by two parts: each must see the same rows
    kept = t.filter(t.minutes >= 0).mutate(double=t.minutes * 2)
    got: dict[str, list[dict[str, Any]]] = {}
    by_team = kept.group_by(["period", "team"]).aggregate(n=kept.count(), total=kept.double.sum())
    b.add(by_team, ("n", "total"), lambda rows: got.__setitem__("team", rows))
    per_cap = kept.group_by(["period", "capability"]).aggregate(most=kept.minutes.max())
    b.add(per_cap, ("most",), lambda rows: got.__setitem__("cap", rows))
    envs = t.group_by("env").aggregate(n=t.count())
    b.add(envs, ("n",), lambda rows: got.__setitem__("env", rows), label="env")
    b.warn("negative", "negative minutes", t.filter(t.minutes < 0))
    b.run()

    jan5, jan12 = date(2026, 1, 5), date(2026, 1, 12)
    assert sorted(got["team"], key=lambda r: (r["period"], r["team"])) == [
        {"period": jan5, "team": "a", "n": 2.0, "total": 6.0},
        {"period": jan5, "team": "b", "n": 1.0, "total": 6.0},
        {"period": jan12, "team": "a", "n": 1.0, "total": 8.0},
    ]
    assert sorted(got["cap"], key=lambda r: (r["period"], r["capability"])) == [
        {"period": jan5, "capability": "cd", "most": 2.0},
        {"period": jan5, "capability": "ci", "most": 3.0},
        {"period": jan12, "capability": "ci", "most": 4.0},
    ]
    assert sorted(got["env"], key=lambda r: r["env"]) == [
        {"env": "prod", "n": 2.0},
        {"env": "qa", "n": 2.0},
        {"env": "staging", "n": 1.0},
    ]
    assert ctx.warnings == {"negative": ("negative minutes", 1)}


def test_several_warnings_over_one_table_are_one_part_of_filtered_counts() -> None:
    ctx = _Context()
    b = Batch(ctx, [])  # type: ignore[arg-type]
    t = _events()
    b.warn_each(
        t,
        [
            ("negative", "negative minutes", t.minutes < 0),
            ("qa", "qa environment", t.env == "qa"),
            ("none", "never true", t.minutes > 100),
        ],
    )
    parts = len(b._query._parts)
    b.run()
    assert parts == 1
    # by hand: one negative minute (-5.0), two rows in qa, none over 100 (not reported)
    assert ctx.warnings == {"negative": ("negative minutes", 1), "qa": ("qa environment", 2)}


def test_a_part_without_rows_gets_an_empty_list_and_a_zero_count_no_warning() -> None:
    ctx = _Context()
    b = Batch(ctx, [])  # type: ignore[arg-type]
    t = _events()
    got: list[Any] = []
    none = t.filter(t.minutes > 100)
    b.add(none.group_by("period").aggregate(n=none.count()), ("n",), got.append)
    b.warn("never", "nothing", none)  # counts 0: no warning
    b.run()
    assert got == [[]]
    assert ctx.warnings == {}


def test_quiet_reports_add_no_warning_parts() -> None:
    ctx = _Context(quiet=True)
    b = Batch(ctx, [])  # type: ignore[arg-type]
    t = _events()
    b.warn("negative", "negative minutes", t.filter(t.minutes < 0))
    b.run()  # nothing to run: no query, no warning
    assert ctx.warnings == {}


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The parts of every family query run (one entry per query)."""
    calls: list[int] = []
    real = batch_module._run

    def run(selects: Any) -> pa.Table:
        table = real(selects)
        calls.append(len(set(table.column("hl_part").to_pylist())))
        return table

    monkeypatch.setattr(batch_module, "_run", run)
    return calls


def _ingest(store: Store) -> None:
    ts = "2026-01-0{}T10:00:00Z".format
    records = [
        record("team", id="t1"),
        record("team", id="t2"),
        record("capability", id="ci", eligible=["t1"]),
        record("service", id="s1", team="t1", created_at="2025-06-01T00:00:00Z"),
        record("usage", id="u1", ts=ts(5), capability="ci", actor="p1", team="t1",
               outcome="success", duration_s=60),
        record("usage", id="u2", ts=ts(6), capability="ci", actor="p2", team="t2",
               outcome="failure", duration_s=30),
        record("change", id="c1", committed_at="2026-01-04T00:00:00Z", service="s1"),
        record("deployment", id="d1", service="s1", finished_at="2026-01-05T00:00:00Z",
               commit_sha="c1"),
        record("deployment", id="d2", service="s1", finished_at="2026-01-06T00:00:00Z"),
        record("incident", id="i1", service="s1", opened_at="2026-01-07T00:00:00Z",
               resolved_at="2026-01-07T02:00:00Z", deployment_id="d1"),
    ]  # fmt: skip
    ingest_records(store, records, load_settings(environ={}), source="t")


def _report(tmp_path: Path, counted: list[int], metrics: tuple[str, ...]) -> Any:
    """January 2026 by team on a fresh store of `_ingest`'s records; `counted` holds only this
    report's family queries."""
    request = Request(
        "month",
        date(2026, 1, 1),
        date(2026, 2, 1),
        ("team",),
        metrics,
        now=datetime(2026, 3, 1, tzinfo=UTC),
    )
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        _ingest(store)
        counted.clear()
        return compute(store, request, load_settings(environ={})).to_json()


def _values(report: Any) -> dict[tuple[str, str], Any]:
    return {(r["metric"], r["segment"]["team"]): r["value"] for r in report["rows"]}


def test_the_usage_family_is_one_query_warnings_included(
    tmp_path: Path, counted: list[int]
) -> None:
    report = _report(
        tmp_path,
        counted,
        (
            "adoption.active_users",
            "adoption.eligible_teams",
            "adoption.team_adoption_rate",
            "task.success_rate",
            "efficiency.task_duration_p50",
        ),
    )
    # rows, the duration quantiles, adoption and the ineligible-teams count: one query
    assert counted == [4]
    values = _values(report)
    assert values[("adoption.active_users", "t1")] == 1
    assert values[("adoption.active_users", "t2")] == 1
    assert values[("adoption.eligible_teams", "t1")] == 1
    assert values[("adoption.team_adoption_rate", "t1")] == 1.0
    assert values[("task.success_rate", "t2")] == 0.0
    assert values[("efficiency.task_duration_p50", "t1")] == 60.0
    # t2 used ci, whose `eligible` list names only t1
    warnings = {w["code"]: w["count"] for w in report["warnings"]}
    assert warnings["ineligible_active_teams"] == 1


def test_the_dora_family_is_one_query_warnings_included(tmp_path: Path, counted: list[int]) -> None:
    report = _report(
        tmp_path,
        counted,
        (
            "dora.deployments",
            "dora.change_failure_rate",
            "dora.lead_time_p50",
            "dora.time_to_restore_p50",
            "efficiency.services_awaiting_first_deploy",
        ),
    )
    assert len(counted) == 1
    values = _values(report)
    assert values[("dora.deployments", "t1")] == 2
    assert values[("dora.change_failure_rate", "t1")] == 0.5  # d1 caused i1
    assert values[("dora.lead_time_p50", "t1")] == 24.0  # c1 committed a day before d1
    assert values[("dora.time_to_restore_p50", "t1")] == 2.0
    # s1 was deployed in January: no service awaits its first deployment
    assert values.get(("efficiency.services_awaiting_first_deploy", "t1"), 0) == 0
    warnings = {w["code"]: w["count"] for w in report["warnings"]}
    assert warnings["deployment_without_commits"] == 1  # d2


def test_the_catalog_names_each_metrics_family() -> None:
    from heatlens.metrics import catalog

    family = {m.id: m.family for m in catalog.select(())}
    assert family["efficiency.task_duration_p50"] == "usage"
    assert family["efficiency.time_to_first_deploy"] == "delivery"
    assert family["dora.open_incidents"] == "delivery"
    assert family["happiness.csat"] == "happiness"
    assert family["task.first_attempt_success_rate"] == "usage"
    assert set(family.values()) == {"usage", "delivery", "happiness"}


def test_a_reports_families_run_as_one_query(tmp_path: Path, counted: list[int]) -> None:
    report = _report(tmp_path, counted, ("task.attempts", "dora.deployments"))
    # one query: usage's grouped part, DORA's and its repeated-deployments count
    assert counted == [3]
    values = _values(report)
    assert values[("task.attempts", "t1")] == 1
    assert values[("dora.deployments", "t1")] == 2


def test_reports_asked_together_run_as_one_query_and_equal_each_alone(
    tmp_path: Path, counted: list[int]
) -> None:
    """A page's overall and per-segment views (the DORA page's three): one query, and each
    report the same as computed on its own."""
    settings = load_settings(environ={})
    metrics = ("dora.deployments", "dora.change_failure_rate", "task.success_rate")
    now = datetime(2026, 3, 1, tzinfo=UTC)
    january = (date(2026, 1, 1), date(2026, 2, 1))
    requests = [
        Request("month", *january, by, metrics, now=now) for by in ((), ("team",), ("service",))
    ]
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        _ingest(store)
        alone = [compute(store, r, settings).to_json() for r in requests]
        counted.clear()
        together = [r.to_json() for r in compute_all(store, requests, settings)]
    assert len(counted) == 1
    for one, other in zip(alone, together, strict=True):
        one.pop("generated_at", None)
        other.pop("generated_at", None)
        assert one == other
    overall = {r["metric"]: r["value"] for r in together[0]["rows"]}
    assert overall["dora.deployments"] == 2
    assert overall["dora.change_failure_rate"] == 0.5
    assert overall["task.success_rate"] == 0.5  # u1 succeeded, u2 failed
