"""The demo organisation: valid records, and the platform's story visible in them."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from heatlens.demo import OrgSpec, generate, usage_scale_for, write
from heatlens.model import RECORD_TYPES, SCORE_RANGES, Kind

Tables = dict[str, pa.Table]
DB = duckdb.DuckDBPyConnection
END = date(2026, 3, 2)
SPEC = OrgSpec(teams=36, days=365, end=END, seed=7)
START = datetime.combine(END, datetime.min.time(), UTC) - timedelta(days=SPEC.days)
STOP = datetime.combine(END, datetime.min.time(), UTC)
ARROW = {
    Kind.STRING: pa.string(),
    Kind.ENUM: pa.string(),
    Kind.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    Kind.NUMBER: pa.float64(),
    Kind.INTEGER: pa.int64(),
    Kind.BOOLEAN: pa.bool_(),
    Kind.STRING_LIST: pa.list_(pa.string()),
    Kind.OBJECT: pa.string(),
    Kind.QUESTIONS: pa.string(),
}
# registry dates may lie before the window; everything that happened lies inside it
BEFORE_WINDOW_ALLOWED = {
    ("team", "created_at"),
    ("service", "created_at"),
    ("capability", "launched_at"),
}


@pytest.fixture(scope="module")
def tables() -> Tables:
    return generate(SPEC)


@pytest.fixture(scope="module")
def db(tables: Tables) -> DB:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, data in tables.items():
        con.register(name, data)
    # every usage record's team, resolved as the store does: own, service owner, membership
    con.execute(
        """
        CREATE TABLE resolved AS
        SELECT u.id, u.ts, u.capability, coalesce(u.team, s.team, m.team) AS team
        FROM usage u
        LEFT JOIN service s ON s.id = u.service
        LEFT JOIN membership m ON u.team IS NULL AND u.service IS NULL AND m.actor = u.actor
            AND coalesce(m."from", '-infinity'::TIMESTAMPTZ) <= u.ts
            AND u.ts < coalesce(m."to", 'infinity'::TIMESTAMPTZ)
        """
    )
    con.execute(
        """
        CREATE TABLE good AS
        SELECT d.*, s.team AS owner FROM deployment d JOIN service s ON s.id = d.service
        WHERE d.result = 'success' AND lower(d.environment) IN ('production', 'prod')
        """
    )
    return con


def rows(con: DB, sql: str) -> list[tuple[Any, ...]]:
    return con.execute(sql).fetchall()


def value(con: DB, sql: str) -> Any:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def count(con: DB, rest: str) -> int:
    """`SELECT count(*) FROM <rest>`."""
    return int(value(con, f"SELECT count(*) FROM {rest}"))


def test_every_type_has_exactly_its_fields_with_the_arrow_types(tables: Tables) -> None:
    assert list(tables) == [t.name for t in RECORD_TYPES]
    for record in RECORD_TYPES:
        fields = [f for f in record.fields if not (f.name == "id" and record.id_from)]
        schema = tables[record.name].schema
        assert schema.names == [f.name for f in fields], record.name
        assert [schema.field(f.name).type for f in fields] == [ARROW[f.kind] for f in fields]


def test_records_are_valid(tables: Tables) -> None:
    for record in RECORD_TYPES:
        data = tables[record.name]
        for f in record.fields:
            if f.name not in data.column_names:
                continue
            column, where = data.column(f.name), (record.name, f.name)
            if f.required:
                assert column.null_count == 0, where
            if f.choices:
                assert pc.all(pc.is_in(column.drop_null(), pa.array(f.choices))).as_py(), where
            if f.kind not in (Kind.TIMESTAMP, Kind.NUMBER, Kind.INTEGER):
                continue
            low, high = pc.min_max(column).values()
            if f.minimum is not None and low.is_valid:
                assert low.as_py() >= f.minimum, where
            if f.kind is Kind.TIMESTAMP and low.is_valid:
                assert high.as_py() < STOP, where
                if where not in BEFORE_WINDOW_ALLOWED:
                    assert low.as_py() >= START, where
    answers = tables["survey_response"]
    for kind, (low, high) in SCORE_RANGES.items():
        scores = answers.filter(pc.equal(answers.column("kind"), kind)).column("score")
        assert scores.null_count == 0 and len(scores) > 0
        assert low <= pc.min(scores).as_py() <= pc.max(scores).as_py() <= high
    text = answers.filter(pc.equal(answers.column("kind"), "text"))
    assert text.column("score").null_count == len(text) > 0
    assert text.column("comment").null_count == 0


def test_ids_are_unique_per_type(tables: Tables) -> None:
    for record in RECORD_TYPES:
        data = tables[record.name]
        columns = record.id_from or ("id",)
        keys = list(zip(*(data.column(c).to_pylist() for c in columns), strict=True))
        assert len(set(keys)) == len(keys) > 0, record.name


def test_organisation_has_groups_teams_people_and_services(db: DB) -> None:
    groups = value(db, "SELECT count(DISTINCT parent) FROM team")
    teams = value(db, "SELECT count(*) FROM team WHERE parent IS NOT NULL")
    assert groups >= 4 and teams >= 30
    assert count(db, "team WHERE id IN (SELECT parent FROM team)") == groups
    sizes = [
        n for (n,) in rows(db, 'SELECT count(*) FROM membership WHERE "to" IS NULL GROUP BY team')
    ]
    assert len(sizes) == teams and min(sizes) >= 5 and max(sizes) <= 12
    assert count(db, 'membership WHERE "to" IS NOT NULL') > 0  # people who moved team
    assert 80 <= count(db, "service") <= 130
    assert count(db, "service WHERE team NOT IN (SELECT id FROM team)") == 0
    assert count(db, f"service WHERE created_at >= '{START}'") >= 5
    assert value(db, "SELECT count(DISTINCT repo) FROM service") < count(db, "service")


def test_capabilities_launch_at_different_times_some_mandated_one_for_some_teams(
    db: DB, tables: Tables
) -> None:
    launches = tables["capability"].column("launched_at").to_pylist()
    assert len(launches) >= 8 and len(set(launches)) == len(launches)
    assert min(launches) < START < max(launches)
    assert count(db, "capability WHERE mandated") >= 1
    eligible = rows(db, "SELECT id, eligible FROM capability WHERE eligible IS NOT NULL")
    assert len(eligible) == 1
    cap, offered = eligible[0]
    teams = {t for (t,) in rows(db, "SELECT id FROM team WHERE parent IS NOT NULL")}
    active = {
        t for (t,) in rows(db, f"SELECT DISTINCT team FROM resolved WHERE capability = '{cap}'")
    }
    assert set(offered) < teams
    assert set(offered) - active, "an eligible team that never uses it"
    assert active - set(offered), "an active team that is not eligible"


def test_every_usage_actor_is_a_member_of_the_records_team_then(db: DB) -> None:
    # every actor but the dependency bot, which belongs to no team
    assert count(db, "usage WHERE actor NOT IN (SELECT actor FROM membership)") == count(
        db, "usage WHERE actor = 'renovate[bot]'"
    )
    outside = """
        usage u WHERE u.actor IS NOT NULL AND u.team IS NOT NULL AND u.actor <> 'renovate[bot]'
        AND NOT EXISTS (SELECT 1 FROM membership m WHERE m.actor = u.actor AND m.team = u.team
            AND coalesce(m."from", '-infinity'::TIMESTAMPTZ) <= u.ts
            AND u.ts < coalesce(m."to", 'infinity'::TIMESTAMPTZ))
    """
    assert count(db, outside) == 0
    assert count(db, "resolved WHERE team IS NULL") == 0


def test_usage_exercises_every_way_of_finding_the_team(db: DB) -> None:
    shapes = dict(
        rows(
            db,
            """
            SELECT (team IS NOT NULL)::INT || (service IS NOT NULL)::INT
                   || (actor IS NOT NULL)::INT, count(*)
            FROM usage GROUP BY ALL
            """,
        )
    )
    assert shapes.get("001", 0) > 0  # actor only: team by membership
    assert shapes.get("010", 0) > 0  # service only: team by owner
    assert shapes.get("011", 0) > 0  # service and actor, no team
    assert shapes.get("100", 0) > 0  # team only
    assert value(db, "SELECT count(DISTINCT id) = count(*) FROM usage")


def test_team_adoption_follows_an_s_curve_upwards(db: DB, tables: Tables) -> None:
    teams = value(db, "SELECT count(*) FROM team WHERE parent IS NOT NULL")
    rising = 0
    for cap, launched in rows(db, "SELECT id, launched_at FROM capability"):
        first = max(launched, START)
        share = [
            value(
                db,
                f"""SELECT count(DISTINCT team) FROM resolved WHERE capability = '{cap}'
                AND ts >= '{a}' AND ts < '{a + timedelta(days=91)}'""",
            )
            / teams
            for a in (first, STOP - timedelta(days=91))
        ]
        rising += share[1] > share[0]
    assert rising >= 6
    last_quarter = dict(
        rows(
            db,
            f"""SELECT capability, count(DISTINCT team) FROM resolved
            WHERE ts >= '{STOP - timedelta(days=91)}' GROUP BY ALL""",
        )
    )
    for cap in ("secrets", "observability"):  # mandated: near-universal
        assert last_quarter[cap] >= 0.9 * teams
    assert last_quarter["feature-flags"] <= 0.4 * teams  # plateaus low: an awareness problem
    assert count(db, "usage u JOIN capability c ON c.id = u.capability WHERE ts < launched_at") == 0


def test_some_teams_stop_using_a_capability(db: DB) -> None:
    churned = f"""
        (SELECT team, capability, max(ts) AS last FROM resolved GROUP BY ALL)
        WHERE last < TIMESTAMPTZ '{STOP}' - INTERVAL 45 DAY
        AND capability NOT IN (SELECT id FROM capability WHERE mandated)
    """
    assert count(db, churned) >= 1


def test_task_outcomes_mix_and_one_quality_problem(db: DB) -> None:
    mix = {
        cap: (ok / n, n_bad)
        for cap, ok, n, n_bad in rows(
            db,
            """SELECT capability, count(*) FILTER (outcome = 'success'), count(outcome),
                      count(*) FILTER (outcome IN ('failure', 'error', 'abandoned'))
               FROM usage GROUP BY ALL""",
        )
    }
    assert all(n_bad > 0 for _, n_bad in mix.values())
    assert sorted(mix, key=lambda c: mix[c][0])[0] == "preview-envs"
    others = min(rate for cap, (rate, _) in mix.items() if cap != "preview-envs")
    assert mix["preview-envs"][0] < 0.75 < others
    outcomes = dict(rows(db, "SELECT coalesce(outcome, 'none'), count(*) FROM usage GROUP BY ALL"))
    total = sum(outcomes.values())
    assert outcomes["success"] > 0.75 * total
    assert all(outcomes[o] > 0 for o in ("failure", "error", "abandoned", "none"))
    assert outcomes["none"] < 0.1 * total


def test_task_durations_are_heavy_tailed(db: DB) -> None:
    ratios = rows(
        db,
        """SELECT capability, action,
                  quantile_cont(duration_s, 0.9) / quantile_cont(duration_s, 0.5)
           FROM usage WHERE outcome = 'success' GROUP BY ALL HAVING count(*) >= 500""",
    )
    assert ratios and all(r >= 3 for *_, r in ratios)
    assert value(db, "SELECT min(duration_s) FROM usage") >= 0


def test_usage_follows_the_working_week(db: DB) -> None:
    by_day = dict(rows(db, "SELECT isodow(ts) >= 6, count(*) FROM usage GROUP BY ALL"))
    assert by_day[False] / 5 > 5 * by_day[True] / 2
    office = value(db, "SELECT avg((hour(ts) BETWEEN 8 AND 18)::INT) FROM usage")
    assert office > 0.8


def adopters(db: DB) -> list[tuple[Any, ...]]:
    """Teams whose first cd usage has 90 days of history on each side."""
    return rows(
        db,
        f"""SELECT team, min(ts) AS adopted FROM resolved WHERE capability = 'cd' GROUP BY team
            HAVING min(ts) >= '{START + timedelta(days=90)}'
               AND min(ts) < '{STOP - timedelta(days=90)}'""",
    )


def test_lead_time_falls_after_a_team_adopts_cd(db: DB) -> None:
    teams = adopters(db)
    assert len(teams) >= 10
    db.execute(
        """CREATE OR REPLACE TABLE lead AS
           SELECT g.owner AS team, g.finished_at,
                  epoch(g.finished_at - c.committed_at) / 3600 AS hours
           FROM (SELECT *, unnest(commits) AS sha FROM good) g JOIN change c ON c.id = g.sha"""
    )
    better = 0
    for team, adopted in teams:
        before, after = (
            value(
                db,
                f"""SELECT median(hours) FROM lead WHERE team = '{team}'
                AND finished_at >= '{a}' AND finished_at < '{a + timedelta(days=90)}'""",
            )
            for a in (adopted - timedelta(days=90), adopted)
        )
        better += after < before
    assert better >= 0.8 * len(teams)
    assert value(db, "SELECT min(hours) FROM lead") >= 0
    cd_users = "SELECT team FROM resolved WHERE capability = 'cd'"
    never = f"team WHERE parent IS NOT NULL AND id NOT IN ({cd_users})"
    assert count(db, never) >= 2  # a comparison group


def test_deployments_are_more_frequent_and_fail_less_after_cd(db: DB) -> None:
    teams = adopters(db)
    db.execute(
        """CREATE OR REPLACE TABLE failed AS
        SELECT DISTINCT coalesce(by_id.id, by_sha.id, by_time.id) AS deployment
        FROM incident i
        LEFT JOIN good by_id ON by_id.id = i.deployment_id
        LEFT JOIN (SELECT id, unnest(commits) AS sha FROM good) by_sha
            ON i.deployment_id IS NULL AND by_sha.sha = i.root_cause_sha
        LEFT JOIN LATERAL (
            SELECT id FROM good g WHERE i.deployment_id IS NULL AND i.root_cause_sha IS NULL
            AND coalesce(i.cause, 'change') <> 'external' AND g.service = i.service
            AND g.finished_at <= i.opened_at AND i.opened_at - g.finished_at <= INTERVAL 7 DAY
            ORDER BY g.finished_at DESC, g.id DESC LIMIT 1
        ) by_time ON TRUE"""
    )
    totals = np.zeros((2, 2))  # (before, after) × (deployments, failed)
    more_often = 0
    for team, adopted in teams:
        counts = []
        for side, a in enumerate((adopted - timedelta(days=90), adopted)):
            n, bad = rows(
                db,
                f"""SELECT count(*), count(f.deployment) FROM good g
                LEFT JOIN failed f ON f.deployment = g.id WHERE g.owner = '{team}'
                AND g.finished_at >= '{a}' AND g.finished_at < '{a + timedelta(days=90)}'""",
            )[0]
            totals[side] += (n, bad)
            counts.append(n)
        more_often += counts[1] > counts[0]
    assert more_often >= 0.8 * len(teams)
    cfr_before, cfr_after = totals[:, 1] / totals[:, 0]
    assert cfr_after < 0.75 * cfr_before


def test_deployments_ship_changes_and_incidents_link_in_every_way(db: DB) -> None:
    assert count(db, "good WHERE len(commits) > 1") > 0  # changes shipped together
    assert count(db, "good WHERE commits IS NULL AND kind = 'planned'") > 0
    shipped = "(SELECT finished_at, unnest(commits) AS sha FROM deployment) d"
    assert count(db, f"{shipped} WHERE sha NOT IN (SELECT id FROM change)") == 0
    assert count(db, f"{shipped} JOIN change c ON c.id = sha WHERE committed_at > finished_at") == 0
    kinds = dict(rows(db, "SELECT kind, count(*) FROM deployment GROUP BY ALL"))
    assert kinds["planned"] > 10 * (kinds["hotfix"] + kinds["rollback"]) > 0 and kinds["rollback"]
    assert count(db, "deployment WHERE environment = 'staging'") > 0
    assert count(db, "deployment WHERE result = 'failure'") > 0
    assert count(db, "change WHERE author NOT IN (SELECT actor FROM membership)") == 0
    links = rows(
        db,
        """SELECT count(*) FILTER (deployment_id IS NOT NULL),
                  count(*) FILTER (root_cause_sha IS NOT NULL),
                  count(*) FILTER (deployment_id IS NULL AND root_cause_sha IS NULL
                                   AND coalesce(cause, '') <> 'external'),
                  count(*) FILTER (cause = 'external'),
                  count(*) FILTER (resolved_at < opened_at)
           FROM incident""",
    )[0]
    assert all(n > 0 for n in links[:4]) and links[4] == 0
    assert count(db, "incident WHERE deployment_id NOT IN (SELECT id FROM deployment)") == 0
    assert count(db, "incident WHERE root_cause_sha NOT IN (SELECT id FROM change)") == 0
    first_deploy = f"""service s WHERE created_at >= '{START}'
                       AND EXISTS (SELECT 1 FROM good g WHERE g.service = s.id)"""
    assert count(db, first_deploy) >= 5  # so time to first deploy exists


def test_quarterly_surveys_with_visible_anonymity_suppression(db: DB, tables: Tables) -> None:
    surveys = tables["survey"].to_pylist()
    assert len(surveys) >= 3
    for survey in surveys:
        assert (survey["k"], survey["comment_k"]) == (5, 10)
        assert survey["opens_at"] < survey["closes_at"]
        questions = json.loads(survey["questions"])
        assert {"csat", "nps", "likert", "text"} <= {q["kind"] for q in questions}
        assert all(q["capability"] for q in questions if q["kind"] == "csat")
    cells = rows(
        db,
        """SELECT i.survey, i.team, sum(i.invited) AS invited,
                  (SELECT count(DISTINCT respondent) FROM survey_response r
                   WHERE r.survey = i.survey AND r.team = i.team) AS answered
           FROM survey_invitation i GROUP BY ALL""",
    )
    answered = np.array([a for *_, a in cells])
    assert (answered < 5).any() and (answered >= 5).any()
    assert 0.4 <= answered.sum() / sum(i for _, _, i, _ in cells) <= 0.7
    assert count(db, "survey_response WHERE respondent IN (SELECT actor FROM membership)") == 0
    assert count(db, "survey_response WHERE comment IS NOT NULL AND kind <> 'text'") > 0
    csat = rows(
        db,
        """SELECT survey, avg((score >= 4)::INT) FROM survey_response
           WHERE question = 'csat-cd' GROUP BY ALL ORDER BY survey""",
    )
    assert csat[-1][1] > csat[0][1]  # cd satisfaction rises as it matures


def test_same_seed_same_data_other_seed_other_data(tables: Tables) -> None:
    again = generate(SPEC)
    assert all(again[name].equals(data) for name, data in tables.items())
    other = generate(OrgSpec(teams=36, days=365, end=END, seed=8))
    assert not other["usage"].equals(tables["usage"])
    assert not other["deployment"].equals(tables["deployment"])


def test_usage_scale_reaches_a_requested_row_count_and_changes_only_usage(tables: Tables) -> None:
    scale = usage_scale_for(60_000, teams=36, days=365, seed=SPEC.seed, end=END)
    scaled = generate(replace(SPEC, usage_scale=scale))
    assert 57_000 <= scaled["usage"].num_rows <= 63_000
    assert all(scaled[name].equals(tables[name]) for name in tables if name != "usage")


@pytest.fixture(scope="module")
def small() -> Tables:
    return generate(OrgSpec(teams=12, days=150, end=END, seed=3))


def as_python(table: pa.Table, name: str, i: int) -> dict[str, object]:
    """Row i of a table as its NDJSON form: no nulls, ISO timestamps, parsed JSON text."""
    kinds = {
        f.name: f.kind for record in RECORD_TYPES if record.name == name for f in record.fields
    }
    out: dict[str, object] = {"type": name}
    for key, v in table.slice(i, 1).to_pylist()[0].items():
        if v is None:
            continue
        if isinstance(v, datetime):
            v = v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        elif kinds[key] in (Kind.OBJECT, Kind.QUESTIONS):
            v = json.loads(v)
        out[key] = v
    return out


def test_write_round_trips_through_parquet(small: Tables, tmp_path: Path) -> None:
    path = tmp_path / "demo.parquet"
    assert write(small, path) == sum(t.num_rows for t in small.values())
    back = pq.read_table(path)
    assert back.schema.names[0] == "type"
    assert Counter(back.column("type").to_pylist()) == {n: t.num_rows for n, t in small.items()}
    for name, data in small.items():
        rows_of_type = back.filter(pc.equal(back.column("type"), name))
        assert rows_of_type.select(data.column_names).equals(data), name


def test_write_round_trips_through_ndjson(small: Tables, tmp_path: Path) -> None:
    path = tmp_path / "demo.ndjson"
    assert write(small, path) == sum(t.num_rows for t in small.values())
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert Counter(r["type"] for r in records) == {n: t.num_rows for n, t in small.items()}
    assert all(next(iter(r)) == "type" and None not in r.values() for r in records)
    for name, data in small.items():
        of_type = [r for r in records if r["type"] == name]
        for i in (0, len(of_type) - 1):
            assert of_type[i] == as_python(data, name, i), name


def test_write_refuses_unknown_formats(small: Tables, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="parquet"):
        write(small, tmp_path / "demo.csv")


def test_the_shapes_of_real_data_are_there(db: DB) -> None:
    """DESIGN v2's real-world shapes, so their features and warnings show in the demo."""
    # a regional production environment the default `production_environments` leaves out
    assert count(db, "deployment WHERE environment = 'prod-eu'") > 0
    # deployments whose kind nobody recorded (a git-tag pipeline) beside known ones
    assert count(db, "deployment WHERE kind IS NULL") > 0
    assert count(db, "deployment WHERE kind = 'rollback'") > 0
    # severities, a bot, CI runs retried
    assert count(db, "incident WHERE severity IS NOT NULL") > 0
    assert count(db, "usage WHERE actor = 'renovate[bot]' AND capability = 'ci'") > 0
    assert count(db, "usage WHERE attempt = 2 AND run IS NOT NULL") > 0
    assert count(db, "usage WHERE attempt = 2 AND run NOT IN (SELECT id FROM usage)") == 0
    # an archived team that uses nothing after it was archived
    assert count(db, "team WHERE archived_at IS NOT NULL") == 1
    assert (
        count(
            db,
            "usage u JOIN team t ON u.team = t.id WHERE t.archived_at IS NOT NULL "
            "AND u.ts >= t.archived_at",
        )
        == 0
    )
    # services older than the stored history
    first = "(SELECT min(finished_at) FROM deployment)"
    assert count(db, f"service WHERE created_at < {first}") > 0
