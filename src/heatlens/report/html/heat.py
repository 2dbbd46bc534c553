"""HEAT views: the overview (scorecard, DORA tiers, portfolio), one capability, one team.

Each view asks the engine (`compute`) or the scorecard for exactly the rows it shows and only
arranges them, so anonymity and the metric definitions hold on every page.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from heatlens.analysis.scorecard import DORA, HEAT, Cell, scorecard
from heatlens.analysis.targets import Target, parse_targets, target_status
from heatlens.metrics import Request, compute
from heatlens.metrics.catalog import CALENDAR_GRAINS
from heatlens.metrics.engine import resolve
from heatlens.metrics.periods import calendar_next
from heatlens.metrics.result import Report, Row
from heatlens.report.html import charts
from heatlens.report.html.filters import Filters
from heatlens.report.html.present import (
    EMPTY_STORE,
    Links,
    View,
    last,
    pick,
    points,
    show_value,
    unit,
)
from heatlens.settings import Settings
from heatlens.store import Store

TIERS = ("elite", "high", "medium", "low")
CAPABILITY_METRICS = (
    "adoption.active_teams",
    "adoption.team_adoption_rate",
    "adoption.new_teams",
    "adoption.team_retention",
    "task.attempts",
    "task.success_rate",
    "task.failure_rate",
    "task.error_rate",
    "task.abandon_rate",
    "efficiency.task_duration_p50",
    "efficiency.task_duration_p90",
    "happiness.respondents",
    "happiness.csat",
)
OUTCOMES = (
    ("success", "task.success_rate"),
    ("failure", "task.failure_rate"),
    ("error", "task.error_rate"),
    ("abandoned", "task.abandon_rate"),
)
SURVEY_METRICS = (
    "happiness.respondents",
    "happiness.csat",
    "happiness.nps",
    "happiness.response_rate",
)
TEAM_DORA = (
    "dora.deployments",
    "dora.deployment_frequency",
    "dora.lead_time_p50",
    "dora.change_failure_rate",
    "dora.recovery_time_p50",
)


def _as_of(filters: Filters, settings: Settings, now: datetime) -> datetime:
    if filters.end is None:
        return now
    return datetime.combine(filters.end, time(0), tzinfo=ZoneInfo(settings.timezone))


def _target(targets: list[Target], cell: Cell, capability: str, grain: str, as_of: date) -> Any:
    """The configured target of this cell, if any, judged as `heatlens check` judges it (the
    scorecard's cell is the engine's value for the same last complete period)."""
    for t in targets:
        if (
            t.metric == cell.metric
            and t.grain == grain
            and t.segment == (("capability", capability),)
        ):
            status = target_status(t, cell.value, as_of)
            return {"text": f"{t.op} {show_value(t.value, cell.metric)}", "status": status}
    return None


def overview(
    store: Store, settings: Settings, filters: Filters, links: Links, now: datetime
) -> View:
    """The HEAT scorecard per capability, DORA with teams per tier, and the portfolio chart."""
    view = View("Overview", "overview.html", "overview", filters=filters, fields=("grain", "to"))
    if store.is_empty():
        view.empty = EMPTY_STORE
        return view
    grain = filters.grain if filters.grain in CALENDAR_GRAINS else "month"
    as_of = _as_of(filters, settings, now)
    targets = parse_targets(settings.targets)
    card = scorecard(store, settings, grain=grain, as_of=as_of)
    end = calendar_next(card.period, grain)
    per_team = compute(store, Request(grain, card.period, end, ("team",), DORA, now), settings)
    tiers: dict[str, Counter[str]] = {m: Counter() for m in DORA}
    for r in per_team.rows:
        if r.tier:
            tiers[r.metric][r.tier] += 1
    dora = [
        {
            "row": last(card.dora, m),
            "metric": m,
            "tiers": [(t, tiers[m][t]) for t in TIERS if tiers[m][t]],
        }
        for m in DORA
    ]
    rows = []
    placed, unplaced = [], []
    for score in card.capabilities:
        cells = [
            {
                "cell": c,
                "text": "suppressed" if c.suppressed else show_value(c.value, c.metric),
                "target": _target(targets, c, score.capability, grain, as_of.date()),
            }
            for c in score.cells
        ]
        rows.append({"capability": score.capability, "cells": cells})
        a, s, h = score.adoption, score.task_success, score.happiness
        if a.value is not None and h.value is not None:
            placed.append(
                {
                    "capability": score.capability,
                    "adoption": a.value,
                    "csat": h.value,
                    "success": s.value,
                    "adoption_label": show_value(a.value, a.metric),
                    "csat_label": show_value(h.value, h.metric),
                    "success_label": show_value(s.value, s.metric),
                }
            )
        else:
            unplaced.append(score.capability)
    view.context.update(
        card=card,
        heat=HEAT,
        rows=rows,
        dora=dora,
        unplaced=unplaced,
        grain=grain,
        tiered=bool(per_team.rows),
    )
    if placed:
        view.charts["portfolio"] = charts.portfolio(placed)
    return view


@dataclass(frozen=True)
class CapabilityRows:
    """The engine's rows behind the capability views — of every capability at once, so the
    report computes them once for all its capability sections."""

    report: Report
    actions: Report


def capability_rows(
    store: Store, settings: Settings, filters: Filters, now: datetime
) -> CapabilityRows:
    """Per-period rows by capability (and team, with a team filter), and per-action task rows
    over the whole range."""
    team = ("team",) if filters.team else ()
    by = ("capability", *team)
    request = Request(filters.grain, filters.start, filters.end, by, CAPABILITY_METRICS, now)
    report = compute(store, request, settings)
    actions = compute(
        store,
        Request(
            "all",
            report.start,
            report.end,
            ("capability", "action", *team),
            ("task.attempts", "task.failure_rate", "task.error_rate"),
            now,
        ),
        settings,
    )
    return CapabilityRows(report, actions)


def capability(
    store: Store,
    settings: Settings,
    filters: Filters,
    links: Links,
    now: datetime,
    name: str,
    shared: CapabilityRows | None = None,
) -> View:
    """One capability over the range: adoption, task outcomes, durations, CSAT, failing actions."""
    team = filters.team
    view = View(
        f"Capability {name}" + (f" · team {team}" if team else ""),
        "capability.html",
        "capabilities-" + name,
        filters=filters,
        fields=("grain", "from", "to", "team"),
    )
    if store.is_empty():
        view.empty = EMPTY_STORE
        return view
    seg: dict[str, Any] = {"capability": name, **({"team": team} if team else {})}
    data = shared or capability_rows(store, settings, filters, now)
    report = data.report
    rows = [r for r in report.rows if all(r.segment.get(k) == v for k, v in seg.items())]
    view.context.update(name=name, team=team, start=report.start, end=report.end)
    if not pick(rows, "task.attempts") and not pick(rows, "adoption.active_teams"):
        view.context["empty"] = (
            f"No usage of capability {name!r} in this range. Send `usage` records with "
            f'"capability": "{name}" (ts, team or actor, outcome, duration_s) through '
            "`heatlens ingest` or POST /api/v1/events; a `capability` record registers it."
        )
        return view
    active = pick(rows, "adoption.active_teams")
    retention = {r.period: r for r in pick(rows, "adoption.team_retention")}
    # churned teams: those active in the period before and not in this one — the retention
    # row's own denominator minus its numerator (the engine's counts, not a new metric)
    churned = [
        {
            "period": r.period.isoformat(),
            "series": "churned teams",
            "value": float(r.d - r.x),
            "label": f"{int(r.d - r.x)}",
        }
        for r in retention.values()
        if r.d is not None and r.x is not None
    ]
    view.charts["teams"] = charts.trend(
        points(active, "active teams")
        + points(pick(rows, "adoption.new_teams"), "new teams")
        + churned,
        "teams",
        "Active, new and churned teams",
    )
    view.charts["adoption"] = charts.trend(
        points(pick(rows, "adoption.team_adoption_rate"), "team adoption rate"),
        "ratio",
        "Team adoption rate (95 % interval)",
        band=True,
    )
    outcome_points = []
    for rank, (label, metric) in enumerate(OUTCOMES):
        for p in points(pick(rows, metric), label):
            outcome_points.append({**p, "rank": rank})
    if outcome_points:
        view.charts["outcomes"] = charts.stacked(
            outcome_points, "Task outcomes: failure (user) vs error (platform)"
        )
    durations = points(pick(rows, "efficiency.task_duration_p50"), "p50") + points(
        pick(rows, "efficiency.task_duration_p90"), "p90"
    )
    if durations:
        view.charts["durations"] = charts.trend(
            durations, "seconds", "Duration of successful tasks"
        )
    csat = pick(rows, "happiness.csat")
    if points(csat, "CSAT"):
        view.charts["csat"] = charts.trend(
            points(csat, "CSAT"), "ratio", "CSAT, top-2-box (95 % interval)", band=True
        )
    periods = sorted({r.period for r in rows})
    table = [
        {
            "period": p,
            "cells": [last([r for r in rows if r.period == p], m) for m in CAPABILITY_METRICS],
        }
        for p in periods
    ]
    mine = [r for r in data.actions.rows if all(r.segment.get(k) == v for k, v in seg.items())]
    failing: list[dict[str, Any]] = []
    for r in pick(mine, "task.attempts"):
        action = r.segment.get("action")
        failure = last(mine, "task.failure_rate", action=action)
        error = last(mine, "task.error_rate", action=action)
        share = sum(float(x.value) for x in (failure, error) if x and x.value is not None)
        if r.value and share > 0:
            failing.append(
                {
                    "action": action,
                    "attempts": r,
                    "failure": failure,
                    "error": error,
                    "share": share,
                }
            )
    failing.sort(key=lambda a: (-float(a["share"]), str(a["action"])))
    view.context.update(
        metrics=CAPABILITY_METRICS, table=table, failing=failing[:10], grain=report.grain
    )
    return view


def team(
    store: Store,
    settings: Settings,
    filters: Filters,
    links: Links,
    now: datetime,
    name: str,
) -> View:
    """One team: the capabilities it uses and since when, its DORA trend, its survey results
    (the engine's happiness rows, suppressed below the survey's k)."""
    view = View(
        f"Team {name}",
        "team.html",
        "teams-" + name,
        filters=filters,
        fields=("grain", "from", "to"),
    )
    if store.is_empty():
        view.empty = EMPTY_STORE
        return view
    grain = filters.grain
    start, end = span(filters, settings, now)
    used = compute(
        store,
        Request(
            "all",
            start,
            end,
            ("team", "capability"),
            ("adoption.active_users", "task.attempts", "task.success_rate"),
            now,
        ),
        settings,
    )
    mine = [r for r in used.rows if r.segment.get("team") == name]
    since = _first_use(store, settings, name, used.end, now)
    capabilities = [
        {
            "capability": r.segment["capability"],
            "users": last(mine, "adoption.active_users", capability=r.segment["capability"]),
            "attempts": r,
            "success": last(mine, "task.success_rate", capability=r.segment["capability"]),
            "since": since.get(r.segment["capability"]),
        }
        for r in pick(mine, "task.attempts")
        if r.value
    ]
    dora = compute(store, Request(grain, start, end, ("team",), TEAM_DORA, now), settings)
    dora_rows = [r for r in dora.rows if r.segment.get("team") == name]
    for m in TEAM_DORA[1:]:
        series = points(pick(dora_rows, m), m.removeprefix("dora.").replace("_", " "))
        if series:
            view.charts[m] = charts.trend(
                series, unit(m), m.removeprefix("dora.").replace("_", " ").capitalize()
            )
    survey = compute(store, Request(grain, start, end, ("team",), SURVEY_METRICS, now), settings)
    answers = [r for r in survey.rows if r.segment.get("team") == name]
    # periods in which the team answered a wave (a suppressed row is one, unseen)
    waves = {
        r.period
        for r in answers
        if r.metric == "happiness.respondents" and (r.suppressed or r.value)
    }
    answers = [r for r in answers if r.period in waves]
    view.context.update(
        name=name,
        start=used.start,
        end=used.end,
        grain=grain,
        capabilities=capabilities,
        dora_metrics=TEAM_DORA,
        dora_table=_table(dora_rows, TEAM_DORA),
        survey_metrics=SURVEY_METRICS,
        survey_table=_table(answers, SURVEY_METRICS),
    )
    return view


def span(filters: Filters, settings: Settings, now: datetime) -> tuple[date, date]:
    """The range a page shows: the filters' dates, or the engine's default range for its grain."""
    _, start, end, _ = resolve(
        Request(filters.grain, filters.start, filters.end, now=now), settings
    )
    return start, end


def _table(rows: list[Row], metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {"period": p, "cells": [last([r for r in rows if r.period == p], m) for m in metrics]}
        for p in sorted({r.period for r in rows})
    ]


def _first_use(
    store: Store, settings: Settings, team: str, end: date, now: datetime
) -> dict[Any, date]:
    """Month of each capability's first use by `team`: the engine's `adoption.new_teams` (first
    use over all stored data) by team and capability, monthly from the first stored usage."""
    span = store.usage_span()
    if span is None:
        return {}
    first = span[0]
    tz = ZoneInfo(settings.timezone)
    start = first.astimezone(tz).date().replace(day=1)
    if start >= end:
        return {}
    report = compute(
        store,
        Request("month", start, end, ("team", "capability"), ("adoption.new_teams",), now),
        settings,
    )
    out: dict[Any, date] = {}
    for r in report.rows:
        if r.segment.get("team") == team and r.value:
            out.setdefault(r.segment.get("capability"), r.period)
    return out
