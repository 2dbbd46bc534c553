"""Human units (issue 13): each value in the unit that suits its size, worked out by hand."""

import pytest

from heatlens.report.units import format_delta, format_value


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
