"""A survey answered in a real browser (Debian's chromium driven by Playwright) on a real
`heatlens serve`, with the keyboard only: links issued with `heatlens --server URL survey invite`,
the form filled by Tab, arrow keys, Space and typing, sent with Enter; the answers stored once."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from heatlens.application import LocalApplication
from heatlens.settings import load_settings
from heatlens.store import Store
from tests.conftest import Cli, need
from tests.serve_process import serving
from tests.test_browser import ARGS, CHROMIUM, Tab
from tests.test_surveys import REGISTRY, WAVE

# fixed dates far from any run of this test: the wave is open while the server's clock runs
OPEN_WAVE = WAVE.replace("opens_at = 2026-03-02", "opens_at = 2020-01-06").replace(
    "closes_at = 2026-03-16", "closes_at = 2099-12-31"
)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    need("chromium", Path(CHROMIUM).exists())
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def _focused(page: Any) -> str:
    return str(page.evaluate("document.activeElement.name || document.activeElement.tagName"))


def _tab_to(page: Any, name: str) -> None:
    for _ in range(12):
        page.keyboard.press("Tab")
        if _focused(page) == name:
            return
    raise AssertionError(f"Tab never reached {name}; focus is on {_focused(page)}")


def test_a_person_answers_with_the_keyboard_only(chromium: Any, run: Cli, tmp_path: Path) -> None:
    path = tmp_path / "survey.duckdb"
    settings = load_settings(config=None, environ={}, overrides={"store": f"duckdb:///{path}"})
    with LocalApplication(settings) as app:
        app.ingest_records(REGISTRY, source="t")
        app.define_surveys(OPEN_WAVE, "wave.toml")
    tab = Tab(chromium)
    try:
        with serving(f"duckdb:///{path}", tmp_path) as server:
            # redefining through the server (same k) is fine
            (tmp_path / "wave.toml").write_text(OPEN_WAVE, encoding="utf-8")
            defined = run("--server", server.url, "survey", "define", "wave.toml")
            assert defined.exit_code == 0, defined.output
            assert "unchanged" in defined.stdout
            invited = run(
                "--server",
                server.url,
                "survey",
                "invite",
                "2026-q1",
                "--team",
                "payments",
                "--count",
                "2",
                "--out",
                "links.csv",
            )
            assert invited.exit_code == 0, invited.output
            with (tmp_path / "links.csv").open(encoding="utf-8") as fh:
                links = [row["link"] for row in csv.DictReader(fh)]
            assert len(links) == 2 and all(u.startswith(server.url + "/s/") for u in links)

            page = tab.page
            page.goto(links[0])
            assert page.title() == "Platform survey Q1 · heatlens"
            _tab_to(page, "q0")  # CSAT: Space picks the first answer, arrows move along
            page.keyboard.press("Space")
            for _ in range(3):
                page.keyboard.press("ArrowRight")
            _tab_to(page, "q1")  # NPS 0–10
            page.keyboard.press("Space")
            for _ in range(9):
                page.keyboard.press("ArrowRight")
            _tab_to(page, "q2")  # Likert
            page.keyboard.press("Space")
            for _ in range(4):
                page.keyboard.press("ArrowRight")
            _tab_to(page, "q3")
            page.keyboard.type("Waiting for reviews")
            _tab_to(page, "BUTTON")
            with page.expect_navigation():
                page.keyboard.press("Enter")
            assert page.inner_text("h1") == "Thank you"

            page.goto(links[0])
            assert page.inner_text("h1") == "Already answered"
            status = run("--server", server.url, "survey", "status", "2026-q1", "--format", "json")
            doc = json.loads(status.stdout)
            assert (doc["links_issued"], doc["links_used"]) == (2, 1)
            shown = run("--server", server.url, "survey", "results", "2026-q1", "--format", "json")
            results = json.loads(shown.stdout)
            assert results["schema"] == "heatlens.survey-results/v1"
            assert all(q["suppressed"] for q in results["periods"][0]["questions"])
            page.goto(server.url + "/surveys/2026-q1")
            assert page.inner_text("h1") == "Survey: Platform survey Q1"
            # one respondent is fewer than k = 5: no number and no answer is shown
            assert "Waiting for reviews" not in page.content()
            assert page.locator("p.suppressed").count() == 4
        # the second visit's page is answered with 409 Conflict, which chromium notes; nothing else
        assert tab.errors == [
            "Failed to load resource: the server responded with a status of 409 (Conflict)"
        ]
    finally:
        tab.context.close()
    with Store.open(str(path), read_only=True) as store:
        answers = {r["question"]: (r["score"], r["comment"]) for r in store.rows("survey_response")}
    assert answers == {
        "ci-csat": (4, None),
        "nps": (9, None),
        "feedback": (5, None),
        "slows": (None, "Waiting for reviews"),
    }


def test_the_form_shows_focus_and_fits_a_phone(chromium: Any, tmp_path: Path) -> None:
    path = tmp_path / "phone.duckdb"
    settings = load_settings(config=None, environ={}, overrides={"store": f"duckdb:///{path}"})
    with LocalApplication(settings) as app:
        app.ingest_records(REGISTRY, source="t")
        app.define_surveys(OPEN_WAVE, "wave.toml")
        [secret] = app.invite("2026-q1", "payments", 1)["links"]
    context = chromium.new_context(viewport={"width": 390, "height": 844})
    try:
        with serving(f"duckdb:///{path}", tmp_path) as server:
            page = context.new_page()
            page.goto(f"{server.url}/s/{secret}")
            _tab_to(page, "q0")
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
            assert outline == "solid"
            # nothing wider than the phone's screen: no sideways scrolling
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()
