"""The terminal report (`heatlens report --format table`): what a platform lead reads first.

Rows are grouped into series — one metric and one segment over the report's periods — and each
series becomes one line: its latest value formatted by the metric's unit, the change against the
period before, a sparkline of every period, `n`, and the DORA tier. Every cell is a `Text`, never
a markup string, so a segment value or warning message containing `[` is shown as written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from rich.console import Group
from rich.table import Table
from rich.text import Text

from heatlens.metrics.catalog import CATALOG, DIMENSION_TITLES, DIMENSIONS, METRICS, Metric
from heatlens.metrics.result import Report, Row
from heatlens.report.units import format_delta, format_value

SegmentKey = tuple[tuple[str, Any], ...]
EMPTY = "no rows: the store may be empty or the range has no data — try `heatlens demo`"
SPARKS = "▁▂▃▄▅▆▇█"
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


def by_dimension(report: Report) -> list[tuple[str, list[Series]]]:
    """Series grouped by dimension, metrics in catalog order; lead times also under Efficiency.

    Sections without series are left out. A metric outside the catalog keeps the section named by
    its id's prefix, after the catalog's, so no row is ever dropped from a rendering.
    """
    series: dict[tuple[str, SegmentKey], Series] = {}
    for row in report.rows:
        key = (row.metric, segment_key(row.segment))
        series.setdefault(key, Series(row.metric, row.segment)).rows.append(row)
    for one in series.values():
        one.rows.sort(key=lambda r: r.period)
    # Stable sort: segments keep the report's order within a metric.
    ordered = sorted(series.values(), key=lambda s: _ORDER.get(s.metric, len(_ORDER)))
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


def suppressed_label(row: Row) -> str:
    """What stands in for a suppressed value; the engine may attach the survey's `k` to the row."""
    k = getattr(row, "k", None)
    return f"suppressed (< {k if k is not None else 'k'})"


def sparkline(values: Sequence[float | None]) -> str:
    """One block character per known value, scaled between the smallest and largest."""
    known = [float(v) for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    if high == low:
        return SPARKS[3] * len(known)
    return "".join(SPARKS[round((v - low) / (high - low) * (len(SPARKS) - 1))] for v in known)


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
        return Text("→ 0")
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
    table.add_column("metric", no_wrap=True)
    for key in report.columns:
        table.add_column(key)
    table.add_column("latest", justify="right")
    table.add_column("change", justify="right")
    table.add_column("trend")
    table.add_column("n", justify="right")
    table.add_column("tier")
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
            Text(sparkline([r.value for r in series.rows]), "cyan"),
            Text(n),
            tier,
            end_section=i + 1 < len(members) and members[i + 1].metric != series.metric,
        )
    return table, significant


def terminal_table(report: Report, changes: Changes | None = None) -> Group:
    """The report as Rich renderables: one table per dimension, then footnotes and warnings."""
    head = Text(f"heatlens report · grain {report.grain} · ", "bold")
    head.append(f"{report.start.isoformat()} to {report.end.isoformat()} · {report.timezone}")
    if report.by:
        head.append(f" · by {', '.join(report.by)}")
    parts: list[Table | Text] = [head]
    if not report.rows:
        parts.append(Text(EMPTY, "yellow"))
    significant = False
    for dim, members in by_dimension(report):
        table, marked = _section_table(DIMENSION_TITLES.get(dim, dim), members, report, changes)
        parts.append(table)
        significant = significant or marked
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
