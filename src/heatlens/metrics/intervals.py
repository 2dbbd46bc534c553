"""The interval formulas and quantile rule of DESIGN §4, on plain numbers."""

from __future__ import annotations

import math
from collections.abc import Sequence

Z = 1.959964


def proportion_ci(x: float, n: float) -> tuple[float, float]:
    """95 % interval of x/n: p̃ = (x + z²/2)/(n + z²), p̃ ± z·√(p̃(1−p̃)/(n + z²)), in [0, 1]."""
    z2 = Z * Z
    p = (x + z2 / 2) / (n + z2)
    half = Z * math.sqrt(p * (1 - p) / (n + z2))
    return (max(0.0, p - half), min(1.0, p + half))


def nps_ci(promoters: int, detractors: int, n: int) -> tuple[float, float]:
    """95 % interval of an NPS with ¾ added to promoters and detractors, in [−100, 100]."""
    n2 = n + 3
    pp, pd = (promoters + 0.75) / n2, (detractors + 0.75) / n2
    d = pp - pd
    half = Z * math.sqrt((pp + pd - d * d) / n2)
    return (max(-100.0, 100 * (d - half)), min(100.0, 100 * (d + half)))


def quantile(values: Sequence[float], q: float, mode: str = "linear") -> float:
    """Quantile of values: linear interpolation, or `lower` = sorted[floor((n−1)·q)]."""
    xs = sorted(values)
    h = (len(xs) - 1) * q
    lo = math.floor(h)
    if mode == "lower":
        return xs[lo]
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])
