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
from datetime import UTC, date, datetime, time, timedelta
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
# The demo organisation ends on a fixed day and every page is asked for with its dates, so the
# pages (and their charts) are the same whatever day the suite runs on.
END = date(2026, 11, 30)  # the demo's last day; its survey wave opens 2026-10-15
RANGE = "grain=month&from=2026-08-01&to=2026-12-01"
PAGES = {  # name → (path, charts drawn on the demo)
    "overview": ("/?grain=month&to=2026-11-01", 1),  # scores October, the survey's month
    "capability": (f"/capabilities/ci?{RANGE}", 5),
    "team": ("/teams/{team}?" + RANGE, 4),
    "dora": (f"/dora?{RANGE}", 0),  # tables: what they show is checked below
    "data": ("/data", 0),
}
# The report as `heatlens report --format html --grain month --from 2026-08-01 --to 2026-11-01`
# writes it on 2026-12-01.
REPORT = Request(
    "month", date(2026, 8, 1), date(2026, 11, 1), now=datetime(2026, 12, 1, tzinfo=UTC)
)
# A team answering a survey on CI whose anonymity threshold it cannot reach (997 of k = 1000), in
# October. Its CSAT is 613/997: with a prime denominator that large, the first ten digits of the
# value cannot be those of another number of the demo (two fractions with denominators below
# 10,000 differ by more than 1e-7 unless equal), so finding them in what the server sends is a
# leak, never a coincidence. Shown values are rounded (61.5%, -17.9), so they are looked for only
# where the team's numbers would be. `open` answers a survey of k = 3 the same way (991 answers,
# its own values), to show that the checks find an unsuppressed value.
SURVEY_MONTH = date(2026, 10, 1)
TINY = ("tiny", 1000, 997, 613, 211, 389)  # team, k, respondents, satisfied, promoters, detractors
OPEN = ("open", 3, 991, 600, 307, 401)
CHARTS_DRAWN = (
    "() => [...document.querySelectorAll('[data-chart]')]"
    ".every(e => e.hasAttribute('data-rendered'))"
)


@dataclass(frozen=True)
class Demo:
    base: str
    copy: Path  # a copy of the store, for the report
    team: str  # a demo team with deployments
    usage: int  # usage records in the store
    hidden: Values  # how the suppressed team's values would read
    shown: Values  # how the unsuppressed survey team's values read


def _survey_team(
    team: str, k: int, n: int, satisfied: int, promoters: int, detractors: int, month: date
) -> list[dict[str, Any]]:
    """A team of `n` respondents answering a CSAT and an NPS question of a survey of threshold
    `k`: `satisfied` answer 4 or 5, `promoters` 9 or 10 and `detractors` 0 to 6."""
    opens = datetime.combine(month + timedelta(days=2), time(0), tzinfo=UTC)
    records: list[dict[str, Any]] = [
        record("team", id=team),
        record(
            "survey",
            id=f"{team}-pulse",
            opens_at=opens.isoformat(),
            k=k,
            questions=[
                {"id": f"{team}-c", "kind": "csat", "text": "Happy?", "capability": "ci"},
                {"id": f"{team}-n", "kind": "nps", "text": "Recommend?", "capability": "ci"},
            ],
        ),
    ]
    for i in range(n):
        csat = 4 + i % 2 if i < satisfied else 1 + i % 3
        if i < promoters:
            nps = 9 + i % 2
        elif i < promoters + detractors:
            nps = i % 7
        else:
            nps = 7 + i % 2
        for q, kind, score in ((f"{team}-c", "csat", csat), (f"{team}-n", "nps", nps)):
            records.append(
                record(
                    "survey_response",
                    id=f"{q}-{i}",
                    survey=f"{team}-pulse",
                    question=q,
                    kind=kind,
                    respondent=f"{team}-person-{i}",
                    ts=(opens + timedelta(minutes=i + 1)).isoformat(),
                    score=score,
                    team=team,
                )
            )
    return records


@dataclass(frozen=True)
class Values:
    """How a survey team's CSAT and NPS read on a page (as `show_value` formats them), and its
    CSAT's first ten digits as the chart data carries it (JSON writes the float whole)."""

    csat: str
    nps: str
    raw: str


def _values(n: int, satisfied: int, promoters: int, detractors: int) -> Values:
    """Computed by hand from the answers, not by the engine."""
    csat = satisfied / n
    nps = 100 * (promoters - detractors) / n
    return Values(f"{csat * 100:.1f}%", f"{nps:,.1f}", f"{csat:.15f}"[:12])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    need("chromium", Path(CHROMIUM).exists())
    root = tmp_path_factory.mktemp("browser")
    path = root / "demo.duckdb"
    settings = load_settings(config=None, environ={})
    with Store.open(str(path)) as store:
        ingest_arrow(store, generate(OrgSpec(teams=8, days=120, end=END)), settings, source="demo")
        surveys = _survey_team(*TINY, SURVEY_MONTH) + _survey_team(*OPEN, SURVEY_MONTH)
        ingest_records(store, surveys, settings, source="file:survey-teams.ndjson")
        team = str(next(s["team"] for s in store.rows("service") if s["team"] is not None))
        usage = store.counts()["usage"]
    # the report reads a copy: the server holds the store's file; rendered only when asked for
    shutil.copy(path, root / "copy.duckdb")
    with serving(f"duckdb:///{path}", root) as server:
        yield Demo(
            server.url,
            root / "copy.duckdb",
            team,
            usage,
            _values(*TINY[2:]),
            _values(*OPEN[2:]),
        )


@pytest.fixture(scope="module")
def report(demo: Demo) -> Path:
    """The HTML report of the demo store, as `heatlens report --format html` writes it."""
    out = demo.copy.with_name("report.html")
    with Store.open(str(demo.copy)) as store:
        html = render_html(store, load_settings(config=None, environ={}), REPORT)
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
    for name, (path, charts) in PAGES.items():
        page = tab.open(demo.base + path.format(team=demo.team), shot=name)
        assert page.title().endswith("· heatlens"), path
        total, drawn, states = tab.charts()
        assert total == charts, path
        assert states == ["true"] * total, path
        assert drawn >= total, path
        assert page.locator("svg").count() >= total
        if name == "dora":  # per team and per service, each number a link to its records
            lede = page.inner_text("p.lede")
            assert "month starting 2026-11-01" in lede  # the last one of the range
            assert page.locator("table.numbers").count() == 3
            assert page.locator(f"table.numbers a[href^='/teams/{demo.team}']").count() == 1
            assert page.locator("table.numbers a.num").count() >= 10
        if name == "data":  # the records per type, as the store counts them
            usage = page.locator("table.types tbody tr", has_text="usage").first
            assert usage.locator("td").first.inner_text() == f"{demo.usage:,}"
            assert "file:survey-teams.ndjson" in page.inner_text("main")
    assert tab.errors == []


def test_a_filter_changes_the_numbers_and_the_url(demo: Demo, tab: Tab) -> None:
    page = tab.open(demo.base + "/capabilities/ci?grain=week&from=2026-08-03&to=2026-11-30")
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
    page = tab.open(demo.base + f"/dora?{RANGE}")
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
    hidden, shown = demo.hidden, demo.shown
    # the checks can fail: the unsuppressed team's pages show its values, in the text and (CSAT)
    # as a number in the chart data
    team_page = tab.open(demo.base + f"/teams/open?{RANGE}").inner_text("main")
    assert shown.csat in team_page and shown.nps in team_page
    capability = f"/capabilities/ci?{RANGE}&team=open"
    assert shown.csat in tab.open(demo.base + capability).inner_text("main")
    assert shown.raw in httpx.get(demo.base + capability, timeout=60).text

    own = [f"/teams/tiny?{RANGE}", f"/capabilities/ci?{RANGE}&team=tiny"]  # its numbers only
    assert "suppressed (< 1000)" in tab.open(demo.base + own[0]).inner_text("main")
    paths = [p.format(team=demo.team) for p, _ in PAGES.values()]
    for path in [*paths, *own]:
        text = tab.open(demo.base + path).inner_text("body")  # what a person reads
        sent = httpx.get(demo.base + path, timeout=60).text  # what the server sent, chart data too
        assert hidden.raw not in sent, path
        # on its own pages, anywhere; elsewhere, in a line (a table row) naming the team
        for line in [text] if path in own else text.splitlines():
            if path in own or "tiny" in line:
                assert hidden.csat not in line and hidden.nps not in line, (path, line)
    html = report.read_text(encoding="utf-8")
    assert hidden.raw not in html
    page = tab.open(report.as_uri())
    for line in page.inner_text("body").splitlines():
        if "tiny" in line:
            assert hidden.csat not in line and hidden.nps not in line, line
    assert tab.errors == []


def test_a_browser_logs_in_with_a_read_token(browser: Any, tmp_path: Path) -> None:
    settings = load_settings(config=None, environ={})
    path = tmp_path / "locked.duckdb"
    with Store.open(str(path)) as store:
        ingest_records(store, _survey_team(*TINY, date(2026, 3, 1)), settings, source="file:t")
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
