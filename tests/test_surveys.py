"""Surveys on a store: definitions as code, single-use links, the form's answers, results and
status through the engine, checked against values computed by hand."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from heatlens.application import LocalApplication
from heatlens.errors import ConfigError, InputError
from heatlens.settings import Settings, load_settings
from heatlens.store import Store
from tests.conftest import Cli, record

NOW = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
Z = 1.959964
REGISTRY = [
    record("capability", id="ci", name="CI pipelines"),
    record("capability", id="portal", name="Developer portal"),
    record("team", id="payments"),
    record("team", id="search"),
]
WAVE = """
[[survey]]
id = "2026-q1"
title = "Platform survey Q1"
opens_at = 2026-03-02
closes_at = 2026-03-16
k = 5
comment_k = 10

[[survey.questions]]
id = "ci-csat"
kind = "csat"
text = "How satisfied are you with CI?"
capability = "ci"

[[survey.questions]]
id = "nps"
kind = "nps"
text = "How likely are you to recommend the platform?"

[[survey.questions]]
id = "feedback"
kind = "likert"
text = "I get clear feedback on the outcome of my tasks."

[[survey.questions]]
id = "slows"
kind = "text"
text = "What slows you down?"
"""


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def app(tmp_path: Path, clock: Clock) -> Iterator[LocalApplication]:
    settings = load_settings(
        config=None, environ={}, overrides={"store": f"duckdb:///{tmp_path / 's.duckdb'}"}
    )
    with LocalApplication(settings, clock=clock) as application:
        application.ingest_records(REGISTRY, source="t")
        yield application


def _answers(app: LocalApplication, team: str, rows: list[dict[str, str]]) -> list[str]:
    """Invite len(rows) people of `team` and submit one form per row; the links used."""
    links = app.invite("2026-q1", team, len(rows))["links"]
    for secret, form in zip(links, rows, strict=True):
        assert app.submit_answers(secret, form).state == "thanks"
    return list(links)


def _question(doc: dict[str, Any], qid: str) -> dict[str, Any]:
    [period] = doc["periods"]
    return next(q for q in period["questions"] if q["id"] == qid)


def _wilson(x: int, n: int) -> list[float]:
    p = (x + Z * Z / 2) / (n + Z * Z)
    half = Z * math.sqrt(p * (1 - p) / (n + Z * Z))
    return [max(0.0, p - half), min(1.0, p + half)]


# -- definitions ------------------------------------------------------------------------------


def test_the_default_survey_asks_about_every_capability_nps_feedback_and_what_slows_you(
    app: LocalApplication,
) -> None:
    doc = app.define_surveys(None, "platform_survey.toml", {"id": "p1", "opens_at": "2026-03-02"})
    assert doc["surveys"] == [
        {
            "id": "p1",
            "questions": ["csat-ci", "csat-portal", "nps", "clear-feedback", "slows-you-down"],
        }
    ]
    [survey] = app.list_surveys()["surveys"]
    kinds = {q["id"]: (q["kind"], q["capability"]) for q in survey["questions"]}
    assert kinds == {
        "csat-ci": ("csat", "ci"),
        "csat-portal": ("csat", "portal"),
        "nps": ("nps", None),
        "clear-feedback": ("likert", None),
        "slows-you-down": ("text", None),
    }
    texts = {q["id"]: q["text"] for q in survey["questions"]}
    assert texts["csat-ci"] == "How satisfied are you with CI pipelines?"
    assert texts["clear-feedback"] == "I get clear feedback on the outcome of my tasks."
    assert (survey["k"], survey["comment_k"], survey["continuous"]) == (5, 10, False)


def test_a_bad_definition_names_file_survey_and_field_and_stores_nothing(
    app: LocalApplication,
) -> None:
    bad = """
[[survey]]
id = "fine"
[[survey.questions]]
id = "a"
kind = "csat"

[[survey]]
id = "broken"
k = 2
[[survey.questions]]
id = "b"
kind = "stars"
"""
    before = app.data_version()
    with pytest.raises(InputError) as caught:
        app.define_surveys(bad, "surveys.toml")
    problems = [str(p) for p in caught.value.problems]
    assert problems == [
        "surveys.toml: survey 1 (id 'broken'): k = 2: expected an integer ≥ 3 (fewer "
        "respondents than 3 can never be anonymous)",
        "surveys.toml: survey 1 (id 'broken'): questions[0]: kind = 'stars': expected one of "
        "csat, nps, likert, text",
    ]
    assert "nothing was stored" in str(caught.value)
    assert app.data_version() == before
    assert app.list_surveys() == {"surveys": []}


def test_k_is_frozen_once_the_survey_opens(app: LocalApplication, clock: Clock) -> None:
    early = WAVE.replace("opens_at = 2026-03-02", "opens_at = 2026-03-09")
    app.define_surveys(early, "wave.toml")
    # before it opens, k may still change
    app.define_surveys(early.replace("k = 5", "k = 7"), "wave.toml")
    clock.now = datetime(2026, 3, 9, 8, tzinfo=UTC)
    app.define_surveys(early.replace("k = 5", "k = 7"), "wave.toml")  # same k: fine
    with pytest.raises(InputError, match=r"survey '2026-q1' has opened: its k is frozen at 7"):
        app.define_surveys(early, "wave.toml")
    [survey] = app.list_surveys()["surveys"]
    assert survey["k"] == 7


# -- links and the form -----------------------------------------------------------------------


def test_a_link_answers_once_and_the_answer_names_no_link(app: LocalApplication) -> None:
    app.define_surveys(WAVE, "wave.toml")
    [secret] = app.invite("2026-q1", "payments", 1)["links"]
    assert app.survey_form(secret).state == "form"
    assert app.submit_answers(secret, {"q0": "4", "q3": "Flaky builds"}).state == "thanks"
    assert app.survey_form(secret).state == "used"
    assert app.submit_answers(secret, {"q0": "1"}).state == "used"

    def check(store: Store) -> None:
        rows = store.rows("survey_response")
        assert [(r["question"], r["score"], r["comment"], r["team"]) for r in rows] == sorted(
            [("ci-csat", 4, None, "payments"), ("slows", None, "Flaky builds", "payments")],
            key=lambda r: next(x["id"] for x in rows if x["question"] == r[0]),
        )
        respondent = rows[0]["respondent"]
        assert {r["respondent"] for r in rows} == {respondent}
        assert secret not in json.dumps([{k: str(v) for k, v in r.items()} for r in rows])
        # answer times are kept to the day: nothing finer to match against a link's use
        assert {r["ts"].astimezone(UTC).isoformat() for r in rows} == {"2026-03-05T00:00:00+00:00"}
        columns = [
            c
            for (c,) in store._backend.fetchall(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'survey_link' ORDER BY ordinal_position"
            )
        ]
        assert columns == ["secret_hash", "survey", "team", "batch", "created_at", "used"]
        [(stored_hash,)] = store._backend.fetchall("SELECT secret_hash FROM survey_link")
        assert secret not in stored_hash

    app.read(check)


def test_two_links_give_two_random_respondents(app: LocalApplication) -> None:
    app.define_surveys(WAVE, "wave.toml")
    links = _answers(app, "payments", [{"q0": "5"}, {"q0": "5"}])

    def respondents(store: Store) -> set[str]:
        return {r["respondent"] for r in store.rows("survey_response")}

    found = app.read(respondents)
    assert len(found) == 2
    assert not any(secret[:8] in r or r in secret for secret in links for r in found)


def test_answers_are_refused_after_the_close_date_and_before_the_opening(
    app: LocalApplication, clock: Clock
) -> None:
    app.define_surveys(WAVE, "wave.toml")
    [secret] = app.invite("2026-q1", "payments", 1)["links"]
    clock.now = datetime(2026, 3, 16, 0, 0, tzinfo=UTC)  # closes_at exactly
    assert app.survey_form(secret).state == "closed"
    assert app.submit_answers(secret, {"q0": "4"}).state == "closed"
    clock.now = datetime(2026, 3, 1, 23, 59, tzinfo=UTC)
    assert app.submit_answers(secret, {"q0": "4"}).state == "not_open"
    assert app.read(lambda s: s.counts().get("survey_response", 0)) == 0
    clock.now = NOW
    assert app.submit_answers(secret, {"q0": "4"}).state == "thanks"
    with pytest.raises(ConfigError, match="closed at 2026-03-16"):
        clock.now = datetime(2026, 3, 20, tzinfo=UTC)
        app.invite("2026-q1", "payments", 3)


def test_an_invalid_answer_stores_nothing_and_keeps_the_link(app: LocalApplication) -> None:
    app.define_surveys(WAVE, "wave.toml")
    [secret] = app.invite("2026-q1", "payments", 1)["links"]
    refused = app.submit_answers(secret, {"q0": "9", "q1": "7"})
    assert refused.state == "form"
    assert refused.errors == ["“How satisfied are you with CI?”: choose one of the answers 1 to 5."]
    assert refused.given == {"q0": "9", "q1": "7"}
    assert app.submit_answers(secret, {}).errors == [
        "Please answer at least one question before sending."
    ]
    assert app.read(lambda s: s.counts().get("survey_response", 0)) == 0
    assert app.submit_answers(secret, {"q0": "4"}).state == "thanks"


def test_invitations_are_recorded_and_an_unknown_team_is_refused(app: LocalApplication) -> None:
    app.define_surveys(WAVE, "wave.toml")
    app.invite("2026-q1", "payments", 4, batch="mail")
    app.invite("2026-q1", "payments", 2, batch="slack")
    with pytest.raises(ConfigError, match="--team 'nobody' is no team of the store"):
        app.invite("2026-q1", "nobody", 2)
    rows = app.read(lambda s: s.rows("survey_invitation"))
    assert [(r["id"], r["invited"]) for r in rows] == [
        ("2026-q1/payments/mail", 4),
        ("2026-q1/payments/slack", 2),
    ]


# -- results ----------------------------------------------------------------------------------


CSAT = [5, 4, 4, 3, 2, 1, 5, 4]  # 5 of 8 satisfied (4–5)
NPS = [10, 9, 9, 8, 7, 6, 3, 0]  # 3 promoters, 3 detractors
LIKERT = [5, 4, 4, 3, 2, 4, 5, 1]


def test_results_match_values_computed_by_hand(app: LocalApplication) -> None:
    app.define_surveys(WAVE, "wave.toml")
    forms = [
        {"q0": str(c), "q1": str(n), "q2": str(lk)}
        for c, n, lk in zip(CSAT, NPS, LIKERT, strict=True)
    ]
    _answers(app, "payments", forms)
    app.invite("2026-q1", "payments", 2)  # 10 invited, 8 answered
    doc = app.survey_results("2026-q1")
    assert doc["schema"] == "heatlens.survey-results/v1"
    [period] = doc["periods"]
    assert period["period"] == "2026-03-02"
    assert period["respondents"]["n"] == 8
    assert period["response_rate"]["value"] == pytest.approx(8 / 10)
    assert period["response_rate"]["ci"] == pytest.approx(_wilson(8, 10))

    csat = _question(doc, "ci-csat")
    assert csat["value"] == pytest.approx(5 / 8)
    assert csat["ci"] == pytest.approx(_wilson(5, 8))
    assert csat["distribution"] == {"1": 1, "2": 1, "3": 1, "4": 3, "5": 2}
    assert csat["respondents"] == 8

    nps = _question(doc, "nps")
    assert nps["value"] == pytest.approx(100 * (3 - 3) / 8)
    n2 = 8 + 3
    pp, pd = (3 + 0.75) / n2, (3 + 0.75) / n2
    half = Z * math.sqrt((pp + pd - (pp - pd) ** 2) / n2)
    assert nps["ci"] == pytest.approx([100 * (pp - pd - half), 100 * (pp - pd + half)])
    assert nps["distribution"] == {"0": 1, "3": 1, "6": 1, "7": 1, "8": 1, "9": 2, "10": 1}

    likert = _question(doc, "feedback")
    assert likert["value"] == pytest.approx(statistics.mean(LIKERT))
    assert likert["median"] == pytest.approx(statistics.median(LIKERT))
    assert likert["distribution"] == {"1": 1, "2": 1, "3": 1, "4": 3, "5": 2}

    assert period["teams"] == [
        {
            "team": "payments",
            "invited": 10,
            "value": pytest.approx(0.8),
            "n": 8,
            "ci": pytest.approx(_wilson(8, 10)),
            "suppressed": False,
        }
    ]


def test_the_nps_worked_example_of_the_design(app: LocalApplication) -> None:
    # DESIGN §4: P = 50, D = 20, n = 100 → value 30, ci [14.05, 44.20]
    app.define_surveys(WAVE, "wave.toml")
    scores = [10] * 50 + [7] * 30 + [3] * 20
    app.ingest_records(
        [
            record(
                "survey_response",
                id=f"r{i}",
                survey="2026-q1",
                question="nps",
                kind="nps",
                respondent=f"p{i}",
                ts="2026-03-03",
                score=s,
                team="payments",
            )
            for i, s in enumerate(scores)
        ]
    )
    nps = _question(app.survey_results("2026-q1"), "nps")
    assert nps["value"] == pytest.approx(30.0)
    assert [round(v, 2) for v in nps["ci"]] == [14.05, 44.20]


def test_a_group_under_k_shows_no_number_no_distribution_and_no_comment(
    app: LocalApplication,
) -> None:
    app.define_surveys(WAVE, "wave.toml")
    _answers(app, "payments", [{"q0": "5", "q3": "secret complaint"}] * 3)
    doc = app.survey_results("2026-q1")
    for qid in ("ci-csat", "slows"):
        q = _question(doc, qid)
        assert q["suppressed"] is True
        assert (q["value"], q["ci"], q["respondents"], q["distribution"], q["comments"]) == (
            None,
            None,
            None,
            None,
            None,
        )
    [period] = doc["periods"]
    assert period["teams"][0]["suppressed"] is True and period["teams"][0]["value"] is None
    assert "secret complaint" not in json.dumps(doc)


def test_comments_need_comment_k_respondents_and_come_sorted(app: LocalApplication) -> None:
    app.define_surveys(WAVE, "wave.toml")
    _answers(app, "payments", [{"q3": f"note {9 - i}"} for i in range(9)])
    slows = _question(app.survey_results("2026-q1"), "slows")
    assert slows["comments"] is None
    assert slows["comments_note"] == (
        "9 comment(s) held back: comments are shown from 10 respondents (comment_k), this "
        "question has 9"
    )
    _answers(app, "search", [{"q3": "another"}])
    slows = _question(app.survey_results("2026-q1"), "slows")
    assert slows["comments"] == ["another", *(f"note {i}" for i in range(1, 10))]


def test_status_counts_links_and_response_rate_per_team(app: LocalApplication) -> None:
    app.define_surveys(WAVE, "wave.toml")
    _answers(app, "payments", [{"q0": "4"}] * 6)
    app.invite("2026-q1", "search", 4)
    doc = app.survey_status("2026-q1")
    assert (doc["state"], doc["links_issued"], doc["links_used"]) == ("open", 10, 6)
    teams = {t["team"]: (t["invited"], t["n"], t["value"], t["suppressed"]) for t in doc["teams"]}
    assert teams["payments"] == (6, 6, pytest.approx(1.0), False)
    # nobody of search answered: 0 of 4, a number that protects nobody's answer
    assert teams["search"][0] == 4


# -- the command line -------------------------------------------------------------------------


@pytest.fixture
def cli_store(run: Cli, tmp_path: Path, settings: Settings) -> str:
    url = f"duckdb:///{tmp_path / 'cli.duckdb'}"
    (tmp_path / "registry.ndjson").write_text(
        "".join(json.dumps(r) + "\n" for r in REGISTRY), encoding="utf-8"
    )
    assert run("--store", url, "ingest", "registry.ndjson").exit_code == 0
    return url


def test_the_cli_defines_invites_and_shows_results(
    run: Cli, cli_store: str, tmp_path: Path
) -> None:
    result = run(
        "--store",
        cli_store,
        "survey",
        "define",
        "--id",
        "p1",
        "--opens",
        "2020-01-06",
        "--closes",
        "2099-01-20",
    )
    assert result.exit_code == 0, result.output
    assert "survey p1: 5 questions (csat-ci, csat-portal, nps, clear-feedback, slows-you-down)" in (
        result.stderr
    )
    result = run(
        "--store",
        cli_store,
        "survey",
        "invite",
        "p1",
        "--team",
        "payments",
        "--count",
        "3",
        "--out",
        "links.csv",
        "--base-url",
        "https://heatlens.example.org/",
    )
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "links.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "team,link" and len(lines) == 4
    assert all(line.startswith("payments,https://heatlens.example.org/s/") for line in lines[1:])
    assert len({line.rsplit("/", 1)[1] for line in lines[1:]}) == 3

    status = run("--store", cli_store, "survey", "status", "p1", "--format", "json")
    assert json.loads(status.stdout)["links_issued"] == 3
    for fmt, marker in (
        ("json", '"schema": "heatlens.survey-results/v1"'),
        ("csv", "period,row,id"),
        ("markdown", "# Survey Platform survey"),
    ):
        shown = run("--store", cli_store, "survey", "results", "p1", "--format", fmt)
        assert shown.exit_code == 0, shown.output
        assert marker in shown.stdout
    template = run("survey", "template")
    assert "each_capability = true" in template.stdout


def test_the_cli_names_a_missing_survey(run: Cli, cli_store: str) -> None:
    result = run("--store", cli_store, "survey", "results", "nope")
    assert result.exit_code == 2
    assert "no survey 'nope' in the store" in result.stderr


def test_links_are_single_use_on_every_backend(store: Store) -> None:
    from heatlens.store.survey_links import (
        claim_link,
        find_link,
        issue_links,
        link_counts,
        release_link,
    )

    a, b = issue_links(store, "s1", "payments", 2, batch="mail", now=NOW)
    [c] = issue_links(store, "s1", None, 1, batch="slack", now=NOW)
    assert find_link(store, a) is not None and find_link(store, "nope") is None
    assert claim_link(store, a) is True
    assert claim_link(store, a) is False  # the second use
    assert claim_link(store, "nope") is False
    assert claim_link(store, c) is True
    release_link(store, c)  # its answers could not be stored: the link works again
    assert find_link(store, c) is not None and not find_link(store, c).used  # type: ignore[union-attr]
    assert link_counts(store, "s1") == {"payments": (2, 1), None: (1, 0)}
    assert link_counts(store, "other") == {}
    assert b != a
