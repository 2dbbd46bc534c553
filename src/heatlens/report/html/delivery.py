"""DORA views: per team and per service with tiers and warnings, and `explain` — the records behind
any number a page shows."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from heatlens.metrics import Request, compute
from heatlens.metrics.catalog import CATALOG
from heatlens.metrics.explain import explain as build_explanation
from heatlens.metrics.result import Report
from heatlens.report.explain import team_notes
from heatlens.report.html.filters import Filters
from heatlens.report.html.present import EMPTY_STORE, Links, View, last
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
    "or POST /api/v1/events, or connect GitHub, GitLab or PagerDuty (`heatlens sync`, webhooks)."
)


def _shown_period(report: Report) -> date | None:
    """The last complete period of the report (its last period when none is complete)."""
    complete = sorted({r.period for r in report.rows if r.complete})
    every = sorted({r.period for r in report.rows})
    return complete[-1] if complete else every[-1] if every else None


def _grid(report: Report, key: str, period: date, only: str | None) -> list[dict[str, Any]]:
    rows = [r for r in report.rows if r.period == period]
    values = sorted({r.segment.get(key) for r in rows}, key=lambda v: (v is None, str(v)))
    if only is not None:
        values = [v for v in values if v == only]
    out = []
    for value in values:
        mine = [r for r in rows if r.segment.get(key) == value]
        cells = [last(mine, m) for m in DORA_METRICS]
        if any(c is not None and c.value for c in cells):
            out.append({"name": value, "cells": cells})
    return out


def dora(store: Store, settings: Settings, filters: Filters, links: Links, now: datetime) -> View:
    """DORA per team and per service for the last complete period of the range, with tiers
    (given by the engine at grain month, quarter or all) and the engine's warnings."""
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
    overall = compute(store, Request(g, start, end, (), DORA_METRICS, now), settings)
    teams = compute(store, Request(g, start, end, ("team",), DORA_METRICS, now), settings)
    service_by = ("team", "service") if filters.team else ("service",)
    services = compute(store, Request(g, start, end, service_by, DORA_METRICS, now), settings)
    period = _shown_period(teams)
    view.context.update(
        metrics=DORA_METRICS, grain=g, start=teams.start, end=teams.end, period=period
    )
    deployed = any(r.value for r in overall.rows)
    if period is None or not deployed:
        view.context["empty"] = NO_DEPLOYMENTS
        return view
    if filters.team:
        services.rows = [r for r in services.rows if r.segment.get("team") == filters.team]
    view.context.update(
        overall=[last([r for r in overall.rows if r.period == period], m) for m in DORA_METRICS],
        teams=_grid(teams, "team", period, filters.team),
        services=_grid(services, "service", period, None),
        warnings=overall.warnings if not filters.team else teams.warnings,
        tiered=g in ("month", "quarter", "all"),
    )
    return view


def explanation(
    store: Store,
    settings: Settings,
    metric: str,
    period: date,
    grain: str,
    segment: dict[str, Any],
    now: datetime,
    teams: tuple[str, ...] = (),
) -> View:
    """The records behind one number (the same explanation as `heatlens explain`); for a login
    scoped to `teams`, without the organisation-wide warnings."""
    result = build_explanation(
        store, metric, period, segment, settings, grain=grain, limit=50, now=now
    )
    if teams:
        result.notes = team_notes(result.notes)
    where = ", ".join(f"{k}={'(none)' if v is None else v}" for k, v in segment.items())
    view = View(
        f"Explain {metric}",
        "explain.html",
        "explain",
    )
    view.context.update(
        result=result,
        where=where or "organisation-wide",
        info=CATALOG[metric],
        row=result.row,
        columns=result.columns or (list(result.records[0]) if result.records else []),
    )
    return view
