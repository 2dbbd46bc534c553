"""Quarterly developer surveys for the demo: waves, invitations and anonymous answers.

Response rates of 40–70 % in teams of 6–10 leave some team × wave cells under the anonymity
threshold of five respondents, so suppression is visible. Satisfaction with a capability rises as it
matures, except where the demo gives it a quality problem.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from heatlens.demo.organisation import (
    DAY,
    US,
    Capability,
    Org,
    numbered,
    strings,
    table,
    timestamps,
)

K, COMMENT_K = 5, 10
OPEN_DAYS = 14
# comments by sentiment (positive, neutral, negative) and answers to the free-text question
COMMENTS = (
    (
        "Works well for us.",
        "Much faster than last quarter.",
        "The docs were clear and it just worked.",
        "Great help in the platform channel.",
    ),
    ("Does the job.", "Fine, some rough edges left.", "Haven't used it much yet."),
    (
        "Flaky runs cost us hours this month.",
        "Hard to debug when it fails.",
        "We waited days for an answer.",
        "Setup was confusing.",
    ),
    (
        "Make preview environments reliable.",
        "Tell us when new capabilities launch.",
        "Faster CI for the monorepo.",
        "Examples for feature flags, please.",
        "One place to see what is deployed where.",
        "Fewer tickets to get a new service running.",
    ),
)
TEXT = len(COMMENTS) - 1
GENERAL = (
    ("nps", "nps", "How likely are you to recommend the platform to a colleague?", None),
    ("flow", "likert", "I can ship without waiting on the platform team.", None),
    ("docs", "likert", "The developer portal answers my questions.", "docs-portal"),
    ("improve", "text", "What should the platform team improve next?", None),
)


def waves(org: Org) -> list[tuple[str, str, int]]:
    """(id, title, opens µs) of each quarterly wave that opens and closes inside the window:
    two weeks after each quarter starts, at 09:00 UTC."""
    first = datetime.fromtimestamp(org.start / US, UTC).year
    found = []
    for year in range(first, first + org.days // 365 + 2):
        for q in range(1, 5):
            day = date(year, 3 * q - 2, 1) + timedelta(days=OPEN_DAYS)
            opens = int(datetime.combine(day, time(9), UTC).timestamp()) * US
            if opens >= org.start and opens + OPEN_DAYS * DAY <= org.end:
                found.append((f"{year}-q{q}", f"Platform survey {year} Q{q}", opens))
    return found


def survey_tables(org: Org, rng: np.random.Generator) -> dict[str, pa.Table]:
    """The survey, survey_invitation and survey_response records of `org`."""
    mood = rng.normal(0, 0.3, len(org.team_ids))  # some teams are happier, wave after wave
    surveys: dict[str, list[Any]] = {"id": [], "title": [], "opens_at": [], "questions": []}
    invitations: dict[str, list[Any]] = {"survey": [], "team": [], "invited": [], "batch": []}
    answers: list[dict[str, np.ndarray]] = []
    for survey_id, title, opens in waves(org):
        # a capability is asked about once it has been out for a month
        launched = org.day_start(org.launch)
        asked = [c for j, c in enumerate(org.caps) if c.csat and launched[j] <= opens - 30 * DAY]
        questions = [
            {"id": f"csat-{c.id}", "kind": "csat", "text": _satisfied(c), "capability": c.id}
            for c in asked
        ] + [{"id": i, "kind": k, "text": t, "capability": c} for i, k, t, c in GENERAL]
        row = (survey_id, title, opens, json.dumps(questions, separators=(",", ":")))
        for key, value in zip(surveys, row, strict=True):
            surveys[key].append(value)
        active = (org.mem_from <= opens) & (opens < org.mem_to)
        invited = np.bincount(org.mem_team[active], minlength=len(org.team_ids))
        for t in np.flatnonzero(invited):
            # two teams invite by email and by chat separately; their batches add up
            split = t in (0, 3) and invited[t] > 3
            batches = [("email", invited[t] - 2), ("chat", 2)] if split else [(None, invited[t])]
            for batch, count in batches:
                invitation = (survey_id, org.team_ids[t], int(count), batch)
                for key, value in zip(invitations, invitation, strict=True):
                    invitations[key].append(value)
        answers += _answers(org, rng, survey_id, opens, questions, invited, mood)

    n = len(surveys["id"])
    opens_at = np.array(surveys.pop("opens_at"), dtype=np.int64)
    survey_columns = {
        **surveys,
        "opens_at": timestamps(opens_at),
        "closes_at": timestamps(opens_at + OPEN_DAYS * DAY),
        "k": [K] * n,
        "comment_k": [COMMENT_K] * n,
    }
    return {
        "survey": table("survey", survey_columns),
        "survey_invitation": table("survey_invitation", invitations),
        "survey_response": _response_table(org, answers),
    }


def _answers(
    org: Org,
    rng: np.random.Generator,
    survey_id: str,
    opens: int,
    questions: list[dict[str, Any]],
    invited: np.ndarray,
    mood: np.ndarray,
) -> list[dict[str, np.ndarray]]:
    """One dict of answer columns per question of a wave."""
    day = (opens - org.start) // DAY
    wave = day / org.days  # how far into the window, for the organisation-wide trend
    respondents = rng.binomial(invited, np.clip(rng.beta(6, 5, invited.size), 0.3, 0.9))
    team = np.repeat(np.arange(invited.size), respondents)
    n = team.size
    first_answer = np.minimum(rng.exponential(2.5 * DAY, n), (OPEN_DAYS - 0.5) * DAY)
    ts = opens + first_answer.astype(np.int64)
    person = rng.integers(0, 16**12, n)  # a random respondent id per person and wave
    feel = mood[team] + rng.normal(0, 0.3, n)
    adopted = (org.adopt[team] <= day) & (day < org.stop[team])
    found = []
    for i, q in enumerate(questions):
        answered = rng.random(n) < (0.35 if q["kind"] == "text" else 0.95)
        noise = rng.normal(0, 1, n)
        if q["kind"] == "csat":
            j = org.cap(q["capability"])
            base, gain = org.caps[j].csat or (3.0, 0.0)
            maturity = np.clip((day - org.launch[j]) / 365, 0, 1)
            score = np.clip(np.round(base + gain * maturity + feel + 0.8 * noise), 1, 5)
            answered &= adopted[:, j]  # only people whose team uses it
        elif q["kind"] == "nps":
            score = np.clip(np.round(6.6 + 1.5 * wave + 1.5 * feel + 1.8 * noise), 0, 10)
        elif q["kind"] == "likert":
            lift = 0.5 * adopted[:, org.cap("cd")] if q["id"] == "flow" else 0.3 * wave
            score = np.clip(np.round(3.0 + lift + feel + 0.85 * noise), 1, 5)
        else:
            score = np.zeros(n)
        sentiment = _sentiment(q["kind"], score)
        remark = np.where(q["kind"] == "text", TEXT, np.where(rng.random(n) < 0.12, sentiment, -1))
        found.append(
            {
                "survey": np.full(answered.sum(), survey_id, dtype=object),
                "question": np.full(answered.sum(), q["id"], dtype=object),
                "kind": np.full(answered.sum(), q["kind"], dtype=object),
                "capability": np.full(answered.sum(), q["capability"], dtype=object),
                "respondent": person[answered],
                "ts": ts[answered] + i * 20 * US,
                "score": score[answered],
                "team": team[answered],
                "remark": remark[answered],
                "pick": rng.integers(0, 1 << 30, n)[answered],
            }
        )
    return found


def _satisfied(capability: Capability) -> str:
    name = capability.name
    # inside a sentence: "Feature flags" → "feature flags", while "CI pipelines" keeps its case
    name = name if name[1:2].isupper() else name[:1].lower() + name[1:]
    return f"How satisfied are you with {name}?"


def _sentiment(kind: str, score: np.ndarray) -> np.ndarray:
    """Index into COMMENTS: 0 positive, 1 neutral, 2 negative."""
    high, low = (9, 6) if kind == "nps" else (4, 2)
    return np.where(score >= high, 0, np.where(score <= low, 2, 1))


def _response_table(org: Org, answers: list[dict[str, np.ndarray]]) -> pa.Table:
    if not answers:
        return table("survey_response", {"id": pa.array([], pa.string())})
    a = {k: np.concatenate([x[k] for x in answers]) for k in answers[0]}
    sizes = np.array([len(c) for c in COMMENTS])
    first = np.cumsum(sizes) - sizes
    group = np.maximum(a["remark"], 0)
    columns = {
        "id": numbered("resp-", a["ts"].size),
        "survey": pa.array(a["survey"], pa.string()),
        "question": pa.array(a["question"], pa.string()),
        "kind": pa.array(a["kind"], pa.string()),
        "respondent": pa.array([f"r-{p:012x}" for p in a["respondent"]], pa.string()),
        "ts": timestamps(a["ts"]),
        "score": pa.array(a["score"].astype(np.int64), mask=a["kind"] == "text"),
        "team": strings(org.team_ids, a["team"]),
        "capability": pa.array(a["capability"], pa.string()),
        "comment": strings(
            [text for texts in COMMENTS for text in texts],
            first[group] + a["pick"] % sizes[group],
            a["remark"] >= 0,
        ),
    }
    return table("survey_response", columns)
