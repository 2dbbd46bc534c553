"""Analysis on top of the metric engine (DESIGN §4): the per-capability scorecard and the
bootstrap over teams that says whether a change is significant."""

from heatlens.analysis.bootstrap import Change, quantile_change, ratio_change, team_ratios
from heatlens.analysis.changes import report_changes
from heatlens.analysis.scorecard import (
    CapabilityScore,
    Cell,
    Scorecard,
    complete_periods,
    scorecard,
)

__all__ = [
    "CapabilityScore",
    "Cell",
    "Change",
    "Scorecard",
    "complete_periods",
    "quantile_change",
    "ratio_change",
    "report_changes",
    "scorecard",
    "team_ratios",
]
