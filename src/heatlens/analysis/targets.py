"""Targets and tensions (DESIGN §4 Analysis, `heatlens check` in §5).

A target is a bound on one metric, optionally for one segment, judged on the last complete period
of its grain as of a date: a period is complete when its end is at or before `as_of` (midnight in
the report time zone). The value judged is the engine's row — suppressed or missing rows are
`no_data`, never worked around. A tension is a capability — or the whole organisation,
every capability pooled — whose scorecard shows one HEAT dimension significantly better and
another significantly worse than the period before: pushing one dimension at the expense of
another, which HEAT exists to catch.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from heatlens.analysis.scorecard import Scorecard, complete_periods, scorecard
from heatlens.analysis.waves import complete_waves
from heatlens.errors import ConfigError
from heatlens.metrics.catalog import CALENDAR_GRAINS, CATALOG
from heatlens.metrics.engine import Request, compute
from heatlens.metrics.frame import Tables
from heatlens.metrics.periods import midnight
from heatlens.settings import Settings

SCHEMA = "heatlens.check/v1"
OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
_FIELDS = {"metric", "segment", "op", "value", "grain", "due"}


@dataclass(frozen=True)
class Target:
    """One `[[targets]]` table of the config, checked."""

    metric: str
    op: str
    value: float
    grain: str = "month"
    segment: tuple[tuple[str, str], ...] = ()
    due: date | None = None


@dataclass(frozen=True)
class TargetStatus:
    """A target judged: the period looked at, the engine's value there and the verdict
    (`met | missed | no_data | not_due`)."""

    target: Target
    period: date
    actual: float | None
    status: str
    # happiness: the survey wave judged (the latest closed by the period's end)
    survey: str | None = None


@dataclass(frozen=True)
class Tension:
    """A capability (None: the whole organisation, every capability pooled) with HEAT
    dimensions moving significantly in opposite directions."""

    capability: str | None
    period: date
    previous: date
    better: tuple[str, ...]
    worse: tuple[str, ...]


@dataclass(frozen=True)
class CheckResult:
    as_of: date
    targets: list[TargetStatus]
    tensions: list[Tension]

    @property
    def missed(self) -> bool:
        return any(t.status == "missed" for t in self.targets)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "as_of": self.as_of.isoformat(),
            "targets": [
                {
                    "metric": t.target.metric,
                    "segment": dict(t.target.segment),
                    "op": t.target.op,
                    "value": t.target.value,
                    "grain": t.target.grain,
                    "due": t.target.due.isoformat() if t.target.due else None,
                    "period": t.period.isoformat(),
                    "actual": t.actual,
                    "status": t.status,
                    "survey": t.survey,
                }
                for t in self.targets
            ],
            "tensions": [
                {
                    "capability": t.capability,
                    "scope": "capability" if t.capability is not None else "organisation",
                    "period": t.period.isoformat(),
                    "previous": t.previous.isoformat(),
                    "better": list(t.better),
                    "worse": list(t.worse),
                }
                for t in self.tensions
            ],
        }


def parse_targets(tables: Sequence[dict[str, Any]]) -> list[Target]:
    """The config's `[[targets]]`, each checked; a mistake is a ConfigError naming the entry."""
    found = []
    for i, raw in enumerate(tables):  # numbered from 0, like sync[0] and every config entry
        where = f"targets[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a table with metric, op and value")
        unknown = sorted(set(raw) - _FIELDS)
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown field (known: {sorted(_FIELDS)})")
        metric = raw.get("metric")
        if metric not in CATALOG:
            raise ConfigError(f"{where}.metric {metric!r}: not a metric (see docs/metrics.md)")
        op = raw.get("op")
        if op not in OPS:
            raise ConfigError(f"{where}.op {op!r}: expected one of {', '.join(OPS)}")
        value = raw.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}.value {value!r}: expected a number")
        grain = raw.get("grain", "month")
        if grain not in CALENDAR_GRAINS:
            raise ConfigError(
                f"{where}.grain {grain!r}: expected one of {', '.join(CALENDAR_GRAINS)}"
            )
        segment = raw.get("segment", {})
        if not isinstance(segment, dict):
            raise ConfigError(f"{where}.segment: expected a table, e.g. {{ capability = 'ci' }}")
        keys = CATALOG[metric].keys
        for key in segment:
            if key not in keys:
                raise ConfigError(
                    f"{where}.segment.{key}: {metric} is not segmented by {key} "
                    f"(it is by {', '.join(sorted(keys)) or 'nothing'})"
                )
        due = raw.get("due")
        if due is not None and not isinstance(due, date):
            try:
                due = date.fromisoformat(str(due))
            except ValueError:
                raise ConfigError(f"{where}.due {due!r}: expected a date YYYY-MM-DD") from None
        found.append(
            Target(
                metric,
                op,
                float(value),
                grain,
                tuple(sorted((str(k), str(v)) for k, v in segment.items())),
                due,
            )
        )
    return found


def check(tables: Tables, settings: Settings, as_of: date) -> CheckResult:
    """Judge every target of the settings and find tensions, as of `as_of`."""
    targets = parse_targets(settings.targets)
    tz = ZoneInfo(settings.timezone)
    cutoff = midnight(as_of, tz)
    # one engine call per grain and segmentation
    groups: dict[tuple[str, tuple[str, ...]], list[Target]] = defaultdict(list)
    for t in targets:
        groups[(t.grain, tuple(k for k, _ in t.segment))].append(t)
    judged: dict[Target, TargetStatus] = {}
    for (grain, by), members in groups.items():
        previous, start, end = complete_periods(grain, tz, cutoff)
        metrics = tuple(sorted({t.metric for t in members}))
        report = compute(tables, Request(grain, previous, end, by, metrics, cutoff), settings)
        rows = {
            (r.metric, r.period, tuple(sorted((k, str(v)) for k, v in r.segment.items()))): r
            for r in report.rows
        }
        happy = sorted({t.metric for t in members if t.metric.startswith("happiness.")})
        waves = complete_waves(tables, settings, happy, by, end) if happy else {}
        for t in members:
            if t.metric in waves:  # the latest wave closed by the period's end, never a pool
                wave, _ = waves[t.metric].latest(**dict(t.segment))
                if wave is None:
                    judged[t] = TargetStatus(t, start, None, target_status(t, None, as_of))
                    continue
                actual = None if wave.suppressed else wave.value
                survey = str(wave.segment.get("survey"))
                status = target_status(t, actual, as_of)
                judged[t] = TargetStatus(t, wave.period, actual, status, survey)
                continue
            # a row incidents may still link to is not final: judge the period before it
            period = start
            row = rows.get((t.metric, start, t.segment))
            if row is not None and not row.complete:
                period = previous
                row = rows.get((t.metric, previous, t.segment))
            usable = row is not None and row.complete and not row.suppressed
            actual = row.value if usable and row is not None else None
            judged[t] = TargetStatus(t, period, actual, target_status(t, actual, as_of))
    return CheckResult(as_of, [judged[t] for t in targets], tensions(tables, settings, cutoff))


def target_status(target: Target, actual: float | None, as_of: date) -> str:
    """`met`, `missed`, `no_data` (no value, or suppressed) or `not_due` (missed before `due`)."""
    if actual is None:
        return "no_data"
    if OPS[target.op](float(actual), target.value):
        return "met"
    return "not_due" if target.due is not None and as_of < target.due else "missed"


def tensions(
    tables: Tables, settings: Settings, as_of: datetime, grain: str = "month"
) -> list[Tension]:
    """The organisation as a whole, and each capability, where one HEAT dimension improved
    significantly while another got significantly worse (the scorecard's one test, last
    complete period against the previous)."""
    return tensions_of(scorecard(tables, settings, grain=grain, as_of=as_of))


def tensions_of(card: Scorecard) -> list[Tension]:
    """The tensions of a scorecard: the organisation-wide row first, then each capability."""
    found = []
    rows = ([card.overall] if card.overall is not None else []) + card.capabilities
    for cap in rows:
        better: list[str] = []
        worse: list[str] = []
        for cell in cap.cells:
            if cell.change is None or not cell.change.significant:
                continue
            up = cell.change.delta > 0
            improved = up if CATALOG[cell.metric].direction == "up" else not up
            (better if improved else worse).append(cell.metric)
        if better and worse:
            name = None if cap is card.overall else cap.capability
            found.append(Tension(name, card.period, card.previous, tuple(better), tuple(worse)))
    return found
