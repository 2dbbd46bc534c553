"""The writer connection's directory of stored ids (heatlens.store.ids): a small group of new
records is inserted without scanning the table, and no path lets it insert an id twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import heatlens.store as store_module
from heatlens.ingest import ingest_records, quick
from heatlens.model import BY_NAME
from heatlens.settings import Settings
from heatlens.store import Store, ids
from heatlens.store.ids import IdDirectory
from heatlens.web.service import Service
from tests.conftest import record


def usage(id_: str, outcome: str = "success") -> dict[str, Any]:
    return record(
        "usage", id=id_, ts="2026-03-02T10:00:00Z", capability="ci", team="t", outcome=outcome
    )


@pytest.fixture
def path(tmp_path: Path) -> str:
    return f"duckdb:///{tmp_path / 'ids.duckdb'}"


@pytest.fixture
def duck(path: str) -> Iterator[Store]:
    with Store.open(path) as s:
        yield s


def insert_new(store: Store, *names: str) -> int | None:
    """Store.insert_new as the server's writer calls it, for usage records with these ids."""
    tables = quick.by_part([(0, usage(n)) for n in names])
    assert tables is not None
    data = tables["usage"]
    data = data.append_column("__source", pa.array(["api"] * data.num_rows, pa.string()))
    return store.insert_new(BY_NAME["usage"], data, quick.stored_columns("usage"))


def directory_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The stamps of the id directories read from a table from now on (IdDirectory.read)."""
    reads: list[tuple[int, int]] = []
    real = IdDirectory.read.__func__  # type: ignore[attr-defined]

    def counted(cls: type[IdDirectory], stamp: tuple[int, int], batches: Any) -> IdDirectory:
        reads.append(stamp)
        return real(cls, stamp, batches)  # type: ignore[no-any-return]

    monkeypatch.setattr(IdDirectory, "read", classmethod(counted))
    return reads


def id_counts(store: Store) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in store.rows("usage"):
        counts[row["id"]] = counts.get(row["id"], 0) + 1
    return counts


def test_the_directory_knows_what_it_read_and_was_told() -> None:
    read = IdDirectory.read((1, 0), [pa.record_batch([pa.array(["a", "b"])], names=["id"])])
    assert read.maybe_stored(["a", "b", "c"]) == [True, True, False]
    read.added(["c"], (2, 0))
    assert read.maybe_stored(["c", "d"]) == [True, False]
    assert read.stamp == (2, 0) and len(read) == 3
    empty = IdDirectory.read((0, 0), [])
    assert empty.maybe_stored(["a"]) == [False] and len(empty) == 0


def test_ids_told_in_great_numbers_are_merged_and_still_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ids, "_MERGE_AT", 3)
    directory = IdDirectory.read((0, 0), [])
    directory.added(["a", "b"], (1, 0))
    directory.added(["c", "d"], (2, 0))  # four aside: merged into the sorted part
    assert directory.maybe_stored(["a", "b", "c", "d", "e"]) == [True] * 4 + [False]


@pytest.mark.parametrize("small", [store_module.SMALL_INSERT, 0], ids=["as lists", "as a view"])
def test_new_ids_are_inserted_and_a_stored_one_refuses_the_group(
    duck: Store, small: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "SMALL_INSERT", small)
    assert insert_new(duck, "a", "b") == 1
    assert insert_new(duck, "c", "a") is None  # a is stored: nothing of the group written
    assert insert_new(duck, "c") == 2
    assert id_counts(duck) == {"a": 1, "b": 1, "c": 1}


def test_ids_stored_by_another_path_or_connection_are_never_inserted_again(
    duck: Store, path: str, settings: Settings
) -> None:
    assert insert_new(duck, "a") == 1  # the directory is read and told of a
    ingest_records(duck, [usage("x")], settings, source="api")  # the merge path, same store
    assert insert_new(duck, "x") is None
    with Store.open(path) as other:  # another connection of this process
        ingest_records(other, [usage("y")], settings, source="api")
    assert insert_new(duck, "y") is None
    assert id_counts(duck) == {"a": 1, "x": 1, "y": 1}


def test_a_rolled_back_insert_does_not_leave_the_directory_looking_current(
    duck: Store, settings: Settings
) -> None:
    assert insert_new(duck, "a") == 1
    with pytest.raises(RuntimeError), duck.transaction():
        assert insert_new(duck, "gone") == 2  # told to the directory, then rolled back
        raise RuntimeError("the group failed after its insert")
    assert duck.data_version() == 1
    # the merge path stores x and brings usage to version 2 again: the same version the
    # directory was told of — but with x, which it never saw
    ingest_records(duck, [usage("x")], settings, source="api")
    assert duck.type_versions()["usage"] == 2
    assert insert_new(duck, "x") is None
    assert insert_new(duck, "gone") == 3  # rolled back: not stored, so new
    assert id_counts(duck) == {"a": 1, "gone": 1, "x": 1}


def test_rows_by_id_skip_the_table_for_ids_the_directory_rules_out(
    duck: Store, path: str, settings: Settings
) -> None:
    assert insert_new(duck, "a", "b") == 1
    assert [r["id"] for r in duck.rows("usage", ids=["b", "nope"])] == ["b"]
    assert duck.rows("usage", ids=["nope"]) == []
    with Store.open(path) as other:  # stored behind the directory's back: still found
        ingest_records(other, [usage("z")], settings, source="api")
    assert [r["id"] for r in duck.rows("usage", ids=["z"])] == ["z"]


def test_writes_of_the_same_connection_keep_the_directory_without_reading_it_again(
    duck: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = directory_reads(monkeypatch)
    assert insert_new(duck, "a") == 1
    ingest_records(duck, [usage("x"), usage("a", "failure")], settings, source="api")  # merge
    duck.delete_records(BY_NAME["usage"], ids=["a"])
    assert insert_new(duck, "x") is None  # the merge told the directory of x
    assert insert_new(duck, "a") == 4  # deleted: may be stored, so looked up, and new again
    assert reads == [(0, 0)]  # read once, at the first insert
    assert id_counts(duck) == {"a": 1, "x": 1}


def test_a_connection_keeping_ids_writes_new_ids_without_looking_them_up(
    path: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    told: list[bool] = []
    real = store_module.merge

    def spy(*args: Any, none_stored: bool = False) -> Any:
        told.append(none_stored)
        return real(*args, none_stored=none_stored)

    monkeypatch.setattr(store_module, "merge", spy)
    with Store.open(path) as kept:
        kept.keep_ids = True  # as a server's writer connection
        first = ingest_records(kept, [usage("a"), usage("b")], settings, source="api")
        second = ingest_records(kept, [usage("c"), usage("d")], settings, source="api")
        # a is stored: the merge looks its row up, and counts it updated
        third = ingest_records(kept, [usage("a", "failure"), usage("e")], settings, source="api")
        assert told == [True, True, False]
        c = [r.counts["usage"] for r in (first, second, third)]
        assert [(x.inserted, x.updated, x.unchanged) for x in c] == [
            (2, 0, 0),
            (2, 0, 0),
            (1, 1, 0),
        ]
        assert id_counts(kept) == {i: 1 for i in "abcde"}
        assert [r["outcome"] for r in kept.rows("usage", ids=["a"])] == ["failure"]


def test_a_directory_read_by_another_connection_is_adopted_while_still_current(
    duck: Store, path: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest_records(duck, [usage("a"), usage("b")], settings, source="api")
    with Store.open(path) as reader:
        directory = reader.read_id_directory("usage")
        assert directory is not None and len(directory) == 2
        duck.adopt_ids("usage", directory)
        stale = reader.read_id_directory("usage")
    reads = directory_reads(monkeypatch)
    assert insert_new(duck, "a") is None and insert_new(duck, "c") == 2
    assert reads == []  # the adopted directory answered
    # read before c was stored: adopted by a fresh connection, it is out of date and re-read
    with Store.open(path) as fresh:
        assert stale is not None
        fresh.adopt_ids("usage", stale)
        assert insert_new(fresh, "c") is None
    assert reads == [(2, 0)]
    assert id_counts(duck) == {"a": 1, "b": 1, "c": 1}


def test_a_server_reads_the_stored_ids_ahead_of_its_first_write(
    path: str, settings: Settings
) -> None:
    with Store.open(path) as setup:
        ingest_records(setup, [usage("a"), usage("b"), usage("c")], settings, source="api")
    service = Service(settings, path)
    service.open()
    try:
        thread = service.read_ids_ahead()
        assert thread is not None
        thread.join(60)
        writer = service._ingest_store()
        assert writer.keep_ids and len(writer._ids["usage"]) == 3
        assert writer._ids["usage"].maybe_stored(["a", "z"]) == [True, False]
    finally:
        service.close()


def statements(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL this store's connection runs from now on (its backend's execute and fetchall)."""
    seen: list[str] = []
    backend = store._backend
    for name in ("execute", "fetchall"):
        real = getattr(backend, name)

        def spy(sql: str, params: Any = (), _real: Any = real) -> Any:
            seen.append(" ".join(sql.split()))
            return _real(sql, params)

        monkeypatch.setattr(backend, name, spy)
    return seen


def test_a_connection_keeping_ids_knows_unsaved_sync_state_names_without_asking(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store.open(path) as kept, Store.open(path) as other:
        kept.keep_ids = True
        kept.save_sync_states({"seen:a": {"at": 1}}, new={"seen:a"})
        seen = statements(kept, monkeypatch)
        assert kept.known_sync_states(["seen:b", "seen:c"]) == set()
        assert seen == []  # its directory answered: neither name is saved
        assert kept.known_sync_states(["seen:a", "seen:b"]) == {"seen:a"}
        assert [s for s in seen if "sync_state" in s] == [
            "SELECT name FROM sync_state WHERE name IN (?)"  # only the one it may hold
        ]
        # another connection of the process saves a name: the directory is read again
        other.save_sync_state("seen:b", {"at": 2})
        assert kept.known_sync_states(["seen:b", "seen:c"]) == {"seen:b"}
        other.delete_sync_state("seen:b")
        assert kept.known_sync_states(["seen:b"]) == set()


def test_a_connection_keeping_ids_reads_the_states_it_wrote_without_asking(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Store.open(path) as kept, Store.open(path) as other:
        kept.keep_ids = True
        other.save_sync_state("sync:git", {"head": "abc"})
        assert kept.sync_state("sync:git") == {"head": "abc"}  # (read from the table)
        kept.save_sync_states({"webhook:github": {"deliveries": 1}})
        seen = statements(kept, monkeypatch)
        assert kept.sync_state("webhook:github") == {"deliveries": 1}
        assert kept.sync_state("sync:git") == {"head": "abc"}
        assert kept.sync_state("never") is None
        assert seen == []
        # another connection's write: the next read asks the table, and sees it
        other.save_sync_states({"webhook:github": {"deliveries": 5}})
        assert kept.sync_state("webhook:github") == {"deliveries": 5}
        assert any("FROM sync_state" in q for q in seen)
        # a state replaced in a transaction that rolls back is not kept
        with pytest.raises(RuntimeError), kept.transaction():
            kept.save_sync_states({"webhook:github": {"deliveries": 6}})
            raise RuntimeError("the group failed")
        assert kept.sync_state("webhook:github") == {"deliveries": 5}


def test_a_rolled_back_sync_state_is_not_known_and_the_next_save_is_seen(path: str) -> None:
    with Store.open(path) as kept:
        kept.keep_ids = True
        assert kept.known_sync_states(["seen:a"]) == set()  # (the directory, read empty)
        with pytest.raises(RuntimeError), kept.transaction():
            kept.save_sync_states({"seen:a": {"at": 1}}, new={"seen:a"})
            raise RuntimeError("the group failed")
        assert kept.known_sync_states(["seen:a"]) == set()
        kept.save_sync_states({"seen:a": {"at": 1}}, new={"seen:a"})
        assert kept.known_sync_states(["seen:a"]) == {"seen:a"}
        assert kept.sync_state("seen:a") == {"at": 1}


def test_a_connection_reads_the_data_versions_once_until_another_connection_writes(
    duck: Store, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    duck.keep_ids = True
    assert insert_new(duck, "a") == 1
    seen = statements(duck, monkeypatch)
    versions = "SELECT key, value FROM meta WHERE key IN (?, ?)"  # data_version and the type's
    with duck.transaction():
        assert duck.rows("usage", ids=["b"]) == []  # the directory: b is surely not stored
        assert insert_new(duck, "b") == 2
        # the versions its last transaction wrote served this one: no query for them, and the
        # bump wrote the data version known plus one, without reading anything back
        assert seen.count(versions) == 0
        assert [q for q in seen if q.startswith("UPDATE meta")] == [
            "UPDATE meta SET value = ? WHERE key IN (?, ?)"
        ]
        assert duck.rows("usage", ids=["c"]) == []  # after the bump: the versions it wrote
    assert insert_new(duck, "c") == 3  # a transaction of its own: still no query
    assert seen.count(versions) == 0
    # a write by another connection between two transactions moves the version: read again
    with Store.open(path) as other:
        assert insert_new(other, "d") == 4
    with duck.transaction():
        assert [r["id"] for r in duck.rows("usage", ids=["d"])] == ["d"]
    assert seen.count(versions) == 1
    assert insert_new(duck, "e") == 5
    assert seen.count(versions) == 1
    assert id_counts(duck) == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}


def test_versions_read_while_another_connection_wrote_some_are_not_kept(
    duck: Store, path: str
) -> None:
    """The other connection commits after this one's transaction began: what this one read
    was its snapshot's, older than what is stored once both committed."""
    duck.keep_ids = True
    assert insert_new(duck, "a") == 1
    with Store.open(path) as other:
        with duck.transaction():
            assert duck.rows("usage", ids=["b"]) == []  # the versions, in this snapshot: 1
            assert insert_new(other, "b") == 2  # committed meanwhile
        # read again, not the 1 of that snapshot: no two writes share a data version
        assert insert_new(duck, "c") == 3
        assert insert_new(other, "d") == 4
        assert insert_new(duck, "e") == 5
        assert duck.data_version() == other.data_version() == 5
    assert id_counts(duck) == {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}


def test_the_data_version_in_a_transaction_is_the_kept_one_while_no_other_connection_writes(
    duck: Store, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's writer asks for the data version after a group that wrote nothing (every
    webhook a replay): the version its connection keeps answers, with no query."""
    duck.keep_ids = True
    assert insert_new(duck, "a") == 1
    seen = statements(duck, monkeypatch)
    query = "SELECT key, value FROM meta WHERE key IN (?)"  # data_version alone
    with duck.transaction():
        assert duck.data_version() == 1  # what its last write kept
    assert seen.count(query) == 0
    assert duck.data_version() == 1  # outside a transaction: read
    assert seen.count(query) == 1
    with Store.open(path) as other:
        assert insert_new(other, "b") == 2
        with duck.transaction():
            assert duck.data_version() == 2  # another connection wrote: read again, once
            assert duck.data_version() == 2
        assert seen.count(query) == 2
        with duck.transaction():
            assert duck.data_version() == 2  # kept: nobody wrote since
            assert insert_new(other, "c") == 3  # committed while this one is open
            assert duck.data_version() == 2  # this transaction's snapshot
        assert seen.count(query) == 2
        with duck.transaction():
            assert duck.data_version() == 3  # what it kept was older: read again
        assert seen.count(query) == 3
    assert insert_new(duck, "d") == 4


def test_a_rolled_back_bump_leaves_no_version_kept(duck: Store) -> None:
    duck.keep_ids = True
    assert insert_new(duck, "a") == 1
    with pytest.raises(RuntimeError), duck.transaction():
        assert insert_new(duck, "b") == 2
        raise RuntimeError("the group failed")
    assert duck.data_version() == 1
    assert insert_new(duck, "c") == 2
    assert id_counts(duck) == {"a": 1, "c": 1}


# every kind of field quick types, with nulls, quotes, unicode and empty lists
FEW = {
    "usage": [
        usage("u'1")
        | {"attributes": {"a": [1, {"b": "é"}], "q": "it's"}, "run": "r", "attempt": 2},
        usage("u2", "failure") | {"duration_s": 12.5, "actor": "dév", "service": None},
    ],
    "capability": [
        record("capability", id="ci", name="CI", mandated=True, eligible=["t1", "t'2"]),
        record("capability", id="cd", name="CD", mandated=False, eligible=[]),
        record("capability", id="obs", name="Obs", launched_at="2026-01-02T03:04:05.123456Z"),
    ],
    "deployment": [
        record(
            "deployment",
            id="d1",
            service="s",
            finished_at="2026-03-02T10:00:00Z",
            environment="production",
            result="success",
            commits=["c1", "c2"],
            kind="rollback",
        ),
    ],
}


@pytest.mark.parametrize("type_name", sorted(FEW))
def test_a_few_records_inserted_as_lists_are_stored_as_through_a_view(
    tmp_path: Path, type_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def insert(store: Store) -> list[dict[str, Any]]:
        tables = quick.by_part([(0, r) for r in FEW[type_name]])
        assert tables is not None
        data = tables[type_name]
        data = data.append_column("__source", pa.array(["api"] * data.num_rows, pa.string()))
        assert store.insert_new(BY_NAME[type_name], data, quick.stored_columns(type_name)) == 1
        rows = store.rows(type_name)
        return [{k: v for k, v in row.items() if k != "ingested_at"} for row in rows]

    with Store.open(f"duckdb:///{tmp_path / 'lists.duckdb'}") as store:
        seen = statements(store, monkeypatch)
        as_lists = insert(store)
        assert any("unnest(CAST(? AS" in q for q in seen if q.startswith("INSERT"))
    monkeypatch.setattr(store_module, "SMALL_INSERT", 0)
    with Store.open(f"duckdb:///{tmp_path / 'view.duckdb'}") as store:
        seen = statements(store, monkeypatch)
        through_a_view = insert(store)
        assert not any("unnest" in q for q in seen if q.startswith("INSERT"))
    assert as_lists == through_a_view
    assert len(as_lists) == len(FEW[type_name])
