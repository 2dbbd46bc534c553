"""The canonical data model (DESIGN §3): every record type, its fields and their kinds.

This module is the single declaration the rest of heatlens reads: validation builds its checks from
it, the store builds its tables from it, and docs/data-model.md is generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Kind(Enum):
    """The kind of a field: how it is read from input and stored."""

    STRING = "string"
    TIMESTAMP = "timestamp"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    ENUM = "enum"
    STRING_LIST = "string list"
    OBJECT = "object"
    QUESTIONS = "question list"


@dataclass(frozen=True)
class Field:
    """One field of a record type."""

    name: str
    kind: Kind
    required: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()
    default: str | int | bool | None = None
    minimum: float | None = None
    maximum: float | None = None
    # enum values are compared case-sensitively, except where this is set
    lowercase: bool = False


@dataclass(frozen=True)
class RecordType:
    """One canonical record type (a table in the store)."""

    name: str
    help: str
    fields: tuple[Field, ...]
    # fields joined with "/" to form the id, for types whose id is derived
    id_from: tuple[str, ...] = ()
    # the timestamp field that places a record in time (its span, the periods it falls in);
    # registries and invitation counts have none
    at: str | None = None
    example: dict[str, object] = field(default_factory=dict)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def table(self) -> str:
        """Name of the store table holding this type."""
        return self.name


S, T, N, I, B, E, L, O, Q = (  # noqa: E741 -- short names keep the field tables readable
    Kind.STRING,
    Kind.TIMESTAMP,
    Kind.NUMBER,
    Kind.INTEGER,
    Kind.BOOLEAN,
    Kind.ENUM,
    Kind.STRING_LIST,
    Kind.OBJECT,
    Kind.QUESTIONS,
)

OUTCOMES = ("success", "failure", "error", "abandoned")
SURVEY_KINDS = ("csat", "nps", "likert", "text")
# score ranges per survey answer kind (inclusive)
SCORE_RANGES: dict[str, tuple[int, int]] = {"csat": (1, 5), "nps": (0, 10), "likert": (1, 5)}

RECORD_TYPES: tuple[RecordType, ...] = (
    RecordType(
        "team",
        "A team; a team that another team names as `parent` is a group.",
        (
            Field("id", S, True, "team id"),
            Field("name", S, help="display name"),
            Field("parent", S, help="id of the parent team (makes the parent a group)"),
            Field("created_at", T, help="when the team was formed"),
            Field("archived_at", T, help="when the team was disbanded"),
            Field("attributes", O, help="free-form object, e.g. Backstage's group type"),
        ),
        example={"type": "team", "id": "payments", "name": "Payments", "parent": "commerce"},
    ),
    RecordType(
        "membership",
        "A person's membership of a team, optionally bounded in time. Its id is `actor/team/from`.",
        (
            Field("id", S, help="derived: actor/team/from (from in UTC, ISO 8601)"),
            Field("actor", S, True, "person id (pseudonymised when a key is set)"),
            Field("team", S, True, "team id"),
            Field("from", T, help="start of the membership"),
            Field("to", T, help="end of the membership (exclusive)"),
        ),
        id_from=("actor", "team", "from"),
        example={"type": "membership", "actor": "ana", "team": "payments", "from": "2026-01-01"},
    ),
    RecordType(
        "service",
        "A deployable service, owned by a team.",
        (
            Field("id", S, True, "service id"),
            Field("name", S, help="display name"),
            Field("team", S, help="owning team id"),
            Field("created_at", T, help="when the service was created"),
            Field("tier", S, help="criticality tier, free text"),
            Field("repo", S, help="source repository"),
            Field(
                "attributes",
                O,
                help="free-form object, e.g. Backstage's type, lifecycle, system, domain",
            ),
        ),
        example={"type": "service", "id": "checkout", "team": "payments", "repo": "org/checkout"},
    ),
    RecordType(
        "capability",
        "A platform capability whose adoption and success are measured.",
        (
            Field("id", S, True, "capability id"),
            Field("name", S, help="display name"),
            Field("launched_at", T, help="launch date: no rows for periods ending before it"),
            Field("mandated", B, help="teams are required to use it", default=False),
            Field("eligible", L, help="team ids it is offered to (default: every team)"),
            Field("description", S, help="what it does"),
        ),
        example={
            "type": "capability",
            "id": "ci",
            "name": "CI pipelines",
            "launched_at": "2025-06-01",
        },
    ),
    RecordType(
        "usage",
        "One use of a capability by a person or team (a pipeline run, a scaffolder run, …).",
        (
            Field("id", S, True, "usage id (CI runs: run_id/attempt)"),
            Field("ts", T, True, "when it happened"),
            Field("capability", S, True, "capability id"),
            Field("action", S, help="what was done, e.g. deploy, scaffold"),
            Field("actor", S, help="person id (pseudonymised when a key is set)"),
            Field("team", S, help="team id (else the service's owner, else the actor's team)"),
            Field("service", S, help="service id"),
            Field(
                "outcome",
                E,
                choices=OUTCOMES,
                help="success, failure (user), error (platform), abandoned",
            ),
            Field("duration_s", N, minimum=0, help="duration in seconds"),
            Field("attributes", O, help="free-form object"),
            Field("run", S, help="one logical task retried (a CI run): its attempts share it"),
            Field("attempt", I, minimum=1, help="attempt number within `run` (1 = first try)"),
        ),
        at="ts",
        example={
            "type": "usage",
            "id": "run-981/1",
            "ts": "2026-03-02T10:15:00Z",
            "capability": "ci",
            "action": "build",
            "actor": "ana",
            "service": "checkout",
            "outcome": "success",
            "duration_s": 312.5,
        },
    ),
    RecordType(
        "deployment",
        "A deployment of a service to an environment.",
        (
            Field("id", S, True, "deployment id"),
            Field("service", S, True, "service id"),
            Field("finished_at", T, True, "when the deployment finished"),
            Field("environment", S, default="production", help="environment name"),
            Field("result", E, choices=("success", "failure"), default="success", help="result"),
            Field("started_at", T, help="when it started"),
            Field("commit_sha", S, help="the commit deployed"),
            Field("commits", L, help="every commit sha shipped by this deployment"),
            Field(
                "kind",
                E,
                choices=("planned", "hotfix", "rollback"),
                help="planned, hotfix or rollback; leave it out when unknown (no default)",
            ),
            Field("team", S, help="team id (default: the service's owner)"),
        ),
        at="finished_at",
        example={
            "type": "deployment",
            "id": "d-1042",
            "service": "checkout",
            "finished_at": "2026-03-02T11:00:00Z",
            "commit_sha": "9fceb02",
            "commits": ["9fceb02", "e83c516"],
        },
    ),
    RecordType(
        "change",
        "A commit (its id is the sha).",
        (
            Field("id", S, True, "commit sha"),
            Field("committed_at", T, True, "commit time"),
            Field("service", S, help="service id"),
            Field("repo", S, help="repository"),
            Field("authored_at", T, help="author time"),
            Field("pr_opened_at", T, help="when its pull request was opened"),
            Field("merged_at", T, help="when it was merged"),
            Field("team", S, help="team id"),
            Field("author", S, help="person id (pseudonymised when a key is set)"),
            Field("title", S, help="commit subject: the first line of the message"),
        ),
        at="committed_at",
        example={
            "type": "change",
            "id": "9fceb02",
            "committed_at": "2026-03-01T16:20:00Z",
            "service": "checkout",
        },
    ),
    RecordType(
        "incident",
        "A production incident; linked to the deployment that caused it (DESIGN §4).",
        (
            Field("id", S, True, "incident id"),
            Field("opened_at", T, True, "when it was opened"),
            Field("service", S, help="service id"),
            Field("team", S, help="team id"),
            Field("resolved_at", T, help="when it was resolved"),
            Field("severity", S, help="severity, free text"),
            Field("deployment_id", S, help="the deployment that caused it"),
            Field("root_cause_sha", S, help="the commit that caused it"),
            Field("cause", E, choices=("change", "external"), help="change or external"),
        ),
        at="opened_at",
        example={
            "type": "incident",
            "id": "inc-77",
            "opened_at": "2026-03-02T13:00:00Z",
            "resolved_at": "2026-03-02T14:30:00Z",
            "service": "checkout",
        },
    ),
    RecordType(
        "survey",
        "A survey wave.",
        (
            Field("id", S, True, "survey id"),
            Field("title", S, help="title"),
            Field("opens_at", T, help="when the wave opens (its period)"),
            Field("closes_at", T, help="when it closes"),
            Field(
                "k", I, default=5, minimum=3, help="anonymity threshold: fewest respondents shown"
            ),
            Field("comment_k", I, default=10, minimum=1, help="fewest respondents for comments"),
            Field("questions", Q, help="list of {id, kind, text, capability}"),
            Field(
                "continuous",
                B,
                help="an always-on micro-survey (one rating after a platform task), bucketed "
                "by answer time",
            ),
        ),
        at="opens_at",
        example={
            "type": "survey",
            "id": "2026-q1",
            "title": "Platform survey Q1",
            "opens_at": "2026-03-02",
            "questions": [
                {
                    "id": "ci-csat",
                    "kind": "csat",
                    "text": "How satisfied are you with CI?",
                    "capability": "ci",
                }
            ],
        },
    ),
    RecordType(
        "survey_response",
        "One answer to one survey question.",
        (
            Field("id", S, True, "response id"),
            Field("survey", S, True, "survey id"),
            Field("question", S, True, "question id"),
            Field("kind", E, True, choices=SURVEY_KINDS, help="csat, nps, likert or text"),
            Field("respondent", S, True, "respondent id (random; never the invitation)"),
            Field("ts", T, True, "when it was answered"),
            Field("score", I, help="csat 1–5, nps 0–10, likert 1–5; required unless kind is text"),
            Field("team", S, help="respondent's team"),
            Field("capability", S, help="capability the question is about"),
            Field("comment", S, help="free text"),
        ),
        at="ts",
        example={
            "type": "survey_response",
            "id": "r-1",
            "survey": "2026-q1",
            "question": "ci-csat",
            "kind": "csat",
            "respondent": "x7f2",
            "ts": "2026-03-03T09:00:00Z",
            "score": 4,
            "team": "payments",
        },
    ),
    RecordType(
        "survey_invitation",
        "How many people of a team were invited to a survey. Its id is `survey/team/batch`.",
        (
            Field("id", S, help="derived: survey/team/batch"),
            Field("survey", S, True, "survey id"),
            Field("team", S, True, "team id"),
            Field("invited", I, True, minimum=0, help="people invited"),
            Field("batch", S, help="batch name (invited counts of batches are summed)"),
        ),
        id_from=("survey", "team", "batch"),
        example={
            "type": "survey_invitation",
            "survey": "2026-q1",
            "team": "payments",
            "invited": 8,
        },
    ),
)

BY_NAME: dict[str, RecordType] = {t.name: t for t in RECORD_TYPES}
TYPE_NAMES: tuple[str, ...] = tuple(BY_NAME)

# Columns every stored row carries besides its fields.
SOURCE_COLUMNS = ("source", "ingested_at")


def record_type(name: str) -> RecordType:
    """The record type called `name`; KeyError when there is none."""
    return BY_NAME[name]
