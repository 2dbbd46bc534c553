"""Report renderers: the JSON contract, exact CSV, the Markdown export and the terminal table."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from datetime import date

import pytest
from rich.console import Console

from heatlens.errors import ConfigError
from heatlens.metrics.result import Report, ReportWarning, Row
from heatlens.report import FORMATS, Changes, render, segment_key, terminal_table
from heatlens.report.terminal import sparkline, trend

P1, P2 = date(2026, 3, 2), date(2026, 3, 9)
PAY = {"team": "payments"}


@dataclass(frozen=True)
class FakeChange:
    delta: float
    ci: tuple[float, float] | None
    significant: bool


def make_report(*, partial: bool = False) -> Report:
    """Two weeks by team: a few metrics of every dimension, a suppressed segment, tiers."""
    rows = [
        Row("adoption.active_users", P1, PAY, 1200, 1200),
        Row("adoption.active_users", P2, PAY, 1234, 1234, complete=not partial),
        Row("adoption.team_adoption_rate", P1, PAY, 0.5, 10, ci=(0.25, 0.75)),
        Row("adoption.team_adoption_rate", P2, PAY, 0.625, 8, ci=(0.3, 0.86)),
        Row("task.success_rate", P1, PAY, 0.9, 50, ci=(0.8, 0.95)),
        Row("task.error_rate", P1, PAY, 0.1, 100, ci=(0.05, 0.17)),
        Row("task.error_rate", P2, PAY, 0.05, 100, ci=(0.02, 0.11)),
        Row("efficiency.task_duration_p50", P2, PAY, 312.4, 80),
        Row("happiness.csat", P1, PAY, 0.8, 12, ci=(0.5, 0.9)),
        Row("happiness.csat", P2, PAY, 0.75, 12, ci=(0.45, 0.9)),
        Row("happiness.csat", P2, {"team": "tiny"}, None, None, suppressed=True),
        Row("dora.deployment_frequency", P2, PAY, 1.5, 45, tier="elite"),
        Row("dora.lead_time_p50", P1, PAY, 30.0, 40),
        Row("dora.lead_time_p50", P2, PAY, 20.5, 42, tier="high"),
    ]
    warning = ReportWarning("negative_lead_time", "2 lead times were negative and dropped", 2)
    return Report("week", P1, date(2026, 3, 16), "UTC", ("team",), rows, [warning])


def table_lines(report: Report, changes: Changes | None = None) -> list[str]:
    return render(report, "table", changes).splitlines()


def line_of(lines: list[str], *needles: str) -> str:
    found = [line for line in lines if all(n in line for n in needles)]
    assert len(found) == 1, f"expected one line with {needles}, got {found}"
    return found[0]


def coloured(report: Report, changes: Changes | None = None) -> list[str]:
    """The table as a colour terminal prints it (ANSI escape codes)."""
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=True, color_system="standard")
    console.print(terminal_table(report, changes))
    return out.getvalue().splitlines()


def test_json_is_the_report_contract_indented() -> None:
    report = make_report()
    text = render(report, "json")
    assert text == json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
    assert json.loads(text) == report.to_json()
    assert text.startswith('{\n  "schema": "heatlens.report/v1",\n  "grain": "week",\n')


def test_csv_has_one_exact_line_per_row() -> None:
    assert render(make_report(), "csv").splitlines() == [
        "metric,period,team,value,n,ci_low,ci_high,suppressed,tier,complete",
        "adoption.active_users,2026-03-02,payments,1200,1200,,,false,,true",
        "adoption.active_users,2026-03-09,payments,1234,1234,,,false,,true",
        "adoption.team_adoption_rate,2026-03-02,payments,0.5,10,0.25,0.75,false,,true",
        "adoption.team_adoption_rate,2026-03-09,payments,0.625,8,0.3,0.86,false,,true",
        "task.success_rate,2026-03-02,payments,0.9,50,0.8,0.95,false,,true",
        "task.error_rate,2026-03-02,payments,0.1,100,0.05,0.17,false,,true",
        "task.error_rate,2026-03-09,payments,0.05,100,0.02,0.11,false,,true",
        "efficiency.task_duration_p50,2026-03-09,payments,312.4,80,,,false,,true",
        "happiness.csat,2026-03-02,payments,0.8,12,0.5,0.9,false,,true",
        "happiness.csat,2026-03-09,payments,0.75,12,0.45,0.9,false,,true",
        "happiness.csat,2026-03-09,tiny,,,,,true,,true",
        "dora.deployment_frequency,2026-03-09,payments,1.5,45,,,false,elite,true",
        "dora.lead_time_p50,2026-03-02,payments,30.0,40,,,false,,true",
        "dora.lead_time_p50,2026-03-09,payments,20.5,42,,,false,high,true",
    ]


def test_csv_has_a_column_per_by_key_in_order_and_quotes_commas() -> None:
    rows = [Row("dora.deployments", P1, {"team": None, "service": "a,b"}, 3, 3, complete=False)]
    report = Report("week", P1, P2, "UTC", ("service", "team"), rows)
    assert render(report, "csv") == (
        "metric,period,service,team,value,n,ci_low,ci_high,suppressed,tier,complete\n"
        'dora.deployments,2026-03-02,"a,b",,3,3,,,false,,false\n'
    )


def test_markdown_has_title_dimension_sections_rows_and_warnings() -> None:
    text = render(make_report(partial=True), "markdown")
    assert text.splitlines()[0] == "# heatlens report: week, 2026-03-02 to 2026-03-16 (UTC)"
    heads = ["## Adoption", "## Task success", "## Efficiency", "## Happiness", "## DORA"]
    positions = [text.index(h + "\n") for h in heads]
    assert positions == sorted(positions)
    assert "| metric | team | period | value | n | 95 % CI | tier |" in text
    assert (
        "| `adoption.active_users` | payments | 2026-03-09 (partial) | 1,234 | 1,234 |  |  |"
        in (text)
    )
    assert (
        "| `adoption.team_adoption_rate` | payments | 2026-03-09 | 62.5% | 8 | 30.0% – 86.0% |  |"
        in (text)
    )
    assert "| `happiness.csat` | tiny | 2026-03-09 | suppressed (< k) |  |  |  |" in text
    lead = "| `dora.lead_time_p50` | payments | 2026-03-09 | 20.5 h | 42 |  | high |"
    efficiency, dora = text.split("## Efficiency")[1], text.split("## DORA")[1]
    assert lead in efficiency.split("## Happiness")[0] and lead in dora
    assert text.endswith(
        "## Warnings\n\n- `negative_lead_time` (2): 2 lead times were negative and dropped\n"
    )


def test_markdown_names_the_surveys_k_when_the_engine_gives_it() -> None:
    row = Row("happiness.nps", P1, {"team": "a|b"}, None, None, suppressed=True)
    row.k = 5  # type: ignore[attr-defined]
    text = render(Report("month", P1, P2, "UTC", ("team",), [row]), "markdown")
    assert "| `happiness.nps` | a\\|b | 2026-03-02 | suppressed (< 5) |  |  |  |" in text
    assert "No warnings." in text


def test_table_shows_latest_value_by_unit_with_trend_and_n() -> None:
    lines = table_lines(make_report())
    assert re.search(
        r"adoption\.active_users\s+│ payments │\s+1,234 │\s+↑ 34 │ ▁█\s+│\s+1,234 │",
        (line_of(lines, "adoption.active_users")),
    )
    assert "62.5%" in line_of(lines, "adoption.team_adoption_rate")
    assert "5.2 min" in line_of(lines, "efficiency.task_duration_p50")
    assert "1.5/day" in line_of(lines, "dora.deployment_frequency")
    # Only week 1 is known: the value says which period it is from and there is no change.
    assert "90.0% (2026-03-02)" in line_of(lines, "task.success_rate")
    assert "↑" not in line_of(lines, "task.success_rate")


def test_lead_time_appears_under_efficiency_and_dora() -> None:
    text = render(make_report(), "table")
    efficiency = text.split("\nEfficiency\n")[1].split("\nHappiness\n")[0]
    dora = text.split("\nDORA\n")[1]
    for section in (efficiency, dora):
        assert re.search(r"dora\.lead_time_p50\s+│ payments │\s+20\.5 h │\s+↓ 9\.5 h │", section)


def test_change_is_marked_significant_only_when_changes_says_so() -> None:
    report = make_report()
    key = ("task.error_rate", segment_key(PAY))
    plain = line_of(table_lines(report), "task.error_rate")
    assert "↓ 5.0 pp │" in plain and "*" not in plain
    quiet = {key: FakeChange(-0.05, (-0.09, 0.01), significant=False)}
    assert "↓ 5.0 pp │" in line_of(table_lines(report, quiet), "task.error_rate")
    loud = {key: FakeChange(-0.07, (-0.1, -0.02), significant=True)}
    lines = table_lines(report, loud)
    assert "↓ 7.0 pp* │" in line_of(lines, "task.error_rate")
    assert "* significant: the 95 % interval of the change excludes 0." in lines


def test_an_unchanged_value_reads_no_change_not_an_arrow_and_zero() -> None:
    report = make_report()
    key = ("task.error_rate", segment_key(PAY))
    lines = table_lines(report, {key: FakeChange(0.0, (-0.02, 0.02), significant=False)})
    line = line_of(lines, "task.error_rate")
    assert "no change" in line and "→" not in line


def test_change_is_green_when_good_and_red_when_bad() -> None:
    lines = coloured(make_report())
    green, red = r"\x1b\[32m *", r"\x1b\[31m *"
    # Error rate falls (lower is better); CSAT falls (higher is better); users rise.
    assert re.search(green + "↓ 5.0 pp", line_of(lines, "task.error_rate"))
    assert re.search(red + "↓ 5.0 pp", line_of(lines, "happiness.csat", "payments"))
    assert re.search(green + "↑ 34", line_of(lines, "adoption.active_users"))


def test_tier_badges_are_shown_and_coloured() -> None:
    lines = table_lines(make_report())
    assert " elite " in line_of(lines, "dora.deployment_frequency")
    # Lead time is listed under Efficiency and DORA, with its badge both times.
    assert len([line for line in lines if "20.5 h" in line and " high " in line]) == 2
    assert "\x1b[1;30;42m elite \x1b[0m" in line_of(coloured(make_report()), "1.5/day")


def test_suppressed_segment_shows_no_number() -> None:
    report = make_report()
    line = line_of(table_lines(report), "tiny")
    assert "suppressed (< k)" in line
    assert not re.search(r"\d", line)
    changes = {("happiness.csat", segment_key({"team": "tiny"})): FakeChange(0.2, None, True)}
    assert not re.search(r"\d", line_of(table_lines(report, changes), "tiny"))


def test_partial_last_period_is_marked() -> None:
    lines = table_lines(make_report(partial=True))
    assert "1,234 …" in line_of(lines, "adoption.active_users")
    assert "… partial period: it ends after now, so its value may still change." in lines


def test_warnings_are_listed_with_counts_at_the_bottom() -> None:
    lines = table_lines(make_report())
    assert lines[-2:] == [
        "Warnings",
        "  ⚠ negative_lead_time (2): 2 lead times were negative and dropped",
    ]


def test_segment_values_are_shown_as_written_not_as_markup() -> None:
    rows = [Row("dora.deployments", P1, {"team": "[red]ops[/red]"}, 7, 7)]
    text = render(Report("week", P1, P2, "UTC", ("team",), rows), "table")
    assert "[red]ops[/red]" in line_of(text.splitlines(), "dora.deployments")


def test_an_empty_report_without_coverage_never_suggests_demo() -> None:
    """A report built by hand (or from an older server) has no coverage: the store may hold
    records, so it points at `status`, not `demo`."""
    report = Report("week", P1, P2, "UTC", ())
    hint = "no rows in this range: `heatlens status` shows what the store holds"
    assert hint in render(report, "table").splitlines()
    assert hint in render(report, "markdown").splitlines()
    assert "demo" not in render(report, "table") + render(report, "markdown")
    assert (
        render(report, "csv") == "metric,period,value,n,ci_low,ci_high,suppressed,tier,complete\n"
    )
    assert json.loads(render(report, "json"))["rows"] == []
    assert "coverage" not in json.loads(render(report, "json"))  # v1 exactly as before


def coverage_doc(in_range: list[str], needed: list[str]) -> dict[str, object]:
    """What the application sets on a report: 32 deployments 2011-06-08 … 2024-04-16 stored,
    no usage, survey responses or incidents."""
    return {
        "needed": needed,
        "in_range": in_range,
        "spans": {
            "deployment": {
                "records": 32,
                "first": "2011-06-08T10:00:00Z",
                "last": "2024-04-16T10:00:00Z",
            }
        },
        "suggestion": {"grain": "quarter", "from": "2011-04-01"},
    }


def zero_report(**coverage: object) -> Report:
    """Twelve all-zero weeks of a usage count, a deployment count and open incidents."""
    weeks = [date(2026, 9, 7) + (date(2026, 9, 14) - date(2026, 9, 7)) * i for i in range(12)]
    rows = [
        Row(metric, week, {}, 0, 0)
        for metric in ("adoption.active_users", "dora.deployments", "dora.open_incidents")
        for week in weeks
    ]
    report = Report("week", weeks[0], date(2026, 11, 30), "UTC", (), rows)
    report.coverage = coverage_doc(**coverage)  # type: ignore[arg-type]
    return report


def test_an_empty_range_says_where_the_data_is_instead_of_zeros() -> None:
    report = zero_report(in_range=[], needed=["usage", "deployment", "incident"])
    command = "heatlens --store /tmp/x.duckdb report --metric dora"
    hint = (
        "no usage records, deployments or incidents from 2026-09-07 to 2026-11-29; "
        "deployments span 2011-06-08 … 2024-04-16: try `heatlens --store "
        "/tmp/x.duckdb report --metric dora --grain quarter --from 2011-04-01` (or `--grain all` "
        "for all history)"
    )
    table = render(report, "table", command=command)
    # the hint on one line (it holds a command to paste), no section, no zero, no sparkline
    assert table.splitlines() == [
        "heatlens report · grain week · 2026-09-07 to 2026-11-30 · UTC",
        hint,
    ]
    markdown = render(report, "markdown", command=command)
    assert hint in markdown.splitlines() and "## " + "DORA" not in markdown
    assert "demo" not in table + markdown
    # the data formats keep their rows; JSON gains the coverage member
    doc = json.loads(render(report, "json"))
    assert len(doc["rows"]) == 36 and doc["coverage"] == report.coverage
    assert Report.from_json(doc).coverage == report.coverage


def test_metrics_whose_records_the_range_lacks_are_left_out_in_one_line() -> None:
    report = zero_report(in_range=["deployment"], needed=["usage", "deployment", "incident"])
    lines = render(report, "table").splitlines()
    assert line_of(lines, "dora.deployments")
    assert not [line for line in lines if "adoption.active_users" in line or line == "Adoption"]
    assert (
        "not shown, for want of records from 2026-09-07 to 2026-11-29: Adoption, "
        "dora.open_incidents (no usage records or incidents are stored)"
    ) in lines
    markdown = render(report, "markdown")
    assert "## Adoption" not in markdown and "`dora.deployments`" in markdown
    assert "`dora.open_incidents`" not in markdown
    assert "not shown, for want of records from 2026-09-07 to 2026-11-29: Adoption" in markdown


def test_a_metric_with_a_value_is_shown_even_when_its_records_are_out_of_range() -> None:
    """Eligible teams come from the team registry: 4 of them is news even without usage."""
    report = zero_report(in_range=["deployment"], needed=["usage", "deployment", "incident"])
    report.rows.append(Row("adoption.eligible_teams", date(2026, 11, 23), {}, 4, 4))
    lines = render(report, "table").splitlines()
    assert "4" in line_of(lines, "adoption.eligible_teams")
    # the section stays, so the line names the metric left out of it, not the dimension
    assert line_of(lines, "adoption.active_users").startswith(
        "not shown, for want of records from 2026-09-07 to 2026-11-29: "
        "adoption.active_users, dora.open_incidents ("
    )


def test_sparkline_scales_known_values_and_skips_none() -> None:
    assert sparkline([1, None, 2, 3]) == "▁▅█"
    assert sparkline([None]) == ""


def test_a_flat_sparkline_is_low_for_zeros_and_middle_for_another_constant() -> None:
    # all zeros must not look like data: a flat line at the bottom
    assert sparkline([0, 0, 0.0, None, 0]) == "▁▁▁▁"
    assert sparkline([4.0, 4.0]) == "▄▄"
    assert sparkline([0, 0, 5]) == "▁▁█"


def test_the_trend_column_keeps_the_latest_twelve_periods() -> None:
    values = [float(v) for v in range(20)]  # 0 … 19: the last twelve are 8 … 19
    assert trend(values) == "…" + sparkline(values[-12:])
    assert trend(values[:12]) == sparkline(values[:12])


def test_unknown_format_names_the_known_ones() -> None:
    assert FORMATS == ("table", "json", "csv", "markdown")
    with pytest.raises(ConfigError, match="unknown report format 'xml': use one of table, json"):
        render(make_report(), "xml")


def test_a_metric_outside_the_catalog_is_still_shown() -> None:
    rows = [Row("custom.builds", P1, {}, 1234.5, 7)]
    lines = table_lines(Report("week", P1, P2, "UTC", (), rows))
    assert "custom" in lines
    assert re.search(r"custom\.builds\s+│\s+1,234\.5 │", line_of(lines, "custom.builds"))


def test_on_an_80_column_terminal_names_fold_and_numbers_stay_whole() -> None:
    """A long metric id gives way, never a value: not `lat…`, `▄▄▄▄…` or `(20…`."""
    q = [date(2023, 10, 1), date(2024, 1, 1), date(2024, 4, 1), date(2024, 7, 1)]
    rows = [
        Row("efficiency.services_awaiting_first_deploy", p, {"service": "itsdangerous"}, 0, 0)
        for p in q
    ]
    # the latest lead time is from an earlier quarter: 9,104.1 h is 379 days
    rows += [Row("dora.lead_time_p50", q[2], {"service": "itsdangerous"}, 9104.1, 146)]
    report = Report("quarter", q[0], date(2024, 10, 1), "UTC", ("service",), rows)
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(terminal_table(report))
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "379 d" in text and "(2024-04-01)" in text and "9,104" not in text
    assert "▁▁▁▁" in text  # four zero quarters, a flat low line
    assert "…" not in text.replace("… partial", "")
