"""The metric catalog (DESIGN §4): every metric's id, dimension, unit, direction, description, the
segment keys it supports and how its observations aggregate. The report, API, docs page and
dashboard are all generated from this one table; the expressions live in the dimension modules.
"""

from __future__ import annotations

from dataclasses import dataclass

DIMENSIONS = ("adoption", "task", "efficiency", "happiness", "dora")
DIMENSION_TITLES = {
    "adoption": "Adoption",
    "task": "Task success",
    "efficiency": "Efficiency",
    "happiness": "Happiness",
    "dora": "DORA",
}
KEYS = ("capability", "team", "group", "service", "action", "environment", "survey", "question")
# report periods (metrics/periods.py computes them); "all" is one period over the whole range
GRAINS = ("day", "week", "month", "quarter", "all")
CALENDAR_GRAINS = GRAINS[:-1]
# the impact panel's default period: a team's weekly change failure rate swings too much for one
# week to be compared with the next (docs/analysis.md, "Noisy team metrics need longer periods");
# here, not in analysis/impact.py, so the CLI and the application name it without loading Ibis
IMPACT_GRAIN = "month"

_USAGE = frozenset({"capability", "team", "group", "service", "action"})
_TEAMS = frozenset({"capability", "team", "group"})
_HAPPY = frozenset({"survey", "question", "team", "group", "capability"})
_RATE = frozenset({"survey", "team", "group"})
_DORA = frozenset({"team", "group", "service", "environment"})
_INCIDENT = frozenset({"team", "group", "service"})

# the record type placing a metric's observations → the family that computes it
FAMILY_OF_RECORDS = {"usage": "usage", "survey_response": "happiness"}

# metrics placed by other records than their dimension's (see `Metric.records`)
_RECORDS = {
    "efficiency.time_to_first_deploy": "deployment",
    "efficiency.services_awaiting_first_deploy": "deployment",
    "dora.recovery_time_p50": "incident",
    "dora.time_to_restore_p50": "incident",
    "dora.open_incidents": "incident",
}


@dataclass(frozen=True)
class Metric:
    """One metric of the catalog.

    `aggregate` says how observations become a value: `count` (rows), `distinct` (distinct
    entities), `rate` (rows per day of the period), `proportion` (share of rows whose flag is
    set), `quantile` (of `measure`, at `q`), `mean`, `nps`, `response_rate`.
    `direction` is `up` when higher is better, `down` when lower is better.
    """

    id: str
    unit: str
    direction: str
    aggregate: str
    keys: frozenset[str]
    description: str
    q: float | None = None
    also_in: tuple[str, ...] = ()

    @property
    def dimension(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def records(self) -> str:
        """The record type whose time places this metric's observations: the records a range
        must hold for the metric to say anything (an empty range is told where they are)."""
        if self.id in _RECORDS:
            return _RECORDS[self.id]
        return {"happiness": "survey_response", "dora": "deployment"}.get(self.dimension, "usage")

    @property
    def family(self) -> str:
        """The family computing it, each family one query per report (issue 18): `usage`
        (adoption, task success, task durations), `delivery` (DORA, time to first deploy) or
        `happiness` (survey responses)."""
        return FAMILY_OF_RECORDS.get(self.records, "delivery")

    @property
    def zero_filled(self) -> bool:
        """Counts and per-day rates are 0, not omitted, where a segment exists (DESIGN §4)."""
        return self.aggregate in ("count", "distinct", "rate")


METRICS: tuple[Metric, ...] = (
    Metric(
        "adoption.active_users",
        "users",
        "up",
        "distinct",
        _USAGE,
        "Distinct people (`actor`) with at least one usage record in the period.",
    ),
    Metric(
        "adoption.active_teams",
        "teams",
        "up",
        "distinct",
        _USAGE,
        "Distinct resolved teams with at least one usage record in the period.",
    ),
    Metric(
        "adoption.eligible_teams",
        "teams",
        "none",
        "count",
        _TEAMS,
        "Registry teams that are not groups and exist in the period; for a capability, only "
        "after its launch and only the teams of its `eligible` list when it has one.",
    ),
    Metric(
        "adoption.team_adoption_rate",
        "ratio",
        "up",
        "proportion",
        _TEAMS,
        "Share of eligible teams that are active (active ∩ eligible ÷ eligible).",
    ),
    Metric(
        "adoption.new_teams",
        "teams",
        "up",
        "count",
        _TEAMS,
        "Teams whose first-ever usage (of the capability, when segmented by capability) falls "
        "in the period, over all stored data. Omitted (warning `history_start`) in the period "
        "holding the first stored usage, where every team looks new, unless the capability's "
        "`launched_at` is at or after that period's start.",
    ),
    Metric(
        "adoption.team_retention",
        "ratio",
        "up",
        "proportion",
        _USAGE,
        "Share of the teams active in the preceding calendar period that are active in this "
        "one; teams archived by this period's start leave the earlier set (archiving is not "
        "churn); no row for grain `all`.",
    ),
    Metric("task.attempts", "tasks", "none", "count", _USAGE, "Usage records with an outcome."),
    Metric(
        "task.success_rate",
        "ratio",
        "up",
        "proportion",
        _USAGE,
        "Share of attempts whose outcome is `success`.",
    ),
    Metric(
        "task.failure_rate",
        "ratio",
        "down",
        "proportion",
        _USAGE,
        "Share of attempts whose outcome is `failure` (the user's code or input failed).",
    ),
    Metric(
        "task.error_rate",
        "ratio",
        "down",
        "proportion",
        _USAGE,
        "Share of attempts whose outcome is `error` (the platform failed).",
    ),
    Metric(
        "task.abandon_rate",
        "ratio",
        "down",
        "proportion",
        _USAGE,
        "Share of attempts whose outcome is `abandoned`.",
    ),
    Metric(
        "task.first_attempt_success_rate",
        "ratio",
        "up",
        "proportion",
        _USAGE,
        "Share of runs (`run`, else the record itself) whose first attempt (lowest `attempt`) "
        "succeeded, counted in the period of that attempt. Without re-runs it equals the "
        "success rate.",
    ),
    Metric(
        "task.eventual_success_rate",
        "ratio",
        "up",
        "proportion",
        _USAGE,
        "Share of runs whose first attempt is in the period with any successful attempt.",
    ),
    Metric(
        "efficiency.task_duration_p50",
        "seconds",
        "down",
        "quantile",
        _USAGE,
        "Median `duration_s` of successful usage records.",
        q=0.5,
    ),
    Metric(
        "efficiency.task_duration_p90",
        "seconds",
        "down",
        "quantile",
        _USAGE,
        "90th percentile of `duration_s` of successful usage records.",
        q=0.9,
    ),
    Metric(
        "efficiency.time_to_first_deploy",
        "days",
        "down",
        "quantile",
        _INCIDENT,
        "Median days from a service's `created_at` to its first production deployment, counted "
        "in that deployment's period; only services created on or after the first stored "
        "deployment (older ones: warning `created_before_history`).",
        q=0.5,
    ),
    Metric(
        "efficiency.services_awaiting_first_deploy",
        "services",
        "down",
        "count",
        _INCIDENT,
        "Services (with `created_at`) created before the period's end with no production "
        "deployment by then.",
    ),
    Metric(
        "happiness.respondents",
        "people",
        "none",
        "distinct",
        _HAPPY,
        "Distinct respondents of the survey waves that open in the period.",
    ),
    Metric(
        "happiness.csat",
        "ratio",
        "up",
        "proportion",
        _HAPPY,
        "Share of `csat` answers scoring 4 or 5 (top-2-box).",
    ),
    Metric(
        "happiness.nps",
        "score",
        "up",
        "nps",
        _HAPPY,
        "100 × (promoters − detractors) ÷ answers of `nps` questions (promoters 9–10, "
        "detractors 0–6).",
    ),
    Metric(
        "happiness.likert_mean",
        "score",
        "up",
        "mean",
        _HAPPY,
        "Mean score of `likert` answers; use --by question.",
    ),
    Metric(
        "happiness.likert_median",
        "score",
        "up",
        "quantile",
        _HAPPY,
        "Median score of `likert` answers; use --by question.",
        q=0.5,
    ),
    Metric(
        "happiness.response_rate",
        "ratio",
        "up",
        "response_rate",
        _RATE,
        "Distinct respondents ÷ summed invitations of the waves opening in the period.",
    ),
    Metric(
        "dora.deployments",
        "deployments",
        "up",
        "count",
        _DORA,
        "Successful production deployments finished in the period.",
    ),
    Metric(
        "dora.deployment_frequency",
        "per day",
        "up",
        "rate",
        _DORA,
        "Deployments per day of the period.",
    ),
    Metric(
        "dora.lead_time_p50",
        "hours",
        "down",
        "quantile",
        _DORA,
        "Median hours from `committed_at` (`authored_at` with `lead_time_start = authored`) to "
        "the first deployment of each (change, service) that ships it.",
        q=0.5,
        also_in=("efficiency",),
    ),
    Metric(
        "dora.lead_time_p90",
        "hours",
        "down",
        "quantile",
        _DORA,
        "90th percentile of the lead time of (change, service) pairs.",
        q=0.9,
        also_in=("efficiency",),
    ),
    Metric(
        "dora.change_failure_rate",
        "ratio",
        "down",
        "proportion",
        _DORA,
        "Share of deployments that failed: at least one incident links to it, or "
        "(`failure_from_remediation`) a later rollback or hotfix of its service remediates it. "
        "Omitted (warning `no_failure_signal`) where no incident was ever stored for the "
        "segment's services and no deployment has a known `kind`.",
    ),
    Metric(
        "dora.rework_rate",
        "ratio",
        "down",
        "proportion",
        _DORA,
        "Share of deployments whose `kind` is `hotfix` or `rollback`, over the deployments "
        "whose `kind` is known; omitted when none is.",
    ),
    Metric(
        "dora.recovery_time_p50",
        "hours",
        "down",
        "quantile",
        _INCIDENT,
        "Median hours from a linked deployment's `finished_at` to the incident's "
        "`resolved_at`, in the period of `resolved_at`.",
        q=0.5,
    ),
    Metric(
        "dora.time_to_restore_p50",
        "hours",
        "down",
        "quantile",
        _INCIDENT,
        "Median hours from `opened_at` to `resolved_at` of resolved incidents, in the period of "
        "`resolved_at`; negative values dropped (warning).",
        q=0.5,
    ),
    Metric(
        "dora.open_incidents",
        "incidents",
        "down",
        "count",
        _INCIDENT,
        "Incidents opened before the period's end and not resolved by it: a long outage shows "
        "here while the medians wait for it to close.",
    ),
)

CATALOG: dict[str, Metric] = {m.id: m for m in METRICS}


def select(patterns: tuple[str, ...] | list[str] = ()) -> list[Metric]:
    """Metrics matching ids or prefixes (`dora`, `dora.lead_time`), in catalog order; all if none.

    Raises KeyError naming the first pattern that matches nothing.
    """
    if not patterns:
        return list(METRICS)
    chosen = []
    for pattern in patterns:
        stem = pattern.rstrip("._")
        matched = [
            m for m in METRICS if m.id == pattern or m.id.startswith((stem + ".", stem + "_"))
        ]
        if not matched:
            raise KeyError(pattern)
        chosen += [m for m in matched if m not in chosen]
    return [m for m in METRICS if m in chosen]
