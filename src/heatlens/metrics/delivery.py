"""DORA metrics and time to first deploy (DESIGN §4): deployments, changes and incidents.

A *deployment* here is a successful production deployment. Deployment metrics count for the
deployment's team and service; restore and recovery times for the incident's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ibis
import pyarrow as pa

from heatlens.metrics.batch import Batch, Query, Rows
from heatlens.metrics.catalog import Metric
from heatlens.metrics.context import MetricContext, Stat, Stats
from heatlens.metrics.frame import UTC_TS, memtable
from heatlens.metrics.intervals import proportion_ci
from heatlens.metrics.linking import (
    hours_between,
    links,
    remediations,
    shipped,
)
from heatlens.metrics.model import DELIVERY, INCIDENTS, LEAD_TIME, LINKS
from heatlens.metrics.periods import Period
from heatlens.metrics.quantiles import add_quantiles

DEPLOY_KEYS = ("team", "group", "service", "environment")
INCIDENT_KEYS = ("team", "group", "service")


def _warn_in_range(batch: Batch, code: str, message: str, rows: Any, at: str) -> None:
    """The warning `code` counts `rows` whose `at` lies in the report's range."""
    batch.warn(code, message, rows.filter(batch.ctx.in_range(rows[at])))


def _nonnegative_quantiles(
    batch: Batch,
    obs: Any,
    column: str,
    at: str,
    keys: tuple[str, ...],
    warning: tuple[str, str],
    handle: Callable[[dict[float, Stats]], None],
    qs: tuple[float, ...] = (0.5,),
) -> None:
    """Quantiles of `column` per period of `at` and segment; negative values are dropped and
    counted (those in the range) in `warning` = (code, message)."""
    ctx = batch.ctx
    _warn_in_range(batch, *warning, obs.filter(obs[column] < 0), at)
    kept = ctx.bucketed(obs.filter(obs[column] >= 0), at)
    add_quantiles(batch, kept, [k for k in ctx.by if k in keys], column, qs, handle)


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


def delivery_stats(
    ctx: MetricContext, metrics: list[Metric], query: Query | None = None
) -> dict[str, Stats]:
    """Stats of the DORA metrics (and time to first deploy) requested, keyed by metric id:
    every part and warning count built as an Ibis expression first, then run as one query
    (`Batch`; given a shared `query`, the stats are filled when its owner runs it)."""
    ids = {m.id for m in metrics}
    deps, incidents = deployments(ctx), counted_incidents(ctx)
    out: dict[str, Stats] = {}
    batch = Batch(ctx, [k for k in ctx.by if k in DEPLOY_KEYS], query)

    def one(metric: str) -> Callable[[dict[float, Stats]], None]:
        return lambda found: out.__setitem__(metric, found[0.5])

    need_links = ids & {CFR, "dora.recovery_time_p50"}
    linked = incident_links(ctx) if need_links else None
    if linked is not None:
        _warn_links(batch, incidents, deps, linked)
    if ids & {*DEPLOYMENT_METRICS, "dora.lead_time_p50", "dora.lead_time_p90"}:
        _warn_excluded(batch)
        _warn_repeated(batch, deps)
    if ids & set(DEPLOYMENT_METRICS):
        _deployment_stats(batch, ids, deps, incidents, linked, out)
    lead = [m for m in metrics if m.id.startswith("dora.lead_time_")]
    if lead:

        def lead_times(found: dict[float, Stats]) -> None:
            for m in lead:
                out[m.id] = found[m.q or 0.5]

        _lead_time(batch, deps, tuple(m.q or 0.5 for m in lead), lead_times)
    if "dora.recovery_time_p50" in ids and linked is not None:
        _recovery(batch, deps, incidents, linked, one("dora.recovery_time_p50"))
    if "dora.time_to_restore_p50" in ids:
        _nonnegative_quantiles(
            batch,
            restore_times(incidents),
            "hours",
            "resolved_at",
            INCIDENT_KEYS,
            (
                "negative_time_to_restore",
                "incidents resolved before they opened were dropped (check `resolved_at`)",
            ),
            one("dora.time_to_restore_p50"),
        )
    if "dora.open_incidents" in ids:
        _open_incidents(batch, incidents, out)
    if "efficiency.time_to_first_deploy" in ids:
        _time_to_first_deploy(batch, deps, one("efficiency.time_to_first_deploy"))
    if "efficiency.services_awaiting_first_deploy" in ids:
        _awaiting(batch, deps, out)
    batch.run()
    return out


def _warn_links(batch: Batch, incidents: Any, deps: Any, linked: Any) -> None:
    """Unlinked incidents, explicit links across services, root causes deployed only later:
    three FILTERed counts of the incidents opened in the range, with their links."""
    joined = incidents.join(linked, incidents.id == linked.incident_id)
    joined = joined.filter(batch.ctx.in_range(joined.opened_at))
    unlinked = joined.linked_deployment.isnull() & (
        joined.cause.isnull() | (joined.cause != "external")
    )
    late = (
        joined.linked_deployment.isnull()
        & joined.deployment_id.isnull()
        & joined.root_cause_sha.notnull()
    )
    batch.warn_each(
        joined,
        [
            (
                "unlinked_incidents",
                "incidents not linked to any deployment (give them `deployment_id` or "
                "`root_cause_sha`)",
                unlinked,
            ),
            (
                "cross_service_links",
                "incidents whose `deployment_id` names another service's deployment (the link "
                "holds; check the incident's `service`)",
                joined.cross_service,
            ),
            (
                "root_cause_not_yet_deployed",
                "incidents whose `root_cause_sha` no deployment had shipped by `opened_at` were "
                "left unlinked",
                late,
            ),
        ],
    )


def _warn_excluded(batch: Batch) -> None:
    """Successful deployments to environments that `production_environments` does not match."""
    ctx = batch.ctx
    if ctx.quiet:
        return
    d = ctx.frame.excluded_deployments()
    d = d.filter(ctx.in_range(d.finished_at))
    rows = d.group_by(env=d.environment.lower()).aggregate(n=d.count())

    def warn(found: Rows) -> None:
        total = sum(int(r["n"]) for r in found)
        top = sorted(found, key=lambda r: (-int(r["n"]), str(r["env"])))[:3]
        names = ", ".join(f"{r['env']} ({int(r['n'])})" for r in top)
        ctx.warn(
            "excluded_environments",
            f"successful deployments to environments that are not production were left out "
            f"(most: {names}); widen `production_environments` to count them",
            total,
        )

    batch.add(rows, ("n",), warn, label="env")


def _warn_repeated(batch: Batch, deps: Any) -> None:
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
    _warn_in_range(
        batch,
        "repeated_deployments",
        "deployments of a `commit_sha` the service had already deployed (not rollbacks) count "
        "again in deployment frequency; set `environment` per region or `kind`",
        again,
        "finished_at",
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
    batch: Batch, ids: set[str], deps: Any, incidents: Any, linked: Any, out: dict[str, Stats]
) -> None:
    ctx = batch.ctx
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
    wanted = [m for m in DEPLOYMENT_METRICS if m in ids]
    for m in wanted:
        out[m] = {}

    def stats(found: Rows) -> None:
        silent = 0
        for r in found:
            key = (r["period"], ctx.cell(r))
            n = int(r["deployments"])
            if "dora.deployments" in ids:
                out["dora.deployments"][key] = Stat(n, n)
            if "dora.deployment_frequency" in ids:
                days = ctx.period_of(r["period"]).days
                out["dora.deployment_frequency"][key] = Stat(n / days, n)
            if CFR in ids and n:
                x = int(r["failed"])
                if int(r["signal"]):
                    out[CFR][key] = Stat(x / n, n, proportion_ci(x, n), x, n)
                else:
                    silent += 1
            known = int(r["known"])
            if "dora.rework_rate" in ids and known:
                x = int(r["rework"])
                out["dora.rework_rate"][key] = Stat(
                    x / known, known, proportion_ci(x, known), x, known
                )
        ctx.warn(
            "no_failure_signal",
            "change failure rate omitted where no incident is stored for the services and no "
            "deployment has a known `kind`: ingest incidents or set `kind` on deployments",
            silent,
        )

    batch.add(rows, list(aggs), stats)


def restore_times(incidents: Any) -> Any:
    """Resolved incidents with `hours` from `opened_at` to `resolved_at` (negatives included)."""
    i = incidents.filter(incidents.resolved_at.notnull())
    return i.mutate(hours=hours_between(i.resolved_at, i.opened_at))


def _open_incidents(batch: Batch, incidents: Any, out: dict[str, Stats]) -> None:
    """Per period and segment: incidents opened before the period's end and not resolved by it."""
    ctx = batch.ctx
    ends = _period_ends(ctx.spans)
    i = incidents.select("opened_at", "resolved_at", "team", "group", "service")
    j = i.join(
        ends,
        (i.opened_at < ends.p_end) & (i.resolved_at.isnull() | (i.resolved_at >= ends.p_end)),
    )
    keys = [k for k in ctx.by if k in INCIDENT_KEYS]
    rows = j.group_by([j.period, *(j[k] for k in keys)]).aggregate(n=j.count())
    _counts(batch, rows, "dora.open_incidents", out)


def _counts(batch: Batch, rows: Any, metric: str, out: dict[str, Stats]) -> None:
    """`rows` (period, keys, `n`) as the counts of `metric`."""

    def stats(found: Rows) -> None:
        ctx = batch.ctx
        out[metric] = {(r["period"], ctx.cell(r)): Stat(int(r["n"]), int(r["n"])) for r in found}

    batch.add(rows, ("n",), stats)


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


def _lead_time(
    batch: Batch,
    deps: Any,
    qs: tuple[float, ...],
    handle: Callable[[dict[float, Stats]], None],
) -> None:
    """Lead time quantiles; negatives dropped with a warning, as are deployments shipping
    nothing."""
    ctx = batch.ctx
    without = deps.filter(
        deps.commit_sha.isnull() & (deps.commits.isnull() | (deps.commits.length() == 0))
    )
    _warn_in_range(
        batch,
        "deployment_without_commits",
        "deployments with neither `commit_sha` nor `commits` ship no change",
        without,
        "finished_at",
    )
    if not ctx.quiet:
        s = shipped(deps.filter(ctx.in_range(deps.finished_at)))
        c = ctx.frame.table("change")
        batch.warn(
            "unknown_changes",
            "shipped shas (`commit_sha`, `commits`) with no `change` record have no lead time",
            s.anti_join(c, s.sha == c.id).select("sha").distinct(),
        )
    _nonnegative_quantiles(
        batch,
        ctx.kept("lead_time_pairs", LEAD_TIME, lambda: lead_time_pairs(ctx, deps)),
        "hours",
        "finished_at",
        DEPLOY_KEYS,
        (
            "negative_lead_time",
            "changes deployed before their start (`lead_time_start`: `committed_at` or "
            "`authored_at`) were dropped",
        ),
        handle,
        qs,
    )


def recovery_times(deps: Any, incidents: Any, linked: Any) -> Any:
    """Resolved linked incidents with the deployment and `hours` from it (negatives included)."""
    i = incidents.filter(incidents.resolved_at.notnull())
    i = i.join(linked, i.id == linked.incident_id)
    d = deps.select(d_id=deps.id, d_finished=deps.finished_at)
    i = i.join(d, i.linked_deployment == d.d_id)
    return i.mutate(hours=hours_between(i.resolved_at, i.d_finished))


def _recovery(
    batch: Batch,
    deps: Any,
    incidents: Any,
    linked: Any,
    handle: Callable[[dict[float, Stats]], None],
) -> None:
    _nonnegative_quantiles(
        batch,
        recovery_times(deps, incidents, linked),
        "hours",
        "resolved_at",
        INCIDENT_KEYS,
        (
            "negative_recovery_time",
            "incidents with `resolved_at` before their deployment's `finished_at` were dropped",
        ),
        handle,
    )


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


def _time_to_first_deploy(
    batch: Batch, deps: Any, handle: Callable[[dict[float, Stats]], None]
) -> None:
    ctx = batch.ctx
    _warn_in_range(
        batch,
        "created_before_history",
        "services with `created_at` before the first stored deployment have no time to first "
        "deploy (ingest their earlier deployments)",
        first_deployments(ctx, deps, older=True),
        "finished_at",
    )
    _nonnegative_quantiles(
        batch,
        first_deployments(ctx, deps),
        "days",
        "finished_at",
        INCIDENT_KEYS,
        (
            "negative_time_to_first_deploy",
            "services whose first production deployment precedes `created_at` were dropped",
        ),
        handle,
    )


def _awaiting(batch: Batch, deps: Any, out: dict[str, Stats]) -> None:
    """Per period: services (with `created_at`) created before its end and not deployed to
    production by then, by the service's registry team (a join of the registry's services with
    the periods and each service's first deployment)."""
    ctx = batch.ctx
    f = ctx.frame
    rows = [(sid, s) for sid, s in f.services.items() if s["created_at"] is not None]
    services = memtable(
        {
            "a_service": [sid for sid, _ in rows],
            "a_created": [s["created_at"] for _, s in rows],
            "a_team": [s["team"] for _, s in rows],
            "a_group": [f.group_of(s["team"]) if s["team"] else None for _, s in rows],
        },
        {
            "a_service": pa.string(),
            "a_created": UTC_TS,
            "a_team": pa.string(),
            "a_group": pa.string(),
        },
    )
    firsts = deps.group_by(f_service=deps.service).aggregate(f_first=deps.finished_at.min())
    j = services.cross_join(_period_ends(ctx.spans))
    j = j.filter(j.a_created < j.p_end)
    j = j.left_join(firsts, j.a_service == firsts.f_service)
    j = j.filter(j.f_first.isnull() | (j.f_first >= j.p_end))
    j = j.select("period", team=j.a_team, group=j.a_group, service=j.a_service)
    keys = [k for k in ctx.by if k in INCIDENT_KEYS]
    counted = j.group_by(["period", *keys]).aggregate(n=j.count())
    _counts(batch, counted, "efficiency.services_awaiting_first_deploy", out)
