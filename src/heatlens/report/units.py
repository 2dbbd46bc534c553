"""Values as a person reads them (DESIGN §5: human-facing outputs format by unit; JSON and CSV
carry the raw numbers in the catalog's units).

Durations grow from seconds to minutes, hours and days; a deployment frequency falls from per day
to per week, per month and "1 per N months"; ratios are percentages. The choice of unit depends on
the value alone, so a column of a table may mix units, each value reading naturally.
"""

from __future__ import annotations

DAYS_PER_MONTH = 365.25 / 12


def _number(value: float, decimals: int = 1) -> str:
    """`2.0`, `1,234` — one decimal (or `decimals`) below 10, whole numbers from 10."""
    if abs(round(value, decimals)) >= 10:  # 9.96 reads "10", not "10.0"
        return f"{value:,.0f}"
    return f"{value:,.{decimals}f}"


def seconds(value: float) -> str:
    """A duration given in seconds: seconds up to two minutes, then minutes, hours, days."""
    if abs(value) < 120:
        return f"{value:,.1f} s" if abs(value) < 10 else f"{value:,.0f} s"
    return hours(value / 3600)


def hours(value: float) -> str:
    """A duration given in hours: minutes below an hour, hours below two days, then days."""
    if abs(value) * 3600 < 120:
        return seconds(value * 3600)
    if abs(value) < 1:
        return f"{_number(value * 60)} min"
    if abs(value) < 48:
        return f"{value:,.1f} h"
    return f"{_number(value / 24)} d"


def days(value: float) -> str:
    """A duration given in days: hours below two days, then days."""
    return hours(value * 24)


def per_day(value: float) -> str:
    """A frequency given per day: per day, per week or per month as it falls, then 1 per N
    months (0.0052/day is "1 per 6 months")."""
    if value == 0:
        return "0/day"
    if value >= 1:
        return f"{_number(value)}/day"
    if value * 7 >= 1:
        return f"{_number(value * 7)}/week"
    if value * DAYS_PER_MONTH >= 1:
        return f"{_number(value * DAYS_PER_MONTH)}/month"
    months = 1 / (value * DAYS_PER_MONTH)
    if round(months) == 1:
        return "1 per month"
    if months < 24:
        return f"1 per {months:,.0f} months"
    return f"1 per {months / 12:,.0f} years"


def ratio(value: float) -> str:
    return f"{value * 100:.1f}%"


_BY_UNIT = {"seconds": seconds, "hours": hours, "days": days, "per day": per_day, "ratio": ratio}


def format_value(value: float | None, unit: str) -> str:
    """A value for reading: durations and frequencies in the unit that suits their size, ratios as
    percentages, counts with separators; "—" for no value."""
    if value is None:
        return "—"
    value = float(value)
    if unit in _BY_UNIT:
        return _BY_UNIT[unit](value)
    if value.is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def scaled(value: float, unit: str, like: float) -> str:
    """`abs(value)` in the unit that suits `like`'s size, so values read side by side (an
    estimate and its interval, the points of one curve) share a unit: `−26 h to −2.0 d` reads
    `26.1 h … 48.0 h`. Ratios are percentage points; a difference of frequencies is per day,
    week or month (never "1 per N months"); other units as `format_value`."""
    size, ref = abs(value), abs(like)
    if unit in ("seconds", "hours", "days"):
        per_hour = {"seconds": 1 / 3600, "hours": 1.0, "days": 24.0}[unit]
        hours_, ref_h = size * per_hour, ref * per_hour
        if ref_h * 3600 < 120:
            return f"{hours_ * 3600:,.1f} s"
        if ref_h < 1:
            return f"{_number(hours_ * 60)} min"
        if ref_h < 48:
            return f"{hours_:,.1f} h"
        return f"{_number(hours_ / 24)} d"
    if unit == "per day":
        if ref >= 1:
            return f"{size:,.1f}/day"
        if ref * 7 >= 0.1:
            return f"{size * 7:,.1f}/week"
        return f"{size * DAYS_PER_MONTH:,.2f}/month"
    return format_delta(size, unit)


def format_delta(delta: float, unit: str) -> str:
    """The size of a change; a change of a ratio is in percentage points, not percent."""
    if unit == "ratio":
        return f"{abs(delta) * 100:.1f} pp"
    return format_value(abs(delta), unit)
