"""Impact: did adopting a capability move delivery? (DESIGN §4 Analysis, `heatlens impact` §5).

A team *adopts* capability C in the first period in which it has at least `min_uses` usage records
of C, over all stored history — provided that period comes after the team's first period of any
stored usage (a team whose first usage is already of C may have adopted before the history
starts) and after the panel's first period (there must be a before). Such teams are excluded and
counted. Teams that have not adopted by the end of the range are the never adopters.

The panel is one engine call: the metric per team and period, by the engine's rules (the same
numbers `heatlens report --by team` shows; incomplete rows are left out). Everything after that is
NumPy on the panel (heatlens.analysis.did): the group-time effects, the event-study curve, the
naive contrasts, the pre-trend check, and their team-bootstrap intervals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from heatlens.analysis.bootstrap import RESAMPLES
from heatlens.analysis.did import NEVER, DidResult, staggered_did
from heatlens.errors import ConfigError
from heatlens.metrics import catalog
from heatlens.metrics.catalog import CALENDAR_GRAINS, IMPACT_GRAIN, Metric
from heatlens.metrics.engine import Request, compute, history_start
from heatlens.metrics.frame import Frame, Tables
from heatlens.metrics.periods import (
    MAX_PERIODS,
    Period,
    bucket,
    calendar_start,
    check_day,
    periods,
    too_many_periods,
)
from heatlens.settings import Settings

# fewer adopting teams than this and the answer is "not enough data", whatever the interval says
MIN_ADOPTERS = 5
DORA_METRICS = (
    "dora.deployment_frequency",
    "dora.lead_time_p50",
    "dora.change_failure_rate",
    "dora.recovery_time_p50",
)


@dataclass(frozen=True)
class Adoption:
    """Each team's adoption period (None: not by the end of the range), and the teams left out
    with the reason."""

    adopted: dict[str, date | None]
    excluded: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Impact:
    """The impact of adopting `capability` on one metric."""

    capability: str
    metric: Metric
    grain: str
    start: date
    end: date
    adopters: int
    never_adopters: int
    excluded: int
    result: DidResult | None  # None: no panel at all

    @property
    def enough(self) -> bool:
        """Whether there are enough adopting teams, each with a before and an after, and
        enough teams to compare them with, for an estimate with an interval."""
        r = self.result
        return (
            self.adopters >= MIN_ADOPTERS
            and r is not None
            and r.overall.value is not None
            and r.overall.ci is not None
        )

    @property
    def pre_trend_differs(self) -> bool:
        """Whether adopters already drifted from the others before adopting: the interval of
        the mean pre-adoption group-time effect excludes 0 (parallel trends look doubtful)."""
        return self.enough and self.result is not None and self.result.pre_trend.significant


def impact_metrics(patterns: tuple[str, ...]) -> list[Metric]:
    """The metrics asked for (ids or prefixes; none: the four DORA keys), each one the engine
    computes per team and period; a ConfigError otherwise."""
    try:
        chosen = catalog.select(patterns or DORA_METRICS)
    except KeyError as exc:
        raise ConfigError(
            f"unknown metric {exc.args[0]!r}: see docs/metrics.md for the catalog"
        ) from None
    usable = [m for m in chosen if "team" in m.keys and m.dimension != "happiness"]
    if not usable:
        raise ConfigError(
            f"--metric {', '.join(patterns)}: impact needs a metric computed per team and period "
            "(e.g. dora.lead_time_p50); happiness is per survey wave"
        )
    return usable


# the panel's default period (see the catalog)
GRAIN = IMPACT_GRAIN


def impact(
    tables: Tables,
    settings: Settings,
    capability: str,
    metrics: tuple[str, ...] = (),
    **options: Any,
) -> list[Impact]:
    """The impact of adopting `capability` on each metric (`impacts` for the options)."""
    return impacts(tables, settings, (capability,), metrics, **options)[capability]


def impacts(
    tables: Tables,
    settings: Settings,
    capabilities: Sequence[str],
    metrics: tuple[str, ...] = (),
    *,
    grain: str = GRAIN,
    start: date | None = None,
    end: date | None = None,
    now: datetime | None = None,
    min_uses: int = 1,
    seed: int = 0,
    resamples: int = RESAMPLES,
    strict: bool = True,
) -> dict[str, list[Impact]]:
    """The impact of adopting each capability on each metric, over [start, end) at `grain`.

    Default range: from the calendar period holding the earliest stored record to the start of
    the current period (all complete history). One engine call gives the panel of every metric,
    shared by every capability; one grouped query gives every capability's adoption. A
    capability without usage is a ConfigError, or (not `strict`) one without adopters.
    """
    chosen = impact_metrics(metrics)
    if grain not in CALENDAR_GRAINS:
        raise ConfigError(f"--grain {grain!r}: impact needs one of {', '.join(CALENDAR_GRAINS)}")
    if min_uses < 1:
        raise ConfigError(f"--min-uses {min_uses}: expected at least 1")
    clock = now or datetime.now(UTC)
    tz = ZoneInfo(settings.timezone)
    end = check_day(end, "--to") if end else calendar_start(clock.astimezone(tz).date(), grain)
    if start is None:
        first = history_start(tables, tz)
        start = calendar_start(first, grain) if first is not None else end
    check_day(start, "--from")
    if start >= end:
        raise ConfigError(f"--from {start} must be before --to {end}")
    if too_many_periods(grain, start, end):
        raise ConfigError(
            f"--from {start} --to {end} is more than {MAX_PERIODS:,} periods of a {grain}: "
            "use a coarser --grain or a shorter range"
        )
    spans = periods(grain, start, end, tz)
    adoption = adoption_periods(
        tables, settings, capabilities, grain, spans, min_uses, strict=strict
    )
    report = compute(
        tables,
        Request(grain, start, end, ("team",), tuple(m.id for m in chosen), clock),
        settings,
    )
    cells: dict[str, dict[tuple[str, date], float]] = defaultdict(dict)
    for row in report.rows:
        team = row.segment.get("team")
        if team is None or row.value is None or row.suppressed or not row.complete:
            continue
        cells[row.metric][(str(team), row.period)] = float(row.value)
    return {
        c: [
            _one(c, m, grain, start, end, spans, adoption[c], cells[m.id], seed, resamples)
            for m in chosen
        ]
        for c in capabilities
    }


def adoption_periods(
    tables: Tables,
    settings: Settings,
    capabilities: Sequence[str],
    grain: str,
    spans: list[Period],
    min_uses: int = 1,
    *,
    strict: bool = True,
) -> dict[str, Adoption]:
    """When each team adopted each capability (module docstring), from the engine's resolved
    usage (the team resolution of every usage metric): two grouped queries over all history."""
    frame = Frame.load(tables, settings)
    usage = frame.usage()
    known = set(usage.select("capability").distinct().to_pyarrow().column(0).to_pylist()) - {None}
    for capability in capabilities if strict else ():
        if capability not in known:
            listed = ", ".join(sorted(str(c) for c in known)) or "none"
            raise ConfigError(
                f"--capability {capability!r}: no usage of it is stored (capabilities with "
                f"usage: {listed})"
            )
    tz = frame.tz
    known_team = usage.filter(usage.team.notnull())
    firsts = known_team.group_by("team").aggregate(at=known_team.ts.min()).to_pyarrow()
    first_use = {
        str(team): _local_day(at, tz)
        for team, at in zip(
            firsts.column("team").to_pylist(), firsts.column("at").to_pylist(), strict=True
        )
    }
    if not first_use or not spans:
        return {c: Adoption({}) for c in capabilities}
    history = periods(grain, calendar_start(min(first_use.values()), grain), spans[-1].end, tz)
    named = known_team.filter(known_team.capability.isin(list(capabilities)))
    named = named.mutate(period=bucket(named.ts, history))
    named = named.filter(named.period.notnull())
    got = named.group_by(["capability", "team", "period"]).aggregate(n=named.count()).to_pyarrow()
    reached: dict[tuple[str, str], list[date]] = defaultdict(list)
    columns = (got.column(c).to_pylist() for c in ("capability", "team", "period", "n"))
    for capability, team, day, n in zip(*columns, strict=True):
        if n >= min_uses:
            reached[(str(capability), str(team))].append(day)
    return {c: _adoption(c, first_use, reached, grain, spans[0].start) for c in capabilities}


def _adoption(
    capability: str,
    first_use: dict[str, date],
    reached: dict[tuple[str, str], list[date]],
    grain: str,
    panel_start: date,
) -> Adoption:
    adopted: dict[str, date | None] = {}
    excluded: dict[str, str] = {}
    for team, own_first in first_use.items():
        days = reached.get((capability, team))
        if not days:
            adopted[team] = None
            continue
        day = min(days)
        if day <= calendar_start(own_first, grain):
            excluded[team] = "adopted in its first period of stored usage"
        elif day <= panel_start:
            excluded[team] = "adopted before the range's second period"
        else:
            adopted[team] = day
    return Adoption(adopted, excluded)


def _local_day(at: datetime, tz: ZoneInfo) -> date:
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return at.astimezone(tz).date()


def _one(
    capability: str,
    metric: Metric,
    grain: str,
    start: date,
    end: date,
    spans: list[Period],
    adoption: Adoption,
    cells: dict[tuple[str, date], float],
    seed: int,
    resamples: int,
) -> Impact:
    index = {p.start: i for i, p in enumerate(spans)}
    teams = sorted({t for t, _ in cells if t not in adoption.excluded})
    values = np.full((len(teams), len(spans)), np.nan)
    group = np.full(len(teams), NEVER, dtype=np.int64)
    for i, team in enumerate(teams):
        for p, at in index.items():
            if (team, p) in cells:
                values[i, at] = cells[(team, p)]
        adopted = adoption.adopted.get(team)
        if adopted is not None and adopted in index:
            group[i] = index[adopted]
    adopters = int((group != NEVER).sum())
    never = len(teams) - adopters
    excluded = sum(1 for t in adoption.excluded if any(k[0] == t for k in cells))
    result = staggered_did(values, group, seed=seed, resamples=resamples) if teams else None
    return Impact(capability, metric, grain, start, end, adopters, never, excluded, result)


__all__ = [
    "DORA_METRICS",
    "Adoption",
    "Impact",
    "adoption_periods",
    "impact",
    "impact_metrics",
    "impacts",
]
