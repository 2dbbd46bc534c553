"""HEAT views: the overview (scorecard, DORA tiers, portfolio), one capability, one team.

Each view asks the engine (`compute`) or the scorecard for exactly the rows it shows and only
arranges them, so anonymity and the metric definitions hold on every page.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from heatlens.analysis.coverage import PLURAL, Coverage, coverage, either
from heatlens.analysis.scorecard import (
    ADOPTION,
    DORA,
    HAPPINESS,
    HEAT,
    TASK_SUCCESS,
    Scorecard,
    complete_periods,
    scorecard,
)
from heatlens.analysis.targets import Target, Tension, parse_targets, target_status, tensions_of
from heatlens.analysis.waves import Waves, complete_waves, wave_label
from heatlens.metrics import Request, compute, compute_all
from heatlens.metrics.catalog import CALENDAR_GRAINS, CATALOG, DIMENSION_TITLES, Metric
from heatlens.metrics.engine import resolve
from heatlens.metrics.periods import calendar_next, calendar_start
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
from heatlens.report.units import format_delta
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


def _target(
    targets: list[Target],
    metric: str,
    value: float | None,
    capability: str,
    grain: str,
    as_of: date,
) -> Any:
    """The configured target of this cell, if any, judged as `heatlens check` judges it (the
    scorecard's cell is the engine's value for the same last complete period)."""
    for t in targets:
        if t.metric == metric and t.grain == grain and t.segment == (("capability", capability),):
            status = target_status(t, value, as_of)
            return {"text": f"{t.op} {show_value(t.value, metric)}", "status": status}
    return None


def _metrics(names: tuple[str, ...]) -> list[Metric]:
    return [CATALOG[m] for m in names]


def where(
    cov: Coverage,
    links: Links,
    path: str,
    filters: Filters | None = None,
    *,
    scored: bool = False,
) -> dict[str, Any]:
    """What an empty range lacks and where those records are: a sentence, and links to the same
    page showing them (`scored`: the overview, whose scorecard is placed by `to`); in the
    self-contained report, the command that shows them. `demo` is suggested to an empty store
    only."""
    if cov.store_empty:
        return {"text": EMPTY_STORE, "links": [], "stored": False}
    held = any(t in cov.spans for t in cov.needed)
    if links.static:
        return {"text": _command_hint(cov, scored), "links": [], "stored": held}
    tz = ZoneInfo(cov.tz)
    lacking = either([PLURAL.get(t, t) for t in cov.needed]) or "records"
    last_day = cov.end - timedelta(days=1)
    text = f"No {lacking} from {cov.start} to {last_day}."
    stored = [(t, cov.spans[t]) for t in cov.needed if t in cov.spans]
    if stored:
        text += " " + _sentence(
            "; ".join(
                f"{PLURAL.get(t, t)} span {s.first.astimezone(tz).date()} … "
                f"{s.last.astimezone(tz).date()}"
                for t, s in stored
            )
        )
    else:
        holds = ", ".join(f"{s.records:,} {PLURAL.get(t, t)}" for t, s in cov.spans.items())
        text += f" The store holds none of them (it holds {holds})."
    found = cov.suggestion()
    out: list[tuple[str, str]] = []
    if found is not None:
        grain, start = found
        team = filters.team if filters else None
        if scored:
            last = max(s.last for _, s in stored).astimezone(tz).date()
            to = calendar_next(calendar_start(last, grain), grain)
            out.append(
                (
                    f"the last {grain} with records ({calendar_start(last, grain)})",
                    links.page(path, Filters(grain, end=to)),
                )
            )
        else:
            out.append(
                (f"by {grain} from {start}", links.page(path, Filters(grain, start, team=team)))
            )
        out.append(("all history", links.page(path, Filters("all", team=team))))
    return {"text": text, "links": out, "stored": held}


def _command_hint(cov: Coverage, scored: bool) -> str:
    """The hint of the self-contained report: the command that shows the records. The
    scorecard scores the last complete period before `--to`, so for it, the `--to` that
    scores the last period holding records."""
    command = "heatlens report --format html"
    found = cov.suggestion()
    stored = [cov.spans[t] for t in cov.needed if t in cov.spans]
    if not scored or found is None or not stored:
        return _sentence(cov.hint(command))
    tz = ZoneInfo(cov.tz)
    grain = found[0]
    last = max(s.last for s in stored).astimezone(tz).date()
    to = calendar_next(calendar_start(last, grain), grain)
    head = cov.hint(command).rsplit(": try", 1)[0]
    return _sentence(
        f"{head}: the scorecard scores the last complete period before `--to`; try "
        f"`{command} --grain {grain} --to {to}` (or `--grain all` for all history)"
    )


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def _heat_cell(
    metric: str,
    capability: str,
    value: float | None,
    n: int | None,
    suppressed: bool,
    change: Any,
    period: date,
    grain: str,
    links: Links,
    target: Any,
    wave: Row | None = None,
) -> dict[str, Any]:
    """One scorecard cell as the template shows it: the value (a link to its records), `n`,
    the change (None: not judged; delta 0: "no change"), the target, and for happiness the wave
    it is from (its records are that wave's, at grain month)."""
    segment: dict[str, Any] = {"capability": capability}
    if wave is not None:
        segment["survey"] = wave.segment.get("survey")
        period, grain = wave.period, "month"
    row = Row(metric, period, segment, value, n, suppressed=suppressed)
    shown = value is not None and not suppressed
    delta = None
    if change is not None:
        d = float(change.delta)
        size = format_delta(d, unit(metric))
        if d and size == "0.0 pp":  # a change too small to print is still a change
            size = "< 0.1 pp"
        good = (d > 0) == (CATALOG[metric].direction == "up")
        delta = {
            "zero": d == 0,
            "up": d > 0,
            "good": good,
            "size": size,
            "significant": bool(change.significant),
        }
    return {
        "metric": metric,
        "suppressed": suppressed,
        "text": "suppressed" if suppressed else show_value(value, metric),
        "href": links.explain(row, grain) if shown and grain != "all" else None,
        "n": n,
        "delta": delta,
        "target": target,
        "wave": None if wave is None else wave_label(wave),
    }


def overview(
    store: Store,
    settings: Settings,
    filters: Filters,
    links: Links,
    now: datetime,
    *,
    with_dora: bool = True,
) -> View:
    """The HEAT scorecard per capability, DORA with teams per tier, and the portfolio chart
    (without DORA when `with_dora` is false: the report shows it in its own section).

    At a calendar grain: the last complete period before `to` (default now) against the one
    before it. At grain `all`: every capability over the whole range (all history without `from`),
    with no change to judge."""
    everything = filters.grain == "all"
    view = View(
        "Overview",
        "overview.html",
        "overview",
        filters=filters,
        fields=("grain", "from", "to") if everything else ("grain", "to"),
    )
    if store.is_empty():
        view.empty = EMPTY_STORE
        return view
    tz = ZoneInfo(settings.timezone)
    if everything:
        grain = "all"
        start, end = span(filters, settings, now, store)
        period, previous, as_of = start, None, now
    else:
        grain = filters.grain if filters.grain in CALENDAR_GRAINS else "month"
        as_of = _as_of(filters, settings, now)
        previous, period, end = complete_periods(grain, tz, as_of)
        start = previous
    heat_cov = coverage(store, _metrics(HEAT), start, end, settings.timezone)
    dora_cov = coverage(store, _metrics(DORA), period, end, settings.timezone)
    view.context.update(
        grain=grain,
        period=period,
        previous=previous,
        start=start,
        end=end,
        heat=HEAT,
        rows=[],
        dora=[],
        unplaced=[],
        tiered=False,
        where=None,
        heat_where=None,
        dora_where=None,
        last_day=end - timedelta(days=1),
        with_dora=with_dora,
        tensions=[],
    )
    if heat_cov.empty and (dora_cov.empty or not with_dora):
        both = coverage(store, _metrics(HEAT + DORA), start, end, settings.timezone)
        view.context["where"] = where(both, links, "/", filters, scored=not everything)
        return view
    placed: list[dict[str, Any]] = []
    dora_rows: list[Row] = []
    if heat_cov.empty:
        view.context["heat_where"] = where(heat_cov, links, "/", filters, scored=not everything)
    elif everything:
        usage = tuple(m for m in HEAT if m != HAPPINESS)
        report = compute(store, Request("all", start, end, ("capability",), usage, now), settings)
        happy = complete_waves(store, settings, (HAPPINESS,), ("capability",), end)[HAPPINESS]
        view.context["rows"] = _all_history_rows(report, happy, links, start, placed)
    else:
        card = scorecard(store, settings, grain=grain, as_of=as_of)
        view.context["rows"] = _scorecard_rows(card, settings, links, as_of.date(), placed)
        view.context["tensions"] = [_tension(t) for t in tensions_of(card)]
        dora_rows = card.dora
    if not with_dora:
        return _with_portfolio(view, placed)
    if dora_cov.empty:
        view.context["dora_where"] = where(dora_cov, links, "/", filters, scored=not everything)
    else:
        covered = tuple(m for m in DORA if dora_cov.covers(CATALOG[m]))
        tiered = grain in ("month", "quarter", "all")  # the grains the engine gives tiers at
        # rows and tiers only: the overview shows no warnings; both views in one query
        wanted = [*([()] if not dora_rows else []), *([("team",)] if tiered else [])]
        reports = compute_all(
            store,
            [Request(grain, period, end, by, covered, now, warnings=False) for by in wanted],
            settings,
        )
        found = dict(zip(wanted, reports, strict=True))
        if not dora_rows:
            dora_rows = [r for r in found[()].rows if r.period == period]
        tiers: dict[str, Counter[str]] = {m: Counter() for m in DORA}
        if tiered:
            per_team = found[("team",)]
            for r in per_team.rows:
                if r.tier:
                    tiers[r.metric][r.tier] += 1
            view.context["tiered"] = bool(per_team.rows)
        view.context["dora"] = [
            {
                "row": last(dora_rows, m),
                "metric": m,
                "tiers": [(t, tiers[m][t]) for t in TIERS if tiers[m][t]],
            }
            for m in DORA
        ]
    return _with_portfolio(view, placed)


def _tension(tension: Tension) -> dict[str, Any]:
    """A tension as the overview words it: where, and which dimensions moved which way."""

    def named(metrics: tuple[str, ...]) -> str:
        return ", ".join(
            f"{DIMENSION_TITLES[CATALOG[m].dimension].lower()} ({metric_title(m)})" for m in metrics
        )

    return {
        "where": tension.capability or "the organisation as a whole",
        "overall": tension.capability is None,
        "better": named(tension.better),
        "worse": named(tension.worse),
    }


def _with_portfolio(view: View, placed: list[dict[str, Any]]) -> View:
    """The portfolio chart of the capabilities with adoption and CSAT; the others named."""
    with_values = [p for p in placed if p["adoption"] is not None and p["csat"] is not None]
    view.context["unplaced"] = [p["capability"] for p in placed if p not in with_values]
    if with_values:
        view.charts["portfolio"] = charts.portfolio(with_values)
    return view


def _scorecard_rows(
    card: Scorecard, settings: Settings, links: Links, as_of: date, placed: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    targets = parse_targets(settings.targets)
    rows = []
    for score in card.capabilities:
        cells = [
            _heat_cell(
                c.metric,
                score.capability,
                c.value,
                c.n,
                c.suppressed,
                c.change,
                card.period,
                card.grain,
                links,
                _target(targets, c.metric, c.value, score.capability, card.grain, as_of),
                c.wave,
            )
            for c in score.cells
        ]
        rows.append({"capability": score.capability, "cells": cells})
        placed.append(
            _placed(
                score.capability,
                score.adoption.value,
                score.task_success.value,
                score.happiness.value,
            )
        )
    return rows


def _all_history_rows(
    report: Report, happy: Waves, links: Links, start: date, placed: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """All history per capability; happiness is the latest closed wave, never a pool of waves."""
    named = {r.segment.get("capability") for r in (*report.rows, *happy.every)}
    capabilities = sorted((str(c) for c in named if c is not None), key=str)
    rows = []
    for capability in capabilities:
        found = {m: last(report.rows, m, capability=capability) for m in HEAT if m != HAPPINESS}
        found[HAPPINESS] = happy.latest(capability=capability)[0]
        cells = [
            _heat_cell(
                m,
                capability,
                None if r is None or r.value is None else float(r.value),
                None if r is None else r.n,
                bool(r and r.suppressed),
                None,
                start,
                "all",
                links,
                None,
                r if m == HAPPINESS else None,
            )
            for m, r in found.items()
        ]
        rows.append({"capability": capability, "cells": cells})
        values = [
            None if (r := found[m]) is None or r.suppressed or r.value is None else float(r.value)
            for m in (ADOPTION, TASK_SUCCESS, HAPPINESS)
        ]
        placed.append(_placed(capability, *values))
    return rows


def _placed(
    capability: str, adoption: float | None, success: float | None, csat: float | None
) -> dict[str, Any]:
    return {
        "capability": capability,
        "adoption": adoption,
        "csat": csat,
        "success": success,
        "adoption_label": show_value(adoption, ADOPTION),
        "csat_label": show_value(csat, HAPPINESS),
        "success_label": show_value(success, TASK_SUCCESS),
    }


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
    _, start, end, _ = resolve(request, settings, store)  # the range both reports cover
    report, actions = compute_all(
        store,
        [
            request,
            Request(
                "all",
                start,
                end,
                ("capability", "action", *team),
                ("task.attempts", "task.failure_rate", "task.error_rate"),
                now,
            ),
        ],
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
    if shared is None:
        start, end = span(filters, settings, now, store)
        cov = coverage(store, _metrics(CAPABILITY_METRICS), start, end, settings.timezone)
        if cov.empty:
            path = "/capabilities/" + quote(name, safe="")
            view.context.update(
                name=name, team=team, start=start, end=end, where=where(cov, links, path, filters)
            )
            return view
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
    start, end = span(filters, settings, now, store)
    tz = settings.timezone
    covered = {
        section: coverage(store, _metrics(metrics), start, end, tz)
        for section, metrics in (
            ("usage", ("task.attempts",)),
            ("dora", TEAM_DORA),
            ("survey", SURVEY_METRICS),
        )
    }
    view.context.update(
        name=name,
        start=start,
        end=end,
        grain=grain,
        capabilities=[],
        dora_metrics=TEAM_DORA,
        dora_table=[],
        survey_metrics=SURVEY_METRICS,
        survey_table=[],
        where=None,
        usage_where=None,
        dora_where=None,
        survey_where=None,
    )
    path = "/teams/" + quote(name, safe="")
    if all(c.empty for c in covered.values()):
        every = coverage(
            store, _metrics(("task.attempts", *TEAM_DORA, *SURVEY_METRICS)), start, end, tz
        )
        view.context["where"] = where(every, links, path, filters)
        return view
    for section, cov in covered.items():
        if cov.empty:
            view.context[f"{section}_where"] = where(cov, links, path, filters)
    if not covered["usage"].empty:
        _team_usage(view, store, settings, name, start, end, now)
    if not covered["dora"].empty:
        _team_dora(view, store, settings, name, grain, start, end, now)
    if not covered["survey"].empty:
        _team_survey(view, store, settings, name, grain, start, end, now)
    return view


def _team_usage(
    view: View,
    store: Store,
    settings: Settings,
    name: str,
    start: date,
    end: date,
    now: datetime,
) -> None:
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
    view.context["capabilities"] = capabilities


def _team_dora(
    view: View,
    store: Store,
    settings: Settings,
    name: str,
    grain: str,
    start: date,
    end: date,
    now: datetime,
) -> None:
    dora = compute(store, Request(grain, start, end, ("team",), TEAM_DORA, now), settings)
    dora_rows = [r for r in dora.rows if r.segment.get("team") == name]
    for m in TEAM_DORA[1:]:
        series = points(pick(dora_rows, m), metric_title(m))
        if series:
            view.charts[m] = charts.trend(series, unit(m), metric_title(m).capitalize())
    view.context["dora_table"] = _table(dora_rows, TEAM_DORA)


def _team_survey(
    view: View,
    store: Store,
    settings: Settings,
    name: str,
    grain: str,
    start: date,
    end: date,
    now: datetime,
) -> None:
    survey = compute(store, Request(grain, start, end, ("team",), SURVEY_METRICS, now), settings)
    answers = [r for r in survey.rows if r.segment.get("team") == name]
    # periods in which the team answered a wave (a suppressed row is one, unseen)
    waves = {
        r.period
        for r in answers
        if r.metric == "happiness.respondents" and (r.suppressed or r.value)
    }
    answers = [r for r in answers if r.period in waves]
    view.context["survey_table"] = _table(answers, SURVEY_METRICS)


def span(filters: Filters, settings: Settings, now: datetime, store: Store) -> tuple[date, date]:
    """The range a page shows: the filters' dates, or the engine's default range for its grain
    (grain `all` without `from`: all history)."""
    _, start, end, _ = resolve(
        Request(filters.grain, filters.start, filters.end, now=now), settings, tables=store
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


TREND_DORA = (
    "dora.deployments",
    "dora.deployment_frequency",
    "dora.lead_time_p50",
    "dora.change_failure_rate",
    "dora.recovery_time_p50",
)


def trends(store: Store, settings: Settings, filters: Filters, links: Links, now: datetime) -> View:
    """Organisation-wide DORA over every period of the range: the team page's trend charts for
    the whole organisation, and the numbers per period with their tiers. Metrics whose records
    the range does not hold are left out (and not computed)."""
    view = View("DORA trends", "trends.html", "trends", filters=filters)
    start, end = span(filters, settings, now, store)
    grain = filters.grain
    view.context.update(
        grain=grain,
        start=start,
        end=end,
        last_day=end - timedelta(days=1),
        where=None,
        table=[],
        metrics=(),
        quiet=0,
    )
    cov = coverage(store, _metrics(TREND_DORA), start, end, settings.timezone)
    if cov.empty:
        view.context["where"] = where(cov, links, "/", filters)
        return view
    covered = tuple(m for m in TREND_DORA if cov.covers(CATALOG[m]))
    report = compute(store, Request(grain, start, end, (), covered, now), settings)
    for m in covered[1:]:
        series = points(pick(report.rows, m), metric_title(m))
        if series:
            view.charts[m] = charts.trend(series, unit(m), metric_title(m).capitalize())
    table = _table(report.rows, covered)
    busy = [
        line
        for line in table
        if any(c is not None and (c.suppressed or c.value) for c in line["cells"])
    ]
    view.context.update(metrics=covered, table=busy, quiet=len(table) - len(busy))
    return view


def metric_title(metric: str) -> str:
    """`dora.lead_time_p50` → `lead time p50`."""
    return metric.split(".", 1)[-1].replace("_", " ")
