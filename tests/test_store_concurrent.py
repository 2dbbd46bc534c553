"""Several writers on one Postgres store at once (server replicas): upserts through
`INSERT … ON CONFLICT`, exact counts, one row per id, sync state with its records."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from heatlens.ingest import ingest_records
from heatlens.settings import Settings
from heatlens.store import Store
from tests.conftest import record, stored
from tests.together import together

pytestmark = pytest.mark.postgres
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _usage(i: int, outcome: str = "success") -> dict[str, Any]:
    return record(
        "usage",
        id=f"u{i:04d}",
        ts=f"2026-03-{1 + i % 28:02d}T10:00:00Z",
        capability="ci",
        outcome=outcome,
    )


def _race(url: str, settings: Settings, batches: list[list[dict[str, Any]]]) -> list[Any]:
    """Write each batch from its own connection, all released at the same instant."""
    stores = [Store.open(url) for _ in batches]
    results: list[Any] = [None] * len(batches)

    def one(i: int) -> None:
        try:
            results[i] = ingest_records(stores[i], batches[i], settings, source=f"w{i}")
        except Exception as exc:  # the assertion below names it
            results[i] = exc

    together(one, len(batches))
    for s in stores:
        s.close()
    return results


def test_two_writers_of_the_same_new_ids_both_succeed_and_count_each_id_new_once(
    postgres_url: str, settings: Settings
) -> None:
    with Store.open(postgres_url):
        pass  # created before the race
    same = [_usage(i) for i in range(400)]
    for _ in range(3):  # a race is a matter of timing: run it a few times
        results = _race(postgres_url, settings, [same, same])
        assert not [r for r in results if isinstance(r, Exception)], results
        with Store.open(postgres_url) as store:
            assert store.counts()["usage"] == 400
    # all 3 rounds: 400 new in total over both writers and all rounds, the rest unchanged
    # (same content; the source differs but the source is not part of the record)


def test_counts_are_exact_under_concurrent_overlapping_writes(
    postgres_url: str, settings: Settings
) -> None:
    with Store.open(postgres_url):
        pass
    # writer 0: ids 0..299 success; writer 1: ids 200..499 failure. Ids 200..299 are written
    # by both: the first to commit inserts them, the second changes them (other outcome).
    a = [_usage(i) for i in range(300)]
    b = [_usage(i, "failure") for i in range(200, 500)]
    r0, r1 = _race(postgres_url, settings, [a, b])
    c0, c1 = r0.counts["usage"], r1.counts["usage"]
    assert c0.inserted + c1.inserted == 500  # every id is new exactly once
    assert c0.updated + c1.updated == 100  # the overlap, changed by whichever came second
    assert c0.unchanged == c1.unchanged == 0
    assert (c0.inserted, c0.updated) in ((300, 0), (200, 100))
    with Store.open(postgres_url) as store:
        rows = stored(store, "usage", "id", "outcome", "source")
        assert len(rows) == 500 and len({r[0] for r in rows}) == 500
        overlap = {r[2] for r in rows if 200 <= int(r[0][1:]) < 300}
        # the overlap holds the version of whichever writer counted it updated
        assert overlap == ({"w1"} if c1.updated else {"w0"})
        assert all(r[1] == ("success" if r[2] == "w0" else "failure") for r in rows)


def test_replicas_opening_a_new_store_together_migrate_it_once(
    postgres_url: str, settings: Settings
) -> None:
    errors: list[Exception] = []

    def one(_: int) -> None:
        try:
            Store.open(postgres_url).close()
        except Exception as exc:
            errors.append(exc)

    together(one, 4)
    assert errors == []
    with Store.open(postgres_url) as store:
        assert store.counts()["usage"] == 0


def test_sync_state_is_in_the_records_transaction(postgres_url: str, settings: Settings) -> None:
    """A write that fails inside the transaction (after the records were merged) leaves neither
    records nor state; two connections saving one state name never collide."""
    with Store.open(postgres_url) as store:
        ingest_records(store, [_usage(1)], settings, source="s", sync_state={"x": {"c": 1}})
        with pytest.raises(RuntimeError), store.transaction():
            ingest_records(store, [_usage(2)], settings, source="s", sync_state={"x": {"c": 2}})
            raise RuntimeError("after the write, inside the transaction")
        assert store.sync_state("x") == {"c": 1}
        assert stored(store, "usage", "id") == [("u0001",)]
    stores = [Store.open(postgres_url) for _ in range(2)]

    def save(i: int) -> None:
        for n in range(50):
            stores[i].save_sync_state("x", {"c": n, "by": i})

    together(save, 2)
    assert stores[0].sync_state("x") in ({"c": 49, "by": 0}, {"c": 49, "by": 1})
    for s in stores:
        s.close()


def test_a_survey_link_is_claimed_once_by_two_servers_at_once(postgres_url: str) -> None:
    from heatlens.store.survey_links import claim_link, issue_links

    with Store.open(postgres_url) as store:
        secrets_ = issue_links(store, "pulse", "alpha", 20, batch="b", now=NOW)
    stores = [Store.open(postgres_url) for _ in range(2)]
    claimed: list[list[bool]] = [[], []]

    def claim(i: int) -> None:
        claimed[i] = [claim_link(stores[i], s) for s in secrets_]

    together(claim, 2)
    for s in stores:
        s.close()
    # every link claimed by exactly one of the two
    assert [a + b for a, b in zip(claimed[0], claimed[1], strict=True)] == [1] * 20


def test_records_are_not_kept_when_their_sync_state_cannot_be_saved(
    postgres_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise RuntimeError("the state's statement failed")

    with Store.open(postgres_url) as store:
        monkeypatch.setattr(store, "_put_sync_state", fail)
        with pytest.raises(RuntimeError):
            ingest_records(store, [_usage(1)], settings, source="s", sync_state={"x": {"c": 1}})
        assert store.counts()["usage"] == 0 and store.sync_state("x") is None
        assert store.data_version() == 0


def test_writers_of_random_overlapping_batches_of_two_types_never_fail(
    postgres_url: str, settings: Settings
) -> None:
    """Three writers, each ten writes of 200 usage records and 40 teams drawn from shared pools,
    in random order: no write fails (no unique violation, no deadlock), and the writes' inserted
    counts add up to the distinct ids sent."""
    import random

    with Store.open(postgres_url):
        pass
    plans = []
    for w in range(3):
        rnd = random.Random(w)
        plans.append([rnd.sample(range(800), 200) for _ in range(10)])
    sent = {i for plan in plans for ids in plan for i in ids}
    teams = {i % 100 for plan in plans for ids in plan for i in ids[:40]}
    inserted: Counter[str] = Counter()
    errors: list[str] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        with Store.open(postgres_url) as store:
            for n, ids in enumerate(plans[w]):
                records = [_usage(i, ["success", "failure"][(i + n) % 2]) for i in ids]
                records += [record("team", id=f"t{i % 100}", name=f"v{n}") for i in ids[:40]]
                try:
                    result = ingest_records(store, records, settings, source=f"w{w}")
                except Exception as exc:
                    with lock:
                        errors.append(repr(exc)[:200])
                    continue
                with lock:
                    for name, c in result.counts.items():
                        inserted[name] += c.inserted

    together(writer, 3)
    assert errors == []
    assert inserted == {"usage": len(sent), "team": len(teams)}
    with Store.open(postgres_url) as store:
        assert store.counts()["usage"] == len(sent) and store.counts()["team"] == len(teams)
