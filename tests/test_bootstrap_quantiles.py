"""The quantile bootstrap's search for order statistics (heatlens.analysis.bootstrap): each
resample's quantile must equal NumPy's quantile of the pool with every team's observations
repeated as often as the team was drawn — computed here by repeating them."""

from __future__ import annotations

import numpy as np
import pytest

from heatlens.analysis import bootstrap
from heatlens.analysis.bootstrap import _drawn, _sorted_pool, _teams, _weighted_quantiles


def brute_force(
    counts: np.ndarray, per_team: list[np.ndarray], q: float, method: str
) -> np.ndarray:
    out = []
    for row in counts:
        pool = np.concatenate([np.repeat(v, c) for v, c in zip(per_team, row, strict=True)])
        out.append(np.quantile(pool, q, method=method) if pool.size else np.nan)
    return np.array(out)


@pytest.mark.parametrize("method", ["linear", "lower"])
@pytest.mark.parametrize(
    ("teams", "per_team", "balance"),
    [
        (2, 1, 1024),  # tiny pool: one block
        (7, 13, 1024),
        (40, 30, 1024),  # many blocks, a window running past the end of the pool
        (40, 30, 1),  # few long blocks
        (25, 200, 1 << 20),  # one observation per block
    ],
)
def test_weighted_quantiles_equal_repeating_the_drawn_teams(
    teams: int, per_team: int, balance: int, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bootstrap, "BLOCK_BALANCE", balance)
    rng = np.random.default_rng(teams * 1000 + per_team)
    # integer-valued durations: many ties, within and across teams; some teams have none
    data = {
        f"t{i:02d}": rng.integers(0, 50, size=int(rng.integers(0, per_team + 1))).astype(float)
        for i in range(teams)
    }
    data["t00"] = np.array([7.0])  # at least one observation
    names = _teams(data)
    values, owner = _sorted_pool(data, names)
    drawn = _drawn(len(names), 5, 60)
    for q in (0.5, 0.9, 0.1):
        got = _weighted_quantiles(drawn, values, owner, q, method)  # type: ignore[arg-type]
        want = brute_force(drawn.counts, [data[t] for t in names], q, method)
        np.testing.assert_array_equal(got, want)


def test_draws_are_shared_and_read_only() -> None:
    first, again = _drawn(9, 3, 20), _drawn(9, 3, 20)
    assert first is again
    np.testing.assert_array_equal(first.counts, bootstrap.draw_counts(9, 3, 20))
    assert first.counts.sum(axis=1).tolist() == [9] * 20  # each resample draws 9 teams
    assert not first.counts.flags.writeable
    assert first.padded[:, -1].tolist() == [0] * 20
