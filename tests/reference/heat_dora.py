"""Plain-Python reference implementation of DESIGN §4 (HEAT and DORA metric definitions), v2.

Written from DESIGN.md alone, independently of the Ibis metric engine, so that property tests can
compare the engine against it on random data. Readability beats speed: every metric is computed by
filtering plain lists of records period by period and segment by segment.

Public interface
----------------
- ``Settings`` — timezone, production environments (glob patterns), incident link window, quantile
  mode, tier year; (v2) failure_from_remediation, failure_severities, tier_min_n, lead_time_start,
  bot_actors, with DESIGN §5's defaults. ``PRESETS`` and ``settings_for(definitions, **explicit)``:
  the ``definitions`` presets as settings (explicit settings win over the preset).
- ``report(records, *, grain, start, end, by=(), metrics=None, settings=..., now=None) -> dict``
  returns ``{"warnings": [{code, message, count}], "rows": [{metric, period, segment, value, n, ci,
  suppressed, tier, complete}]}`` exactly like DESIGN §5's report JSON (rows sorted by metric in
  catalog order, then period, then segment values with None first; order is not part of the
  contract). ``metrics`` takes ids or string prefixes (``"dora"``, ``"dora.lead_time"``).
- ``link_incidents(records, settings) -> {incident_id: (deployment_id | None, rule)}`` with rule
  ``"deployment_id"``, ``"root_cause_sha"``, ``"window"``, ``"unlinked"`` (deployment None) or
  (v2) ``"severity"`` (left out by ``failure_severities``; deployment None).
- ``failed_deployments(records, settings)``: (v2) each failed deployment with the incidents linked
  to it and the rollback or hotfix that remediated it.
- ``glob_match(value, pattern)``: the glob rule of ``production_environments`` and ``bot_actors``.
- ``tier(metric, value, year) -> "elite" | "high" | "medium" | "low"`` (ValueError for a metric with
  no tier in that year).
- ``quantile``, ``proportion_ci``, ``nps_ci``: the §4 formulas.

Segment keys each metric supports (a ``by`` containing any other key gives no rows for the metric,
and no warnings that belong to it):

- adoption.active_users, active_teams, team_retention: capability, team, group, service, action
- adoption.eligible_teams, team_adoption_rate, new_teams: capability, team, group
- task.* (incl. first_attempt_success_rate, eventual_success_rate),
  efficiency.task_duration_p50/_p90: capability, team, group, service, action
- efficiency.time_to_first_deploy, services_awaiting_first_deploy: team, group, service
- happiness.respondents, csat, nps, likert_mean, likert_median: survey, question, team, group,
  capability
- happiness.response_rate: survey, team, group
- dora.deployments, deployment_frequency, lead_time_p50/_p90, change_failure_rate, rework_rate:
  team, group, service, environment
- dora.recovery_time_p50, dora.time_to_restore_p50, dora.open_incidents: team, group, service

Segment values of a record: usage — capability, resolved team, its group, service, action;
deployment (and lead-time pairs, time to first deploy) — the deployment's resolved team, group,
service, environment (after the ``production`` default, lower-cased); incident — resolved team,
group, service; survey response — survey, question, team (as given), group, capability; survey
invitation — survey, team, group. Team resolution: the record's ``team``, else the registry owner
of its ``service``, else (usage only) the team of its ``actor`` by membership at ``ts``. Group: the
top-level ancestor (following ``parent`` in the team registry; a team with no parent is its own
group; an id not in the registry is its own group; None stays None).

Which segment values "exist" in a period (zero-filled for counts and per-day rates):
- team: registry teams with ``created_at`` null or < period end and ``archived_at`` null or > period
  start; plus team ids found in no registry but seen anywhere in the store (membership.team,
  service.team, usage.team, deployment.team, change.team, incident.team, survey_response.team,
  survey_invitation.team, team.parent) — those exist in every period.
- group: the groups of the existing team values.
- service: registry services with ``created_at`` null or < period end; plus unregistered ids
  seen in usage/deployment/change/incident ``service``.
- capability: registry capabilities (launched_at null or not after the period end); plus
  unregistered ids seen in usage.capability, survey_response.capability,
  survey.questions[].capability.
- action (usage.action), question (survey_response.question and survey.questions[].id): values
  seen anywhere, every period; environment: (v2) the lower-cased production environments of any
  deployment record, every period.
- (v2) DORA metrics only: teams that own no service (registry ``service.team``) and are the
  resolved team of no deployment record (any environment or result) are not in the team domain and
  get no rows at all (not even from incidents); the group domain is the groups of the other teams.
- survey: a survey id (registry, responses, invitations) exists only in its wave's period.
- None never exists by itself: a None segment value only appears where it has observations.
Several ``by`` keys: the cross product of the keys' existing values, plus observed combinations.
Rows are then dropped for a registry capability in periods that end before its ``launched_at``.

Warnings (only emitted with count > 0, and only for metrics that produce rows; "in range" = the
timestamp that buckets the item lies in [--from, --to)):
- negative_lead_time: (change, service) pairs with negative lead time, deployment in range.
- negative_recovery_time: resolved linked incidents with negative recovery time, resolved in range.
- negative_time_to_first_deploy: services with a negative value, first deployment in range.
- deployment_without_commits (with lead time metrics): DORA deployments in range with neither
  ``commit_sha`` nor a non-empty ``commits``.
- unlinked_incidents (with change_failure_rate or recovery_time_p50): incidents opened in range that
  are unlinked, not counting those with ``cause`` ``external``.
- ineligible_active_teams (with eligible_teams or team_adoption_rate): distinct (period, capability,
  team) over the output periods where the team used the capability but is not eligible for it.
- suppressed_segments: the number of suppressed rows in the output.
- unknown_services (always): distinct service ids named by usage, deployments, changes or incidents
  that have no service record.
(v2), incidents after the ``failure_severities`` filter:
- negative_time_to_restore: resolved incidents with resolved_at < opened_at, resolved in range.
- excluded_environments (with any deployment metric: deployments, frequency, lead time, change
  failure rate, rework): successful deployments to non-production environments, finished in range;
  the message names the three most frequent (lower-cased).
- repeated_deployments (with any deployment metric): DORA deployments finished in range, not
  rollbacks, whose ``commit_sha`` an earlier (finished_at, id) DORA deployment of the same service
  and (lower-cased) environment had as its ``commit_sha`` (regions are not repeats).
- unknown_changes (with lead time metrics): distinct shas shipped (commit_sha or commits) by DORA
  deployments finished in range that have no change record.
- cross_service_links, root_cause_not_yet_deployed (with change_failure_rate or
  recovery_time_p50): incidents opened in range linked by ``deployment_id`` to a deployment of a
  service other than their own ``service`` (set); incidents opened in range that rule 2 left
  unlinked (sha never shipped, or only after ``opened_at``). Both kinds of unlinked incidents also
  count in unlinked_incidents.
- no_failure_signal: change-failure-rate rows omitted for lack of a signal.
- history_start: new_teams rows omitted (zero-filled ones included).
- created_before_history: services dropped from time_to_first_deploy as older than the stored
  history, counted when their first production deployment is in range.
Every message names, in backticks, the setting or record field that changes it.
Messages are free text; compare codes and counts.

DESIGN ambiguities and the decisions taken (each also marked ``# DESIGN ambiguity:`` in the code)
-----------------------------------------------------------------------------------------------
1. Days of a period are calendar days (date difference), not elapsed hours / 24, across DST changes.
2. ``complete`` compares the *clipped* period end (the row's period) with ``now``.
3. team_retention compares the row's (clipped) period with the full calendar period immediately
   preceding the calendar period the row belongs to (even when that lies before --from).
4. A registry team "exists" in a period under the same created/archived conditions as eligibility.
5. Values found in no registry (incl. unregistered team/service/capability ids) exist in every
   period; None is never zero-filled (it appears only with observations).
6. A survey "exists" as a segment value only in its wave's period; a wave with a survey record but
   no ``opens_at`` falls back to its first response; a wave with neither is never counted.
7. Group of a team without parent is the team itself; ids outside the registry are their own group.
8. Several memberships active at a usage's ``ts``: the one with the latest ``from`` (null earliest),
   ties lowest team id. Membership ``to`` is exclusive, ``from`` inclusive.
9. Capability launch: rows exist when period end >= launched_at ("no rows for periods that end
   before"), while eligibility needs period end > launched_at ("periods ending after") — so a period
   ending exactly at launch shows the capability with 0 eligible teams.
10. A capability ``eligible`` list that is empty means no team is eligible (it "has one").
11. Empty team registry: eligible teams are the resolved teams of all usage records (any capability,
    any time), still subject to the capability's launch and ``eligible`` list.
12. new_teams by team/group counts the team in its own team/group; only non-null resolved teams.
13. time_to_first_deploy uses the first *successful* production deployment (lowest
    (finished_at, id)) and is segmented by that deployment's team/service; value in days.
14. Happiness ``n`` is the number of distinct (survey, respondent) behind the value (for csat/nps/
    likert: those who gave a scored answer of that kind), overriding "denominator of a proportion";
    the interval still uses answer counts (csat x/answers; NPS P, D, answers).
15. response_rate = distinct (survey, respondent) ÷ summed invitations of the waves in the period
    and segment (no restriction to invited waves, so it can exceed 1); omitted when no
    invitations; its ``ci`` is the proportion interval when respondents ≤ invitations, else
    null; it is subject to anonymity suppression like every happiness metric (its respondents,
    not its invitations, are compared with k) and counts respondents whatever other metrics
    suppress.
16. A segment with zero respondents (a zero-filled happiness.respondents row) is never suppressed
    and takes no part in complementary suppression — there is no survey (hence no k) behind it.
17. Complementary suppression: the k of a group of segments is the largest k among them; "fewer
    than k respondents" sums the segments' respondent counts; it only runs when at least one segment
    is suppressed; ties on respondents break by the lowest segment value with None lowest. With
    several keys, for each key in ``by`` order, each set of cells sharing the other keys' values
    is a margin treated like a one-key report; passes repeat until nothing changes.
18. Survey response capability: the response's ``capability``, else the ``capability`` of that
    question in its survey record's ``questions``.
19. Survey k of a survey without record is 5; comments are not part of report rows.
20. time_to_restore_p50 covers all resolved incidents, linked or not; (v2) negatives are dropped
    (warning ``negative_time_to_restore``), as DESIGN v2 now states.
21. Incidents have no environment: restore/recovery times support team, group, service only.
22. Incident links: ``root_cause_sha``'s "first deployment" is the lowest (finished_at, id) among
    successful production deployments containing the sha (v2: finished at or before
    ``opened_at``); ``deployment_id`` links regardless of the incident's service (v2: warned); a
    field is "present" when not None.
23. ``tier`` is set on rows whose ``by`` includes team or service, for the tiered metrics of the
    tier year only (recovery_time_p50 in 2023, time_to_restore_p50 in 2021).
24. Proportion/NPS intervals are computed on unrounded inputs; values are not rounded.
25. Counts (and eligible_teams, new_teams, respondents): ``n`` = the value (DESIGN defines n only
    for proportions, quantiles, means, frequency and happiness; §5's example has n = value).
26. happiness.respondents counts every answer kind, text included; csat/nps/likert use only
    answers of their kind with a score. Without ``--by question`` likert answers of different
    questions are pooled (DESIGN only recommends ``--by question``).
27. Lead time: only changes with a change record; shas match exactly (no short-sha prefixing);
    only successful production deployments ship. (v2) Environment zero-fill covers production
    environments only (it covered every environment seen in v1).
28. Each happiness metric is suppressed on its own (its own respondents per segment); the
    complementary rule runs per metric and period.
29. Warning scopes and counts are decisions too (see "Warnings" above).

Readings of DESIGN (v2)
-----------------------
Where DESIGN v2 is ambiguous, how this reference reads it (most also marked in the code):

R1.  Globs (``production_environments``, ``bot_actors``): ``*`` and ``?`` are wildcards, every other
    character is literal — ``[`` is no character class, so the default ``*[bot]`` means "ends in
    ``[bot]``" (under fnmatch it would mean "ends in b, o or t"). Matching is case-insensitive
    for both (DESIGN says so for environments only; GitHub logins are case-insensitive).
R2.  Remediation: among DORA deployments (successful, production) of the same service, in any
    production environment (DESIGN says "same service", not "same environment"); "earlier" and
    "latest" follow (finished_at, id). A deployment remediated twice is simply failed. A failed
    or non-production rollback remediates nothing. Rollbacks and hotfixes are never failed by
    their own kind; a hotfix can be remediated by a later hotfix or rollback.
R3.  ``failure_severities`` leaves the other incidents out of every DORA computation: links,
    failed deployments, recovery, restore, open incidents, the incident warnings and the failure
    signal. ``link_incidents`` reports them with rule ``"severity"``. Severities compare as
    lower-cased strings; an incident without severity always counts.
R4.  ``no_failure_signal``: a row's services are the services of its deployments; a service has a
    signal when an incident (after the severity filter) names it as ``service`` or links to one of
    its deployments, or when one of its DORA deployments has a known ``kind`` — both at any time
    ("ever"), so a deployment whose rollback comes in a later period keeps its value. The
    signal does not depend on ``failure_from_remediation``. The warning counts omitted rows.
R5.  ``root_cause_not_yet_deployed`` counts every incident rule 2 leaves unlinked, including a sha
    never deployed (DESIGN: "among those finished by the incident's opened_at, else unlinked
    (warning …)"). "Finished by" is ``finished_at <= opened_at``.
R6.  ``cross_service_links``: only rule 1 can cross services; an incident without ``service`` never
    does.
R7.  ``dora.open_incidents``: open at the period's (clipped) end ``E`` when ``opened_at < E`` and
    (``resolved_at`` is null or ``resolved_at >= E``) — an incident resolved exactly at ``E`` is
    resolved in the next period, so still open in this one. Zero-filled like every count.
R8.  ``complete`` for change failure rate and recovery time: the (clipped) period end plus the
    link window (7 days when unbounded; 0 for a window of 0) must be ≤ now. Time to restore,
    rework and open incidents do not wait. A happiness row is incomplete while a survey
    contributing to it (its responses or invitations in that row) has ``closes_at`` > now.
R9.  ``tier_min_n`` compares with the row's ``n`` (deployments for CFR, observations for lead time,
    recovery and restore); deployment frequency is not gated.
R10. "Teams that own no service and appear on no deployment": ownership by a registry service's
    ``team``; "appear" = resolved team of any deployment record (any environment or result), over
    all stored data. Such teams get no DORA row of any metric (incident metrics included) when
    ``--by team``; ``--by group`` zero-fills only groups of the other teams.
R11. ``lead_time_start = "authored"`` uses ``authored_at`` when present, else ``committed_at``.
R12. Bots leave every adoption metric, including the empty-registry eligible teams and the
    ineligible_active_teams warning; they stay in task and efficiency metrics.
R13. Runs: a run is keyed by ``run`` alone (whatever the capability), else by the record's id;
    only records with an outcome take part; its first attempt is the lowest ``attempt`` (null
    read as 1; ties by ts, then id); the run is bucketed and segmented by that record.
R14. ``history_start``: "the period that contains the first stored usage" is the calendar
    period (so a clipped first period counts when history starts in its clipped-off part; grain
    ``all``: the range); "first stored usage" is over all usage, bots included; "launched_at inside
    or after that period's start" is ``launched_at >= calendar period start``. Without ``--by
    capability`` the first usage of anything decides and no launch date exempts the row.
R15. ``created_before_history``: history starts at the earliest ``finished_at`` of any deployment
    record (any environment or result); ``created_at`` before it excludes the service.
R16. ``services_awaiting_first_deploy``: only services with ``created_at``; a production
    deployment is a successful one finished before the period's end; segmented by the service's
    registry team; services older than the history are not excluded.
R17. Archived teams leave the previous period's set when ``archived_at`` ≤ the row's (clipped)
    period start.
R18. Presets (``definitions``): ``devlake`` = unbounded window, ``lower`` quantiles, 2021 tiers,
    no remediation, tier_min_n 1, lead time from ``authored_at``; ``fourkeys`` = window 0 (docs:
    ``"0m"``: only root-cause links, bar an incident at the very instant of a deployment), linear
    quantiles, 2021 tiers (restore time, as Four Keys measures it), no remediation, tier_min_n 1,
    lead time from ``committed_at``. Severities: all, for both. Settings a preset does not name
    (production environments, bot actors) keep their defaults.
R19. Codes DESIGN does not name: ``negative_time_to_restore``, ``repeated_deployments`` (rollbacks
    are not counted — they redeploy a known sha by nature) and ``unknown_changes``.
R20. Not covered here (no reference rule): ``ingest_timezone`` (ingest), ``--grain all`` default
    range (CLI), ``check``/scorecard/tensions on complete rows (analysis), and refusing a
    continuous survey at day/week (the reference leaves its answers out with the warning).
R21. (v2) Anonymity across queries replaces decisions 16, 17 and 28's margins: happiness rows are
    computed as if ``survey`` were always a key (a period without a wave has no happiness row);
    per wave and answer family, every (team node, question node) cell — team nodes org, group,
    team; question nodes all, capability, question, (question, capability) — is hidden when
    under k distinct respondents; then every split (org by group or team, group by team; all by
    capability, question or both; capability by question; question by capability) must have
    no hidden child, or at least two with k distinct respondents together.
R22. "Else suppress more children, fewest respondents first": a split with exactly one hidden
    child breaks the rule too (DESIGN's within-query rule: one hidden segment is its parent
    minus the visible ones); the visible child with the fewest respondents among all breaking
    splits is hidden, one at a time (ties: its sorted atomic cells, None lowest), until none
    breaks — an order-free reading of "fewest respondents first".
R23. "Whether or not the parent is in the query": a hidden parent needs a hidden child in each
    split (else it is the sum of visible children) — so, by R22, at least two.
R24. Continuous survey (``continuous``): a wave per calendar month of answer time (report time
    zone) counted at the month's first day (a clipped month is left out, never split); no
    zero-fill and no response rate; a coarser period pools its months and is hidden when any
    of its months is; at grain day or week its answers are left out (warning
    ``continuous_survey_grain``: continuous answers with ``ts`` in range).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import product
from typing import Any
from zoneinfo import ZoneInfo

Z = 1.959964

METRICS: tuple[str, ...] = (
    "adoption.active_users",
    "adoption.active_teams",
    "adoption.eligible_teams",
    "adoption.team_adoption_rate",
    "adoption.new_teams",
    "adoption.team_retention",
    "task.attempts",
    "task.success_rate",
    "task.failure_rate",
    "task.error_rate",
    "task.abandon_rate",
    "task.first_attempt_success_rate",
    "task.eventual_success_rate",
    "efficiency.task_duration_p50",
    "efficiency.task_duration_p90",
    "efficiency.time_to_first_deploy",
    "efficiency.services_awaiting_first_deploy",
    "happiness.respondents",
    "happiness.csat",
    "happiness.nps",
    "happiness.likert_mean",
    "happiness.likert_median",
    "happiness.response_rate",
    "dora.deployments",
    "dora.deployment_frequency",
    "dora.lead_time_p50",
    "dora.lead_time_p90",
    "dora.change_failure_rate",
    "dora.rework_rate",
    "dora.recovery_time_p50",
    "dora.time_to_restore_p50",
    "dora.open_incidents",
)

KEYS = ("capability", "team", "group", "service", "action", "environment", "survey", "question")
GRAINS = ("day", "week", "month", "quarter", "all")

_USAGE_KEYS = frozenset({"capability", "team", "group", "service", "action"})
_TEAM_KEYS = frozenset({"capability", "team", "group"})
_HAPPY_KEYS = frozenset({"survey", "question", "team", "group", "capability"})
_RATE_KEYS = frozenset({"survey", "team", "group"})
_DORA_KEYS = frozenset({"team", "group", "service", "environment"})
_INCIDENT_KEYS = frozenset({"team", "group", "service"})

SUPPORTED_KEYS: dict[str, frozenset[str]] = {
    "adoption.active_users": _USAGE_KEYS,
    "adoption.active_teams": _USAGE_KEYS,
    "adoption.eligible_teams": _TEAM_KEYS,
    "adoption.team_adoption_rate": _TEAM_KEYS,
    "adoption.new_teams": _TEAM_KEYS,
    "adoption.team_retention": _USAGE_KEYS,
    "task.attempts": _USAGE_KEYS,
    "task.success_rate": _USAGE_KEYS,
    "task.failure_rate": _USAGE_KEYS,
    "task.error_rate": _USAGE_KEYS,
    "task.abandon_rate": _USAGE_KEYS,
    "task.first_attempt_success_rate": _USAGE_KEYS,
    "task.eventual_success_rate": _USAGE_KEYS,
    "efficiency.task_duration_p50": _USAGE_KEYS,
    "efficiency.task_duration_p90": _USAGE_KEYS,
    "efficiency.time_to_first_deploy": _INCIDENT_KEYS,
    "efficiency.services_awaiting_first_deploy": _INCIDENT_KEYS,
    "happiness.respondents": _HAPPY_KEYS,
    "happiness.csat": _HAPPY_KEYS,
    "happiness.nps": _HAPPY_KEYS,
    "happiness.likert_mean": _HAPPY_KEYS,
    "happiness.likert_median": _HAPPY_KEYS,
    "happiness.response_rate": _RATE_KEYS,
    "dora.deployments": _DORA_KEYS,
    "dora.deployment_frequency": _DORA_KEYS,
    "dora.lead_time_p50": _DORA_KEYS,
    "dora.lead_time_p90": _DORA_KEYS,
    "dora.change_failure_rate": _DORA_KEYS,
    "dora.rework_rate": _DORA_KEYS,
    "dora.recovery_time_p50": _INCIDENT_KEYS,
    "dora.time_to_restore_p50": _INCIDENT_KEYS,
    "dora.open_incidents": _INCIDENT_KEYS,
}

# Record fields holding timestamps (DESIGN §3); strings are accepted for convenience.
_TIMESTAMPS: dict[str, tuple[str, ...]] = {
    "team": ("created_at", "archived_at"),
    "membership": ("from", "to"),
    "service": ("created_at",),
    "capability": ("launched_at",),
    "usage": ("ts",),
    "deployment": ("finished_at", "started_at"),
    "change": ("committed_at", "authored_at", "pr_opened_at", "merged_at"),
    "incident": ("opened_at", "resolved_at"),
    "survey": ("opens_at", "closes_at"),
    "survey_response": ("ts",),
    "survey_invitation": (),
}
_DEFAULTS: dict[str, dict[str, Any]] = {
    # (v2) no default for `kind`: null means unknown
    "deployment": {"environment": "production", "result": "success"},
    "survey": {"k": 5, "comment_k": 10, "continuous": False},
}

_DEPLOYMENT_METRICS = frozenset(
    {
        "dora.deployments",
        "dora.deployment_frequency",
        "dora.lead_time_p50",
        "dora.lead_time_p90",
        "dora.change_failure_rate",
        "dora.rework_rate",
    }
)

Row = dict[str, Any]
Cell = tuple[Any, ...]


# the clock of a report called without `now`: after every test's data, never today, so a
# result cannot change with the date the suite runs on
DEFAULT_NOW = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Settings:
    """The settings the metric definitions read (DESIGN §5's table; names as there)."""

    timezone: str = "UTC"
    production_environments: tuple[str, ...] = ("production", "prod")  # (v2) glob patterns
    incident_link_window: timedelta | None = timedelta(days=7)  # None = unbounded
    quantile: str = "linear"  # or "lower"
    tier_year: int = 2023  # or 2021
    failure_from_remediation: bool = True  # (v2)
    failure_severities: tuple[str, ...] = ()  # (v2) empty = all severities
    tier_min_n: int = 5  # (v2)
    lead_time_start: str = "committed"  # (v2) or "authored"
    bot_actors: tuple[str, ...] = ("*[bot]",)  # (v2) glob patterns


DEFAULT_SETTINGS = Settings()

# (v2) `definitions`: the settings each preset implies (DESIGN §5; docs/metrics.md "How the peers
# define these"). Settings a preset does not name keep their defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "heatlens": {},
    "devlake": {
        "incident_link_window": None,  # the last deployment before the incident, however long
        "quantile": "lower",
        "tier_year": 2021,
        "failure_from_remediation": False,  # failures only through incidents
        "failure_severities": (),
        "tier_min_n": 1,  # a tier on any row
        "lead_time_start": "authored",  # first commit's authored time
    },
    "fourkeys": {
        "incident_link_window": timedelta(0),  # no link by time (bar an incident at the instant)
        "quantile": "linear",
        "tier_year": 2021,  # restore time, as Four Keys measures it
        "failure_from_remediation": False,
        "failure_severities": (),
        "tier_min_n": 1,
        "lead_time_start": "committed",
    },
}


def settings_for(definitions: str = "heatlens", **overrides: Any) -> Settings:
    """Settings of a `definitions` preset; explicit settings (overrides) win over the preset."""
    if definitions not in PRESETS:
        raise ValueError(f"unknown definitions {definitions!r}: expected one of {sorted(PRESETS)}")
    return Settings(**{**PRESETS[definitions], **overrides})


# --------------------------------------------------------------------------- formulas


def quantile(values: Iterable[float], q: float, mode: str = "linear") -> float:
    """Quantile q of values: linear interpolation (NumPy default) or ``lower``."""
    xs = sorted(values)
    if not xs:
        raise ValueError("quantile of no values")
    h = (len(xs) - 1) * q
    lo = math.floor(h)
    if mode == "lower":
        return xs[lo]
    if mode != "linear":
        raise ValueError(f"unknown quantile mode {mode!r}")
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def proportion_ci(x: float, n: float) -> list[float]:
    """95 % interval of x/n: p̃ = (x + z²/2)/(n + z²), p̃ ± z·√(p̃(1−p̃)/(n + z²)), in [0, 1]."""
    z2 = Z * Z
    p = (x + z2 / 2) / (n + z2)
    half = Z * math.sqrt(p * (1 - p) / (n + z2))
    return [max(0.0, p - half), min(1.0, p + half)]


def nps_ci(promoters: int, detractors: int, n: int) -> list[float]:
    """95 % interval of the NPS with the +3 (¾ each) adjustment of DESIGN §4, in [−100, 100]."""
    n2 = n + 3
    pp = (promoters + 0.75) / n2
    pd = (detractors + 0.75) / n2
    d = pp - pd
    half = Z * math.sqrt((pp + pd - d * d) / n2)
    return [max(-100.0, 100 * (d - half)), min(100.0, 100 * (d + half))]


_TIERS: dict[int, dict[str, tuple[str, tuple[float, float, float]]]] = {
    # metric -> (comparison, (elite, high, medium) thresholds); units: per day, hours, fraction
    2023: {
        "deployment_frequency": (">=", (1.0, 1 / 7, 1 / 30)),
        "lead_time_p50": ("<", (24.0, 7 * 24.0, 30 * 24.0)),
        "change_failure_rate": ("<=", (0.05, 0.10, 0.15)),
        "recovery_time_p50": ("<", (1.0, 24.0, 7 * 24.0)),
    },
    2021: {
        "deployment_frequency": (">=", (1.0, 1 / 30, 1 / 182)),
        "lead_time_p50": ("<", (1.0, 7 * 24.0, 182 * 24.0)),
        "change_failure_rate": ("<=", (0.15, 0.20, 0.30)),
        "time_to_restore_p50": ("<", (1.0, 24.0, 7 * 24.0)),
    },
}


def tier(metric: str, value: float, year: int = 2023) -> str:
    """DORA performance tier of one value (metric id with or without ``dora.``)."""
    name = metric.removeprefix("dora.")
    if year not in _TIERS or name not in _TIERS[year]:
        raise ValueError(f"no {year} tier for {metric}")
    op, thresholds = _TIERS[year][name]
    for label, limit in zip(("elite", "high", "medium"), thresholds, strict=True):
        if (
            (op == ">=" and value >= limit)
            or (op == "<" and value < limit)
            or (op == "<=" and value <= limit)
        ):
            return label
    return "low"


def _has_tier(metric: str, year: int) -> bool:
    return metric.startswith("dora.") and metric.removeprefix("dora.") in _TIERS.get(year, {})


# --------------------------------------------------------------------------- periods


@dataclass(frozen=True)
class Period:
    start: date  # clipped start (the label)
    end: date  # clipped end, exclusive
    cal_start: date  # the calendar period (unclipped)
    cal_end: date
    start_dt: datetime
    end_dt: datetime

    @property
    def label(self) -> str:
        return self.start.isoformat()

    @property
    def days(self) -> int:
        # DESIGN ambiguity: days are calendar days (dates), also across DST changes.
        return (self.end - self.start).days

    def has(self, day: date) -> bool:
        return self.start <= day < self.end


def _calendar_start(d: date, grain: str) -> date:
    if grain == "day":
        return d
    if grain == "week":
        return d - timedelta(days=d.weekday())
    if grain == "month":
        return d.replace(day=1)
    if grain == "quarter":
        return date(d.year, 3 * ((d.month - 1) // 3) + 1, 1)
    raise ValueError(grain)


def _calendar_next(d: date, grain: str) -> date:
    if grain == "day":
        return d + timedelta(days=1)
    if grain == "week":
        return d + timedelta(days=7)
    months = 1 if grain == "month" else 3
    m = d.month - 1 + months
    return date(d.year + m // 12, m % 12 + 1, 1)


def _local_midnight(d: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(d, time(0), tzinfo=tz)


def periods(grain: str, start: date, end: date, tz: ZoneInfo) -> list[Period]:
    """The output periods: calendar periods in tz, the first and last clipped to [start, end)."""
    if grain not in GRAINS:
        raise ValueError(f"unknown grain {grain!r}")
    out: list[Period] = []
    if start >= end:
        return out
    if grain == "all":
        return [
            Period(start, end, start, end, _local_midnight(start, tz), _local_midnight(end, tz))
        ]
    cal = _calendar_start(start, grain)
    while cal < end:
        nxt = _calendar_next(cal, grain)
        s, e = max(cal, start), min(nxt, end)
        out.append(Period(s, e, cal, nxt, _local_midnight(s, tz), _local_midnight(e, tz)))
        cal = nxt
    return out


# --------------------------------------------------------------------------- data


def _ts(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got {value!r}")
    return value


def _normalise(records: dict[str, list[dict]]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for name, ts_fields in _TIMESTAMPS.items():
        rows = []
        for rec in records.get(name, []) or []:
            r = dict(rec)
            for f in ts_fields:
                r[f] = _ts(r.get(f))
            for f, default in _DEFAULTS.get(name, {}).items():
                if r.get(f) is None:
                    r[f] = default
            rows.append(r)
        out[name] = rows
    return out


def glob_match(value: str, pattern: str) -> bool:
    """Case-insensitive glob: `*` any run, `?` one character, everything else literal."""
    # DESIGN ambiguity: `[` is literal (the default bot pattern `*[bot]` is no character class).
    regex = "".join(
        ".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern.lower()
    )
    return re.fullmatch(regex, value.lower(), flags=re.DOTALL) is not None


def _is_production(env: str, settings: Settings) -> bool:
    return any(glob_match(env, p) for p in settings.production_environments)


def _shas(d: dict) -> set[str]:
    """Commits a deployment ships: its commit_sha and its commits list (never inferred)."""
    shas = set(d.get("commits") or [])
    if d.get("commit_sha") is not None:
        shas.add(d["commit_sha"])
    return shas


def _first(deployments: Iterable[dict]) -> dict | None:
    return min(deployments, key=lambda d: (d["finished_at"], d["id"]), default=None)


class _Data:
    """Normalised records plus the registries and resolution rules of DESIGN §3."""

    def __init__(self, records: dict[str, list[dict]], settings: Settings) -> None:
        self.settings = settings
        self.tz = ZoneInfo(settings.timezone)
        r = _normalise(records)
        self.r = r
        self.teams = {t["id"]: t for t in r["team"]}
        self.services = {s["id"]: s for s in r["service"]}
        self.capabilities = {c["id"]: c for c in r["capability"]}
        self.surveys = {s["id"]: s for s in r["survey"]}
        # a group is a team that another team names as parent
        self.group_ids = {t["parent"] for t in r["team"] if t.get("parent") is not None}
        self.memberships: dict[str, list[dict]] = defaultdict(list)
        for m in r["membership"]:
            self.memberships[m["actor"]].append(m)
        # DORA deployments: successful production deployments
        self.dora = [
            d
            for d in r["deployment"]
            if d["result"] == "success" and _is_production(d["environment"], settings)
        ]
        self.deployments_by_id = {d["id"]: d for d in r["deployment"]}
        # (v2) failure_severities: only incidents of those severities (or none) count in DORA
        severities = {x.lower() for x in settings.failure_severities}
        self.incidents = [
            inc
            for inc in r["incident"]
            if not severities
            or inc.get("severity") is None
            or str(inc["severity"]).lower() in severities
        ]
        self.links = self._link_incidents()
        self.remediated = self._remediated() if settings.failure_from_remediation else {}
        self.failed = {dep for dep, _rule in self.links.values() if dep is not None}
        self.failed |= set(self.remediated)
        # (v2) incidents "for" a service: its own `service`, or a link to that service's deployment
        self.incident_services = {inc.get("service") for inc in self.incidents}
        for dep_id, _rule in self.links.values():
            if dep_id is not None:
                self.incident_services.add(self.deployments_by_id[dep_id]["service"])
        self.incident_services.discard(None)
        # DESIGN ambiguity: "ever" for both signals: a service with an incident or a deployment of
        # known kind at any time has a signal (a deployment remediated later keeps its signal).
        self.signal_services = self.incident_services | {
            d["service"] for d in self.dora if d.get("kind") is not None
        }
        # (v2) teams that own a service or appear on a deployment: the only teams with DORA rows
        self.delivering_teams = {s.get("team") for s in r["service"]} | {
            self.record_team(d) for d in r["deployment"]
        }
        self.delivering_teams.discard(None)
        # (v2) where stored history starts
        self.history_deployment = min((d["finished_at"] for d in r["deployment"]), default=None)
        self.history_usage: dict[Any, datetime] = {}
        for u in r["usage"]:
            for key in (None, u["capability"]):
                if key not in self.history_usage or u["ts"] < self.history_usage[key]:
                    self.history_usage[key] = u["ts"]
        self._wave_ts = self._waves()
        self.question_capability: dict[tuple[str, str], Any] = {}
        for s in r["survey"]:
            for q in s.get("questions") or []:
                self.question_capability[(s["id"], q.get("id"))] = q.get("capability")
        self.seen = self._seen_values()

    # ---- resolution

    def owner(self, service: str | None) -> str | None:
        s = self.services.get(service) if service is not None else None
        return s.get("team") if s else None

    def member_team(self, actor: str | None, ts: datetime) -> str | None:
        if actor is None:
            return None
        active = [
            m
            for m in self.memberships.get(actor, [])
            if (m.get("from") is None or m["from"] <= ts) and (m.get("to") is None or ts < m["to"])
        ]
        if not active:
            return None

        # DESIGN ambiguity: several memberships at ts -> latest `from` (null earliest), ties lowest
        # team id.
        def key(m: dict) -> tuple[float, str]:
            start = m.get("from")
            return (-(start.timestamp()) if start else math.inf, m["team"])

        return min(active, key=key)["team"]

    def record_team(self, rec: dict) -> str | None:
        """Deployments, changes, incidents: own team, else the owner of the service."""
        if rec.get("team") is not None:
            return rec["team"]
        return self.owner(rec.get("service"))

    def usage_team(self, u: dict) -> str | None:
        team = self.record_team(u)
        return team if team is not None else self.member_team(u.get("actor"), u["ts"])

    def group(self, team: str | None) -> str | None:
        """Top-level ancestor of a team (the team itself when it has no parent)."""
        # DESIGN ambiguity: a team without parent, or an id outside the registry, is its own group.
        if team is None:
            return None
        seen = {team}
        cur = team
        while True:
            t = self.teams.get(cur)
            parent = t.get("parent") if t else None
            if parent is None or parent in seen:
                return cur
            seen.add(parent)
            cur = parent

    def survey_k(self, survey: str) -> int:
        # DESIGN ambiguity: a survey without record has the default k 5.
        s = self.surveys.get(survey)
        return s["k"] if s else 5

    def wave_open(self, survey: str, now: datetime) -> bool:
        """(v2) A wave is open while its `closes_at` is after now; a continuous survey's month is
        final when its period is (R24)."""
        if self.is_continuous(survey):
            return False
        closes = self.surveys[survey].get("closes_at") if survey in self.surveys else None
        return closes is not None and closes > now

    def is_continuous(self, survey: str) -> bool:
        return bool(self.surveys.get(survey, {}).get("continuous"))

    def wave_ts(self, survey: str) -> datetime | None:
        return self._wave_ts.get(survey)

    def _waves(self) -> dict[str, datetime | None]:
        first: dict[str, datetime] = {}
        for resp in self.r["survey_response"]:
            s = resp["survey"]
            if s not in first or resp["ts"] < first[s]:
                first[s] = resp["ts"]
        ids = (
            set(self.surveys)
            | {x["survey"] for x in self.r["survey_response"]}
            | {x["survey"] for x in self.r["survey_invitation"]}
        )
        # (v2) a continuous survey has a wave per month of answers, not one wave
        ids = {s for s in ids if not self.is_continuous(s)}
        waves: dict[str, datetime | None] = {}
        for s in ids:
            opens = self.surveys[s].get("opens_at") if s in self.surveys else None
            # DESIGN ambiguity: a survey record without opens_at falls back to its first response.
            waves[s] = opens if opens is not None else first.get(s)
        return waves

    # ---- incident links and failures

    def _link_incidents(self) -> dict[str, tuple[str | None, str]]:
        window = self.settings.incident_link_window
        dora_ids = {d["id"] for d in self.dora}
        links: dict[str, tuple[str | None, str]] = {}
        # (v2) incidents the reports leave out by severity: never linked
        counted = {inc["id"] for inc in self.incidents}
        self.cross_service: set[str] = set()
        self.root_cause_not_deployed: set[str] = set()
        for inc in self.r["incident"]:
            if inc["id"] not in counted:
                links[inc["id"]] = (None, "severity")
                continue
            dep_id, sha, service = (
                inc.get("deployment_id"),
                inc.get("root_cause_sha"),
                inc.get("service"),
            )
            found: dict | None = None
            rule = "unlinked"
            if dep_id is not None:
                # rule 1 decides alone: a successful production deployment with that id, else none;
                # (v2) another service's deployment still links, and is counted in a warning
                if dep_id in dora_ids:
                    found, rule = self.deployments_by_id[dep_id], "deployment_id"
                    if service is not None and found["service"] != service:
                        self.cross_service.add(inc["id"])
            elif sha is not None:
                # (v2) the first (lowest (finished_at, id)) among those finished by opened_at
                found = _first(
                    d
                    for d in self.dora
                    if sha in _shas(d)
                    and (service is None or d["service"] == service)
                    and d["finished_at"] <= inc["opened_at"]
                )
                rule = "root_cause_sha" if found else "unlinked"
                if found is None:
                    self.root_cause_not_deployed.add(inc["id"])
            elif inc.get("cause") != "external" and service is not None:
                opened = inc["opened_at"]
                candidates = [
                    d
                    for d in self.dora
                    if d["service"] == service
                    and d.get("kind") != "rollback"  # (v2) a rollback restores a known version
                    and timedelta(0) <= opened - d["finished_at"]
                    and (window is None or opened - d["finished_at"] <= window)
                ]
                found = max(candidates, key=lambda d: (d["finished_at"], d["id"]), default=None)
                rule = "window" if found else "unlinked"
            links[inc["id"]] = (found["id"] if found else None, rule)
        return links

    def _remediated(self) -> dict[str, str]:
        """(v2) deployment id -> the rollback or hotfix that remediated it."""
        per_service: dict[str, list[dict]] = defaultdict(list)
        for d in self.dora:
            per_service[d["service"]].append(d)
        remediated: dict[str, str] = {}
        for deps in per_service.values():
            deps.sort(key=lambda d: (d["finished_at"], d["id"]))
            for i, d in enumerate(deps):
                if d.get("kind") not in ("rollback", "hotfix"):
                    continue
                earlier = [e for e in deps[:i] if e.get("kind") != "rollback"]
                if earlier:
                    # DESIGN ambiguity: the first remediation (in (finished_at, id) order) is kept.
                    remediated.setdefault(earlier[-1]["id"], d["id"])
        return remediated

    def archived_by(self, team: str, ts: datetime) -> bool:
        archived = self.teams[team].get("archived_at") if team in self.teams else None
        return archived is not None and archived <= ts

    def is_bot(self, actor: str | None) -> bool:
        return actor is not None and any(glob_match(actor, p) for p in self.settings.bot_actors)

    # ---- segment value domains

    def _seen_values(self) -> dict[str, set[Any]]:
        r = self.r
        team_fields = [
            ("membership", "team"),
            ("service", "team"),
            ("usage", "team"),
            ("deployment", "team"),
            ("change", "team"),
            ("incident", "team"),
            ("survey_response", "team"),
            ("survey_invitation", "team"),
            ("team", "parent"),
        ]
        teams = {x.get(f) for t, f in team_fields for x in r[t]}
        services = {
            x.get("service") for t in ("usage", "deployment", "change", "incident") for x in r[t]
        }
        caps = {x.get("capability") for t in ("usage", "survey_response") for x in r[t]}
        questions = {x.get("question") for x in r["survey_response"]}
        for s in r["survey"]:
            for q in s.get("questions") or []:
                caps.add(q.get("capability"))
                questions.add(q.get("id"))
        seen = {
            # DESIGN ambiguity: values in no registry exist in every period; None never does.
            "team": teams - set(self.teams),
            "service": services - set(self.services),
            "capability": caps - set(self.capabilities),
            "action": {x.get("action") for x in r["usage"]},
            # (v2) production environments only, lower-cased
            "environment": {
                x["environment"].lower()
                for x in r["deployment"]
                if _is_production(x["environment"], self.settings)
            },
            "question": questions,
        }
        return {k: v - {None} for k, v in seen.items()}

    def team_exists(self, team: dict, p: Period) -> bool:
        created, archived = team.get("created_at"), team.get("archived_at")
        return (created is None or created < p.end_dt) and (
            archived is None or archived > p.start_dt
        )

    def domain(self, key: str, p: Period) -> set[Any]:
        """Segment values that exist in period p (zero-filled for counts)."""
        if key == "team":
            # DESIGN ambiguity: a registry team exists under eligibility's created/archived rule.
            registry = {tid for tid, t in self.teams.items() if self.team_exists(t, p)}
            return registry | self.seen["team"]
        if key == "group":
            return {self.group(t) for t in self.domain("team", p)}
        if key == "service":
            registry = {
                sid
                for sid, s in self.services.items()
                if s.get("created_at") is None or s["created_at"] < p.end_dt
            }
            return registry | self.seen["service"]
        if key == "capability":
            registry = {
                cid
                for cid, c in self.capabilities.items()
                if c.get("launched_at") is None or c["launched_at"] <= p.end_dt
            }
            return registry | self.seen["capability"]
        if key == "survey":
            # DESIGN ambiguity: a survey exists only in the period of its wave.
            return {
                s for s, ts in self._wave_ts.items() if ts is not None and p.has(self.local_day(ts))
            }
        return set(self.seen[key])

    def local_day(self, ts: datetime) -> date:
        return ts.astimezone(self.tz).date()

    # ---- eligibility

    def eligible(self, p: Period, capability: Any = None, by_capability: bool = False) -> set[str]:
        if self.teams:
            base = {
                tid
                for tid, t in self.teams.items()
                if tid not in self.group_ids and self.team_exists(t, p)
            }
        else:
            # DESIGN ambiguity: empty registry -> resolved teams of all usage, any capability.
            base = {
                self.usage_team(u) for u in self.r["usage"] if not self.is_bot(u.get("actor"))
            } - {None}
        if by_capability:
            cap = self.capabilities.get(capability)
            if cap is not None:
                launched = cap.get("launched_at")
                # DESIGN ambiguity: eligibility needs period end strictly after launched_at.
                if launched is not None and not p.end_dt > launched:
                    return set()
                listed = cap.get("eligible")
                if listed is not None:
                    # DESIGN ambiguity: an empty eligible list means no team is eligible.
                    base &= set(listed)
        return base


def link_incidents(
    records: dict[str, list[dict]], settings: Settings = DEFAULT_SETTINGS
) -> dict[str, tuple[str | None, str]]:
    """incident id -> (linked deployment id or None, rule that linked it or "unlinked")."""
    return _Data(records, settings).links


def failed_deployments(
    records: dict[str, list[dict]], settings: Settings = DEFAULT_SETTINGS
) -> dict[str, dict[str, Any]]:
    """(v2) Why each failed deployment failed: ``{deployment_id: {"incidents": [ids, sorted],
    "remediated_by": rollback or hotfix id | None}}`` (only failed deployments)."""
    data = _Data(records, settings)
    out: dict[str, dict[str, Any]] = {
        dep: {"incidents": [], "remediated_by": by} for dep, by in data.remediated.items()
    }
    for inc_id, (dep, _rule) in sorted(data.links.items()):
        if dep is not None:
            out.setdefault(dep, {"incidents": [], "remediated_by": None})["incidents"].append(
                inc_id
            )
    return out


# --------------------------------------------------------------------------- report


def _value_key(v: Any) -> tuple[bool, str]:
    return (v is not None, "" if v is None else str(v))


def _cell_key(cell: Cell) -> tuple[tuple[bool, str], ...]:
    return tuple(_value_key(v) for v in cell)


def _select(metrics: Iterable[str] | None) -> list[str]:
    if metrics is None:
        return list(METRICS)
    chosen: set[str] = set()
    for m in metrics:
        # an exact id selects itself; anything else is a string prefix ("dora", "dora.lead_time")
        hits = [m] if m in METRICS else [x for x in METRICS if x.startswith(m)]
        if not hits:
            raise ValueError(f"unknown metric {m!r}")
        chosen.update(hits)
    return [m for m in METRICS if m in chosen]


Result = tuple[Any, Any, Any] | None  # (value, n, ci) or None = omitted


class _Report:
    def __init__(
        self,
        data: _Data,
        grain: str,
        start: date,
        end: date,
        by: tuple[str, ...],
        now: datetime,
    ) -> None:
        self.d = data
        self.grain = grain
        self.start, self.end = start, end
        self.by = by
        self.now = now
        self.periods = periods(grain, start, end, data.tz)
        self.range_start = _local_midnight(start, data.tz)
        self.range_end = _local_midnight(end, data.tz)
        self.warnings: dict[str, tuple[str, int]] = {}
        self._usage_obs: list[dict] | None = None

    # ---- helpers

    def in_range(self, ts: datetime) -> bool:
        return self.range_start <= ts < self.range_end

    def warn(self, code: str, message: str, count: int) -> None:
        if count > 0:
            self.warnings[code] = (message, count)

    def cell(self, seg: dict[str, Any]) -> Cell:
        return tuple(seg.get(k) for k in self.by)

    def bucket(self, obs: list[dict]) -> list[list[dict]]:
        """Observations per output period (by the local date of their `ts`)."""
        out: list[list[dict]] = [[] for _ in self.periods]
        for o in obs:
            day = self.d.local_day(o["ts"])
            for i, p in enumerate(self.periods):
                if p.has(day):
                    out[i].append(o)
                    break
        return out

    def by_cell(self, obs: list[dict]) -> dict[Cell, list[dict]]:
        out: dict[Cell, list[dict]] = defaultdict(list)
        for o in obs:
            out[self.cell(o["seg"])].append(o)
        return out

    def domain_cells(self, p: Period, dora: bool = False) -> set[Cell]:
        """Segment values that exist in p; (v2) for DORA only teams that deliver (and groups)."""
        domains = []
        for key in self.by:
            values = self.d.domain(key, p)
            if dora and key in ("team", "group"):
                teams = self.d.domain("team", p) & self.d.delivering_teams
                values = teams if key == "team" else {self.d.group(t) for t in teams}
            domains.append(values)
        return set(product(*domains))

    def delivers(self, cell: Cell) -> bool:
        """(v2) A team that owns no service and appears on no deployment gets no DORA rows."""
        if "team" not in self.by:
            return True
        team = cell[self.by.index("team")]
        return team is None or team in self.d.delivering_teams

    def launched(self, p: Period, cell: Cell) -> bool:
        """No rows for a registry capability in periods that end before its launched_at."""
        if "capability" not in self.by:
            return True
        cap = self.d.capabilities.get(cell[self.by.index("capability")])
        launched = cap.get("launched_at") if cap else None
        # DESIGN ambiguity: a period ending exactly at launched_at keeps its rows.
        return launched is None or not p.end_dt < launched

    def row(
        self,
        metric: str,
        p: Period,
        cell: Cell,
        result: tuple[Any, Any, Any],
        suppressed: bool = False,
        open_wave: bool = False,
    ) -> Row:
        value, n, ci = result
        tier_value = None
        settings = self.d.settings
        if (
            not suppressed
            and value is not None
            and self.grain in ("month", "quarter", "all")
            and ("team" in self.by or "service" in self.by)
            and _has_tier(metric, settings.tier_year)
            # (v2) tiers only on enough data (deployment frequency: n is not an observation count)
            and (metric == "dora.deployment_frequency" or n >= settings.tier_min_n)
        ):
            tier_value = tier(metric, value, settings.tier_year)
        # DESIGN ambiguity: the row's (clipped) period end is compared with now.
        complete = not p.end_dt > self.now and not open_wave
        if metric in ("dora.change_failure_rate", "dora.recovery_time_p50"):
            # (v2) links may still arrive for the link window after the period (7 d if unbounded)
            window = settings.incident_link_window
            wait = timedelta(days=7) if window is None else window
            complete = complete and not p.end_dt + wait > self.now
        return {
            "metric": metric,
            "period": p.label,
            "segment": dict(zip(self.by, cell, strict=True)),
            "value": None if suppressed else value,
            "n": None if suppressed else n,
            "ci": None if suppressed else ci,
            "suppressed": suppressed,
            "tier": tier_value,
            "complete": complete,
        }

    def simple(
        self,
        metric: str,
        obs: list[dict],
        fn: Callable[[list[dict], Period, Cell], Result],
        zero_fill: bool,
    ) -> list[Row]:
        """Rows of a non-happiness metric: fn(observations of the cell, period, cell)."""
        rows = []
        dora = metric.startswith("dora.")
        for p, bucket in zip(self.periods, self.bucket(obs), strict=True):
            groups = self.by_cell(bucket)
            cells = set(groups)
            if zero_fill:
                cells |= self.domain_cells(p, dora)
            for cell in sorted(cells, key=_cell_key):
                if not self.launched(p, cell) or (dora and not self.delivers(cell)):
                    continue
                result = fn(groups.get(cell, []), p, cell)
                if result is not None:
                    rows.append(self.row(metric, p, cell, result))
        return rows

    # ---- usage

    def usage_obs(self) -> list[dict]:
        if self._usage_obs is None:
            obs = []
            for u in self.d.r["usage"]:
                team = self.d.usage_team(u)
                seg = {
                    "capability": u["capability"],
                    "team": team,
                    "group": self.d.group(team),
                    "service": u.get("service"),
                    "action": u.get("action"),
                }
                obs.append({**u, "seg": seg, "team_": team})
            self._usage_obs = obs
        return self._usage_obs

    def adoption_obs(self) -> list[dict]:
        """(v2) Usage that counts for adoption: not by an actor matching `bot_actors`."""
        return [o for o in self.usage_obs() if not self.d.is_bot(o.get("actor"))]

    def cell_filter(self, cell: Cell, team: str | None, capability: Any = None) -> bool:
        """Does a team (and a capability) belong to the cell's team/group/capability values?"""
        seg = dict(zip(self.by, cell, strict=True))
        if "team" in seg and seg["team"] != team:
            return False
        if "group" in seg and seg["group"] != self.d.group(team):
            return False
        return not ("capability" in seg and seg["capability"] != capability)

    def adoption(self, metric: str) -> list[Row]:
        usage = self.adoption_obs()
        if metric == "adoption.active_users":
            return self.simple(metric, usage, _count_distinct("actor"), zero_fill=True)
        if metric == "adoption.active_teams":
            return self.simple(metric, usage, _count_distinct("team_"), zero_fill=True)
        if metric in ("adoption.eligible_teams", "adoption.team_adoption_rate"):
            self.warn_ineligible()
            rate = metric == "adoption.team_adoption_rate"

            def eligible(obs: list[dict], p: Period, cell: Cell) -> Result:
                cap = cell[self.by.index("capability")] if "capability" in self.by else None
                teams = {
                    t
                    for t in self.d.eligible(p, cap, "capability" in self.by)
                    if self.cell_filter(cell, t, cap)
                }
                if not rate:
                    return (len(teams), len(teams), None)
                if not teams:
                    return None
                active = {o["team_"] for o in obs} & teams
                return (
                    len(active) / len(teams),
                    len(teams),
                    proportion_ci(len(active), len(teams)),
                )

            # eligible teams always lie in the domain cells, so eligible_teams needs no other
            # cells; the rate reads the usage of the cell (cells outside the domain are omitted).
            return self.simple(metric, usage if rate else [], eligible, zero_fill=True)
        if metric == "adoption.new_teams":
            per_capability = "capability" in self.by
            first: dict[tuple[Any, Any], datetime] = {}
            for o in usage:
                if o["team_"] is None:
                    continue
                key = (o["team_"], o["capability"] if per_capability else None)
                if key not in first or o["ts"] < first[key]:
                    first[key] = o["ts"]
            obs = [
                {
                    "ts": ts,
                    "seg": {"team": team, "group": self.d.group(team), "capability": cap},
                }
                for (team, cap), ts in first.items()
            ]
            rows = self.simple(metric, obs, lambda o, p, c: (len(o), len(o), None), zero_fill=True)
            kept = [r for r in rows if not self.history_starts(r)]
            self.warn(
                "history_start",
                "new teams omitted in the period where stored usage starts (every team looks new "
                "there): ingest earlier usage, or set the capability's `launched_at`",
                len(rows) - len(kept),
            )
            return kept
        if metric == "adoption.team_retention":
            return self.retention(metric, usage)
        raise AssertionError(metric)

    def history_starts(self, row: Row) -> bool:
        """(v2) Is the row's period the one holding the first stored usage (of its capability)?"""
        capability = row["segment"].get("capability")
        first = self.d.history_usage.get(capability)
        if first is None:
            return False
        p = next(p for p in self.periods if p.label == row["period"])
        # DESIGN ambiguity: "the period" is the calendar period (the clipped first period counts
        # when history starts in its clipped-off part); history = all stored usage, bots included.
        if not p.cal_start <= self.d.local_day(first) < p.cal_end:
            return False
        cap = self.d.capabilities.get(capability) if capability is not None else None
        launched = cap.get("launched_at") if cap else None
        return launched is None or launched < _local_midnight(p.cal_start, self.d.tz)

    def retention(self, metric: str, usage: list[dict]) -> list[Row]:
        if self.grain == "all":
            return []
        rows = []
        buckets = self.bucket(usage)
        for p, bucket in zip(self.periods, buckets, strict=True):
            # DESIGN ambiguity: the previous *calendar* period, in full, even before --from; "this
            # one" is the row's clipped period.
            prev_start = _calendar_start(p.cal_start - timedelta(days=1), self.grain)
            prev = [o for o in usage if prev_start <= self.d.local_day(o["ts"]) < p.cal_start]
            cur_groups, prev_groups = self.by_cell(bucket), self.by_cell(prev)
            cells = set(cur_groups) | set(prev_groups) | self.domain_cells(p)
            for cell in sorted(cells, key=_cell_key):
                if not self.launched(p, cell):
                    continue
                before = {o["team_"] for o in prev_groups.get(cell, [])} - {None}
                # (v2) archiving is not churn: teams archived by this period's start leave
                before = {t for t in before if not self.d.archived_by(t, p.start_dt)}
                if not before:
                    continue
                now_active = {o["team_"] for o in cur_groups.get(cell, [])}
                kept = len(before & now_active)
                result = (kept / len(before), len(before), proportion_ci(kept, len(before)))
                rows.append(self.row(metric, p, cell, result))
        return rows

    def warn_ineligible(self) -> None:
        pairs = set()
        for i, bucket in enumerate(self.bucket(self.adoption_obs())):
            p = self.periods[i]
            for o in bucket:
                team = o["team_"]
                if team is not None and team not in self.d.eligible(p, o["capability"], True):
                    pairs.add((i, o["capability"], team))
        self.warn(
            "ineligible_active_teams",
            "teams used a capability not in its `eligible` list (period × capability × team)",
            len(pairs),
        )

    # ---- task success and efficiency

    def task(self, metric: str) -> list[Row]:
        attempts = [o for o in self.usage_obs() if o.get("outcome") is not None]
        if metric == "task.attempts":
            return self.simple(metric, attempts, lambda o, p, c: (len(o), len(o), None), True)
        if metric in ("task.first_attempt_success_rate", "task.eventual_success_rate"):
            return self.runs(metric, attempts)
        outcome = {
            "task.success_rate": "success",
            "task.failure_rate": "failure",
            "task.error_rate": "error",
            "task.abandon_rate": "abandoned",
        }[metric]

        def share(obs: list[dict], p: Period, cell: Cell) -> Result:
            if not obs:
                return None
            x = sum(1 for o in obs if o["outcome"] == outcome)
            return (x / len(obs), len(obs), proportion_ci(x, len(obs)))

        return self.simple(metric, attempts, share, zero_fill=False)

    def runs(self, metric: str, attempts: list[dict]) -> list[Row]:
        """(v2) Runs (`run`, else the record's id), counted where their first attempt is."""
        by_run: dict[Any, list[dict]] = defaultdict(list)
        for o in attempts:
            # DESIGN ambiguity: a run id is one run whatever the capability of its records.
            by_run[o["run"] if o.get("run") is not None else ("id", o["id"])].append(o)
        runs = []
        for records in by_run.values():
            # DESIGN ambiguity: a missing attempt number counts as 1; ties by ts, then id.
            first = min(records, key=lambda o: (o.get("attempt") or 1, o["ts"], o["id"]))
            runs.append(
                {
                    **first,
                    "first_ok": first["outcome"] == "success",
                    "any_ok": any(o["outcome"] == "success" for o in records),
                }
            )
        field = "first_ok" if metric == "task.first_attempt_success_rate" else "any_ok"

        def share(obs: list[dict], p: Period, cell: Cell) -> Result:
            if not obs:
                return None
            x = sum(1 for o in obs if o[field])
            return (x / len(obs), len(obs), proportion_ci(x, len(obs)))

        return self.simple(metric, runs, share, zero_fill=False)

    def quantile_fn(self, q: float, field: str = "value") -> Callable[..., Result]:
        mode = self.d.settings.quantile

        def fn(obs: list[dict], p: Period, cell: Cell) -> Result:
            if not obs:
                return None
            return (quantile([o[field] for o in obs], q, mode), len(obs), None)

        return fn

    def efficiency(self, metric: str) -> list[Row]:
        if metric.startswith("efficiency.task_duration_"):
            q = 0.5 if metric.endswith("p50") else 0.9
            obs = [
                {**o, "value": o["duration_s"]}
                for o in self.usage_obs()
                if o.get("outcome") == "success" and o.get("duration_s") is not None
            ]
            return self.simple(metric, obs, self.quantile_fn(q), zero_fill=False)
        if metric == "efficiency.services_awaiting_first_deploy":
            return self.awaiting(metric)
        # time to first deploy, days, for services with created_at
        obs, negative, before_history = [], 0, 0
        history = self.d.history_deployment
        for sid, s in self.d.services.items():
            if s.get("created_at") is None:
                continue
            # DESIGN ambiguity: the first *successful* production deployment, segmented by it.
            first = _first(d for d in self.d.dora if d["service"] == sid)
            if first is None:
                continue
            # (v2) a service older than the stored history: its first stored deployment is not
            # its first deployment. DESIGN ambiguity: history = the first deployment record of
            # any kind; counted like the negatives, by the first deployment's time.
            if history is not None and s["created_at"] < history:
                before_history += self.in_range(first["finished_at"])
                continue
            days = (first["finished_at"] - s["created_at"]).total_seconds() / 86400
            if days < 0:
                negative += self.in_range(first["finished_at"])
                continue
            obs.append(
                {"ts": first["finished_at"], "seg": self.deployment_seg(first), "value": days}
            )
        self.warn(
            "negative_time_to_first_deploy",
            "services whose first production deployment precedes `created_at` were dropped",
            negative,
        )
        self.warn(
            "created_before_history",
            "services with `created_at` before the first stored deployment have no time to first "
            "deploy (ingest their earlier deployments)",
            before_history,
        )
        return self.simple(metric, obs, self.quantile_fn(0.5), zero_fill=False)

    def awaiting(self, metric: str) -> list[Row]:
        """(v2) Services created before the period's end with no production deployment by then."""
        rows = []
        for p in self.periods:
            groups: dict[Cell, int] = defaultdict(int)
            for sid, s in self.d.services.items():
                # DESIGN ambiguity: only services with `created_at`; "production deployment" is a
                # successful one (as for time to first deploy), finished before the period's end.
                if s.get("created_at") is None or not s["created_at"] < p.end_dt:
                    continue
                if any(d["service"] == sid and d["finished_at"] < p.end_dt for d in self.d.dora):
                    continue
                team = s.get("team")
                seg = {"team": team, "group": self.d.group(team), "service": sid}
                groups[self.cell(seg)] += 1
            for cell in sorted(set(groups) | self.domain_cells(p), key=_cell_key):
                n = groups.get(cell, 0)
                rows.append(self.row(metric, p, cell, (n, n, None)))
        return rows

    # ---- DORA

    def deployment_seg(self, d: dict) -> dict[str, Any]:
        team = self.d.record_team(d)
        return {
            "team": team,
            "group": self.d.group(team),
            "service": d["service"],
            "environment": d["environment"].lower(),  # (v2) lower-cased
        }

    def incident_seg(self, inc: dict) -> dict[str, Any]:
        team = self.d.record_team(inc)
        return {"team": team, "group": self.d.group(team), "service": inc.get("service")}

    def warn_deployments(self) -> None:
        """(v2) Warnings of every deployment metric: excluded environments, repeated shas."""
        excluded: dict[str, int] = defaultdict(int)
        for d in self.d.r["deployment"]:
            if (
                d["result"] == "success"
                and not _is_production(d["environment"], self.d.settings)
                and self.in_range(d["finished_at"])
            ):
                excluded[d["environment"].lower()] += 1
        top = sorted(excluded, key=lambda e: (-excluded[e], e))[:3]
        self.warn(
            "excluded_environments",
            f"successful deployments to environments that are not production ({', '.join(top)}) "
            "were left out; add glob patterns to `production_environments` to count them",
            sum(excluded.values()),
        )
        repeated, seen = 0, set()
        for d in sorted(self.d.dora, key=lambda d: (d["finished_at"], d["id"])):
            sha = d.get("commit_sha")
            if sha is None:
                continue
            key = (d["service"], d["environment"].lower(), sha)
            if key in seen and d.get("kind") != "rollback":
                repeated += self.in_range(d["finished_at"])
            seen.add(key)
        self.warn(
            "repeated_deployments",
            "deployments of a `commit_sha` already deployed to the same service and `environment` "
            "(re-runs?) count again in deployment frequency; a `kind` of rollback is not counted",
            repeated,
        )

    def warn_incidents(self) -> None:
        """Warnings of the metrics that read incident links."""
        in_range = [inc for inc in self.d.incidents if self.in_range(inc["opened_at"])]
        unlinked = sum(
            1
            for inc in in_range
            if self.d.links[inc["id"]][0] is None and inc.get("cause") != "external"
        )
        self.warn(
            "unlinked_incidents",
            "incidents not linked to any deployment: set `deployment_id` or `root_cause_sha`, "
            "or widen `incident_link_window`",
            unlinked,
        )
        self.warn(
            "cross_service_links",
            "incidents whose `deployment_id` names a deployment of another `service` "
            "(the link holds)",
            sum(1 for inc in in_range if inc["id"] in self.d.cross_service),
        )
        self.warn(
            "root_cause_not_yet_deployed",
            "incidents whose `root_cause_sha` no deployment had shipped by `opened_at` "
            "were left unlinked",
            sum(1 for inc in in_range if inc["id"] in self.d.root_cause_not_deployed),
        )

    def has_failure_signal(self, obs: list[dict]) -> bool:
        """(v2) Do the deployments' services have an incident, or a deployment of known kind?"""
        return any(d["service"] in self.d.signal_services for d in obs)

    def dora(self, metric: str) -> list[Row]:
        deployments = [
            {**d, "ts": d["finished_at"], "seg": self.deployment_seg(d)} for d in self.d.dora
        ]
        if metric in ("dora.change_failure_rate", "dora.recovery_time_p50"):
            self.warn_incidents()
        if metric in _DEPLOYMENT_METRICS:
            self.warn_deployments()
        if metric == "dora.deployments":
            return self.simple(metric, deployments, lambda o, p, c: (len(o), len(o), None), True)
        if metric == "dora.deployment_frequency":
            return self.simple(
                metric, deployments, lambda o, p, c: (len(o) / p.days, len(o), None), True
            )
        if metric == "dora.change_failure_rate":
            no_signal = 0

            def cfr(obs: list[dict], p: Period, cell: Cell) -> Result:
                nonlocal no_signal
                if not obs:
                    return None
                if not self.has_failure_signal(obs):
                    no_signal += 1
                    return None
                x = sum(1 for d in obs if d["id"] in self.d.failed)
                return (x / len(obs), len(obs), proportion_ci(x, len(obs)))

            rows = self.simple(metric, deployments, cfr, zero_fill=False)
            self.warn(
                "no_failure_signal",
                "change failure rate omitted where no incident is stored for the services and no "
                "deployment has a known `kind`: ingest incidents or set `kind` on deployments",
                no_signal,
            )
            return rows
        if metric == "dora.rework_rate":

            def rework(obs: list[dict], p: Period, cell: Cell) -> Result:
                known = [d for d in obs if d.get("kind") is not None]
                if not known:
                    return None
                x = sum(1 for d in known if d["kind"] in ("hotfix", "rollback"))
                return (x / len(known), len(known), proportion_ci(x, len(known)))

            return self.simple(metric, deployments, rework, zero_fill=False)
        if metric.startswith("dora.lead_time_"):
            return self.lead_time(metric)
        if metric == "dora.recovery_time_p50":
            obs, negative = [], 0
            for inc in self.d.incidents:
                dep_id = self.d.links[inc["id"]][0]
                if dep_id is None or inc.get("resolved_at") is None:
                    continue
                dep = self.d.deployments_by_id[dep_id]
                hours = (inc["resolved_at"] - dep["finished_at"]).total_seconds() / 3600
                if hours < 0:
                    negative += self.in_range(inc["resolved_at"])
                    continue
                obs.append(
                    {"ts": inc["resolved_at"], "seg": self.incident_seg(inc), "value": hours}
                )
            self.warn(
                "negative_recovery_time",
                "incidents with `resolved_at` before their deployment's `finished_at` were dropped",
                negative,
            )
            return self.simple(metric, obs, self.quantile_fn(0.5), zero_fill=False)
        if metric == "dora.time_to_restore_p50":
            obs, negative = [], 0
            for inc in self.d.incidents:
                if inc.get("resolved_at") is None:
                    continue
                hours = (inc["resolved_at"] - inc["opened_at"]).total_seconds() / 3600
                if hours < 0:  # (v2) dropped, like every other duration
                    negative += self.in_range(inc["resolved_at"])
                    continue
                obs.append(
                    {"ts": inc["resolved_at"], "seg": self.incident_seg(inc), "value": hours}
                )
            self.warn(
                "negative_time_to_restore",
                "incidents with `resolved_at` before `opened_at` were dropped",
                negative,
            )
            return self.simple(metric, obs, self.quantile_fn(0.5), zero_fill=False)
        if metric == "dora.open_incidents":
            return self.open_incidents(metric)
        raise AssertionError(metric)

    def open_incidents(self, metric: str) -> list[Row]:
        """(v2) Incidents opened before the period's end and not resolved by it."""
        rows = []
        for p in self.periods:
            groups: dict[Cell, int] = defaultdict(int)
            for inc in self.d.incidents:
                resolved = inc.get("resolved_at")
                # DESIGN ambiguity: resolved exactly at the period's end is still open in it.
                if inc["opened_at"] < p.end_dt and (resolved is None or resolved >= p.end_dt):
                    groups[self.cell(self.incident_seg(inc))] += 1
            cells = set(groups) | self.domain_cells(p, dora=True)
            for cell in sorted(cells, key=_cell_key):
                if self.launched(p, cell) and self.delivers(cell):
                    n = groups.get(cell, 0)
                    rows.append(self.row(metric, p, cell, (n, n, None)))
        return rows

    def lead_time(self, metric: str) -> list[Row]:
        without = sum(1 for d in self.d.dora if not _shas(d) and self.in_range(d["finished_at"]))
        self.warn(
            "deployment_without_commits",
            "deployments with neither `commit_sha` nor `commits` ship no change",
            without,
        )
        changes = {c["id"] for c in self.d.r["change"]}
        unknown = {
            sha
            for d in self.d.dora
            if self.in_range(d["finished_at"])
            for sha in _shas(d)
            if sha not in changes
        }
        self.warn(
            "unknown_changes",
            "shipped shas (`commit_sha`, `commits`) with no `change` record have no lead time",
            len(unknown),
        )
        shipped: dict[str, list[dict]] = defaultdict(list)
        for d in self.d.dora:
            for sha in _shas(d):
                shipped[sha].append(d)
        authored = self.d.settings.lead_time_start == "authored"
        obs, negative = [], 0
        for change in self.d.r["change"]:
            start = change["committed_at"]
            if authored and change.get("authored_at") is not None:
                start = change["authored_at"]  # (v2) lead_time_start = "authored"
            per_service: dict[str, list[dict]] = defaultdict(list)
            for d in shipped.get(change["id"], []):
                per_service[d["service"]].append(d)
            for deps in per_service.values():
                first = _first(deps)
                assert first is not None
                hours = (first["finished_at"] - start).total_seconds() / 3600
                if hours < 0:
                    negative += self.in_range(first["finished_at"])
                    continue
                obs.append(
                    {"ts": first["finished_at"], "seg": self.deployment_seg(first), "value": hours}
                )
        self.warn(
            "negative_lead_time",
            "changes deployed before their start (`lead_time_start`: `committed_at` or "
            "`authored_at`) were dropped",
            negative,
        )
        q = 0.5 if metric.endswith("p50") else 0.9
        return self.simple(metric, obs, self.quantile_fn(q), zero_fill=False)

    # ---- happiness

    def response_obs(self) -> list[dict]:
        obs = []
        for resp in self.d.r["survey_response"]:
            survey = resp["survey"]
            if self.d.is_continuous(survey):
                # (v2) a continuous survey: one wave per calendar month of answer time (report
                # time zone), counted at the month's first day; at grain month or coarser only
                if self.grain not in ("month", "quarter", "all"):
                    continue
                month = self.d.local_day(resp["ts"]).replace(day=1)
                wave, wave_id = _local_midnight(month, self.d.tz), (survey, month)
            else:
                wave, wave_id = self.d.wave_ts(survey), (survey, None)
                if wave is None:
                    continue
            capability = resp.get("capability")
            if capability is None:
                # DESIGN ambiguity: fall back to the question's capability in the survey record.
                capability = self.d.question_capability.get((survey, resp["question"]))
            team = resp.get("team")
            seg = {
                "survey": survey,
                "question": resp["question"],
                "team": team,
                "group": self.d.group(team),
                "capability": capability,
            }
            # a wave counts in the period of its opens_at (else first response), never split
            obs.append(
                {
                    **resp,
                    "ts": wave,
                    "wave": wave_id,
                    "seg": seg,
                    "who": (survey, resp["respondent"]),
                }
            )
        return obs

    def happiness(self, metric: str) -> list[Row]:
        """(v2) Rows per wave (``survey`` is always a key) and suppression decided per wave on
        its atomic cells (see ``anonymity``), the same whatever the query."""
        responses = self.response_obs()
        invitations: list[dict] = []
        if metric == "happiness.response_rate":
            for inv in self.d.r["survey_invitation"]:
                wave = self.d.wave_ts(inv["survey"])
                if wave is not None:
                    seg = {"survey": inv["survey"], "team": inv["team"]}
                    seg["group"] = self.d.group(inv["team"])
                    invitations.append({**inv, "ts": wave, "seg": seg})
        kind = _KINDS.get(metric)
        decided = self.anonymity(responses, kind)
        if kind is not None:
            responses = [r for r in responses if r["kind"] == kind and r.get("score") is not None]
        rows = []
        inv_buckets = self.bucket(invitations)
        for p, bucket, inv_bucket in zip(
            self.periods, self.bucket(responses), inv_buckets, strict=True
        ):
            groups = self.by_cell(bucket)
            inv_groups = self.by_cell(inv_bucket)
            cells = set(groups) | set(inv_groups)
            if metric == "happiness.respondents":
                cells |= self.domain_cells(p)
            cells = {c for c in cells if self.launched(p, c)}
            waves = {o["wave"] for o in bucket}
            for cell in sorted(cells, key=_cell_key):
                obs = groups.get(cell, [])
                invs = inv_groups.get(cell, [])
                result = self.happiness_value(metric, obs, invs)
                if result is None:
                    continue
                seg = dict(zip(self.by, cell, strict=True))
                team_node = (
                    ("team", seg["team"])
                    if "team" in seg
                    else ("group", seg["group"])
                    if "group" in seg
                    else ("org",)
                )
                question_node: tuple[Any, ...] = ("all",)
                if metric != "happiness.response_rate":
                    if "question" in seg and "capability" in seg:
                        question_node = ("pair", seg["question"], seg["capability"])
                    elif "question" in seg:
                        question_node = ("question", seg["question"])
                    elif "capability" in seg:
                        question_node = ("capability", seg["capability"])
                # the row's waves: one, or each month of a continuous survey in the period
                hidden = any(
                    decided[w].get((team_node, question_node), False)
                    for w in waves
                    if w[0] == seg["survey"]
                )
                surveys = {o["survey"] for o in obs} | {i["survey"] for i in invs}
                is_open = any(self.d.wave_open(s, self.now) for s in surveys)
                rows.append(self.row(metric, p, cell, result, suppressed=hidden, open_wave=is_open))
        return rows

    def anonymity(
        self, responses: list[dict], kind: str | None
    ) -> dict[tuple[str, Any], dict[tuple[tuple, tuple], bool]]:
        """wave → (team node, question node) → hidden, for the answers of one family (every
        answer for respondents and response rate; scored answers of ``kind`` otherwise)."""
        by_wave: dict[tuple[str, Any], list[dict]] = defaultdict(list)
        for r in responses:
            if kind is None or (r["kind"] == kind and r.get("score") is not None):
                by_wave[r["wave"]].append(r)
        return {
            wave: anonymity(answers, self.d.survey_k(wave[0]), self.d.group)
            for wave, answers in by_wave.items()
        }

    def happiness_value(self, metric: str, obs: list[dict], invs: list[dict]) -> Result:
        respondents = len({o["who"] for o in obs})
        scores = [o["score"] for o in obs]
        if metric == "happiness.respondents":
            return (respondents, respondents, None)
        if metric == "happiness.response_rate":
            invited = sum(i["invited"] for i in invs)
            if invited == 0:
                return None
            # DESIGN ambiguity: n is the respondents; the interval only when it is a proportion.
            ci = proportion_ci(respondents, invited) if respondents <= invited else None
            return (respondents / invited, respondents, ci)
        if not scores:
            return None
        if metric == "happiness.csat":
            x = sum(1 for s in scores if s >= 4)
            return (x / len(scores), respondents, proportion_ci(x, len(scores)))
        if metric == "happiness.nps":
            promoters = sum(1 for s in scores if s >= 9)
            detractors = sum(1 for s in scores if s <= 6)
            value = 100 * (promoters - detractors) / len(scores)
            return (value, respondents, nps_ci(promoters, detractors, len(scores)))
        if metric == "happiness.likert_mean":
            return (sum(scores) / len(scores), respondents, None)
        if metric == "happiness.likert_median":
            return (quantile(scores, 0.5, self.d.settings.quantile), respondents, None)
        raise AssertionError(metric)

    # ---- everything

    def compute(self, metric: str) -> list[Row]:
        family = metric.split(".")[0]
        if family == "adoption":
            return self.adoption(metric)
        if family == "task":
            return self.task(metric)
        if family == "efficiency":
            return self.efficiency(metric)
        if family == "happiness":
            # (v2) never pooled across waves: computed as if `survey` were always a key
            if "survey" in self.by:
                return self.happiness(metric)
            sub = _Report(self.d, self.grain, self.start, self.end, (*self.by, "survey"), self.now)
            sub.warnings = self.warnings
            return sub.happiness(metric)
        return self.dora(metric)


_KINDS = {
    "happiness.csat": "csat",
    "happiness.nps": "nps",
    "happiness.likert_mean": "likert",
    "happiness.likert_median": "likert",
}


def anonymity(
    answers: list[dict], k: int, group: Callable[[Any], Any]
) -> dict[tuple[tuple, tuple], bool]:
    """(v2) DESIGN §4 anonymity across queries, for one wave: every (team node, question node)
    with answers → hidden or not.

    Team nodes: ("org",), ("group", g), ("team", t) (the null team is its own group's only
    team). Question nodes: ("all",), ("capability", c), ("question", q), ("pair", q, c). A cell
    is the set of atomic (team, question, capability) cells it reads; nodes reading the same set
    are one cell. Cells under k distinct respondents are hidden; then, while some split of a
    cell (org by group or team, group by team; all by capability, question or both; capability
    by question; question by capability) breaks the rule, the visible child with the fewest
    respondents among all breaking splits is hidden (ties: its sorted atomic cells, None
    lowest). The rule (readings R21–R23): the hidden children are none (and the parent is
    visible), or at least two with at least k distinct respondents together.
    """

    def atom(a: dict) -> tuple:
        s = a["seg"]
        return (s["team"], s["question"], s["capability"])

    def in_team(a: dict, node: tuple) -> bool:
        t = a["seg"]["team"]
        if node[0] == "org":
            return True
        return (group(t) if node[0] == "group" else t) == node[1]

    def in_question(a: dict, node: tuple) -> bool:
        _, q, c = atom(a)
        if node[0] == "all":
            return True
        if node[0] == "capability":
            return c == node[1]
        if node[0] == "question":
            return q == node[1]
        return (q, c) == (node[1], node[2])

    teams = {atom(a)[0] for a in answers}
    team_nodes = {("org",)} | {("group", group(t)) for t in teams} | {("team", t) for t in teams}
    question_nodes = {("all",)}
    for a in answers:
        _, q, c = atom(a)
        question_nodes |= {("capability", c), ("question", q), ("pair", q, c)}

    cell_of: dict[tuple[tuple, tuple], frozenset] = {}
    people: dict[frozenset, set] = {}
    for tn in team_nodes:
        for qn in question_nodes:
            inside = [a for a in answers if in_team(a, tn) and in_question(a, qn)]
            if inside:
                content = frozenset(atom(a) for a in inside)
                cell_of[(tn, qn)] = content
                people[content] = {a["who"] for a in inside}

    def team_children(tn: tuple) -> list[list[tuple]]:
        if tn[0] == "org":
            return [[n for n in team_nodes if n[0] == kind] for kind in ("group", "team")]
        if tn[0] == "group":
            return [[n for n in team_nodes if n[0] == "team" and group(n[1]) == tn[1]]]
        return []

    def question_children(qn: tuple) -> list[list[tuple]]:
        pairs = [n for n in question_nodes if n[0] == "pair"]
        if qn[0] == "all":
            return [
                [n for n in question_nodes if n[0] == kind]
                for kind in ("capability", "question", "pair")
            ]
        if qn[0] == "capability":
            return [[n for n in pairs if n[2] == qn[1]]]
        if qn[0] == "question":
            return [[n for n in pairs if n[1] == qn[1]]]
        return []

    splits = []
    for (tn, qn), content in cell_of.items():
        options = [[(t, qn) for t in ts] for ts in team_children(tn)]
        options += [[(tn, q) for q in qs] for qs in question_children(qn)]
        for option in options:
            children = {cell_of[n] for n in option if n in cell_of}
            if len(children) >= 2:
                splits.append((content, children))

    hidden = {c for c, who in people.items() if len(who) < k}

    def breaks(parent: frozenset, children: set[frozenset]) -> bool:
        shut = [c for c in children if c in hidden]
        if not shut:
            return parent in hidden  # R23: else the parent is the sum of visible children
        if len(shut) == 1:
            return True  # R22: the parent minus the visible children
        return len(set().union(*(people[c] for c in shut))) < k  # R21

    while True:
        candidates = {
            c for parent, children in splits if breaks(parent, children) for c in children
        } - hidden
        if not candidates:
            break
        hidden.add(min(candidates, key=lambda c: (len(people[c]), sorted(_cell_key(a) for a in c))))
    return {node: content in hidden for node, content in cell_of.items()}


def _count_distinct(field: str) -> Callable[[list[dict], Period, Cell], Result]:
    def fn(obs: list[dict], p: Period, cell: Cell) -> Result:
        n = len({o.get(field) for o in obs} - {None})
        return (n, n, None)

    return fn


_WARNING_ORDER = (
    "negative_lead_time",
    "negative_recovery_time",
    "negative_time_to_first_deploy",
    "deployment_without_commits",
    "unlinked_incidents",
    "ineligible_active_teams",
    "suppressed_segments",
    "unknown_services",
    # (v2)
    "negative_time_to_restore",
    "excluded_environments",
    "repeated_deployments",
    "unknown_changes",
    "cross_service_links",
    "root_cause_not_yet_deployed",
    "no_failure_signal",
    "history_start",
    "created_before_history",
    "continuous_survey_grain",
)


def report(
    records: dict[str, list[dict]],
    *,
    grain: str,
    start: date,
    end: date,
    by: tuple[str, ...] = (),
    metrics: tuple[str, ...] | None = None,
    settings: Settings = DEFAULT_SETTINGS,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The report of DESIGN §4/§5: {"warnings": [...], "rows": [...]}."""
    by = tuple(by)
    unknown = [k for k in by if k not in KEYS]
    if unknown or len(set(by)) != len(by):
        raise ValueError(f"bad segment keys {by!r}")
    if settings.quantile not in ("linear", "lower"):
        raise ValueError(f"unknown quantile mode {settings.quantile!r}")
    now = DEFAULT_NOW if now is None else _ts(now)
    assert now is not None
    data = _Data(records, settings)
    rep = _Report(data, grain, start, end, by, now)
    rows: list[Row] = []
    for metric in _select(metrics):
        if set(by) <= SUPPORTED_KEYS[metric]:
            rows.extend(rep.compute(metric))
    happy = any(
        m.startswith("happiness.") and set(by) <= SUPPORTED_KEYS[m] for m in _select(metrics)
    )
    if happy and grain in ("day", "week"):
        # (v2) continuous surveys are shown at grain month or coarser only
        rep.warn(
            "continuous_survey_grain",
            "answers of surveys with `continuous` set are shown at --grain month or coarser only",
            sum(
                1
                for x in data.r["survey_response"]
                if data.is_continuous(x["survey"]) and rep.in_range(x["ts"])
            ),
        )
    rep.warn(
        "suppressed_segments",
        "happiness segments with fewer respondents than the survey's `k` were suppressed",
        sum(1 for r in rows if r["suppressed"]),
    )
    referenced = {
        x.get("service") for t in ("usage", "deployment", "change", "incident") for x in data.r[t]
    }
    rep.warn(
        "unknown_services",
        "services named by records (`service`) with no `service` record",
        len(referenced - {None} - set(data.services)),
    )
    warnings = [
        {"code": code, "message": rep.warnings[code][0], "count": rep.warnings[code][1]}
        for code in _WARNING_ORDER
        if code in rep.warnings
    ]
    return {"warnings": warnings, "rows": rows}
