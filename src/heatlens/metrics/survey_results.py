"""One survey's results (`heatlens survey results`, `/surveys/{id}`), built on the engine.

Every statistic — CSAT, NPS, Likert mean and median, respondents, response rates, with their
intervals — comes from `compute`, so the engine's anonymity decisions apply unchanged. What the
catalog has no metric for is added here under the same decisions, never looser:

- an answer **distribution** of a question (and period) is shown only when the engine shows that
  question's respondents and its statistic in that period; a hidden cell hides its distribution;
- **comments** of a question are shown only when that question is shown and has at least the
  survey's `comment_k` respondents; they are sorted by text, so their order says nothing about who
  answered when.

Distributions and comments are given per question only, never per team or group.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from heatlens.errors import ConfigError
from heatlens.metrics.engine import Request, compute
from heatlens.metrics.frame import Frame, Tables
from heatlens.metrics.result import Report, Row
from heatlens.settings import Settings

__all__ = ["SCHEMA", "QuestionResult", "SurveyResults", "survey_results"]

SCHEMA = "heatlens.survey-results/v1"
METRIC_OF_KIND = {
    "csat": "happiness.csat",
    "nps": "happiness.nps",
    "likert": "happiness.likert_mean",
}
_STATS = (
    "happiness.respondents",
    "happiness.csat",
    "happiness.nps",
    "happiness.likert_mean",
    "happiness.likert_median",
)


@dataclass
class QuestionResult:
    """One question in one period: its statistic (a row of the engine) and what goes with it."""

    id: str
    kind: str
    text: str
    capability: str | None
    respondents: Row | None
    stat: Row | None
    median: Row | None = None
    distribution: dict[int, int] | None = None
    comments: list[str] | None = None
    hidden_because: str | None = None
    comments_note: str | None = None
    answered: bool = True

    @property
    def shown(self) -> bool:
        return self.hidden_because is None

    def to_json(self) -> dict[str, Any]:
        stat = self.stat
        return {
            "id": self.id,
            "kind": self.kind,
            "text": self.text,
            "capability": self.capability,
            "metric": stat.metric if stat else None,
            "value": stat.value if stat and self.shown else None,
            "ci": list(stat.ci) if stat and stat.ci and self.shown else None,
            "median": self.median.value if self.median and self.shown else None,
            "respondents": (self.respondents.n or 0)
            if self.respondents and self.shown
            else (None if not self.shown else 0),
            "suppressed": not self.shown,
            "hidden_because": self.hidden_because,
            "answered": self.answered,
            "distribution": (
                {str(s): n for s, n in sorted(self.distribution.items())}
                if self.distribution is not None
                else None
            ),
            "comments": self.comments,
            "comments_note": self.comments_note,
        }


@dataclass
class PeriodResult:
    """A wave (or, for a continuous survey, a month) of a survey."""

    period: date
    complete: bool
    respondents: Row | None
    response_rate: Row | None
    questions: list[QuestionResult] = field(default_factory=list)
    teams: list[tuple[str | None, int, Row | None]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "period": self.period.isoformat(),
            "complete": self.complete,
            "respondents": _cell(self.respondents),
            "response_rate": _cell(self.response_rate),
            "questions": [q.to_json() for q in self.questions],
            "teams": [
                {"team": team, "invited": invited, **_cell(row)}
                for team, invited, row in self.teams
            ],
        }


def _cell(row: Row | None) -> dict[str, Any]:
    if row is None:
        return {"value": None, "n": None, "ci": None, "suppressed": False}
    return {
        "value": row.value,
        "n": row.n,
        "ci": list(row.ci) if row.ci else None,
        "suppressed": row.suppressed,
    }


@dataclass
class SurveyResults:
    """Every period of one survey, as `heatlens.survey-results/v1`."""

    survey: dict[str, Any]
    grain: str
    periods: list[PeriodResult]
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        s = self.survey
        return {
            "schema": SCHEMA,
            "survey": {
                "id": s["id"],
                "title": s.get("title"),
                "opens_at": _iso(s.get("opens_at")),
                "closes_at": _iso(s.get("closes_at")),
                "k": s["k"],
                "comment_k": s["comment_k"],
                "continuous": bool(s.get("continuous")),
            },
            "grain": self.grain,
            "periods": [p.to_json() for p in self.periods],
            "warnings": self.warnings,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def survey_results(
    tables: Tables, settings: Settings, survey_id: str, *, now: datetime
) -> SurveyResults:
    """The results of one survey (see the module): every number through `compute`."""
    frame = Frame.load(tables, settings)
    survey = _survey(tables, frame, survey_id)
    tz = frame.tz
    r = tables.table("survey_response")
    answers = (
        r.filter(r.survey == survey_id)
        .select("question", "score", "comment", "ts")
        .to_pyarrow()
        .to_pylist()
    )
    continuous = bool(survey.get("continuous"))
    opens = survey.get("opens_at")
    first = min((a["ts"] for a in answers), default=None)
    start_at = opens or first or now
    day = start_at.astimezone(tz).date()
    if continuous:
        grain = "month"
        start = day.replace(day=1)
        last = min(filter(None, [survey.get("closes_at"), now]))
        last_day = max(last.astimezone(tz).date(), start)
        end = (last_day.replace(day=1) + timedelta(days=32)).replace(day=1)
    else:
        grain, start, end = "all", day, day + timedelta(days=1)

    def run(by: tuple[str, ...], metrics: tuple[str, ...]) -> Report:
        return compute(tables, Request(grain, start, end, by, metrics, now), settings)

    def mine(report: Report) -> list[Row]:
        return [row for row in report.rows if row.segment.get("survey") == survey_id]

    per_question = mine(run(("survey", "question"), _STATS))
    overall = mine(run(("survey",), ("happiness.respondents", "happiness.response_rate")))
    per_team = mine(run(("survey", "team"), ("happiness.response_rate",)))
    invited = _invited(tables, survey_id)

    stats: dict[tuple[str, date, str | None], Row] = {}
    for row in per_question + overall:
        stats[(row.metric, row.period, row.segment.get("question"))] = row
    by_period: dict[date, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for a in answers:
        bucket = start
        if continuous:
            bucket = max(a["ts"].astimezone(tz).date().replace(day=1), start)
        by_period[bucket][a["question"]].append(a)
    periods = sorted({row.period for row in per_question + overall} | set(by_period))
    out: list[PeriodResult] = []
    for p in periods:
        rate = stats.get(("happiness.response_rate", p, None))
        respondents = stats.get(("happiness.respondents", p, None))
        complete = all(row.complete for row in (rate, respondents) if row is not None)
        result = PeriodResult(p, complete, respondents, rate)
        for q in survey["questions"]:
            result.questions.append(
                _question(q, p, stats, by_period[p].get(q["id"], []), survey["comment_k"])
            )
        teams = {row.segment.get("team"): row for row in per_team if row.period == p}
        for team in sorted(set(teams) | set(invited), key=lambda t: (t is not None, t or "")):
            result.teams.append((team, invited.get(team, 0), teams.get(team)))
        out.append(result)
    return SurveyResults(survey, grain, out)


def _survey(tables: Tables, frame: Frame, survey_id: str) -> dict[str, Any]:
    if survey_id not in frame.surveys:
        raise ConfigError(
            f"no survey {survey_id!r} in the store: define it with `heatlens survey define` "
            "(`heatlens survey list` shows the stored ones)"
        )
    s = dict(frame.surveys[survey_id])
    t = tables.table("survey")
    [extra_row] = (
        t.filter(t.id == survey_id)
        .select("title", "comment_k", "continuous")
        .to_pyarrow()
        .to_pylist()
    )
    s.update(title=extra_row["title"], continuous=bool(extra_row["continuous"]))
    s["comment_k"] = extra_row["comment_k"]
    s["k"] = int(s.get("k") or 5)
    s["comment_k"] = int(s.get("comment_k") or 10)
    return s


def _invited(tables: Tables, survey_id: str) -> dict[str | None, int]:
    """Team → people invited (invitation counts hold no answer: no threshold applies)."""
    inv = tables.table("survey_invitation")
    rows = (
        inv.filter(inv.survey == survey_id)
        .group_by("team")
        .aggregate(invited=inv.invited.sum())
        .to_pyarrow()
        .to_pylist()
    )
    return {r["team"]: int(r["invited"] or 0) for r in rows}


def _question(
    q: dict[str, Any],
    period: date,
    stats: dict[tuple[str, date, str | None], Row],
    answers: list[dict[str, Any]],
    comment_k: int,
) -> QuestionResult:
    qid, kind = q["id"], q["kind"]
    respondents = stats.get(("happiness.respondents", period, qid))
    metric = METRIC_OF_KIND.get(kind)
    stat = stats.get((metric, period, qid)) if metric else None
    median = stats.get(("happiness.likert_median", period, qid)) if kind == "likert" else None
    result = QuestionResult(qid, kind, q.get("text") or "", q.get("capability"), respondents, stat)
    result.median = median
    rows = [row for row in (respondents, stat, median) if row is not None]
    if respondents is None or (not respondents.suppressed and not respondents.n):
        result.answered = False
        return result
    if any(row.suppressed for row in rows):
        k = max((row.k or 0) for row in rows)
        result.hidden_because = (
            f"hidden to protect respondents (fewer than k = {k}, or to "
            "keep another hidden group from being worked out)"
        )
        return result
    if kind != "text":
        counts: dict[int, int] = defaultdict(int)
        for a in answers:
            if a["score"] is not None:
                counts[int(a["score"])] += 1
        result.distribution = dict(counts)
    n = respondents.n or 0
    texts = sorted(str(a["comment"]) for a in answers if a["comment"])
    if n >= comment_k:
        result.comments = texts
    elif texts:
        result.comments_note = (
            f"{len(texts)} comment(s) held back: comments are shown from {comment_k} "
            f"respondents (comment_k), this question has {n}"
        )
    return result
