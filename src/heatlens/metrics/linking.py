"""Incident → deployment links (DESIGN §4), over all stored records.

A rule applies when its field is present, and then it decides alone:
1. `deployment_id` links when it names a successful production deployment, else nothing (v2: a
   link to another service's deployment holds, and is counted as a cross-service link);
2. `root_cause_sha` links to the first deployment containing that sha (of the incident's service
   when it has one) among those finished by the incident's `opened_at`, else nothing (v2);
3. only when both are absent, `cause` is not `external` and `service` is set: the deployment of
   that service with the largest (finished_at, id) within the window before `opened_at` — never a
   rollback (v2: it restores a known version).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import ibis


def shipped(deployments: Any) -> Any:
    """(id, service, finished_at, sha) for every commit a deployment ships: its `commit_sha` and
    its `commits` list; never inferred."""
    by_sha = deployments.filter(deployments.commit_sha.notnull()).select(
        "id", "service", "finished_at", sha=deployments.commit_sha
    )
    listed = deployments.filter(deployments.commits.notnull())
    listed = listed.select("id", "service", "finished_at", sha=listed.commits.unnest())
    both = by_sha.union(listed.filter(listed.sha.notnull()), distinct=True)
    return both


def hours_between(later: Any, earlier: Any) -> Any:
    """Exact hours from `earlier` to `later` (microsecond resolution on every backend)."""
    return later.delta(earlier, unit="microsecond").cast("float64") / 3_600_000_000.0


def _first(t: Any, key: str, order: list[Any]) -> Any:
    ranked = t.mutate(hl_rank=ibis.row_number().over(ibis.window(group_by=t[key], order_by=order)))
    return ranked.filter(ranked.hl_rank == 0).drop("hl_rank")


def _root_cause_matches(i: Any, deployments: Any) -> Any:
    """Incidents with a `root_cause_sha` (and no `deployment_id`) joined with every deployment
    shipping that sha — of the incident's service when it has one."""
    s = shipped(deployments).rename(s_id="id", s_service="service", s_finished="finished_at")
    by_sha = i.filter(i.deployment_id.isnull() & i.root_cause_sha.notnull())
    return by_sha.join(
        s,
        (by_sha.root_cause_sha == s.sha)
        & (by_sha.service.isnull() | (by_sha.service == s.s_service)),
    )


def links(incidents: Any, deployments: Any, window: timedelta | None) -> Any:
    """One row per incident: `incident_id`, `linked_deployment` (null when unlinked), `rule`,
    and `cross_service` (an explicit `deployment_id` naming another service's deployment)."""
    i = incidents.select("id", "opened_at", "service", "deployment_id", "root_cause_sha", "cause")
    d = deployments.select(
        d_id=deployments.id,
        d_service=deployments.service,
        d_finished=deployments.finished_at,
        d_kind=deployments.kind,
    )

    by_id = i.filter(i.deployment_id.notnull())
    by_id = by_id.join(d, by_id.deployment_id == d.d_id).select(
        incident_id=by_id.id,
        linked=d.d_id,
        rule=ibis.literal("deployment_id"),
        cross=(by_id.service.notnull() & (by_id.service != d.d_service)).fill_null(False),
    )

    by_sha = _root_cause_matches(i, deployments)
    by_sha = by_sha.filter(by_sha.s_finished <= by_sha.opened_at)
    by_sha = _first(by_sha, "id", [by_sha.s_finished, by_sha.s_id]).select(
        incident_id="id",
        linked="s_id",
        rule=ibis.literal("root_cause_sha"),
        cross=ibis.literal(False),
    )

    near = i.filter(
        i.deployment_id.isnull()
        & i.root_cause_sha.isnull()
        & (i.cause.isnull() | (i.cause != "external"))
        & i.service.notnull()
    )
    cond = (
        (near.service == d.d_service)
        & (d.d_finished <= near.opened_at)
        & (d.d_kind.isnull() | (d.d_kind != "rollback"))
    )
    if window is not None:
        cond &= near.opened_at <= d.d_finished + ibis.interval(seconds=int(window.total_seconds()))
    near = near.join(d, cond)
    near = _first(near, "id", [ibis.desc(near.d_finished), ibis.desc(near.d_id)]).select(
        incident_id="id", linked="d_id", rule=ibis.literal("window"), cross=ibis.literal(False)
    )

    found = by_id.union(by_sha).union(near)
    out = i.left_join(found, i.id == found.incident_id)
    return out.select(
        incident_id=out.id,
        linked_deployment=out.linked,
        rule=ibis.coalesce(out.rule, ibis.literal("unlinked")),
        cross_service=out.cross.fill_null(False),
    )


def remediations(deployments: Any) -> Any:
    """(`remediated`, `remediated_by`, `remediation_kind`): each rollback or hotfix remediates the
    latest earlier deployment of its service (largest (finished_at, id)) that is not itself a
    rollback (DESIGN §4 v2, `failure_from_remediation`).

    Linear in deployments: a running count of the non-rollbacks per service numbers them, and a
    remediation points at the number of non-rollbacks strictly before it — one equality join.
    """
    d = deployments.select("id", "service", "finished_at", "kind")
    candidate = d.kind.isnull() | (d.kind != "rollback")
    w = ibis.cumulative_window(group_by=d.service, order_by=[d.finished_at, d.id])
    d = d.mutate(hl_cand=candidate, hl_seq=ibis.ifelse(candidate, 1, 0).sum().over(w))
    targets = d.filter(d.hl_cand).select(t_id=d.id, t_service=d.service, t_seq=d.hl_seq)
    fixes = d.filter(d.kind.isin(["rollback", "hotfix"]))
    fixes = fixes.mutate(hl_before=fixes.hl_seq - ibis.ifelse(fixes.hl_cand, 1, 0))
    joined = fixes.join(
        targets, (fixes.service == targets.t_service) & (fixes.hl_before == targets.t_seq)
    )
    return joined.select(
        remediated=joined.t_id, remediated_by=joined.id, remediation_kind=joined.kind
    )
