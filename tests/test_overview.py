"""The overview, capability and team pages and the HTML report on two small stores whose answers
are worked out by hand: one with recent HEAT usage (scorecard links, "no change", all history),
one holding only deployments of 2024 (the empty-range hints, the report's trends and its last
complete period). In-process: the ASGI app and `render_html`."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from rich.console import Console

from heatlens.analysis.bootstrap import Change
from heatlens.analysis.scorecard import CapabilityScore, Cell, Scorecard
from heatlens.ingest import ingest_records
from heatlens.metrics import Request
from heatlens.metrics import engine as engine_module
from heatlens.report import render_scorecard
from heatlens.report.html import present
from heatlens.report.html.export import render_html
from heatlens.report.units import format_value
from heatlens.settings import load_settings
from heatlens.store import Store
from heatlens.web import create_app
from tests.conftest import record

NOW = datetime(2026, 12, 6, 20, tzinfo=UTC)


def recent() -> list[dict[str, Any]]:
    """Teams alpha and beta; `ci` used by alpha only, twice in February and twice in March 2026,
    always successfully: adoption 1 of 2 teams = 50.0 % and task success 100.0 % both months
    (no change); durations 60 s, 120 s in February, 180 s, 240 s in March (median 90 s → 210 s,
    a change)."""
    records = [record("team", id=t) for t in ("alpha", "beta")]
    records.append(record("capability", id="ci", launched_at="2026-01-01T00:00:00Z"))
    days = ["2026-02-03", "2026-02-10", "2026-03-02", "2026-03-09"]
    for i, day in enumerate(days):
        records.append(
            record(
                "usage",
                id=f"u{i}",
                ts=f"{day}T10:00:00Z",
                capability="ci",
                team="alpha",
                outcome="success",
                action="build",
                duration_s=60.0 * (i + 1),
            )
        )
    return records


# deployments of service `api` (team alpha), each shipping one change: lead times 24 h, 1 h, 48 h
OLD = (
    ("d1", "2024-04-10T10:00:00Z", "c1", "2024-04-09T10:00:00Z"),
    ("d2", "2024-05-20T10:00:00Z", "c2", "2024-05-20T09:00:00Z"),
    ("d3", "2024-08-01T10:00:00Z", "c3", "2024-07-30T10:00:00Z"),
)


def old() -> list[dict[str, Any]]:
    """Only deployments and changes, of 2024 — like a library's release tags synced from git."""
    records = [record("team", id="alpha"), record("service", id="api", team="alpha")]
    for dep, finished, change, committed in OLD:
        records.append(record("change", id=change, committed_at=committed, service="api"))
        records.append(
            record("deployment", id=dep, service="api", finished_at=finished, commit_sha=change)
        )
    return records


def _store(path: Path, records: list[dict[str, Any]]) -> str:
    settings = load_settings(config=None, environ={})
    with Store.open(str(path)) as store:
        ingest_records(store, records, settings, source="file:test.ndjson")
    return f"duckdb:///{path}"


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("overview")
    return {
        "recent": _store(root / "recent.duckdb", recent()),
        "old": _store(root / "old.duckdb", old()),
        "empty": _store(root / "empty.duckdb", []),
    }


@pytest.fixture(scope="module")
def recent_client(stores: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(load_settings(config=None, environ={}), stores["recent"])) as c:
        yield c


@pytest.fixture(scope="module")
def old_client(stores: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(load_settings(config=None, environ={}), stores["old"])) as c:
        yield c


def text_of(page: str) -> str:
    """What a person reads: no tags, scripts or chart data; whitespace collapsed."""
    page = re.sub(r"<script.*?</script>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _links(page: str, css_class: str) -> list[tuple[str, str]]:
    """(href, text) of the `<a class=css_class>` links of a page."""
    found = re.findall(rf'<a class="{css_class}" href="([^"]+)"[^>]*>([^<]+)</a>', page)
    return [(html.unescape(h), t) for h, t in found]


def _where(page: str) -> list[tuple[str, str]]:
    """(href, text) of the links in a page's empty-range box."""
    box = re.search(r'<div class="empty where".*?</div>', page, re.S)
    assert box is not None, "no empty-range box"
    return [(html.unescape(h), t) for h, t in re.findall(r'<a href="([^"]+)">([^<]+)</a>', box[0])]


# -- the overview ------------------------------------------------------------------------------


def test_every_scorecard_number_links_to_its_records(recent_client: TestClient) -> None:
    page = recent_client.get("/?grain=month&to=2026-04-01").text
    links = dict((t, h) for h, t in _links(page, "num"))
    # March by hand: adoption 1 of 2 teams, task success 2 of 2, median of 180 s and 240 s
    assert set(links) >= {"50.0%", "100.0%", format_value(210, "seconds")}
    href = links["50.0%"]
    query = parse_qs(urlsplit(href).query)
    assert urlsplit(href).path == "/explain"
    assert query == {
        "metric": ["adoption.team_adoption_rate"],
        "period": ["2026-03-01"],
        "grain": ["month"],
        "segment": ["capability=ci"],
    }
    explained = text_of(recent_client.get(href).text)
    assert "50.0%" in explained and "u2" in explained  # the value and March's usage record


def test_no_change_is_said_not_printed_as_zero(recent_client: TestClient) -> None:
    text = text_of(recent_client.get("/?grain=month&to=2026-04-01").text)
    assert "→ 0" not in text and "0.0 pp" not in text
    # adoption and task success are unchanged from February; the median duration rose by 120 s
    assert text.count("no change") == 2
    assert f"▲ {format_value(120, 'seconds')}" in text


def test_the_overview_honours_grain_all(recent_client: TestClient, old_client: TestClient) -> None:
    page = recent_client.get("/?grain=all").text
    text = text_of(page)
    # all history: from the first stored record (the team records carry no time: 2026-02-03)
    assert "over all of 2026-02-03 to" in text
    assert "scorecard per capability for the month" not in text
    # four attempts, two per month, all alpha's: adoption 1 of 2 teams, median of 60…240 s
    assert "50.0%" in text and "n=4" in text and format_value(150, "seconds") in text
    assert '<option value="all" selected>' in page
    assert 'name="from"' in page  # all history can start later
    # deployments of 2024 are all history's too: lead times 24 h, 1 h and 48 h → median 24 h
    old_text = text_of(old_client.get("/?grain=all").text)
    assert "over all of 2024-04-09 to" in old_text
    assert f"lead time p50 {format_value(24, 'hours')}" in old_text
    assert "Teams per tier (all)" in old_text


def test_an_empty_range_on_the_overview_says_where_the_data_is(old_client: TestClient) -> None:
    page = old_client.get("/?grain=month&to=2026-12-01").text
    text = text_of(page)
    assert "Nothing in this range." in text
    assert "Deployments span 2024-04-10 … 2024-08-01" in text
    assert "demo" not in text  # the store holds records
    links = dict((t, h) for h, t in _where(page))
    # the data spans more than two years to the range's end: by quarter; the scorecard then
    # scores the quarter of the last deployment (2024-07-01), the one before --to
    assert links == {
        "the last quarter with records (2024-07-01)": "/?grain=quarter&to=2024-10-01",
        "all history": "/?grain=all",
    }
    scored = old_client.get(links["the last quarter with records (2024-07-01)"]).text
    shown = text_of(scored)
    assert "quarter starting 2024-07-01, against 2024-04-01" in shown
    assert "Nothing to show yet. No usage records or survey responses" in shown  # none stored
    assert 'class="scorecard"' not in scored  # its dimensions are omitted
    assert "deployment frequency" in shown and "Nothing in this range. No deployments" not in shown


def test_an_empty_store_is_the_only_one_told_to_try_demo(stores: dict[str, str]) -> None:
    with TestClient(create_app(load_settings(config=None, environ={}), stores["empty"])) as c:
        assert "heatlens demo" in text_of(c.get("/").text)


# -- capability and team pages -----------------------------------------------------------------


def test_an_empty_range_on_a_capability_links_to_its_data(recent_client: TestClient) -> None:
    page = recent_client.get("/capabilities/ci?grain=month&from=2025-01-01&to=2025-06-01").text
    text = text_of(page)
    assert "No usage records or survey responses from 2025-01-01 to 2025-05-31." in text
    assert "Usage records span 2026-02-03 … 2026-03-09." in text
    assert "demo" not in text
    links = dict((t, h) for h, t in _where(page))
    # 2026-02-03 to 2026-03-09 is short: by week, from the Monday of the first record's week
    assert links == {
        "by week from 2026-02-02": "/capabilities/ci?grain=week&from=2026-02-02",
        "all history": "/capabilities/ci?grain=all",
    }
    weekly = recent_client.get(links["by week from 2026-02-02"]).text
    assert 'class="empty where"' not in weekly
    assert "2026-03-09" in text_of(weekly)  # a week with usage, in the per-period table


def test_a_team_page_omits_sections_without_records(old_client: TestClient) -> None:
    text = text_of(old_client.get("/teams/alpha?grain=quarter&from=2024-01-01&to=2025-01-01").text)
    # deployments are in the range; usage and survey answers are stored nowhere
    assert "No usage records from 2024-01-01 to 2024-12-31." in text
    assert "No survey responses from 2024-01-01 to 2024-12-31." in text
    assert "2024-04-01" in text and "2024-07-01" in text  # the DORA trend's quarters
    empty = text_of(old_client.get("/teams/alpha?grain=month&from=2026-01-01&to=2026-03-01").text)
    assert "Deployments span 2024-04-10 … 2024-08-01." in empty
    assert "DORA trend" not in empty  # one box for the page, not one per section


def test_every_page_filter_offers_all(recent_client: TestClient) -> None:
    for path in ("/", "/capabilities/ci", "/teams/alpha"):
        page = recent_client.get(path + "?grain=all").text
        assert '<option value="all" selected>' in page, path
        assert "Cannot show" not in page, path


# -- the HTML report ---------------------------------------------------------------------------


def test_last_complete_period_is_a_calendar_fact() -> None:
    # a range of quarters from 2024 to the current one: the last to have ended by 2026-12-06 is
    # 2026-07-01, whatever periods hold records
    assert present.last_complete("quarter", date(2024, 1, 1), date(2026, 10, 1), "UTC", NOW) == (
        date(2026, 7, 1)
    )
    # a range reaching into the current quarter: that quarter has not ended
    assert present.last_complete("quarter", date(2024, 1, 1), date(2027, 1, 1), "UTC", NOW) == (
        date(2026, 7, 1)
    )
    # a range ending mid-month: its last, clipped month is not a whole one
    assert present.last_complete("month", date(2026, 9, 1), date(2026, 11, 15), "UTC", NOW) == (
        date(2026, 10, 1)
    )
    assert present.last_complete("month", date(2026, 12, 1), date(2027, 1, 1), "UTC", NOW) is None


@pytest.fixture(scope="module")
def old_report(stores: dict[str, str]) -> str:
    """`heatlens report --format html --grain quarter --from 2024-01-01` on 2026-12-06."""
    with Store.open(stores["old"].removeprefix("duckdb:///")) as store:
        request = Request("quarter", date(2024, 1, 1), now=NOW)
        return render_html(store, load_settings(config=None, environ={}), request)


def _section(page: str, anchor: str) -> str:
    found = re.search(rf'<section class="report-section" id="{anchor}">(.*?)</section>', page, re.S)
    assert found is not None, anchor
    return found[1]


def test_the_report_names_the_right_last_complete_period(old_report: str) -> None:
    dora = text_of(_section(old_report, "dora"))
    assert "last complete quarter (2026-07-01 to 2026-09-30)" in dora
    assert "2024-04-01" not in dora and "2024-07-01" not in dora
    assert "grain quarter · 2024-01-01 to 2026-09-30" in text_of(old_report)


def test_the_report_shows_trends_over_every_period_of_the_range(old_report: str) -> None:
    trends = _section(old_report, "trends")
    text = text_of(trends)
    assert "every quarter from 2024-01-01 to 2026-09-30" in text
    # by hand: 2 deployments in Q2 2024 (lead times 24 h and 1 h), 1 in Q3 2024 (48 h)
    rows = re.findall(r'<tr><th scope="row">(\d{4}-\d\d-\d\d)</th>(.*?)</tr>', trends, re.S)
    shown = {p: text_of(cells).split()[0] for p, cells in rows}
    assert shown == {"2024-04-01": "2", "2024-07-01": "1"}
    assert "9 quarters without deployments or incidents left out of the table" in text
    # the charts draw every quarter of the range, 11 of them, quiet ones as 0
    specs = re.findall(r'<script type="application/json" id="chart-trends-[^"]+">', trends)
    # frequency and lead time; change failure rate has no failure signal (no incident stored,
    # no deployment `kind`), so the engine gives it no value and it draws nothing
    assert len(specs) == 2
    frequency = re.search(
        r'id="chart-trends-dora-deployment_frequency">(.*?)</script>', trends, re.S
    )
    assert frequency is not None
    assert len(set(re.findall(r'"period": ?"(\d{4}-\d\d-\d\d)"', frequency[1]))) == 11


def test_the_report_says_where_the_data_is_with_the_command(old_report: str) -> None:
    overview = text_of(_section(old_report, "overview"))
    assert "Nothing to show yet" not in overview
    assert "deployments span 2024-04-10 … 2024-08-01" in overview
    # the command reads as code, whole, so it can be copied
    assert "<code>heatlens report --format html --grain quarter --to 2024-10-01</code>" in _section(
        old_report, "overview"
    )
    assert "demo" not in text_of(old_report)
    # no capability has usage: no capability section, and no HEAT table
    assert 'id="capabilities-' not in old_report
    assert 'class="scorecard"' not in _section(old_report, "overview")


def test_the_report_computes_only_what_it_shows(
    stores: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a store holding deployments only, no HEAT metric is computed at all, and the DORA
    metrics that read incidents (none stored) are not computed for the trends."""
    asked: list[tuple[str, ...]] = []
    families = engine_module._families

    def counting(pending: Any, query: Any) -> None:
        # every report computed, alone (`compute`) or with others (`compute_all`), goes here
        asked.append(tuple(pending.request.metrics))
        families(pending, query)

    monkeypatch.setattr(engine_module, "_families", counting)
    with Store.open(stores["old"].removeprefix("duckdb:///")) as store:
        render_html(store, load_settings(config=None, environ={}), Request("quarter", now=NOW))
    metrics = {m for request in asked for m in request}
    assert asked, "the trends are computed"
    assert not {m for m in metrics if not m.startswith("dora.")}
    assert "dora.recovery_time_p50" not in metrics


def test_the_terminal_scorecard_says_no_change_too() -> None:
    """`heatlens demo` prints the scorecard: a change of exactly zero reads "no change"."""
    same = Cell("adoption.team_adoption_rate", 0.5, 2, 0.5, Change(0.0, None, False))
    up = Cell("task.success_rate", 0.75, 4, 0.5, Change(0.25, None, False))
    none = Cell("efficiency.task_duration_p50", None, None, None, None)
    happy = Cell("happiness.csat", None, None, None, None)
    card = Scorecard(
        "month",
        date(2026, 3, 1),
        date(2026, 2, 1),
        [CapabilityScore("ci", same, up, none, happy)],
        [],
    )
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(render_scorecard(card))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "50.0% no change" in text and "→ 0" not in text
    assert "75.0% ↑25.0pp" in text


def test_the_dora_page_shows_the_last_whole_period_not_the_last_with_deployments(
    old_client: TestClient,
) -> None:
    # quarters of 2024: deployments in Q2 and Q3 only; the last quarter to have ended is Q4
    # (2024-10-01), which holds none — the page names it, not Q3 where the per-team rows are
    text = text_of(old_client.get("/dora?grain=quarter&from=2024-01-01&to=2025-01-01").text)
    assert "DORA for the quarter starting 2024-10-01" in text
    all_text = text_of(old_client.get("/dora?grain=all").text)
    assert (
        "DORA over all history in range, 2024-04-09 to" in all_text
        and "the all starting" not in all_text
    )


def test_backticked_names_in_warnings_read_as_code_and_the_rest_is_escaped() -> None:
    from heatlens.report.html.pages import ticks

    assert str(ticks("set `kind` on <deployments>")) == (
        "set <code>kind</code> on &lt;deployments&gt;"
    )
    assert str(ticks("an `unpaired <b> tick")) == "an `unpaired &lt;b&gt; tick"
