"""Scheduled syncs with several servers on one Postgres: a job runs on one of them at a time
(an advisory lock held for the run), and a server that finds it was run elsewhere skips it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest

from heatlens.connectors import SyncResult
from heatlens.connectors.schedule import Scheduler, SyncJob, last_run
from heatlens.store import Store

pytestmark = pytest.mark.postgres
T = TypeVar("T")
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _with(store: Store) -> Callable[[Callable[[Store], T]], T]:
    lock = threading.Lock()

    def with_store(fn: Callable[[Store], T]) -> T:
        with lock:
            return fn(store)

    return with_store


def test_two_schedulers_on_one_postgres_run_a_due_job_once(postgres_url: str) -> None:
    started, release = threading.Event(), threading.Event()
    runs: list[str] = []

    def job_on(server: str) -> SyncJob:
        def run(store: Store) -> SyncResult:
            runs.append(server)
            started.set()
            assert release.wait(30), "the test never released the job"
            return SyncResult("sync:slow", summary=f"ran on {server}")

        return SyncJob("slow", "git", timedelta(minutes=15), run)

    a_store, b_store = Store.open(postgres_url), Store.open(postgres_url)
    try:
        a = Scheduler([job_on("a")], _with(a_store), clock=lambda: NOW)
        b = Scheduler([job_on("b")], _with(b_store), clock=lambda: NOW)
        done: list[object] = []
        thread = threading.Thread(target=lambda: done.extend(a.run_due(NOW)))
        thread.start()
        assert started.wait(30)
        # A holds the job's lock while it runs: B, due by its own (empty) view, skips it
        assert b.run_due(NOW) == [] and runs == ["a"]
        release.set()
        thread.join(30)
        assert len(done) == 1 and runs == ["a"]
        assert last_run(b_store, "slow")["summary"] == "ran on a"  # type: ignore[index]
        # a third server that never looked: the store says the job ran at NOW, 15 m not passed
        with Store.open(postgres_url) as c_store:
            c = Scheduler([job_on("c")], _with(c_store), clock=lambda: NOW)
            assert c.run_due(NOW + timedelta(minutes=14)) == [] and runs == ["a"]
            # once due again, whichever server asks first runs it, and the lock was let go
            assert [s.summary for s in c.run_due(NOW + timedelta(minutes=15))] == ["ran on c"]
        assert b.run_due(NOW + timedelta(minutes=16)) == [] and runs == ["a", "c"]
    finally:
        release.set()
        a_store.close()
        b_store.close()


def test_a_killed_servers_lock_is_let_go_with_its_connection(postgres_url: str) -> None:
    import psycopg

    holder = Store.open(postgres_url)
    assert holder.try_lock("schedule:x")
    [(pid,)] = holder._backend.fetchall("SELECT pg_backend_pid()")
    with Store.open(postgres_url) as other:
        assert not other.try_lock("schedule:x")
        # the server process dies: its connection ends (the call waits until it has)
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", [pid]).fetchone()
        assert other.try_lock("schedule:x")
        other.unlock("schedule:x")
    holder.close()
