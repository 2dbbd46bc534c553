"""Scheduled syncs: config checks, and a Scheduler driven by a given clock on a real store."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from heatlens.connectors.schedule import Scheduler, parse_sync_jobs, sync_status
from heatlens.errors import ConfigError
from heatlens.settings import Settings, load_settings
from heatlens.store import Store
from tests.conftest import Cli, need, stored
from tests.test_connector_git import Repo, t

T = TypeVar("T")
T0 = datetime(2026, 3, 20, 9, 0, tzinfo=UTC)


def with_settings(*entries: dict[str, Any]) -> Settings:
    return load_settings(config=None, environ={}, overrides={"sync": list(entries)})


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"path": "r", "service": "s"}, "sync[1].kind: None is not a sync kind"),
        (
            {"kind": "svn"},
            "sync[1].kind: 'svn' is not a sync kind (git, backstage, github, gitlab or pagerduty)",
        ),
        ({"kind": "git", "path": "r", "deploy_tags": "v*"}, "sync[1].service: missing"),
        (
            {"kind": "git", "path": "r", "service": "s", "deploy_tags": "v*", "every": "often"},
            "sync[1].every: 'often' is not an interval",
        ),
        (
            {"kind": "git", "path": "r", "service": "s", "deploy_tags": "v*", "deploy_branch": "m"},
            "sync[1]: git sync needs exactly one of --deploy-tags",
        ),
        ({"kind": "backstage", "catalog": "c", "tags": "x"}, "sync[1].tags: unknown key"),
        ({"kind": "backstage", "catalog": 3}, "sync[1].catalog: expected a str, got 3"),
        ({"kind": "backstage", "catalog": "c.yaml"}, "sync[1]: the same sync as an earlier"),
    ],
)
def test_bad_sync_entries_are_one_line_naming_the_entry(
    entry: dict[str, Any], message: str
) -> None:
    first = {"kind": "backstage", "catalog": "c.yaml", "every": "1h"}
    with pytest.raises(ConfigError) as caught:
        parse_sync_jobs(with_settings(first, entry))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def locked(store: Store) -> Callable[[Callable[[Store], T]], T]:
    """What the server gives the scheduler: run a function on its store under its lock."""
    lock = threading.Lock()

    def with_store(fn: Callable[[Store], T]) -> T:
        with lock:
            return fn(store)

    return with_store


def test_scheduler_picks_up_a_new_tag(tmp_path: Path, run: Cli) -> None:
    need("git", shutil.which("git") is not None)
    repo = Repo(tmp_path / "shop")
    repo.commit(t(1))
    repo.tag("v1", t(2))
    repo.commit(t(3))
    repo.tag("v2", t(4))
    settings = with_settings(
        {
            "kind": "git",
            "path": str(repo.path),
            "service": "shop",
            "deploy_tags": "v*",
            "every": "15m",
        },
        {"kind": "backstage", "catalog": str(tmp_path / "missing.yaml"), "every": "1h"},
    )
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        scheduler = Scheduler.from_settings(settings, locked(store))
        first = scheduler.run_due(T0)
        assert [s.ok for s in first] == [True, False]  # the broken one is recorded, not fatal
        assert "no such file" in first[1].summary
        assert store.counts()["deployment"] == 2
        assert scheduler.run_due(T0 + timedelta(minutes=14)) == []  # nothing due yet
        new = repo.commit(t(5))
        repo.tag("v3", t(6))
        again = scheduler.run_due(T0 + timedelta(minutes=15))
        assert [s.name for s in again] == [scheduler.jobs[0].name]
        assert again[0].summary == "new: 1 commit(s), 1 deployment(s) (v3)"
        deployments = dict(stored(store, "deployment", "id", "commits"))
        assert deployments["shop@v3"] == [new]
        assert store.counts()["deployment"] == 3 and store.counts()["change"] == 3
        # a restarted server knows when each job last ran: only the git job is due at +31 min
        restarted = Scheduler.from_settings(settings, locked(store))
        assert restarted.run_due(T0 + timedelta(minutes=29)) == []
        assert [s.kind for s in restarted.run_due(T0 + timedelta(minutes=31))] == ["git"]
        assert store.counts()["deployment"] == 3  # nothing doubled
        status = {s.kind: s for s in sync_status(store)}
        assert status["git"].ok and status["git"].at == T0 + timedelta(minutes=31)
        assert status["git"].source == "sync:git:shop"
        assert not status["backstage"].ok and status["backstage"].at == T0
    # `heatlens status` shows each scheduled sync's last run
    shown = run("--store", str(tmp_path / "s.duckdb"), "status")
    assert shown.exit_code == 0, shown.stderr
    last = (T0 + timedelta(minutes=31)).isoformat()
    assert f"sync {scheduler.jobs[0].name} (git): ok at {last}" in shown.stdout
    assert "(backstage): failed" in shown.stdout and "no such file" in shown.stdout


def test_background_thread_runs_due_jobs_by_its_clock_and_stops(tmp_path: Path) -> None:
    need("git", shutil.which("git") is not None)
    repo = Repo(tmp_path / "api")
    repo.commit(t(1))
    settings = with_settings(
        {
            "kind": "git",
            "path": str(repo.path),
            "service": "api",
            "deploy_branch": "main",
            "every": "15m",
        }
    )
    now = [T0]
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        with_store = locked(store)
        # a clock the test moves, and no round but the first and those the test asks for
        scheduler = Scheduler(
            parse_sync_jobs(settings), with_store, clock=lambda: now[0], poll_seconds=3600
        )

        def deployments() -> int:
            return with_store(lambda s: s.counts()["deployment"])

        scheduler.start()
        try:
            assert scheduler.wait_rounds(1, timeout=60), "the first round never ended"
            assert deployments() == 1
            repo.commit(t(2))
            for minutes, rounds, expected in ((14, 2, 1), (15, 3, 2), (29, 4, 2)):
                now[0] = T0 + timedelta(minutes=minutes)
                scheduler.wake()
                assert scheduler.wait_rounds(rounds, timeout=60), f"no round at +{minutes} min"
                assert deployments() == expected, f"at +{minutes} min"
        finally:
            scheduler.stop()
        assert scheduler._thread is None and scheduler.rounds == 4
        status = with_store(sync_status)
        assert [(x.ok, x.at) for x in status] == [(True, T0 + timedelta(minutes=15))]
