"""Presentation helpers shared by the views: how the engine's rows are looked up, formatted, turned
into chart points and linked to their `explain` view. Nothing here computes a metric."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from heatlens.metrics.catalog import CATALOG
from heatlens.metrics.periods import periods
from heatlens.metrics.result import Row
from heatlens.report.html.filters import Filters
from heatlens.report.terminal import suppressed_label
from heatlens.report.units import format_value

EMPTY_STORE = (
    "No records yet. Send them with `heatlens ingest FILE` (canonical NDJSON, CSV or Parquet) or "
    "POST /api/v1/events, connect a source with `heatlens sync`, or try `heatlens demo`."
)


@dataclass
class View:
    """One page's content: a template fragment and what it shows. The same view renders as a
    dashboard page and as a section of the HTML report."""

    title: str
    template: str
    anchor: str
    context: dict[str, Any] = field(default_factory=dict)
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)
    filters: Filters | None = None
    fields: tuple[str, ...] = ()  # the filter fields this page offers
    empty: str | None = None  # set when there is nothing at all to show: what to send instead


@dataclass(frozen=True)
class Links:
    """Where a page links: live routes on the server; in-page anchors (and no `explain` links,
    which need the server) in the self-contained report."""

    static: bool = False

    def page(self, path: str, filters: Filters | None = None) -> str:
        if self.static:
            return "#" + path.strip("/").replace("/", "-") if path != "/" else "#overview"
        return path + (filters.query() if filters else "")

    def capability(self, capability: str, filters: Filters | None = None) -> str:
        return self.page("/capabilities/" + quote(capability, safe=""), filters)

    def team(self, team: str, filters: Filters | None = None) -> str:
        return self.page("/teams/" + quote(team, safe=""), filters)

    def explain(self, row: Row, grain: str) -> str | None:
        """The URL of the records behind `row` (None in the report, or for a suppressed row)."""
        if self.static or row.suppressed:
            return None
        params: list[tuple[str, str]] = [
            ("metric", row.metric),
            ("period", row.period.isoformat()),
            ("grain", grain),
        ]
        params += [("segment", f"{k}={'' if v is None else v}") for k, v in row.segment.items()]
        return "/explain?" + urlencode(params)


def unit(metric: str) -> str:
    return CATALOG[metric].unit if metric in CATALOG else ""


def show(row: Row | None) -> str:
    """A row's value as a person reads it; a suppressed row shows why, never a number."""
    if row is None:
        return "—"
    if row.suppressed:
        return suppressed_label(row)
    return format_value(None if row.value is None else float(row.value), unit(row.metric))


def show_value(value: float | None, metric: str) -> str:
    return format_value(value, unit(metric))


def pick(rows: Iterable[Row], metric: str, **segment: Any) -> list[Row]:
    """The rows of `metric` whose segment has these values, in period order."""
    out = [
        r
        for r in rows
        if r.metric == metric and all(r.segment.get(k) == v for k, v in segment.items())
    ]
    return sorted(out, key=lambda r: r.period)


def last(rows: Iterable[Row], metric: str, **segment: Any) -> Row | None:
    found = pick(rows, metric, **segment)
    return found[-1] if found else None


def points(rows: Iterable[Row], series: str) -> list[dict[str, Any]]:
    """Chart points of visible rows (suppressed rows are left out, not drawn as zero)."""
    out = []
    for r in rows:
        if r.suppressed or r.value is None:
            continue
        lo, hi = r.ci if r.ci is not None else (None, None)
        out.append(
            {
                "period": r.period.isoformat(),
                "series": series,
                "value": float(r.value),
                "lo": lo,
                "hi": hi,
                "label": show(r),
            }
        )
    return out


def last_complete(grain: str, start: date, end: date, tz: str, now: datetime) -> date | None:
    """The start of the last whole period of `grain` in [start, end) that has ended by `now` (in
    `tz`), or None when none has — a calendar fact, whatever periods hold records."""
    today = now.astimezone(ZoneInfo(tz)).date()
    found = None
    for p in periods(grain, start, end, ZoneInfo(tz)):
        if p.end == p.cal_end and p.cal_end <= today:
            found = p.start
    return found
