"""Report periods (DESIGN §4): calendar periods in the report time zone, clipped to the range.

Periods are computed here, in Python, as UTC instants of local midnights, so bucketing never depends
on a backend's session time zone and daylight saving is exact. `bucket()` turns a timestamp column
into its period's label with a balanced tree of comparisons (log₂ of the number of periods per row),
which every Ibis backend compiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import ibis
import ibis.expr.datatypes as dt

from heatlens.errors import ConfigError

DEFAULT_PERIODS = 12
# how many periods a report or a page may have: enough for any real history, and bounded so a typo
# (a decade at grain day) is an error, not an hour of work
MAX_PERIODS = 5_000
# the fewest days a period of each calendar grain has, so a range's days / these bound its periods
_MIN_DAYS = {"day": 1, "week": 7, "month": 28, "quarter": 90}


@dataclass(frozen=True)
class Period:
    """One output period: `start`/`end` are the clipped dates (end exclusive), `cal_start`/`cal_end`
    the calendar period it belongs to, `start_utc`/`end_utc` the instants of local midnight."""

    start: date
    end: date
    cal_start: date
    cal_end: date
    start_utc: datetime
    end_utc: datetime

    @property
    def days(self) -> int:
        """Calendar days of the clipped period (per-day rates divide by these)."""
        return (self.end - self.start).days


# the days a report, explanation or check may ask about: any real history, and far enough from
# the ends of Python's calendar that period arithmetic never overflows
EARLIEST = date(1970, 1, 1)
LATEST = date(2100, 1, 1)


def check_day(day: date, name: str) -> date:
    """`day` if it lies between EARLIEST and LATEST, else a ConfigError naming the option."""
    if not EARLIEST <= day <= LATEST:
        raise ConfigError(f"{name} {day}: expected a date from {EARLIEST} to {LATEST}")
    return day


def parse_day(value: str | None, name: str) -> date | None:
    """A YYYY-MM-DD option or query argument (None stays None), checked by `check_day`."""
    if value is None:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{name} {value!r}: expected a date YYYY-MM-DD") from None
    return check_day(day, name)


def too_many_periods(grain: str, start: date, end: date) -> bool:
    """Whether [start, end) may hold more than MAX_PERIODS periods of `grain` (`all` never does)."""
    days = _MIN_DAYS.get(grain)
    return days is not None and (end - start).days / days > MAX_PERIODS


def calendar_start(day: date, grain: str) -> date:
    """First day of the calendar period of `grain` containing `day` (weeks start on Monday)."""
    if grain == "day":
        return day
    if grain == "week":
        return day - timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    if grain == "quarter":
        return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    raise ValueError(f"no calendar periods for grain {grain!r}")


def calendar_next(start: date, grain: str) -> date:
    """First day of the calendar period after the one starting at `start`."""
    if grain == "day":
        return start + timedelta(days=1)
    if grain == "week":
        return start + timedelta(days=7)
    months = 1 if grain == "month" else 3
    m = start.month - 1 + months
    return date(start.year + m // 12, m % 12 + 1, 1)


def midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant of local midnight starting `day` in `tz`."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def default_range(grain: str, tz: ZoneInfo, now: datetime) -> tuple[date, date]:
    """`--to` = start of the current period; `--from` = 12 periods earlier (grain all: weeks)."""
    unit = "week" if grain == "all" else grain
    end = calendar_start(now.astimezone(tz).date(), unit)
    start = end
    for _ in range(DEFAULT_PERIODS):
        start = calendar_start(start - timedelta(days=1), unit)
    return start, end


def periods(grain: str, start: date, end: date, tz: ZoneInfo) -> list[Period]:
    """The calendar periods covering [start, end), first and last clipped to it."""
    if start >= end:
        return []
    if grain == "all":
        return [Period(start, end, start, end, midnight(start, tz), midnight(end, tz))]
    out = []
    cal = calendar_start(start, grain)
    while cal < end:
        nxt = calendar_next(cal, grain)
        lo, hi = max(cal, start), min(nxt, end)
        out.append(Period(lo, hi, cal, nxt, midnight(lo, tz), midnight(hi, tz)))
        cal = nxt
    return out


def previous_calendar(period: Period, grain: str, tz: ZoneInfo) -> Period:
    """The whole calendar period immediately before `period`'s calendar period."""
    start = calendar_start(period.cal_start - timedelta(days=1), grain)
    return Period(
        start,
        period.cal_start,
        start,
        period.cal_start,
        midnight(start, tz),
        midnight(period.cal_start, tz),
    )


def _ts(value: datetime) -> Any:
    return ibis.literal(value, type=dt.Timestamp(timezone="UTC"))


def bucket(ts: Any, spans: list[Period]) -> Any:
    """The `start` date of the period in `spans` (sorted, contiguous) holding `ts`, else NULL."""
    null = ibis.null(dt.date)
    if not spans:
        return null

    def locate(lo: int, hi: int) -> Any:
        if hi - lo == 1:
            return ibis.literal(spans[lo].start, type=dt.date)
        mid = (lo + hi) // 2
        return ibis.ifelse(ts < _ts(spans[mid].start_utc), locate(lo, mid), locate(mid, hi))

    inside = (ts >= _ts(spans[0].start_utc)) & (ts < _ts(spans[-1].end_utc))
    return ibis.ifelse(inside, locate(0, len(spans)), null)
