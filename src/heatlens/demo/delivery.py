"""Delivery history for the demo: deployments, the changes they ship and the incidents they cause.

The platform's effect is built in so that an impact analysis can find it: once a service's owning
team has adopted `ci` and then `cd`, it deploys more often, in smaller batches, with shorter lead
times and fewer failures — on top of a mild improvement of the whole organisation over time. Teams
that never adopt `cd` are the comparison group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from heatlens.demo.organisation import (
    DAY,
    HOUR,
    HOURS_P,
    US,
    Org,
    numbered,
    strings,
    table,
    timestamps,
)

# multipliers of (deploy frequency, lead time, change failure rate) once a team uses ci, cd
CI_EFFECT = (1.3, 0.75, 0.8)
CD_EFFECT = (2.6, 0.3, 0.45)
# relative change of the same three over the window, for everyone
TREND = (0.2, -0.2, -0.2)
LEAD_TIME_HOURS = 60.0  # median before any platform help
MINUTE = 60 * US
PLANNED, HOTFIX, ROLLBACK = 0, 1, 2
GOOD, STAGING, FAILED = 0, 1, 2


@dataclass
class _Deployments:
    """Deployments sorted by service and time (remediations are appended at the end)."""

    svc: np.ndarray
    fin: np.ndarray  # µs
    started: np.ndarray  # µs
    status: np.ndarray  # GOOD (successful production), STAGING or FAILED (production)
    kind: np.ndarray
    head: np.ndarray  # index of the change it deploys as `commit_sha`, or -1
    listed: np.ndarray  # whether it lists the commits it ships


def delivery_tables(org: Org, rng: np.random.Generator) -> dict[str, pa.Table]:
    """The deployment, change and incident records of `org`."""
    team = org.svc_team
    ci_at = org.day_start(org.adopt[team, org.cap("ci")])
    cd_at = org.day_start(org.adopt[team, org.cap("cd")])
    svc, fin, first = _planned(org, rng, ci_at, cd_at)
    n = svc.size
    ci_on, cd_on = fin >= ci_at[svc], fin >= cd_at[svc]
    when = (fin - org.start) / (org.days * DAY)  # 0 → 1 over the window, for the trend

    staging = (rng.random(n) < 0.12) & ~first
    failed = ~staging & ~first & (rng.random(n) < np.where(cd_on, 0.02, 0.05))
    status = np.where(staging, STAGING, np.where(failed, FAILED, GOOD))
    took = rng.lognormal(np.log(np.where(cd_on, 8, 25)), 0.5) * MINUTE
    started = np.maximum(fin - took.astype(np.int64), org.start)

    # changes: smaller batches and shorter waits once on continuous delivery
    good = np.flatnonzero(status == GOOD)
    batch = 1 + rng.poisson(np.where(first[good], 3.0, np.where(cd_on[good], 0.7, 2.5)))
    ch_dep = np.repeat(good, batch)
    median = LEAD_TIME_HOURS * rng.lognormal(0, 0.3, len(org.team_ids))[team[svc]]
    median *= (1 + TREND[1] * when) * np.where(ci_on, CI_EFFECT[1], 1)
    median *= np.where(cd_on, CD_EFFECT[1], 1)
    lead = median[ch_dep] * np.exp(0.9 * rng.standard_normal(ch_dep.size)) * HOUR
    lower = np.maximum(org.start, org.svc_created[svc[ch_dep]])
    upper = started[ch_dep] - MINUTE
    committed = fin[ch_dep] - lead.astype(np.int64)
    # commits that would predate the window or the service (and a new service's first commits)
    # spread over the time there was
    spread = lower + (rng.random(ch_dep.size) * np.maximum(upper - lower, 0)).astype(np.int64)
    committed = np.where((committed < lower) | first[ch_dep], spread, committed)
    committed = np.maximum(np.minimum(committed, upper), lower) // US * US
    order = np.lexsort((committed, ch_dep))
    ch_dep, committed = ch_dep[order], committed[order]
    head = np.full(n, -1)
    head[good] = np.cumsum(batch) - 1  # the latest commit of each batch is the one deployed
    listed = np.zeros(n, dtype=bool)
    listed[good] = first[good] | (rng.random(good.size) >= 0.03)  # a few list no commits

    # staging and failed deployments carry the commit of the next successful production one
    # when it was committed by then, else the one already live
    at = np.arange(n)
    nxt, prv = _good_near(good, svc, at, "left"), _good_near(good, svc, at, "left", -1)
    nxt_head, prv_head = np.where(nxt >= 0, head[nxt], -1), np.where(prv >= 0, head[prv], -1)
    ready = nxt_head >= 0
    if committed.size:
        ready &= committed[np.maximum(nxt_head, 0)] < started
    head = np.where(status == GOOD, head, np.where(ready, nxt_head, prv_head))

    deps = _Deployments(svc, fin, started, status, np.zeros(n, int), head, listed)
    failure = rng.uniform(0.17, 0.27, len(org.team_ids))[team[svc]] * (1 + TREND[2] * when)
    failure *= np.where(ci_on, CI_EFFECT[2], 1) * np.where(cd_on, CD_EFFECT[2], 1)
    incidents = _incidents(org, rng, deps, failure)
    ch_dep, committed = _remediate(rng, deps, incidents, good, ch_dep, committed)
    shas = _shas(rng, committed.size)
    deployments, dep_ids, rank = _deployment_table(org, rng, deps, ch_dep, committed, shas)
    return {
        "deployment": deployments,
        "change": _change_table(org, rng, deps, ch_dep, committed, shas),
        "incident": _incident_table(org, rng, incidents, deps, shas, dep_ids, rank),
    }


def _planned(
    org: Org, rng: np.random.Generator, ci_at: np.ndarray, cd_at: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Service, finish time and first-deployment flag of each planned deployment, sorted."""
    n_svc, days = len(org.svc_ids), org.days
    # a new service first deploys within days when scaffolded, otherwise after some weeks
    created_day = (org.svc_created - org.start) // DAY
    scaffolded = org.adopt[org.svc_team, org.cap("scaffolder")] <= created_day
    wait = np.where(
        scaffolded, rng.lognormal(np.log(1.5), 0.5, n_svc), rng.lognormal(np.log(12), 0.6, n_svc)
    )
    first_at = org.svc_created + (wait * DAY).astype(np.int64)
    new = org.svc_created >= org.start
    has_first = new & (first_at < org.end)
    from_day = np.where(new, (first_at - org.start) // DAY + 1, 0)

    # then Poisson per service-day, in working hours
    day = np.arange(days)
    at = org.day_start(day)[None, :]
    rate = rng.lognormal(np.log(0.25), 0.6, n_svc)[:, None] * org.day_factor(weekend=0.04)
    rate = rate * (1 + TREND[0] * day / days) * (day >= from_day[:, None])
    rate *= np.where(at >= ci_at[:, None], CI_EFFECT[0], 1)
    rate *= np.where(at >= cd_at[:, None], CD_EFFECT[0], 1)
    cell = np.repeat(np.arange(rate.size), rng.poisson(rate).ravel())
    fin = org.day_start(cell % days) + rng.choice(24, cell.size, p=HOURS_P) * HOUR
    fin += rng.integers(0, 3600, cell.size) * US
    svc = np.concatenate([cell // days, np.flatnonzero(has_first)])
    fin = np.concatenate([fin, first_at[has_first]]) // US * US
    first = np.arange(svc.size) >= cell.size
    order = np.lexsort((fin, svc))
    return svc[order], fin[order], first[order]


def _good_near(
    good: np.ndarray, svc: np.ndarray, at: np.ndarray, side: str, step: int = 0
) -> np.ndarray:
    """A successful production deployment of the same service near each position in `at`, or
    -1: side "left" finds the first at or after it, "right" the first after it, and "left" with
    step -1 the last before it. `good` holds their positions, which are in service order."""
    if good.size == 0:
        return np.full(at.size, -1)
    pos = np.searchsorted(good, at, side="left" if side == "left" else "right") + step
    found = good[np.clip(pos, 0, good.size - 1)]
    return np.where((pos >= 0) & (pos < good.size) & (svc[found] == svc[at]), found, -1)


def _incidents(
    org: Org, rng: np.random.Generator, deps: _Deployments, failure: np.ndarray
) -> dict[str, np.ndarray]:
    """Incidents caused by successful production deployments, each opened before the service's
    next deployment so that every linking rule points at the same one, and their remediation."""
    good = np.flatnonzero(deps.status == GOOD)
    bad = good[rng.random(good.size) < failure[good]]
    nxt = _good_near(good, deps.svc, bad, "right")
    gap = np.where(nxt >= 0, deps.fin[np.maximum(nxt, 0)], org.end) - deps.fin[bad]
    delay = np.minimum(rng.lognormal(np.log(2 * HOUR), 1.2, bad.size), 0.9 * gap)
    opened = deps.fin[bad] + np.clip(delay, MINUTE, 6 * DAY).astype(np.int64)
    keep = opened < org.end
    bad, opened = bad[keep], opened[keep] // US * US
    # teams that watch their services with the observability capability restore faster
    watch = org.day_start(org.adopt[org.svc_team[deps.svc[bad]], org.cap("observability")])
    hours = np.where(opened >= watch, 1.8, 3.0)
    ttr = (rng.lognormal(np.log(hours), 1.0) * HOUR).astype(np.int64)
    resolved = opened + ttr < org.end
    remedy = rng.random(bad.size)
    return {
        "deployment": bad,
        "opened": opened,
        "ttr": ttr,
        "resolved": resolved,
        "hotfix": resolved & (remedy < 0.3),
        "rollback": resolved & (remedy >= 0.3) & (remedy < 0.45),
    }


def _remediate(
    rng: np.random.Generator,
    deps: _Deployments,
    inc: dict[str, np.ndarray],
    good: np.ndarray,
    ch_dep: np.ndarray,
    committed: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Append the fixes to `deps`: a hotfix ships one quick change, a rollback redeploys the
    commit that was live before. Returns the changes with the hotfixes' added."""
    prev = _good_near(good, deps.svc, inc["deployment"], "left", -1)
    hot, back = inc["hotfix"], inc["rollback"] & (prev >= 0)
    n, n_hot, n_back = deps.svc.size, int(hot.sum()), int(back.sum())
    opened, ttr = inc["opened"], inc["ttr"]
    hot_fin = opened[hot] + (rng.uniform(0.3, 0.9, n_hot) * ttr[hot]).astype(np.int64)
    hot_start = np.maximum(hot_fin - rng.integers(5, 12, n_hot) * MINUTE, opened[hot])
    hot_commit = opened[hot] + (rng.uniform(0.05, 0.6, n_hot) * (hot_start - opened[hot]))
    back_fin = opened[back] + (rng.uniform(0.2, 0.7, n_back) * ttr[back]).astype(np.int64)
    back_start = back_fin - rng.integers(2, 6, n_back) * MINUTE
    deps.svc = np.concatenate([deps.svc, deps.svc[inc["deployment"][hot]]])
    deps.svc = np.concatenate([deps.svc, deps.svc[inc["deployment"][back]]])
    deps.fin = np.concatenate([deps.fin, hot_fin // US * US, back_fin // US * US])
    deps.started = np.concatenate([deps.started, hot_start, back_start])
    deps.status = np.concatenate([deps.status, np.full(n_hot + n_back, GOOD)])
    deps.kind = np.concatenate([deps.kind, np.repeat([HOTFIX, ROLLBACK], [n_hot, n_back])])
    hot_head = committed.size + np.arange(n_hot)
    deps.head = np.concatenate([deps.head, hot_head, deps.head[prev[back]]])
    deps.listed = np.concatenate([deps.listed, np.ones(n_hot, bool), np.zeros(n_back, bool)])
    ch_dep = np.concatenate([ch_dep, n + np.arange(n_hot)])
    return ch_dep, np.concatenate([committed, hot_commit.astype(np.int64) // US * US])


def _deployment_table(
    org: Org,
    rng: np.random.Generator,
    deps: _Deployments,
    ch_dep: np.ndarray,
    committed: np.ndarray,
    shas: pa.Array,
) -> tuple[pa.Table, pa.Array, np.ndarray]:
    """The deployment records, numbered in order of finishing, with their ids and the rank (row)
    of each deployment."""
    order = np.lexsort((deps.svc, deps.fin))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    ids = numbered("d-", order.size)
    in_list = deps.listed[ch_dep]
    shipped = np.flatnonzero(in_list)[np.lexsort((committed[in_list], rank[ch_dep[in_list]]))]
    counts = np.bincount(rank[ch_dep[in_list]], minlength=order.size)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    team = org.svc_team[deps.svc[order]]
    status, head = deps.status[order], deps.head[order]
    # one team names its production environment "prod", which the production setting covers;
    # another also runs a European region, "prod-eu", which only `prod-*` covers (the report
    # warns until it is added); a third deploys through git tags, which know no kind
    env = np.where(status == STAGING, 1, np.where(team == 1, 2, 0))
    env = np.where((env == 0) & (team == 2) & (rng.random(order.size) < 0.4), 3, env)
    kind_known = team != 3
    columns = {
        "id": ids,
        "service": strings(org.svc_ids, deps.svc[order]),
        "finished_at": timestamps(deps.fin[order]),
        "environment": strings(["production", "staging", "prod", "prod-eu"], env),
        "result": strings(["success", "failure"], (status == FAILED).astype(int)),
        "started_at": timestamps(deps.started[order]),
        "commit_sha": shas.take(pa.array(np.maximum(head, 0), mask=head < 0)),
        "commits": pa.ListArray.from_arrays(
            offsets, shas.take(shipped), mask=pa.array(~deps.listed[order])
        ),
        "kind": strings(["planned", "hotfix", "rollback"], deps.kind[order], kind_known),
        "team": strings(org.team_ids, team, rng.random(order.size) < 0.4),
    }
    return table("deployment", columns), ids, rank


def _change_table(
    org: Org,
    rng: np.random.Generator,
    deps: _Deployments,
    ch_dep: np.ndarray,
    committed: np.ndarray,
    shas: pa.Array,
) -> pa.Table:
    """The change records in commit order, with pull requests opened and merged before deploy."""
    order = np.argsort(committed, kind="stable")
    at, svc = committed[order], deps.svc[ch_dep[order]]
    waited = np.maximum(deps.started[ch_dep[order]] - at, 0)
    has_pr = rng.random(order.size) >= 0.08  # the rest were pushed straight to main
    team = org.svc_team[svc]
    authored = np.maximum(at - rng.integers(0, 3 * 3600, order.size) * US, org.start)
    columns = {
        "id": shas.take(order),
        "committed_at": timestamps(at),
        "service": strings(org.svc_ids, svc),
        "repo": strings(org.svc_repo, svc),
        "authored_at": timestamps(authored),
        "pr_opened_at": timestamps(at + (rng.uniform(0.02, 0.2, order.size) * waited), has_pr),
        "merged_at": timestamps(at + (rng.uniform(0.5, 0.95, order.size) * waited), has_pr),
        "team": strings(org.team_ids, team, rng.random(order.size) < 0.3),
        "author": strings(org.actors, org.members(team, at, rng)),
    }
    return table("change", columns)


def _incident_table(
    org: Org,
    rng: np.random.Generator,
    inc: dict[str, np.ndarray],
    deps: _Deployments,
    shas: pa.Array,
    dep_ids: pa.Array,
    rank: np.ndarray,
) -> pa.Table:
    """Change incidents, linked by deployment id, by root-cause commit or only by time, plus
    external ones (a dependency's outage) that no rule should pin on a deployment."""
    bad = inc["deployment"]
    n_ext = rng.poisson(0.008 * org.days * len(org.svc_ids))
    ext_open = org.start + rng.integers(0, org.days * 24 * 3600, n_ext) * US
    ext_ttr = (rng.lognormal(np.log(4), 1.0, n_ext) * HOUR).astype(np.int64)
    opened = np.concatenate([inc["opened"], ext_open])
    ttr = np.concatenate([inc["ttr"], ext_ttr])
    resolved = np.concatenate([inc["resolved"], ext_open + ext_ttr < org.end])
    service = np.concatenate([deps.svc[bad], rng.integers(0, len(org.svc_ids), n_ext)])
    link = np.concatenate([rng.random(bad.size), np.full(n_ext, 2.0)])
    by_id, by_sha = link < 0.45, (link >= 0.45) & (link < 0.7)
    cause = np.where(link > 1, 1, np.where(rng.random(link.size) < 0.55, 0, -1))
    dep = np.concatenate([rank[bad], np.zeros(n_ext, int)])
    sha = np.concatenate([deps.head[bad], np.zeros(n_ext, int)])
    o = np.argsort(opened, kind="stable")
    team = org.svc_team[service[o]]
    severity = rng.choice(4, o.size, p=[0.05, 0.2, 0.5, 0.25])
    columns = {
        "id": numbered("inc-", o.size, 4),
        "opened_at": timestamps(opened[o]),
        "service": strings(org.svc_ids, service[o]),
        "team": strings(org.team_ids, team, rng.random(o.size) < 0.3),
        "resolved_at": timestamps(opened[o] + ttr[o], resolved[o]),
        "severity": strings(["sev1", "sev2", "sev3", "sev4"], severity),
        "deployment_id": dep_ids.take(pa.array(dep[o], mask=~by_id[o])),
        "root_cause_sha": shas.take(pa.array(np.maximum(sha[o], 0), mask=~by_sha[o])),
        "cause": strings(["change", "external"], np.maximum(cause[o], 0), cause[o] >= 0),
    }
    return table("incident", columns)


def _shas(rng: np.random.Generator, n: int) -> pa.Array:
    """`n` random 40-hex-digit commit shas."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[rng.integers(0, 16, (n, 40))]
    shas = pa.array(np.ascontiguousarray(digits).view("S40").ravel()).cast(pa.string())
    # large arrays come back chunked, which ListArray.from_arrays does not accept
    return shas.combine_chunks() if isinstance(shas, pa.ChunkedArray) else shas
