"""Adoption, task success and task durations: the metrics of usage records (DESIGN §4).

The per-segment numbers that only need usage rows (active users and teams, attempts, outcome
shares, duration quantiles) come from one grouped query. Adoption rate, eligible and new teams and
retention need sets of teams per period, which are small: they are pulled once and combined with
the team registry here.

(v2) Usage by a `bot_actors` actor counts in task success and efficiency, never in adoption; a run
(`run`, else the record itself) is judged by its first attempt and by whether any attempt
succeeded; new teams are omitted where the stored usage starts; archiving is not churn.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import date
from typing import Any

import ibis

from heatlens.metrics.catalog import Metric
from heatlens.metrics.context import MetricContext, SegmentKey, Stat, Stats
from heatlens.metrics.globs import matches_expr
from heatlens.metrics.intervals import proportion_ci
from heatlens.metrics.periods import Period, calendar_start, midnight, periods, previous_calendar
from heatlens.metrics.quantiles import grouped_quantiles

KEYS = ("capability", "team", "group", "service", "action")
OUTCOMES = {
    "task.success_rate": "success",
    "task.failure_rate": "failure",
    "task.error_rate": "error",
    "task.abandon_rate": "abandoned",
}


COLUMNS = (
    "ts",
    "capability",
    "action",
    "actor",
    "team",
    "group",
    "service",
    "outcome",
    "duration_s",
)


RUNS = ("task.first_attempt_success_rate", "task.eventual_success_rate")


def with_bot(ctx: MetricContext, t: Any) -> Any:
    """`t` with `bot`: its actor matches a `bot_actors` pattern."""
    return t.mutate(bot=matches_expr(t.actor, ctx.settings.bot_actors))


def resolved_usage(ctx: MetricContext) -> Any:
    """All usage with resolved team and group and `bot` (kept for the report)."""
    return ctx.memo("usage", lambda: with_bot(ctx, ctx.frame.usage().select(*COLUMNS)))


def usage_stats(ctx: MetricContext, metrics: list[Metric]) -> dict[str, Stats]:
    """Stats of the usage metrics requested, keyed by metric id."""
    ids = {m.id for m in metrics}
    out: dict[str, Stats] = {}
    grouped = ids & {"adoption.active_users", "adoption.active_teams", "task.attempts", *OUTCOMES}
    obs = ctx.memo(
        "usage_obs",
        lambda: ctx.bucketed(
            with_bot(ctx, ctx.frame.usage(ctx.range_start, ctx.range_end).select(*COLUMNS)), "ts"
        ),
    )
    if ids & set(RUNS):
        out.update(_runs(ctx, obs, ids & set(RUNS)))
    if grouped:
        out.update(_grouped(ctx, obs, grouped))
    durations = [m for m in metrics if m.id.startswith("efficiency.task_duration_")]
    if durations:
        ok = obs.filter((obs.outcome == "success") & obs.duration_s.notnull())
        keys = [k for k in ctx.by if k in KEYS]
        found = grouped_quantiles(ctx, ok, keys, "duration_s", tuple(m.q or 0.5 for m in durations))
        for m in durations:
            out[m.id] = found[m.q or 0.5]
    if ids & {"adoption.eligible_teams", "adoption.team_adoption_rate"}:
        active = _active_teams(ctx, obs)
        _warn_ineligible(ctx, active)
        for mid in ids & {"adoption.eligible_teams", "adoption.team_adoption_rate"}:
            out[mid] = _adoption(ctx, active, rate=mid.endswith("rate"))
    if "adoption.new_teams" in ids:
        out["adoption.new_teams"] = _new_teams(ctx, resolved_usage(ctx))
        ctx.omit(
            "adoption.new_teams",
            _history_start(ctx),
            "history_start",
            "new teams omitted in the period where stored usage starts (every team looks new "
            "there): ingest earlier usage, or set the capability's `launched_at`",
        )
    if "adoption.team_retention" in ids and ctx.grain != "all":
        out["adoption.team_retention"] = _retention(ctx, obs)
    return out


def _grouped(ctx: MetricContext, obs: Any, ids: set[str]) -> dict[str, Stats]:
    keys = [k for k in ctx.by if k in KEYS]
    people = ~obs.bot
    aggs: dict[str, Any] = {"attempts": obs.outcome.count(), "people": obs.count(where=people)}
    if "adoption.active_users" in ids:
        aggs["users"] = obs.actor.nunique(where=people)
    if "adoption.active_teams" in ids:
        aggs["teams"] = obs.team.nunique(where=people)
    for mid, outcome in OUTCOMES.items():
        if mid in ids:
            aggs[outcome] = obs.outcome.count(where=obs.outcome == outcome)
    rows = obs.group_by([obs.period, *(obs[k] for k in keys)]).aggregate(**aggs)
    out: dict[str, Stats] = {mid: {} for mid in ids}
    for r in rows.to_pyarrow().to_pylist():
        key = (r["period"], ctx.cell(r))
        attempts = int(r["attempts"])
        # a cell only bots used has no adoption observations (zero-fill may still add it)
        if "adoption.active_users" in ids and r["people"]:
            out["adoption.active_users"][key] = Stat(int(r["users"]), int(r["users"]))
        if "adoption.active_teams" in ids and r["people"]:
            out["adoption.active_teams"][key] = Stat(int(r["teams"]), int(r["teams"]))
        if "task.attempts" in ids and attempts:
            out["task.attempts"][key] = Stat(attempts, attempts)
        for mid, outcome in OUTCOMES.items():
            if mid in ids and attempts:
                x = int(r[outcome])
                out[mid][key] = Stat(
                    x / attempts, attempts, proportion_ci(x, attempts), x, attempts
                )
    return out


def _active_teams(ctx: MetricContext, obs: Any) -> dict[date, set[tuple[str, str]]]:
    """Per period, the (capability, team) pairs with usage."""
    t = obs.filter(obs.team.notnull() & ~obs.bot).select("period", "capability", "team").distinct()
    active: dict[date, set[tuple[str, str]]] = defaultdict(set)
    for r in t.to_pyarrow().to_pylist():
        active[r["period"]].add((r["capability"], r["team"]))
    return active


def eligible(
    ctx: MetricContext, p: Period, capability: Any, by_capability: bool, active_teams: set[str]
) -> set[str]:
    """Teams eligible in period p (for a capability when segmented by capability)."""
    f = ctx.frame
    if f.teams:
        base = {
            tid
            for tid, t in f.teams.items()
            if tid not in f.group_ids and f.team_exists(t, p.start_utc, p.end_utc)
        }
    else:
        base = set(active_teams)
    if by_capability:
        cap = f.capabilities.get(capability)
        if cap is not None:
            launched = cap["launched_at"]
            if launched is not None and not p.end_utc > launched:
                return set()
            if cap["eligible"] is not None:
                base &= set(cap["eligible"])
    return base


def _all_usage_teams(ctx: MetricContext) -> set[str]:
    """With an empty team registry, the eligible teams are the resolved teams of all usage."""

    def build() -> set[str]:
        u = resolved_usage(ctx)
        teams = u.filter(u.team.notnull() & ~u.bot).select("team").distinct().to_pyarrow()
        return set(teams.column("team").to_pylist())

    return ctx.remember("usage_teams", build)


def _adoption(ctx: MetricContext, active: dict[date, set[tuple[str, str]]], rate: bool) -> Stats:
    """Eligible teams, or the share of them active, per period and cell of (capability, team,
    group). Sets are indexed by capability and by group, so this stays linear in teams."""
    stats: Stats = {}
    by = ctx.by
    fallback = _all_usage_teams(ctx) if not ctx.frame.teams else set()
    group_of = ctx.frame.group_of
    for p in ctx.spans:
        pairs = active.get(p.start, set())
        used_by_cap: dict[Any, set[str]] = defaultdict(set)
        for used_cap, member in pairs:
            used_by_cap[used_cap].add(member)
        used_any = {member for _, member in pairs}
        cells = ctx.domain_cells(p, {})
        if rate:
            cells |= {
                ctx.cell({"capability": c, "team": t, "group": group_of(t)}) for c, t in pairs
            }
        eligible_by_cap: dict[Any, set[str]] = {}
        for cell in cells:
            seg = dict(zip(by, cell, strict=True))
            cap = seg.get("capability")
            if cap not in eligible_by_cap:
                eligible_by_cap[cap] = eligible(ctx, p, cap, "capability" in by, fallback)
            teams = eligible_by_cap[cap]
            if "team" in seg:
                teams = teams & {seg["team"]}
            if "group" in seg:
                teams = {t for t in teams if group_of(t) == seg["group"]}
            if not rate:
                stats[(p.start, cell)] = Stat(len(teams), len(teams))
                continue
            if not teams:
                continue
            used = used_by_cap.get(cap, set()) if "capability" in by else used_any
            x = len(used & teams)
            stats[(p.start, cell)] = Stat(
                x / len(teams), len(teams), proportion_ci(x, len(teams)), x, len(teams)
            )
    return stats


def _warn_ineligible(ctx: MetricContext, active: dict[date, set[tuple[str, str]]]) -> None:
    fallback = _all_usage_teams(ctx) if not ctx.frame.teams else set()
    count = 0
    for p in ctx.spans:
        by_cap: dict[str, set[str]] = {}
        for cap, team in active.get(p.start, set()):
            if cap not in by_cap:
                by_cap[cap] = eligible(ctx, p, cap, True, fallback)
            count += team not in by_cap[cap]
    ctx.warn(
        "ineligible_active_teams",
        "teams used a capability not in its `eligible` list (period × capability × team)",
        count,
    )


def _new_teams(ctx: MetricContext, usage: Any) -> Stats:
    """Teams whose first usage (of the capability, when segmented by it) is in the period."""
    per_cap = "capability" in ctx.by
    keys = ["team", "capability"] if per_cap else ["team"]
    u = usage.filter(usage.team.notnull() & ~usage.bot)
    first = u.group_by(keys).aggregate(first=u.ts.min()).to_pyarrow().to_pylist()
    stats: Stats = {}
    for r in first:
        p = ctx.span_of(r["first"])
        if p is None:
            continue
        row = {
            "team": r["team"],
            "group": ctx.frame.group_of(r["team"]),
            "capability": r.get("capability"),
        }
        key = (p.start, ctx.cell(row))
        stats[key] = Stat((stats[key].value or 0) + 1 if key in stats else 1, None)
    for s in stats.values():
        s.n = int(s.value or 0)
    return stats


def _team_sets(ctx: MetricContext, obs: Any) -> dict[tuple[date, SegmentKey], set[str]]:
    keys = [k for k in ctx.by if k in KEYS]
    columns = ["period", *keys, *(["team"] if "team" not in keys else [])]
    t = obs.filter(obs.team.notnull() & ~obs.bot).select(*columns).distinct()
    sets: dict[tuple[date, SegmentKey], set[str]] = defaultdict(set)
    for r in t.to_pyarrow().to_pylist():
        sets[(r["period"], ctx.cell(r))].add(r["team"])
    return sets


def _retention(ctx: MetricContext, obs: Any) -> Stats:
    """Share of the teams active in the previous calendar period still active in this one."""
    tz = ctx.frame.tz
    first_prev = previous_calendar(ctx.spans[0], ctx.grain, tz)
    cal_end = ctx.spans[-1].cal_start
    calendar = (
        periods(ctx.grain, first_prev.start, cal_end, tz) if first_prev.start < cal_end else []
    )
    now_sets = _team_sets(ctx, obs)
    if calendar:
        earlier = ctx.frame.usage(calendar[0].start_utc, calendar[-1].end_utc).select(*COLUMNS)
        before_sets = _team_sets(ctx, ctx.bucketed(with_bot(ctx, earlier), "ts", calendar))
    else:
        before_sets = {}
    stats: Stats = {}
    for p in ctx.spans:
        prev = calendar_start(p.cal_start.fromordinal(p.cal_start.toordinal() - 1), ctx.grain)
        cells = (
            {c for (d, c) in now_sets if d == p.start}
            | {c for (d, c) in before_sets if d == prev}
            | ctx.domain_cells(p, {})
        )
        # archiving is not churn: teams archived by this period's start leave the earlier set
        archived = {
            tid
            for tid, t in ctx.frame.teams.items()
            if t["archived_at"] is not None and t["archived_at"] <= p.start_utc
        }
        for cell in cells:
            before = before_sets.get((prev, cell), set()) - archived
            if not before or not ctx.launched(p, cell):
                continue
            kept = len(before & now_sets.get((p.start, cell), set()))
            stats[(p.start, cell)] = Stat(
                kept / len(before), len(before), proportion_ci(kept, len(before)), kept, len(before)
            )
    return stats


def _history_start(ctx: MetricContext) -> Callable[[Period, SegmentKey], bool]:
    """Whether a new-teams row lies in the calendar period holding the first stored usage (of its
    capability when segmented by capability, bots included) — every team looks new there —
    unless the capability launched at or after that period's start."""
    u = ctx.frame.table("usage")
    rows = u.group_by("capability").aggregate(first=u.ts.min()).to_pyarrow().to_pylist()
    firsts = {r["capability"]: r["first"] for r in rows}
    overall = min(firsts.values(), default=None)
    per_cap = "capability" in ctx.by
    tz = ctx.frame.tz

    def omitted(p: Period, cell: SegmentKey) -> bool:
        cap = cell[ctx.by.index("capability")] if per_cap else None
        first = overall if not per_cap else (firsts.get(cap) if cap is not None else None)
        if first is None or not p.cal_start <= first.astimezone(tz).date() < p.cal_end:
            return False
        registered = ctx.frame.capabilities.get(cap) if cap is not None else None
        launched = registered["launched_at"] if registered else None
        return launched is None or launched < midnight(p.cal_start, tz)

    return omitted


def _runs(ctx: MetricContext, obs: Any, ids: set[str]) -> dict[str, Stats]:
    """First-attempt and eventual success over runs whose first attempt is in the period.

    Without any `run` stored every record is its own run, so both equal the success rate of the
    period's attempts (one grouped query, no window over all history)."""
    keys = [k for k in ctx.by if k in KEYS]
    t = ctx.frame.table("usage")
    if int(t.filter(t.run.notnull()).count().to_pyarrow().as_py()) == 0:
        a = obs.filter(obs.outcome.notnull())
        ok = a.outcome == "success"
        rows = a.group_by([a.period, *(a[k] for k in keys)]).aggregate(
            n=a.count(), first_ok=a.count(where=ok), any_ok=a.count(where=ok)
        )
    else:
        u = ctx.frame.usage().select(*COLUMNS, "id", "run", "attempt")
        u = u.filter(u.outcome.notnull())
        key = ibis.ifelse(u.run.notnull(), "r:" + u.run, "i:" + u.id)
        u = u.mutate(hl_run=key, hl_ok=ibis.ifelse(u.outcome == "success", 1, 0))
        order = [ibis.coalesce(u.attempt, 1), u.ts, u.id]
        u = u.mutate(
            hl_rank=ibis.row_number().over(ibis.window(group_by=u.hl_run, order_by=order)),
            hl_any=u.hl_ok.max().over(ibis.window(group_by=u.hl_run)),
        )
        first = ctx.bucketed(u.filter(u.hl_rank == 0), "ts")
        rows = first.group_by([first.period, *(first[k] for k in keys)]).aggregate(
            n=first.count(),
            first_ok=first.count(where=first.hl_ok == 1),
            any_ok=first.count(where=first.hl_any == 1),
        )
    out: dict[str, Stats] = {mid: {} for mid in ids}
    for r in rows.to_pyarrow().to_pylist():
        key = (r["period"], ctx.cell(r))
        n = int(r["n"])
        for mid, col in ((RUNS[0], "first_ok"), (RUNS[1], "any_ok")):
            if mid in ids and n:
                x = int(r[col])
                out[mid][key] = Stat(x / n, n, proportion_ci(x, n), x, n)
    return out
