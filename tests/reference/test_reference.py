"""Tests of the DESIGN §4 reference itself, on small fixtures whose answers are computed by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from .heat_dora import Settings, link_incidents, nps_ci, proportion_ci, report, tier

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
        return one(result, f"happiness.{metric}", "2024-01-01")

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
    assert one(result, "happiness.respondents", "2024-01-01")["value"] == 10
    assert one(result, "happiness.respondents", "2024-01-08")["value"] == 0  # zero, not suppressed
    assert one(result, "happiness.csat", "2024-01-01")["value"] == 0.5
    assert [r["period"] for r in rows(result, "happiness.csat")] == ["2024-01-01"]
    by_survey = report(records, metrics=("happiness.respondents",), by=("survey",), **kw)
    got = [(r["period"], r["segment"]["survey"], r["value"]) for r in by_survey["rows"]]
    assert got == [("2024-01-01", "s1", 5), ("2024-01-01", "s2", 5)]


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
