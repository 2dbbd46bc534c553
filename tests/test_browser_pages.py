"""The DORA, service, explain and data pages as a person uses them, in a real chromium against a
real `heatlens serve` on the demo store of tests/test_browser.py: sorting and searching the DORA
table, a service's page, explain's human units, its pages beyond the first 50, its CSV and its
"failures only" filter; and every `heatlens …` command a page names exists.

The expected answers come from the store itself (plain Python over its records) or from the number
the page explains (a rate × its n is the count of failures behind it).
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import click
import httpx
import pytest

from heatlens.cli import cli
from heatlens.report.html import pages, records
from heatlens.store import Store
from tests.test_browser import RANGE, Demo, Tab, browser, demo, tab

__all__ = ["browser", "demo", "tab"]  # the fixtures, shared with tests/test_browser.py

DORA = f"/dora?{RANGE}"  # its table shows November 2026
NOVEMBER = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
LEAD_TIME = "/explain?metric=dora.lead_time_p50&period=2026-11-01&grain=month"
FAILURE_RATE = "/explain?metric=dora.change_failure_rate&period=2026-11-01&grain=month"
TASKS = "/explain?metric=task.success_rate&period=2026-11-01&grain=month"
# a duration as a person reads it: 45 s, 12 min, 3.4 h, 13 d
HUMAN_DURATION = re.compile(r"^\d[\d,]*(\.\d)? (s|min|h|d)$")


def _service_names(page: Any) -> list[str]:
    return page.locator("table.sortable[data-key=service] tbody th").all_inner_texts()


def _hours(text: str) -> float:
    """A shown duration back in hours (to compare an order, not a value)."""
    number, unit = text.split()
    scale = {"s": 1 / 3600, "min": 1 / 60, "h": 1.0, "d": 24.0}[unit]
    return float(number.replace(",", "")) * scale


def _column(page: Any, title: str) -> list[str]:
    """The cells of one column of the per-service table."""
    heads = page.locator("table.sortable[data-key=service] thead th").all_inner_texts()
    i = next(n for n, h in enumerate(heads) if h.startswith(title))
    return page.locator(
        f"table.sortable[data-key=service] tbody tr td:nth-child({i + 1})"
    ).all_inner_texts()


def _lead_times(page: Any) -> list[float]:
    """The per-service lead times p50 shown, in hours (a tier badge after the value is left)."""
    cells = _column(page, "lead time p50")
    return [_hours(" ".join(c.split()[:2])) for c in cells if not c.startswith("—")]


def test_sorting_the_dora_table_by_a_column_changes_the_order(demo: Demo, tab: Tab) -> None:
    page = tab.open(demo.base + DORA)
    by_name = _service_names(page)
    assert by_name == sorted(by_name)  # by name until a column is chosen
    header = page.locator("table.sortable[data-key=service] thead a.sort", has_text="lead time p50")
    header.click()
    page.wait_for_url(re.compile(r"sort=dora.lead_time_p50"))
    by_lead = _service_names(page)
    assert sorted(by_lead) == sorted(by_name) and by_lead != by_name
    assert _lead_times(page) == sorted(_lead_times(page), reverse=True)  # longest first
    cells = _column(page, "lead time p50")
    known = [c for c in cells if not c.startswith("—")]
    assert all(c.startswith("—") for c in cells[len(known) :])  # services without one last
    assert page.locator("th[aria-sort=descending]").count() == 2  # teams and services
    # the same header again: shortest first
    page.locator("table.sortable[data-key=service] thead a.sort", has_text="lead time p50").click()
    page.wait_for_url(re.compile(r"dir=asc"))
    assert _lead_times(page) == sorted(_lead_times(page))
    assert tab.errors == []


def test_the_search_box_filters_rows(demo: Demo, tab: Tab) -> None:
    page = tab.open(demo.base + DORA)
    every = _service_names(page)
    wanted = [n for n in every if "pay" in n]
    assert 0 < len(wanted) < len(every)
    page.fill("input[type=search]", "pay")  # narrows as one types
    rows = page.locator("table.sortable[data-key=service] tbody tr:visible th")
    assert rows.all_inner_texts() == wanted
    teams = page.locator("table.sortable[data-key=team] tbody tr:visible th").all_inner_texts()
    assert teams and all("pay" in t for t in teams)
    # without script, the form asks the server
    sent = httpx.get(demo.base + DORA + "&q=pay", timeout=60).text
    assert all(f">{n}</a>" in sent for n in wanted)
    assert not [n for n in every if n not in wanted and f">{n}</a>" in sent]
    assert f"{len(wanted)} of {len(every)} matching" in sent
    assert tab.errors == []


def test_a_service_link_opens_the_service_page(demo: Demo, tab: Tab) -> None:
    page = tab.open(demo.base + DORA)
    link = page.locator("table.sortable[data-key=service] tbody th a").first
    name = link.inner_text()
    link.click()
    page.wait_for_url(re.compile(r"/services/"))
    page.wait_for_function(
        "() => document.querySelector('[data-chart]')?.hasAttribute('data-rendered')"
    )
    assert unquote(page.url.split("/services/")[1].split("?")[0]) == name
    assert page.locator("h1").inner_text() == f"Service {name}"
    with Store.open(str(demo.copy)) as store:
        owner = store.rows("service", ids=[name])[0]["team"]
        start, end = datetime(2026, 8, 1, tzinfo=UTC), NOVEMBER[1]
        deployed = [
            d
            for d in store.rows("deployment")
            if d["service"] == name and start <= d["finished_at"] < end
        ]
    assert page.locator(f"p.lede a[href^='/teams/{owner}']").count() == 1
    shown = page.locator("h2", has_text="Deployments").locator("small").inner_text()
    assert shown == str(len(deployed))
    results = {d["result"] for d in deployed}
    table = page.locator("table.records").first.inner_text()
    assert all(r in table for r in results)
    assert page.locator("[data-chart] svg").count() == 1  # the lead time trend
    # recovery time and time to restore say what they are
    assert "from a failed deployment's finish" in page.inner_text("dl.definitions")
    assert tab.errors == []


def test_the_explain_page_shows_human_units_and_pages_beyond_50(demo: Demo, tab: Tab) -> None:
    page = tab.open(demo.base + LEAD_TIME)
    heading = page.locator("h2", has_text="Records counted")
    assert heading.count() == 1, page.inner_text("main")[:500]
    total = int(re.sub(r"\D", "", heading.inner_text()))
    assert total > 100
    titles = page.locator("table.records thead th").all_inner_texts()
    assert "Lead time" in titles and "Commit" in titles and "hours" not in titles
    column = titles.index("Lead time") + 1
    first = page.locator(f"table.records tbody td:nth-child({column})").all_inner_texts()
    assert len(first) == 50
    assert all(HUMAN_DURATION.match(v) for v in first), first
    assert [_hours(v) for v in first] == sorted((_hours(v) for v in first), reverse=True)
    page.get_by_role("link", name="Next →").click()
    page.wait_for_url(re.compile(r"page=2"))
    assert f"records 51–100 of {total:,}" in page.inner_text("p.listing")
    second = page.locator(f"table.records tbody td:nth-child({column})").all_inner_texts()
    assert len(second) == 50 and _hours(second[0]) <= _hours(first[-1])
    # the CSV holds every record behind the number, raw hours
    with page.expect_download() as download:
        page.locator("a.download").click()
    with open(download.value.path(), encoding="utf-8") as f:
        text = f.read()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == total
    assert {"change", "hours", "finished_at"} <= set(rows[0])
    assert all(float(r["hours"]) >= 0 for r in rows)
    assert tab.errors == []


def test_failures_only_filters_the_records(demo: Demo, tab: Tab) -> None:
    page = tab.open(demo.base + FAILURE_RATE)
    rate = float(page.locator("p.big").inner_text().split("%")[0]) / 100
    n = int(re.sub(r"\D", "", page.locator("p.big small").inner_text()))
    page.get_by_role("switch", name=re.compile("Failures only")).click()
    page.wait_for_url(re.compile(r"failures=True"))
    listing = page.inner_text("p.listing")
    failed = int(re.sub(r"\D", "", listing.split(" failed")[0]))
    assert abs(failed - rate * n) < 0.5 + n * 0.0005  # the shown rate is rounded to 0.1 %
    titles = page.locator("table.records thead th").all_inner_texts()
    flags = page.locator(
        f"table.records tbody td:nth-child({titles.index('Failed') + 1})"
    ).all_inner_texts()
    assert flags and set(flags) == {"yes"}
    # task metrics: only the attempts that did not succeed
    page = tab.open(demo.base + TASKS + "&failures=True")
    titles = page.locator("table.records thead th").all_inner_texts()
    outcomes = page.locator(
        f"table.records tbody td:nth-child({titles.index('Outcome') + 1})"
    ).all_inner_texts()
    assert outcomes and "success" not in outcomes
    csv_text = httpx.get(demo.base + "/explain.csv" + TASKS[8:] + "&failures=True", timeout=60)
    rows = list(csv.DictReader(io.StringIO(csv_text.text)))
    with Store.open(str(demo.copy)) as store:
        unsuccessful = [
            u
            for u in store.rows("usage")
            if u["outcome"] not in (None, "success") and NOVEMBER[0] <= u["ts"] < NOVEMBER[1]
        ]
    assert sorted(r["id"] for r in rows) == sorted(u["id"] for u in unsuccessful)
    assert tab.errors == []


COMMAND = re.compile(r"heatlens ([a-z][a-z-]*)(?: ([a-z][a-z|-]*))?")


def _commands(html: str) -> set[tuple[str, str | None]]:
    return {(m.group(1), m.group(2)) for m in COMMAND.finditer(html)}


def _check_commands(found: set[tuple[str, str | None]]) -> None:
    for name, sub in found:
        assert name in cli.commands, f"`heatlens {name}` is named on a page but does not exist"
        command = cli.commands[name]
        if isinstance(command, click.Group) and sub is not None:
            for part in sub.split("|"):
                assert part in command.commands, f"`heatlens {name} {part}` does not exist"


def test_every_command_a_page_names_exists(demo: Demo, tmp_path: Any) -> None:
    found: set[tuple[str, str | None]] = set()
    paths = ["/", DORA, "/data", LEAD_TIME, FAILURE_RATE, f"/teams/{demo.team}?{RANGE}"]
    paths += [f"/capabilities/ci?{RANGE}", "/explain?metric=adoption.new_teams&period=2026-11-01"]
    for path in paths:
        found |= _commands(httpx.get(demo.base + path, timeout=120).text)
    # an empty store's data page (its hints name the commands that fill a store)
    with Store.open(str(tmp_path / "empty.duckdb")) as store:
        view = records.data(store)
        html = pages.page(view, nav={"org": True, "teams": [], "capabilities": []}, user=None)
    found |= _commands(html)
    found |= _commands(pages.login(None, "/"))
    assert ("sync", "git") in found and ("ingest", None) in found  # the check reads the hints
    _check_commands(found)
    with pytest.raises(AssertionError):  # and it would catch a command that does not exist
        _check_commands({("sync", "gitlub")})
