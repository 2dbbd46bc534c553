"""The server's grouped writer on a real DuckDB store: requests validated one by one, written in one
transaction, answered after the commit, with counts as if written one after another."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from heatlens.errors import InputError
from heatlens.ingest import IngestResult, Prepared, write
from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.web.writer import Outcome, Write, WriteFailed, Writer
from tests.conftest import record, stored


def usage(id_: str, outcome: str = "success") -> dict[str, Any]:
    return record(
        "usage", id=id_, ts="2026-03-02T10:00:00Z", capability="ci", team="t", outcome=outcome
    )


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"duckdb:///{tmp_path / 'w.duckdb'}") as s:
        yield s


def _writer(store: Store, settings: Settings, write: Write = write, lock: Any = None) -> Writer:
    return Writer(lock or threading.Lock(), lambda: store, settings, write=write)


def _one_group(writer: Writer, batches: list[list[dict[str, Any]]]) -> list[Future[Outcome]]:
    """Submit batches while the writer is paused, so it takes them as one group."""
    with writer.paused():
        futures = [writer.submit(b) for b in batches]
    return futures


class WatchedLock:
    """A lock that says when a thread has to wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waiting = threading.Event()

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            self.waiting.set()
            self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def _ids(store: Store) -> list[tuple[str, str | None]]:
    return stored(store, "usage", "id", "outcome")


def test_a_group_is_one_commit_and_counts_follow_arrival_order(
    store: Store, settings: Settings
) -> None:
    writer = _writer(store, settings)
    writer.start()
    try:
        first = [usage("a"), usage("b")]
        bad = [usage("c"), {"type": "usage", "id": "d"}]  # d lacks ts and capability
        # b again unchanged, a corrected, e new: counted against `first`, taken before it
        second = [usage("a", "failure"), usage("b"), usage("e")]
        f1, f_bad, f2 = _one_group(writer, [first, bad, second])
        one, two = f1.result(timeout=60), f2.result(timeout=60)
        with pytest.raises(InputError) as refused:
            f_bad.result(timeout=60)
    finally:
        writer.stop()
    assert {p.field for p in refused.value.problems} == {"ts", "capability"}
    assert {p.line for p in refused.value.problems} == {2}
    assert one.group == two.group == 2  # the bad request took no part in the write
    c1, c2 = one.result.counts["usage"], two.result.counts["usage"]
    assert (c1.inserted, c1.updated, c1.unchanged) == (2, 0, 0)
    assert (c2.inserted, c2.updated, c2.unchanged) == (1, 1, 1)
    # one transaction: one bump of the data version, seen by both answers
    assert one.data_version == two.data_version == store.data_version() == 1
    assert _ids(store) == [("a", "failure"), ("b", "success"), ("e", "success")]


def test_a_failed_group_write_stores_nothing_and_fails_every_request(
    store: Store, settings: Settings
) -> None:
    def sabotaged(s: Store, group: Prepared) -> list[IngestResult | InputError]:
        # the usage stage is lost: its merge fails after the team's has run, in the transaction
        group.batches = [
            replace(b, table="no_such_stage") if b.rtype.name == "usage" else b
            for b in group.batches
        ]
        return write(s, group)

    writer = _writer(store, settings, write=sabotaged)
    writer.start()
    try:
        futures = _one_group(writer, [[record("team", id="t")], [usage("a")]])
        for f in futures:
            with pytest.raises(WriteFailed, match="could not commit"):
                f.result(timeout=60)
    finally:
        writer.stop()
    assert store.counts()["team"] == 0 and _ids(store) == []
    assert store.data_version() == 0
    # the writer lives on: the next request is written
    writer = _writer(store, settings)
    writer.start()
    try:
        assert writer.submit([usage("c")]).result(timeout=60).result.counts["usage"].inserted == 1
    finally:
        writer.stop()
    assert _ids(store) == [("c", "success")]


def test_a_request_that_breaks_the_group_pass_fails_alone(duck: Store, settings: Settings) -> None:
    # JSON bodies never hold a set; a record that cannot even be serialised stands for any
    # failure no validation rule foresaw
    writer = _writer(duck, settings)
    writer.start()
    try:
        ok1, broken, ok2 = _one_group(
            writer, [[usage("a")], [{"type": "usage", "id": {"x"}}], [usage("b")]]
        )
        with pytest.raises(TypeError):
            broken.result(timeout=60)
        assert ok1.result(timeout=60).result.counts["usage"].inserted == 1
        assert ok2.result(timeout=60).result.counts["usage"].inserted == 1
    finally:
        writer.stop()
    assert _ids(duck) == [("a", "success"), ("b", "success")]


def test_a_request_cancelled_before_its_turn_is_not_written(
    duck: Store, settings: Settings
) -> None:
    writer = _writer(duck, settings)
    writer.start()
    try:
        with writer.paused():
            gone = writer.submit([usage("gone")])
            kept = writer.submit([usage("kept")])
            assert gone.cancel()
        assert kept.result(timeout=60).group == 1
    finally:
        writer.stop()
    assert _ids(duck) == [("kept", "success")]


def test_stop_writes_what_is_queued(duck: Store, settings: Settings) -> None:
    writer = _writer(duck, settings)
    writer.start()
    with writer.paused():
        futures = [writer.submit([usage(f"q{i}")]) for i in range(3)]
    writer.stop()
    assert all(f.done() and f.exception() is None for f in futures)
    assert len(_ids(duck)) == 3


def test_the_writer_commits_only_while_holding_the_store_lock(
    duck: Store, settings: Settings
) -> None:
    lock = WatchedLock()
    writer = _writer(duck, settings, lock=lock)
    writer.start()
    try:
        with lock:  # as another writer of the store would hold it
            pending = writer.submit([usage("a")])
            assert lock.waiting.wait(timeout=60)  # the writer has its group, waits for the lock
            assert not pending.done()
            assert _ids(duck) == []
        assert pending.result(timeout=60).result.counts["usage"].inserted == 1
    finally:
        writer.stop()
    assert _ids(duck) == [("a", "success")]


def _spy_insert_new(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each Store.insert_new call wrote its group (it answers a data version)."""
    answers: list[bool] = []
    real = Store.insert_new

    def spy(self: Store, *args: Any) -> int | None:
        version = real(self, *args)
        answers.append(version is not None)
        return version

    monkeypatch.setattr(Store, "insert_new", spy)
    return answers


def test_a_group_of_new_records_is_one_insert_counted_per_request(
    duck: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = _spy_insert_new(monkeypatch)
    writer = _writer(duck, settings)
    writer.start()
    try:
        futures = _one_group(writer, [[usage("a")], [usage("b"), usage("c", "failure")], []])
        outcomes = [f.result(timeout=60) for f in futures]
    finally:
        writer.stop()
    assert answers == [True]
    counts = [o.result.counts.get("usage") for o in outcomes]
    assert [(c.inserted, c.updated, c.unchanged) for c in counts if c] == [(1, 0, 0), (2, 0, 0)]
    assert counts[2] is None and [o.result.read for o in outcomes] == [1, 2, 0]
    assert {o.data_version for o in outcomes} == {duck.data_version()} == {1}
    # the model's caches see the write: usage's own version moved, no other type's did
    versions = duck.type_versions()
    assert versions["usage"] == 1 and versions["deployment"] == 0
    rows = stored(duck, "usage", "id", "outcome", "ts", "source")
    at = datetime(2026, 3, 2, 10, tzinfo=UTC)
    assert rows == [
        ("a", "success", at, "api"),
        ("b", "success", at, "api"),
        ("c", "failure", at, "api"),
    ]


def test_a_group_with_a_stored_or_repeated_id_is_merged(
    duck: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = _writer(duck, settings)
    writer.start()
    try:
        writer.submit([usage("a")]).result(timeout=60)
        answers = _spy_insert_new(monkeypatch)
        # a is stored: the insert is refused and the group merged
        one, two = (
            f.result(timeout=60)
            for f in _one_group(writer, [[usage("a", "failure")], [usage("b")]])
        )
        # c twice in one group: never offered to the insert
        three, four = (
            f.result(timeout=60)
            for f in _one_group(writer, [[usage("c")], [usage("c", "failure")]])
        )
    finally:
        writer.stop()
    assert answers == [False]
    counts = [o.result.counts["usage"] for o in (one, two, three, four)]
    assert [(c.inserted, c.updated, c.unchanged) for c in counts] == [
        (0, 1, 0),
        (1, 0, 0),
        (1, 0, 0),
        (0, 1, 0),
    ]
    assert _ids(duck) == [("a", "failure"), ("b", "success"), ("c", "failure")]


def test_answers_awaited_in_a_loop_arrive_together_and_a_cancelled_one_is_not_written(
    duck: Store, settings: Settings
) -> None:
    writer = _writer(duck, settings)
    writer.start()

    async def main() -> tuple[list[Outcome], bool]:
        with writer.paused():  # one group: a, b; c's client goes away before its turn
            waiting = [asyncio.ensure_future(writer.answer([usage(i)])) for i in "abc"]
            await asyncio.sleep(0)  # each request queued
            waiting[2].cancel()
        done = await asyncio.gather(*waiting[:2])
        return done, waiting[2].cancelled()

    try:
        outcomes, cancelled = asyncio.run(main())
        with pytest.raises(InputError):  # an error reaches its loop too
            asyncio.run(writer.answer([{"type": "usage", "id": "d"}]))
    finally:
        writer.stop()
    assert cancelled
    assert [o.result.counts["usage"].inserted for o in outcomes] == [1, 1]
    assert [o.group for o in outcomes] == [2, 2]
    assert _ids(duck) == [("a", "success"), ("b", "success")]
