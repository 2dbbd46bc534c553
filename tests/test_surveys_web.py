"""Surveys on the server, in-process: the form at /s/<token> (plain, accessible, CSRF-checked,
single-use, closed after its date), the results page, micro-surveys through the events API."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from heatlens.application import LocalApplication
from heatlens.metrics import Request, compute
from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.web import create_app
from heatlens.web.surveys import _RedactSurveyLinks
from tests.conftest import record
from tests.test_surveys import NOW, REGISTRY, WAVE, Clock

SAME_SITE = {"Sec-Fetch-Site": "same-origin"}


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def client(tmp_path: Path, settings: Settings, clock: Clock) -> Iterator[TestClient]:
    app = create_app(settings, f"duckdb:///{tmp_path / 'web.duckdb'}")
    with TestClient(app) as c:
        application: LocalApplication = c.app.state.application  # type: ignore[attr-defined]
        application.clock = clock
        application.ingest_records(REGISTRY, source="t")
        application.define_surveys(WAVE, "wave.toml")
        yield c


def _app(client: TestClient) -> LocalApplication:
    application: LocalApplication = client.app.state.application  # type: ignore[attr-defined]
    return application


def _responses(client: TestClient) -> int:
    return _app(client).read(lambda s: s.counts().get("survey_response", 0))


def test_the_form_is_plain_accessible_html(client: TestClient) -> None:
    [secret] = _app(client).invite("2026-q1", "payments", 1)["links"]
    page = client.get(f"/s/{secret}")
    assert page.status_code == 200
    html = page.text
    assert "<script" not in html  # works without JavaScript
    assert page.headers["cache-control"] == "no-store"
    assert f'<form class="survey" method="post" action="/s/{secret}">' in html
    # each rated question is a fieldset whose legend is the question, with labelled radios
    assert html.count("<fieldset") == 3
    assert "<legend>How satisfied are you with CI?</legend>" in html
    assert '<label><input type="radio" name="q0" value="5"> Very satisfied</label>' in html
    assert len(re.findall(r'type="radio" name="q1"', html)) == 11  # NPS 0–10
    assert '<label for="q3">What slows you down?</label>' in html
    assert '<textarea id="q3" name="q3"' in html


def test_a_link_answers_once_and_a_second_use_is_told_politely(client: TestClient) -> None:
    [secret] = _app(client).invite("2026-q1", "payments", 1)["links"]
    sent = client.post(f"/s/{secret}", data={"q0": "4", "q1": "9"}, headers=SAME_SITE)
    assert sent.status_code == 200
    assert "Thank you" in sent.text and "Your answers were saved" in sent.text
    again = client.post(f"/s/{secret}", data={"q0": "1"}, headers=SAME_SITE)
    assert again.status_code == 409
    assert "Already answered" in again.text and "each link answers once" in again.text
    assert "Already answered" in client.get(f"/s/{secret}").text
    assert _responses(client) == 2


def test_a_form_posted_from_another_site_is_refused(client: TestClient) -> None:
    [secret] = _app(client).invite("2026-q1", "payments", 1)["links"]
    for headers in (
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
    ):
        refused = client.post(f"/s/{secret}", data={"q0": "1"}, headers=headers)
        assert refused.status_code == 403, headers
        assert "sent from another site" in refused.text
    assert _responses(client) == 0
    origin = {"Origin": "http://testserver"}
    assert client.post(f"/s/{secret}", data={"q0": "5"}, headers=origin).status_code == 200
    assert _responses(client) == 1


def test_the_form_closes_after_its_date(client: TestClient, clock: Clock) -> None:
    from datetime import UTC, datetime

    [secret] = _app(client).invite("2026-q1", "payments", 1)["links"]
    clock.now = datetime(2026, 3, 16, 0, 1, tzinfo=UTC)
    page = client.get(f"/s/{secret}")
    assert page.status_code == 410 and "This survey has closed" in page.text
    sent = client.post(f"/s/{secret}", data={"q0": "5"}, headers=SAME_SITE)
    assert sent.status_code == 410 and "no longer taken" in sent.text
    assert _responses(client) == 0


def test_an_unknown_link_and_a_bad_answer(client: TestClient) -> None:
    unknown = client.get("/s/not-a-link")
    assert unknown.status_code == 404 and "Unknown survey link" in unknown.text
    [secret] = _app(client).invite("2026-q1", "payments", 1)["links"]
    bad = client.post(f"/s/{secret}", data={"q0": "7", "q1": "10"}, headers=SAME_SITE)
    assert bad.status_code == 422
    assert 'role="alert"' in bad.text and "choose one of the answers 1 to 5" in bad.text
    # what was given stays chosen
    assert '<input type="radio" name="q1" value="10" checked>' in bad.text
    assert _responses(client) == 0


def test_the_results_page_shows_questions_and_hides_small_groups(client: TestClient) -> None:
    app = _app(client)
    for team, n in (("payments", 6), ("search", 2)):
        for secret in app.invite("2026-q1", team, n)["links"]:
            form = {"q0": "5", "q3": "All good"}
            assert client.post(f"/s/{secret}", data=form, headers=SAME_SITE).status_code == 200
    page = client.get("/surveys/2026-q1")
    assert page.status_code == 200
    html = page.text
    assert "Survey: Platform survey Q1" in html
    assert "Satisfied (4–5): <strong>100.0%</strong>" in html
    assert html.count("No answers.") == 2  # NPS and Likert: nobody answered them
    assert "8 respondents" in html
    # search's 2 respondents: its response rate is hidden, and so is payments' (else 8 − 6)
    team_rows = re.findall(
        r'<tr><th scope="row">(\w+)</th><td class="r">(\d+)</td><td class="r">(\w+)</td>', html
    )
    assert team_rows == [("payments", "6", "hidden"), ("search", "2", "hidden")]
    assert "All good" not in html  # 8 < comment_k


def test_micro_survey_ratings_through_the_events_api_count_per_capability(
    client: TestClient,
) -> None:
    survey = record(
        "survey",
        id="after-task",
        opens_at="2026-03-01",
        continuous=True,
        k=3,
        questions=[{"id": "rating", "kind": "csat", "text": "How did that go?"}],
    )
    ratings = [
        ("ci", 5),
        ("ci", 4),
        ("ci", 2),
        ("ci", 5),
        ("portal", 1),
        ("portal", 2),
        ("portal", 4),
    ]
    responses = [
        record(
            "survey_response",
            id=f"m{i}",
            survey="after-task",
            question="rating",
            kind="csat",
            respondent=f"r{i}",
            ts=f"2026-03-02T{9 + i:02d}:00:00Z",
            score=score,
            capability=capability,
        )
        for i, (capability, score) in enumerate(ratings)
    ]
    posted = client.post("/api/v1/events", json=[survey, *responses])
    assert posted.status_code == 201, posted.text
    assert posted.json()["counts"]["survey_response"]["inserted"] == 7
    store: Store = client.app.state.service.store  # type: ignore[attr-defined]
    [stored] = store.rows("survey", ids=["after-task"])
    assert stored["continuous"] is True
    request = Request(
        "month", date(2026, 3, 1), date(2026, 4, 1), ("capability",), ("happiness.csat",), NOW
    )
    report = compute(store, request, client.app.state.service.settings)  # type: ignore[attr-defined]
    found = {
        r.segment["capability"]: (r.value, r.n)
        for r in report.rows
        if r.period.isoformat() == "2026-03-01" and r.segment["capability"] in ("ci", "portal")
    }
    assert found == {"ci": (pytest.approx(3 / 4), 4), "portal": (pytest.approx(1 / 3), 3)}


def test_the_access_log_never_shows_a_link() -> None:
    line = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", "/s/SeCrEt-token", "1.1", 200),
        None,
    )
    assert _RedactSurveyLinks().filter(line)
    assert line.getMessage() == '127.0.0.1:5000 - "POST /s/… HTTP/1.1" 200'
    assert "SeCrEt" not in line.getMessage()


def test_every_page_menu_leads_to_the_surveys_results(client: TestClient) -> None:
    page = client.get("/data").text
    menu = re.search(r"<summary>Surveys</summary>(.*?)</details>", page, re.S)
    assert menu is not None
    assert re.findall(r'href="([^"]+)"', menu[1]) == ["/surveys/2026-q1"]
    assert client.get("/surveys/2026-q1").status_code == 200
