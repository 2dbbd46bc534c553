"""Significant changes for a report's table: the one test of DESIGN §4 (team bootstrap of the
difference between the last two periods), applied to every proportion metric of the report."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

from heatlens.analysis.bootstrap import Change, ratio_change, team_ratios
from heatlens.metrics import CATALOG, Report, Request, compute
from heatlens.metrics.frame import Tables
from heatlens.settings import Settings

Key = tuple[str, tuple[tuple[str, Any], ...]]


def report_changes(
    tables: Tables, report: Report, settings: Settings, *, seed: int = 0
) -> dict[Key, Change]:
    """(metric, segment key) → change of the last period against the one before, for the
    proportion metrics of `report` that can be split by team (one extra engine call)."""
    periods = sorted({r.period for r in report.rows})
    if len(periods) < 2 or "team" in report.by:
        return {}
    metrics = tuple(
        sorted(
            {
                r.metric
                for r in report.rows
                if CATALOG[r.metric].aggregate == "proportion" and "team" in CATALOG[r.metric].keys
            }
        )
    )
    if not metrics:
        return {}
    previous, last = periods[-2], periods[-1]
    request = Request(
        report.grain, previous, report.end, (*report.by, "team"), metrics, report.generated_at
    )
    per_team = compute(tables, request, settings)
    grouped: dict[tuple[str, tuple[tuple[str, Any], ...]], dict[Any, list[Any]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for row in per_team.rows:
        segment = tuple(
            sorted(((k, v) for k, v in row.segment.items() if k != "team"), key=lambda kv: kv[0])
        )
        grouped[(row.metric, segment)][row.period].append(row)
    out: dict[Key, Change] = {}
    for key, by_period in grouped.items():
        change = ratio_change(
            team_ratios(by_period.get(previous, [])),
            team_ratios(by_period.get(last, [])),
            seed=seed,
        )
        if change is not None:
            out[key] = _against_report(report, key, previous, last, change)
    return out


def _against_report(report: Report, key: Key, previous: Any, last: Any, change: Change) -> Change:
    """The delta shown is the report's own values' difference (pooling can differ, e.g. for
    suppressed happiness teams); the interval comes from the bootstrap."""
    metric, segment = key
    values = {
        r.period: r.value
        for r in report.rows
        if r.metric == metric and tuple(sorted(r.segment.items(), key=lambda kv: kv[0])) == segment
    }
    before, after = values.get(previous), values.get(last)
    if before is None or after is None:
        return change
    return replace(change, delta=float(after) - float(before))
