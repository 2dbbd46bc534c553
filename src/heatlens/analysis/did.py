"""Staggered difference-in-differences on a team × period panel (DESIGN §4 Analysis, Impact).

Teams adopt a capability at different periods. For each adoption cohort g (the teams that adopted
in period g) and period t, the group-time effect ATT(g, t) of Callaway and Sant'Anna compares how
the cohort's metric moved from the period before adoption (g − 1) to t with how it moved, over the
same two periods, for the teams that had not adopted by t (never adopters and not-yet adopters):

    ATT(g, t) = mean over cohort g of (Y_t − Y_{g−1}) − mean over controls of (Y_t − Y_{g−1})

Periods before adoption (t < g) compare t with t − 1 instead, so they measure whether adopters
already drifted apart from the others before adopting: the pre-trend check. The overall effect is
the mean of the post-adoption ATT(g, t) weighted by the teams behind each (every adopting team ×
period after adoption counts once); the event-study curve groups the same cells by k = t − g.

Intervals come from resampling whole teams (999 times): a draw is a matrix of how often each team
was picked, and every statistic is a ratio of sums over teams, so a resample is a matrix product
over the same per-cell vectors — no resample ever touches the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from heatlens.analysis.bootstrap import LEVEL, RESAMPLES, draw_counts

NEVER = -1  # the group of a team that did not adopt within the panel
# resamples per block of the bootstrap: bounds the (resamples × cells) matrices to a few MB
BLOCK = 128

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its 95 % team-bootstrap percentile interval (None: too few draws
    gave a value, e.g. a single team)."""

    value: float | None
    ci: tuple[float, float] | None

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0."""
        return self.ci is not None and (self.ci[0] > 0 or self.ci[1] < 0)


@dataclass(frozen=True)
class Cell:
    """One group-time effect: cohort `group` (adoption period index), period `period`, its base
    period, k = period − group, and how many adopting teams and control teams it rests on."""

    group: int
    period: int
    base: int
    treated: int
    controls: int
    att: float | None

    @property
    def k(self) -> int:
        return self.period - self.group


@dataclass(frozen=True)
class DidResult:
    """Everything the impact analysis reports about one metric's panel."""

    overall: Estimate
    cells: list[Cell]
    event_study: dict[int, Estimate]
    pre_trend: Estimate
    before_after: Estimate
    adopters_vs_not: Estimate


def staggered_did(
    values: Floats,
    group: NDArray[np.int64],
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> DidResult:
    """Callaway–Sant'Anna group-time effects with not-yet and never adopters as controls.

    `values` is teams × periods (NaN where a team has no value); `group[i]` the index of the
    period team i adopted in (≥ 1, so it has a period before), or NEVER. A team adopting in period
    0 has no before and must be left out by the caller.
    """
    values = np.asarray(values, dtype=np.float64)
    group = np.asarray(group, dtype=np.int64)
    if values.ndim != 2 or group.shape != (values.shape[0],):
        raise ValueError("values must be teams × periods and group one entry per team")
    if np.any(group == 0) or np.any(group >= values.shape[1]) or np.any(group < NEVER):
        raise ValueError("group must be NEVER or a period index from 1 to periods − 1")
    spec = _cells(values, group)
    naive = _naive(values, group)
    ones = np.ones((1, values.shape[0]))
    point = _statistics(ones, spec, naive)
    draws = [
        _statistics(counts, spec, naive) for counts in _blocks(values.shape[0], seed, resamples)
    ]

    def estimate(key: str | int) -> Estimate:
        value = point[key][0]
        found = np.concatenate([d[key] for d in draws]) if draws else np.empty(0)
        return Estimate(None if np.isnan(value) else float(value), _interval(found))

    cells = [
        Cell(g, t, b, int(nt), int(nc), None if np.isnan(a) else float(a))
        for (g, t, b), nt, nc, a in zip(
            spec.keys,
            spec.treated_n.sum(axis=1),
            spec.control_n.sum(axis=1),
            point["att"][0],
            strict=True,
        )
    ]
    ks = sorted({t - g for g, t, _ in spec.keys})
    return DidResult(
        overall=estimate("overall"),
        cells=cells,
        event_study={k: estimate(k) for k in ks},
        pre_trend=estimate("pre"),
        before_after=estimate("before_after"),
        adopters_vs_not=estimate("adopters_vs_not"),
    )


@dataclass(frozen=True)
class _CellSpec:
    """Per cell (rows) and team (columns): the treated and control teams with a value in both of
    the cell's periods, and each team's change between them (0 where it has none)."""

    keys: list[tuple[int, int, int]]  # (group, period, base)
    treated_n: Floats
    treated_sum: Floats
    control_n: Floats
    control_sum: Floats
    k: NDArray[np.int64]


def _cells(values: Floats, group: NDArray[np.int64]) -> _CellSpec:
    periods = values.shape[1]
    keys: list[tuple[int, int, int]] = []
    for g in sorted({int(x) for x in group if x != NEVER}):
        # before adoption: t against t − 1 (the pre-trend); after: t against g − 1
        keys += [(g, t, t - 1) for t in range(1, g)]
        keys += [(g, t, g - 1) for t in range(g, periods)]
    gs = np.array([k[0] for k in keys], dtype=np.int64)
    ts = np.array([k[1] for k in keys], dtype=np.int64)
    bs = np.array([k[2] for k in keys], dtype=np.int64)
    change = values[:, ts] - values[:, bs]  # teams × cells
    known = ~np.isnan(change)
    change = np.where(known, change, 0.0)
    treated = (group[:, None] == gs[None, :]) & known
    # controls: adopt after both periods of the cell (or never), and not the cohort itself
    later = (group[:, None] == NEVER) | (group[:, None] > np.maximum(ts, bs)[None, :])
    control = later & (group[:, None] != gs[None, :]) & known
    return _CellSpec(
        keys,
        treated.T.astype(np.float64),
        (treated * change).T,
        control.T.astype(np.float64),
        (control * change).T,
        ts - gs,
    )


def _naive(values: Floats, group: NDArray[np.int64]) -> dict[str, Floats]:
    """Per team: the sum and count of its values after adoption, before adoption, and (never
    adopters) over all periods — the naive contrasts are ratios of these."""
    known = ~np.isnan(values)
    filled = np.where(known, values, 0.0)
    t = np.arange(values.shape[1])[None, :]
    adopter = (group != NEVER)[:, None]
    after = adopter & (t >= group[:, None]) & known
    before = adopter & (t < group[:, None]) & known
    never = ~adopter & known
    return {
        name: np.stack([(mask * filled).sum(axis=1), mask.sum(axis=1).astype(np.float64)])
        for name, mask in (("after", after), ("before", before), ("never", never))
    }


def _statistics(
    counts: Floats, spec: _CellSpec, naive: dict[str, Floats]
) -> dict[str | int, Floats]:
    """Every statistic for each row of `counts` (how often each team is drawn): the ATT of each
    cell, the overall effect, the event-study points, the pre-trend and the naive contrasts."""
    with np.errstate(divide="ignore", invalid="ignore"):
        tn = counts @ spec.treated_n.T
        cn = counts @ spec.control_n.T
        att = (counts @ spec.treated_sum.T) / tn - (counts @ spec.control_sum.T) / cn
        usable = np.isfinite(att)
        weight = np.where(usable, tn, 0.0)
        effect = np.where(usable, att, 0.0)

        def mean_of(columns: NDArray[np.bool_]) -> Floats:
            w = weight[:, columns]
            return (w * effect[:, columns]).sum(axis=1) / w.sum(axis=1)

        def mean(name: str) -> Floats:
            total, n = naive[name]
            return (counts @ total) / (counts @ n)

        out: dict[str | int, Floats] = {
            "att": att,
            "overall": mean_of(spec.k >= 0),
            "pre": mean_of(spec.k < 0),
            "before_after": mean("after") - mean("before"),
            "adopters_vs_not": mean("after") - mean("never"),
        }
        for k in np.unique(spec.k):
            out[int(k)] = mean_of(spec.k == k)
    return out


def _blocks(teams: int, seed: int, resamples: int) -> Iterator[Floats]:
    """The bootstrap's draw-count matrix, in blocks of rows (one seed: the same draws)."""
    if teams < 2 or resamples < 1:
        return
    counts = draw_counts(teams, seed, resamples).astype(np.float64)
    for start in range(0, resamples, BLOCK):
        yield counts[start : start + BLOCK]


def _interval(draws: Floats) -> tuple[float, float] | None:
    """The 95 % percentile interval of the finite draws, or None when fewer than half of the
    resamples gave a value (the statistic then rests on too few teams to say anything)."""
    finite = draws[np.isfinite(draws)]
    if finite.size == 0 or finite.size < draws.size / 2:
        return None
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)
