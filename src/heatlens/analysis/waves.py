"""The latest complete survey wave (DESIGN §4 Happiness, v2): where a single current value is
wanted — the overview, the portfolio, the scorecard, `check` — happiness is the latest wave (a
month, for a continuous survey) that has closed by the end of the period judged, and says which.

Waves are never pooled: the engine gives one row per wave (its `survey` segment), counted in the
month holding its `opens_at`, and marks a row incomplete while its wave is open. Asking the engine
at grain month with the clock at the period's end therefore gives every wave that had closed by
then as a complete row; the latest of them per segment is the value shown, the one before it the
comparison. Anonymity is the engine's: a suppressed wave stays suppressed here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from heatlens.metrics import Request, compute
from heatlens.metrics.engine import history_start
from heatlens.metrics.frame import Tables
from heatlens.metrics.periods import calendar_start, midnight
from heatlens.metrics.result import Row
from heatlens.settings import Settings

SegmentItems = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Waves:
    """Per segment (without `survey`), the complete wave rows of one metric, oldest first."""

    rows: dict[SegmentItems, list[Row]]
    every: tuple[Row, ...] = ()

    def latest(self, **segment: Any) -> tuple[Row | None, Row | None]:
        """(latest complete wave's row, the wave before it's) for this segment."""
        found = self.rows.get(_items(segment), [])
        return (
            found[-1] if found else None,
            found[-2] if len(found) > 1 else None,
        )

    def of_wave(self, wave: Row, **segment: Any) -> list[Row]:
        """The rows of `wave` (its survey and period) whose segment has these values."""
        return [
            r
            for r in self.every
            if r.period == wave.period
            and r.segment.get("survey") == wave.segment.get("survey")
            and all(r.segment.get(k) == v for k, v in segment.items())
        ]


def wave_label(row: Row) -> str:
    """ "wave 2026-q3 (2026-10)": the survey id and the month it is counted in."""
    return f"wave {row.segment.get('survey')} ({row.period:%Y-%m})"


def complete_waves(
    tables: Tables,
    settings: Settings,
    metrics: Sequence[str],
    by: Sequence[str],
    end: date,
) -> dict[str, Waves]:
    """Per metric, the waves that had closed by `end` (a date in the report time zone), by the
    segment keys `by` (plus the wave)."""
    tz = ZoneInfo(settings.timezone)
    first = history_start(tables, tz)
    if first is None or first >= end:
        return {m: Waves({}) for m in metrics}
    start = calendar_start(first, "month")
    keys = tuple(dict.fromkeys(("survey", *by)))
    at = midnight(end, tz)
    # rows only: the waves carry no warnings (Request.warnings)
    report = compute(
        tables, Request("month", start, end, keys, tuple(metrics), at, warnings=False), settings
    )
    return {m: _by_segment(r for r in report.rows if r.metric == m and r.complete) for m in metrics}


def _by_segment(rows: Iterable[Row]) -> Waves:
    every = tuple(rows)
    found: dict[SegmentItems, list[Row]] = defaultdict(list)
    for r in every:
        rest = {k: v for k, v in r.segment.items() if k != "survey"}
        found[_items(rest)].append(r)
    for members in found.values():
        members.sort(key=lambda r: (r.period, str(r.segment.get("survey"))))
    return Waves(dict(found), every)


def _items(segment: dict[str, Any]) -> SegmentItems:
    return tuple(sorted((str(k), "" if v is None else str(v)) for k, v in segment.items()))
