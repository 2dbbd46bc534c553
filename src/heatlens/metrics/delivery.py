"""DORA metrics and time to first deploy (DESIGN §4): deployments, changes and incidents.

A *deployment* here is a successful production deployment. Deployment metrics count for the
deployment's team and service; restore and recovery times for the incident's.
"""

from __future__ import annotations

from typing import Any

import ibis

from heatlens.metrics.catalog import Metric
from heatlens.metrics.context import MetricContext, Stat, Stats
from heatlens.metrics.intervals import proportion_ci
from heatlens.metrics.linking import hours_between, links, shipped
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
    ctx.warn(*warning, _count_in_range(ctx, negative, negative[at]))
    kept = ctx.bucketed(obs.filter(obs[column] >= 0), at)
    return grouped_quantiles(ctx, kept, [k for k in ctx.by if k in keys], column, qs)


def delivery_stats(ctx: MetricContext, metrics: list[Metric]) -> dict[str, Stats]:
    """Stats of the DORA metrics (and time to first deploy) requested, keyed by metric id."""
    f = ctx.frame
    ids = {m.id for m in metrics}
    deps = ctx.memo("deployments", f.dora_deployments)
    incidents = ctx.memo("incidents", f.incidents)
    out: dict[str, Stats] = {}
    need_links = ids & {"dora.change_failure_rate", "dora.recovery_time_p50"}
    linked = (
        ctx.memo("links", lambda: links(incidents, deps, f.settings.link_window))
        if need_links
        else None
    )
    if linked is not None:
        unlinked = incidents.join(linked, incidents.id == linked.incident_id)
        unlinked = unlinked.filter(
            unlinked.linked_deployment.isnull()
            & (unlinked.cause.isnull() | (unlinked.cause != "external"))
        )
        ctx.warn(
            "unlinked_incidents",
            "incidents not linked to any deployment",
            _count_in_range(ctx, unlinked, unlinked.opened_at),
        )
    if ids & {
        "dora.deployments",
        "dora.deployment_frequency",
        "dora.change_failure_rate",
        "dora.rework_rate",
    }:
        out.update(_deployment_stats(ctx, ids, deps, linked))
    lead = [m for m in metrics if m.id.startswith("dora.lead_time_")]
    if lead:
        found = _lead_time(ctx, deps, tuple(m.q or 0.5 for m in lead))
        for m in lead:
            out[m.id] = found[m.q or 0.5]
    if "dora.recovery_time_p50" in ids and linked is not None:
        out["dora.recovery_time_p50"] = _recovery(ctx, deps, incidents, linked)
    if "dora.time_to_restore_p50" in ids:
        i = incidents.filter(incidents.resolved_at.notnull())
        i = ctx.bucketed(i.mutate(hours=hours_between(i.resolved_at, i.opened_at)), "resolved_at")
        keys = [k for k in ctx.by if k in INCIDENT_KEYS]
        out["dora.time_to_restore_p50"] = grouped_quantiles(ctx, i, keys, "hours")[0.5]
    if "efficiency.time_to_first_deploy" in ids:
        out["efficiency.time_to_first_deploy"] = _time_to_first_deploy(ctx, deps)
    return out


def _deployment_stats(
    ctx: MetricContext, ids: set[str], deps: Any, linked: Any
) -> dict[str, Stats]:
    obs = ctx.bucketed(deps, "finished_at")
    keys = [k for k in ctx.by if k in DEPLOY_KEYS]
    aggs: dict[str, Any] = {
        "deployments": obs.count(),
        "rework": obs.count(where=obs.kind.isin(["hotfix", "rollback"])),
    }
    if linked is not None:
        failed = (
            linked.filter(linked.linked_deployment.notnull())
            .select(failed_id=linked.linked_deployment)
            .distinct()
        )
        obs = obs.left_join(failed, obs.id == failed.failed_id)
        aggs = {
            "deployments": obs.count(),
            "rework": obs.count(where=obs.kind.isin(["hotfix", "rollback"])),
            "failed": obs.count(where=obs.failed_id.notnull()),
        }
    rows = obs.group_by([obs.period, *(obs[k] for k in keys)]).aggregate(**aggs)
    out: dict[str, Stats] = {
        m: {}
        for m in ids
        if m
        in (
            "dora.deployments",
            "dora.deployment_frequency",
            "dora.change_failure_rate",
            "dora.rework_rate",
        )
    }
    for r in rows.to_pyarrow().to_pylist():
        key = (r["period"], ctx.cell(r))
        n = int(r["deployments"])
        if "dora.deployments" in out:
            out["dora.deployments"][key] = Stat(n, n)
        if "dora.deployment_frequency" in out:
            out["dora.deployment_frequency"][key] = Stat(n / ctx.period_of(r["period"]).days, n)
        for mid, col in (("dora.change_failure_rate", "failed"), ("dora.rework_rate", "rework")):
            if mid in out and n:
                x = int(r[col])
                out[mid][key] = Stat(x / n, n, proportion_ci(x, n), x, n)
    return out


def lead_time_pairs(ctx: MetricContext, deps: Any) -> Any:
    """Per (change, service): the first deployment of that service shipping the change, with
    `change`, `committed_at`, the deployment's columns and `hours` (negatives included)."""
    s = shipped(deps)
    c = ctx.frame.table("change")
    c = c.select(c_id=c.id, committed_at=c.committed_at)
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
        "deployments with neither commit_sha nor commits ship no change",
        _count_in_range(ctx, without, without.finished_at),
    )
    return _nonnegative_quantiles(
        ctx,
        lead_time_pairs(ctx, deps),
        "hours",
        "finished_at",
        DEPLOY_KEYS,
        ("negative_lead_time", "changes deployed before their commit time were dropped"),
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
            "incidents resolved before their deployment finished were dropped",
        ),
    )[0.5]


def first_deployments(ctx: MetricContext, deps: Any) -> Any:
    """Services with `created_at` and their first deployment, with `days` (negatives included)."""
    svc = ctx.frame.table("service")
    svc = svc.filter(svc.created_at.notnull()).select(s_id=svc.id, s_created=svc.created_at)
    ranked = deps.mutate(
        hl_rank=ibis.row_number().over(
            ibis.window(group_by=deps.service, order_by=[deps.finished_at, deps.id])
        )
    )
    first = ranked.filter(ranked.hl_rank == 0)
    obs = first.join(svc, first.service == svc.s_id)
    return obs.mutate(days=hours_between(obs.finished_at, obs.s_created) / 24.0)


def _time_to_first_deploy(ctx: MetricContext, deps: Any) -> Stats:
    return _nonnegative_quantiles(
        ctx,
        first_deployments(ctx, deps),
        "days",
        "finished_at",
        INCIDENT_KEYS,
        (
            "negative_time_to_first_deploy",
            "services whose first production deployment precedes created_at were dropped",
        ),
    )[0.5]
