"""The store: upserts replace whole records, replays change nothing, deletes, versions, locks."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from heatlens.errors import EmptyStoreError, InputError, StoreError, StoreLockedError
from heatlens.ingest import ingest_records
from heatlens.model import BY_NAME
from heatlens.settings import Settings, load_settings
from heatlens.store import Store, parse_store_url
from heatlens.store.deliveries import counters
from heatlens.store.schema import SCHEMA_VERSION
from tests.conftest import record, run_sql, stored

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
    rows = store.rows("usage")
    assert _put(store, settings, [TEAM, *USAGE], source="file:again") == {
        "team": (0, 0, 1),
        "usage": (0, 0, 3),
    }
    assert store.data_version() == version
    assert store.rows("usage") == rows  # source and ingested_at kept too


def test_a_record_replaces_the_whole_stored_record(store: Store, settings: Settings) -> None:
    _put(store, settings, USAGE)
    version = store.data_version()
    # u2 corrected: outcome changed and actor dropped; a record replaces, it does not merge
    corrected = record(
        "usage", id="u2", ts="2026-03-02T10:00:00Z", capability="ci", outcome="failure"
    )
    assert _put(store, settings, [corrected], source="file:fix") == {"usage": (0, 1, 0)}
    assert store.data_version() == version + 1
    assert stored(store, "usage", "id", "outcome", "actor", "source") == [
        ("u1", "success", "ana", "api"),
        ("u2", "failure", None, "file:fix"),
        ("u3", "success", "ana", "api"),
    ]


def test_within_one_input_the_last_record_of_an_id_wins(store: Store, settings: Settings) -> None:
    first = record("team", id="t", name="First")
    last = record("team", id="t", name="Last")
    assert _put(store, settings, [first, last]) == {"team": (1, 0, 0)}
    assert stored(store, "team", "name") == [("Last",)]


def test_derived_ids_make_memberships_idempotent(store: Store, settings: Settings) -> None:
    m = record("membership", actor="ana", team="payments", **{"from": "2026-01-01T01:00:00+01:00"})
    _put(store, settings, [m])
    same_instant = dict(m, **{"from": "2026-01-01T00:00:00Z"})
    assert _put(store, settings, [same_instant]) == {"membership": (0, 0, 1)}
    assert stored(store, "membership", "id") == [("ana/payments/2026-01-01T00:00:00Z",)]


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
    # `kind` has no default (DESIGN §3 v2): unknown stays null
    assert stored(store, "deployment", "environment", "result", "kind") == [
        ("production", "success", None)
    ]
    assert stored(store, "survey", "k", "comment_k") == [(5, 10)]
    assert stored(store, "capability", "mandated") == [(False,)]


def test_delete_by_id_source_and_ingestion_time(store: Store, settings: Settings) -> None:
    _put(store, settings, USAGE[:2], source="file:a")
    _put(store, settings, USAGE[2:], source="file:b")
    usage = BY_NAME["usage"]
    assert store.delete_records(usage, ids=["u1", "nope"]) == 1
    assert store.delete_records(usage, source="file:b") == 1
    assert stored(store, "usage", "id") == [("u2",)]
    # windows around u2's own ingestion time: one ending before it deletes nothing, one
    # holding it deletes it
    ((at,),) = stored(store, "usage", "ingested_at")
    second = timedelta(seconds=1)
    assert store.delete_records(usage, ingested_between=(at - 2 * second, at)) == 0
    assert store.delete_records(usage, ingested_between=(at, at + second)) == 1
    assert store.counts()["usage"] == 0
    assert [action for _, action, _ in store.audit_entries()] == ["delete"] * 4


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
    assert stored(store, "usage", "id", "actor", "team") == [
        ("by-actor", None, "payments"),  # the team ana belonged to then
        ("by-service", None, None),  # still resolved through its service's owner
        ("other", "bo", None),
    ]
    assert stored(store, "change", "author") == [(None,)]
    assert stored(store, "membership", "actor") == [("bo",)]
    assert store.counts()["survey_response"] == 0
    assert [action for _, action, _ in store.audit_entries()] == ["erase_actor"]


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
    assert stored(store, "usage", "actor") == [(hashed,)]
    assert stored(store, "membership", "id", "actor") == [(f"{hashed}/t/", hashed)]


def test_new_store_is_at_the_current_schema(store: Store) -> None:
    assert store.schema_version() == SCHEMA_VERSION
    assert store.data_version() == 0
    assert store.is_empty()


def test_a_v1_store_is_migrated_and_keeps_its_records(store_url: str, settings: Settings) -> None:
    # a store as schema v1 left it: no `attributes` on teams and services, no `run` and
    # `attempt` on usage, no `title` on changes
    Store.open(store_url).close()
    run_sql(
        store_url,
        *(f'ALTER TABLE "{table}" DROP COLUMN "attributes"' for table in ("team", "service")),
        'ALTER TABLE "usage" DROP COLUMN "run"',
        'ALTER TABLE "usage" DROP COLUMN "attempt"',
        'ALTER TABLE "change" DROP COLUMN "title"',
        'ALTER TABLE "survey" DROP COLUMN "continuous"',
        "DROP TABLE survey_link",
        "DROP TABLE web_session",
        "DROP TABLE rate_window",
        "INSERT INTO team (id, name, source, ingested_at) "
        "VALUES ('old', 'Old', 'v1', TIMESTAMPTZ '2026-01-01 00:00:00+00')",
        "UPDATE meta SET value = '1' WHERE key = 'schema_version'",
    )
    with Store.open(store_url) as s:
        assert s.schema_version() == SCHEMA_VERSION == 7
        assert stored(s, "team", "id", "name", "attributes") == [("old", "Old", None)]
        ingest_records(
            s,
            [record("service", id="web", attributes={"lifecycle": "production"})],
            settings,
            source="t",
        )
        [(text,)] = stored(s, "service", "attributes")
        assert json.loads(text) == {"lifecycle": "production"}
        usage = record("usage", id="u", ts="2026-03-01T10:00:00Z", capability="ci", run="r")
        ingest_records(s, [dict(usage, attempt=2)], settings, source="t")
        assert stored(s, "usage", "id", "run", "attempt") == [("u", "r", 2)]


def test_v7_takes_the_deliveries_with_id_rows_out_of_the_webhook_counters(store_url: str) -> None:
    # before v7 a webhook delivery was counted in `webhook:<source>` AND remembered by its id
    # row; from v7 the id row is its count: 5 deliveries (1 ignored), 3 with id rows still kept
    Store.open(store_url).close()
    at = "TIMESTAMPTZ '2026-01-01 00:00:00+00'"
    old = {
        "source": "github",
        "deliveries": 5,
        "ignored": 1,
        "last_event": "push",
        "last_delivery_at": "2026-01-01T00:00:00+00:00",
        "last_ignored": {"event": "ping", "reason": "event 'ping' is not mapped"},
    }
    rows = [
        (f"webhook-delivery:github:d{i}", {"at": "2025-12-31T00:00:00+00:00", "event": "push"})
        for i in range(3)
    ]
    rows += [
        ("webhook-delivery:gitlab:x", {"at": "2025-12-31T00:00:00+00:00", "event": "push"}),
        ("webhook:github", old),
        ("webhook:pagerduty", {"source": "pagerduty", "deliveries": 2, "ignored": 0}),
    ]
    run_sql(
        store_url,
        *(
            f"INSERT INTO sync_state VALUES ('{n}', '{_sql_text(json.dumps(v))}', {at})"
            for n, v in rows
        ),
        "UPDATE meta SET value = '6' WHERE key = 'schema_version'",
    )
    with Store.open(store_url) as s:
        assert s.schema_version() == 7
        assert s.sync_state("webhook:github") == {**old, "deliveries": 2}
        assert s.sync_state("webhook:pagerduty") == {
            "source": "pagerduty",
            "deliveries": 2,
            "ignored": 0,
        }
        by_source = {c["source"]: c for c in counters(s)}
    assert {k: (c["deliveries"], c["ignored"]) for k, c in by_source.items()} == {
        "github": (5, 1),
        "gitlab": (1, 0),
        "pagerduty": (2, 0),
    }
    assert by_source["github"]["last_ignored"] == old["last_ignored"]
    assert by_source["github"]["last_event"] == "push"


def test_sync_states_are_read_by_prefix_and_tallied_per_key(store: Store) -> None:
    t0 = datetime(2026, 5, 1, tzinfo=UTC)

    def state(minute: int, event: str, ignored: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"at": (t0 + timedelta(minutes=minute)).isoformat(), "event": event}
        return out if ignored is None else {**out, "ignored": ignored}

    # two saved together (the same updated_at): the later by their text, i.e. their `at`
    store.save_sync_states(
        {"d:gh:2": state(1, "push"), "d:gh:1": state(2, "ping", "not mapped")}, at=t0
    )
    store.save_sync_states(
        {"d:gh:3": state(3, "push"), "d:gl:1": state(1, "ignored: no", 'a "ignored": x')},
        at=t0 + timedelta(minutes=5),
    )
    store.save_sync_state("d:gh:4", state(9, "pull_request"), at=t0 + timedelta(minutes=9))
    store.save_sync_state("dx", {"other": 1}, at=t0)
    store.save_sync_state("e", {"other": 2}, at=t0)

    tallies = store.tally_sync_states("d:", "ignored")
    assert set(tallies) == {"gh", "gl"}
    gh, gl = tallies["gh"], tallies["gl"]
    assert (gh.count, gh.flagged, gh.last, gh.last_flagged) == (
        4,
        1,
        state(9, "pull_request"),
        state(2, "ping", "not mapped"),
    )
    assert (gl.count, gl.flagged) == (1, 1)  # its reason is only text: no second flag
    early = store.tally_sync_states("d:", "ignored", before=t0 + timedelta(minutes=1))
    assert {k: (t.count, t.flagged, t.last) for k, t in early.items()} == {
        "gh": (2, 1, state(2, "ping", "not mapped"))
    }
    assert [n for n, _, _ in store.sync_states("d:")] == [
        "d:gh:1",
        "d:gh:2",
        "d:gh:3",
        "d:gh:4",
        "d:gl:1",
    ]
    assert [n for n, _, _ in store.sync_states(excluding=("d:", "e"))] == ["dx"]
    with pytest.raises(ValueError, match="plain JSON key"):
        store.tally_sync_states("d:", "ig%")


def _sql_text(text: str) -> str:
    """`text` inside a SQL string literal."""
    return text.replace("'", "''")


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "s.duckdb")
    Store.open(path).close()
    run_sql(path, "UPDATE meta SET value = '999' WHERE key = 'schema_version'")
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


def test_inputs_written_together_count_as_if_written_one_after_another(
    store: Store, settings: Settings
) -> None:
    from heatlens.ingest import Input, Part, discard, prepare, write

    _put(store, settings, USAGE[:1], source="first")  # u1 stored, success
    failed = [dict(u, outcome="failure") for u in USAGE]
    inputs = [
        # u1 changed, u2 new (stored with source "a")
        Input([Part("a", records=[failed[0], USAGE[1]])]),
        # u2 unchanged since "a": it keeps source "a"; u3 new; an invalid record refuses only this
        Input([Part("bad", records=[USAGE[2], {"type": "usage", "id": "x"}])]),
        # u1 changed back, u2 unchanged, u3 new here (the refused input stored nothing)
        Input([Part("b", records=[USAGE[0], USAGE[1], USAGE[2]])]),
        # a second part of the same input: u3 changed, u2 again unchanged
        Input([Part("c", records=[failed[2]]), Part("d", records=[USAGE[1]])]),
    ]
    version = store.data_version()
    prepared = prepare(store, inputs, settings)
    try:
        results = write(store, prepared)
    finally:
        discard(store, prepared)
    counts = [
        r if isinstance(r, InputError) else {k: astuple(c) for k, c in r.counts.items()}
        for r in results
    ]
    assert counts[0] == {"usage": (1, 1, 0)}
    assert isinstance(counts[1], InputError) and "1 invalid record(s)" in str(counts[1])
    assert counts[2] == {"usage": (1, 1, 1)}
    assert counts[3] == {"usage": (0, 1, 1)}
    assert store.data_version() == version + 1  # one transaction
    assert stored(store, "usage", "id", "outcome", "source") == [
        ("u1", "success", "b"),
        ("u2", "success", "a"),
        ("u3", "failure", "c"),
    ]


def test_files_of_one_ingest_are_parts_written_in_order(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    from heatlens.ingest import ingest_files

    a, b = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    a.write_text("".join(json.dumps(r) + "\n" for r in [TEAM, *USAGE[:2]]), encoding="utf-8")
    changed = dict(USAGE[1], outcome="error")
    b.write_text("".join(json.dumps(r) + "\n" for r in [changed, USAGE[2]]), encoding="utf-8")
    result = ingest_files(store, [str(a), str(b)], settings)
    assert {k: astuple(c) for k, c in result.counts.items()} == {
        "team": (1, 0, 0),
        "usage": (3, 1, 0),
    }
    assert stored(store, "usage", "id", "outcome", "source") == [
        ("u1", "success", "file:a.ndjson"),
        ("u2", "error", "file:b.ndjson"),
        ("u3", "success", "file:b.ndjson"),
    ]


def test_sync_state_commits_with_the_records_or_not_at_all(
    store: Store, settings: Settings
) -> None:
    ingest_records(store, USAGE[:1], settings, source="sync:x", sync_state={"x": {"cursor": 1}})
    assert store.sync_state("x") == {"cursor": 1}
    with pytest.raises(InputError):
        ingest_records(
            store,
            [*USAGE[1:], {"type": "usage", "id": "bad"}],
            settings,
            source="sync:x",
            sync_state={"x": {"cursor": 3}},
        )
    assert store.sync_state("x") == {"cursor": 1} and stored(store, "usage", "id") == [("u1",)]
    # no records at all: the state alone
    ingest_records(store, [], settings, source="sync:x", sync_state={"x": {"cursor": 2}})
    assert store.sync_state("x") == {"cursor": 2}


def test_sync_states_keep_what_json_keeps(store: Store) -> None:
    at = datetime(2026, 5, 1, 12, 30, tzinfo=UTC)
    states = {
        "big": {"cursor": 2**70, "page": 3},  # beyond 64 bits: json writes it, orjson cannot
        "odd": {"at": at, 7: "seven", "b": [1.5, None, True], "a": {"z": "é"}},
    }
    store.save_sync_states(states)
    assert store.sync_state("big") == {"cursor": 2**70, "page": 3}
    # a datetime as str() gives it, a key made a string, keys sorted — as json.dumps(default=str)
    assert store.sync_state("odd") == {
        "7": "seven",
        "a": {"z": "é"},
        "at": str(at),
        "b": [1.5, None, True],
    }
    [(_, text)] = store._backend.fetchall("SELECT name, state FROM sync_state WHERE name = 'odd'")
    assert list(json.loads(text)) == ["7", "a", "at", "b"]


def test_save_sync_states_replaces_each_named_state_and_keeps_the_others(store: Store) -> None:
    store.save_sync_states({"a": {"n": 1}, "b": {"n": 2}})
    with store.transaction():  # a stored name and a new one, in the writer's transaction
        store.save_sync_states({"b": {"n": 3}, "c": {"n": 4}})
    assert [(n, s) for n, s, _ in store.sync_states()] == [
        ("a", {"n": 1}),
        ("b", {"n": 3}),
        ("c", {"n": 4}),
    ]


def test_save_sync_states_inserts_the_names_said_new_and_replaces_the_others(store: Store) -> None:
    store.save_sync_states({"a": {"n": 1}})
    # "fresh" is said new (a webhook group's delivery id, looked up first); "a" is saved and
    # replaced; "b" is saved nowhere yet, and not said new: inserted all the same
    store.save_sync_states({"a": {"n": 2}, "fresh": {"n": 3}, "b": {"n": 4}}, new={"fresh"})
    after = [(n, s) for n, s, _ in store.sync_states()]
    assert after == [("a", {"n": 2}), ("b", {"n": 4}), ("fresh", {"n": 3})]
    if store.dialect == "postgres":
        # another replica may save a name between the look-up and the insert: its row stands
        store.save_sync_states({"fresh": {"n": 9}, "c": {"n": 5}}, new={"fresh", "c"})
        assert [(n, s) for n, s, _ in store.sync_states()] == sorted([*after, ("c", {"n": 5})])
        return
    # DuckDB has one writing process: a name said new that is saved breaks the key, and
    # nothing of the call is saved
    with pytest.raises(Exception, match=r"(?i)duplicate|constraint|unique"):
        store.save_sync_states({"fresh": {"n": 9}, "c": {"n": 5}}, new={"fresh", "c"})
    assert [(n, s) for n, s, _ in store.sync_states()] == after
