"""The records behind one number (DESIGN §5 `explain`): the deployments counted, each linked
incident with the rule that linked it, the changes and their lead times, dropped values and why,
and what the number leaves out (changes never shipped, deployments outside production, bots).

`explain` uses the same observation tables as the engine and takes the number itself from
`compute`, so what it lists is what was counted. Survey answers are never listed one by one (only
counts, and nothing at all for a suppressed segment): anonymity holds here too.

Each listing has column titles and kinds (a duration's unit, a time, a flag) so every output shows
values as a person reads them, and an order chosen per metric: durations longest first, failed
deployments and attempts first where failures are the point, everything else by time.
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
from heatlens.metrics.linking import hours_between, links, remediations, shipped
from heatlens.metrics.periods import calendar_next, calendar_start, periods
from heatlens.metrics.result import Row
from heatlens.metrics.usage import COLUMNS as USAGE_COLUMNS
from heatlens.metrics.usage import with_bot
from heatlens.settings import Settings

LIMIT = 50

# column → (title, kind); kind: text, time, hours, days, seconds, flag, list
COLUMNS: dict[str, tuple[str, str]] = {
    "change": ("Commit", "text"),
    "title": ("Subject", "text"),
    "author": ("Author", "text"),
    "committed_at": ("Committed", "time"),
    "finished_at": ("Deployed", "time"),
    "service": ("Service", "text"),
    "team": ("Team", "text"),
    "environment": ("Environment", "text"),
    "kind": ("Kind", "text"),
    "commit_sha": ("Commit", "text"),
    "failed": ("Failed", "flag"),
    "incidents": ("Incidents", "list"),
    "rules": ("Link rules", "list"),
    "remediated_by": ("Remediated by", "list"),
    "opened_at": ("Opened", "time"),
    "resolved_at": ("Resolved", "time"),
    "linked_deployment": ("Failed deployment", "text"),
    "rule": ("Link rule", "text"),
    "d_finished": ("Deployed", "time"),
    "s_created": ("Service created", "time"),
    "ts": ("Time", "time"),
    "capability": ("Capability", "text"),
    "action": ("Action", "text"),
    "actor": ("Actor", "text"),
    "bot": ("Bot", "flag"),
    "outcome": ("Outcome", "text"),
    "duration_s": ("Duration", "seconds"),
    "run": ("Run", "text"),
    "attempt": ("Attempt", "text"),
    "reason": ("Reason", "text"),
    "result": ("Result", "text"),
}
# what `id` and a duration are, per listing
ID_TITLES = {
    "deployments": "Deployment",
    "lead_time": "Deployment",
    "recovery": "Incident",
    "restore": "Incident",
    "first_deploy": "First deployment",
    "usage": "Record",
}
DURATION_TITLES = {
    "lead_time": ("hours", "Lead time", "hours"),
    "recovery": ("hours", "Recovery time", "hours"),
    "restore": ("hours", "Time to restore", "hours"),
    "first_deploy": ("days", "Time to first deploy", "days"),
}
# metrics whose records can be narrowed to failures, and what a failure is there
FAILURES = {
    "deployments": "failed deployments (an incident linked to them, or remediated)",
    "usage_tasks": "attempts that did not succeed (failure, error, abandoned)",
}


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
    total: int = 0  # records behind the number
    dropped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    titles: dict[str, str] = field(default_factory=dict)  # column → title
    kinds: dict[str, str] = field(default_factory=dict)  # column → kind (see COLUMNS)
    order: str = ""  # the order of `records`, in words
    offset: int = 0  # records skipped before the first listed
    matching: int = 0  # records listed with `failures_only` (else `total`)
    failures: str | None = None  # what "failures only" keeps for this metric (None: no filter)
    failures_only: bool = False
    dropped_total: int = 0
    # what the number leaves out: {"code", "count", "text"} (engine warnings carry their code)
    not_counted: list[dict[str, Any]] = field(default_factory=list)
    timezone: str = "UTC"


@dataclass
class _Listing:
    """How a metric's records are listed."""

    table: Any
    kind: str  # key of ID_TITLES
    columns: list[str]
    order: list[Any]
    order_text: str
    failed: Any = None  # ibis predicate on `table` for "failures only"
    failures: str | None = None


def explain(
    tables: Tables,
    metric: str,
    period: date,
    segment: dict[str, Any],
    settings: Settings,
    *,
    grain: str = "week",
    limit: int | None = LIMIT,
    offset: int = 0,
    failures_only: bool = False,
    now: datetime | None = None,
) -> Explanation:
    """The records behind `metric` for the period of `grain` containing `period` and `segment`:
    `limit` of them (None: all) from `offset`, only failures with `failures_only`."""
    if metric not in catalog.CATALOG:
        raise ConfigError(
            f"unknown metric {metric!r}: explain needs a full metric id, e.g. "
            "dora.change_failure_rate"
        )
    if offset < 0 or (limit is not None and limit < 1):
        raise ConfigError("explain lists at least 1 record from offset 0 or later")
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
    out = Explanation(metric, grain, start, segment, row, timezone=settings.timezone)
    out.offset = offset
    out.failures_only = failures_only
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
    listing = _observations(ctx, metric)
    if isinstance(listing, str):
        if failures_only:
            raise ConfigError(_no_failures(metric))
        out.notes.append(listing)
        return out
    t = listing.table
    for key, value in segment.items():
        t = t.filter(t[key].isnull() if value is None else t[key] == value)
    kept, dropped = _split(t)
    if "bot" in t.columns and metric.startswith("adoption."):
        # bots count in task success and efficiency, never in adoption: listed as dropped
        dropped = t.filter(t.bot).mutate(reason=ibis.literal("bot actor (`bot_actors`)"))
        kept = t.filter(~t.bot)
    columns = listing.columns
    out.columns = columns
    out.order = listing.order_text
    out.failures = listing.failures
    for c in [*columns, "reason"]:
        title, kind = COLUMNS.get(c, (c, "text"))
        if c == "id":
            title = ID_TITLES[listing.kind]
        if listing.kind in DURATION_TITLES and c == DURATION_TITLES[listing.kind][0]:
            title, kind = DURATION_TITLES[listing.kind][1:]
        out.titles[c], out.kinds[c] = title, kind
    out.total = _count(kept)
    if failures_only:
        if listing.failed is None:
            raise ConfigError(_no_failures(metric))
        kept = kept.filter(listing.failed(kept))
    out.matching = _count(kept) if failures_only else out.total
    listed = kept.order_by(listing.order).select(*columns).limit(limit, offset=offset)
    out.records = listed.to_pyarrow().to_pylist()
    if dropped is not None:
        out.dropped_total = _count(dropped)
        dropped = dropped.order_by(listing.order).select(*columns, "reason").limit(limit or LIMIT)
        out.dropped = dropped.to_pyarrow().to_pylist()
        if out.dropped_total:
            what = "bot actors" if metric.startswith("adoption.") else "negative durations"
            out.not_counted.append(
                {
                    "code": "dropped",
                    "count": out.dropped_total,
                    "text": f"records dropped ({what}), listed under Dropped",
                }
            )
    if metric.startswith("dora.lead_time"):
        never = _never_shipped(ctx, segment)
        if never is not None:
            out.not_counted.append(never)
    for w in report.warnings:
        out.notes.append(f"{w.code}: {w.message} ({w.count})")
        out.not_counted.append({"code": w.code, "count": w.count, "text": w.message})
    return out


def _no_failures(metric: str) -> str:
    return (
        f"{metric} has no failures to list on their own: failures only applies to the DORA "
        "deployment metrics (dora.deployments, dora.deployment_frequency, "
        "dora.change_failure_rate, dora.rework_rate) and the task metrics (task.*)"
    )


def _count(t: Any) -> int:
    return int(t.count().to_pyarrow().as_py())


def _split(t: Any) -> tuple[Any, Any]:
    """Counted records, and those dropped with their reason (negative durations)."""
    for column in ("hours", "days"):
        if column in t.columns:
            dropped = t.filter(t[column] < 0).mutate(reason=ibis.literal(f"negative {column}"))
            return t.filter(t[column] >= 0), dropped
    return t, None


def _never_shipped(ctx: MetricContext, segment: dict[str, Any]) -> dict[str, Any] | None:
    """Changes committed in the period that no production deployment has shipped (so far): they
    have no lead time. None when the segment cannot be placed on changes (environment)."""
    if "environment" in segment:
        return None
    f = ctx.frame
    c = f.table("change")
    c = c.filter(ctx.in_range(c.committed_at))
    owners = f.owner_table()
    c = c.left_join(owners, c.service == owners.o_service)
    c = c.mutate(team=ibis.coalesce(c.team, c.o_team)).drop("o_service", "o_team")
    c = f.with_group(c)
    for key, value in segment.items():
        c = c.filter(c[key].isnull() if value is None else c[key] == value)
    s = shipped(f.dora_deployments()).select(s_sha="sha").distinct()
    committed = _count(c)
    never = _count(c.anti_join(s, c.id == s.s_sha))
    if not committed:
        return None
    return {
        "code": "never_shipped",
        "count": never,
        "text": (
            f"changes committed in this period (of {committed:,}) were not shipped by any "
            "production deployment (yet): they have no lead time"
        ),
    }


def _observations(ctx: MetricContext, metric: str) -> _Listing | str:
    """How a metric's records are listed, or why they are not."""
    f = ctx.frame
    dim = metric.split(".")[0]
    if metric in ("adoption.eligible_teams", "adoption.new_teams", "adoption.team_retention"):
        return (
            f"{metric} is about teams, not records: see "
            "`heatlens report --by team` for each team's activity"
        )
    if dim in ("adoption", "task") or metric.startswith("efficiency.task_duration"):
        u = ctx.bucketed(_usage_with_id(ctx), "ts")
        columns = [
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
        ]
        if dim == "task":
            u = u.filter(u.outcome.notnull())
            failing = (u.outcome != "success").cast("int8")
            return _Listing(
                u.mutate(hl_failing=failing),
                "usage",
                columns,
                [ibis.desc("hl_failing"), "ts", "id"],
                "attempts that did not succeed first, then by time",
                lambda t: t.outcome != "success",
                FAILURES["usage_tasks"],
            )
        if metric.startswith("efficiency.task_duration"):
            u = u.filter((u.outcome == "success") & u.duration_s.notnull())
            return _Listing(u, "usage", columns, [ibis.desc("duration_s"), "id"], "longest first")
        return _Listing(u, "usage", columns, ["ts", "id"], "by time")
    deps = f.dora_deployments()
    if metric == "efficiency.services_awaiting_first_deploy":
        return (
            "services awaiting their first deployment are counted at the period's end: "
            "`heatlens report --metric efficiency.services_awaiting_first_deploy --by service` "
            "lists them"
        )
    if metric == "efficiency.time_to_first_deploy":
        t = ctx.bucketed(first_deployments(ctx, deps), "finished_at")
        return _Listing(
            t,
            "first_deploy",
            ["service", "s_created", "id", "finished_at", "days"],
            [ibis.desc("days"), "service"],
            "longest first",
        )
    incidents = f.incidents()
    if metric.startswith("dora.lead_time"):
        t = ctx.bucketed(lead_time_pairs(ctx, deps), "finished_at")
        c = f.table("change")
        subject = ["title"] if "title" in c.columns else []
        c = c.select(c_sha=c.id, author=c.author, **{name: c[name] for name in subject})
        t = t.left_join(c, t.change == c.c_sha).drop("c_sha")
        return _Listing(
            t,
            "lead_time",
            [
                "change",
                *subject,
                "author",
                "committed_at",
                "service",
                "id",
                "finished_at",
                "hours",
            ],
            [ibis.desc("hours"), "change", "service"],
            "longest lead time first",
        )
    linked = links(incidents, deps, f.settings.link_window)
    if metric == "dora.recovery_time_p50":
        t = ctx.bucketed(recovery_times(deps, incidents, linked), "resolved_at")
        return _Listing(
            t,
            "recovery",
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
            [ibis.desc("hours"), "id"],
            "longest recovery first",
        )
    if metric == "dora.time_to_restore_p50":
        t = ctx.bucketed(restore_times(incidents), "resolved_at")
        return _Listing(
            t,
            "restore",
            ["id", "opened_at", "resolved_at", "hours", "team", "service"],
            [ibis.desc("hours"), "id"],
            "longest time to restore first",
        )
    if metric == "dora.open_incidents":
        return (
            "open incidents are counted at the period's end: `heatlens explain "
            "dora.time_to_restore_p50` lists incidents once resolved"
        )
    if dim == "dora":
        t = _deployments_with_failures(ctx, deps, linked)
        failures_first = metric in ("dora.change_failure_rate", "dora.rework_rate")
        if failures_first:
            t = t.mutate(hl_failing=t.failed.cast("int8"))
        return _Listing(
            t,
            "deployments",
            DEPLOYMENT_COLUMNS,
            [ibis.desc("hl_failing"), "finished_at", "id"]
            if failures_first
            else ["finished_at", "id"],
            "failed deployments first, then by time" if failures_first else "by time",
            lambda t: t.failed,
            FAILURES["deployments"],
        )
    return (
        "survey answers are never listed one by one; `heatlens report --metric "
        f"{metric} --by question` shows the counts"
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


def with_failure_causes(ctx: MetricContext, d: Any, deps: Any, linked: Any) -> Any:
    """Deployments `d` (with `id`), each with why it failed: the incidents linked to it and the
    rule of each link, the rollback or hotfix that remediated it (`kind:id`), and `failed`.
    `deps` are the production deployments the rules read."""
    found = linked.filter(linked.linked_deployment.notnull())
    per = found.group_by("linked_deployment").aggregate(
        incidents=found.incident_id.collect(), rules=found.rule.collect()
    )
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


def _deployments_with_failures(ctx: MetricContext, deps: Any, linked: Any) -> Any:
    """The period's deployments, each with why it failed (`with_failure_causes`)."""
    return with_failure_causes(ctx, ctx.bucketed(deps, "finished_at"), deps, linked)


def _usage_with_id(ctx: MetricContext) -> Any:
    """The engine's resolved usage columns with `bot`, each record's id to list it by, and its
    run and attempt."""
    return with_bot(ctx, ctx.frame.usage().select("id", "run", "attempt", *USAGE_COLUMNS))


@dataclass
class ServiceActivity:
    """One service's deployments (every result and environment) and incidents in a range."""

    deployments: list[dict[str, Any]]
    deployments_total: int
    incidents: list[dict[str, Any]]
    incidents_total: int


def service_activity(
    tables: Tables,
    settings: Settings,
    service: str,
    start: date,
    end: date,
    *,
    limit: int = 200,
    now: datetime | None = None,
) -> ServiceActivity:
    """The deployments of `service` finished in [start, end) — newest first, with their result,
    environment and, for the production ones the metrics count, whether they failed and why —
    and the incidents opened in it, with their time to restore and the deployment linked."""
    frame = Frame.load(tables, settings)
    ctx = MetricContext(
        frame, periods("all", start, end, frame.tz), "all", (), now or datetime.now()
    )
    deps = frame.dora_deployments()
    incidents = frame.incidents()
    linked = links(incidents, deps, settings.link_window)
    d = frame.table("deployment")
    d = d.filter((d.service == service) & ctx.in_range(d.finished_at))
    counted = deps.select(p_id=deps.id)
    d = d.left_join(counted, d.id == counted.p_id)
    d = d.mutate(counted=d.p_id.notnull()).drop("p_id")
    d = with_failure_causes(ctx, d, deps, linked)
    d = d.mutate(failed=d.failed & d.counted)
    columns = [
        "id",
        "finished_at",
        "environment",
        "result",
        "kind",
        "commit_sha",
        "counted",
        "failed",
        "incidents",
        "remediated_by",
    ]
    found = d.order_by([ibis.desc("finished_at"), ibis.desc("id")]).select(*columns)
    i = incidents.filter((incidents.service == service) & ctx.in_range(incidents.opened_at))
    i = i.join(linked, i.id == linked.incident_id)
    i = i.mutate(hours=hours_between(i.resolved_at, i.opened_at))
    shown = ["id", "opened_at", "resolved_at", "severity", "hours", "linked_deployment", "rule"]
    opened = i.order_by([ibis.desc("opened_at"), ibis.desc("id")]).select(*shown)
    return ServiceActivity(
        found.limit(limit).to_pyarrow().to_pylist(),
        _count(d),
        opened.limit(limit).to_pyarrow().to_pylist(),
        _count(i),
    )
