"""Adoption, task success and task durations: the metrics of usage records (DESIGN §4).

Every metric is computed in the engine, and the family runs as ONE query (`Batch`): each part
below is an Ibis expression built without running it — the per-segment numbers that only need
usage rows (active users and teams, attempts, outcome shares) as one grouped part, the duration
quantiles as another; eligible teams and the adoption rate as one join of the eligible (period,
capability, team) rows — built from the registries as small tables — with the active ones; new
teams and retention as joins of distinct (period, segment, team) rows; the ineligible-teams
warning as a count. Python only turns the result rows (one per period and segment) into stats.

(v2) Usage by a `bot_actors` actor counts in task success and efficiency, never in adoption; a run
(`run`, else the record itself) is judged by its first attempt and by whether any attempt
succeeded; new teams are omitted where the stored usage starts; archiving is not churn.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import ibis
import pyarrow as pa

from heatlens.metrics.batch import Batch, Query, Rows
from heatlens.metrics.catalog import Metric
from heatlens.metrics.context import MetricContext, SegmentKey, Stat, Stats
from heatlens.metrics.frame import RESOLVED_USAGE, UTC_TS, memtable
from heatlens.metrics.globs import matches_expr
from heatlens.metrics.intervals import proportion_ci
from heatlens.metrics.periods import (
    Period,
    bucket,
    calendar_start,
    midnight,
    periods,
    previous_calendar,
)
from heatlens.metrics.quantiles import add_quantiles

KEYS = ("capability", "team", "group", "service", "action")
OUTCOMES = {
    "task.success_rate": "success",
    "task.failure_rate": "failure",
    "task.error_rate": "error",
    "task.abandon_rate": "abandoned",
}


COLUMNS = RESOLVED_USAGE


RUNS = ("task.first_attempt_success_rate", "task.eventual_success_rate")


def with_bot(ctx: MetricContext, t: Any) -> Any:
    """`t` with `bot`: its actor matches a `bot_actors` pattern."""
    return t.mutate(bot=matches_expr(t.actor, ctx.settings.bot_actors))


def usage_stats(
    ctx: MetricContext, metrics: list[Metric], query: Query | None = None
) -> dict[str, Stats]:
    """Stats of the usage metrics requested, keyed by metric id: every part built as an Ibis
    expression first, then run as one query (`Batch`), the ineligible-teams warning included.
    Given a shared `query`, the parts join it and the stats are filled when its owner runs it."""
    ids = {m.id for m in metrics}
    keys = [k for k in ctx.by if k in KEYS]
    out: dict[str, Stats] = {}
    batch = Batch(ctx, keys, query)
    grouped = ids & {"adoption.active_users", "adoption.active_teams", "task.attempts", *OUTCOMES}
    retention = "adoption.team_retention" in ids and ctx.grain != "all"
    resolved = _resolved(ctx, "adoption.new_teams" in ids, retention)
    obs = resolved.filter(resolved.period.notnull())
    if ids & set(RUNS):
        _runs(batch, obs, ids & set(RUNS), out)
    if grouped:
        _grouped(batch, obs, grouped, out)
    durations = [m for m in metrics if m.id.startswith("efficiency.task_duration_")]
    if durations:
        ok = obs.filter((obs.outcome == "success") & obs.duration_s.notnull())

        def quantiles(found: dict[float, Stats]) -> None:
            for m in durations:
                out[m.id] = found[m.q or 0.5]

        add_quantiles(
            batch, ok, keys, "duration_s", tuple(m.q or 0.5 for m in durations), quantiles
        )
    adoption = ids & {"adoption.eligible_teams", "adoption.team_adoption_rate"}
    active = _active(ctx, obs) if adoption or retention else None
    if adoption:
        _warn_ineligible(batch, active)
        _adoption(batch, active, adoption, out)
    if "adoption.new_teams" in ids:
        _new_teams(batch, resolved, out)
        ctx.omit(
            "adoption.new_teams",
            _history_start(ctx),
            "history_start",
            "new teams omitted in the period where stored usage starts (every team looks new "
            "there): ingest earlier usage, or set the capability's `launched_at`",
        )
    if retention:
        _retention(batch, resolved, active, out)
    batch.run()
    return out


def _active(ctx: MetricContext, obs: Any) -> Any:
    """The distinct (period, team, capability, the report's other keys) of usage by people with
    a team: what adoption, retention and the ineligible-teams warning read of the records,
    aggregated once for the three (kept in the backend for the report) — a few hundred
    thousand rows for W52, not ten million."""
    others = [k for k in ctx.by if k in KEYS and k not in ("team", "capability")]

    def build() -> Any:
        people = obs.filter(obs.team.notnull() & ~obs.bot)
        return people.select("period", "team", "capability", *others).distinct()

    return ctx.memo("usage_active", build)


def _calendar(ctx: MetricContext) -> list[Period]:
    """The whole calendar periods before each output period's own (retention looks back)."""
    tz = ctx.frame.tz
    first_prev = previous_calendar(ctx.spans[0], ctx.grain, tz)
    cal_end = ctx.spans[-1].cal_start
    return periods(ctx.grain, first_prev.start, cal_end, tz) if first_prev.start < cal_end else []


def _resolved(ctx: MetricContext, history: bool, retention: bool) -> Any:
    """Usage with resolved team and group, `bot` and `period` (null outside the report's
    periods), kept in the backend for the report: from the start of history when new teams are
    asked for, from the calendar period before the first when retention is, else the range."""
    since: datetime | None = ctx.range_start
    if history:
        since = None
    elif retention:
        calendar = _calendar(ctx)
        since = min(ctx.range_start, calendar[0].start_utc) if calendar else ctx.range_start
    name = f"usage_obs:{since.isoformat() if since else 'all'}"

    # only the columns the usage metrics read (and the report's keys): a narrower table is
    # quicker to build and to scan
    wanted = ["ts", "capability", "actor", "team", "outcome", "duration_s"]
    wanted += [k for k in ctx.by if k in KEYS and k not in wanted]

    kept = resolved_usage(ctx)
    if kept is not None:
        # the model's resolved usage (all history, built once per data version): this report
        # only filters and buckets it
        u = kept.filter(kept.ts < ctx.frame.literal_ts(ctx.range_end))
        if since is not None:
            u = u.filter(u.ts >= ctx.frame.literal_ts(since))
        return u.select(*wanted, "bot", period=bucket(u.ts, ctx.spans))

    def build() -> Any:
        u = with_bot(ctx, ctx.frame.usage(since, ctx.range_end).select(*COLUMNS))
        return u.select(*wanted, "bot", period=bucket(u.ts, ctx.spans))

    return ctx.memo(name, build)


def resolved_usage(ctx: MetricContext) -> Any | None:
    """All usage with resolved team and group and `bot` (COLUMNS), kept by the model once per
    version of the tables it reads; None when the store keeps no model tables."""
    return ctx.frame.kept_usage()


def _grouped(batch: Batch, obs: Any, ids: set[str], out: dict[str, Stats]) -> None:
    """Active users and teams (people only), attempts and outcome shares per (period, cell)."""
    ctx = batch.ctx
    people = ~obs.bot
    aggs: dict[str, Any] = {"attempts": obs.outcome.count(), "people": obs.count(where=people)}
    if "adoption.active_users" in ids:
        aggs["users"] = obs.actor.nunique(where=people)
    if "adoption.active_teams" in ids:
        aggs["teams"] = obs.team.nunique(where=people)
    for mid, outcome in OUTCOMES.items():
        if mid in ids:
            aggs[outcome] = obs.outcome.count(where=obs.outcome == outcome)
    rows = obs.group_by([obs.period, *(obs[k] for k in batch.labels[1:])]).aggregate(**aggs)
    for mid in ids:
        out[mid] = {}

    def stats(found: Rows) -> None:
        for r in found:
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

    batch.add(rows, list(aggs), stats)


# -- adoption: small tables of the registries, joined with the active teams in the engine --------


def _period_table(ctx: MetricContext) -> Any:
    """The report's periods: label, UTC bounds, and the label of the calendar period before."""
    before: list[date | None] = [None] * len(ctx.spans)
    if ctx.grain != "all":
        before = [calendar_start(p.cal_start - timedelta(days=1), ctx.grain) for p in ctx.spans]
    return memtable(
        {
            "p_period": [p.start for p in ctx.spans],
            "p_start": [p.start_utc for p in ctx.spans],
            "p_end": [p.end_utc for p in ctx.spans],
            "p_prev": before,
        },
        {"p_period": pa.date32(), "p_start": UTC_TS, "p_end": UTC_TS, "p_prev": pa.date32()},
    )


def _eligible_base(ctx: MetricContext) -> Any:
    """(p_period, p_end, e_team): the teams eligible in each period before capability rules —
    registry teams that are not groups and exist in it; with an empty team registry, the resolved
    teams of all usage (by people), at any time."""
    f = ctx.frame
    periods_t = _period_table(ctx)
    if f.teams:
        rows = [(tid, t) for tid, t in f.teams.items() if tid not in f.group_ids]
        teams = memtable(
            {
                "e_team": [tid for tid, _ in rows],
                "e_created": [t["created_at"] for _, t in rows],
                "e_archived": [t["archived_at"] for _, t in rows],
            },
            {"e_team": pa.string(), "e_created": UTC_TS, "e_archived": UTC_TS},
        )
        joined = periods_t.cross_join(teams)
        joined = joined.filter(
            (joined.e_created.isnull() | (joined.e_created < joined.p_end))
            & (joined.e_archived.isnull() | (joined.e_archived > joined.p_start))
        )
    else:
        u = with_bot(ctx, ctx.frame.usage().select(*COLUMNS))
        teams = u.filter(u.team.notnull() & ~u.bot).select(e_team=u.team).distinct()
        joined = periods_t.cross_join(teams)
    return joined.select("p_period", "p_end", "e_team")


def _capability_tables(ctx: MetricContext, seen: bool = True) -> tuple[Any, Any]:
    """(c_cap, c_launched, c_listed) for every capability of the registry (and, with `seen`,
    those seen in records), and (l_cap, l_team) for the teams of each `eligible` list."""
    f = ctx.frame
    others = sorted(ctx.seen()["capability"] - set(f.capabilities) - {None}) if seen else []
    caps = [*f.capabilities, *others]
    capabilities = memtable(
        {
            "c_cap": caps,
            "c_launched": [(f.capabilities.get(c) or {}).get("launched_at") for c in caps],
            "c_listed": [(f.capabilities.get(c) or {}).get("eligible") is not None for c in caps],
        },
        {"c_cap": pa.string(), "c_launched": UTC_TS, "c_listed": pa.bool_()},
    )
    pairs = sorted(
        {(cid, team) for cid, c in f.capabilities.items() for team in c["eligible"] or ()}
    )
    listed = memtable(
        {"l_cap": [c for c, _ in pairs], "l_team": [t for _, t in pairs]},
        {"l_cap": pa.string(), "l_team": pa.string()},
    )
    return capabilities, listed


def _eligible_rows(ctx: MetricContext) -> Any:
    """(period, [capability], team, group): the eligible teams of each period (and capability,
    when segmented by it: only in periods ending after its launch, only the teams of its
    `eligible` list when it has one)."""
    base = _eligible_base(ctx)
    if "capability" in ctx.by:
        capabilities, listed = _capability_tables(ctx)
        t = base.cross_join(capabilities)
        t = t.filter(t.c_launched.isnull() | (t.p_end > t.c_launched))
        t = t.left_join(listed, (t.c_cap == listed.l_cap) & (t.e_team == listed.l_team))
        t = t.filter(~t.c_listed | t.l_team.notnull())
        t = t.select(period=t.p_period, capability=t.c_cap, team=t.e_team)
    else:
        t = base.select(period=base.p_period, team=base.e_team)
    g = ctx.frame.group_table()
    t = t.left_join(g, t.team == g.g_team)
    return t.mutate(group=ibis.coalesce(t.g_group, t.team)).drop("g_team", "g_group")


def _adoption(batch: Batch, active: Any, ids: set[str], out: dict[str, Stats]) -> None:
    """Eligible teams and the share of them active, per period and cell of (capability, team,
    group): one join of the eligible rows with the active (period, [capability], team) rows."""
    ctx = batch.ctx
    per_cap = "capability" in ctx.by
    keys = [k for k in ctx.by if k in ("capability", "team", "group")]
    used_keys = ["period", *(["capability"] if per_cap else []), "team"]
    used = active.select(*(active[k].name(f"a_{k}") for k in used_keys)).distinct()
    el = _eligible_rows(ctx)
    joined = el.left_join(used, [el[k] == used[f"a_{k}"] for k in used_keys])
    rows = joined.group_by([joined.period, *(joined[k] for k in keys)]).aggregate(
        d=joined.count(), x=joined.a_team.count()
    )
    for mid in ids:
        out[mid] = {}

    def stats(found: Rows) -> None:
        for r in found:
            key = (r["period"], ctx.cell(r))
            d, x = int(r["d"]), int(r["x"])
            if "adoption.eligible_teams" in ids:
                out["adoption.eligible_teams"][key] = Stat(d, d)
            if "adoption.team_adoption_rate" in ids:
                out["adoption.team_adoption_rate"][key] = Stat(x / d, d, proportion_ci(x, d), x, d)

    batch.add(rows, ("d", "x"), stats)


def _warn_ineligible(batch: Batch, active: Any) -> None:
    """Count the (period, capability, team) with usage by people where the team is not eligible
    for the capability (whatever the report's keys)."""
    ctx = batch.ctx
    if ctx.quiet:
        return
    active = active.select("period", "capability", "team").distinct()
    base = _eligible_base(ctx)
    # a capability in no registry has no rules: its eligible teams are the period's
    capabilities, listed = _capability_tables(ctx, seen=False)
    t = active.left_join(base, (active.period == base.p_period) & (active.team == base.e_team))
    t = t.left_join(capabilities, t.capability == capabilities.c_cap)
    t = t.left_join(listed, (t.capability == listed.l_cap) & (t.team == listed.l_team))
    launched_late = t.c_launched.notnull() & ~(t.p_end > t.c_launched)
    ineligible = (
        t.e_team.isnull()
        | (t.c_cap.notnull() & launched_late)
        | (ibis.coalesce(t.c_listed, False) & t.l_team.isnull())
    )
    batch.warn(
        "ineligible_active_teams",
        "teams used a capability not in its `eligible` list (period × capability × team)",
        t.filter(ineligible),
    )


def _new_teams(batch: Batch, resolved: Any, out: dict[str, Stats]) -> None:
    """Teams whose first usage (of the capability, when segmented by it) is in the period."""
    ctx = batch.ctx
    per_cap = "capability" in ctx.by
    keys = ["team", "capability"] if per_cap else ["team"]
    u = resolved.filter(resolved.team.notnull() & ~resolved.bot)
    first = u.group_by(keys).aggregate(first=u.ts.min())
    first = first.mutate(period=bucket(first.first, ctx.spans))
    first = first.filter(first.period.notnull())
    g = ctx.frame.group_table()
    first = first.left_join(g, first.team == g.g_team)
    first = first.mutate(group=ibis.coalesce(first.g_group, first.team))
    cell = [k for k in ctx.by if k in ("capability", "team", "group")]
    rows = first.group_by(["period", *cell]).aggregate(teams=first.count())

    def stats(found: Rows) -> None:
        counts: Stats = {}
        for r in found:
            n = int(r["teams"])
            counts[(r["period"], ctx.cell(r))] = Stat(n, n)
        out["adoption.new_teams"] = counts

    batch.add(rows, ("teams",), stats)


def _retention(batch: Batch, resolved: Any, active: Any, out: dict[str, Stats]) -> None:
    """Share of the teams active in the previous calendar period still active in this one: the
    distinct (previous period, segment, team) rows, less teams archived by this period's start,
    left-joined with this period's."""
    ctx = batch.ctx
    keys = list(batch.labels[1:])
    others = [k for k in keys if k != "team"]  # the segment's keys besides the team itself
    now = active.select(
        n_period=active.period, n_team=active.team, **{f"n_{k}": active[k] for k in others}
    ).distinct()
    calendar = _calendar(ctx)
    if not calendar:
        out["adoption.team_retention"] = {}
        return
    earlier = resolved.filter(
        (resolved.ts >= ctx.frame.literal_ts(calendar[0].start_utc))
        & (resolved.ts < ctx.frame.literal_ts(calendar[-1].end_utc))
        & resolved.team.notnull()
        & ~resolved.bot
    )
    earlier = earlier.mutate(b_prev=bucket(earlier.ts, calendar))
    before = earlier.select("b_prev", "team", *others).distinct()
    before = before.filter(before.b_prev.notnull())
    spans = _period_table(ctx)
    t = before.join(spans, before.b_prev == spans.p_prev)
    archived = _archived(ctx)
    t = t.left_join(archived, t.team == archived.r_team)
    t = t.filter(t.r_archived.isnull() | (t.r_archived > t.p_start))
    t = t.left_join(
        now,
        [t.p_period == now.n_period, t.team == now.n_team]
        + [t[k].identical_to(now[f"n_{k}"]) for k in others],
    )
    rows = t.group_by([t.p_period.name("period"), *(t[k] for k in keys)]).aggregate(
        before=t.count(), kept=t.n_team.count()
    )

    def stats(found: Rows) -> None:
        shares: Stats = {}
        for r in found:
            d, kept = int(r["before"]), int(r["kept"])
            shares[(r["period"], ctx.cell(r))] = Stat(kept / d, d, proportion_ci(kept, d), kept, d)
        out["adoption.team_retention"] = shares

    batch.add(rows, ("before", "kept"), stats)


def _archived(ctx: MetricContext) -> Any:
    """(r_team, r_archived): registry teams with an `archived_at`."""
    rows = [(tid, t["archived_at"]) for tid, t in ctx.frame.teams.items() if t["archived_at"]]
    return memtable(
        {"r_team": [tid for tid, _ in rows], "r_archived": [a for _, a in rows]},
        {"r_team": pa.string(), "r_archived": UTC_TS},
    )


def _history_start(ctx: MetricContext) -> Callable[[Period, SegmentKey], bool]:
    """Whether a new-teams row lies in the calendar period holding the first stored usage (of its
    capability when segmented by capability, bots included) — every team looks new there —
    unless the capability launched at or after that period's start."""

    def build() -> dict[Any, Any]:
        u = ctx.frame.table("usage")
        rows = u.group_by("capability").aggregate(first=u.ts.min()).to_pyarrow().to_pylist()
        return {r["capability"]: r["first"] for r in rows}

    firsts = ctx.frame.shared("usage_firsts", ("usage",), build)
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


def _runs(batch: Batch, obs: Any, ids: set[str], out: dict[str, Stats]) -> None:
    """First-attempt and eventual success over runs whose first attempt is in the period.

    Without any `run` stored every record is its own run, so both equal the success rate of the
    period's attempts (one grouped query, no window over all history)."""
    ctx = batch.ctx
    keys = list(batch.labels[1:])
    t = ctx.frame.table("usage")

    def runs() -> int:
        return int(t.filter(t.run.notnull()).count().to_pyarrow().as_py())

    if ctx.frame.shared("usage_runs", ("usage",), runs) == 0:
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
    for mid in ids:
        out[mid] = {}

    def stats(found: Rows) -> None:
        for r in found:
            key = (r["period"], ctx.cell(r))
            n = int(r["n"])
            for mid, col in ((RUNS[0], "first_ok"), (RUNS[1], "any_ok")):
                if mid in ids and n:
                    x = int(r[col])
                    out[mid][key] = Stat(x / n, n, proportion_ci(x, n), x, n)

    batch.add(rows, ("n", "first_ok", "any_ok"), stats)
