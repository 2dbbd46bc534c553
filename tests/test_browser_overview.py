"""The overview and the HTML report in a real browser, as a person sees them (the demo store and
the report of tests/test_browser.py): scorecard numbers are links that open their records, no
change reads "no change", `grain=all` shows all history, an empty range says where the data is
with a link that shows it, the portfolio's dots are drawn whole and coloured by task success,
and the report shows every period of its range."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from tests import test_browser as shared
from tests.test_browser import CHARTS_DRAWN, END, Demo, Tab

# the fixtures of tests/test_browser.py: a demo store served by `heatlens serve`, its HTML
# report, chromium, a tab recording console errors
browser = shared.browser
demo = shared.demo
report = shared.report
tab = shared.tab

SCORED = "/?grain=month&to=2026-11-01"  # October, the demo's survey month: CSAT places dots


def test_scorecard_numbers_are_links_that_open_their_records(demo: Demo, tab: Tab) -> None:
    page = tab.open(demo.base + SCORED)
    numbers = page.locator("table.scorecard a.num")
    assert numbers.count() >= 20
    # every number shown is a link: what is not a link is no value at all
    assert set(page.locator("table.scorecard span.num").all_inner_texts()) <= {"—"}
    link = numbers.first
    shown = link.inner_text()
    link.click()
    page.wait_for_url(re.compile(r"/explain\?.*metric=adoption\.team_adoption_rate"))
    assert page.locator("p.big").inner_text().startswith(shown)
    assert tab.errors == []


def test_no_change_is_never_an_arrow_to_zero(demo: Demo, tab: Tab) -> None:
    for path in (SCORED, "/?grain=month&to=2026-12-01"):
        page = tab.open(demo.base + path)
        text = page.inner_text("main")
        assert not re.search(r"→ 0|(?<![\d.])0\.0 pp", text), path
        for delta in page.locator("table.scorecard .delta").all_inner_texts():
            assert re.fullmatch(r"no change|[▲▼] \S.*", delta.strip()), (path, delta)
    # the demo's November: several capabilities keep their adoption rate from October
    assert page.locator("table.scorecard .delta.same", has_text="no change").count() >= 1
    assert tab.errors == []


def test_grain_all_shows_all_history(demo: Demo, tab: Tab) -> None:
    page = tab.open(demo.base + "/")
    page.select_option("select[name=grain]", "all")  # the form submits itself
    page.wait_for_url(re.compile(r"grain=all"))
    page.wait_for_function(CHARTS_DRAWN)
    lede = page.inner_text("p.lede")
    found = re.search(r"over all of (\d{4}-\d\d-\d\d) to (\d{4}-\d\d-\d\d)", lede)
    assert found, lede
    # the demo's 120 days end on END: all history starts within them, not a month ago
    first = date.fromisoformat(found[1])
    assert END - timedelta(days=120) <= first <= END - timedelta(days=100)
    assert "scorecard per capability for the month" not in page.inner_text("main")
    assert page.locator("table.scorecard tbody tr").count() >= 9
    assert page.locator("select[name=grain]").input_value() == "all"
    assert tab.errors == []


def test_an_empty_range_says_where_the_data_is_with_a_link(demo: Demo, tab: Tab) -> None:
    page = tab.open(demo.base + "/capabilities/ci?grain=month&from=2025-01-01&to=2025-06-01")
    box = page.locator(".empty.where")
    assert box.count() == 1
    text = box.inner_text()
    assert "No usage records or survey responses from 2025-01-01 to 2025-05-31" in text
    assert "Usage records span" in text and "demo" not in text
    assert page.locator("[data-chart]").count() == 0  # no empty charts
    box.locator("a").first.click()
    page.wait_for_url(re.compile(r"/capabilities/ci\?grain=week&from=\d{4}-\d\d-\d\d$"))
    page.wait_for_function(CHARTS_DRAWN)
    assert page.locator(".empty.where").count() == 0
    total, drawn, _ = tab.charts()
    assert total == 5 and drawn >= total
    assert tab.errors == []


def test_portfolio_dots_are_whole_and_coloured_by_task_success(demo: Demo, tab: Tab) -> None:
    page = tab.open(demo.base + SCORED)
    chart = page.locator("[data-chart='chart-overview-portfolio']")
    assert "task success" in chart.inner_text()  # the colour legend's title
    svg = chart.locator("svg").first.bounding_box()
    dots = chart.locator("svg .mark-symbol path")
    assert dots.count() >= 1
    colours = set()
    for i in range(dots.count()):
        box = dots.nth(i).bounding_box()
        assert box is not None and svg is not None
        assert svg["x"] <= box["x"] and box["x"] + box["width"] <= svg["x"] + svg["width"]
        assert svg["y"] <= box["y"] and box["y"] + box["height"] <= svg["y"] + svg["height"]
        colours.add(dots.nth(i).get_attribute("fill"))
    assert colours and "#0072b2" not in {c.lower() for c in colours}  # not one blue for all
    assert tab.errors == []


def test_the_html_report_shows_every_period_of_its_range(report: Path, tab: Tab) -> None:
    page = tab.open(report.as_uri())
    trends = page.locator("#trends")
    # the report's range is August to October 2026 by month: three periods, each a table row
    periods = trends.locator("table.numbers tbody th").all_inner_texts()
    assert periods == ["2026-08-01", "2026-09-01", "2026-10-01"]
    total = trends.locator("[data-chart]").count()
    assert total >= 3
    points: Any = trends.locator("[data-chart]").first.locator("svg .mark-symbol path")
    assert points.count() == 3  # one point per period
    assert "Nothing to show yet" not in page.inner_text("main")
    assert tab.errors == []
