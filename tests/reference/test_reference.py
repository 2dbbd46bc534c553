"""Tests of the DESIGN §4 reference itself, on small fixtures whose answers are computed by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from .heat_dora import (
    Settings,
    failed_deployments,
    glob_match,
    link_incidents,
    nps_ci,
    proportion_ci,
    report,
    settings_for,
    tier,
)

JAN1, FEB1 = date(2024, 1, 1), date(2024, 2, 1)
LATER = datetime(2030, 1, 1, tzinfo=UTC)  # "now" after every period: all rows complete


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def rows(result: dict, metric: str) -> list[dict]:
    return [r for r in result["rows"] if r["metric"] == metric]


def one(result: dict, metric: str, period: str, **segment: Any) -> dict:
    (row,) = [r for r in rows(result, metric) if r["period"] == period and r["segment"] == segment]
    return row


def warned(result: dict) -> dict[str, int]:
    return {w["code"]: w["count"] for w in result["warnings"]}


def answer(
    respondent: str,
    kind: str,
    score: int | None,
    *,
    survey: str = "s",
    question: str = "q",
    team: str | None = None,
    ts: str = "2024-01-03T10:00",
) -> dict:
    return {
        "id": f"{survey}/{question}/{respondent}",
        "survey": survey,
        "question": question,
        "kind": kind,
        "respondent": respondent,
        "ts": t(ts),
        "score": score,
        "team": team,
    }


def deploy(did: str, service: str, finished: str, **fields: Any) -> dict:
    return {"id": did, "service": service, "finished_at": t(finished), **fields}


# --------------------------------------------------------------------------- intervals


def test_nps_worked_example() -> None:
    # n' = 103, p̃P = 50.75/103 = .49272, p̃D = 20.75/103 = .20146, d = .29126;
    # √((.69417 − .08483)/103) = .07692; ± 1.959964 × .07692 = ± .15075 → [14.05, 44.20]
    lo, hi = nps_ci(50, 20, 100)
    assert (round(lo, 2), round(hi, 2)) == (14.05, 44.20)
    scores = [10] * 50 + [3] * 20 + [8] * 30
    answers = [answer(f"p{i}", "nps", s) for i, s in enumerate(scores)]
    result = report(
        {"survey_response": answers}, grain="all", start=JAN1, end=FEB1, metrics=("happiness.nps",)
    )
    (row,) = rows(result, "happiness.nps")
    assert row["value"] == pytest.approx(30.0)  # 100 × (50 − 20) / 100, unadjusted
    assert row["n"] == 100
    assert [round(x, 2) for x in row["ci"]] == [14.05, 44.20]


def test_proportion_interval() -> None:
    # z² = 3.841459; 8/10: p̃ = (8 + 1.920729)/13.841459 = .716740,
    # half = 1.959964 × √(.716740 × .283260 / 13.841459) = .237373 → [.47937, .95411]
    usage = [
        {"id": f"u{i}", "ts": t("2024-01-02T10:00"), "capability": "ci", "team": "a", "outcome": o}
        for i, o in enumerate(["success"] * 8 + ["error", "failure"])
    ]
    result = report({"usage": usage}, grain="all", start=JAN1, end=FEB1, metrics=("task",))
    success = one(result, "task.success_rate", "2024-01-01")
    assert (success["value"], success["n"]) == (0.8, 10)
    assert success["ci"] == pytest.approx([0.47937, 0.95411], abs=1e-5)
    assert one(result, "task.error_rate", "2024-01-01")["value"] == 0.1
    assert one(result, "task.abandon_rate", "2024-01-01")["value"] == 0.0
    assert one(result, "task.attempts", "2024-01-01")["ci"] is None
    # 0/5: p̃ = 1.920729/8.841459 = .217241, half = .271813 → lower bound clipped to 0
    lo, hi = proportion_ci(0, 5)
    assert lo == 0.0
    assert hi == pytest.approx(0.489054, abs=1e-5)


# --------------------------------------------------------------------------- periods


def test_empty_periods_count_zero_and_omit_proportions() -> None:
    records = {
        "usage": [
            {"id": "u1", "ts": t("2024-01-02T10:00"), "capability": "ci", "actor": "ana"},
            {"id": "u2", "ts": t("2024-01-03T10:00"), "capability": "ci", "outcome": "success"},
        ],
        # (v2) a known kind: the change failure rate rests on a signal (see no_failure_signal)
        "deployment": [deploy("d1", "s", "2024-01-02T12:00", kind="planned")],
    }
    metrics = (
        "adoption.active_users",
        "task.attempts",
        "task.success_rate",
        "dora.deployments",
        "dora.deployment_frequency",
        "dora.change_failure_rate",
    )
    result = report(records, grain="week", start=JAN1, end=date(2024, 1, 22), metrics=metrics)
    for week in ("2024-01-08", "2024-01-15"):
        assert one(result, "adoption.active_users", week)["value"] == 0
        assert one(result, "task.attempts", week)["value"] == 0
        assert one(result, "dora.deployments", week)["value"] == 0
        assert one(result, "dora.deployment_frequency", week)["value"] == 0.0
    # proportions: only the week with observations
    assert [r["period"] for r in rows(result, "task.success_rate")] == ["2024-01-01"]
    assert [r["period"] for r in rows(result, "dora.change_failure_rate")] == ["2024-01-01"]
    assert one(result, "dora.change_failure_rate", "2024-01-01")["value"] == 0.0


def test_clipped_periods_and_per_day_rate() -> None:
    # --from Wed 2024-01-03, --to Wed 2024-01-17: weeks clipped to Wed–Sun (5 days), Mon–Sun (7),
    # Mon–Tue (2 days); deployments on Jan 2 and Jan 17 are outside the range.
    records = {
        "deployment": [
            deploy("d0", "s", "2024-01-02T10:00"),
            deploy("d1", "s", "2024-01-04T10:00"),
            deploy("d2", "s", "2024-01-07T23:59"),
            deploy("d3", "s", "2024-01-09T10:00"),
            deploy("d4", "s", "2024-01-16T10:00"),
            deploy("d5", "s", "2024-01-17T00:00"),
        ]
    }
    now = t("2024-01-16T12:00")
    kw: dict[str, Any] = {"start": date(2024, 1, 3), "end": date(2024, 1, 17), "now": now}
    result = report(records, grain="week", metrics=("dora.deployment_frequency",), **kw)
    got = [(r["period"], r["value"], r["n"], r["complete"]) for r in result["rows"]]
    assert got == [
        ("2024-01-03", 2 / 5, 2, True),
        ("2024-01-08", 1 / 7, 1, True),
        ("2024-01-15", 1 / 2, 1, False),  # ends Jan 17 00:00 > now
    ]
    assert all(r["tier"] is None for r in result["rows"])  # weekly, no team/service
    (whole,) = report(records, grain="all", metrics=("dora.deployments",), **kw)["rows"]
    assert (whole["period"], whole["value"]) == ("2024-01-03", 4)


# --------------------------------------------------------------------------- DORA


def test_change_shipped_by_two_services() -> None:
    records = {
        "change": [{"id": "c1", "committed_at": t("2024-01-01T00:00")}],
        "deployment": [
            # service A: first deployment containing c1 is dA1 (+10 h); dA2 ships it again
            deploy("dA1", "A", "2024-01-01T10:00", commits=["c1", "c0"]),
            deploy("dA2", "A", "2024-01-02T00:00", commit_sha="c1"),
            # service B: a tie at +20 h, lowest id dB1 wins (environment "prod"), only commit_sha
            deploy("dB2", "B", "2024-01-01T20:00", commit_sha="c1", environment="production"),
            deploy("dB1", "B", "2024-01-01T20:00", commit_sha="c1", environment="prod"),
        ],
    }
    kw: dict[str, Any] = {"grain": "all", "start": JAN1, "end": FEB1, "now": LATER}
    result = report(records, metrics=("dora.lead_time",), **kw)
    p50, p90 = one(result, "dora.lead_time_p50", "2024-01-01"), rows(result, "dora.lead_time_p90")
    assert (p50["value"], p50["n"]) == (15.0, 2)  # linear over [10, 20]
    assert p90[0]["value"] == pytest.approx(19.0)  # 10 + 0.9 × 10
    lower = report(records, metrics=("dora.lead_time",), settings=Settings(quantile="lower"), **kw)
    assert [r["value"] for r in lower["rows"]] == [10.0, 10.0]  # sorted[floor(0.5)], [floor(.9)]
    by_service = report(records, metrics=("dora.lead_time_p50",), by=("service",), **kw)
    assert one(by_service, "dora.lead_time_p50", "2024-01-01", service="A")["value"] == 10.0
    assert one(by_service, "dora.lead_time_p50", "2024-01-01", service="B")["value"] == 20.0
    by_env = report(records, metrics=("dora.lead_time_p50",), by=("environment",), **kw)
    assert [(r["segment"], r["value"]) for r in by_env["rows"]] == [
        ({"environment": "prod"}, 20.0),
        ({"environment": "production"}, 10.0),
    ]


def test_commit_sha_only_ships_one_change_and_negative_lead_dropped() -> None:
    records = {
        "service": [
            {"id": "s", "team": "a", "created_at": t("2023-12-31T00:00")},
            {"id": "t", "team": "a", "created_at": t("2024-01-10T00:00")},
            {"id": "u", "team": "a"},
        ],
        "change": [
            {"id": "c1", "committed_at": t("2024-01-03T00:00")},
            {"id": "c2", "committed_at": t("2024-01-01T00:00")},
            {"id": "c7", "committed_at": t("2024-01-01T00:00")},  # parent of c8, never inferred
            {"id": "c8", "committed_at": t("2024-01-08T00:00")},
        ],
        "deployment": [
            # (v2) stored history starts Dec 30, so s (created Dec 31) is not older than it
            deploy("du", "u", "2023-12-30T00:00"),
            deploy("d0", "s", "2024-01-01T12:00", result="failure", commit_sha="c2"),
            deploy("d1", "s", "2024-01-02T00:00", commits=["c1", "c2"]),
            deploy("d2", "s", "2024-01-04T00:00", commit_sha="c1"),
            deploy("d3", "s", "2024-01-05T00:00", commit_sha="c9", kind="hotfix"),
            deploy("d4", "s", "2024-01-06T00:00", environment="Prod", kind="rollback"),
            deploy("d5", "s", "2024-01-06T00:00", environment="staging", commit_sha="c1"),
            deploy("d6", "t", "2024-01-09T00:00", commit_sha="c8"),
        ],
        "incident": [
            # recovery 3 h (Jan 4 00:00 → 03:00), restore 2 h
            {
                "id": "i1",
                "opened_at": t("2024-01-04T01:00"),
                "resolved_at": t("2024-01-04T03:00"),
                "deployment_id": "d2",
            },
            # resolved before d2 finished: recovery −12 h dropped; restore 12 h
            {
                "id": "i2",
                "opened_at": t("2024-01-03T00:00"),
                "resolved_at": t("2024-01-03T12:00"),
                "deployment_id": "d2",
            },
            # no service, no fields: unlinked; restore 6 h
            {"id": "i3", "opened_at": t("2024-01-05T00:00"), "resolved_at": t("2024-01-05T06:00")},
        ],
    }
    result = report(records, grain="all", start=JAN1, end=FEB1, metrics=("dora", "efficiency"))

    def value(metric: str) -> Any:
        return one(result, metric, "2024-01-01")["value"]

    def value_n(metric: str) -> tuple[Any, Any]:
        row = one(result, metric, "2024-01-01")
        return (row["value"], row["n"])

    # DORA deployments: d1, d2, d3, d4 ("Prod" is production), d6; not d0 (failed), d5 (staging)
    assert value("dora.deployments") == 5
    assert value("dora.deployment_frequency") == pytest.approx(5 / 31)
    # c1 → s: first deployment containing it is d1 (−24 h, dropped, not replaced by d2);
    # c2 → s: d1, +24 h; c8 → t: d6, +24 h; c7 is shipped by nothing
    assert value_n("dora.lead_time_p50") == (24.0, 2)
    # (v2) d2 linked (i1, i2); d3's hotfix remediates d2; d4's rollback remediates the latest
    # earlier non-rollback deployment of s, the hotfix d3 → failed {d2, d3} of 5
    assert value("dora.change_failure_rate") == pytest.approx(2 / 5)
    # (v2) kinds known only for d3 (hotfix) and d4 (rollback): 2 of 2
    assert value_n("dora.rework_rate") == (1.0, 2)
    assert value_n("dora.recovery_time_p50") == (3.0, 1)  # i2 dropped
    assert value("dora.time_to_restore_p50") == 6.0  # median of [2, 12, 6]
    # s: created Dec 31, first successful production deployment d1 Jan 2 → 2 days (d0 failed);
    # t: created Jan 10, first deployment Jan 9 → −1 day, dropped
    assert value_n("efficiency.time_to_first_deploy") == (2.0, 1)
    assert warned(result) == {
        "negative_lead_time": 1,
        "negative_recovery_time": 1,
        "negative_time_to_first_deploy": 1,
        "deployment_without_commits": 1,  # d4
        "unlinked_incidents": 1,  # i3
        "excluded_environments": 1,  # d5 (staging)
        "unknown_changes": 1,  # c9, shipped by d3
    }


def test_incident_link_rules() -> None:
    deployments = [
        deploy("d1", "s1", "2024-01-01T00:00", commits=["a1", "a2"]),
        deploy("d2", "s1", "2024-01-05T00:00", commit_sha="a3"),
        deploy("d3", "s2", "2024-01-02T00:00", commits=["a2"]),
        deploy("d4", "s2", "2024-01-20T00:00", commit_sha="a9"),
        deploy("dfail", "s1", "2024-01-06T00:00", result="failure"),
        deploy("dstg", "s1", "2024-01-06T00:00", environment="staging"),
    ]

    def incident(iid: str, opened: str, **fields: Any) -> dict:
        return {"id": iid, "opened_at": t(opened), **fields}

    incidents = [
        incident("i1", "2024-01-05T01:00", deployment_id="d2"),
        # rule 1 decides alone: dangling deployment_id, root_cause_sha is not tried
        incident("i2", "2024-01-05T01:00", deployment_id="nope", root_cause_sha="a1"),
        incident("i3", "2024-01-06T01:00", deployment_id="dfail"),  # not successful
        incident("i3b", "2024-01-06T01:00", deployment_id="dstg"),  # not production
        incident("i4", "2024-01-03T00:00", root_cause_sha="a2", service="s2"),  # d3, not d1
        incident("i5", "2024-01-03T00:00", root_cause_sha="a2"),  # first containing a2: d1
        # dangling root_cause_sha: unlinked, no fallback to the window
        incident("i6", "2024-01-05T01:00", root_cause_sha="zzz", service="s1"),
        # window: d1 (exactly 7 days before) and d2 (3 days) qualify; largest finished_at wins
        incident("i7", "2024-01-08T00:00", service="s1"),
        incident("i8", "2024-01-06T00:00", service="s1", cause="external"),
        incident("i9", "2024-01-12T00:00:00", service="s1"),  # d2 + 7 d exactly: links
        incident("i10", "2024-01-12T00:00:01", service="s1"),  # d2 + 7 d + 1 s: unlinked
        incident("i11", "2024-01-12T00:00:00"),  # no service
        incident("i12", "2024-01-01T12:00", service="s2", cause="change"),  # d3 is later
    ]
    records = {"deployment": deployments, "incident": incidents}
    assert link_incidents(records, Settings()) == {
        "i1": ("d2", "deployment_id"),
        "i2": (None, "unlinked"),
        "i3": (None, "unlinked"),
        "i3b": (None, "unlinked"),
        "i4": ("d3", "root_cause_sha"),
        "i5": ("d1", "root_cause_sha"),
        "i6": (None, "unlinked"),
        "i7": ("d2", "window"),
        "i8": (None, "unlinked"),
        "i9": ("d2", "window"),
        "i10": (None, "unlinked"),
        "i11": (None, "unlinked"),
        "i12": (None, "unlinked"),
    }
    unbounded = link_incidents(records, Settings(incident_link_window=None))
    assert unbounded["i10"] == ("d2", "window")
    assert unbounded["i12"] == (None, "unlinked")
    result = report(
        records, grain="all", start=JAN1, end=FEB1, metrics=("dora.change_failure_rate",)
    )
    # d1, d2, d3 linked, d4 not → 3/4; unlinked and not external: i2 i3 i3b i6 i10 i11 i12
    assert one(result, "dora.change_failure_rate", "2024-01-01")["value"] == 0.75
    assert warned(result)["unlinked_incidents"] == 7


# --------------------------------------------------------------------------- adoption


def test_adoption_teams_groups_eligibility_retention() -> None:
    records = {
        "team": [
            {"id": "eng"},
            {"id": "a", "parent": "eng"},
            {"id": "b", "parent": "eng"},
            {"id": "c", "parent": "eng", "archived_at": t("2024-01-05T00:00")},
            {"id": "d", "parent": "eng", "created_at": t("2024-01-10T00:00")},
            {"id": "solo"},
        ],
        "membership": [
            {
                "actor": "ana",
                "team": "a",
                "from": t("2023-12-01T00:00"),
                "to": t("2024-01-10T00:00"),
            },
            {"actor": "ana", "team": "solo", "from": t("2024-01-10T00:00")},
        ],
        "service": [{"id": "svc", "team": "b"}],
        "capability": [
            {"id": "ci", "launched_at": t("2024-01-02T00:00"), "eligible": ["a", "b", "c", "d"]}
        ],
        "usage": [
            {"id": "u1", "ts": t("2024-01-03T10:00"), "capability": "ci", "actor": "ana"},  # a
            {"id": "u2", "ts": t("2024-01-04T10:00"), "capability": "ci", "service": "svc"},  # b
            {"id": "u3", "ts": t("2024-01-09T10:00"), "capability": "ci", "actor": "ana"},  # a
            {"id": "u4", "ts": t("2024-01-11T10:00"), "capability": "ci", "actor": "ana"},  # solo
            {
                "id": "u5",
                "ts": t("2024-01-16T10:00"),
                "capability": "ci",
                "team": "d",
                "actor": "bo",
            },
            {
                "id": "u6",
                "ts": t("2024-01-17T10:00"),
                "capability": "ci",
                "service": "svc",
                "actor": "bo",
            },
        ],
    }
    kw: dict[str, Any] = {"grain": "week", "start": date(2024, 1, 8), "end": date(2024, 1, 22)}
    overall = report(records, metrics=("adoption",), **kw)
    w2, w3 = "2024-01-08", "2024-01-15"

    def v(result: dict, metric: str, period: str, **segment: Any) -> Any:
        return one(result, f"adoption.{metric}", period, **segment)["value"]

    # active: W2 {a, solo}, W3 {d, b}; eligible: non-group, existing teams {a, b, d, solo}
    assert [v(overall, "active_teams", p) for p in (w2, w3)] == [2, 2]
    assert [v(overall, "active_users", p) for p in (w2, w3)] == [1, 1]
    assert [v(overall, "eligible_teams", p) for p in (w2, w3)] == [4, 4]
    assert [v(overall, "team_adoption_rate", p) for p in (w2, w3)] == [0.5, 0.5]
    # first usage: a, b in W1 (before --from), solo W2, d W3
    assert [v(overall, "new_teams", p) for p in (w2, w3)] == [1, 1]
    # W1 {a, b} → W2 {a, solo}: 1/2; W2 {a, solo} → W3 {d, b}: 0/2
    assert [v(overall, "team_retention", p) for p in (w2, w3)] == [0.5, 0.0]
    assert warned(overall)["ineligible_active_teams"] == 1  # (W2, ci, solo)

    by_cap = report(records, metrics=("adoption",), by=("capability",), **kw)
    # eligible for ci: {a, b, d}; W2 active ∩ = {a} → 1/3, W3 {d, b} → 2/3
    assert v(by_cap, "eligible_teams", w2, capability="ci") == 3
    assert v(by_cap, "team_adoption_rate", w2, capability="ci") == pytest.approx(1 / 3)
    assert v(by_cap, "team_adoption_rate", w3, capability="ci") == pytest.approx(2 / 3)

    by_group = report(records, metrics=("adoption",), by=("group",), **kw)
    assert v(by_group, "active_teams", w2, group="eng") == 1
    assert v(by_group, "active_teams", w2, group="solo") == 1
    assert v(by_group, "active_teams", w3, group="solo") == 0  # zero-filled
    assert v(by_group, "eligible_teams", w2, group="eng") == 3
    assert v(by_group, "team_adoption_rate", w3, group="solo") == 0.0  # eligible exist → 0


# --------------------------------------------------------------------------- happiness


def test_happiness_values_and_response_rate() -> None:
    records = {
        "survey": [{"id": "s", "opens_at": t("2024-01-02T00:00"), "k": 3}],
        "survey_response": [
            *(answer(p, "csat", s, team="a") for p, s in zip("wxyz", [5, 4, 2, 3], strict=True)),
            *(
                answer(p, "likert", s, question="l", team="a")
                for p, s in zip("wxyz", [1, 2, 4, 5], strict=True)
            ),
            answer("w", "text", None, question="free", team="a"),
        ],
        "survey_invitation": [
            {"survey": "s", "team": "a", "invited": 6},
            {"survey": "s", "team": "a", "invited": 2, "batch": "late"},
        ],
    }
    result = report(records, grain="all", start=JAN1, end=FEB1, metrics=("happiness",))

    def row(metric: str) -> dict:
        return one(result, f"happiness.{metric}", "2024-01-01", survey="s")

    assert (row("respondents")["value"], row("respondents")["n"]) == (4, 4)
    assert (row("csat")["value"], row("csat")["n"]) == (0.5, 4)  # 2 of 4 answers ≥ 4
    assert row("likert_mean")["value"] == 3.0
    assert row("likert_median")["value"] == 3.0  # linear between 2 and 4
    assert row("response_rate")["value"] == 0.5  # 4 of 6 + 2 invited
    assert "happiness.nps" not in {r["metric"] for r in result["rows"]}  # no nps answers
    lower = report(
        records,
        grain="all",
        start=JAN1,
        end=FEB1,
        metrics=("happiness.likert_median",),
        settings=Settings(quantile="lower"),
    )
    assert lower["rows"][0]["value"] == 2  # sorted[floor(1.5)]


def _team_answers(sizes: dict[str | None, int]) -> list[dict]:
    return [
        answer(f"{team}-{i}", "csat", 5, team=team)
        for team, size in sizes.items()
        for i in range(size)
    ]


def _respondents_by_team(answers: list[dict], k: int = 5) -> dict[str | None, Any]:
    records = {"survey": [{"id": "s", "k": k}], "survey_response": answers}
    result = report(
        records, grain="all", start=JAN1, end=FEB1, by=("team",), metrics=("happiness.respondents",)
    )
    assert warned(result).get("suppressed_segments", 0) == sum(
        r["suppressed"] for r in result["rows"]
    )
    return {r["segment"]["team"]: None if r["suppressed"] else r["value"] for r in result["rows"]}


def test_anonymity_threshold_four_and_five() -> None:
    records = {"survey": [{"id": "s", "k": 5}]}
    for size, visible in ((4, None), (5, 5)):
        result = report(
            {**records, "survey_response": _team_answers({"a": size})},
            grain="all",
            start=JAN1,
            end=FEB1,
            metrics=("happiness.respondents", "happiness.csat"),
        )
        assert [r["value"] for r in result["rows"]] == [visible, None if visible is None else 1.0]
        assert all(r["suppressed"] == (visible is None) for r in result["rows"])
        if visible is None:
            assert all(r["n"] is None and r["ci"] is None for r in result["rows"])
    # by team: a (4) suppressed; it is the only one → the smallest visible, b (5), too; c shown
    assert _respondents_by_team(_team_answers({"a": 4, "b": 5, "c": 6})) == {
        "a": None,
        "b": None,
        "c": 6,
    }


def test_two_small_segments_cover_each_other() -> None:
    # a, b suppressed: two segments with 3 + 3 ≥ 5 respondents → nothing else suppressed
    assert _respondents_by_team(_team_answers({"a": 3, "b": 3, "c": 6})) == {
        "a": None,
        "b": None,
        "c": 6,
    }


def test_complementary_suppression() -> None:
    # a, b suppressed with 2 + 2 < 5 → the smallest visible, c (6), too; then 10 ≥ 5
    got = _respondents_by_team(_team_answers({"a": 2, "b": 2, "c": 6, "d": 7}))
    assert got == {"a": None, "b": None, "c": None, "d": 7}
    # null team counts as a segment; x and y tie at 6 → lowest value x is suppressed
    got = _respondents_by_team(_team_answers({None: 4, "x": 6, "y": 6}))
    assert got == {None: None, "x": None, "y": 6}


def test_complementary_suppression_on_each_margin() -> None:
    # k = 3; cells (team, question): a: q1 3, q2 3, q3 4; b: q1 2, q2 5, q3 6.
    # (b,q1) < 3; margin q1 → (a,q1); margin a → (a,q2) (smallest visible); margin b → (b,q2).
    sizes = {("a", "q1"): 3, ("a", "q2"): 3, ("a", "q3"): 4, ("b", "q1"): 2, ("b", "q2"): 5}
    sizes[("b", "q3")] = 6
    answers = [
        answer(f"{team}{i}", "likert", 3, team=team, question=q)
        for (team, q), size in sizes.items()
        for i in range(size)
    ]
    records = {"survey": [{"id": "s", "k": 3}], "survey_response": answers}
    result = report(
        records,
        grain="all",
        start=JAN1,
        end=FEB1,
        by=("team", "question"),
        metrics=("happiness.respondents",),
    )
    shown = {
        (r["segment"]["team"], r["segment"]["question"]): r["value"]
        for r in result["rows"]
        if not r["suppressed"]
    }
    assert shown == {("a", "q3"): 4, ("b", "q3"): 6}
    assert warned(result)["suppressed_segments"] == 4


def test_wave_straddling_a_week_boundary() -> None:
    # s1 opens Fri Jan 5 (k 3): 3 answers that Friday, 2 on Mon Jan 8 → all in week Jan 1.
    # s2 has no record (k 5): first answer Sun Jan 7, 4 more Tue Jan 9 → all in week Jan 1.
    answers = [
        *(answer(f"p{i}", "csat", 4, survey="s1", ts="2024-01-05T12:00") for i in range(3)),
        *(answer(f"p{i}", "csat", 4, survey="s1", ts="2024-01-08T09:00") for i in range(3, 5)),
        answer("r0", "csat", 2, survey="s2", ts="2024-01-07T20:00"),
        *(answer(f"r{i}", "csat", 2, survey="s2", ts="2024-01-09T09:00") for i in range(1, 5)),
    ]
    records = {"survey": [{"id": "s1", "opens_at": t("2024-01-05T09:00"), "k": 3}]}
    records["survey_response"] = answers
    kw: dict[str, Any] = {"grain": "week", "start": JAN1, "end": date(2024, 1, 15)}
    result = report(records, metrics=("happiness.respondents", "happiness.csat"), **kw)
    # (v2) never pooled across waves: one row per wave, even without --by survey
    assert one(result, "happiness.respondents", "2024-01-01", survey="s1")["value"] == 5
    assert one(result, "happiness.respondents", "2024-01-01", survey="s2")["value"] == 5
    assert not [r for r in result["rows"] if r["period"] == "2024-01-08"]  # no wave, no row
    assert one(result, "happiness.csat", "2024-01-01", survey="s1")["value"] == 1.0
    assert one(result, "happiness.csat", "2024-01-01", survey="s2")["value"] == 0.0
    assert [r["period"] for r in rows(result, "happiness.csat")] == ["2024-01-01"] * 2
    by_survey = report(records, metrics=("happiness.respondents",), by=("survey",), **kw)
    got = [(r["period"], r["segment"]["survey"], r["value"]) for r in by_survey["rows"]]
    assert got == [("2024-01-01", "s1", 5), ("2024-01-01", "s2", 5)]


# ----------------------------------------------------- (v2) anonymity across queries, by hand


def _shown(result: dict, metric: str, *keys: str) -> dict[Any, Any]:
    """segment values of `keys` (one key: the value itself) → value, or None when suppressed."""
    out = {}
    for r in rows(result, metric):
        cell = tuple(r["segment"].get(k) for k in keys)
        out[cell[0] if len(keys) == 1 else cell] = None if r["suppressed"] else r["value"]
    return out


def test_group_minus_its_visible_teams_recovers_no_team() -> None:
    # DESIGN §4 v2, issue 14: group g of teams a (3 respondents) and b (10); group h of team c
    # (10); k = 5. Team a is under k; it is g's only hidden team, so b is hidden too (g − b
    # would be a). Org and groups stay visible: org − h = g, g has no visible team to
    # subtract, and org − c = a + b (13 people).
    teams = [{"id": "g"}, {"id": "h"}, {"id": "a", "parent": "g"}]
    teams += [{"id": "b", "parent": "g"}, {"id": "c", "parent": "h"}]
    answers = [answer(f"a{i}", "csat", 1, team="a") for i in range(3)]
    answers += [answer(f"{t}{i}", "csat", 5, team=t) for t in "bc" for i in range(10)]
    records = {"team": teams, "survey": [{"id": "s", "k": 5}], "survey_response": answers}
    kw: dict[str, Any] = {"grain": "all", "start": JAN1, "end": FEB1}
    metric = ("happiness.csat",)
    assert _shown(
        report(records, by=("team",), metrics=metric, **kw), "happiness.csat", "team"
    ) == {
        "a": None,
        "b": None,
        "c": 1.0,
    }
    by_group = report(records, by=("group",), metrics=metric, **kw)
    assert _shown(by_group, "happiness.csat", "group") == {"g": 10 / 13, "h": 1.0}
    overall = report(records, metrics=metric, **kw)
    assert _shown(overall, "happiness.csat", "survey") == {"s": 20 / 23}
    both = report(records, by=("group", "team"), metrics=metric, **kw)
    assert _shown(both, "happiness.csat", "group", "team") == {
        ("g", "a"): None,
        ("g", "b"): None,
        ("h", "c"): 1.0,
    }


def test_a_range_of_two_waves_is_one_row_per_wave() -> None:
    # Team a: 10 people in wave s1, 3 in s2; team b: 10 in each; k = 5; both waves in January.
    # v1 pooled a's 13 in a month row, and a's s1 row (10) subtracted from it gave s2's 3.
    # v2: one row per wave; (a, s2) is under k and b is hidden with it.
    answers = [
        answer(f"{t}{i}", "csat", 5, team=t, survey="s1", ts="2024-01-03T10:00")
        for t in "ab"
        for i in range(10)
    ]
    answers += [
        answer(f"a{i}", "csat", 1, team="a", survey="s2", ts="2024-01-20T10:00") for i in range(3)
    ]
    answers += [
        answer(f"b{i}", "csat", 5, team="b", survey="s2", ts="2024-01-20T10:00") for i in range(10)
    ]
    surveys = [
        {"id": "s1", "k": 5, "opens_at": t("2024-01-03T00:00")},
        {"id": "s2", "k": 5, "opens_at": t("2024-01-20T00:00")},
    ]
    records = {"survey": surveys, "survey_response": answers}
    metric = ("happiness.csat",)
    for grain in ("month", "all"):
        kw: dict[str, Any] = {"grain": grain, "start": JAN1, "end": FEB1, "metrics": metric}
        by_team = report(records, by=("team",), **kw)
        assert _shown(by_team, "happiness.csat", "survey", "team") == {
            ("s1", "a"): 1.0,
            ("s1", "b"): 1.0,
            ("s2", "a"): None,
            ("s2", "b"): None,
        }
        assert _shown(report(records, **kw), "happiness.csat", "survey") == {
            "s1": 1.0,
            "s2": 10 / 13,
        }
    # a shorter range holding only s1 shows the same s1 rows: waves are atomic
    first_half = report(
        records, by=("team",), grain="all", start=JAN1, end=date(2024, 1, 15), metrics=metric
    )
    assert _shown(first_half, "happiness.csat", "survey", "team") == {
        ("s1", "a"): 1.0,
        ("s1", "b"): 1.0,
    }


def test_one_person_in_two_hidden_questions_counts_once() -> None:
    # k = 5, one team. q1 and q2 are answered by the same 3 people, q3 by 10. q1 and q2 are
    # hidden but together cover 3 people, not 6: the overall value minus q3 would describe
    # those 3, so q3 is hidden too. With q2 answered by 3 other people, q1 + q2 cover 6 ≥ 5
    # and q3 stays visible.
    def records(q2_people: str) -> dict[str, list[dict]]:
        answers = [answer(f"p{i}", "likert", 2, question="q1") for i in range(3)]
        answers += [answer(f"{q2_people}{i}", "likert", 4, question="q2") for i in range(3)]
        answers += [answer(f"p{i}", "likert", 5, question="q3") for i in range(10)]
        return {"survey": [{"id": "s", "k": 5}], "survey_response": answers}

    kw: dict[str, Any] = {
        "grain": "all",
        "start": JAN1,
        "end": FEB1,
        "metrics": ("happiness.likert_mean",),
    }
    same = report(records("p"), by=("question",), **kw)
    assert _shown(same, "happiness.likert_mean", "question") == {"q1": None, "q2": None, "q3": None}
    # the overall mean (10 people) stays visible: nothing visible is subtracted from it
    overall = report(records("p"), **kw)
    assert _shown(overall, "happiness.likert_mean", "survey") == {"s": (6 + 12 + 50) / 16}
    others = report(records("x"), by=("question",), **kw)
    assert _shown(others, "happiness.likert_mean", "question") == {
        "q1": None,
        "q2": None,
        "q3": 5.0,
    }


def test_continuous_survey_months_and_coarser_periods() -> None:
    # A continuous survey (k 3): 5 answers in January, 2 in February, none in March. A month
    # is a wave: January shown, February hidden; the quarter is shown only when each of its
    # months is shown or empty, so Q1 is hidden (Q1 − January would be February).
    def records(feb: int, mar: int) -> dict[str, list[dict]]:
        answers = [
            answer(f"j{i}", "csat", 5, survey="pulse", ts="2024-01-10T10:00") for i in range(5)
        ]
        answers += [
            answer(f"f{i}", "csat", 1, survey="pulse", ts="2024-02-10T10:00") for i in range(feb)
        ]
        answers += [
            answer(f"m{i}", "csat", 4, survey="pulse", ts="2024-03-10T10:00") for i in range(mar)
        ]
        return {"survey": [{"id": "pulse", "k": 3, "continuous": True}], "survey_response": answers}

    kw: dict[str, Any] = {"start": JAN1, "end": date(2024, 4, 1), "metrics": ("happiness.csat",)}
    monthly = report(records(2, 0), grain="month", **kw)
    assert [(r["period"], r["value"], r["suppressed"]) for r in monthly["rows"]] == [
        ("2024-01-01", 1.0, False),
        ("2024-02-01", None, True),
    ]
    assert [r["suppressed"] for r in report(records(2, 0), grain="quarter", **kw)["rows"]] == [True]
    # February empty, March shown: the quarter pools January and March
    quarter = report(records(0, 4), grain="quarter", **kw)
    assert [(r["value"], r["n"]) for r in quarter["rows"]] == [(1.0, 9)]
    # a clipped first month does not split January's wave: it is counted where the month starts
    clipped = report(records(2, 0), grain="month", **{**kw, "start": date(2024, 1, 15)})
    assert [(r["period"], r["suppressed"]) for r in clipped["rows"]] == [("2024-02-01", True)]
    # at grain week its answers are left out, with a warning naming the field
    weekly = report(records(2, 0), grain="week", start=JAN1, end=FEB1)
    assert not rows(weekly, "happiness.csat")
    assert warned(weekly)["continuous_survey_grain"] == 5


def _continuous_records() -> dict[str, list[dict]]:
    survey = {"id": "pulse", "k": 3, "continuous": True}
    return {"survey": [survey], "survey_response": [answer("p", "csat", 5, survey="pulse")]}


# --------------------------------------------------------------------------- time zones, tiers


def test_timezone_moves_a_record_across_a_week_boundary() -> None:
    # Sun 2024-01-07 23:30 UTC is Mon 00:30 in Berlin; Mon 2024-01-08 03:00 UTC is Sun 22:00 in
    # New York
    usage = [
        {"id": "u1", "ts": t("2024-01-07T23:30"), "capability": "ci", "actor": "ana"},
        {"id": "u2", "ts": t("2024-01-08T03:00"), "capability": "ci", "actor": "bo"},
    ]
    expected = {
        "UTC": {"2024-01-01": 1, "2024-01-08": 1},
        "Europe/Berlin": {"2024-01-01": 0, "2024-01-08": 2},
        "America/New_York": {"2024-01-01": 2, "2024-01-08": 0},
    }
    for zone, counts in expected.items():
        result = report(
            {"usage": usage},
            grain="week",
            start=JAN1,
            end=date(2024, 1, 15),
            metrics=("adoption.active_users",),
            settings=Settings(timezone=zone),
        )
        assert {r["period"]: r["value"] for r in result["rows"]} == counts, zone
    # DST starts in Berlin on Sun 2024-03-31: the week still has 7 days for per-day rates
    deployments = [deploy(f"d{i}", "s", f"2024-03-{25 + i}T12:00") for i in range(7)]
    (row,) = report(
        {"deployment": deployments},
        grain="week",
        start=date(2024, 3, 25),
        end=date(2024, 4, 1),
        metrics=("dora.deployment_frequency",),
        settings=Settings(timezone="Europe/Berlin"),
    )["rows"]
    assert row["value"] == 1.0


def test_tier_thresholds() -> None:
    cases_2023 = {
        "dora.deployment_frequency": [(1.0, "elite"), (1 / 7, "high"), (1 / 30, "medium")],
        "dora.lead_time_p50": [(23.9, "elite"), (24.0, "high"), (168.0, "medium"), (720.0, "low")],
        "dora.change_failure_rate": [(0.05, "elite"), (0.10, "high"), (0.15, "medium")],
        "dora.recovery_time_p50": [(0.9, "elite"), (1.0, "high"), (24.0, "medium"), (168, "low")],
    }
    cases_2023["dora.deployment_frequency"].append((0.03, "low"))
    cases_2023["dora.change_failure_rate"].append((0.151, "low"))
    cases_2021 = {
        "dora.deployment_frequency": [(1.0, "elite"), (1 / 30, "high"), (1 / 182, "medium")],
        "dora.lead_time_p50": [(0.5, "elite"), (1.0, "high"), (168.0, "medium"), (4368, "low")],
        "dora.change_failure_rate": [(0.15, "elite"), (0.20, "high"), (0.30, "medium")],
        "dora.time_to_restore_p50": [(0.5, "elite"), (23.0, "high"), (24.0, "medium")],
    }
    cases_2021["dora.deployment_frequency"].append((0.005, "low"))
    cases_2021["dora.change_failure_rate"].append((0.31, "low"))
    cases_2021["dora.time_to_restore_p50"].append((168.0, "low"))
    for year, cases in ((2023, cases_2023), (2021, cases_2021)):
        for metric, pairs in cases.items():
            for value, expected in pairs:
                assert tier(metric, value, year) == expected, (year, metric, value)
    with pytest.raises(ValueError):
        tier("dora.time_to_restore_p50", 1.0, 2023)
    with pytest.raises(ValueError):
        tier("dora.recovery_time_p50", 1.0, 2021)

    # on rows: month grain by service gets tiers, the org-wide row does not
    deployments = [
        deploy(f"d{i}", "s", (datetime(2024, 1, 1, 12, tzinfo=UTC) + timedelta(days=i)).isoformat())
        for i in range(31)
    ]
    kw: dict[str, Any] = {"grain": "month", "start": JAN1, "end": FEB1}
    metric = ("dora.deployment_frequency",)
    by_service = report({"deployment": deployments}, by=("service",), metrics=metric, **kw)
    assert [(r["value"], r["tier"]) for r in by_service["rows"]] == [(1.0, "elite")]
    overall = report({"deployment": deployments}, metrics=metric, **kw)
    assert [r["tier"] for r in overall["rows"]] == [None]


# --------------------------------------------------------------------------- v2: DORA


def test_production_environments_are_globs() -> None:
    # glob: `*` and `?` wildcards, case-insensitive, `[` literal (so `*[bot]` means "ends in [bot]")
    assert glob_match("prod-eu", "prod-*") and glob_match("PROD-US", "prod-*")
    assert not glob_match("preprod", "prod-*") and not glob_match("prod", "prod-*")
    assert glob_match("renovate[bot]", "*[bot]") and not glob_match("robot", "*[bot]")
    records = {
        "service": [{"id": "s"}],
        "deployment": [
            deploy("d1", "s", "2024-01-02T10:00", environment="prod-eu"),
            deploy("d2", "s", "2024-01-02T11:00", environment="PROD-US"),
            deploy("d3", "s", "2024-01-02T12:00", environment="Production"),
            deploy("d4", "s", "2024-01-03T10:00", environment="staging"),
            deploy("d5", "s", "2024-01-03T11:00", environment="staging"),
            deploy("d6", "s", "2024-01-03T12:00", environment="preprod"),
            deploy("d7", "s", "2024-01-03T13:00", environment="qa", result="failure"),
        ],
    }
    kw: dict[str, Any] = {"grain": "all", "start": JAN1, "end": FEB1, "now": LATER}
    metric = ("dora.deployments",)
    # default patterns (production, prod): only d3; d1, d2, d4, d5, d6 are successful elsewhere
    default = report(records, metrics=metric, **kw)
    assert one(default, "dora.deployments", "2024-01-01")["value"] == 1
    assert warned(default) == {"excluded_environments": 5}
    message = default["warnings"][0]["message"]
    assert "staging" in message and "`production_environments`" in message
    regions = Settings(production_environments=("production", "prod", "prod-*"))
    result = report(records, metrics=metric, settings=regions, **kw)
    assert one(result, "dora.deployments", "2024-01-01")["value"] == 3  # d1, d2, d3
    assert warned(result) == {"excluded_environments": 3}  # d4, d5 (staging), d6 (preprod)
    # --by environment: production environments only, lower-cased; no staging row of 0
    by_env = report(records, metrics=metric, by=("environment",), settings=regions, **kw)
    got = {r["segment"]["environment"]: r["value"] for r in by_env["rows"]}
    assert got == {"prod-eu": 1, "prod-us": 1, "production": 1}


def test_rollbacks_and_hotfixes_mark_what_they_remediate() -> None:
    records = {
        "service": [{"id": "s"}, {"id": "t"}],
        "deployment": [
            # service s, in (finished_at, id) order
            deploy("d1", "s", "2024-01-01T00:00", kind="planned"),
            deploy("d2", "s", "2024-01-02T00:00"),  # kind unknown
            deploy("r1", "s", "2024-01-03T00:00", kind="rollback"),  # → d2
            deploy("r2", "s", "2024-01-04T00:00", kind="rollback"),  # skips r1 → d2
            deploy("h1", "s", "2024-01-05T00:00", kind="hotfix"),  # skips r1, r2 → d2
            deploy("d3", "s", "2024-01-06T00:00"),
            deploy("h2", "s", "2024-01-07T00:00", kind="hotfix"),  # → d3
            # not DORA deployments, so they remediate nothing: a failed rollback (would hit d1)
            # and a staging hotfix (would hit d2 or d1)
            deploy("rf", "s", "2024-01-01T12:00", kind="rollback", result="failure"),
            deploy("hs", "s", "2024-01-01T13:00", kind="hotfix", environment="staging"),
            # service t: its hotfix remediates t1 only, never s's deployments
            deploy("t1", "t", "2024-01-02T00:00"),
            deploy("th", "t", "2024-01-03T00:00", kind="hotfix"),
        ],
    }
    kw: dict[str, Any] = {"grain": "all", "start": JAN1, "end": FEB1, "now": LATER}
    metrics = ("dora.change_failure_rate", "dora.rework_rate")
    result = report(records, metrics=metrics, **kw)
    # 9 DORA deployments (7 of s, 2 of t); failed: d2, d3, t1 → 3/9
    cfr = one(result, "dora.change_failure_rate", "2024-01-01")
    assert (cfr["value"], cfr["n"]) == (pytest.approx(3 / 9), 9)
    # known kinds: d1, r1, r2, h1, h2, th = 6, of which 5 are rollbacks or hotfixes
    rework = one(result, "dora.rework_rate", "2024-01-01")
    assert (rework["value"], rework["n"]) == (pytest.approx(5 / 6), 6)
    by_service = report(records, metrics=metrics[:1], by=("service",), **kw)
    cfr_s = one(by_service, "dora.change_failure_rate", "2024-01-01", service="s")["value"]
    assert cfr_s == pytest.approx(2 / 7)
    assert one(by_service, "dora.change_failure_rate", "2024-01-01", service="t")["value"] == 0.5
    assert failed_deployments(records) == {
        "d2": {"incidents": [], "remediated_by": "r1"},  # the first remediation is named
        "d3": {"incidents": [], "remediated_by": "h2"},
        "t1": {"incidents": [], "remediated_by": "th"},
    }
    # failure_from_remediation off: no incident → nothing failed (the known kinds are a signal)
    off = report(
        records, metrics=metrics[:1], settings=Settings(failure_from_remediation=False), **kw
    )
    assert one(off, "dora.change_failure_rate", "2024-01-01")["value"] == 0.0


def _link_records() -> dict[str, list[dict]]:
    def incident(iid: str, opened: str, resolved: str | None = None, **fields: Any) -> dict:
        return {
            "id": iid,
            "opened_at": t(opened),
            "resolved_at": None if resolved is None else t(resolved),
            **fields,
        }

    return {
        "service": [{"id": "s"}, {"id": "t"}],
        "deployment": [
            deploy("d1", "s", "2024-01-01T00:00", commits=["a1"]),
            deploy("rb", "s", "2024-01-02T00:00", kind="rollback", commit_sha="a0"),
            deploy("d3", "s", "2024-01-03T00:00", commit_sha="a3"),
            deploy("d2", "s", "2024-01-05T00:00", commit_sha="a2"),
            deploy("d5", "t", "2024-01-02T00:00", commits=["a3"]),
        ],
        "incident": [
            # window: rb is the latest deployment of s before it, but a rollback is never picked
            incident("i1", "2024-01-02T06:00", "2024-01-02T12:00", service="s"),
            # a2 was first deployed (d2, Jan 5) after the incident opened (Jan 4): unlinked
            incident("i2", "2024-01-04T00:00", root_cause_sha="a2", service="s"),
            # a3 by Jan 6: d5 (Jan 2) and d3 (Jan 3); no service → the first, d5
            incident("i3", "2024-01-06T00:00", "2024-01-06T06:00", root_cause_sha="a3"),
            # an explicit link to another service's deployment holds, and is counted
            incident("i4", "2024-01-01T12:00", "2024-01-01T13:00", service="t", deployment_id="d1"),
            incident("i5", "2024-01-01T01:00", deployment_id="d1"),  # no service: not "across"
        ],
    }


def test_link_rules_v2() -> None:
    records = _link_records()
    assert failed_deployments(records) == {
        "d1": {"incidents": ["i1", "i4", "i5"], "remediated_by": "rb"},
        "d5": {"incidents": ["i3"], "remediated_by": None},
    }
    assert link_incidents(records, Settings()) == {
        "i1": ("d1", "window"),
        "i2": (None, "unlinked"),
        "i3": ("d5", "root_cause_sha"),
        "i4": ("d1", "deployment_id"),
        "i5": ("d1", "deployment_id"),
    }
    result = report(
        records,
        grain="all",
        start=JAN1,
        end=FEB1,
        metrics=("dora.change_failure_rate", "dora.recovery_time_p50"),
        now=LATER,
    )
    # DORA deployments d1, rb, d3, d2, d5; failed: d1 (i1, i4, i5, and remediated by rb), d5 (i3)
    assert one(result, "dora.change_failure_rate", "2024-01-01")["value"] == 0.4
    # recovery from the linked deployment: i1 d1 → Jan 2 12:00 = 36 h; i3 d5 (Jan 2) → Jan 6
    # 06:00 = 102 h; i4 d1 → Jan 1 13:00 = 13 h (i5 unresolved) → median 36 (v1: i2 from d2)
    recovery = one(result, "dora.recovery_time_p50", "2024-01-01")
    assert (recovery["value"], recovery["n"]) == (36.0, 3)
    assert warned(result) == {
        "unlinked_incidents": 1,  # i2
        "cross_service_links": 1,  # i4
        "root_cause_not_yet_deployed": 1,  # i2
    }


def test_failure_severities() -> None:
    def incident(iid: str, day: int, resolved_h: int | None, **fields: Any) -> dict:
        opened = datetime(2024, 1, day, 1, tzinfo=UTC)
        resolved = None if resolved_h is None else opened + timedelta(hours=resolved_h)
        return {"id": iid, "opened_at": opened, "resolved_at": resolved, **fields}

    records = {
        "service": [{"id": "s"}],
        "deployment": [
            deploy(f"d{i}", "s", f"2024-01-0{i}T00:00", kind="planned") for i in (1, 2, 3, 4)
        ],
        "incident": [
            incident("j1", 1, 2, severity="sev1", deployment_id="d1"),
            incident("j2", 2, 10, severity="sev4", deployment_id="d2"),
            incident("j3", 3, 4, deployment_id="d3"),  # no severity: counts
            incident("j4", 10, None, severity="SEV2", service="s"),  # 6 d 1 h after d4: d4
            incident("j5", 11, None, severity="sev4", service="s"),  # 7 d 1 h after d4: none
        ],
    }
    kw: dict[str, Any] = {"grain": "all", "start": JAN1, "end": FEB1, "now": LATER}
    metrics = ("dora.change_failure_rate", "dora.time_to_restore_p50", "dora.open_incidents")

    def values(result: dict) -> list[Any]:
        return [one(result, m, "2024-01-01")["value"] for m in metrics]

    # all severities: failed d1, d2, d3, d4 → 1.0; restore [2, 10, 4] → 4; open at Feb 1: j4, j5
    assert values(report(records, metrics=metrics, **kw)) == [1.0, 4.0, 2]
    assert warned(report(records, metrics=metrics, **kw)) == {"unlinked_incidents": 1}  # j5
    # sev1 and sev2 only (case-insensitive): j2 and j5 leave every incident metric
    only = Settings(failure_severities=("SEV1", "sev2"))
    result = report(records, metrics=metrics, settings=only, **kw)
    assert values(result) == [0.75, 3.0, 1]  # d1, d3, d4 of 4; restore [2, 4]; open j4
    assert warned(result) == {}
    assert link_incidents(records, only)["j2"] == (None, "severity")


def test_kind_unknown_and_no_failure_signal() -> None:
    records = {
        "service": [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}],
        "deployment": [
            deploy("a1", "a", "2024-01-02T00:00"),  # git-synced: kind unknown, no incidents
            deploy("a2", "a", "2024-01-03T00:00"),
            deploy("b1", "b", "2024-01-02T00:00"),  # kind unknown, but b has an incident
            deploy("c1", "c", "2024-01-02T00:00", kind="planned"),  # a known kind
        ],
        "incident": [
            {"id": "k1", "opened_at": t("2024-01-20T00:00"), "service": "b", "cause": "external"}
        ],
    }
    kw: dict[str, Any] = {"grain": "all", "start": JAN1, "end": FEB1, "now": LATER}
    metrics = ("dora.change_failure_rate", "dora.rework_rate")
    by_service = report(records, metrics=metrics, by=("service",), **kw)
    cfr = {
        r["segment"]["service"]: r["value"] for r in rows(by_service, "dora.change_failure_rate")
    }
    assert cfr == {"b": 0.0, "c": 0.0}  # a: no signal → no value, not a 0 % "elite"
    # rework over known kinds only: a and b have none → omitted; c: 0 of 1
    rework = {r["segment"]["service"]: r["value"] for r in rows(by_service, "dora.rework_rate")}
    assert rework == {"c": 0.0}
    assert warned(by_service) == {"no_failure_signal": 1}
    # overall: the segment holds b and c, which have signals → 0 of 4
    overall = report(records, metrics=metrics, **kw)
    assert one(overall, "dora.change_failure_rate", "2024-01-01")["value"] == 0.0
    assert one(overall, "dora.rework_rate", "2024-01-01")["n"] == 1
    # no signal anywhere (only a): omitted overall too
    only_a = {"deployment": records["deployment"][:2], "service": records["service"]}
    none = report(only_a, metrics=metrics, **kw)
    assert none["rows"] == [] and warned(none) == {"no_failure_signal": 1}
    # a service's signal is "ever": d1 (week 1, kind unknown) is remediated by a rollback in
    # week 3, so week 1 has a value (1 of 1 failed) although its own deployment has no kind
    later = {
        "service": [{"id": "d"}],
        "deployment": [
            deploy("d1", "d", "2024-01-02T00:00"),
            deploy("d2", "d", "2024-01-16T00:00", kind="rollback"),
        ],
    }
    weekly = report(
        later, grain="week", start=JAN1, end=date(2024, 1, 22), now=LATER, metrics=metrics[:1]
    )
    assert [(r["period"], r["value"]) for r in weekly["rows"]] == [
        ("2024-01-01", 1.0),
        ("2024-01-15", 0.0),
    ]


def test_negative_restore_dropped_and_open_incidents() -> None:
    records = {
        "team": [{"id": "a"}, {"id": "idle"}],
        "service": [{"id": "s", "team": "a"}],
        "incident": [
            # resolved before it opened: −2 h, dropped with a warning (v1 kept it)
            {
                "id": "o1",
                "service": "s",
                "opened_at": t("2024-01-01T10:00"),
                "resolved_at": t("2024-01-01T08:00"),
            },
            # open across the week 1 boundary, resolved in week 2 after 168 h
            {
                "id": "o2",
                "service": "s",
                "opened_at": t("2024-01-03T00:00"),
                "resolved_at": t("2024-01-10T00:00"),
            },
            {"id": "o3", "service": "s", "opened_at": t("2024-01-05T00:00")},  # never resolved
            # resolved at the very end of week 2 (Jan 15 00:00): still open at that end, 24 h
            {
                "id": "o4",
                "service": "s",
                "opened_at": t("2024-01-14T00:00"),
                "resolved_at": t("2024-01-15T00:00"),
            },
        ],
    }
    kw: dict[str, Any] = {"grain": "week", "start": JAN1, "end": date(2024, 1, 22), "now": LATER}
    metrics = ("dora.time_to_restore_p50", "dora.open_incidents")
    result = report(records, metrics=metrics, by=("team",), **kw)
    restore = [(r["period"], r["value"]) for r in rows(result, "dora.time_to_restore_p50")]
    assert restore == [("2024-01-08", 168.0), ("2024-01-15", 24.0)]
    # open at Jan 8 00:00: o2, o3; at Jan 15 00:00: o3, o4; at Jan 22: o3.
    # team "idle" owns no service and appears on no deployment: no DORA rows at all
    opened = [
        (r["period"], r["segment"]["team"], r["value"]) for r in rows(result, "dora.open_incidents")
    ]
    assert opened == [("2024-01-01", "a", 2), ("2024-01-08", "a", 2), ("2024-01-15", "a", 1)]
    assert warned(result) == {"negative_time_to_restore": 1}


def test_no_dora_rows_for_teams_that_deliver_nothing() -> None:
    records = {
        "team": [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}],
        "service": [{"id": "s", "team": "a"}, {"id": "u"}],
        "deployment": [
            deploy("d1", "s", "2024-01-02T00:00"),
            deploy("d2", "u", "2024-01-03T00:00", team="b"),  # b appears on a deployment
            deploy("d3", "u", "2024-01-04T00:00", team="d", environment="staging"),  # any record
        ],
        "usage": [{"id": "x", "ts": t("2024-01-02T00:00"), "capability": "ci", "team": "c"}],
    }
    kw: dict[str, Any] = {"grain": "month", "start": JAN1, "end": FEB1, "now": LATER}
    result = report(
        records, metrics=("dora.deployments", "dora.deployment_frequency"), by=("team",), **kw
    )
    got = {(r["metric"], r["segment"]["team"]): (r["value"], r["tier"]) for r in result["rows"]}
    # c (usage only) gets no rows, so it never counts as a "low" team; d's staging deployment
    # makes it a team that delivers (0 production deployments, tier low)
    assert got == {
        ("dora.deployments", "a"): (1, None),
        ("dora.deployments", "b"): (1, None),
        ("dora.deployments", "d"): (0, None),
        ("dora.deployment_frequency", "a"): (pytest.approx(1 / 31), "low"),
        ("dora.deployment_frequency", "b"): (pytest.approx(1 / 31), "low"),
        ("dora.deployment_frequency", "d"): (0.0, "low"),
    }


def test_complete_waits_for_the_incident_link_window() -> None:
    records = {
        "service": [{"id": "s"}],
        "deployment": [
            deploy("d1", "s", "2024-01-02T00:00", kind="planned"),
            deploy("d2", "s", "2024-01-09T00:00", kind="planned"),
        ],
        "incident": [
            {
                "id": "i",
                "opened_at": t("2024-01-09T01:00"),
                "resolved_at": t("2024-01-09T02:00"),
                "deployment_id": "d2",
            }
        ],
    }
    now = t("2024-01-17T12:00")
    metrics = ("dora.deployments", "dora.change_failure_rate", "dora.recovery_time_p50")

    def complete(settings: Settings) -> dict[tuple[str, str], bool]:
        result = report(
            records,
            grain="week",
            start=JAN1,
            end=date(2024, 1, 15),
            metrics=metrics,
            settings=settings,
            now=now,
        )
        return {(r["metric"], r["period"]): r["complete"] for r in result["rows"]}

    # week 2 ended Jan 15 ≤ now; its links may arrive until Jan 15 + 7 d = Jan 22 > now
    assert complete(Settings()) == {
        ("dora.deployments", "2024-01-01"): True,
        ("dora.deployments", "2024-01-08"): True,
        ("dora.change_failure_rate", "2024-01-01"): True,  # Jan 8 + 7 d = Jan 15 ≤ now
        ("dora.change_failure_rate", "2024-01-08"): False,
        ("dora.recovery_time_p50", "2024-01-08"): False,
    }
    # a 36 h window: Jan 15 + 36 h = Jan 16 12:00 ≤ now; unbounded waits 7 days
    assert complete(Settings(incident_link_window=timedelta(hours=36)))[
        ("dora.change_failure_rate", "2024-01-08")
    ]
    assert not complete(Settings(incident_link_window=None))[
        ("dora.recovery_time_p50", "2024-01-08")
    ]


def test_happiness_row_incomplete_while_its_wave_is_open() -> None:
    survey = {
        "id": "s",
        "opens_at": t("2024-01-02T00:00"),
        "closes_at": t("2024-02-10T00:00"),
        "k": 3,
    }
    records = {"survey": [survey], "survey_response": [answer(p, "csat", 5) for p in "xyz"]}
    kw: dict[str, Any] = {
        "grain": "month",
        "start": JAN1,
        "end": FEB1,
        "metrics": ("happiness.csat",),
    }
    # the month ended Feb 1, but the wave closes Feb 10
    assert [r["complete"] for r in report(records, now=t("2024-02-05T00:00"), **kw)["rows"]] == [
        False
    ]
    assert [r["complete"] for r in report(records, now=t("2024-02-10T00:00"), **kw)["rows"]] == [
        True
    ]


def test_tiers_only_on_enough_observations() -> None:
    # service s: 4 deployments in January, each shipping one change committed 1 h earlier
    records = {
        "service": [{"id": "s"}],
        "change": [
            {"id": f"c{i}", "committed_at": datetime(2024, 1, 2 + i, tzinfo=UTC)} for i in range(4)
        ],
        "deployment": [
            deploy(f"d{i}", "s", f"2024-01-0{2 + i}T01:00", commit_sha=f"c{i}", kind="planned")
            for i in range(4)
        ],
    }
    kw: dict[str, Any] = {
        "grain": "month",
        "start": JAN1,
        "end": FEB1,
        "by": ("service",),
        "now": LATER,
    }
    metrics = ("dora.deployment_frequency", "dora.lead_time_p50", "dora.change_failure_rate")

    def tiers(settings: Settings) -> dict[str, Any]:
        return {
            r["metric"]: r["tier"]
            for r in report(records, metrics=metrics, settings=settings, **kw)["rows"]
        }

    # n = 4 < 5: no lead-time or CFR tier; frequency (4/31 < 1/7 → medium) keeps its tier
    assert tiers(Settings()) == {
        "dora.deployment_frequency": "medium",
        "dora.lead_time_p50": None,
        "dora.change_failure_rate": None,
    }
    assert tiers(Settings(tier_min_n=4)) == {
        "dora.deployment_frequency": "medium",
        "dora.lead_time_p50": "elite",  # 1 h
        "dora.change_failure_rate": "elite",  # 0 %
    }


def test_lead_time_start_authored() -> None:
    records = {
        "change": [
            {
                "id": "c1",
                "committed_at": t("2024-01-02T00:00"),
                "authored_at": t("2024-01-01T00:00"),
            },
            {"id": "c2", "committed_at": t("2024-01-02T00:00")},  # no authored_at: committed_at
        ],
        "deployment": [deploy("d1", "s", "2024-01-03T00:00", commits=["c1", "c2"])],
    }
    kw: dict[str, Any] = {
        "grain": "all",
        "start": JAN1,
        "end": FEB1,
        "metrics": ("dora.lead_time_p50",),
    }
    assert report(records, **kw)["rows"][0]["value"] == 24.0  # [24, 24]
    authored = report(records, settings=Settings(lead_time_start="authored"), **kw)
    assert authored["rows"][0]["value"] == 36.0  # [48, 24]


def test_repeated_deployments_and_unknown_changes() -> None:
    records = {
        "change": [{"id": "c1", "committed_at": t("2024-01-01T00:00")}],
        "deployment": [
            deploy("d1", "s", "2024-01-02T00:00", commit_sha="c1", environment="prod"),
            deploy("d2", "s", "2024-01-02T01:00", commit_sha="c1"),  # another environment: not
            # the same sha to the same service and environment again: repeated
            deploy("d2b", "s", "2024-01-02T02:00", commit_sha="c1", environment="Production"),
            deploy("d3", "s", "2024-01-03T00:00", commit_sha="c2", commits=["c2", "c3"]),
            deploy("d4", "s", "2024-01-04T00:00", commit_sha="c1", kind="rollback"),  # expected
            deploy("d5", "t", "2024-01-04T00:00", commit_sha="c1"),  # another service
        ],
    }
    kw: dict[str, Any] = {"grain": "all", "start": JAN1, "end": FEB1, "now": LATER}
    result = report(records, metrics=("dora.deployments", "dora.lead_time_p50"), **kw)
    # repeated: d2b only; unknown changes: c2, c3 (distinct shas, no change record)
    assert warned(result) == {
        "repeated_deployments": 1,
        "unknown_changes": 2,
        "unknown_services": 2,
    }


# --------------------------------------------------------------------------- v2: HEAT


def test_bots_count_in_tasks_not_in_adoption() -> None:
    usage = [
        {
            "id": "u1",
            "ts": t("2024-01-02T10:00"),
            "capability": "ci",
            "team": "a",
            "actor": "renovate[bot]",
            "outcome": "success",
        },
        {
            "id": "u2",
            "ts": t("2024-01-02T11:00"),
            "capability": "ci",
            "team": "a",
            "actor": "Dependabot[BOT]",
            "outcome": "success",
        },
        {
            "id": "u3",
            "ts": t("2024-01-02T12:00"),
            "capability": "ci",
            "team": "b",
            "actor": "ana",
            "outcome": "failure",
        },
        {
            "id": "u4",
            "ts": t("2024-01-02T13:00"),
            "capability": "ci",
            "team": "c",
            "actor": "robot",
            "outcome": "success",
        },
    ]
    records = {"team": [{"id": "a"}, {"id": "b"}, {"id": "c"}], "usage": usage}
    kw: dict[str, Any] = {"grain": "week", "start": JAN1, "end": date(2024, 1, 8), "now": LATER}
    metrics = (
        "adoption.active_users",
        "adoption.active_teams",
        "adoption.team_adoption_rate",
        "task.attempts",
        "task.success_rate",
    )

    def values(settings: Settings) -> list[Any]:
        result = report({**records}, metrics=metrics, settings=settings, **kw)
        return [one(result, m, "2024-01-01")["value"] for m in metrics]

    # bots (case-insensitive, `[bot]` literal; "robot" is not one): users ana, robot; teams b, c
    # of eligible a, b, c; tasks keep all 4 attempts, 3 successful
    assert values(Settings()) == [2, 2, pytest.approx(2 / 3), 4, 0.75]
    assert values(Settings(bot_actors=())) == [4, 3, 1.0, 4, 0.75]


def test_runs_first_attempt_and_eventual_success() -> None:
    def use(
        uid: str, ts: str, outcome: str, run: str | None = None, attempt: int | None = None
    ) -> dict:
        return {
            "id": uid,
            "ts": t(ts),
            "capability": "ci",
            "outcome": outcome,
            "run": run,
            "attempt": attempt,
        }

    usage = [
        use("r1/1", "2024-01-01T10:00", "failure", "r1", 1),
        use("r1/2", "2024-01-01T11:00", "success", "r1", 2),
        use("r2/1", "2024-01-02T10:00", "success", "r2", 1),
        # r3 starts on Sunday Jan 7 (week 1) and succeeds on Monday (week 2): a week-1 run
        use("r3/1", "2024-01-07T23:00", "error", "r3", 1),
        use("r3/2", "2024-01-08T01:00", "error", "r3", 2),
        use("r3/3", "2024-01-08T02:00", "success", "r3", 3),
        # r4's attempt 2 is stamped earlier than attempt 1: the lowest attempt is the first
        use("r4/2", "2024-01-03T09:00", "success", "r4", 2),
        use("r4/1", "2024-01-03T10:00", "failure", "r4", 1),
        use("u9", "2024-01-04T10:00", "success"),  # no run: its own run
        use("u10", "2024-01-04T11:00", "failure"),
    ]
    metrics = ("task.success_rate", "task.first_attempt_success_rate", "task.eventual_success_rate")
    result = report(
        {"usage": usage},
        grain="week",
        start=JAN1,
        end=date(2024, 1, 15),
        metrics=metrics,
        now=LATER,
    )
    got = {(r["metric"], r["period"]): (r["value"], r["n"]) for r in result["rows"]}
    assert got == {
        # attempts week 1: r1/1 F, r1/2 S, r2/1 S, r3/1 E, r4/2 S, r4/1 F, u9 S, u10 F → 4 of 8
        ("task.success_rate", "2024-01-01"): (0.5, 8),
        ("task.success_rate", "2024-01-08"): (0.5, 2),  # r3/2 E, r3/3 S
        # runs week 1: r1, r2, r3, r4, u9, u10; first attempt succeeded: r2, u9
        ("task.first_attempt_success_rate", "2024-01-01"): (pytest.approx(2 / 6), 6),
        # any success: r1, r2, r3, r4, u9
        ("task.eventual_success_rate", "2024-01-01"): (pytest.approx(5 / 6), 6),
    }
    # without re-runs, both equal the success rate (u9, u10: 1 of 2)
    plain = report(
        {"usage": usage[-2:]}, grain="all", start=JAN1, end=FEB1, metrics=metrics, now=LATER
    )
    assert {r["value"] for r in plain["rows"]} == {0.5}


def test_new_teams_omitted_where_history_starts() -> None:
    records = {
        "capability": [{"id": "ci"}, {"id": "new", "launched_at": t("2024-01-08T00:00")}],
        "usage": [
            {"id": "u1", "ts": t("2024-01-02T10:00"), "capability": "ci", "team": "a"},
            {"id": "u2", "ts": t("2024-01-03T10:00"), "capability": "ci", "team": "b"},
            {"id": "u3", "ts": t("2024-01-10T10:00"), "capability": "ci", "team": "c"},
            {"id": "u4", "ts": t("2024-01-09T10:00"), "capability": "new", "team": "a"},
            {"id": "u5", "ts": t("2024-01-16T10:00"), "capability": "new", "team": "c"},
        ],
    }
    kw: dict[str, Any] = {"grain": "week", "start": JAN1, "end": date(2024, 1, 22), "now": LATER}
    metric = ("adoption.new_teams",)
    overall = report(records, metrics=metric, **kw)
    # stored usage starts Jan 2 (week 1): omitted; c first used anything on Jan 10
    assert [(r["period"], r["value"]) for r in overall["rows"]] == [
        ("2024-01-08", 1),
        ("2024-01-15", 0),
    ]
    assert warned(overall) == {"history_start": 1}
    by_cap = report(records, metrics=metric, by=("capability",), **kw)
    got = [(r["period"], r["segment"]["capability"], r["value"]) for r in by_cap["rows"]]
    # ci: week 1 omitted; "new" starts in week 2 but launched there (Jan 8 ≥ week start): kept
    assert got == [
        ("2024-01-01", "new", 0),  # the week ending at launch keeps its row (v1 reading 9)
        ("2024-01-08", "ci", 1),
        ("2024-01-08", "new", 1),
        ("2024-01-15", "ci", 0),
        ("2024-01-15", "new", 1),
    ]
    assert warned(by_cap) == {"history_start": 1}


def test_time_to_first_deploy_history_and_services_awaiting() -> None:
    records = {
        "service": [
            {"id": "old", "team": "a", "created_at": t("2023-12-01T00:00")},
            {"id": "s1", "team": "a", "created_at": t("2024-01-02T00:00")},
            {"id": "s2", "team": "b", "created_at": t("2024-01-05T00:00")},
            {"id": "s3", "team": "b", "created_at": t("2024-01-20T00:00")},
            {"id": "nocreate", "team": "b"},  # no created_at: never counted
        ],
        "deployment": [
            deploy("d0", "old", "2024-01-01T00:00"),  # the first stored deployment
            deploy("d1", "s1", "2024-01-04T00:00"),
            deploy("d2", "s2", "2024-01-12T00:00"),
        ],
    }
    ttfd = report(
        records,
        grain="all",
        start=JAN1,
        end=FEB1,
        metrics=("efficiency.time_to_first_deploy",),
        now=LATER,
    )
    # old: created before the stored history → dropped (v1: 31 days); s1 2 d, s2 7 d → 4.5
    assert (ttfd["rows"][0]["value"], ttfd["rows"][0]["n"]) == (4.5, 2)
    assert warned(ttfd) == {"created_before_history": 1}
    awaiting = report(
        records,
        grain="week",
        start=JAN1,
        end=date(2024, 1, 29),
        by=("team",),
        metrics=("efficiency.services_awaiting_first_deploy",),
        now=LATER,
    )
    got = {(r["period"], r["segment"]["team"]): r["value"] for r in awaiting["rows"]}
    # by Jan 8: s2 (created Jan 5, deployed Jan 12); by Jan 15: none; by Jan 22 and 29: s3
    assert got == {
        ("2024-01-01", "a"): 0,
        ("2024-01-01", "b"): 1,
        ("2024-01-08", "a"): 0,
        ("2024-01-08", "b"): 0,
        ("2024-01-15", "a"): 0,
        ("2024-01-15", "b"): 1,
        ("2024-01-22", "a"): 0,
        ("2024-01-22", "b"): 1,
    }


def test_archived_teams_are_not_churn() -> None:
    records = {
        "team": [
            {"id": "a"},
            {"id": "b", "archived_at": t("2024-01-08T00:00")},  # at week 2's start: leaves
            {"id": "c", "archived_at": t("2024-01-10T00:00")},  # during week 2: churn
        ],
        "usage": [
            *(
                {"id": f"w1{x}", "ts": t("2024-01-03T10:00"), "capability": "ci", "team": x}
                for x in "abc"
            ),
            {"id": "w2a", "ts": t("2024-01-09T10:00"), "capability": "ci", "team": "a"},
        ],
    }
    result = report(
        records,
        grain="week",
        start=date(2024, 1, 8),
        end=date(2024, 1, 15),
        metrics=("adoption.team_retention",),
        now=LATER,
    )
    # week 1 {a, b, c} minus b (archived) → {a, c}; a kept → 1/2 (v1: 1/3)
    assert [(r["value"], r["n"]) for r in result["rows"]] == [(0.5, 2)]


# --------------------------------------------------------------------------- v2: presets, warnings


def test_definitions_presets() -> None:
    assert settings_for() == Settings()
    devlake = settings_for("devlake")
    assert (devlake.incident_link_window, devlake.quantile, devlake.tier_year) == (
        None,
        "lower",
        2021,
    )
    assert (devlake.failure_from_remediation, devlake.tier_min_n, devlake.lead_time_start) == (
        False,
        1,
        "authored",
    )
    fourkeys = settings_for("fourkeys", quantile="lower")  # an explicit setting wins
    assert (fourkeys.incident_link_window, fourkeys.quantile) == (timedelta(0), "lower")
    assert not fourkeys.failure_from_remediation
    with pytest.raises(ValueError, match="devlake"):
        settings_for("middleware")
    records = {
        "service": [{"id": "s"}],
        "deployment": [
            deploy("d1", "s", "2024-01-02T00:00", commit_sha="x1"),
            deploy("d2", "s", "2024-01-03T00:00", commit_sha="x2"),
            deploy("d3", "s", "2024-01-04T00:00", kind="rollback", commit_sha="x1"),
        ],
        "incident": [
            {"id": "i1", "service": "s", "opened_at": t("2024-01-02T01:00")},  # 1 h after d1
            {
                "id": "i2",
                "service": "s",
                "opened_at": t("2024-01-02T05:00"),
                "root_cause_sha": "x1",
            },
            # 16 days after d2 (d3 is a rollback, never picked by the window)
            {"id": "i3", "service": "s", "opened_at": t("2024-01-20T00:00")},
        ],
    }
    kw: dict[str, Any] = {"grain": "all", "start": JAN1, "end": FEB1, "now": LATER}

    def cfr(settings: Settings) -> float:
        result = report(records, metrics=("dora.change_failure_rate",), settings=settings, **kw)
        return one(result, "dora.change_failure_rate", "2024-01-01")["value"]

    # heatlens: i1 → d1 (window), i2 → d1 (sha), i3 unlinked (> 7 d); d3 rolls back d2
    # → {d1, d2} of 3
    assert cfr(settings_for("heatlens")) == pytest.approx(2 / 3)
    assert cfr(Settings(failure_from_remediation=False)) == pytest.approx(1 / 3)  # {d1}
    # Four Keys: root causes only (window 0: i1, i3 unlinked), no remediation → {d1}
    assert cfr(settings_for("fourkeys")) == pytest.approx(1 / 3)
    # DevLake: unbounded window (i3 → d2), no remediation → {d1, d2}
    assert cfr(settings_for("devlake")) == pytest.approx(2 / 3)


def test_every_warning_names_a_setting_or_field() -> None:
    names = {f"`{name}`" for name in Settings.__dataclass_fields__} | {
        f"`{field}`"
        for field in (
            "kind", "environment", "commit_sha", "commits", "deployment_id", "root_cause_sha",
            "service", "opened_at", "resolved_at", "finished_at", "created_at", "launched_at",
            "eligible", "k", "change", "committed_at", "authored_at", "continuous",
        )
    }  # fmt: skip
    kw: dict[str, Any] = {"grain": "all", "start": JAN1, "end": FEB1, "now": LATER}
    results = [
        report(_link_records(), **kw),
        report(_warning_records(), **kw),
        report(_warning_records(), by=("service",), **kw),  # "quiet" has no failure signal
        report(_continuous_records(), grain="week", start=JAN1, end=FEB1, now=LATER),
    ]
    seen = {w["code"]: w["message"] for result in results for w in result["warnings"]}
    from .heat_dora import _WARNING_ORDER

    assert set(seen) == set(_WARNING_ORDER)
    for code, message in seen.items():
        assert any(name in message for name in names), (code, message)


def _warning_records() -> dict[str, list[dict]]:
    """One record set that raises the warnings _link_records does not."""
    return {
        "team": [{"id": "a"}],
        "service": [
            {"id": "s", "team": "a", "created_at": t("2024-01-10T00:00")},
            {"id": "old", "team": "a", "created_at": t("2023-01-01T00:00")},
            {"id": "quiet", "team": "a"},
        ],
        "capability": [{"id": "ci", "eligible": []}],
        "usage": [{"id": "u", "ts": t("2024-01-02T00:00"), "capability": "ci", "team": "a"}],
        "change": [{"id": "c1", "committed_at": t("2024-01-20T00:00")}],
        "deployment": [
            deploy("d0", "old", "2024-01-01T00:00"),
            deploy("d0b", "old", "2024-01-01T01:00"),
            deploy("d1", "s", "2024-01-05T00:00", commit_sha="c1"),  # before c1 and s's creation
            deploy("d2", "s", "2024-01-06T00:00", commit_sha="c1"),  # repeated
            deploy("d3", "s", "2024-01-07T00:00", commit_sha="c9"),  # unknown change
            deploy("d4", "s", "2024-01-08T00:00", environment="staging"),
            deploy("q1", "quiet", "2024-01-08T00:00"),
            deploy("x1", "nowhere", "2024-01-08T00:00"),  # unknown service
        ],
        "incident": [
            {
                "id": "n1",
                "service": "s",
                "opened_at": t("2024-01-09T00:00"),
                "resolved_at": t("2024-01-08T00:00"),
            },
            {
                "id": "n2",
                "service": "s",
                "opened_at": t("2024-01-03T00:00"),
                "resolved_at": t("2024-01-04T00:00"),
                "deployment_id": "d2",
            },
        ],
        "survey": [{"id": "sv", "k": 5}],
        "survey_response": [answer("p", "csat", 5, survey="sv")],
    }
