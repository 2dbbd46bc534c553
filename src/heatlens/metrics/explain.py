"""The records behind one number (DESIGN §5 `explain`): the deployments counted, each linked
incident with the rule that linked it, the changes and their lead times, dropped values and why.

`explain` uses the same observation tables as the engine and takes the number itself from
`compute`, so what it lists is what was counted. Survey answers are never listed one by one (only
counts, and nothing at all for a suppressed segment): anonymity holds here too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import ibis

from heatlens.errors import ConfigError
from heatlens.metrics import catalog
from heatlens.metrics.context import MetricContext
from heatlens.metrics.delivery import (
    first_deployments,
    lead_time_pairs,
    recovery_times,
    restore_times,
)
from heatlens.metrics.engine import Request, compute
from heatlens.metrics.frame import Frame, Tables
from heatlens.metrics.linking import links, remediations
from heatlens.metrics.periods import calendar_next, calendar_start, periods
from heatlens.metrics.result import Row
from heatlens.metrics.usage import COLUMNS as USAGE_COLUMNS
from heatlens.metrics.usage import with_bot
from heatlens.settings import Settings

LIMIT = 50


def parse_segments(items: Iterable[str], name: str = "segment") -> dict[str, str | None]:
    """The segment of `KEY=VALUE` items (`KEY=` is a null value); a bad item is a ConfigError
    naming the option or parameter `name`."""
    segment: dict[str, str | None] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{name} {item!r}: expected KEY=VALUE, e.g. team=payments")
        segment[key] = value or None
    return segment


@dataclass
class Explanation:
    """A number and the records behind it."""

    metric: str
    grain: str
    period: date
    segment: dict[str, Any]
    row: Row | None
    columns: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0  # records behind the number (only the first `limit` are listed)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def explain(
    tables: Tables,
    metric: str,
    period: date,
    segment: dict[str, Any],
    settings: Settings,
    *,
    grain: str = "week",
    limit: int = LIMIT,
    now: datetime | None = None,
) -> Explanation:
    """The records behind `metric` for the period of `grain` containing `period` and `segment`."""
    if metric not in catalog.CATALOG:
        raise ConfigError(
            f"unknown metric {metric!r}: explain needs a full metric id, e.g. "
            "dora.change_failure_rate"
        )
    m = catalog.CATALOG[metric]
    bad = [k for k in segment if k not in m.keys]
    if bad:
        raise ConfigError(
            f"{metric} cannot be segmented by {bad[0]!r} (it can by {', '.join(sorted(m.keys))})"
        )
    start = period if grain == "all" else calendar_start(period, grain)
    end = calendar_next(start, grain) if grain != "all" else period
    by = tuple(segment)
    report = compute(tables, Request(grain, start, end, by, (metric,), now), settings)
    row = next((r for r in report.rows if r.segment == segment), None)
    waves: list[Row] = []
    if row is None and m.dimension == "happiness" and "survey" not in segment:
        # happiness rows name their wave (never pooled): the one wave of the period, if one
        waves = [
            r for r in report.rows if {**r.segment, "survey": None} == {**segment, "survey": None}
        ]
        row = waves[0] if len(waves) == 1 else None
    out = Explanation(metric, grain, start, segment, row)
    if len(waves) > 1:
        names = ", ".join(str(r.segment["survey"]) for r in waves)
        out.notes.append(
            f"this period holds {len(waves)} survey waves ({names}), each its own number: "
            "add the segment survey=ID"
        )
    if row is not None and row.suppressed:
        out.notes.append(
            "this segment is suppressed (fewer respondents than the survey's k): "
            "nothing about it is shown"
        )
        return out
    frame = Frame.load(tables, settings)
    ctx = MetricContext(
        frame,
        periods(grain, start, end, frame.tz),
        grain,
        by,
        report.generated_at or datetime.now(),
    )
    t, columns, order = _observations(ctx, metric)
    if t is None:
        out.notes.append(columns[0] if columns else "no record-level view for this metric")
        return out
    for key, value in segment.items():
        t = t.filter(t[key].isnull() if value is None else t[key] == value)
    kept, dropped = _split(t, metric)
    if "bot" in t.columns and metric.startswith("adoption."):
        # bots count in task success and efficiency, never in adoption: listed as dropped
        dropped = t.filter(t.bot).mutate(reason=ibis.literal("bot actor (`bot_actors`)"))
        kept = t.filter(~t.bot)
    out.columns = columns
    out.total = int(kept.count().to_pyarrow().as_py())
    out.records = kept.order_by(order).select(*columns).limit(limit).to_pyarrow().to_pylist()
    if dropped is not None:
        dropped = dropped.order_by(order).select(*columns, "reason").limit(limit)
        out.dropped = dropped.to_pyarrow().to_pylist()
    out.notes += [f"{w.code}: {w.message} ({w.count})" for w in report.warnings]
    return out


def _split(t: Any, metric: str) -> tuple[Any, Any]:
    """Counted records, and those dropped with their reason (negative durations)."""
    for column in ("hours", "days"):
        if column in t.columns:
            dropped = t.filter(t[column] < 0).mutate(reason=ibis.literal(f"negative {column}"))
            return t.filter(t[column] >= 0), dropped
    return t, None


def _observations(ctx: MetricContext, metric: str) -> tuple[Any, list[str], list[str]]:
    """(table with `period` and segment columns, columns to list, order) for a metric."""
    f = ctx.frame
    dim = metric.split(".")[0]
    if dim in ("adoption", "task") or metric.startswith("efficiency.task_duration"):
        u = ctx.bucketed(_usage_with_id(ctx), "ts")
        if dim == "task":
            u = u.filter(u.outcome.notnull())
        if metric.startswith("efficiency.task_duration"):
            u = u.filter((u.outcome == "success") & u.duration_s.notnull())
        if metric in ("adoption.eligible_teams", "adoption.new_teams", "adoption.team_retention"):
            return (
                None,
                [
                    f"{metric} is about teams, not records: see "
                    "`heatlens report --by team` for each team's activity"
                ],
                [],
            )
        return (
            u,
            [
                "id",
                "ts",
                "capability",
                "action",
                "actor",
                "bot",
                "team",
                "service",
                "outcome",
                "duration_s",
                "run",
                "attempt",
            ],
            ["ts", "id"],
        )
    deps = f.dora_deployments()
    if metric == "efficiency.services_awaiting_first_deploy":
        return (
            None,
            [
                "services awaiting their first deployment are counted at the period's end: "
                "`heatlens report --metric efficiency.services_awaiting_first_deploy --by service` "
                "lists them"
            ],
            [],
        )
    if metric == "efficiency.time_to_first_deploy":
        t = ctx.bucketed(first_deployments(ctx, deps), "finished_at")
        return t, ["service", "s_created", "id", "finished_at", "days"], ["finished_at"]
    incidents = f.incidents()
    if metric.startswith("dora.lead_time"):
        t = ctx.bucketed(lead_time_pairs(ctx, deps), "finished_at")
        return (
            t,
            ["change", "committed_at", "service", "id", "finished_at", "hours"],
            ["finished_at", "change"],
        )
    linked = links(incidents, deps, f.settings.link_window)
    if metric == "dora.recovery_time_p50":
        t = ctx.bucketed(recovery_times(deps, incidents, linked), "resolved_at")
        return (
            t,
            [
                "id",
                "opened_at",
                "resolved_at",
                "linked_deployment",
                "rule",
                "d_finished",
                "hours",
                "team",
                "service",
            ],
            ["resolved_at", "id"],
        )
    if metric == "dora.time_to_restore_p50":
        t = ctx.bucketed(restore_times(incidents), "resolved_at")
        return (
            t,
            ["id", "opened_at", "resolved_at", "hours", "team", "service"],
            ["resolved_at", "id"],
        )
    if metric == "dora.open_incidents":
        return (
            None,
            [
                "open incidents are counted at the period's end: `heatlens explain "
                "dora.time_to_restore_p50` lists incidents once resolved"
            ],
            [],
        )
    if dim == "dora":
        return (
            _deployments_with_failures(ctx, deps, linked),
            DEPLOYMENT_COLUMNS,
            ["finished_at", "id"],
        )
    return (
        None,
        [
            "survey answers are never listed one by one; `heatlens report --metric "
            f"{metric} --by question` shows the counts"
        ],
        [],
    )


DEPLOYMENT_COLUMNS = [
    "id",
    "finished_at",
    "service",
    "team",
    "environment",
    "kind",
    "commit_sha",
    "failed",
    "incidents",
    "rules",
    "remediated_by",
]


def _deployments_with_failures(ctx: MetricContext, deps: Any, linked: Any) -> Any:
    """The period's deployments, each with why it failed: the incidents linked to it and the
    rule of each link, and the rollback or hotfix that remediated it (`kind:id`)."""
    found = linked.filter(linked.linked_deployment.notnull())
    per = found.group_by("linked_deployment").aggregate(
        incidents=found.incident_id.collect(), rules=found.rule.collect()
    )
    d = ctx.bucketed(deps, "finished_at")
    d = d.left_join(per, d.id == per.linked_deployment).drop("linked_deployment")
    if ctx.settings.failure_from_remediation:
        fixed = remediations(deps)
        fixed = fixed.group_by("remediated").aggregate(
            remediated_by=(fixed.remediation_kind + ":" + fixed.remediated_by).collect()
        )
        d = d.left_join(fixed, d.id == fixed.remediated).drop("remediated")
    else:
        d = d.mutate(remediated_by=ibis.null("array<string>"))
    failed = d.incidents.notnull() | d.remediated_by.notnull()
    return d.mutate(failed=failed)


def _usage_with_id(ctx: MetricContext) -> Any:
    """The engine's resolved usage columns with `bot`, each record's id to list it by, and its
    run and attempt."""
    return with_bot(ctx, ctx.frame.usage().select("id", "run", "attempt", *USAGE_COLUMNS))
