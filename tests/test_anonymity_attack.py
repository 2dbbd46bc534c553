"""An attacker against happiness anonymity (DESIGN §4 v2, docs/anonymity.md).

Over generated small organisations (groups of teams, a few waves, csat questions about
capabilities, 1–12 respondents per team and wave), the attacker runs the engine for every
combination of happiness keys, two grains and several ranges, and keeps every visible row. It
knows which answers each row reads (from the row's wave, period and segment — checked against the
row's own numbers), and then tries, for CSAT's numerator x and answer count and for respondents:
every difference of two rows (one inside the other), and every row minus the visible rows of one
query inside it, then minus the visible rows of a second query inside what is left. None may
leave a set of answers from fewer than k (but more than 0) distinct respondents: that set's
CSAT would be recovered.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heatlens.ingest import ingest_records
from heatlens.metrics import Request, compute
from heatlens.settings import load_settings
from heatlens.store import Store

K = 5
TEAM_KEYS: tuple[tuple[str, ...], ...] = ((), ("group",), ("team",))
QUESTION_KEYS: tuple[tuple[str, ...], ...] = ((), ("question",), ("capability",))
QUESTION_KEYS += (("question", "capability"),)
# (grain, --from, --to): whole months, a range clipping two months, and all of it at once
QUERIES = [
    ("month", date(2024, 1, 1), date(2024, 4, 1)),
    ("all", date(2024, 1, 1), date(2024, 4, 1)),
    ("all", date(2024, 1, 15), date(2024, 3, 1)),
]


@st.composite
def organisations(draw: Any) -> dict[str, Any]:
    """Records of a small organisation and the answers' facts the attacker knows."""
    groups = draw(st.integers(1, 2))
    teams = {f"g{g}t{i}": f"g{g}" for g in range(groups) for i in range(draw(st.integers(1, 3)))}
    questions = {
        f"q{i}": draw(st.sampled_from(["ci", "deploy"])) for i in range(draw(st.integers(1, 3)))
    }
    records: list[dict[str, Any]] = [{"type": "team", "id": f"g{g}"} for g in range(groups)]
    records += [{"type": "team", "id": t, "parent": g} for t, g in teams.items()]
    waves = []
    for w in range(draw(st.integers(1, 2))):
        continuous = draw(st.booleans()) if w == 1 else False
        opens = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=draw(st.integers(0, 75)))
        survey = {
            "type": "survey",
            "id": f"s{w}",
            "k": K,
            "continuous": continuous,
            "questions": [{"id": q, "kind": "csat", "capability": c} for q, c in questions.items()],
        }
        if not continuous:
            survey["opens_at"] = opens.isoformat()
        records.append(survey)
        waves.append((f"s{w}", continuous, opens))
    answers = []
    for survey, continuous, opens in waves:
        for team in teams:
            for person in range(draw(st.integers(1, 12))):
                # a continuous survey's answers spread over three months; a wave's on its day
                ts = opens
                if continuous:
                    ts = datetime(2024, 1, 5, tzinfo=UTC) + timedelta(days=draw(st.integers(0, 80)))
                asked = draw(st.sets(st.sampled_from(sorted(questions)), min_size=1))
                for q in sorted(asked):
                    answers.append(
                        {
                            "type": "survey_response",
                            "id": f"{survey}/{team}/{person}/{q}",
                            "survey": survey,
                            "question": q,
                            "kind": "csat",
                            "respondent": f"{team}-{person}",
                            "team": team,
                            "score": draw(st.integers(1, 5)),
                            "ts": ts.isoformat(),
                        }
                    )
    return {
        "records": records + answers,
        "answers": answers,
        "teams": teams,
        "capability": questions,
        "continuous": {s for s, c, _ in waves if c},
        "opens": {s: o.date() for s, c, o in waves if not c},
    }


def _content(org: dict[str, Any], row: Any, period_end: date) -> frozenset[str]:
    """The answers a row reads: its wave(s) in its period, then its segment's filters."""
    out = set()
    for a in org["answers"]:
        seg = row.segment
        if a["survey"] != seg["survey"]:
            continue
        if a["survey"] in org["continuous"]:
            day = date.fromisoformat(a["ts"][:10]).replace(day=1)  # the month's wave
        else:
            day = org["opens"][a["survey"]]
        if not row.period <= day < period_end:
            continue
        if "team" in seg and a["team"] != seg["team"]:
            continue
        if "group" in seg and org["teams"][a["team"]] != seg["group"]:
            continue
        if "question" in seg and a["question"] != seg["question"]:
            continue
        if "capability" in seg and org["capability"][a["question"]] != seg["capability"]:
            continue
        out.add(a["id"])
    return frozenset(out)


def _outputs(store: Store, org: dict[str, Any]) -> list[list[frozenset[str]]]:
    """Every query's visible rows (as the answers each reads), one list per query and period."""
    s = load_settings(environ={}, overrides={})
    by_id = {a["id"]: a for a in org["answers"]}
    queries: list[list[frozenset[str]]] = []
    for grain, start, end in QUERIES:
        for team_keys in TEAM_KEYS:
            for question_keys in QUESTION_KEYS:
                by = (*team_keys, *question_keys)
                now = datetime(2025, 1, 1, tzinfo=UTC)
                report = compute(store, Request(grain, start, end, by, ("happiness.csat",), now), s)
                periods: dict[date, list[frozenset[str]]] = {}
                for row in report.rows:
                    assert "survey" in row.segment  # every happiness row names its wave
                    period_end = _period_end(grain, row.period, end)
                    content = _content(org, row, period_end)
                    answers = [by_id[i] for i in content]
                    if row.suppressed:
                        assert row.value is None and row.n is None and row.x is None
                        continue
                    # the attacker's model of the row is the engine's: same answers, same x
                    assert row.d == len(answers)
                    assert row.x == sum(a["score"] >= 4 for a in answers)
                    assert row.n == len({a["respondent"] for a in answers}) >= K
                    periods.setdefault(row.period, []).append(content)
                queries += periods.values()
    return queries


def _period_end(grain: str, start: date, end: date) -> date:
    if grain == "all":
        return end
    nxt = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    return min(nxt, end)


def _leaks(queries: list[list[frozenset[str]]], people: dict[str, str]) -> list[str]:
    """Sets of answers the attacker can isolate that hold 1 to k − 1 respondents."""
    visible = {c for q in queries for c in q}
    found = []

    def check(what: str, rest: frozenset[str]) -> None:
        n = len({people[a] for a in rest})
        if 0 < n < K:
            found.append(f"{what} leaves {n} respondents: {sorted(rest)}")

    # every row minus the visible rows of one query inside it, then of a second query
    for parent in visible:
        for x in queries:
            inside = [c for c in x if c < parent]
            if not inside:
                continue
            rest = parent.difference(*inside)
            check("a row minus one query's rows", rest)
            for y in queries:
                more = [c for c in y if c <= rest]
                if more:
                    check("a row minus two queries' rows", rest.difference(*more))
    # every difference of two known sets, repeated on what it yields until nothing is new
    # (pairs of rows first, then differences of differences)
    known = set(visible)
    fresh = set(visible)
    while fresh:
        new = set()
        for a in known:
            for b in fresh:
                for big, small in ((a, b), (b, a)):
                    if small < big and (rest := big - small) not in known:
                        new.add(rest)
        for rest in new:
            check("a difference", rest)
        known |= new
        fresh = new
    return found


@settings(
    max_examples=5,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(org=organisations())
def test_no_difference_of_outputs_recovers_fewer_than_k(org: dict[str, Any]) -> None:
    with Store.open("duckdb:///:memory:") as store:
        ingest_records(store, org["records"], load_settings(environ={}, overrides={}), source="t")
        queries = _outputs(store, org)
    people = {a["id"]: a["respondent"] for a in org["answers"]}
    assert _leaks(queries, people) == []
