"""Human units (issue 13): each value in the unit that suits its size, worked out by hand."""

import pytest

from heatlens.report.units import format_delta, format_value, scaled


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (9104.1, "hours", "379 d"),  # 9,104.1 / 24 = 379.3 days
        (30.0, "hours", "30.0 h"),
        (47.9, "hours", "47.9 h"),
        (48.0, "hours", "2.0 d"),
        (0.5, "hours", "30 min"),
        (0.2 / 60, "hours", "12 s"),  # 0.2 min: under two minutes reads in seconds
        (0.0325, "per day", "1 per month"),  # 1 / (0.0325 × 30.44) = 1.01, never "1 per 1 months"
        (0.75, "days", "18.0 h"),
        (3.5, "days", "3.5 d"),
        (9.96, "days", "10 d"),  # rounds to 10.0: shown whole, like every value from 10
        (45.0, "seconds", "45 s"),
        (119.0, "seconds", "119 s"),
        (300.0, "seconds", "5.0 min"),  # past two minutes: minutes
        (7200.0, "seconds", "2.0 h"),
        (2.3, "per day", "2.3/day"),
        (0.3, "per day", "2.1/week"),  # 0.3 × 7
        (0.05, "per day", "1.5/month"),  # 0.05 × 30.44
        (0.0052, "per day", "1 per 6 months"),  # 1 / (0.0052 × 30.44) = 6.3
        (0.001, "per day", "1 per 3 years"),  # 1 / (0.001 × 365.25) = 2.7
        (0.0, "per day", "0/day"),
        (0.123, "ratio", "12.3%"),
        (1234.0, "teams", "1,234"),
        (None, "hours", "—"),
    ],
)
def test_values_read_in_the_unit_that_suits_their_size(value, unit, shown):
    assert format_value(value, unit) == shown


def test_a_change_of_a_ratio_is_in_points_and_a_duration_change_in_its_own_unit():
    assert format_delta(-0.05, "ratio") == "5.0 pp"
    assert format_delta(-72.0, "hours") == "3.0 d"


@pytest.mark.parametrize(
    ("value", "unit", "like", "shown"),
    [
        # an interval's far end (2 days) reads in the hours its estimate (33.9 h) reads in
        (48.0, "hours", 33.9, "48.0 h"),
        (48.0, "hours", 48.0, "2.0 d"),
        # 6.6/week beside an estimate of 1.3/day: 6.6 / 7 = 0.94/day
        (6.6 / 7, "per day", 1.3, "0.9/day"),
        # 0.25/month beside 0.5/week: (0.25 / 30.4375) × 7 = 0.0575/week → 0.1
        (0.25 / (365.25 / 12), "per day", 0.5 / 7, "0.1/week"),
        # minutes stay minutes under an estimate in minutes, whatever the value's size
        (2.5, "hours", 0.5, "150 min"),
        (0.052, "ratio", 0.01, "5.2 pp"),
    ],
)
def test_values_shown_together_share_the_unit_of_their_reference(value, unit, like, shown):
    assert scaled(value, unit, like) == shown
    assert scaled(-value, unit, -like) == shown  # a size: the sign is the caller's
