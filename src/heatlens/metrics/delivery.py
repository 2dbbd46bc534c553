"""DORA metrics and time to first deploy (DESIGN §4): deployments, changes and incidents.

A *deployment* here is a successful production deployment. Deployment metrics count for the
deployment's team and service; restore and recovery times for the incident's.
"""

from __future__ import annotations

from typing import Any

import ibis
import pyarrow as pa

from heatlens.metrics.catalog import Metric
from heatlens.metrics.context import MetricContext, Stat, Stats
from heatlens.metrics.intervals import proportion_ci
from heatlens.metrics.linking import (
    hours_between,
    links,
    remediations,
    shipped,
)
from heatlens.metrics.model import DELIVERY, INCIDENTS, LEAD_TIME, LINKS
from heatlens.metrics.periods import Period
from heatlens.metrics.quantiles import grouped_quantiles

DEPLOY_KEYS = ("team", "group", "service", "environment")
INCIDENT_KEYS = ("team", "group", "service")


def _count_in_range(ctx: MetricContext, t: Any, ts: Any) -> int:
    return int(t.filter(ctx.in_range(ts)).count().to_pyarrow().as_py())


def _nonnegative_quantiles(
    ctx: MetricContext,
    obs: Any,
    column: str,
    at: str,
    keys: tuple[str, ...],
    warning: tuple[str, str],
    qs: tuple[float, ...] = (0.5,),
) -> dict[float, Stats]:
    """Quantiles of `column` per period of `at` and segment; negative values are dropped and
    counted (those in the range) in `warning` = (code, message)."""
    negative = obs.filter(obs[column] < 0)
    ctx.warn(*warning, lambda: _count_in_range(ctx, negative, negative[at]))
    kept = ctx.bucketed(obs.filter(obs[column] >= 0), at)
    return grouped_quantiles(ctx, kept, [k for k in ctx.by if k in keys], column, qs)


CFR = "dora.change_failure_rate"
DEPLOYMENT_METRICS = ("dora.deployments", "dora.deployment_frequency", CFR, "dora.rework_rate")


def incident_links(ctx: MetricContext) -> Any:
    """The incident → deployment links of this report (computed once)."""
    f = ctx.frame
    deps, incidents = deployments(ctx), counted_incidents(ctx)
    return ctx.kept("links", LINKS, lambda: links(incidents, deps, f.settings.link_window))


def deployments(ctx: MetricContext) -> Any:
    """Successful production deployments with team and group (the model's, when kept)."""
    return ctx.kept("deployments", DELIVERY, ctx.frame.dora_deployments)


def counted_incidents(ctx: MetricContext) -> Any:
    """Incidents that count, with team and group (the model's, when kept)."""
    return ctx.kept("incidents", INCIDENTS, ctx.frame.incidents)


def failed_deployments(ctx: MetricContext, deps: Any, linked: Any) -> Any:
    """(`failed_id`): deployments with a linked incident, or (`failure_from_remediation`)
    remediated by a later rollback or hotfix of their service."""
    failed = linked.filter(linked.linked_deployment.notnull()).select(
        failed_id=linked.linked_deployment
    )
    if ctx.settings.failure_from_remediation:
        fixed = remediations(deps)
        failed = failed.union(fixed.select(failed_id=fixed.remediated))
    return failed.distinct()


def delivery_stats(ctx: MetricContext, metrics: list[Metric]) -> dict[str, Stats]:
    """Stats of the DORA metrics (and time to first deploy) requested, keyed by metric id."""
    ids = {m.id for m in metrics}
    deps, incidents = deployments(ctx), counted_incidents(ctx)
    out: dict[str, Stats] = {}
    need_links = ids & {CFR, "dora.recovery_time_p50"}
    linked = incident_links(ctx) if need_links else None
    if linked is not None:
        _warn_links(ctx, incidents, deps, linked)
    if ids & {*DEPLOYMENT_METRICS, "dora.lead_time_p50", "dora.lead_time_p90"}:
        _warn_excluded(ctx)
        _warn_repeated(ctx, deps)
    if ids & set(DEPLOYMENT_METRICS):
        out.update(_deployment_stats(ctx, ids, deps, incidents, linked))
    lead = [m for m in metrics if m.id.startswith("dora.lead_time_")]
    if lead:
        found = _lead_time(ctx, deps, tuple(m.q or 0.5 for m in lead))
        for m in lead:
            out[m.id] = found[m.q or 0.5]
    if "dora.recovery_time_p50" in ids and linked is not None:
        out["dora.recovery_time_p50"] = _recovery(ctx, deps, incidents, linked)
    if "dora.time_to_restore_p50" in ids:
        out["dora.time_to_restore_p50"] = _nonnegative_quantiles(
            ctx,
            restore_times(incidents),
            "hours",
            "resolved_at",
            INCIDENT_KEYS,
            (
                "negative_time_to_restore",
                "incidents resolved before they opened were dropped (check `resolved_at`)",
            ),
        )[0.5]
    if "dora.open_incidents" in ids:
        out["dora.open_incidents"] = _open_incidents(ctx, incidents)
    if "efficiency.time_to_first_deploy" in ids:
        out["efficiency.time_to_first_deploy"] = _time_to_first_deploy(ctx, deps)
    if "efficiency.services_awaiting_first_deploy" in ids:
        out["efficiency.services_awaiting_first_deploy"] = _awaiting(ctx, deps)
    return out


def _warn_links(ctx: MetricContext, incidents: Any, deps: Any, linked: Any) -> None:
    """Unlinked incidents, explicit links across services, root causes deployed only later."""
    joined = incidents.join(linked, incidents.id == linked.incident_id)
    unlinked = joined.filter(
        joined.linked_deployment.isnull() & (joined.cause.isnull() | (joined.cause != "external"))
    )
    ctx.warn(
        "unlinked_incidents",
        "incidents not linked to any deployment (give them `deployment_id` or `root_cause_sha`)",
        lambda: _count_in_range(ctx, unlinked, unlinked.opened_at),
    )
    cross = joined.filter(joined.cross_service)
    ctx.warn(
        "cross_service_links",
        "incidents whose `deployment_id` names another service's deployment (the link holds; "
        "check the incident's `service`)",
        lambda: _count_in_range(ctx, cross, cross.opened_at),
    )
    late = joined.filter(
        joined.linked_deployment.isnull()
        & joined.deployment_id.isnull()
        & joined.root_cause_sha.notnull()
    )
    ctx.warn(
        "root_cause_not_yet_deployed",
        "incidents whose `root_cause_sha` no deployment had shipped by `opened_at` were left "
        "unlinked",
        lambda: _count_in_range(ctx, late, late.opened_at),
    )


def _warn_excluded(ctx: MetricContext) -> None:
    """Successful deployments to environments that `production_environments` does not match."""
    if ctx.quiet:
        return
    d = ctx.frame.excluded_deployments()
    d = d.filter(ctx.in_range(d.finished_at))
    env = d.environment.lower()
    rows = d.group_by(env=env).aggregate(n=d.count()).to_pyarrow().to_pylist()
    total = sum(int(r["n"]) for r in rows)
    top = sorted(rows, key=lambda r: (-int(r["n"]), str(r["env"])))[:3]
    names = ", ".join(f"{r['env']} ({r['n']})" for r in top)
    ctx.warn(
        "excluded_environments",
        f"successful deployments to environments that are not production were left out "
        f"(most: {names}); widen `production_environments` to count them",
        total,
    )


def _warn_repeated(ctx: MetricContext, deps: Any) -> None:
    """Deployments (not rollbacks) of a `commit_sha` their service had already deployed to the
    same environment (a second region is no repeat)."""
    d = deps.filter(deps.commit_sha.notnull())
    # the earliest (finished_at, id) per (service, sha) is not a repeat; every later one is
    ranked = d.mutate(
        hl_rank=ibis.row_number().over(
            ibis.window(
                group_by=[d.service, d.environment, d.commit_sha], order_by=[d.finished_at, d.id]
            )
        )
    )
    again = ranked.filter(
        (ranked.hl_rank > 0) & (ranked.kind.isnull() | (ranked.kind != "rollback"))
    )
    ctx.warn(
        "repeated_deployments",
        "deployments of a `commit_sha` the service had already deployed (not rollbacks) count "
        "again in deployment frequency; set `environment` per region or `kind`",
        lambda: _count_in_range(ctx, again, again.finished_at),
    )


def _signal_services(ctx: MetricContext, deps: Any, incidents: Any, linked: Any) -> Any:
    """(`sig_service`): services with a failure signal, ever — an incident naming the service
    or linked to one of its deployments, or a deployment of known `kind` (DESIGN §4 v2)."""
    named = incidents.filter(incidents.service.notnull()).select(sig_service=incidents.service)
    hit = linked.filter(linked.linked_deployment.notnull())
    hit = hit.join(deps, hit.linked_deployment == deps.id).select(sig_service=deps.service)
    known = deps.filter(deps.kind.notnull()).select(sig_service=deps.service)
    return named.union(hit).union(known).distinct()


def _deployment_stats(
    ctx: MetricContext, ids: set[str], deps: Any, incidents: Any, linked: Any
) -> dict[str, Stats]:
    obs = ctx.bucketed(deps, "finished_at")
    keys = [k for k in ctx.by if k in DEPLOY_KEYS]
    rework = obs.kind.isin(["hotfix", "rollback"])
    aggs: dict[str, Any] = {
        "deployments": obs.count(),
        "rework": obs.count(where=rework),
        "known": obs.count(where=obs.kind.notnull()),
    }
    if linked is not None:
        failed = failed_deployments(ctx, deps, linked)
        obs = obs.left_join(failed, obs.id == failed.failed_id)
        signalled = _signal_services(ctx, deps, incidents, linked)
        obs = obs.left_join(signalled, obs.service == signalled.sig_service)
        aggs = {
            "deployments": obs.count(),
            "rework": obs.count(where=obs.kind.isin(["hotfix", "rollback"])),
            "known": obs.count(where=obs.kind.notnull()),
            "failed": obs.count(where=obs.failed_id.notnull()),
            "signal": obs.count(where=obs.sig_service.notnull()),
        }
    rows = obs.group_by([obs.period, *(obs[k] for k in keys)]).aggregate(**aggs)
    out: dict[str, Stats] = {m: {} for m in ids if m in DEPLOYMENT_METRICS}
    silent = 0
    for r in rows.to_pyarrow().to_pylist():
        key = (r["period"], ctx.cell(r))
        n = int(r["deployments"])
        if "dora.deployments" in out:
            out["dora.deployments"][key] = Stat(n, n)
        if "dora.deployment_frequency" in out:
            out["dora.deployment_frequency"][key] = Stat(n / ctx.period_of(r["period"]).days, n)
        if CFR in out and n:
            x = int(r["failed"])
            if int(r["signal"]):
                out[CFR][key] = Stat(x / n, n, proportion_ci(x, n), x, n)
            else:
                silent += 1
        known = int(r["known"])
        if "dora.rework_rate" in out and known:
            x = int(r["rework"])
            out["dora.rework_rate"][key] = Stat(x / known, known, proportion_ci(x, known), x, known)
    ctx.warn(
        "no_failure_signal",
        "change failure rate omitted where no incident is stored for the services and no "
        "deployment has a known `kind`: ingest incidents or set `kind` on deployments",
        silent,
    )
    return out


def restore_times(incidents: Any) -> Any:
    """Resolved incidents with `hours` from `opened_at` to `resolved_at` (negatives included)."""
    i = incidents.filter(incidents.resolved_at.notnull())
    return i.mutate(hours=hours_between(i.resolved_at, i.opened_at))


def _open_incidents(ctx: MetricContext, incidents: Any) -> Stats:
    """Per period and segment: incidents opened before the period's end and not resolved by it."""
    ends = _period_ends(ctx.spans)
    i = incidents.select("opened_at", "resolved_at", "team", "group", "service")
    j = i.join(
        ends,
        (i.opened_at < ends.p_end) & (i.resolved_at.isnull() | (i.resolved_at >= ends.p_end)),
    )
    keys = [k for k in ctx.by if k in INCIDENT_KEYS]
    rows = j.group_by([j.period, *(j[k] for k in keys)]).aggregate(n=j.count())
    stats: Stats = {}
    for r in rows.to_pyarrow().to_pylist():
        stats[(r["period"], ctx.cell(r))] = Stat(int(r["n"]), int(r["n"]))
    return stats


def _period_ends(spans: list[Period]) -> Any:
    return ibis.memtable(
        pa.table(
            {
                "period": pa.array([p.start for p in spans], pa.date32()),
                "p_end": pa.array([p.end_utc for p in spans], pa.timestamp("us", tz="UTC")),
            }
        )
    )


def lead_time_pairs(ctx: MetricContext, deps: Any) -> Any:
    """Per (change, service): the first deployment of that service shipping the change, with
    `change`, `committed_at`, the deployment's columns and `hours` (negatives included)."""
    s = shipped(deps)
    c = ctx.frame.table("change")
    start = c.committed_at
    if ctx.settings.lead_time_start == "authored":
        start = ibis.coalesce(c.authored_at, c.committed_at)
    # `committed_at` is where lead time starts: `authored_at` when `lead_time_start` says so
    c = c.select(c_id=c.id, committed_at=start)
    pairs = s.join(c, s.sha == c.c_id)
    ranked = pairs.mutate(
        hl_rank=ibis.row_number().over(
            ibis.window(group_by=[pairs.sha, pairs.service], order_by=[pairs.finished_at, pairs.id])
        )
    )
    first = ranked.filter(ranked.hl_rank == 0)
    first = first.select(
        dep_id=first.id,
        change=first.sha,
        committed_at=first.committed_at,
        hours=hours_between(first.finished_at, first.committed_at),
    )
    d = deps.select("id", "finished_at", "team", "group", "service", "environment")
    return first.join(d, first.dep_id == d.id)


def _lead_time(ctx: MetricContext, deps: Any, qs: tuple[float, ...]) -> dict[float, Stats]:
    """Lead time quantiles; negatives dropped with a warning, as are deployments shipping
    nothing."""
    without = deps.filter(
        deps.commit_sha.isnull() & (deps.commits.isnull() | (deps.commits.length() == 0))
    )
    ctx.warn(
        "deployment_without_commits",
        "deployments with neither `commit_sha` nor `commits` ship no change",
        lambda: _count_in_range(ctx, without, without.finished_at),
    )
    s = shipped(deps.filter(ctx.in_range(deps.finished_at)))
    c = ctx.frame.table("change")
    unknown = s.anti_join(c, s.sha == c.id).select("sha").distinct()
    ctx.warn(
        "unknown_changes",
        "shipped shas (`commit_sha`, `commits`) with no `change` record have no lead time",
        lambda: int(unknown.count().to_pyarrow().as_py()),
    )
    return _nonnegative_quantiles(
        ctx,
        ctx.kept("lead_time_pairs", LEAD_TIME, lambda: lead_time_pairs(ctx, deps)),
        "hours",
        "finished_at",
        DEPLOY_KEYS,
        (
            "negative_lead_time",
            "changes deployed before their start (`lead_time_start`: `committed_at` or "
            "`authored_at`) were dropped",
        ),
        qs,
    )


def recovery_times(deps: Any, incidents: Any, linked: Any) -> Any:
    """Resolved linked incidents with the deployment and `hours` from it (negatives included)."""
    i = incidents.filter(incidents.resolved_at.notnull())
    i = i.join(linked, i.id == linked.incident_id)
    d = deps.select(d_id=deps.id, d_finished=deps.finished_at)
    i = i.join(d, i.linked_deployment == d.d_id)
    return i.mutate(hours=hours_between(i.resolved_at, i.d_finished))


def _recovery(ctx: MetricContext, deps: Any, incidents: Any, linked: Any) -> Stats:
    return _nonnegative_quantiles(
        ctx,
        recovery_times(deps, incidents, linked),
        "hours",
        "resolved_at",
        INCIDENT_KEYS,
        (
            "negative_recovery_time",
            "incidents with `resolved_at` before their deployment's `finished_at` were dropped",
        ),
    )[0.5]


def history_start(ctx: MetricContext) -> Any:
    """The earliest `finished_at` of any stored deployment (where the delivery history starts)."""

    def build() -> Any:
        d = ctx.frame.table("deployment")
        return d.finished_at.min().to_pyarrow().as_py()

    return ctx.frame.shared("deployment_history", ("deployment",), build)


def first_deployments(ctx: MetricContext, deps: Any, *, older: bool = False) -> Any:
    """Services with `created_at` and their first deployment, with `days` (negatives included).

    Only services created on or after the first stored deployment: an older service's first
    stored deployment is not its first one (`older=True` gives those instead)."""
    svc = ctx.frame.table("service")
    svc = svc.filter(svc.created_at.notnull())
    start = history_start(ctx)
    if start is not None:
        before = svc.created_at < ctx.frame.literal_ts(start)
        svc = svc.filter(before if older else ~before)
    elif older:
        svc = svc.filter(ibis.literal(False))
    svc = svc.select(s_id=svc.id, s_created=svc.created_at)
    ranked = deps.mutate(
        hl_rank=ibis.row_number().over(
            ibis.window(group_by=deps.service, order_by=[deps.finished_at, deps.id])
        )
    )
    first = ranked.filter(ranked.hl_rank == 0)
    obs = first.join(svc, first.service == svc.s_id)
    return obs.mutate(days=hours_between(obs.finished_at, obs.s_created) / 24.0)


def _time_to_first_deploy(ctx: MetricContext, deps: Any) -> Stats:
    older = first_deployments(ctx, deps, older=True)
    ctx.warn(
        "created_before_history",
        "services with `created_at` before the first stored deployment have no time to first "
        "deploy (ingest their earlier deployments)",
        lambda: _count_in_range(ctx, older, older.finished_at),
    )
    return _nonnegative_quantiles(
        ctx,
        first_deployments(ctx, deps),
        "days",
        "finished_at",
        INCIDENT_KEYS,
        (
            "negative_time_to_first_deploy",
            "services whose first production deployment precedes `created_at` were dropped",
        ),
    )[0.5]


def _awaiting(ctx: MetricContext, deps: Any) -> Stats:
    """Per period: services (with `created_at`) created before its end and not deployed to
    production by then, by the service's registry team."""
    firsts = deps.group_by("service").aggregate(first=deps.finished_at.min()).to_pyarrow()
    first = dict(zip(*(firsts.column(c).to_pylist() for c in ("service", "first")), strict=True))
    f = ctx.frame
    stats: Stats = {}
    for p in ctx.spans:
        for sid, s in f.services.items():
            created = s["created_at"]
            if created is None or not created < p.end_utc:
                continue
            deployed = first.get(sid)
            if deployed is not None and deployed < p.end_utc:
                continue
            team = s["team"]
            row = {"team": team, "group": f.group_of(team) if team else None, "service": sid}
            key = (p.start, ctx.cell(row))
            prior = stats.get(key)
            n = (int(prior.value or 0) if prior else 0) + 1
            stats[key] = Stat(n, n)
    return stats
