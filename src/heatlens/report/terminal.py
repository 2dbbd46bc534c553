"""The terminal report (`heatlens report --format table`): what a platform lead reads first.

Rows are grouped into series — one metric and one segment over the report's periods — and each
series becomes one line: its latest value formatted by the metric's unit, the change against the
period before, a sparkline of every period, `n`, and the DORA tier. Every cell is a `Text`, never
a markup string, so a segment value or warning message containing `[` is shown as written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Protocol

from rich.console import Group
from rich.table import Table
from rich.text import Text

from heatlens.analysis.coverage import PLURAL, Coverage, either
from heatlens.metrics.catalog import CATALOG, DIMENSION_TITLES, DIMENSIONS, METRICS, Metric
from heatlens.metrics.result import Report, Row
from heatlens.report.units import format_delta, format_value

SegmentKey = tuple[tuple[str, Any], ...]
# only for a report without coverage (built by hand, or from an older server): the store may hold
# records, so `demo` is not suggested
EMPTY = "no rows in this range: `heatlens status` shows what the store holds"
COMMAND = "heatlens report"
SPARKS = "▁▂▃▄▅▆▇█"
TREND_WIDTH = 12  # periods in the table's trend column (those of the default range)
TIER_STYLES = {
    "elite": "bold black on green",
    "high": "black on cyan",
    "medium": "black on yellow",
    "low": "bold white on red",
}
_ORDER = {m.id: i for i, m in enumerate(METRICS)}


class Change(Protocol):
    """A change of one series against the previous period, as the analysis layer computes it."""

    @property
    def delta(self) -> float: ...

    @property
    def ci(self) -> tuple[float, float] | None: ...

    @property
    def significant(self) -> bool: ...


Changes = Mapping[tuple[str, SegmentKey], Change]


def segment_key(segment: Mapping[str, Any]) -> SegmentKey:
    """The hashable key of a segment, as used in a `Changes` mapping."""
    return tuple(sorted(segment.items()))


@dataclass
class Series:
    """One metric for one segment: its rows in period order."""

    metric: str
    segment: dict[str, Any]
    rows: list[Row] = field(default_factory=list)

    @property
    def info(self) -> Metric | None:
        return CATALOG.get(self.metric)

    @property
    def unit(self) -> str:
        return self.info.unit if self.info else ""


def segment_cells(segment: Mapping[str, Any], by: Sequence[str]) -> list[str]:
    """One cell per `--by` key: `(none)` for a null segment value, empty when the key is absent."""
    return [
        "" if k not in segment else "(none)" if segment[k] is None else str(segment[k]) for k in by
    ]


def all_series(report: Report) -> list[Series]:
    """Every series of the report, metrics in catalog order, rows in period order."""
    series: dict[tuple[str, SegmentKey], Series] = {}
    for row in report.rows:
        key = (row.metric, segment_key(row.segment))
        series.setdefault(key, Series(row.metric, row.segment)).rows.append(row)
    for one in series.values():
        one.rows.sort(key=lambda r: r.period)
    # Stable sort: segments keep the report's order within a metric.
    return sorted(series.values(), key=lambda s: _ORDER.get(s.metric, len(_ORDER)))


def by_dimension(
    report: Report, series: Sequence[Series] | None = None
) -> list[tuple[str, list[Series]]]:
    """Series (default: all the report's) grouped by dimension, metrics in catalog order; lead
    times also under Efficiency.

    Sections without series are left out. A metric outside the catalog keeps the section named by
    its id's prefix, after the catalog's, so no row is ever dropped from a rendering.
    """
    ordered = all_series(report) if series is None else list(series)
    extra = sorted({s.metric.split(".", 1)[0] for s in ordered} - set(DIMENSIONS))
    sections = []
    for dim in (*DIMENSIONS, *extra):
        members = [
            s
            for s in ordered
            if s.metric.split(".", 1)[0] == dim or (s.info is not None and dim in s.info.also_in)
        ]
        if members:
            sections.append((dim, members))
    return sections


@dataclass
class Shown:
    """What a human rendering of a report shows: the sections of series with something to say,
    one line naming the series left out for want of records in the range, and, when the range
    holds none of the records its metrics read, the hint saying where they are."""

    sections: list[tuple[str, list[Series]]]
    omitted: str | None
    hint: str | None


def coverage_of(report: Report) -> Coverage | None:
    """The report's coverage (set by the application), or None for a report without one."""
    if report.coverage is None:
        return None
    return Coverage.from_json(report.coverage, report.start, report.end, report.timezone)


def _says_something(series: Series, found: Coverage) -> bool:
    """A series is shown when the range holds the records its metric reads, or when it has a
    value other than 0 anyway (eligible teams come from the team registry, not usage)."""
    if series.info is None or found.covers(series.info):
        return True
    return any(r.value not in (None, 0) or r.suppressed for r in series.rows)


def shown(report: Report, command: str = COMMAND) -> Shown:
    """The series a person is shown (DESIGN §5: an empty range says where the data is).

    A metric whose records the range does not hold would only print zeros, so its series are left
    out, and the line `omitted` says which and where those records are. When the range holds none
    of the records any asked metric reads, `hint` is coverage's sentence with `command` (the
    user's own, to paste) completed by the range that holds them.
    """
    series = all_series(report)
    found = coverage_of(report)
    hint = _hint(report, found, command)
    if found is None:
        return Shown(by_dimension(report, series), None, hint)
    kept = [s for s in series if _says_something(s, found)]
    shown_metrics = {s.metric for s in kept}
    gone = [m for m in dict.fromkeys(s.metric for s in series) if m not in shown_metrics]
    # (issue 14) happiness has no rows at all in a range without a survey wave: still name it
    if (
        "survey_response" in found.needed
        and "survey_response" not in found.in_range
        and not any(s.metric.startswith("happiness.") for s in series)
    ):
        gone.append("happiness.respondents")
    omitted = _omitted_line(report, gone, found) if gone and not found.empty else None
    return Shown(by_dimension(report, kept), omitted, hint)


def empty_hint(report: Report, command: str = COMMAND) -> str | None:
    """`shown(report, command).hint` without sorting the report into series (the data formats
    need only the hint)."""
    return _hint(report, coverage_of(report), command)


def _hint(report: Report, found: Coverage | None, command: str) -> str | None:
    if found is None:
        return None if report.rows else EMPTY
    return found.hint(command) if found.empty else None


def _omitted_line(report: Report, gone: list[str], found: Coverage) -> str:
    """`not shown, for want of records from A to B: Adoption, Happiness (usage records span
    … ; no survey responses are stored)`: a dimension by its title when all its metrics are
    gone, else the metrics' ids."""
    asked = list(dict.fromkeys([*(r.metric for r in report.rows), *gone]))
    names = []
    for dim in DIMENSIONS:
        mine = [m for m in asked if m.split(".", 1)[0] == dim]
        lost = [m for m in mine if m in gone]
        if lost and len(lost) == len(mine):
            names.append(DIMENSION_TITLES.get(dim, dim))
        else:
            names += lost
    types = [t for t in found.needed if any(m in CATALOG and CATALOG[m].records == t for m in gone)]
    where = [found.where(t) for t in types if t in found.spans]
    unstored = [PLURAL.get(t, t) for t in types if t not in found.spans]
    where += [f"no {either(unstored)} are stored"] if unstored else []
    return (
        f"not shown, for want of records from {report.start} to {report.end - timedelta(days=1)}: "
        f"{', '.join(names)} ({'; '.join(where)})"
    )


def suppressed_label(row: Row) -> str:
    """What stands in for a suppressed value; the engine may attach the survey's `k` to the row."""
    k = getattr(row, "k", None)
    return f"suppressed (< {k if k is not None else 'k'})"


def sparkline(values: Sequence[float | None]) -> str:
    """One block character per known value, scaled between the smallest and largest.

    A constant series is a flat line: at the bottom (`▁▁▁`) when it is all zeros, so nothing
    looks like data, and in the middle (`▄▄▄`) for any other constant value."""
    known = [float(v) for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    if high == low:
        return (SPARKS[0] if high == 0 else SPARKS[3]) * len(known)
    return "".join(SPARKS[round((v - low) / (high - low) * (len(SPARKS) - 1))] for v in known)


def trend(values: Sequence[float | None], width: int = TREND_WIDTH) -> str:
    """The sparkline of the last `width` values, after `…` when earlier ones are left out: a
    long history keeps its recent periods, the ones the latest value is read against."""
    if len(values) <= width:
        return sparkline(values)
    return "…" + sparkline(values[-width:])


def _change(
    series: Series, previous: date | None, changes: Changes | None
) -> tuple[float, bool] | None:
    """Delta and significance of the latest row against the period before it, if both are known.

    The analysis layer's change wins when given; a suppressed latest value never gets one, so the
    delta cannot reveal what was hidden.
    """
    last = series.rows[-1]
    if last.suppressed or last.value is None:
        return None
    if changes is not None:
        found = changes.get((series.metric, segment_key(series.segment)))
        if found is not None:
            return float(found.delta), bool(found.significant)
    before = series.rows[-2] if len(series.rows) > 1 else None
    if before is None or before.period != previous or before.suppressed or before.value is None:
        return None
    return float(last.value - before.value), False


def _change_cell(series: Series, change: tuple[float, bool] | None) -> Text:
    if change is None:
        return Text("")
    delta, significant = change
    if delta == 0:
        return Text("no change", "dim")
    direction = series.info.direction if series.info else "none"
    good = (delta > 0) == (direction == "up")
    style = "" if direction not in ("up", "down") else ("green" if good else "red")
    arrow = "↑" if delta > 0 else "↓"
    return Text(f"{arrow} {format_delta(delta, series.unit)}{'*' if significant else ''}", style)


def _latest_cell(series: Series, last_period: date) -> Text:
    row = series.rows[-1]
    if row.suppressed:
        return Text(suppressed_label(row), "dim italic")
    cell = Text(format_value(row.value, series.unit), "bold")
    if not row.complete:
        cell.append(" …", "dim")
    if row.period != last_period:
        cell.append(f" ({row.period.isoformat()})", "dim")
    return cell


def _section_table(
    title: str, members: list[Series], report: Report, changes: Changes | None
) -> tuple[Table, bool]:
    periods = sorted({r.period for r in report.rows})
    previous = dict(zip(periods[1:], periods[:-1], strict=True))
    table = Table(title=Text(title, "bold"), title_justify="left", expand=False)
    # On a narrow terminal the long names give way (folded), never the numbers beside them.
    table.add_column("metric", overflow="fold")
    for key in report.columns:
        table.add_column(key, overflow="fold")
    # a latest value from an earlier period says which, "(2024-04-01)": keep that on its line
    dated = any(s.rows[-1].period != periods[-1] for s in members)
    table.add_column("latest", justify="right", min_width=12 if dated else None)
    table.add_column("change", justify="right", no_wrap=True)
    table.add_column("trend", no_wrap=True)
    table.add_column("n", justify="right", no_wrap=True)
    table.add_column("tier", no_wrap=True)
    significant = False
    for i, series in enumerate(members):
        last = series.rows[-1]
        change = _change(series, previous.get(last.period), changes)
        significant = significant or bool(change and change[1])
        first_of_metric = i == 0 or members[i - 1].metric != series.metric
        segment = [Text(cell) for cell in segment_cells(series.segment, report.columns)]
        tier = Text(f" {last.tier} ", TIER_STYLES.get(last.tier, "")) if last.tier else Text("")
        n = "" if last.suppressed or last.n is None else f"{last.n:,}"
        table.add_row(
            Text(series.metric if first_of_metric else ""),
            *segment,
            _latest_cell(series, periods[-1]),
            _change_cell(series, change),
            Text(trend([r.value for r in series.rows]), "cyan"),
            Text(n),
            tier,
            end_section=i + 1 < len(members) and members[i + 1].metric != series.metric,
        )
    return table, significant


def terminal_table(report: Report, changes: Changes | None = None, command: str = COMMAND) -> Group:
    """The report as Rich renderables: one table per dimension, then footnotes and warnings.

    `command` is the user's command line, completed with a range in the hint an empty range
    gets (heatlens.report.terminal.shown)."""
    head = Text(f"heatlens report · grain {report.grain} · ", "bold")
    head.append(f"{report.start.isoformat()} to {report.end.isoformat()} · {report.timezone}")
    if report.by:
        head.append(f" · by {', '.join(report.by)}")
    parts: list[Table | Text] = [head]
    view = shown(report, command)
    if view.hint:
        parts.append(Text(view.hint, "yellow"))
    significant = False
    for dim, members in view.sections:
        table, marked = _section_table(DIMENSION_TITLES.get(dim, dim), members, report, changes)
        parts.append(table)
        significant = significant or marked
    if view.omitted:
        parts.append(Text(view.omitted, "dim"))
    notes = []
    if any(not r.complete for r in report.rows):
        notes.append("… partial period: it ends after now, so its value may still change.")
    if significant:
        notes.append("* significant: the 95 % interval of the change excludes 0.")
    if notes:
        parts.append(Text("\n".join(notes), "dim"))
    if report.warnings:
        warnings = Text("Warnings", "bold yellow")
        for w in report.warnings:
            warnings.append(f"\n  ⚠ {w.code} ({w.count:,}): {w.message}")
        parts.append(warnings)
    return Group(*parts)
