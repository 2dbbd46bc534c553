"""The staggered difference-in-differences behind `heatlens impact` (heatlens.analysis.did), on
panels whose answers are known: hand-computed group-time effects, and 20 fixed seeds of simulated
team × period panels with a planted effect of known size.

The simulated panels are generated here in plain NumPy: team level + a shared period path + noise,
plus the planted effect τ in every period from a team's adoption on. Coverage is judged the way a
user reads the output: does the 95 % interval contain the truth, does it exclude 0.
"""

from __future__ import annotations

import numpy as np
import pytest

from heatlens.analysis.did import NEVER, staggered_did

SEEDS = list(range(101, 121))  # 20 fixed seeds
TAU = -5.0  # the planted effect
TEAMS, PERIODS = 40, 12


def _panel(
    seed: int, tau: float, *, step: float = 0.0, coincide: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """values (teams × periods) and each team's adoption period (NEVER for 40 % of teams).

    With `coincide`, every adopter adopts in period 5, 6 or 7 and the whole organisation improves
    by `step` from period 6 on: adoption coincides with an org-wide improvement.
    """
    rng = np.random.default_rng(seed)
    level = rng.normal(50, 10, TEAMS)[:, None]
    shared = np.cumsum(rng.normal(0, 1, PERIODS))[None, :]
    adopts = rng.random(TEAMS) < 0.6
    first, last = (5, 8) if coincide else (3, PERIODS - 2)
    group = np.where(adopts, rng.integers(first, last, TEAMS), NEVER)
    t = np.arange(PERIODS)[None, :]
    values = level + shared + np.where(t >= 6, step, 0.0) + rng.normal(0, 2, (TEAMS, PERIODS))
    values = values + np.where(adopts[:, None] & (t >= group[:, None]), tau, 0.0)
    return values, group


def test_hand_computed_group_time_effects_one_adopter_one_never() -> None:
    # team A adopts in period 1, team B never: ATT(1,1) = (4−1) − (3−2) = 2, ATT(1,2) = (6−1) −
    # (3−2) = 4
    values = np.array([[1.0, 4.0, 6.0], [2.0, 3.0, 3.0]])
    result = staggered_did(values, np.array([1, NEVER]), resamples=0)
    assert [(c.group, c.period, c.base, c.att) for c in result.cells] == [
        (1, 1, 0, 2.0),
        (1, 2, 0, 4.0),
    ]
    assert result.overall.value == pytest.approx(3.0)


def test_hand_computed_group_time_effects_two_cohorts_not_yet_adopters_as_controls() -> None:
    # A adopts in period 1, C in period 2, B never.
    #   ATT(1,1): base 0, controls B and C (C has not adopted yet): (4−1) − ((3−2)+(1−0))/2 = 2
    #   ATT(1,2): base 0, controls B only (C adopted at 2):        (6−1) − (3−2)           = 4
    #   ATT(2,1): pre-period, base 0, controls B (A adopted at 1):  (1−0) − (3−2)           = 0
    #   ATT(2,2): base 1, controls B:                              (5−1) − (3−3)           = 4
    values = np.array([[1.0, 4.0, 6.0], [2.0, 3.0, 3.0], [0.0, 1.0, 5.0]])
    result = staggered_did(values, np.array([1, NEVER, 2]), resamples=0)
    cells = {(c.group, c.period): (c.base, c.treated, c.controls, c.att) for c in result.cells}
    assert cells == {
        (1, 1): (0, 1, 2, 2.0),
        (1, 2): (0, 1, 1, 4.0),
        (2, 1): (0, 1, 1, 0.0),
        (2, 2): (1, 1, 1, 4.0),
    }
    # every adopting team × post period counts once: (2 + 4 + 4) / 3
    assert result.overall.value == pytest.approx(10 / 3)
    # by k: k=0 from ATT(1,1) and ATT(2,2), k=1 from ATT(1,2), k=−1 from ATT(2,1)
    assert {k: e.value for k, e in result.event_study.items()} == pytest.approx(
        {-1: 0.0, 0: 3.0, 1: 4.0}
    )
    assert result.pre_trend.value == pytest.approx(0.0)
    # naive: adopters after (4, 6, 5) vs before (1, 0, 1); vs never B (2, 3, 3)
    assert result.before_after.value == pytest.approx(5 - 2 / 3)
    assert result.adopters_vs_not.value == pytest.approx(5 - 8 / 3)


def test_missing_values_leave_a_team_out_of_the_cells_that_need_them() -> None:
    # B has no value in period 0, so it cannot be a control with base 0; C (never) can
    values = np.array([[1.0, 4.0], [np.nan, 3.0], [2.0, 2.5]])
    result = staggered_did(values, np.array([1, NEVER, NEVER]), resamples=0)
    [cell] = result.cells
    assert (cell.treated, cell.controls, cell.att) == (1, 1, (4 - 1) - (2.5 - 2))


def test_planted_effect_is_covered_and_detected_in_at_least_17_of_20_seeds() -> None:
    covered = detected = 0
    for seed in SEEDS:
        values, group = _panel(seed, TAU)
        ci = staggered_did(values, group, seed=seed).overall.ci
        assert ci is not None
        covered += ci[0] <= TAU <= ci[1]
        detected += ci[1] < 0 or ci[0] > 0
    assert covered >= 17, covered
    assert detected >= 17, detected


def test_no_effect_interval_contains_zero_in_at_least_17_of_20_seeds() -> None:
    contains = 0
    for seed in SEEDS:
        values, group = _panel(seed, 0.0)
        ci = staggered_did(values, group, seed=seed).overall.ci
        assert ci is not None
        contains += ci[0] <= 0 <= ci[1]
    assert contains >= 17, contains


def test_adoption_with_an_org_wide_improvement_estimate_stays_on_the_planted_effect() -> None:
    step = -8.0  # the whole organisation improves by 8 from period 6, when most teams adopt
    covered = 0
    for seed in SEEDS:
        values, group = _panel(seed, TAU, step=step, coincide=True)
        result = staggered_did(values, group, seed=seed)
        ci = result.overall.ci
        assert ci is not None and result.overall.value is not None
        covered += ci[0] <= TAU <= ci[1]
        assert abs(result.overall.value - TAU) < 2.0
        # the naive before/after takes the org-wide step for the platform's effect: far from
        # the planted effect, its interval leaves the planted effect out
        naive = result.before_after
        assert naive.value is not None and naive.value < TAU - 3
        assert naive.ci is not None and naive.ci[1] < TAU
    assert covered >= 17, covered


def test_a_pre_trend_is_caught() -> None:
    # adopters' values fall by 3 a period before they adopt, and stop falling when they do
    rng = np.random.default_rng(5)
    group = np.where(np.arange(30) < 15, 6, NEVER)
    t = np.arange(10)[None, :]
    drift = np.where((group[:, None] != NEVER) & (t < 6), -3.0 * t, -15.0)
    drift = np.where(group[:, None] == NEVER, 0.0, drift)
    values = 20 + drift + rng.normal(0, 0.5, (30, 10))
    result = staggered_did(values, group, seed=1)
    assert result.pre_trend.value == pytest.approx(-3.0, abs=0.3)
    assert result.pre_trend.significant


def test_a_bad_panel_is_refused() -> None:
    with pytest.raises(ValueError, match="period index"):
        staggered_did(np.zeros((2, 3)), np.array([0, NEVER]))
