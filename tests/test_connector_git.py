"""`heatlens sync git`: repositories built here with git, whose deployments are known by hand."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from heatlens.connectors.git import GitSource, sync_git
from heatlens.settings import Settings
from heatlens.store import Store
from tests.conftest import Cli, need, stored


@pytest.fixture(autouse=True)
def _git_installed() -> None:
    need("git", shutil.which("git") is not None)


class Repo:
    """A repository whose every commit and tag has a chosen time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.files = 0
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, at: str = "2026-01-01T00:00:00+00:00") -> str:
        env = {
            **os.environ,
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Ana",
            "GIT_AUTHOR_EMAIL": "Ana@Example.com",
            "GIT_COMMITTER_NAME": "Ana",
            "GIT_COMMITTER_EMAIL": "ana@example.com",
            "GIT_AUTHOR_DATE": at,
            "GIT_COMMITTER_DATE": at,
        }
        done = subprocess.run(
            ["git", *args], cwd=self.path, env=env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def commit(self, at: str) -> str:
        self.files += 1
        (self.path / f"f{self.files}.txt").write_text(str(self.files))
        self.git("add", ".")
        self.git("commit", "-q", "-m", f"change {self.files}", at=at)
        return self.git("rev-parse", "HEAD")

    def merge(self, branch: str, at: str) -> str:
        self.git("merge", "-q", "--no-ff", "-m", f"merge {branch}", branch, at=at)
        return self.git("rev-parse", "HEAD")

    def tag(self, name: str, at: str, *, annotated: bool = True, rev: str = "HEAD") -> None:
        if annotated:
            self.git("tag", "-a", name, "-m", name, rev, at=at)
        else:
            self.git("tag", name, rev)


def t(day: int, hour: int = 12) -> str:
    return f"2026-03-{day:02d}T{hour:02d}:00:00+00:00"


def utc(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def build_release_repo(path: Path) -> dict[str, str]:
    """main with an annotated v1.0, a maintenance branch tagged (lightweight) v1.0.1 in between,
    a merged feature, a squashed feature, v1.1, then the maintenance branch merged and v1.2."""
    r = Repo(path)
    c = {"c1": r.commit(t(1)), "c2": r.commit(t(2))}
    r.tag("v1.0", t(3))  # tagged a day after its commit: the tag time is the tagger date
    r.git("checkout", "-q", "-b", "maint")
    c["h1"] = r.commit(t(5))
    r.tag("v1.0.1", t(20), annotated=False)  # lightweight: its time is h1's commit time
    r.git("checkout", "-q", "main")
    r.git("checkout", "-q", "-b", "feature")
    c["f1"], c["f2"] = r.commit(t(4)), r.commit(t(6))
    r.git("checkout", "-q", "main")
    c["m1"] = r.merge("feature", t(7))
    r.git("checkout", "-q", "-b", "squashed")
    c["g1"], c["g2"] = r.commit(t(7, 13)), r.commit(t(7, 14))
    r.git("checkout", "-q", "main")
    r.git("merge", "-q", "--squash", "squashed")
    r.git("commit", "-q", "-m", "squash", at=t(8))
    c["s1"] = r.git("rev-parse", "HEAD")
    r.tag("v1.1", t(9))
    c["m2"] = r.merge("maint", t(10))
    r.tag("v1.2", t(11))
    c["u1"] = r.commit(t(12))  # not deployed yet
    r.tag("other-1", t(12), annotated=False)  # does not match v*
    return c


def deployments(store: Store) -> dict[str, dict[str, Any]]:
    rows = stored(
        store, "deployment", "id", "finished_at", "commit_sha", "commits", "service", "environment"
    )
    return {
        r[0]: {"at": r[1], "sha": r[2], "commits": set(r[3]), "service": r[4], "env": r[5]}
        for r in rows
    }


def changes(store: Store) -> dict[str, tuple[Any, ...]]:
    rows = stored(store, "change", "id", "committed_at", "service", "repo", "author")
    return {r[0]: r[1:] for r in rows}


def test_tags_ship_commits_no_earlier_tag_shipped(tmp_path: Path, settings: Settings) -> None:
    c = build_release_repo(tmp_path / "shop")
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        sync_git(store, settings, GitSource(tmp_path / "shop", "shop", deploy_tags="v*"))
        deps = deployments(store)
        assert {k: v["commits"] for k, v in deps.items()} == {
            "shop@v1.0": {c["c1"], c["c2"]},  # the first ships its whole history
            "shop@v1.0.1": {c["h1"]},
            "shop@v1.1": {c["f1"], c["f2"], c["m1"], c["s1"]},  # not h1: not reachable
            "shop@v1.2": {c["m2"]},  # h1 came in with the merge but v1.0.1 shipped it
        }
        assert deps["shop@v1.0"]["at"] == utc(3)  # annotated: tagger date
        assert deps["shop@v1.0.1"]["at"] == utc(5)  # lightweight: the commit's date
        assert deps["shop@v1.2"]["sha"] == c["m2"]
        assert {d["env"] for d in deps.values()} == {"production"}
        # every commit reachable from a tag or HEAD is a change; the squashed-away ones are not
        got = changes(store)
        assert set(got) == {c[k] for k in ("c1", "c2", "h1", "f1", "f2", "m1", "s1", "m2", "u1")}
        assert got[c["f2"]] == (utc(6), "shop", "shop", "ana@example.com")


def test_skip_first_ships_only_the_first_tag_commit(tmp_path: Path, settings: Settings) -> None:
    c = build_release_repo(tmp_path / "shop")
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        source = GitSource(tmp_path / "shop", "shop", deploy_tags="v*", skip_first=True)
        sync_git(store, settings, source)
        deps = deployments(store)
        assert deps["shop@v1.0"]["commits"] == {c["c2"]}
        # what came before v1.0 is not shipped again by later tags
        assert deps["shop@v1.1"]["commits"] == {c["f1"], c["f2"], c["m1"], c["s1"]}


def test_branch_merged_twice(tmp_path: Path, settings: Settings) -> None:
    r = Repo(tmp_path / "api")
    a1 = r.commit(t(1))
    r.git("checkout", "-q", "-b", "feature")
    b1 = r.commit(t(2))
    r.git("checkout", "-q", "main")
    m1 = r.merge("feature", t(3))
    r.git("checkout", "-q", "feature")
    b2 = r.commit(t(4))
    r.git("checkout", "-q", "main")
    a2 = r.commit("2026-03-05T14:00:00+02:00")  # stored in UTC
    m2 = r.merge("feature", t(6, 9))
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        sync_git(store, settings, GitSource(r.path, "api", deploy_branch="main"))
        deps = deployments(store)
        assert {k: (v["at"], v["commits"]) for k, v in deps.items()} == {
            f"api@{a1}": (utc(1), {a1}),
            f"api@{m1}": (utc(3), {b1, m1}),
            f"api@{a2}": (utc(5), {a2}),
            f"api@{m2}": (utc(6, 9), {b2, m2}),  # b1 was shipped by the first merge
        }
        assert set(changes(store)) == {a1, b1, m1, b2, a2, m2}


def test_incremental_sync_adds_only_what_is_new(
    tmp_path: Path, settings: Settings, store_url: str
) -> None:
    c = build_release_repo(tmp_path / "shop")
    r = Repo.__new__(Repo)
    r.path, r.files = tmp_path / "shop", 100
    source = GitSource(r.path, "shop", deploy_tags="v*")
    with Store.open(store_url) as store:
        sync_git(store, settings, source)
        again = sync_git(store, settings, source)
        assert again.counts == {}  # nothing new: nothing even read into ingest
        new = r.commit(t(13))
        r.tag("v1.3", t(14))
        result = sync_git(store, settings, source)
        assert {k: (v.inserted, v.updated) for k, v in result.counts.items()} == {
            "change": (1, 0),
            "deployment": (1, 0),
        }
        # v1.3 ships u1 (committed before, deployed now) and the new commit
        assert deployments(store)["shop@v1.3"]["commits"] == {c["u1"], new}
        assert store.counts()["deployment"] == 5 and store.counts()["change"] == 10


def test_incremental_equals_from_scratch_after_history_changes(
    tmp_path: Path, settings: Settings
) -> None:
    c = build_release_repo(tmp_path / "shop")
    r = Repo.__new__(Repo)
    r.path, r.files = tmp_path / "shop", 100
    source = GitSource(r.path, "shop", deploy_tags="v*")
    with Store.open(str(tmp_path / "inc.duckdb")) as inc:
        sync_git(inc, settings, source)
        # a lightweight tag on an old commit sorts before every synced tag
        r.tag("v0.9", "", annotated=False, rev=c["c1"])
        result = sync_git(inc, settings, source)
        assert "from scratch" in result.summary
        # a moved tag
        r.git("tag", "-f", "v1.2", c["u1"])
        sync_git(inc, settings, source)
        with Store.open(str(tmp_path / "fresh.duckdb")) as fresh:
            sync_git(fresh, settings, source)
            assert deployments(inc) == deployments(fresh)
            assert changes(inc) == changes(fresh)
        deps = deployments(inc)
        assert deps["shop@v0.9"]["commits"] == {c["c1"]}
        assert deps["shop@v1.0"]["commits"] == {c["c2"]}
        assert deps["shop@v1.2"]["commits"] == {c["m2"], c["u1"]}


def test_cli_sync_git_and_one_line_errors(tmp_path: Path, run: Cli) -> None:
    build_release_repo(tmp_path / "shop")
    store = f"duckdb:///{tmp_path / 's.duckdb'}"
    ok = run(
        "--store",
        store,
        "sync",
        "git",
        str(tmp_path / "shop"),
        "--service",
        "shop",
        "--deploy-tags",
        "v*",
    )
    assert ok.exit_code == 0, ok.output
    assert "new: 9 commit(s), 4 deployment(s)" in ok.output
    again = run(
        "--store",
        store,
        "sync",
        "git",
        str(tmp_path / "shop"),
        "--service",
        "shop",
        "--deploy-tags",
        "v*",
    )
    assert "new: 0 commit(s), 0 deployment(s)" in again.output
    # deleted records come back only with --full: the state says they were read
    sync = ("--store", store, "sync", "git", str(tmp_path / "shop"), "--service", "shop")
    run("--store", store, "delete", "--type", "deployment", "--source", "sync:git:shop")
    assert "new: 0 commit(s), 0 deployment(s)" in run(*sync, "--deploy-tags", "v*").output
    full = run(*sync, "--deploy-tags", "v*", "--full")
    assert full.exit_code == 0 and "new: 9 commit(s), 4 deployment(s)" in full.output
    with Store.open(store) as s:
        assert s.counts()["deployment"] == 4 and s.counts()["change"] == 9

    (tmp_path / "plain").mkdir()
    cases = {
        str(tmp_path / "plain"): ("--deploy-tags", "v*", "is not a git repository"),
        str(tmp_path / "shop"): ("--deploy-tags", "release-*", "no tag matches 'release-*'"),
        str(tmp_path / "shop") + " ": ("--deploy-branch", "prod", "no branch 'prod'"),
    }
    for path, (option, value, message) in cases.items():
        res = run("--store", store, "sync", "git", path.strip(), "--service", "shop", option, value)
        assert res.exit_code == 2
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.output
    both = run("--store", store, "sync", "git", str(tmp_path / "shop"), "--service", "shop")
    assert both.exit_code == 2 and "exactly one of --deploy-tags" in both.output


def test_rewritten_branch_is_synced_from_scratch(tmp_path: Path, settings: Settings) -> None:
    r = Repo(tmp_path / "api")
    a1, a2 = r.commit(t(1)), r.commit(t(2))
    source = GitSource(r.path, "api", deploy_branch="main")
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        sync_git(store, settings, source)
        r.git("commit", "-q", "--amend", "-m", "rewritten", at=t(3))  # a force-push, locally
        a2b = r.git("rev-parse", "HEAD")
        result = sync_git(store, settings, source)
        assert "from scratch" in result.summary
        deps = deployments(store)
        assert deps[f"api@{a2b}"]["commits"] == {a2b}
        assert deps[f"api@{a1}"]["commits"] == {a1}
        assert f"api@{a2}" in deps  # what was deployed before the rewrite stays stored
