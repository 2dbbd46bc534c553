"""DORA views: per team and per service with tiers and warnings, and `explain` — the records behind
any number a page shows."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from heatlens.errors import ConfigError
from heatlens.metrics import Request, compute, compute_all
from heatlens.metrics.catalog import CATALOG
from heatlens.metrics.explain import explain as build_explanation
from heatlens.metrics.explain import service_activity
from heatlens.metrics.result import Report
from heatlens.report.explain import plain, readable, scope_to_teams, show_cell
from heatlens.report.html import charts
from heatlens.report.html.filters import Filters
from heatlens.report.html.present import (
    EMPTY_STORE,
    Links,
    View,
    last,
    last_complete,
    pick,
    points,
)
from heatlens.settings import Settings
from heatlens.store import Store

DORA_METRICS = (
    "dora.deployments",
    "dora.deployment_frequency",
    "dora.lead_time_p50",
    "dora.lead_time_p90",
    "dora.change_failure_rate",
    "dora.rework_rate",
    "dora.recovery_time_p50",
    "dora.time_to_restore_p50",
)
NO_DEPLOYMENTS = (
    "No deployments or incidents in this range. Send `deployment` records (service, finished_at, "
    "environment, commit_sha or commits), `change` and `incident` records with `heatlens ingest` "
    "or POST /api/v1/events, or read a repository's commits and tags with `heatlens sync git`."
)


def _shown_period(report: Report) -> date | None:
    """The last complete period of the report (its last period when none is complete)."""
    complete = sorted({r.period for r in report.rows if r.complete})
    every = sorted({r.period for r in report.rows})
    return complete[-1] if complete else every[-1] if every else None


# short definitions where the two incident durations appear (DESIGN §4)
HELP = {
    "dora.recovery_time_p50": (
        "Failed-deployment recovery time: from a failed deployment's finish to the resolution of "
        "the incident linked to it (median, by the period it was resolved)"
    ),
    "dora.time_to_restore_p50": (
        "Time to restore: from an incident's opening to its resolution, linked to a deployment "
        "or not (median, by the period it was resolved)"
    ),
}
SORTS = ("name", *DORA_METRICS)


def _grid(report: Report, key: str, period: date, only: str | None) -> list[dict[str, Any]]:
    by_value: dict[Any, list[Any]] = {}
    for r in report.rows:  # each row once (not a scan of all rows per team or service)
        if r.period == period:
            by_value.setdefault(r.segment.get(key), []).append(r)
    values = sorted(by_value, key=lambda v: (v is None, str(v)))
    if only is not None:
        values = [v for v in values if v == only]
    out = []
    for value in values:
        mine = by_value[value]
        cells = [last(mine, m) for m in DORA_METRICS]
        if any(c is not None and c.value for c in cells):
            out.append({"name": value, "cells": cells})
    return out


def _sorted(lines: list[dict[str, Any]], sort: str, descending: bool) -> list[dict[str, Any]]:
    """Lines by name or by one metric's value; lines without a value last either way."""
    if sort == "name":
        named = sorted(lines, key=lambda line: str(line["name"]), reverse=descending)
        return [line for line in named if line["name"] is not None] + [
            line for line in named if line["name"] is None
        ]
    i = DORA_METRICS.index(sort)

    def value(line: dict[str, Any]) -> float | None:
        cell = line["cells"][i]
        return None if cell is None or cell.value is None else float(cell.value)

    known = [line for line in lines if value(line) is not None]
    known.sort(key=lambda line: value(line) or 0.0, reverse=descending)
    return known + [line for line in lines if value(line) is None]


def _matching(lines: list[dict[str, Any]], q: str) -> list[dict[str, Any]]:
    return [line for line in lines if q.lower() in str(line["name"] or "(none)").lower()]


def dora(
    store: Store,
    settings: Settings,
    filters: Filters,
    links: Links,
    now: datetime,
    sort: str = "",
    direction: str = "",
    q: str = "",
) -> View:
    """DORA per team and per service for the last complete period of the range, with tiers
    (given by the engine at grain month, quarter or all) and the engine's warnings; the tables
    sorted by `sort` (a column: name or a metric id; numbers largest first unless `direction`
    is asc) and narrowed to names containing `q`."""
    if sort and sort not in SORTS:
        raise ConfigError(f"sort {sort!r}: expected name or one of {', '.join(DORA_METRICS)}")
    if direction not in ("", "asc", "desc"):
        raise ConfigError(f"dir {direction!r}: expected asc or desc")
    sort = sort or "name"
    descending = direction == "desc" if direction else sort != "name"
    view = View(
        "DORA",
        "dora.html",
        "dora",
        filters=filters,
        fields=("grain", "from", "to", "team"),
    )
    if store.is_empty():
        view.empty = EMPTY_STORE
        return view
    g, start, end = filters.grain, filters.start, filters.end
    service_by = ("team", "service") if filters.team else ("service",)
    # the views shown with their warnings ask for them: overall (or, filtered, the teams')
    shown = ("team",) if filters.team else ()
    overall, teams, services = compute_all(
        store,
        [
            Request(g, start, end, by, DORA_METRICS, now, warnings=by == shown)
            for by in ((), ("team",), service_by)
        ],
        settings,
    )
    # the last whole period of the range that has ended (a calendar fact: per-team rows exist only
    # where there were deployments), else its last period; grain all is one period
    period = (
        last_complete(g, teams.start, teams.end, settings.timezone, now)
        if g != "all"
        else teams.start
    ) or _shown_period(overall)
    view.context.update(
        metrics=DORA_METRICS,
        grain=g,
        start=teams.start,
        end=teams.end,
        last_day=teams.end - timedelta(days=1),
        period=period,
        help=HELP,
        q=q,
        sort=sort,
        descending=descending,
        sort_links={
            column: filters.query(
                sort=column,
                dir=("asc" if descending else "desc")
                if column == sort
                else ("asc" if column == "name" else "desc"),
                q=q or None,
            )
            for column in SORTS
        },
        search_query={
            "grain": g,
            "from": filters.start,
            "to": filters.end,
            "team": filters.team,
            "sort": sort if sort != "name" else None,
            "dir": direction or None,
        },
    )
    deployed = any(r.value for r in overall.rows)
    if period is None or not deployed:
        view.context["empty"] = NO_DEPLOYMENTS
        return view
    if filters.team:
        services.rows = [r for r in services.rows if r.segment.get("team") == filters.team]
    team_lines = _grid(teams, "team", period, filters.team)
    service_lines = _grid(services, "service", period, None)
    view.context.update(
        overall=[last([r for r in overall.rows if r.period == period], m) for m in DORA_METRICS],
        teams=_sorted(_matching(team_lines, q), sort, descending),
        services=_sorted(_matching(service_lines, q), sort, descending),
        counts={"team": len(team_lines), "service": len(service_lines)},
        warnings=overall.warnings if not filters.team else teams.warnings,
        tiered=g in ("month", "quarter", "all"),
    )
    return view


def service(
    store: Store,
    settings: Settings,
    filters: Filters,
    links: Links,
    now: datetime,
    name: str,
) -> View:
    """One service: its owner, DORA per period (each number linked to its records), the lead
    time trend, its deployments over the range with their result, and its incidents."""
    view = View(
        f"Service {name}",
        "service.html",
        "service-" + name,
        filters=filters,
        fields=("grain", "from", "to"),
    )
    found = store.rows("service", ids=[name])
    g = filters.grain
    report = compute(
        store, Request(g, filters.start, filters.end, ("service",), DORA_METRICS, now), settings
    )
    rows = [r for r in report.rows if r.segment.get("service") == name]
    if not found and not rows:
        raise ConfigError(
            f"unknown service {name!r}: no service record and no deployment names it "
            "(send a `service` record, or see the services on the DORA page)"
        )
    record = found[0] if found else {}
    periods = sorted({r.period for r in rows})
    table: list[dict[str, Any]] = []
    for p in periods:
        cells = [last([r for r in rows if r.period == p], m) for m in DORA_METRICS]
        if any(c is not None and c.value for c in cells):
            table.append({"period": p, "cells": cells})
    lead = points(pick(rows, "dora.lead_time_p50"), "p50") + points(
        pick(rows, "dora.lead_time_p90"), "p90"
    )
    if lead:
        view.charts["lead_time"] = charts.trend(lead, "hours", "Lead time per period")
    activity = service_activity(store, settings, name, report.start, report.end, now=now)
    tz = ZoneInfo(settings.timezone)
    view.context.update(
        name=name,
        record=record,
        owner=record.get("team"),
        metrics=DORA_METRICS,
        grain=g,
        start=report.start,
        end=report.end,
        table=table,
        help=HELP,
        activity=activity,
        when=lambda value: show_cell(value, "time", tz),
        hours=lambda value: show_cell(value, "hours", tz),
    )
    return view


PAGE_SIZE = 50


def explain_query(
    metric: str, period: date, grain: str, segment: dict[str, Any], **extra: Any
) -> str:
    """The query string of an explain page (or its CSV) with `extra` parameters (falsy dropped)."""
    params: list[tuple[str, str]] = [
        ("metric", metric),
        ("period", period.isoformat()),
        ("grain", grain),
    ]
    params += [("segment", f"{k}={'' if v is None else v}") for k, v in segment.items()]
    params += [(k, str(v)) for k, v in extra.items() if v]
    return "?" + urlencode(params)


def explanation(
    store: Store,
    settings: Settings,
    metric: str,
    period: date,
    grain: str,
    segment: dict[str, Any],
    now: datetime,
    teams: tuple[str, ...] = (),
    page: int = 1,
    failures_only: bool = False,
) -> View:
    """The records behind one number (the same explanation as `heatlens explain`), a page of
    `PAGE_SIZE` at a time; for a login scoped to `teams`, without the organisation-wide
    warnings."""
    result = build_explanation(
        store,
        metric,
        period,
        segment,
        settings,
        grain=grain,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
        failures_only=failures_only,
        now=now,
    )
    if teams:
        scope_to_teams(result)
    doc = plain(result)
    where = ", ".join(f"{k}={'(none)' if v is None else v}" for k, v in segment.items())
    view = View(f"Explain {metric}", "explain.html", "explain")
    pages = max(1, -(-result.matching // PAGE_SIZE))
    here = result.period  # the period's start: links keep to it

    def query(**extra: Any) -> str:
        return explain_query(metric, here, grain, segment, **extra)

    warned = tuple(f"{n['code']}: " for n in result.not_counted)
    view.context.update(
        result=result,
        where=where or "organisation-wide",
        info=CATALOG[metric],
        row=result.row,
        records=_cells(doc, "records"),
        dropped=_cells(doc, "dropped") if result.dropped else None,
        notes=[n for n in result.notes if not n.startswith(warned)],
        page=page,
        pages=pages,
        first=result.offset + 1,
        last=result.offset + len(result.records),
        previous=query(page=page - 1, failures=failures_only) if page > 1 else None,
        next=query(page=page + 1, failures=failures_only) if page < pages else None,
        toggle=query(failures=not failures_only) if result.failures else None,
        csv="/explain.csv" + query(failures=failures_only),
    )
    return view


def _cells(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """A listing's titles and rows of cells `{text, href, full}`: a service links to its page,
    a shortened commit sha keeps its full value as a tooltip."""
    shown, titles, rows = readable(doc, key)
    out = []
    for record, texts in zip(doc[key], rows, strict=True):
        line = []
        for column, text in zip(shown, texts, strict=True):
            value = record.get(column)
            href = (
                "/services/" + quote(str(value), safe="")
                if column == "service" and value is not None
                else None
            )
            full = str(value) if column in ("change", "commit_sha") and value else None
            line.append({"text": text, "href": href, "full": full})
        out.append(line)
    kinds = doc["kinds"]
    numeric = [kinds.get(c) in ("hours", "days", "seconds") for c in shown]
    return {"titles": titles, "rows": out, "numeric": numeric}
