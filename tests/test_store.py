"""The store: upserts replace whole records, replays change nothing, deletes, versions, locks."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from heatlens.errors import EmptyStoreError, StoreError, StoreLockedError
from heatlens.ingest import ingest_records
from heatlens.model import BY_NAME
from heatlens.settings import Settings, load_settings
from heatlens.store import Store, parse_store_url
from heatlens.store.schema import SCHEMA_VERSION
from tests.conftest import record

TEAM = record("team", id="payments", name="Payments")
USAGE = [
    record(
        "usage",
        id=f"u{i}",
        ts=f"2026-03-0{i}T10:00:00Z",
        capability="ci",
        actor="ana",
        outcome="success",
    )
    for i in range(1, 4)
]


def _put(
    store: Store, settings: Settings, records: list[dict[str, Any]], source: str = "api"
) -> dict[str, tuple[int, int, int]]:
    result = ingest_records(store, records, settings, source=source)
    return {k: (c.inserted, c.updated, c.unchanged) for k, c in result.counts.items()}


def test_ingesting_twice_changes_nothing(store: Store, settings: Settings) -> None:
    assert _put(store, settings, [TEAM, *USAGE]) == {"team": (1, 0, 0), "usage": (3, 0, 0)}
    version = store.data_version()
    rows = store.fetchall("SELECT * FROM usage ORDER BY id")
    assert _put(store, settings, [TEAM, *USAGE], source="file:again") == {
        "team": (0, 0, 1),
        "usage": (0, 0, 3),
    }
    assert store.data_version() == version
    assert store.fetchall("SELECT * FROM usage ORDER BY id") == rows  # source kept too


def test_a_record_replaces_the_whole_stored_record(store: Store, settings: Settings) -> None:
    _put(store, settings, USAGE)
    version = store.data_version()
    # u2 corrected: outcome changed and actor dropped; a record replaces, it does not merge
    corrected = record(
        "usage", id="u2", ts="2026-03-02T10:00:00Z", capability="ci", outcome="failure"
    )
    assert _put(store, settings, [corrected], source="file:fix") == {"usage": (0, 1, 0)}
    assert store.data_version() == version + 1
    assert store.fetchall("SELECT id, outcome, actor, source FROM usage ORDER BY id") == [
        ("u1", "success", "ana", "api"),
        ("u2", "failure", None, "file:fix"),
        ("u3", "success", "ana", "api"),
    ]


def test_within_one_input_the_last_record_of_an_id_wins(store: Store, settings: Settings) -> None:
    first = record("team", id="t", name="First")
    last = record("team", id="t", name="Last")
    assert _put(store, settings, [first, last]) == {"team": (1, 0, 0)}
    assert store.fetchall("SELECT name FROM team") == [("Last",)]


def test_derived_ids_make_memberships_idempotent(store: Store, settings: Settings) -> None:
    m = record("membership", actor="ana", team="payments", **{"from": "2026-01-01T01:00:00+01:00"})
    _put(store, settings, [m])
    same_instant = dict(m, **{"from": "2026-01-01T00:00:00Z"})
    assert _put(store, settings, [same_instant]) == {"membership": (0, 0, 1)}
    assert store.fetchall("SELECT id FROM membership") == [("ana/payments/2026-01-01T00:00:00Z",)]


def test_defaults_are_stored(store: Store, settings: Settings) -> None:
    _put(
        store,
        settings,
        [
            record("deployment", id="d", service="s", finished_at="2026-03-02T10:00:00Z"),
            record("survey", id="q1"),
            record("capability", id="ci"),
        ],
    )
    assert store.fetchall("SELECT environment, result, kind FROM deployment") == [
        ("production", "success", "planned")
    ]
    assert store.fetchall("SELECT k, comment_k FROM survey") == [(5, 10)]
    assert store.fetchall("SELECT mandated FROM capability") == [(False,)]


def test_delete_by_id_source_and_ingestion_time(store: Store, settings: Settings) -> None:
    _put(store, settings, USAGE[:2], source="file:a")
    _put(store, settings, USAGE[2:], source="file:b")
    usage = BY_NAME["usage"]
    assert store.delete_records(usage, ids=["u1", "nope"]) == 1
    assert store.delete_records(usage, source="file:b") == 1
    assert [r[0] for r in store.fetchall("SELECT id FROM usage")] == ["u2"]
    # u2 was ingested during this test: a window before it deletes nothing, one around it does
    now = datetime.now(UTC)
    day = timedelta(days=1)
    assert store.delete_records(usage, ingested_between=(now - 2 * day, now - day)) == 0
    assert store.delete_records(usage, ingested_between=(now - day, now + day)) == 1
    assert store.counts()["usage"] == 0
    log = store.fetchall("SELECT action FROM audit_log")
    assert log == [("delete",)] * 4


def test_erase_actor_removes_the_person_but_keeps_team_numbers(
    store: Store, settings: Settings
) -> None:
    _put(
        store,
        settings,
        [
            record("membership", actor="ana", team="payments", **{"from": "2026-01-01"}),
            record("membership", actor="bo", team="search"),
            record("service", id="checkout", team="payments"),
            record("usage", id="by-actor", ts="2026-03-01T10:00:00Z", capability="ci", actor="ana"),
            record(
                "usage",
                id="by-service",
                ts="2026-03-01T10:00:00Z",
                capability="ci",
                actor="ana",
                service="checkout",
            ),
            record("usage", id="other", ts="2026-03-01T10:00:00Z", capability="ci", actor="bo"),
            record("change", id="c1", committed_at="2026-03-01T10:00:00Z", author="ana"),
            record(
                "survey_response",
                id="r1",
                survey="s",
                question="q",
                kind="csat",
                respondent="ana",
                ts="2026-03-01T10:00:00Z",
                score=4,
            ),
        ],
    )
    counts = store.erase_actor(["ana"])
    assert counts == {"usage": 2, "change": 1, "membership": 1, "survey_response": 1}
    assert store.fetchall("SELECT id, actor, team FROM usage ORDER BY id") == [
        ("by-actor", None, "payments"),  # the team ana belonged to then
        ("by-service", None, None),  # still resolved through its service's owner
        ("other", "bo", None),
    ]
    assert store.fetchall("SELECT author FROM change") == [(None,)]
    assert store.fetchall("SELECT actor FROM membership") == [("bo",)]
    assert store.counts()["survey_response"] == 0
    assert store.fetchall("SELECT action FROM audit_log") == [("erase_actor",)]


def test_pseudonymised_actors(store: Store) -> None:
    settings = load_settings(environ={}, overrides={"pseudonymise_key": "s3cret"})
    _put(
        store,
        settings,
        [
            record("usage", id="u", ts="2026-03-01T10:00:00Z", capability="ci", actor="ana"),
            record("membership", actor="ana", team="t"),
        ],
    )
    from heatlens.ingest import pseudonym

    hashed = pseudonym("s3cret", "ana")
    assert hashed != "ana" and hashed == pseudonym("s3cret", "ana")
    assert store.fetchall("SELECT actor FROM usage") == [(hashed,)]
    assert store.fetchall("SELECT id, actor FROM membership") == [(f"{hashed}/t/", hashed)]


def test_new_store_is_at_the_current_schema(store: Store) -> None:
    assert store.schema_version() == SCHEMA_VERSION
    assert store.data_version() == 0
    assert store.is_empty()


def test_a_v1_store_is_migrated_and_keeps_its_records(store_url: str, settings: Settings) -> None:
    # a store as schema v1 left it: no `attributes` on teams and services
    with Store.open(store_url) as s:
        for table in ("team", "service"):
            s.backend.execute(f'ALTER TABLE "{table}" DROP COLUMN "attributes"')
        s.backend.execute(
            "INSERT INTO team (id, name, source, ingested_at) VALUES ('old', 'Old', 'v1', ?)",
            [datetime(2026, 1, 1, tzinfo=UTC)],
        )
        s.backend.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with Store.open(store_url) as s:
        assert s.schema_version() == SCHEMA_VERSION == 2
        assert s.fetchall("SELECT id, name, attributes FROM team") == [("old", "Old", None)]
        ingest_records(
            s,
            [record("service", id="web", attributes={"lifecycle": "production"})],
            settings,
            source="t",
        )
        [(text,)] = s.fetchall("SELECT attributes FROM service")
        assert json.loads(text) == {"lifecycle": "production"}


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "s.duckdb")
    with Store.open(path) as s:
        s.backend.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="schema version 999, newer than this heatlens"):
        Store.open(path)


def test_reading_a_missing_store_says_how_to_start(tmp_path: Path) -> None:
    with pytest.raises(EmptyStoreError, match="run `heatlens demo`"):
        Store.open(str(tmp_path / "nothing.duckdb"), read_only=True)


def test_store_urls() -> None:
    assert parse_store_url("duckdb:///heatlens.duckdb").target == "heatlens.duckdb"
    assert parse_store_url("duckdb:////var/lib/h.duckdb").target == "/var/lib/h.duckdb"
    assert parse_store_url("h.duckdb").dialect == "duckdb"
    assert parse_store_url("postgresql://u@h/db").dialect == "postgres"
    with pytest.raises(StoreError, match="unsupported store URL"):
        parse_store_url("mysql://x")


def test_a_locked_store_names_the_holder_and_suggests_server(tmp_path: Path) -> None:
    path = tmp_path / "busy.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
            "sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(StoreLockedError) as locked:
            Store.open(str(path))
        message = str(locked.value)
        assert f"PID {holder.pid}" in message and "--server URL" in message
        assert "\n" not in message
    finally:
        holder.communicate("")


def test_ibis_reads_the_same_records(store: Store, settings: Settings) -> None:
    _put(store, settings, USAGE)
    t = store.table("usage")
    assert sorted(t.select("id").to_pyarrow().column("id").to_pylist()) == ["u1", "u2", "u3"]


def test_api_records_are_validated_like_files(store: Store, settings: Settings) -> None:
    from heatlens.errors import InputError

    with pytest.raises(InputError) as refused:
        ingest_records(store, [TEAM, {"type": "team"}], settings, source="api")
    assert [str(p) for p in refused.value.problems] == [
        "request record 2: team.id is missing: required"
    ]
    assert store.is_empty()
    assert store.counts()["team"] == 0  # the valid record was not stored either
    assert store.data_version() == 0


def test_capability_and_team_lists(store: Store, settings: Settings) -> None:
    usage = [
        record("usage", id=f"u{i}", ts="2026-03-02T10:00:00Z", capability=c)
        for i, c in enumerate(["ci", "cd", "ci"])
    ]
    teams = [record("team", id="org"), record("team", id="a", parent="org"), record("team", id="b")]
    ingest_records(store, [*usage, *teams], settings, source="t")
    assert store.capability_ids() == ["cd", "ci"]  # no registry: the capabilities used
    assert store.leaf_team_ids() == ["a", "b"]  # `org` is a group
    ingest_records(store, [record("capability", id="secrets")], settings, source="t")
    assert store.capability_ids() == ["secrets"]  # the registry, once there is one
