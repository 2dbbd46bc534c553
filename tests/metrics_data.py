"""Random small organisations for comparing the engine with the plain-Python reference.

Records are canonical JSON (ISO timestamps at whole seconds) so they go through the real ingest;
values are drawn from small pools so that segments collide, links form, anonymity thresholds are
crossed and edge cases (nulls, unknown services, dangling links, negative durations) appear; and
the shapes of real delivery data (DESIGN v2): regional production environments, unknown `kind`,
rollbacks right after bad deployments, hotfixes, severities, archived teams, root causes deployed
only after the incident opened, rebased commits (`authored_at` before `committed_at`).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from heatlens.model import BY_NAME

START = datetime(2026, 1, 1, tzinfo=UTC)
SPAN_DAYS = 75


def _ts(rng: random.Random, start: datetime = START, days: float = SPAN_DAYS) -> datetime:
    return start + timedelta(seconds=rng.randrange(int(days * 86400)))


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def organisation(rng: random.Random, size: int = 1) -> list[dict[str, Any]]:
    """A random organisation as canonical records (`size` scales the record counts)."""
    records: list[dict[str, Any]] = []
    groups = ["g1", "g2"]
    teams = [f"t{i}" for i in range(rng.randint(2, 6))]
    registry = rng.random() < 0.85  # sometimes no team registry at all
    if registry:
        for g in groups:
            records.append({"type": "team", "id": g})
        for t in teams:
            rec: dict[str, Any] = {"type": "team", "id": t}
            if rng.random() < 0.8:
                rec["parent"] = rng.choice(groups)
            if rng.random() < 0.2:
                rec["created_at"] = iso(_ts(rng))
            if rng.random() < 0.2:
                rec["archived_at"] = iso(_ts(rng))
            records.append(rec)
    services = [f"s{i}" for i in range(rng.randint(1, 5))]
    for s in services[:-1] if len(services) > 1 else services:  # the last may be unknown
        rec = {"type": "service", "id": s}
        if rng.random() < 0.8:
            rec["team"] = rng.choice(teams)
        if rng.random() < 0.5:
            rec["created_at"] = iso(_ts(rng, START - timedelta(days=20), 40))
        records.append(rec)
    caps = ["ci", "cd", "docs"]
    for c in caps[: rng.randint(1, 3)]:
        rec = {"type": "capability", "id": c}
        if rng.random() < 0.6:
            rec["launched_at"] = iso(_ts(rng, START - timedelta(days=10), 40))
        if rng.random() < 0.3:
            rec["eligible"] = rng.sample(teams, rng.randint(0, len(teams)))
        records.append(rec)
    actors = [f"a{i}" for i in range(rng.randint(1, 8))]
    if rng.random() < 0.5:
        actors.append("Renovate[bot]")  # a bot: in tasks, not in adoption
    for a in actors:
        if rng.random() < 0.8:
            rec = {"type": "membership", "actor": a, "team": rng.choice(teams)}
            if rng.random() < 0.4:
                rec["from"] = iso(_ts(rng))
            if rng.random() < 0.2:
                rec["to"] = iso(_ts(rng))
            records.append(rec)
    for i in range(rng.randint(0, 60 * size)):
        rec = {"type": "usage", "id": f"u{i}", "ts": iso(_ts(rng)), "capability": rng.choice(caps)}
        for field, pool, p in (
            ("actor", actors, 0.8),
            ("team", teams, 0.3),
            ("service", services, 0.4),
            ("action", ["build", "test"], 0.5),
        ):
            if rng.random() < p:
                rec[field] = rng.choice(pool)
        if rng.random() < 0.85:
            rec["outcome"] = rng.choice(["success", "success", "failure", "error", "abandoned"])
        if rng.random() < 0.8:
            rec["duration_s"] = round(rng.lognormvariate(3, 1), 3)
        records.append(rec)
        if rng.random() < 0.15:  # a CI run retried: more attempts of the same run
            rec["run"] = f"run{i}"
            if rng.random() < 0.8:
                rec["attempt"] = 1
            ts = datetime.fromisoformat(rec["ts"].replace("Z", "+00:00"))
            for attempt in range(2, rng.randint(2, 4) + 1):
                again = dict(rec, id=f"u{i}/{attempt}", attempt=attempt)
                again["ts"] = iso(ts + timedelta(minutes=rng.randrange(1, 3000)))
                again["outcome"] = rng.choice(["success", "failure", "error"])
                records.append(again)
    shas = [f"c{i}" for i in range(rng.randint(0, 25 * size))]
    for sha in shas:
        if rng.random() < 0.9:
            committed = _ts(rng)
            rec = {"type": "change", "id": sha, "committed_at": iso(committed)}
            if rng.random() < 0.3:  # rebased: authored earlier (or, rarely, later)
                rec["authored_at"] = iso(committed - timedelta(hours=rng.randrange(-5, 72)))
            records.append(rec)
    deployments = []
    for i in range(rng.randint(0, 30 * size)):
        rec = {
            "type": "deployment",
            "id": f"d{i:02d}",
            "service": rng.choice(services),
            "finished_at": iso(_ts(rng)),
        }
        if rng.random() < 0.25:
            rec["environment"] = rng.choice(["staging", "Prod", "PRODUCTION", "prod-eu", "Prod-US"])
        if rng.random() < 0.1:
            rec["result"] = "failure"
        kind = rng.random()
        if kind < 0.2:
            rec["kind"] = rng.choice(["hotfix", "rollback"])
        elif kind < 0.5:
            rec["kind"] = "planned"  # otherwise unknown
        if rng.random() < 0.2:
            rec["team"] = rng.choice(teams)
        if shas and rng.random() < 0.8:
            rec["commit_sha"] = rng.choice(shas)
        if shas and rng.random() < 0.6:
            rec["commits"] = rng.sample(shas, rng.randint(0, min(4, len(shas))))
        deployments.append(rec)
        records.append(rec)
        if rng.random() < 0.1:  # rolled back (or hotfixed) within hours
            fix = {
                "type": "deployment",
                "id": f"{rec['id']}r",
                "service": rec["service"],
                "finished_at": iso(
                    datetime.fromisoformat(rec["finished_at"].replace("Z", "+00:00"))
                    + timedelta(minutes=rng.randrange(1, 600))
                ),
                "kind": rng.choice(["rollback", "rollback", "hotfix"]),
            }
            if rng.random() < 0.5 and shas:
                fix["commit_sha"] = rng.choice(shas)
            deployments.append(fix)
            records.append(fix)
    for i in range(rng.randint(0, 12 * size)):
        opened = _ts(rng)
        rec = {"type": "incident", "id": f"i{i}", "opened_at": iso(opened)}
        if rng.random() < 0.8:
            rec["service"] = rng.choice(services)
        if rng.random() < 0.7:
            rec["resolved_at"] = iso(opened + timedelta(seconds=rng.randrange(-3600, 5 * 86400)))
        if rng.random() < 0.2:
            rec["team"] = rng.choice(teams)
        r = rng.random()
        if r < 0.2 and deployments:
            rec["deployment_id"] = rng.choice([*(d["id"] for d in deployments), "dangling"])
        elif r < 0.35 and shas:
            rec["root_cause_sha"] = rng.choice([*shas, "nosuchsha"])
        if rng.random() < 0.15:
            rec["cause"] = rng.choice(["external", "change"])
        if rng.random() < 0.6:
            rec["severity"] = rng.choice(["sev1", "SEV2", "sev3", "sev4"])
        records.append(rec)
    surveys = []
    for i in range(rng.randint(0, 2)):
        sid = f"q{i}"
        rec = {
            "type": "survey",
            "id": sid,
            "k": rng.choice([3, 5]),
            "questions": [
                {"id": "sat", "kind": "csat", "capability": rng.choice(caps)},
                {"id": "rec", "kind": "nps"},
                {"id": "l1", "kind": "likert"},
            ],
        }
        if rng.random() < 0.8:
            rec["opens_at"] = iso(_ts(rng))
        if rng.random() < 0.3:
            rec["continuous"] = True  # a micro-survey: a wave per month of answers
        surveys.append(sid)
        records.append(rec)
    if rng.random() < 0.3:
        surveys.append("unrecorded")
    for sid in surveys:
        for t in teams:
            if rng.random() < 0.7:
                records.append(
                    {
                        "type": "survey_invitation",
                        "survey": sid,
                        "team": t,
                        "invited": rng.randint(0, 9),
                    }
                )
    for i in range(rng.randint(0, 40 * size) if surveys else 0):
        kind, question = rng.choice(
            [("csat", "sat"), ("nps", "rec"), ("likert", "l1"), ("text", "free")]
        )
        rec = {
            "type": "survey_response",
            "id": f"r{i}",
            "survey": rng.choice(surveys),
            "question": question,
            "kind": kind,
            "respondent": f"p{rng.randrange(12)}",
            "ts": iso(_ts(rng)),
        }
        if kind != "text":
            rec["score"] = rng.randint(*{"csat": (1, 5), "nps": (0, 10), "likert": (1, 5)}[kind])
        if rng.random() < 0.8:
            rec["team"] = rng.choice(teams)
        records.append(rec)
    return records


def by_type(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by type, without `type`, every field present (None when not given), as
    the store holds them."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        rec = {f: r.get(f) for f in BY_NAME[r["type"]].field_names}
        out.setdefault(r["type"], []).append(rec)
    return out
