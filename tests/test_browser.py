"""The dashboard in a real browser: Debian's chromium, driven by Playwright, against a real
`heatlens serve` subprocess on a demo store — pages load without console errors, charts render,
a filter changes the numbers and the URL, an explain link opens, the HTML report opens from a
file:// URL with its charts, and a suppressed team's survey answers appear nowhere.

Set HEATLENS_SCREENSHOTS=DIR to keep a screenshot of every page there.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from heatlens.demo import OrgSpec, generate
from heatlens.ingest import ingest_arrow, ingest_records
from heatlens.metrics import Request
from heatlens.report.html.export import render_html, report_policy
from heatlens.settings import load_settings
from heatlens.store import Store
from heatlens.store.tokens import create_token
from tests.conftest import need, record
from tests.serve_process import serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# a tiny team answering a survey whose anonymity threshold it cannot reach (11 of k = 12);
# elevenths, so that no other number of the demo (sevenths per day of a week…) reads the same
CSAT = [5, 4, 4, 3, 3, 2, 2, 1, 1, 3, 2]
NPS = [10, 5, 6, 3, 7, 8, 2, 4, 1, 0, 7]
CHARTS_DRAWN = (
    "() => [...document.querySelectorAll('[data-chart]')]"
    ".every(e => e.hasAttribute('data-rendered'))"
)


@dataclass(frozen=True)
class Demo:
    base: str
    copy: Path  # a copy of the store, for the report
    team: str  # a demo team with deployments
    hidden: list[str]  # how the tiny team's suppressed values would read


def _tiny_team(month: date) -> list[dict[str, Any]]:
    opens = datetime.combine(month + timedelta(days=2), datetime.min.time(), tzinfo=UTC)
    records: list[dict[str, Any]] = [
        record("team", id="tiny"),
        record(
            "survey",
            id="tiny-pulse",
            opens_at=opens.isoformat(),
            k=12,
            questions=[
                {"id": "tc", "kind": "csat", "text": "Happy?"},
                {"id": "tn", "kind": "nps", "text": "Recommend?"},
            ],
        ),
    ]
    for i, (c, n) in enumerate(zip(CSAT, NPS, strict=True)):
        for q, kind, score in (("tc", "csat", c), ("tn", "nps", n)):
            records.append(
                record(
                    "survey_response",
                    id=f"tiny-{q}-{i}",
                    survey="tiny-pulse",
                    question=q,
                    kind=kind,
                    respondent=f"tiny-person-{i}",
                    ts=(opens + timedelta(hours=i + 1)).isoformat(),
                    score=score,
                    team="tiny",
                )
            )
    return records


def _hidden_values() -> list[str]:
    """The tiny team's CSAT and NPS, computed from its raw answers, as a page would show them."""
    csat = sum(s >= 4 for s in CSAT) / len(CSAT)
    promoters, detractors = sum(s >= 9 for s in NPS), sum(s <= 6 for s in NPS)
    nps = 100 * (promoters - detractors) / len(NPS)
    return [f"{csat * 100:.1f}%", f"{nps:,.1f}", repr(csat)[:8]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    need("chromium", Path(CHROMIUM).exists())
    root = tmp_path_factory.mktemp("browser")
    path = root / "demo.duckdb"
    settings = load_settings(config=None, environ={})
    today = datetime.now(UTC).date()
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    with Store.open(str(path)) as store:
        ingest_arrow(
            store, generate(OrgSpec(teams=8, days=120, end=today)), settings, source="demo"
        )
        ingest_records(store, _tiny_team(last_month), settings, source="file:tiny.ndjson")
        team = str(next(s["team"] for s in store.rows("service") if s["team"] is not None))
    # the report reads a copy: the server holds the store's file; rendered only when asked for
    shutil.copy(path, root / "copy.duckdb")
    with serving(f"duckdb:///{path}", root) as server:
        yield Demo(server.url, root / "copy.duckdb", team, _hidden_values())


@pytest.fixture(scope="module")
def report(demo: Demo) -> Path:
    """The HTML report of the demo store, as `heatlens report --format html` writes it."""
    out = demo.copy.with_name("report.html")
    with Store.open(str(demo.copy)) as store:
        html = render_html(store, load_settings(config=None, environ={}), Request("month"))
    out.write_text(html, encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    need("chromium", Path(CHROMIUM).exists())
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


class Tab:
    """A browser page that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1366, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, url: str, shot: str | None = None) -> Any:
        self.page.goto(url, timeout=120_000)
        self.page.wait_for_function(CHARTS_DRAWN, timeout=60_000)
        if shot and os.environ.get("HEATLENS_SCREENSHOTS"):
            out = Path(os.environ["HEATLENS_SCREENSHOTS"]) / f"dash-{shot}.png"
            self.page.screenshot(path=str(out), full_page=True)
        return self.page

    def charts(self) -> tuple[int, int, list[str]]:
        """(charts on the page, charts with drawn marks, their states)."""
        total = self.page.locator("[data-chart]").count()
        drawn = self.page.locator("[data-chart] svg .mark-symbol, [data-chart] svg path").count()
        states = self.page.eval_on_selector_all(
            "[data-chart]", "els => els.map(e => e.getAttribute('data-rendered'))"
        )
        return total, drawn, states


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    t = Tab(browser)
    yield t
    t.context.close()


def test_every_page_loads_without_console_errors_and_draws_its_charts(demo: Demo, tab: Tab) -> None:
    pages = {
        "overview": ("/", 1),
        "capability": ("/capabilities/ci", 5),
        "team": (f"/teams/{demo.team}", 2),
        "dora": ("/dora", 0),
        "data": ("/data", 0),
    }
    for name, (path, at_least) in pages.items():
        page = tab.open(demo.base + path, shot=name)
        assert page.title().endswith("· heatlens"), path
        total, drawn, states = tab.charts()
        assert total >= at_least, path
        assert states == ["true"] * total, path
        assert drawn >= total, path
        assert page.locator("svg").count() >= total
    assert tab.errors == []


def test_a_filter_changes_the_numbers_and_the_url(demo: Demo, tab: Tab) -> None:
    page = tab.open(demo.base + "/capabilities/ci?grain=week")
    weekly = page.locator("table.numbers tbody tr").all_inner_texts()
    page.select_option("select[name=grain]", "month")  # the form submits itself
    page.wait_for_url(re.compile(r"grain=month"))
    page.wait_for_function(CHARTS_DRAWN)
    monthly = page.locator("table.numbers tbody tr").all_inner_texts()
    assert "grain=month" in page.url
    assert monthly and weekly and monthly != weekly
    assert len(monthly) < len(weekly)  # fewer, longer periods
    assert tab.errors == []


def test_an_explain_link_opens_the_records_behind_a_number(demo: Demo, tab: Tab) -> None:
    page = tab.open(demo.base + "/dora")
    link = page.locator("table.numbers a.num").first
    shown = link.inner_text()
    link.click()
    page.wait_for_url(re.compile(r"/explain\?"))
    assert page.locator("p.big").inner_text().startswith(shown)
    assert page.get_by_role("heading", name=re.compile("Records counted")).count() == 1
    if os.environ.get("HEATLENS_SCREENSHOTS"):
        page.screenshot(path=str(Path(os.environ["HEATLENS_SCREENSHOTS"]) / "dash-explain.png"))
    assert tab.errors == []


def test_the_html_report_opens_from_a_file_url_with_its_charts(report: Path, tab: Tab) -> None:
    requests: list[str] = []
    tab.page.on("request", lambda r: requests.append(r.url))
    page = tab.open(report.as_uri(), shot="report")
    total, drawn, states = tab.charts()
    assert total >= 6  # the portfolio and at least one capability's charts
    assert states == ["true"] * total
    assert drawn >= total
    assert page.locator("#overview table.scorecard").count() == 1
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    assert tab.errors == []


def test_a_suppressed_team_value_appears_nowhere(demo: Demo, report: Path, tab: Tab) -> None:
    team_page = tab.open(demo.base + "/teams/tiny")
    assert "suppressed (< 12)" in team_page.inner_text("main")
    csat, nps, raw = demo.hidden
    paths = ["/", "/dora", "/data", "/capabilities/ci", f"/teams/{demo.team}", "/teams/tiny"]
    for path in paths:
        text = tab.open(demo.base + path).inner_text("body")  # what a person reads
        sent = httpx.get(demo.base + path, timeout=60).text  # what the server sent, chart data too
        assert nps not in text, path
        assert raw not in sent, path
        if path == "/teams/tiny":
            assert csat not in text
    html = report.read_text(encoding="utf-8")
    assert nps not in html and raw not in html
    page = tab.open(report.as_uri())
    assert csat not in page.inner_text("body") and nps not in page.inner_text("body")
    assert tab.errors == []


def test_a_browser_logs_in_with_a_read_token(browser: Any, tmp_path: Path) -> None:
    settings = load_settings(config=None, environ={})
    path = tmp_path / "locked.duckdb"
    with Store.open(str(path)) as store:
        ingest_records(store, _tiny_team(date(2026, 3, 1)), settings, source="file:t.ndjson")
        _, secret = create_token(store, "read", name="leadership")
    tab = Tab(browser)
    try:
        with serving(f"duckdb:///{path}", tmp_path) as server:
            base = server.url
            page = tab.page
            page.goto(base + "/data")
            assert urlsplit(page.url).path == "/login"  # sent to the login page, then back
            page.fill("input[name=token]", secret)
            page.click("form.login button")
            page.wait_for_url(base + "/data")
            assert "leadership" in page.inner_text("header")
            cookies = {c["name"]: c for c in tab.context.cookies()}
            session = cookies["heatlens_session"]
            assert session["httpOnly"] and session["sameSite"] == "Strict"
            assert secret not in session["value"]
            assert "heatlens_session" not in page.evaluate("document.cookie")  # no script sees it
            page.click("form.logout button")
            page.wait_for_url(re.compile(r"/login$"))
            page.goto(base + "/data")
            assert urlsplit(page.url).path == "/login"
        assert tab.errors == []
    finally:
        tab.context.close()


def test_the_report_served_over_http_with_its_policy_draws_its_charts(
    report: Path, tab: Tab
) -> None:
    html = report.read_text(encoding="utf-8")
    url = "http://127.0.0.1:9/report.html"  # answered by the browser itself, never sent
    tab.page.route(
        url,
        lambda route: route.fulfill(
            body=html,
            content_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": report_policy(html)},
        ),
    )
    tab.open(url)
    total, drawn, states = tab.charts()
    assert total >= 6 and states == ["true"] * total and drawn >= total
    assert tab.errors == []  # a blocked script or style would be a console error
