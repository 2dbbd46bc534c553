"""Is a change between two periods significant? A bootstrap over teams (DESIGN §4 Analysis).

Records of one team are not independent (the same people, pipelines and habits), so resampling
records would make every change look significant. The unit resampled is the team: draw the teams
with data in either period, with replacement, use the same drawn multiset in both periods,
recompute the pooled statistic of each period and take the difference. The change is significant
when the 95 % percentile interval of those differences excludes 0.

Resamples are vectorised: one (resamples × teams) index matrix becomes a matrix of how often each
team was drawn (drawn once per team count and seed, and shared by the cells of a scorecard); a
pooled proportion is then that matrix times the per-team sums, and a pooled quantile a search run
for all resamples at once (one matrix product over block starts, then a running count inside one
block), so 999 resamples take milliseconds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from threadpoolctl import ThreadpoolController

from heatlens.metrics.result import Row

RESAMPLES = 999
LEVEL = 0.95
# a quantile bootstrap cuts its sorted pool into about sqrt(pool × this ÷ teams) blocks
BLOCK_BALANCE = 1024

# a team id, or None for records that resolve to no team (Any: Mapping keys are invariant)
Team = Any
Method = Literal["linear", "lower"]  # the engine's quantile rules (setting `quantile`)


@dataclass(frozen=True)
class Change:
    """A change of one metric against the previous period.

    `delta` is this period's value minus the previous one; `ci` the 95 % bootstrap interval of
    that difference (None when it cannot be computed, e.g. fewer than two teams); `significant`
    is true when the interval excludes 0.
    """

    delta: float
    ci: tuple[float, float] | None
    significant: bool


def team_ratios(rows: Iterable[Row], key: str = "team") -> dict[Any, tuple[float, float]]:
    """Per-team numerator and denominator of a proportion, from engine rows segmented by `key`.

    Suppressed rows carry no numbers by design and are skipped, as are rows without `x`/`d`, so
    a happiness bootstrap built from these uses the visible teams only.
    """
    out: dict[Any, tuple[float, float]] = {}
    for row in rows:
        if row.suppressed or row.x is None or row.d is None:
            continue
        out[row.segment.get(key)] = (float(row.x), float(row.d))
    return out


def ratio_change(
    before: Mapping[Team, tuple[float, float]],
    after: Mapping[Team, tuple[float, float]],
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> Change | None:
    """The change of a pooled proportion Σx ÷ Σd between two periods, teams resampled.

    `before` and `after` map each team to its (x, d) in that period: successes and attempts for a
    success rate, active and eligible (1 and 1, or 0 and 1) for an adoption rate, top-2-box and
    all answers for CSAT. A team absent from one period counts as (0, 0) there; a resample that
    draws no team with a denominator in some period has no difference and is left out. None when
    either period has no denominator (the change is undefined).
    """
    teams = _teams(t for t, (_, d) in [*before.items(), *after.items()] if d > 0)

    def column(period: Mapping[Team, tuple[float, float]], i: int) -> NDArray[np.float64]:
        return np.array([period.get(t, (0.0, 0.0))[i] for t in teams], dtype=np.float64)

    x0, d0, x1, d1 = column(before, 0), column(before, 1), column(after, 0), column(after, 1)
    if d0.sum() <= 0 or d1.sum() <= 0:
        return None
    delta = float(x1.sum() / d1.sum() - x0.sum() / d0.sum())
    if len(teams) < 2:
        return Change(delta, None, False)
    counts = _drawn(len(teams), seed, resamples).counts
    with np.errstate(divide="ignore", invalid="ignore"), _one_blas_thread():
        # a resample drawing no team with data in a period has no statistic there: NaN, dropped
        diffs = (counts @ x1) / (counts @ d1) - (counts @ x0) / (counts @ d0)
    return _change(delta, diffs)


def quantile_change(
    before: Mapping[Team, ArrayLike],
    after: Mapping[Team, ArrayLike],
    *,
    q: float = 0.5,
    method: Method = "linear",
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> Change | None:
    """The change of a pooled quantile (e.g. the median task duration) between two periods.

    `before` and `after` map each team to its raw observations in that period; each resample
    pools the observations of the drawn teams (a team drawn twice counts twice). `method` is the
    engine's quantile rule: `linear` (interpolation, NumPy's default) or `lower`
    (sorted[floor((n−1)·q)]). None when either period has no observations.
    """
    return pooled_quantile_change(
        Pool.of(before), Pool.of(after), q=q, method=method, seed=seed, resamples=resamples
    )


@dataclass(frozen=True)
class Pool:
    """The observations of one period: `values` sorted ascending, `owner[i]` the index in
    `teams` of the team `values[i]` is from. (The order among equal values does not matter: a
    quantile of a weighted pool depends on the values only.)"""

    values: NDArray[np.float64]
    owner: NDArray[np.int64]
    teams: tuple[Team, ...]

    @classmethod
    def of(cls, period: Mapping[Team, ArrayLike]) -> Pool:
        """The pool of a mapping of each team to its observations."""
        arrays = {t: np.asarray(v, dtype=np.float64).ravel() for t, v in period.items()}
        teams = _teams(t for t, v in arrays.items() if v.size)
        values, owner = _sorted_pool(arrays, teams)
        return cls(values, owner, tuple(teams))


EMPTY_POOL = Pool(np.empty(0), np.empty(0, dtype=np.int64), ())


def pooled_quantile_change(
    before: Pool,
    after: Pool,
    *,
    q: float = 0.5,
    method: Method = "linear",
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> Change | None:
    """`quantile_change` of two pools (teams resampled the same way: the teams with
    observations in either period, in `_teams` order)."""
    if method not in ("linear", "lower"):
        raise ValueError(f"unknown quantile method {method!r}: expected 'linear' or 'lower'")
    if before.values.size == 0 or after.values.size == 0:
        return None
    present = [{pool.teams[i] for i in np.unique(pool.owner).tolist()} for pool in (before, after)]
    teams = _teams(present[0] | present[1])
    index = {t: i for i, t in enumerate(teams)}
    # each pool's owners as indices into the teams of both periods
    owners = [
        np.array([index.get(t, -1) for t in pool.teams], dtype=np.int64)[pool.owner]
        for pool in (before, after)
    ]
    before_q, after_q = (np.quantile(p.values, q, method=method) for p in (before, after))
    delta = float(after_q - before_q)
    if len(teams) < 2:
        return Change(delta, None, False)
    drawn = _drawn(len(teams), seed, resamples)
    stats = [
        _weighted_quantiles(drawn, p.values, owner, q, method)
        for p, owner in zip((before, after), owners, strict=True)
    ]
    return _change(delta, stats[1] - stats[0])


def _teams(found: Iterable[Team]) -> list[Team]:
    """Teams in a fixed order, so a seed always draws the same teams (None first)."""
    return sorted(set(found), key=lambda t: (t is not None, str(t)))


def draw_counts(teams: int, seed: int, resamples: int) -> NDArray[np.int64]:
    """How often each team is drawn in each resample: a (resamples × teams) matrix."""
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, teams, size=(resamples, teams))
    rows = np.arange(resamples)[:, None] * teams
    flat = np.bincount((drawn + rows).ravel(), minlength=resamples * teams)
    return flat.reshape(resamples, teams).astype(np.int64)


@dataclass(frozen=True)
class _Draws:
    """`draw_counts` of one (teams, seed, resamples), read-only, with the forms the quantile
    search uses: as floats (for the matrix product) and with a last column of zeros (a team
    index with no draws, for positions past the end of a pool)."""

    counts: NDArray[np.int64]
    floats: NDArray[np.float64]
    padded: NDArray[np.int64]


@functools.lru_cache(maxsize=8)
def _drawn(teams: int, seed: int, resamples: int) -> _Draws:
    """The draws of a scorecard's cells: most share their team count, so they are drawn once."""
    counts = draw_counts(teams, seed, resamples)
    padded = np.hstack([counts, np.zeros((resamples, 1), dtype=np.int64)])
    draws = _Draws(counts, counts.astype(np.float64), padded)
    for array in (draws.counts, draws.floats, draws.padded):
        array.flags.writeable = False
    return draws


def _sorted_pool(
    period: Mapping[Team, NDArray[np.float64]], teams: list[Team]
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """All observations of a period sorted ascending, with the index of each one's team."""
    values = [period.get(t, np.empty(0)) for t in teams]
    pool = np.concatenate([np.empty(0), *values])
    owner = np.repeat(np.arange(len(teams)), [v.size for v in values])
    order = np.argsort(pool, kind="stable")
    return pool[order], owner[order]


def _weighted_quantiles(
    drawn: _Draws,
    values: NDArray[np.float64],
    owner: NDArray[np.int64],
    q: float,
    method: Method,
) -> NDArray[np.float64]:
    """The q-quantile of each row's pooled sample, where row r holds `values[i]` counts[r, owner[i]]
    times: the same answer as NumPy's quantile of the repeated values, without repeating them."""
    counts = drawn.counts
    total = counts @ np.bincount(owner, minlength=counts.shape[1])
    h = (total - 1) * q
    below = np.floor(h).astype(np.int64)
    ranks = np.stack([below, np.minimum(below + 1, total - 1)], axis=1)
    at = _order_statistics(drawn, owner, ranks)
    first, second = values[at[:, 0]], values[at[:, 1]]
    stat = first if method == "lower" else first + (h - below) * (second - first)
    return np.where(total > 0, stat, np.nan)


def _order_statistics(
    drawn: _Draws, owner: NDArray[np.int64], ranks: NDArray[np.int64]
) -> NDArray[np.int64]:
    """For each resample r and rank j in ranks[r], the position in the sorted pool of its j-th
    smallest observation (0-based), when team t's observations are repeated counts[r, t] times.

    Two steps, all resamples at once, so the cost never grows with resamples × pool: how many
    drawn observations lie before each block start (one matrix product of the counts with a
    small table: how many observations of each team lie before each block start), then a
    running count inside the one block holding the rank. Every count is an integer far below
    2**53, so the product in floating point is exact.
    """
    size, teams = owner.size, drawn.counts.shape[1]
    blocks = _blocks(size, teams)
    step = -(-size // blocks)
    blocks = -(-size // step)
    per_block = np.bincount(np.arange(size) // step * teams + owner, minlength=blocks * teams)
    per_block = per_block.reshape(blocks, teams)
    before = np.cumsum(per_block, axis=0) - per_block
    # drawn observations before each block start, per resample: (resamples × blocks)
    with _one_blas_thread():
        starts = drawn.floats @ before.T.astype(np.float64)
    # the last block whose start has at most j drawn observations before it holds the j-th
    # (block 0 starts with none before it)
    lo = (starts[:, None, :] <= ranks[..., None]).sum(axis=2) - 1
    first = lo * step
    # past the end of the pool: a team index with no draws, so it adds nothing
    padded_owner = np.append(owner, np.full(step, teams))
    window = padded_owner[first[..., None] + np.arange(step)]
    running = np.take_along_axis(drawn.padded[:, None, :], window, axis=2).cumsum(axis=2)
    running += np.take_along_axis(starts, lo, axis=1).astype(np.int64)[..., None]
    at = first + (running <= ranks[..., None]).sum(axis=2)
    return np.minimum(at, size - 1)


def _one_blas_thread() -> Any:
    """Run matrix products on one BLAS thread. Products of this size gain little from more,
    and on a busy machine they lose a lot: each product waits for every helper thread, and one
    that is not scheduled stalls it (a 1,000 × 500 product then takes milliseconds, not
    microseconds), while helpers spinning between products take the cores the rest of the page
    and the server's other requests need."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


_CONTROLLER: ThreadpoolController | None = None


def _blocks(size: int, teams: int) -> int:
    """How many blocks the sorted pool is cut into: the matrix product grows with blocks ×
    teams, the running count inside a block with its length; this balances the two."""
    return max(1, min(size, round(math.sqrt(size * BLOCK_BALANCE / max(teams, 1)))))


def _change(delta: float, diffs: NDArray[np.float64]) -> Change:
    """The percentile interval of the bootstrap differences and whether it excludes 0."""
    finite = diffs[np.isfinite(diffs)]
    if finite.size == 0:
        return Change(delta, None, False)
    tail = (1 - LEVEL) / 2 * 100
    low, high = (float(v) for v in np.percentile(finite, [tail, 100 - tail]))
    return Change(delta, (low, high), low > 0 or high < 0)
