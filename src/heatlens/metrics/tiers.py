"""DORA performance tiers (DESIGN §4) for the 2023 and 2021 reports."""

from __future__ import annotations

DAY = 24.0
# metric → (comparison, (elite, high, medium) thresholds); per day, hours or a fraction
TIERS: dict[int, dict[str, tuple[str, tuple[float, float, float]]]] = {
    2023: {
        "dora.deployment_frequency": (">=", (1.0, 1 / 7, 1 / 30)),
        "dora.lead_time_p50": ("<", (DAY, 7 * DAY, 30 * DAY)),
        "dora.change_failure_rate": ("<=", (0.05, 0.10, 0.15)),
        "dora.recovery_time_p50": ("<", (1.0, DAY, 7 * DAY)),
    },
    # DevLake's monotone reading of the 2021 report
    2021: {
        "dora.deployment_frequency": (">=", (1.0, 1 / 30, 1 / 182)),
        "dora.lead_time_p50": ("<", (1.0, 7 * DAY, 182 * DAY)),
        "dora.change_failure_rate": ("<=", (0.15, 0.20, 0.30)),
        "dora.time_to_restore_p50": ("<", (1.0, DAY, 7 * DAY)),
    },
}
LEVELS = ("elite", "high", "medium")


def tier_of(metric: str, value: float | int | None, year: int) -> str | None:
    """elite | high | medium | low, or None when the metric has no tier that year."""
    rule = TIERS.get(year, {}).get(metric)
    if rule is None or value is None:
        return None
    op, limits = rule
    for level, limit in zip(LEVELS, limits, strict=True):
        if (
            (op == ">=" and value >= limit)
            or (op == "<" and value < limit)
            or (op == "<=" and value <= limit)
        ):
            return level
    return "low"
