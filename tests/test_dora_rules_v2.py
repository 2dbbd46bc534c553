"""The v2 DORA rules (DESIGN §3–§5 v2), each on a small organisation with a hand-computed answer.

Records go through the real ingest into a real DuckDB store and the engine's report is read back;
every expected number is worked out in the comment beside it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from heatlens.ingest import ingest_records
from heatlens.metrics import Request, compute
from heatlens.metrics.explain import explain
from heatlens.settings import load_settings
from heatlens.store import Store

NOW = datetime(2024, 6, 1, tzinfo=UTC)
JAN, FEB = date(2024, 1, 1), date(2024, 2, 1)


def dep(id: str, service: str, finished: str, **extra: Any) -> dict[str, Any]:
    return {"type": "deployment", "id": id, "service": service, "finished_at": finished, **extra}


def inc(id: str, opened: str, **extra: Any) -> dict[str, Any]:
    return {"type": "incident", "id": id, "opened_at": opened, **extra}


def run(
    records: list[dict[str, Any]],
    *,
    grain: str = "all",
    start: date = JAN,
    end: date = FEB,
    by: tuple[str, ...] = (),
    metrics: tuple[str, ...] = ("dora",),
    now: datetime = NOW,
    **options: Any,
) -> tuple[dict[tuple[str, str, tuple[Any, ...]], dict[str, Any]], dict[str, int]]:
    """(rows by (metric, period, segment values), warning counts by code)."""
    s = load_settings(config=None, environ={}, overrides=options)
    with Store.open("duckdb:///:memory:") as store:
        ingest_records(store, records, s, source="test")
        report = compute(store, Request(grain, start, end, by, metrics, now), s).to_json()
    rows = {
        (r["metric"], r["period"], tuple(r["segment"][k] for k in by)): r for r in report["rows"]
    }
    return rows, {w["code"]: w["count"] for w in report["warnings"]}


def value(rows: dict[Any, dict[str, Any]], metric: str, *segment: Any, period: str = "2024-01-01"):
    row = rows.get((metric, period, segment))
    return None if row is None else row["value"]


SERVICES = [
    {"type": "team", "id": "pay"},
    {"type": "team", "id": "idle"},  # owns nothing, deploys nothing
    {"type": "service", "id": "s", "team": "pay"},
    {"type": "service", "id": "t", "team": "pay"},
]


def test_rollback_and_hotfix_mark_what_they_remediate_failed() -> None:
    records = [
        *SERVICES,
        dep("d1", "s", "2024-01-02T00:00:00Z", kind="planned"),
        dep("d2", "s", "2024-01-03T00:00:00Z", kind="planned"),
        # the rollback remediates d2 (latest earlier), the hotfix after it skips the rollback
        # and remediates d2 again; d1 stays good
        dep("d3", "s", "2024-01-03T01:00:00Z", kind="rollback"),
        dep("d4", "s", "2024-01-04T00:00:00Z", kind="hotfix"),
        # another service's deployments are never remediated by s's rollback
        dep("e1", "t", "2024-01-03T00:30:00Z"),
    ]
    rows, _ = run(records)
    # failed: d2 only, of 5 deployments
    assert value(rows, "dora.change_failure_rate") == pytest.approx(1 / 5)
    # rework over known kinds: d3, d4 of d1–d4 (e1's kind is unknown)
    assert value(rows, "dora.rework_rate") == pytest.approx(2 / 4)
    assert rows[("dora.rework_rate", "2024-01-01", ())]["n"] == 4
    rows, _ = run(records, failure_from_remediation=False)
    # no incidents and remediation off: nothing failed, but kinds are known, so 0 % is measured
    assert value(rows, "dora.change_failure_rate") == 0


def test_a_hotfix_can_itself_be_remediated() -> None:
    records = [
        *SERVICES,
        dep("d1", "s", "2024-01-02T00:00:00Z", kind="planned"),
        dep("d2", "s", "2024-01-03T00:00:00Z", kind="hotfix"),  # remediates d1
        dep("d3", "s", "2024-01-04T00:00:00Z", kind="rollback"),  # remediates the hotfix d2
    ]
    rows, _ = run(records)
    assert value(rows, "dora.change_failure_rate") == pytest.approx(2 / 3)


def test_incident_after_a_rollback_is_not_blamed_on_it() -> None:
    records = [
        *SERVICES,
        dep("d1", "s", "2024-01-02T00:00:00Z"),
        dep("d2", "s", "2024-01-03T00:00:00Z", kind="rollback"),
        # by time alone the latest deployment before it is the rollback d2: skipped, d1 is blamed
        inc("i1", "2024-01-03T02:00:00Z", service="s", resolved_at="2024-01-03T05:00:00Z"),
    ]
    rows, _ = run(records, failure_from_remediation=False)
    # d1 failed (linked by the window); d2 not: 1 of 2
    assert value(rows, "dora.change_failure_rate") == pytest.approx(1 / 2)
    # recovery from d1 (Jan 2 00:00) to Jan 3 05:00 = 29 h
    assert value(rows, "dora.recovery_time_p50") == pytest.approx(29.0)


def test_root_cause_links_only_to_deployments_finished_by_the_incident() -> None:
    records = [
        *SERVICES,
        {"type": "change", "id": "c1", "committed_at": "2024-01-01T00:00:00Z"},
        {"type": "change", "id": "c2", "committed_at": "2024-01-01T00:00:00Z"},
        dep("d1", "s", "2024-01-02T00:00:00Z", commit_sha="c1"),
        dep("d2", "s", "2024-01-10T00:00:00Z", commit_sha="c2"),
        dep("d3", "s", "2024-01-11T00:00:00Z", commits=["c1"]),
        # c1 was deployed by d1 before: linked to d1
        inc("i1", "2024-01-05T00:00:00Z", root_cause_sha="c1", resolved_at="2024-01-05T10:00:00Z"),
        # c2 was deployed only after the incident opened: unlinked, warned
        inc("i2", "2024-01-05T00:00:00Z", root_cause_sha="c2", resolved_at="2024-01-12T00:00:00Z"),
    ]
    rows, warnings = run(records)
    # d1 failed of 3
    assert value(rows, "dora.change_failure_rate") == pytest.approx(1 / 3)
    # recovery: i1 only, from d1 (Jan 2 00:00) to Jan 5 10:00 = 82 h
    assert value(rows, "dora.recovery_time_p50") == pytest.approx(82.0)
    assert warnings["root_cause_not_yet_deployed"] == 1
    assert warnings["unlinked_incidents"] == 1


def test_explicit_link_to_another_service_holds_and_is_warned() -> None:
    records = [
        *SERVICES,
        dep("d1", "s", "2024-01-02T00:00:00Z"),
        dep("e1", "t", "2024-01-02T00:00:00Z"),
        inc("i1", "2024-01-03T00:00:00Z", service="t", deployment_id="d1"),
        inc("i2", "2024-01-03T00:00:00Z", service="s", deployment_id="d1"),
    ]
    rows, warnings = run(records, by=("service",))
    assert value(rows, "dora.change_failure_rate", "s") == 1.0
    assert value(rows, "dora.change_failure_rate", "t") == 0.0
    assert warnings["cross_service_links"] == 1


def test_production_environments_are_glob_patterns() -> None:
    records = [
        *SERVICES,
        dep("d1", "s", "2024-01-02T00:00:00Z", environment="prod-eu"),
        dep("d2", "s", "2024-01-03T00:00:00Z", environment="PROD-US"),
        dep("d3", "s", "2024-01-04T00:00:00Z", environment="production"),
        dep("d4", "s", "2024-01-05T00:00:00Z", environment="staging"),
        dep("d5", "s", "2024-01-06T00:00:00Z", environment="staging"),
        dep("d6", "s", "2024-01-06T00:00:00Z", environment="qa"),
        dep("d7", "s", "2024-01-07T00:00:00Z", environment="prod-eu", result="failure"),
    ]
    options = {"production_environments": ["production", "prod-*"]}
    rows, warnings = run(records, by=("environment",), metrics=("dora.deployments",), **options)
    counts = {seg[0]: r["value"] for (_, _, seg), r in rows.items()}
    # production environments only, lower-cased; no staging row of 0
    assert counts == {"prod-eu": 1, "prod-us": 1, "production": 1}
    # successful deployments elsewhere: d4, d5, d6 (d7 failed, not counted)
    assert warnings["excluded_environments"] == 3
    rows, warnings = run(records, metrics=("dora.deployments",))
    # the defaults ("production", "prod") match only d3
    assert value(rows, "dora.deployments") == 1
    assert warnings["excluded_environments"] == 5


def test_excluded_environments_warning_names_the_most_frequent() -> None:
    records = [
        *SERVICES,
        dep("d1", "s", "2024-01-02T00:00:00Z", environment="staging"),
        dep("d2", "s", "2024-01-03T00:00:00Z", environment="Staging"),
        dep("d3", "s", "2024-01-04T00:00:00Z", environment="prod-eu"),
    ]
    s = load_settings(config=None, environ={})
    with Store.open("duckdb:///:memory:") as store:
        ingest_records(store, records, s, source="test")
        report = compute(store, Request("all", JAN, FEB, (), ("dora.deployments",), NOW), s)
    (warning,) = [w for w in report.warnings if w.code == "excluded_environments"]
    assert warning.count == 3
    assert "staging (2), prod-eu (1)" in warning.message
    assert "production_environments" in warning.message


def test_failure_severities_filter_incidents() -> None:
    records = [
        *SERVICES,
        dep("d1", "s", "2024-01-02T00:00:00Z"),
        dep("d2", "s", "2024-01-10T00:00:00Z"),
        inc("i1", "2024-01-02T01:00:00Z", service="s", severity="SEV-4"),
        inc("i2", "2024-01-10T01:00:00Z", service="s", severity="sev-1"),
        inc("i3", "2024-01-10T02:00:00Z", service="s"),  # no severity: always counts
    ]
    rows, _ = run(records, failure_severities=["SEV-1", "sev-2"])
    # only d2 failed (i2, i3); i1 (sev-4) links nothing
    assert value(rows, "dora.change_failure_rate") == pytest.approx(1 / 2)
    rows, _ = run(records)
    assert value(rows, "dora.change_failure_rate") == 1.0


def test_unknown_kind_and_no_incidents_is_no_failure_signal() -> None:
    records = [
        *SERVICES,
        dep("d1", "s", "2024-01-02T00:00:00Z"),
        dep("d2", "s", "2024-01-03T00:00:00Z"),
        dep("e1", "t", "2024-01-03T00:00:00Z"),
        # t has an incident on record (outside the range even): its rate is measured
        inc("i1", "2023-06-01T00:00:00Z", service="t"),
    ]
    rows, warnings = run(records, by=("service",))
    assert ("dora.change_failure_rate", "2024-01-01", ("s",)) not in rows
    assert value(rows, "dora.change_failure_rate", "t") == 0.0
    # rework: no kind known anywhere, so no row at all
    assert not [k for k in rows if k[0] == "dora.rework_rate"]
    assert warnings["no_failure_signal"] == 1
    # deployments still count
    assert value(rows, "dora.deployments", "s") == 2


def test_negative_restore_times_are_dropped() -> None:
    records = [
        *SERVICES,
        inc("i1", "2024-01-02T00:00:00Z", service="s", resolved_at="2024-01-02T04:00:00Z"),
        inc("i2", "2024-01-03T00:00:00Z", service="s", resolved_at="2024-01-02T22:00:00Z"),
    ]
    rows, warnings = run(records, metrics=("dora.time_to_restore_p50",))
    assert value(rows, "dora.time_to_restore_p50") == 4.0
    assert rows[("dora.time_to_restore_p50", "2024-01-01", ())]["n"] == 1
    assert warnings["negative_time_to_restore"] == 1


def test_open_incidents_at_each_period_end() -> None:
    records = [
        *SERVICES,
        # open across both weeks' ends
        inc("i1", "2024-01-02T00:00:00Z", service="s"),
        # opened and resolved in week 1: open at no period end
        inc("i2", "2024-01-02T00:00:00Z", service="s", resolved_at="2024-01-03T00:00:00Z"),
        # resolved in week 2: open at week 1's end (Jan 8 00:00) only
        inc("i3", "2024-01-05T00:00:00Z", service="t", resolved_at="2024-01-09T00:00:00Z"),
        # resolved exactly at week 1's end, so in week 2 (as time to restore buckets it): still
        # open at week 1's end
        inc("i4", "2024-01-05T00:00:00Z", service="t", resolved_at="2024-01-08T00:00:00Z"),
    ]
    rows, _ = run(
        records,
        grain="week",
        start=date(2024, 1, 1),
        end=date(2024, 1, 15),
        metrics=("dora.open_incidents",),
    )
    assert value(rows, "dora.open_incidents", period="2024-01-01") == 3
    assert value(rows, "dora.open_incidents", period="2024-01-08") == 1


def test_change_failure_rate_is_not_complete_until_the_link_window_passed() -> None:
    records = [
        *SERVICES,
        dep("d1", "s", "2024-01-03T00:00:00Z"),
        inc("i", "2024-01-03T01:00:00Z", service="s"),
    ]
    kw: dict[str, Any] = {
        "grain": "week",
        "start": date(2024, 1, 1),
        "end": date(2024, 1, 8),
        "metrics": ("dora.change_failure_rate", "dora.deployments", "dora.recovery_time_p50"),
    }
    # the week ends Jan 8 00:00; with the 7-day window, final from Jan 15 00:00
    rows, _ = run(records, now=datetime(2024, 1, 14, 23, tzinfo=UTC), **kw)
    assert rows[("dora.deployments", "2024-01-01", ())]["complete"] is True
    assert rows[("dora.change_failure_rate", "2024-01-01", ())]["complete"] is False
    rows, _ = run(records, now=datetime(2024, 1, 15, tzinfo=UTC), **kw)
    assert rows[("dora.change_failure_rate", "2024-01-01", ())]["complete"] is True
    # a 36 h window: final from Jan 9 12:00; unbounded waits 7 days
    rows, _ = run(
        records, now=datetime(2024, 1, 9, 12, tzinfo=UTC), incident_link_window="36h", **kw
    )
    assert rows[("dora.change_failure_rate", "2024-01-01", ())]["complete"] is True
    rows, _ = run(
        records, now=datetime(2024, 1, 9, 12, tzinfo=UTC), incident_link_window="unbounded", **kw
    )
    assert rows[("dora.change_failure_rate", "2024-01-01", ())]["complete"] is False


def test_tiers_need_tier_min_n_observations() -> None:
    records = [
        *SERVICES,
        {"type": "service", "id": "u", "team": "big"},
        {"type": "team", "id": "big"},
        dep("d1", "s", "2024-01-02T00:00:00Z"),
        inc("i1", "2024-01-02T01:00:00Z", service="s"),
        *(dep(f"b{i}", "u", f"2024-01-{10 + i}T00:00:00Z") for i in range(5)),
        inc("i2", "2024-01-20T01:00:00Z", service="u"),
    ]
    rows, _ = run(records, grain="month", by=("team",))
    # pay: one deployment, one incident — 100 % but no tier on n = 1
    pay = rows[("dora.change_failure_rate", "2024-01-01", ("pay",))]
    assert (pay["value"], pay["tier"]) == (1.0, None)
    # big: 1 of 5 failed = 20 %, n = 5: tiered (low: > 15 %)
    big = rows[("dora.change_failure_rate", "2024-01-01", ("big",))]
    assert (big["value"], big["tier"]) == (0.2, "low")
    # frequency is not subject to tier_min_n
    assert rows[("dora.deployment_frequency", "2024-01-01", ("pay",))]["tier"] == "low"
    rows, _ = run(records, grain="month", by=("team",), tier_min_n=1)
    assert rows[("dora.change_failure_rate", "2024-01-01", ("pay",))]["tier"] == "low"


def test_teams_with_nothing_to_deploy_get_no_dora_rows() -> None:
    records = [*SERVICES, {"type": "team", "id": "solo"}, dep("d1", "s", "2024-01-02T00:00:00Z")]
    records.append(dep("x1", "unregistered", "2024-01-03T00:00:00Z", team="solo"))
    rows, _ = run(records, grain="month", by=("team",), metrics=("dora.deployments",))
    teams = {seg[0] for (_, _, seg) in rows}
    # idle owns no service and is on no deployment; solo is on one
    assert teams == {"pay", "solo"}


def test_lead_time_can_start_at_authored_at() -> None:
    records = [
        *SERVICES,
        {
            "type": "change",
            "id": "c1",
            "committed_at": "2024-01-02T00:00:00Z",  # rebased
            "authored_at": "2024-01-01T00:00:00Z",
        },
        {"type": "change", "id": "c2", "committed_at": "2024-01-02T12:00:00Z"},
        dep("d1", "s", "2024-01-03T00:00:00Z", commits=["c1", "c2"]),
    ]
    rows, _ = run(records, metrics=("dora.lead_time_p50",))
    assert value(rows, "dora.lead_time_p50") == pytest.approx((24 + 12) / 2)
    # authored: c1 48 h, c2 has no authored_at so keeps 12 h
    rows, _ = run(records, metrics=("dora.lead_time_p50",), lead_time_start="authored")
    assert value(rows, "dora.lead_time_p50") == pytest.approx((48 + 12) / 2)


def test_explain_says_why_a_deployment_failed() -> None:
    records = [
        *SERVICES,
        dep("d1", "s", "2024-01-02T00:00:00Z"),
        dep("d2", "s", "2024-01-03T00:00:00Z", kind="rollback"),
        dep("d3", "s", "2024-01-04T00:00:00Z", kind="planned"),
        inc("i1", "2024-01-04T01:00:00Z", service="s"),
        dep("x", "s", "2024-01-05T00:00:00Z", environment="staging"),
    ]
    s = load_settings(config=None, environ={})
    with Store.open("duckdb:///:memory:") as store:
        ingest_records(store, records, s, source="test")
        out = explain(store, "dora.change_failure_rate", JAN, {}, s, grain="month", now=NOW)
    by_id = {r["id"]: r for r in out.records}
    assert by_id["d1"]["failed"] and by_id["d1"]["remediated_by"] == ["rollback:d2"]
    assert by_id["d3"]["failed"] and by_id["d3"]["incidents"] == ["i1"]
    assert by_id["d3"]["rules"] == ["window"]
    assert not by_id["d2"]["failed"]
    assert any(n.startswith("excluded_environments:") and "staging (1)" in n for n in out.notes)


def test_definitions_presets_set_the_peers_rules() -> None:
    devlake = load_settings(config=None, environ={}, overrides={"definitions": "devlake"})
    assert devlake.incident_link_window == "unbounded"
    assert (devlake.quantile, devlake.tier_year, devlake.failure_from_remediation) == (
        "lower",
        2021,
        False,
    )
    # an explicit setting beats its preset, from any source
    mixed = load_settings(
        config=None,
        environ={"HEATLENS_DEFINITIONS": "devlake", "HEATLENS_QUANTILE": "linear"},
    )
    assert (mixed.incident_link_window, mixed.quantile) == ("unbounded", "linear")
    fourkeys = load_settings(config=None, environ={}, overrides={"definitions": "fourkeys"})
    assert (fourkeys.incident_link_window, fourkeys.failure_from_remediation) == ("0m", False)
    plain = load_settings(config=None, environ={})
    assert (plain.incident_link_window, plain.failure_from_remediation) == ("7d", True)
