"""`heatlens sync git` on what real histories hold and test repositories usually do not: objects
git accepts but no clock wrote (psf/requests has a 2011 commit at offset `+51800`), pre-release
and branch-like tags, commit subjects, services nobody registered. Each repository is built here
with git itself — odd commits are real objects written with `git hash-object` — and each answer is
known by hand."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from heatlens.connectors.git import GitSource, sync_git
from heatlens.connectors.git.tags import odd_tags_warning, tag_kind
from heatlens.connectors.git.times import Unreadable, parse_raw
from heatlens.connectors.schedule import parse_sync_jobs
from heatlens.errors import ConfigError
from heatlens.ingest import ingest_records
from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.store.schema import SCHEMA_VERSION
from tests.conftest import Cli, need, record, run_sql, stored
from tests.test_connector_git import Repo, deployments, t

# psf/requests 5e6ecdad9f69: git stores `+051800` and prints it as `+51800`; as ISO 8601 it reads
# `2011-09-08T02:38:50+518:00`, which no parser takes. Its Unix time is right.
REQUESTS_TIME = 1313584730


@pytest.fixture(autouse=True)
def _git_installed() -> None:
    need("git", shutil.which("git") is not None)


def raw_commit(
    r: Repo,
    parent: str,
    *,
    committer: str,
    author: str | None = None,
    message: str = "odd\n",
) -> str:
    """Write a commit object byte for byte (git's porcelain would refuse such dates), on top of
    `parent`, with `parent`'s tree; returns its sha."""
    tree = r.git("rev-parse", f"{parent}^{{tree}}")
    body = (
        f"tree {tree}\nparent {parent}\n"
        f"author Ana <ana@example.com> {committer if author is None else author}\n"
        f"committer Ana <ana@example.com> {committer}\n\n{message}"
    )
    path = r.path / ".git" / "raw-object"
    path.write_text(body)
    return r.git("hash-object", "-t", "commit", "-w", "--literally", str(path))


def on_top(r: Repo, sha: str) -> None:
    """Make `sha` the branch's tip, so the next ordinary commit follows it."""
    r.git("update-ref", "refs/heads/main", sha)
    r.git("reset", "-q", "--hard", sha)


def change_rows(store: Store) -> dict[str, dict[str, object]]:
    return {row["id"]: row for row in store.rows("change")}


def test_an_impossible_offset_is_read_as_utc_and_the_sync_completes(
    tmp_path: Path, settings: Settings
) -> None:
    r = Repo(tmp_path / "requests")
    base = r.commit(t(1))
    odd = raw_commit(r, base, committer=f"{REQUESTS_TIME} +051800", message="Typo in docs\n")
    on_top(r, odd)
    after = r.commit(t(2))
    r.tag("v1.0", t(3))
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        result = sync_git(store, settings, GitSource(r.path, "requests", deploy_tags="v*"))
        rows = change_rows(store)
        assert set(rows) == {base, odd, after}
        # the Unix time, exactly: 2011-08-17 12:38:50 UTC (git's own ISO date says 2011-09-08)
        assert rows[odd]["committed_at"] == datetime.fromtimestamp(REQUESTS_TIME, UTC)
        assert rows[odd]["authored_at"] == datetime(2011, 8, 17, 12, 38, 50, tzinfo=UTC)
        assert rows[odd]["title"] == "Typo in docs"
        assert deployments(store)["requests@v1.0"]["commits"] == {base, odd, after}
    [warning] = [w for w in result.warnings if "offset" in w]
    assert warning.startswith("1 commit has an impossible time-zone offset")
    assert f"{odd[:12]} ({REQUESTS_TIME} +51800)" in warning and "read as UTC" in warning
    assert "new: 3 commit(s), 1 deployment(s)" in result.summary


def test_a_commit_with_no_readable_time_is_skipped_and_its_history_still_ships(
    tmp_path: Path, settings: Settings
) -> None:
    r = Repo(tmp_path / "old")
    base = r.commit(t(1))
    broken = raw_commit(r, base, committer="notanumber +0000")
    on_top(r, broken)
    no_author_time = raw_commit(r, broken, committer=f"{REQUESTS_TIME} +0200", author="")
    on_top(r, no_author_time)
    tip = r.commit(t(2))
    r.tag("v1.0", t(3))
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        result = sync_git(store, settings, GitSource(r.path, "old", deploy_tags="v*"))
        rows = change_rows(store)
        # the broken commit is no change; the commits behind it are still reached and shipped
        assert set(rows) == {base, no_author_time, tip}
        assert deployments(store)["old@v1.0"]["commits"] == {base, no_author_time, tip}
        assert rows[no_author_time]["authored_at"] is None
        assert rows[no_author_time]["committed_at"] == datetime.fromtimestamp(REQUESTS_TIME, UTC)
    skipped = next(w for w in result.warnings if "no readable time" in w)
    assert skipped == (
        f"1 commit has no readable time: {broken[:12]} (notanumber +0000); left out, the rest "
        "is synced"
    )
    author = next(w for w in result.warnings if "author time" in w)
    assert f"{no_author_time[:12]} (no date)" in author and "`authored_at` is left empty" in author


def test_tags_with_odd_or_missing_dates(tmp_path: Path, settings: Settings) -> None:
    r = Repo(tmp_path / "tags")
    c1 = r.commit(t(1))
    c2 = r.commit(t(2))

    def raw_tag(name: str, commit: str, tagger: str | None) -> None:
        line = f"tagger Ana <ana@example.com> {tagger}\n" if tagger is not None else ""
        path = r.path / ".git" / "raw-tag"
        path.write_text(f"object {commit}\ntype commit\ntag {name}\n{line}\n{name}\n")
        sha = r.git("hash-object", "-t", "tag", "-w", "--literally", str(path))
        r.git("update-ref", f"refs/tags/{name}", sha)

    raw_tag("v0.9", c1, None)  # early git wrote annotated tags without a tagger (git.git v0.99)
    raw_tag("v1.0", c2, "1772712000 +51800")  # 2026-03-05 12:00 UTC
    raw_tag("v1.1", c2, "yesterday +0000")
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        result = sync_git(store, settings, GitSource(r.path, "tags", deploy_tags="v*"))
        deps = deployments(store)
    assert set(deps) == {"tags@v0.9", "tags@v1.0"}
    assert deps["tags@v0.9"]["at"] == datetime(2026, 3, 1, 12, tzinfo=UTC)  # c1's commit time
    assert deps["tags@v1.0"]["at"] == datetime(2026, 3, 5, 12, tzinfo=UTC)
    assert deps["tags@v1.0"]["commits"] == {c2}
    text = "\n".join(result.warnings)
    assert "1 annotated tag has no tagger date (v0.9): deployed at its commit's time" in text
    assert "1 tag has an impossible time-zone offset: v1.0" in text
    assert "1 tag has no readable time: v1.1 (yesterday +0000)" in text


def test_titles_are_the_first_line_of_the_message(tmp_path: Path, settings: Settings) -> None:
    r = Repo(tmp_path / "titles")
    base = r.commit(t(1))
    long_line = "x" * 400
    wrapped = raw_commit(r, base, committer=f"{REQUESTS_TIME} +0000", message="\n\nFirst\nSecond\n")
    on_top(r, wrapped)
    long = raw_commit(r, wrapped, committer=f"{REQUESTS_TIME} +0000", message=long_line + "\n")
    on_top(r, long)
    empty = raw_commit(r, long, committer=f"{REQUESTS_TIME} +0000", message="")
    on_top(r, empty)
    r.tag("v1", t(2))
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        sync_git(store, settings, GitSource(r.path, "titles", deploy_tags="v*"))
        titles = {id_: row["title"] for id_, row in change_rows(store).items()}
        authors = {row["author"] for row in change_rows(store).values()}
    assert titles[base] == "change 1"
    assert titles[wrapped] == "First"
    assert titles[long] == "x" * 299 + "…" and len(titles[long]) == 300
    assert titles[empty] is None
    assert authors == {"ana@example.com"}


@pytest.mark.parametrize(
    ("name", "kind", "glob"),
    [
        ("1.0.x", "branch", "*.x"),
        ("2.x", "branch", "*.x"),
        ("2.0.0rc1", "pre-release", "*[0-9]rc*"),
        ("v2.40.0-rc1", "pre-release", "*-rc*"),
        ("0.18a1", "pre-release", "*[0-9]a[0-9]*"),
        ("2.1.0b2", "pre-release", "*[0-9]b[0-9]*"),
        ("3.0-beta", "pre-release", "*-beta*"),
        ("v2.34.0.dev1", "pre-release", "*.dev*"),
        ("REL_16_BETA1", "pre-release", "*_BETA*"),
        ("APACHE_2_0_ALPHA_4", "pre-release", "*_ALPHA*"),
        ("rel_0_4beta1", "pre-release", "*[0-9]beta*"),
        ("v1.0", None, ""),
        ("1.0.2k", None, ""),  # OpenSSL-style letter releases are releases
        ("v1.0.0a", None, ""),  # git.git's v1.0.0a was one
        ("deploy-2026", None, ""),
        ("alphabet-1", None, ""),
    ],
)
def test_tag_kind(name: str, kind: str | None, glob: str) -> None:
    assert tag_kind(name) == (kind, glob)
    if glob:
        assert fnmatch.fnmatchcase(name, glob)


def test_pre_release_and_branch_tags_are_named_with_the_exclude_that_drops_them(
    tmp_path: Path, settings: Settings, run: Cli
) -> None:
    r = Repo(tmp_path / "lib")
    names = ["1.0", "1.0.x", "1.0.2k", "2.0.0a1", "2.0.0rc1", "2.0.0", "2.1.dev0"]
    for day, name in enumerate(names, start=1):
        r.commit(t(day))
        r.tag(name, t(day, 13))
    store_url = f"duckdb:///{tmp_path / 's.duckdb'}"
    sync = ("--store", store_url, "sync", "git", str(r.path), "--service", "lib")
    first = run(*sync, "--deploy-tags", "*")
    assert first.exit_code == 0, first.output
    warning = next(line for line in first.output.splitlines() if "look like" in line)
    assert warning == (
        "warning: 4 tags matching '*' look like pre-releases (2.0.0a1, 2.0.0rc1, 2.1.dev0) or "
        "like a branch (1.0.x): each counts as a deployment; if they are not, sync with "
        "--exclude-tags '*.x,*[0-9]a[0-9]*,*[0-9]rc*,*.dev*'"
    )
    with Store.open(store_url) as store:
        assert len(deployments(store)) == 7
    # the suggested option, pasted as printed, leaves exactly those four out (synced from
    # scratch: the deploy options changed)
    [globs] = re.findall(r"--exclude-tags '([^']+)'", warning)
    again = run(*sync, "--deploy-tags", "*", "--exclude-tags", globs)
    assert again.exit_code == 0 and "look like" not in again.output
    assert "deploy options changed since the last sync" in again.output
    # comma-separated or repeated: the same
    split = run(
        *sync, "--deploy-tags", "*", *(x for g in globs.split(",") for x in ("--exclude-tags", g))
    )
    assert "deploy options changed" not in split.output and "new: 0 commit(s)" in split.output
    with Store.open(store_url) as store:
        # deployments recorded under the old options stay stored (as the warning says); a sync
        # into a fresh store holds only the releases
        assert len(deployments(store)) == 7
    fresh = f"duckdb:///{tmp_path / 'fresh.duckdb'}"
    run("--store", fresh, *sync[2:], "--deploy-tags", "*", "--exclude-tags", globs)
    with Store.open(fresh) as store:
        assert set(deployments(store)) == {"lib@1.0", "lib@1.0.2k", "lib@2.0.0"}
        # the excluded tags' commits ship with the next release
        assert len(deployments(store)["lib@1.0.2k"]["commits"]) == 2  # with 1.0.x's commit
        assert len(deployments(store)["lib@2.0.0"]["commits"]) == 3  # with 2.0.0a1's, rc1's

    nothing = run(*sync, "--deploy-tags", "2.*", "--exclude-tags", "2.*")
    assert nothing.exit_code == 2
    assert "no tag matches '2.*' outside --exclude-tags 2.*" in nothing.output
    branch = run(*sync, "--deploy-branch", "main", "--exclude-tags", "*rc*")
    assert branch.exit_code == 2 and "--exclude-tags leaves out tags" in branch.output


def test_odd_tags_warning_is_none_for_releases() -> None:
    assert odd_tags_warning(["v1.0", "v1.1", "v2.0.0"], "v*") is None
    many = odd_tags_warning([f"v1.{i}-rc1" for i in range(6)], "v*")
    assert many is not None and "(v1.0-rc1, v1.1-rc1, v1.2-rc1, v1.3-rc1 and 2 more)" in many


def test_an_unknown_service_is_named_with_the_command_that_registers_it(
    tmp_path: Path, settings: Settings, run: Cli
) -> None:
    r = Repo(tmp_path / "shop")
    r.commit(t(1))
    r.tag("v1", t(2))
    store_url = f"duckdb:///{tmp_path / 's.duckdb'}"
    sync = ("--store", store_url, "sync", "git", str(r.path), "--service", "shop")
    first = run(*sync, "--deploy-tags", "v*")
    [warning] = [line for line in first.output.splitlines() if "not registered" in line]
    assert warning.startswith("warning: service 'shop' is not registered")
    # the command it prints works as printed: its record, fed to `heatlens ingest -` on the
    # user's own store (the printed command names it, so it pastes)
    [(command, line)] = re.findall(r"`echo '(\{.*\})' \| (heatlens [^`]*)`", warning)
    assert json.loads(command) == {"type": "service", "id": "shop", "team": "TEAM"}
    words = shlex.split(line)
    assert words == ["heatlens", "--store", store_url, "ingest", "-"]
    loaded = run(*words[1:], input=command)
    assert loaded.exit_code == 0, loaded.output
    again = run(*sync, "--deploy-tags", "v*")
    assert again.exit_code == 0 and "not registered" not in again.output


def test_scheduled_git_sync_takes_exclude_tags(tmp_path: Path) -> None:
    r = Repo(tmp_path / "lib")
    r.commit(t(1))
    r.tag("1.0", t(1, 13))
    r.commit(t(2))
    r.tag("2.0rc1", t(2, 13))
    entry = {"kind": "git", "path": str(r.path), "service": "lib", "deploy_tags": "*"}
    settings = Settings(
        sync=[
            {**entry, "name": "list", "exclude_tags": ["*rc*", "*.x"]},
            {**entry, "name": "text", "exclude_tags": "*rc*,*.x"},
        ]
    )
    jobs = parse_sync_jobs(settings)
    for job in jobs:
        with Store.open(str(tmp_path / f"{job.name}.duckdb")) as store:
            result = job.run(store)
            assert set(deployments(store)) == {"lib@1.0"}, result.warnings
    bad = Settings(sync=[{**entry, "exclude_tags": ["*rc*", 3]}])
    with pytest.raises(ConfigError, match=r"sync\[0\]\.exclude_tags: expected a str, got 3"):
        parse_sync_jobs(bad)


def test_a_v3_store_gains_change_titles(store_url: str, settings: Settings) -> None:
    # a store as schema v3 left it: changes without `title`
    url = store_url
    Store.open(url).close()
    run_sql(
        url,
        'ALTER TABLE "change" DROP COLUMN "title"',
        'ALTER TABLE "survey" DROP COLUMN "continuous"',  # what v5 adds
        "DROP TABLE survey_link",
        "DROP TABLE web_session",  # what v6 adds
        "DROP TABLE rate_window",
        "INSERT INTO change (id, committed_at, author, source, ingested_at) VALUES "
        "('abc', TIMESTAMPTZ '2026-01-01 00:00:00+00', 'ana', 'v3', "
        "TIMESTAMPTZ '2026-01-01 00:00:00+00')",
        "UPDATE meta SET value = '3' WHERE key = 'schema_version'",
    )
    with Store.open(url) as store:
        assert store.schema_version() == SCHEMA_VERSION == 7
        assert stored(store, "change", "id", "author", "title") == [("abc", "ana", None)]
        ingest_records(
            store,
            [record("change", id="def", committed_at="2026-01-02T00:00:00Z", title="Fix it")],
            settings,
            source="t",
        )
        assert sorted(stored(store, "change", "id", "title")) == [("abc", None), ("def", "Fix it")]


def test_a_second_tag_on_a_deployed_commit_is_not_a_second_deployment(
    tmp_path: Path, settings: Settings
) -> None:
    # git.git tags v1.0rc1 on v0.99.9h's commit a minute later; itsdangerous tags 1.0.x on 1.0.0's
    r = Repo(tmp_path / "lib")
    c1 = r.commit(t(1))
    r.tag("v0.99.9h", t(1, 13))
    r.tag("v1.0rc1", t(1, 14))
    c2 = r.commit(t(2))
    r.tag("v1.0", t(2, 13), annotated=False)
    r.tag("v1.0-final", t(2, 13), annotated=False)  # same time: ordered by name
    source = GitSource(r.path, "lib", deploy_tags="v*")
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        result = sync_git(store, settings, source)
        deps = deployments(store)
        assert {k: v["commits"] for k, v in deps.items()} == {
            "lib@v0.99.9h": {c1},
            "lib@v1.0": {c2},
        }
        r.tag("v1.0.0", t(3), annotated=True, rev=c2)  # a later alias: still nothing new
        again = sync_git(store, settings, source)
        assert set(deployments(store)) == {"lib@v0.99.9h", "lib@v1.0"}
    assert (
        "2 tags name a commit an earlier tag deployed (v1.0rc1 = v0.99.9h, v1.0-final = v1.0): "
        "not counted again"
    ) in result.warnings
    # every sync names them all again (a scheduled sync's last run shows them too)
    assert (
        "3 tags name a commit an earlier tag deployed (v1.0rc1 = v0.99.9h, v1.0-final = v1.0, "
        "v1.0.0 = v1.0)" in "\n".join(again.warnings)
    )
    assert "new: 0 commit(s), 0 deployment(s)" in again.summary
    # the pre-release warning names only tags that are deployments
    assert not any("pre-release" in w for w in result.warnings)


def test_a_shallow_clone_is_synced_and_named(tmp_path: Path, settings: Settings) -> None:
    r = Repo(tmp_path / "origin")
    for day in (1, 2, 3):
        r.commit(t(day))
    r.tag("v1", t(3, 13))
    clone = tmp_path / "clone"
    r.git("clone", "-q", "--depth", "2", f"file://{r.path}", str(clone))
    r.git("-C", str(clone), "fetch", "-q", "--depth", "2", "origin", "refs/tags/v1:refs/tags/v1")
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        result = sync_git(store, settings, GitSource(clone, "lib", deploy_tags="v*"))
        assert len(change_rows(store)) == 2  # the two commits the clone holds
    assert any(w.startswith(f"{clone} is a shallow clone") for w in result.warnings)


@pytest.mark.parametrize(
    ("raw", "offset_minutes", "possible"),
    [
        ("1313584730 +0200", 120, True),
        ("1313584730 -0930", -570, True),
        ("1313584730 +1400", 840, True),  # Line Islands
        ("1313584730 -1200", -720, True),  # Baker Island
        ("1313584730 +1401", 0, False),
        ("1313584730 -1201", 0, False),
        ("1313584730 +0260", 0, False),  # 60 minutes
        ("1313584730 +51800", 0, False),  # psf/requests
        ("1313584730", 0, False),
    ],
)
def test_raw_dates_keep_the_unix_time_whatever_the_offset(
    raw: str, offset_minutes: int, possible: bool
) -> None:
    at, ok = parse_raw(raw)
    assert at.timestamp() == REQUESTS_TIME and ok is possible
    assert at.utcoffset() == timedelta(minutes=offset_minutes)


@pytest.mark.parametrize(
    "raw", ["", "notanumber +0000", "0 +0000", "-5 +0000", "99999999999999 +0000"]
)
def test_raw_dates_without_a_readable_time(raw: str) -> None:
    with pytest.raises(Unreadable):
        parse_raw(raw)
