"""`heatlens sync github` against a fake GitHub (an httpx transport, no network) replaying the
example responses of GitHub's OpenAPI description (tests/fixtures/github/rest, see SOURCE.txt),
spread over several pages; the records expected were written by hand from those responses."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from heatlens.connectors.github.sync import GithubSource, state_name, sync_github
from heatlens.connectors.http import RateLimited, RetryPolicy, Vendor, make_client
from heatlens.connectors.streams import (
    NextPageHeader,
    OffsetMore,
    PageRequest,
    Stream,
    read_stream,
)
from heatlens.errors import ConfigError, ConnectorError
from heatlens.settings import Settings
from heatlens.store import Store

REST = Path(__file__).parent / "fixtures" / "github" / "rest"
API = "https://api.github.test"
REPO = "octocat/example"
TOKEN = "ghp_s3cr3tT0ken"


def fixture(name: str) -> Any:
    return json.loads((REST / name).read_text())


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.t = now.timestamp()
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


class FakeGithub:
    """Routes (path, page) → answers; a route with several answers gives them in turn (the last
    one repeats). Pages link to each other as GitHub's do; ETags are the body's hash, and a
    matching If-None-Match gets a 304."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Answer]] = {}
        self.requests: list[httpx.Request] = []
        self.remaining = 5000

    def pages(self, path: str, bodies: list[Any], key: str | None = None) -> None:
        for n, body in enumerate(bodies, 1):
            headers = {}
            if n < len(bodies):
                headers["link"] = f'<{API}/{path}?per_page=100&page={n + 1}>; rel="next"'
            data = {"total_count": 0, key: body} if key else body
            self.routes[(path, str(n))] = [self.ok(data, headers)]

    def ok(self, data: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        text = json.dumps(data)
        etag = f'"{abs(hash(text))}"'
        return httpx.Response(200, text=text, headers={"etag": etag, **(headers or {})})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.url.host == "api.github.test"
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        path = request.url.path.lstrip("/")
        answers = self.routes.get((path, request.url.params.get("page", "1")))
        if answers is None:
            return httpx.Response(404, json={"message": "Not Found"})
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        response = answer(request) if callable(answer) else answer
        etag = response.headers.get("etag")
        if etag and request.headers.get("if-none-match") == etag:
            response = httpx.Response(304, headers={"etag": etag})
        else:
            self.remaining -= 1
        response.headers.setdefault("x-ratelimit-limit", "5000")
        response.headers.setdefault("x-ratelimit-remaining", str(self.remaining))
        response.headers.setdefault("x-ratelimit-reset", "2000000000")
        return httpx.Response(
            response.status_code, headers=response.headers, content=response.content
        )


# -- the replayed responses ---------------------------------------------------------------------

RUN_A, RUN_B = fixture("devlake_raw_workflow_runs_sample.json")  # completed, 2022-09-03, 08-27
QUEUED = fixture("actions_list-workflow-runs-for-repo.json")["workflow_runs"][0]  # 2020-01-22
DEPLOYMENT = fixture("repos_list-deployments.json")[0]  # id 1, 2012-07-20T01:19:13Z
STATUSES = fixture("repos_list-deployment-statuses.json")  # success, production
# a second deployment, later, whose status is not final yet (written here from the first)
DEPLOYMENT_2 = {
    **copy.deepcopy(DEPLOYMENT),
    "id": 2,
    "sha": "b" * 40,
    "created_at": "2012-07-21T09:00:00Z",
    "task": "deploy:hotfix",
}
PENDING = [{**copy.deepcopy(STATUSES[0]), "state": "in_progress", "id": 7}]
FAILED = [
    {
        **copy.deepcopy(STATUSES[0]),
        "state": "failure",
        "id": 8,
        "updated_at": "2012-07-21T09:05:00Z",
    },
    *PENDING,
]


def fake_github(
    runs: list[Any] | None = None,
    dep2_statuses: list[Any] | None = None,
    issues: list[list[Any]] | None = None,
    pulls: list[list[Any]] | None = None,
) -> FakeGithub:
    fake = FakeGithub()
    fake.routes[(f"repos/{REPO}", "1")] = [fake.ok({"full_name": REPO, "name": "example"})]
    # three pages of runs, newest first
    fake.pages(f"repos/{REPO}/actions/runs", runs or [[RUN_A], [RUN_B], [QUEUED]], "workflow_runs")
    fake.pages(f"repos/{REPO}/deployments", [[DEPLOYMENT_2], [DEPLOYMENT]])
    fake.pages(f"repos/{REPO}/issues", issues or [[]])
    fake.pages(f"repos/{REPO}/pulls", pulls or [[]])
    fake.routes[(f"repos/{REPO}/deployments/1/statuses", "1")] = [fake.ok(STATUSES)]
    fake.routes[(f"repos/{REPO}/deployments/2/statuses", "1")] = [
        fake.ok(dep2_statuses if dep2_statuses is not None else PENDING)
    ]
    return fake


# usage written by hand from RUN_A and RUN_B: (id, ts, actor, service, outcome, duration, run)
USAGE = {
    ("2983238245/1", "2022-09-03T05:15:09Z", "panjf2000", "ants", "success", 67.0, "2983238245"),
    ("2938072864/1", "2022-08-27T05:13:50Z", "panjf2000", "ants", "success", 76.0, "2938072864"),
}
# deployment 1 with its success status (deployment 2 has no final status yet)
DEPLOYMENTS = {
    (
        f"{REPO}/deployments/1",
        "example",
        "production",
        "success",
        "2012-07-20T01:19:13Z",
        "2012-07-20T01:19:13Z",
        "a84d88e7554fc1fa21bcbc4efae3c782a70d2b9d",
        None,
    )
}
NOW = datetime(2012, 7, 22, tzinfo=UTC)  # deployment 2 is a day old: still worth waiting for


def iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def usage(store: Store) -> set[tuple[Any, ...]]:
    return {
        (
            r["id"],
            iso(r["ts"]),
            r["actor"],
            r["service"],
            r["outcome"],
            float(r["duration_s"]),
            r["run"],
        )
        for r in store.rows("usage")
    }


def deployments(store: Store) -> set[tuple[Any, ...]]:
    return {
        (
            r["id"],
            r["service"],
            r["environment"],
            r["result"],
            iso(r["started_at"]),
            iso(r["finished_at"]),
            r["commit_sha"],
            r["kind"],
        )
        for r in store.rows("deployment")
    }


def sync(
    store: Store,
    settings: Settings,
    fake: FakeGithub,
    clock: FakeClock | None = None,
    **source: Any,
) -> Any:
    return sync_github(
        store,
        settings,
        GithubSource((REPO,), TOKEN, API, **source),
        transport=httpx.MockTransport(fake),
        clock=clock or FakeClock(NOW),
    )


def paths(fake: FakeGithub) -> list[str]:
    return [
        r.url.path.removeprefix(f"/repos/{REPO}")
        + (f"?page={r.url.params['page']}" if "page" in r.url.params else "")
        for r in fake.requests
    ]


# -- backfill, then what is new -----------------------------------------------------------------


def test_backfill_reads_every_page_into_records(duck_store: Store, settings: Settings) -> None:
    fake = fake_github()
    clock = FakeClock(NOW)
    result = sync(duck_store, settings, fake, clock)
    assert usage(duck_store) == USAGE
    assert deployments(duck_store) == DEPLOYMENTS
    assert paths(fake) == [
        "",
        "/actions/runs",
        "/actions/runs?page=2",
        "/actions/runs?page=3",
        "/deployments",
        "/deployments/2/statuses",
        "/deployments?page=2",
        "/deployments/1/statuses",
        "/issues",
        "/pulls",
        # the look-back for re-runs: the runs created in the last 7 days, every page
        "/actions/runs",
        "/actions/runs?page=2",
        "/actions/runs?page=3",
    ]
    assert [r.url.params["created"] for r in fake.requests[-3:-2]] == [">=2012-07-15"]
    assert clock.slept == []
    # the queued run (2020-01-22) holds the runs' cursor; deployment 2 (no final status) holds
    # the deployments' cursor at its creation
    runs = duck_store.sync_state(
        state_name(GithubSource((REPO,), base_url=API), REPO, "workflow_runs")
    )
    assert runs is not None and runs["cursor"] == "2020-01-22T19:33:08Z" and runs["held"]
    assert "resume" not in runs
    deps = duck_store.sync_state(
        state_name(GithubSource((REPO,), base_url=API), REPO, "deployments")
    )
    assert deps is not None and deps["cursor"] == "2012-07-21T09:00:00Z"
    assert result.counts["usage"].inserted == 2
    assert result.counts["deployment"].inserted == 1
    assert "3 workflow runs, 2 deployments" in result.summary


def test_progress_shows_counts_and_the_rate_limit_left(
    duck_store: Store, settings: Settings
) -> None:
    seen: list[tuple[str, int, int | None]] = []
    sync_github(
        duck_store,
        settings,
        GithubSource((REPO,), TOKEN, API),
        transport=httpx.MockTransport(fake_github()),
        clock=FakeClock(NOW),
        progress=lambda *step: seen.append(step),
    )
    # 5,000 a request: the repository, then each page of runs (the fake counts down from 5,000)
    assert seen[:4] == [
        (f"{REPO}: looking it up", 0, None),
        (f"{REPO}: workflow runs: 1 read, rate limit left 4,998/5,000", 1, None),
        (f"{REPO}: workflow runs: 2 read, rate limit left 4,997/5,000", 2, None),
        (f"{REPO}: workflow runs: 3 read, rate limit left 4,996/5,000", 3, None),
    ]


def test_retry_logs_name_no_token(caplog: pytest.LogCaptureFixture) -> None:
    def flaky(request: httpx.Request) -> httpx.Response:
        if len(calls) < 1:
            calls.append(request)
            return httpx.Response(503, headers={"retry-after": "Sun, 22 Jul 2012 00:00:07 GMT"})
        return httpx.Response(200, json={"ok": True})

    calls: list[httpx.Request] = []
    clock = FakeClock(NOW)
    client = make_client(
        API, TOKEN, Vendor("GitHub"), transport=httpx.MockTransport(flaky), clock=clock
    )
    with caplog.at_level("INFO", logger="heatlens.connectors.http"):
        page = client.get(f"repos/x/y?access_token={TOKEN}", what=f"x/y with {TOKEN}")
    assert page.data == {"ok": True}
    assert clock.slept == [7.0]  # Retry-After as an HTTP date: 7 s after NOW
    assert caplog.messages and all(TOKEN not in m for m in caplog.messages)
    assert "***" in caplog.messages[0]


def test_a_run_waiting_longer_than_open_days_no_longer_holds_the_cursor(
    duck_store: Store, settings: Settings
) -> None:
    # the queued run was created 2020-01-22: 19 days before this clock, beyond open_days (7)
    sync(duck_store, settings, fake_github(), FakeClock(datetime(2020, 2, 10, tzinfo=UTC)))
    runs = duck_store.sync_state(
        state_name(GithubSource((REPO,), base_url=API), REPO, "workflow_runs")
    )
    assert runs is not None and (runs["cursor"], runs["held"]) == ("2022-09-03T05:15:09Z", False)


def test_second_sync_reads_from_the_cursor_and_picks_up_a_final_status(
    duck_store: Store, settings: Settings
) -> None:
    sync(duck_store, settings, fake_github())
    fake = fake_github(dep2_statuses=FAILED)
    sync(duck_store, settings, fake)
    # runs asked from the held cursor; deployment 2's statuses asked again; deployment 1 on
    # page 2 is older than the cursor: the walk stops there, its statuses not asked again
    runs = [r for r in fake.requests if r.url.path.endswith("/actions/runs")]
    assert runs[0].url.params["created"] == ">=2020-01-22T19:33:08Z"
    assert paths(fake)[-8:-5] == ["/deployments", "/deployments/2/statuses", "/deployments?page=2"]
    assert deployments(duck_store) == DEPLOYMENTS | {
        (
            f"{REPO}/deployments/2",
            "example",
            "production",
            "failure",
            "2012-07-21T09:00:00Z",
            "2012-07-21T09:05:00Z",
            "b" * 40,
            "hotfix",
        )
    }
    assert usage(duck_store) == USAGE


def test_unchanged_poll_is_a_304_and_costs_no_rate_limit(
    duck_store: Store, settings: Settings
) -> None:
    # all runs completed, the one deployment final: nothing holds a cursor; the runs of the
    # re-runs' look-back fit in one page, whose ETag is kept
    pages = [[RUN_A, RUN_B]]
    fake = fake_github(runs=pages)
    fake.pages(f"repos/{REPO}/deployments", [[DEPLOYMENT]])
    sync(duck_store, settings, fake)  # backfill
    sync(duck_store, settings, fake)  # the runs' first page is asked with its new cursor
    fake.requests.clear()
    before = fake.remaining
    result = sync(duck_store, settings, fake)
    # the repository, runs, deployments, incidents, pull requests, the re-runs' look-back
    assert [r.headers.get("if-none-match") is not None for r in fake.requests] == [True] * 6
    assert fake.remaining == before  # every answer was a 304
    assert "unchanged: workflow runs, deployments, incidents, pull requests" in result.summary
    assert usage(duck_store) == USAGE and deployments(duck_store) == DEPLOYMENTS


def test_resume_after_interruption_without_duplicates(
    duck_store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import heatlens.ingest as ingest

    real = ingest.ingest_records
    calls = {"n": 0}

    def dies_on_second_page(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # the runs' second page: killed before it commits
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest, "ingest_records", dies_on_second_page)
    with pytest.raises(KeyboardInterrupt):
        sync(duck_store, settings, fake_github())
    assert usage(duck_store) == {next(u for u in USAGE if u[0] == "2983238245/1")}
    monkeypatch.setattr(ingest, "ingest_records", real)
    fake = fake_github()
    result = sync(duck_store, settings, fake)
    # resumed at page 2: page 1 is not read again
    assert paths(fake)[:3] == ["", "/actions/runs?page=2", "/actions/runs?page=3"]
    assert usage(duck_store) == USAGE
    assert result.counts["usage"].inserted == 1 and result.counts["usage"].updated == 0
    assert len(duck_store.rows("usage")) == 2


def test_re_runs_give_one_usage_per_attempt(duck_store: Store, settings: Settings) -> None:
    # RUN_A re-run: attempt 2 now, attempt 1 (the recorded one, failed) behind it
    rerun = {
        **RUN_A,
        "run_attempt": 2,
        "run_started_at": "2022-09-03T06:00:00Z",
        "updated_at": "2022-09-03T06:01:00Z",
    }
    first = {**RUN_A, "conclusion": "failure"}
    fake = fake_github(runs=[[rerun]])
    fake.routes[(f"repos/{REPO}/actions/runs/2983238245/attempts/1", "1")] = [fake.ok(first)]
    sync(duck_store, settings, fake)
    assert usage(duck_store) == {
        (
            "2983238245/2",
            "2022-09-03T06:00:00Z",
            "panjf2000",
            "ants",
            "success",
            60.0,
            "2983238245",
        ),
        (
            "2983238245/1",
            "2022-09-03T05:15:09Z",
            "panjf2000",
            "ants",
            "failure",
            67.0,
            "2983238245",
        ),
    }


def test_since_starts_a_first_sync_there(duck_store: Store, settings: Settings) -> None:
    fake = fake_github(runs=[[RUN_A], [RUN_B]])
    sync(duck_store, settings, fake, since="2022-09-01")
    first = next(r for r in fake.requests if r.url.path.endswith("/actions/runs"))
    assert first.url.params["created"] == ">=2022-09-01"
    # RUN_B (08-27) is older than --since: its page is read, the run is not
    assert {u[0] for u in usage(duck_store)} == {"2983238245/1"}
    assert deployments(duck_store) == set()  # 2012 is long before


ISSUE = fixture("issues_list-for-repo.json")[0]  # #1347, open, label bug, a pull request's
# an incident written here from it: labelled, closed, with a root cause and a severity
INCIDENT = {
    **{k: v for k, v in copy.deepcopy(ISSUE).items() if k != "pull_request"},
    "labels": [{"name": "incident"}, {"name": "severity: high"}],
    "state": "closed",
    "closed_at": "2011-04-22T15:00:00Z",
    "updated_at": "2011-04-22T15:00:00Z",
    "body": "Checkout down.\n\nroot cause: a84d88e7554fc1fa21bcbc4efae3c782a70d2b9d",
}


def test_incidents_from_labelled_issues_oldest_first(duck_store: Store, settings: Settings) -> None:
    # page 1: the example issue as GitHub gave it (a pull request: left out); page 2: the incident
    fake = fake_github(issues=[[ISSUE], [INCIDENT]])
    sync(duck_store, settings, fake)
    first = next(r for r in fake.requests if r.url.path.endswith("/issues"))
    assert dict(first.url.params) == {
        "state": "all",
        "labels": "incident",
        "sort": "updated",
        "direction": "asc",
        "per_page": "100",
    }
    assert [
        (
            r["id"],
            iso(r["opened_at"]),
            iso(r["resolved_at"]),
            r["service"],
            r["severity"],
            r["root_cause_sha"],
        )
        for r in duck_store.rows("incident")
    ] == [
        (
            f"{REPO}#1347",
            "2011-04-22T13:33:48Z",
            "2011-04-22T15:00:00Z",
            "example",
            "high",
            "a84d88e7554fc1fa21bcbc4efae3c782a70d2b9d",
        )
    ]
    state = duck_store.sync_state(
        state_name(GithubSource((REPO,), base_url=API), REPO, "incidents")
    )
    assert state is not None and state["cursor"] == "2011-04-22T15:00:00Z"
    fake = fake_github()
    sync(duck_store, settings, fake)
    again = next(r for r in fake.requests if r.url.path.endswith("/issues"))
    assert again.url.params["since"] == "2011-04-22T15:00:00Z"


PULL = fixture("pulls_list.json")[0]  # #1347, merged 2011-01-26T19:01:12Z, into Hello-World
OPEN_PULL = {**PULL, "number": 1348, "merged_at": None, "merge_commit_sha": "f" * 40}


def test_merged_pull_requests_give_their_merge_commits_pr_times(
    duck_store: Store, settings: Settings
) -> None:
    fake = fake_github(pulls=[[PULL], [OPEN_PULL]])
    sync(duck_store, settings, fake)
    # a closed, unmerged PR is no change; the merged one: its merge commit, service of its base
    assert [
        (r["id"], iso(r["pr_opened_at"]), iso(r["merged_at"]), r["service"], r["repo"])
        for r in duck_store.rows("change")
    ] == [
        (
            "e5bd3914e2e596debea16f433f57875b5b90bcd6",
            "2011-01-26T19:01:12Z",
            "2011-01-26T19:01:12Z",
            "Hello-World",
            "octocat/Hello-World",
        )
    ]
    first = next(r for r in fake.requests if r.url.path.endswith("/pulls"))
    assert dict(first.url.params) == {
        "state": "closed",
        "sort": "updated",
        "direction": "desc",
        "per_page": "100",
    }


def test_published_releases_as_deployments(duck_store: Store, settings: Settings) -> None:
    # v1.0.0 targets `master`: its commit is asked by tag (the get-commit example answers)
    release = fixture("repos_list-releases.json")[0]
    draft = {**release, "id": 2, "tag_name": "v1.1.0-draft", "draft": True}
    fake = fake_github()
    fake.pages(f"repos/{REPO}/releases", [[draft, release]])
    tag = f"repos/{REPO}/commits/v1.0.0"
    fake.routes[(tag, "1")] = [fake.ok(fixture("repos_get-commit.json"))]
    sync(duck_store, settings, fake, deploy_releases=True, environment="prod")
    assert deployments(duck_store) == {
        (
            "example@v1.0.0",
            "example",
            "prod",
            "success",
            None,
            "2013-02-27T19:35:32Z",
            "6dcb09b5b57875f334f61aebed695e2e4193db5e",
            None,
        )
    }
    assert not any(r.url.path.endswith("/deployments") for r in fake.requests)


def test_runs_of_a_deploy_workflow_as_deployments(duck_store: Store, settings: Settings) -> None:
    # RUN_A and RUN_B are runs of CodeQL (.github/workflows/codeql.yml): named by its file
    fake = fake_github(runs=[[RUN_A, RUN_B]])
    sync(duck_store, settings, fake, deploy_workflows=("codeql.yml",))
    assert deployments(duck_store) == {
        (
            f"{REPO}/actions/runs/2983238245/1",
            "ants",
            "production",
            "success",
            "2022-09-03T05:15:09Z",
            "2022-09-03T05:16:16Z",
            "06e6934c35c336b1a2bd3005fb21dc3914a45747",
            None,
        ),
        (
            f"{REPO}/actions/runs/2938072864/1",
            "ants",
            "production",
            "success",
            "2022-08-27T05:13:50Z",
            "2022-08-27T05:15:06Z",
            "06e6934c35c336b1a2bd3005fb21dc3914a45747",
            None,
        ),
    }
    assert usage(duck_store) == USAGE  # the runs are CI usage all the same
    # both deployed the same commit: the later one ships nothing new, nothing is compared
    assert not any("/compare/" in r.url.path for r in fake.requests)
    with pytest.raises(ConfigError, match="not both"):
        GithubSource((REPO,), deploy_workflows=("deploy",), deploy_releases=True)


def test_teams_and_the_owner_of_the_repository(duck_store: Store, settings: Settings) -> None:
    # the example team (admin), and one with push written here: the admin team owns the service
    league = fixture("teams_list.json")[0]
    writers = {**league, "id": 2, "slug": "writers", "name": "Writers", "permission": "push"}
    writers["parent"] = {**league, "parent": None}
    fake = fake_github()
    fake.pages(f"repos/{REPO}/teams", [[writers], [league]])
    result = sync(duck_store, settings, fake, teams=True)
    assert {(r["id"], r["name"], r["parent"]) for r in duck_store.rows("team")} == {
        ("justice-league", "Justice League", None),
        ("writers", "Writers", "justice-league"),
    }
    assert [(r["id"], r["team"], r["repo"]) for r in duck_store.rows("service")] == [
        ("example", "justice-league", REPO)
    ]
    assert "2 teams" in result.summary
    # a token that may not read teams: a warning, the rest synced
    fake = fake_github()
    fake.routes[(f"repos/{REPO}/teams", "1")] = [
        httpx.Response(403, json={"message": "Must have admin rights to Repository."})
    ]
    with Store.open(str(duck_store.url) + ".2.duckdb") as other:
        result = sync(other, settings, fake, teams=True)
        assert usage(other) == USAGE
    assert result.warnings == [
        f"{REPO}: teams not read (GitHub answered 403): the token needs `read:org` (classic) or "
        "the organization's Members read permission (fine-grained); owners unchanged"
    ]


def test_org_reads_its_repositories(duck_store: Store, settings: Settings) -> None:
    # the org lists three: one archived and one fork are left out (written here)
    listed = [
        {"full_name": REPO, "archived": False, "fork": False},
        {"full_name": "octocat/old", "archived": True, "fork": False},
        {"full_name": "octocat/copy", "archived": False, "fork": True},
    ]
    fake = fake_github()
    fake.pages("orgs/octocat/repos", [listed[:2], listed[2:]])
    result = sync_github(
        duck_store,
        settings,
        GithubSource((), TOKEN, API, orgs=("octocat",)),
        transport=httpx.MockTransport(fake),
        clock=FakeClock(NOW),
    )
    assert result.summary.startswith("1 repository read: 3 workflow runs")
    assert usage(duck_store) == USAGE
    fake = fake_github()
    with pytest.raises(
        ConnectorError, match=r"organization nobody \(orgs/nobody/repos\): not found"
    ):
        sync_github(
            duck_store,
            settings,
            GithubSource((), TOKEN, API, orgs=("nobody",)),
            transport=httpx.MockTransport(fake),
            clock=FakeClock(NOW),
        )


COMPARE = fixture("repos_compare-commits.json")  # one commit, 6dcb09b…, "Fix all the bugs"


def test_a_deployment_ships_the_commits_since_the_one_before(
    duck_store: Store, settings: Settings
) -> None:
    head = COMPARE["commits"][0]["sha"]
    later = {**DEPLOYMENT_2, "id": 3, "sha": head, "created_at": "2012-07-21T10:00:00Z"}
    done = [{**STATUSES[0], "updated_at": "2012-07-21T10:05:00Z"}]
    fake = fake_github()
    fake.pages(f"repos/{REPO}/deployments", [[later, DEPLOYMENT]])
    fake.routes[(f"repos/{REPO}/deployments/3/statuses", "1")] = [fake.ok(done)]
    compare = f"repos/{REPO}/compare/{DEPLOYMENT['sha']}...{head}"
    fake.routes[(compare, "1")] = [fake.ok(COMPARE)]
    sync(duck_store, settings, fake)
    changes = [
        (r["id"], iso(r["committed_at"]), r["author"], r["title"], r["service"], r["repo"])
        for r in duck_store.rows("change")
    ]
    assert changes == [
        (head, "2011-04-14T16:00:49Z", "octocat", "Fix all the bugs", "example", REPO)
    ]
    shipped = {r["id"]: r["commits"] for r in duck_store.rows("deployment")}
    # the first deployment seen ships only its commit_sha (no `commits`)
    assert shipped == {f"{REPO}/deployments/1": None, f"{REPO}/deployments/3": [head]}
    [deployment] = [r for r in duck_store.rows("deployment") if r["id"].endswith("/3")]
    assert (iso(deployment["finished_at"]), deployment["kind"]) == (
        "2012-07-21T10:05:00Z",
        "hotfix",
    )
    # compared once: a second sync does not ask again
    fake.requests.clear()
    sync(duck_store, settings, fake)
    assert not any("/compare/" in r.url.path for r in fake.requests)


# -- rate limits, retries, errors ---------------------------------------------------------------


def runs_route(fake: FakeGithub) -> list[Answer]:
    return fake.routes[(f"repos/{REPO}/actions/runs", "1")]


def test_secondary_rate_limit_then_success(duck_store: Store, settings: Settings) -> None:
    fake = fake_github()
    secondary = httpx.Response(
        403,
        json={"message": "You have exceeded a secondary rate limit. Please wait a few minutes."},
        headers={"retry-after": "30"},
    )
    runs_route(fake).insert(0, secondary)
    clock = FakeClock(NOW)
    sync(duck_store, settings, fake, clock)
    assert clock.slept == [30.0]
    assert usage(duck_store) == USAGE


def test_secondary_limit_without_retry_after_waits_a_minute_then_longer(
    duck_store: Store, settings: Settings
) -> None:
    fake = fake_github()
    limited = httpx.Response(403, json={"message": "You have exceeded a secondary rate limit."})
    runs_route(fake)[:0] = [limited, limited]
    clock = FakeClock(NOW)
    sync(duck_store, settings, fake, clock)
    assert clock.slept == [60.0, 120.0]


def test_primary_limit_waits_for_the_reset(duck_store: Store, settings: Settings) -> None:
    fake = fake_github()
    reset = int(NOW.timestamp()) + 120
    spent = httpx.Response(
        403,
        json={"message": "API rate limit exceeded for user ID 1."},
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
    )
    runs_route(fake).insert(0, spent)
    clock = FakeClock(NOW)
    sync(duck_store, settings, fake, clock)
    assert clock.slept == [121.0]  # until the reset, and a second for the clocks' difference


def test_rate_limit_exhausted_for_long_says_until_when(
    duck_store: Store, settings: Settings
) -> None:
    fake = fake_github()
    reset = int(datetime(2012, 7, 22, 3, 5, tzinfo=UTC).timestamp())  # 3 h 5 min away
    spent = httpx.Response(
        429,
        json={"message": "API rate limit exceeded"},
        headers={
            "x-ratelimit-remaining": "0",
            "x-ratelimit-limit": "5000",
            "x-ratelimit-reset": str(reset),
        },
    )
    runs_route(fake).insert(0, spent)
    clock = FakeClock(NOW)
    with pytest.raises(RateLimited) as raised:
        sync(duck_store, settings, fake, clock)
    message = str(raised.value)
    assert "rate limit exhausted until 03:05 UTC" in message
    assert "0/5,000 left" in message and "run the sync again" in message
    assert "\n" not in message and clock.slept == []


def test_502_is_retried(duck_store: Store, settings: Settings) -> None:
    fake = fake_github()
    runs_route(fake).insert(0, httpx.Response(502, text="Bad Gateway"))
    clock = FakeClock(NOW)
    sync(duck_store, settings, fake, clock)
    assert clock.slept == [1.0]
    assert usage(duck_store) == USAGE


def test_network_errors_are_retried_then_reported(settings: Settings) -> None:
    calls = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:  # the server answered once: later failures are the network's
            return httpx.Response(200, json={"full_name": "x/y"})
        raise httpx.ConnectError(f"connection refused to {request.url} with {TOKEN}")

    vendor = Vendor("GitHub")
    clock = FakeClock(NOW)
    client = make_client(
        API,
        TOKEN,
        vendor,
        transport=httpx.MockTransport(down),
        clock=clock,
        retry=RetryPolicy(attempts=3),
    )
    client.get("repos/x/y", what="repository x/y")
    with pytest.raises(ConnectorError) as raised:
        client.get("repos/x/y/actions/runs", what="workflow runs")
    # 1 answer, then 3 tries of the second request with waits of 1 and 2 s
    assert len(calls) == 4 and clock.slept == [1.0, 2.0]
    assert TOKEN not in str(raised.value) and "***" in str(raised.value)
    assert "check the network and --base-url" in str(raised.value)


def test_a_server_never_reached_is_reported_after_one_retry(settings: Settings) -> None:
    calls = []

    def nowhere(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("[Errno 111] Connection refused")

    clock = FakeClock(NOW)
    client = make_client(
        API, TOKEN, Vendor("GitHub"), transport=httpx.MockTransport(nowhere), clock=clock
    )
    with pytest.raises(ConnectorError) as raised:
        client.get("repos/x/y", what="repository x/y")
    # a wrong --base-url: 2 tries and one wait of 1 s, not 6 tries and 31 s of backoff
    assert len(calls) == 2 and clock.slept == [1.0]
    assert "after 2 tries; check the network and --base-url" in str(raised.value)


def test_bad_token_is_one_clear_line_without_the_token(
    duck_store: Store, settings: Settings
) -> None:
    fake = fake_github()
    fake.routes[(f"repos/{REPO}", "1")] = [
        httpx.Response(401, json={"message": f"Bad credentials ({TOKEN})"})
    ]
    with pytest.raises(ConnectorError) as raised:
        sync(duck_store, settings, fake)
    message = str(raised.value)
    assert message == (
        "GitHub rejected the token (401 Bad credentials (***)) while reading repository "
        f"{REPO}: check --token or GITHUB_TOKEN — it may be mistyped, expired or revoked"
    )


def test_missing_scope_and_unknown_repository(duck_store: Store, settings: Settings) -> None:
    fake = fake_github()
    runs_route(fake).insert(
        0,
        httpx.Response(
            403,
            json={"message": "Resource not accessible by personal access token"},
            headers={"x-accepted-github-permissions": "actions=read"},
        ),
    )
    with pytest.raises(ConnectorError, match=r"lacks a scope — this needs actions=read"):
        sync(duck_store, settings, fake)
    fake = fake_github()
    del fake.routes[(f"repos/{REPO}", "1")]
    with pytest.raises(ConnectorError, match=rf"repository {REPO}: not found \(404\)"):
        sync(duck_store, settings, fake)


def test_source_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="OWNER/NAME"):
        GithubSource(("octocat",))
    with pytest.raises(ConfigError, match="--repo OWNER/NAME or --org ORG"):
        GithubSource(())
    with pytest.raises(ConfigError, match="ISO date"):
        GithubSource((REPO,), since="last week")


# -- the framework's paginators -----------------------------------------------------------------


def test_link_header_loop_is_an_error(duck_store: Store, settings: Settings) -> None:
    fake = fake_github()
    loop = fake.ok(
        {"total_count": 1, "workflow_runs": [RUN_A]},
        {"link": f'<{API}/repos/{REPO}/actions/runs?per_page=100&page=2>; rel="next"'},
    )
    fake.routes[(f"repos/{REPO}/actions/runs", "2")] = [
        fake.ok(
            {"total_count": 1, "workflow_runs": [RUN_A]},
            {"link": f'<{API}/repos/{REPO}/actions/runs?per_page=100&page=2>; rel="next"'},
        )
    ]
    runs_route(fake)[:] = [loop]
    with pytest.raises(ConnectorError, match="paging in a loop"):
        sync(duck_store, settings, fake)


def _walk(stream: Stream, handler: Callable[[httpx.Request], httpx.Response]) -> list[Any]:
    seen: list[Any] = []
    client = make_client(
        API, None, Vendor("Test"), transport=httpx.MockTransport(handler), clock=FakeClock(NOW)
    )
    read_stream(client, stream, None, lambda records, state: seen.extend(records))
    return seen


def test_next_page_header_paginator() -> None:
    # GitLab's offset pagination: X-Next-Page until the last page, where it is empty
    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        return httpx.Response(
            200, json=[{"id": page}], headers={"x-next-page": str(page + 1) if page < 3 else ""}
        )

    stream = Stream(
        "items", "items", map=lambda item: [item], paginator=NextPageHeader(), cursor_field=None
    )
    assert _walk(stream, handler) == [{"id": 1}, {"id": 2}, {"id": 3}]


def test_offset_more_paginator() -> None:
    # PagerDuty: offset/limit, and `more` in the body
    def handler(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params.get("offset", "0"))
        items = [{"id": offset + i} for i in range(2)] if offset < 4 else [{"id": 4}]
        return httpx.Response(200, json={"incidents": items, "more": offset < 4})

    stream = Stream(
        "incidents",
        "incidents",
        map=lambda item: [item],
        paginator=OffsetMore(limit=2),
        items_key="incidents",
        cursor_field=None,
    )
    assert [r["id"] for r in _walk(stream, handler)] == [0, 1, 2, 3, 4]
    assert PageRequest("x", {"a": 1}).key() == PageRequest("x", {"a": 1}).key()


# -- [[sync]] entries ---------------------------------------------------------------------------


def test_sync_entry_runs_against_a_local_github_holding_the_store_only_to_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from heatlens.connectors.schedule import Scheduler, parse_sync_jobs
    from heatlens.settings import load_settings
    from tests.test_connector_github_crash import RUN_PAGES, RUNS_PER_PAGE, FakeGithub

    server = FakeGithub()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        entry = {"kind": "github", "repo": [REPO], "base_url": server.base, "every": "1h"}
        settings = load_settings(config=None, environ={}, overrides={"sync": [entry]})
        [job] = parse_sync_jobs(settings)
        assert (job.name, job.kind, job.every.total_seconds()) == (f"github:{REPO}", "github", 3600)
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        with Store.open(str(tmp_path / "s.duckdb")) as store:
            held: list[int] = []

            def with_store(fn: Callable[[Store], Any]) -> Any:
                # the server's writer: no request to GitHub while a sync holds it
                before = server.count
                try:
                    return fn(store)
                finally:
                    held.append(server.count - before)

            [status] = Scheduler([job], with_store).run_due(NOW)
            assert status.ok, status.summary
            assert len(store.rows("usage")) == RUN_PAGES * RUNS_PER_PAGE
            assert len(held) > RUN_PAGES and set(held) == {0}
            assert store.sync_state(f"schedule:github:{REPO}") is not None
    finally:
        server.shutdown()
        server.server_close()


def test_bad_github_sync_entry_names_the_entry() -> None:
    from heatlens.connectors.schedule import parse_sync_jobs
    from heatlens.settings import load_settings

    entry = {"kind": "github", "repo": "octocat"}
    settings = load_settings(config=None, environ={}, overrides={"sync": [entry]})
    with pytest.raises(ConfigError, match=r"^sync\[0\]: --repo 'octocat': expected OWNER/NAME"):
        parse_sync_jobs(settings)


def test_cli_sync_github_against_a_local_github(tmp_path: Path) -> None:
    import threading

    from tests.conftest import Cli
    from tests.test_connector_github_crash import FakeGithub

    server = FakeGithub()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    run = Cli(tmp_path)
    store = str(tmp_path / "s.duckdb")
    try:
        args = ["--store", store, "sync", "github", "--repo", REPO, "--base-url", server.base]
        done = run(*args, "--token", "ghp_ok")
        assert done.exit_code == 0, done.output
        # 60 runs over 12 pages, read again by the look-back for re-runs (12 requests more), 12
        # deployments (11 compared with the one before), no issues or pull requests
        assert (
            "sync:github: 1 repository read: 60 workflow runs, 12 deployments, 0 incidents, "
            "0 pull requests; 11 deployments compared with the one before (54 requests)"
        ) in done.output
        refused = run(*args, "--token", "ghp_revoked")
        assert refused.exit_code == 2
        assert (
            "GitHub rejected the token (401 Bad credentials) while reading repository "
            f"{REPO}: check --token or GITHUB_TOKEN"
        ) in refused.output
        assert "ghp_revoked" not in refused.output
    finally:
        server.shutdown()
        server.server_close()


def test_github_sync_entry_chooses_where_deployments_come_from() -> None:
    from heatlens.connectors.schedule import parse_sync_jobs
    from heatlens.settings import load_settings

    both = {
        "kind": "github",
        "repo": REPO,
        "deploy_workflows": "deploy.yml",
        "deploy_releases": True,
    }
    settings = load_settings(config=None, environ={}, overrides={"sync": [both]})
    with pytest.raises(ConfigError, match=r"^sync\[0\]: deployments come from --deploy-workflow"):
        parse_sync_jobs(settings)
    flag = {"kind": "github", "repo": REPO, "deploy_releases": "yes"}
    settings = load_settings(config=None, environ={}, overrides={"sync": [flag]})
    with pytest.raises(ConfigError, match=r"sync\[0\]\.deploy_releases: expected a bool"):
        parse_sync_jobs(settings)
