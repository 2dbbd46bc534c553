"""`heatlens sync gitlab` against a fake GitLab (an httpx transport, no network) replaying the
example responses of GitLab's API docs and DevLake's recorded deployments
(tests/fixtures/rest/gitlab, see SOURCE.txt: CC BY-SA 4.0 / Apache-2.0), spread over pages linked
by `X-Next-Page`. Where a documented example lacks what a test needs (the docs' deployments are
`created`, their pipelines `pending`), a copy is changed here and the change is named; the records
expected were written by hand from those responses."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from heatlens.connectors.gitlab.sync import (
    GitlabSource,
    environment_of,
    state_name,
    sync_gitlab,
)
from heatlens.errors import ConfigError, ConnectorError
from heatlens.settings import Settings, load_settings
from heatlens.store import Store

REST = Path(__file__).parent / "fixtures" / "rest" / "gitlab"
API = "https://gitlab.test/api/v4"
PATH = "acme/shop"
PID = 3
TOKEN = "glpat-s3cr3tT0ken"


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


class FakeGitlab:
    """Routes (path, page) → answers in turn (the last one repeats); list pages name the next in
    `X-Next-Page` (empty on the last), as GitLab's offset pagination does."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Answer]] = {}
        self.requests: list[httpx.Request] = []

    def pages(self, path: str, bodies: list[Any]) -> None:
        for n, body in enumerate(bodies, 1):
            nxt = str(n + 1) if n < len(bodies) else ""
            self.routes[(path, str(n))] = [self.ok(body, {"x-next-page": nxt, "x-page": str(n)})]

    def ok(self, data: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.Response(200, json=data, headers=headers or {})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.url.host == "gitlab.test"
        assert request.headers["private-token"] == TOKEN
        path = request.url.raw_path.decode().split("?")[0].removeprefix("/api/v4/")
        key = path
        # the two issue streams differ by query only
        if path.endswith("/issues") and "issue_type" in request.url.params:
            key = path + "?incident"
        answers = self.routes.get((key, request.url.params.get("page", "1")))
        if answers is None:
            return httpx.Response(404, json={"message": "404 Not Found"})
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        response = answer(request) if callable(answer) else answer
        response.headers.setdefault("ratelimit-limit", "2000")
        response.headers.setdefault("ratelimit-remaining", "1999")
        return httpx.Response(
            response.status_code, headers=response.headers, content=response.content
        )


# -- the replayed responses ---------------------------------------------------------------------

DOC_DEPLOYMENTS = fixture("deployments_list-project-deployments.json")  # ids 41, 42: "created"
DEVLAKE_DEPLOYMENT = fixture("devlake_raw_deployments_sample.json")[0]  # success, to staging
# changed here: the docs' two deployments finished (success); 42's job finish time written in
# GitLab's spaced format, the same instant as the doc's "2016-08-11T11:32:35.145Z"
DEP_41 = {**copy.deepcopy(DOC_DEPLOYMENTS[0]), "status": "success"}
DEP_42 = {**copy.deepcopy(DOC_DEPLOYMENTS[1]), "status": "success"}
DEP_42["deployable"]["finished_at"] = "2016-08-11 13:32:35.145 +0200"
ENVIRONMENTS = [  # written here: GitLab's environment objects carry `tier`
    {"id": 9, "name": "production", "tier": "production"},
    {"id": 585637, "name": "staging", "tier": "staging"},
]
COMMITS = fixture("commits_list-repository-commits.json")  # ed899a2f…, 61049424…
MERGE_REQUEST = fixture("merge_requests_list-project-merge-requests.json")[0]  # fast-forward
ISSUE = fixture("issues_list-project-issues.json")[0]  # iid 1, closed
# changed here: labelled as an incident with a scoped severity
LABELLED = {**copy.deepcopy(ISSUE), "labels": ["incident", "severity::2"]}
# an issue of GitLab's incident type (newer API fields), open, written from the doc's issue
TYPED = {
    **copy.deepcopy(ISSUE),
    "id": 42,
    "iid": 2,
    "labels": [],
    "state": "opened",
    "closed_at": None,
    "issue_type": "incident",
    "severity": "CRITICAL",
    "created_at": "2016-01-06T09:00:00.000Z",
    "updated_at": "2016-01-06T09:00:00.000Z",
}
PIPELINES = fixture("pipelines_list-project-pipelines.json")  # 47, 48: pending
PIPELINE_287 = fixture("pipelines_get-a-single-pipeline.json")  # success, 34 s, root
# changed here: the list's first pipeline is 287 and finished; 48 stays pending (skipped)
LISTED = [{**copy.deepcopy(PIPELINES[0]), "id": 287, "status": "success"}, PIPELINES[1]]
JOBS_287 = [  # written here: `test` failed, was retried and passed; `build` ran once
    {"id": 1, "name": "test", "status": "failed", "created_at": "2022-09-21T01:05:07.300Z"},
    {"id": 2, "name": "build", "status": "success", "created_at": "2022-09-21T01:05:07.300Z"},
    {"id": 3, "name": "test", "status": "success", "created_at": "2022-09-21T01:05:30.000Z"},
]
NOW = datetime(2023, 1, 1, tzinfo=UTC)


def fake_gitlab(
    deployments: list[list[Any]] | None = None,
    merge_requests: list[list[Any]] | None = None,
) -> FakeGitlab:
    fake = FakeGitlab()
    base = f"projects/{PID}"
    fake.routes[("projects/acme%2Fshop", "1")] = [
        fake.ok({"id": PID, "path_with_namespace": PATH, "default_branch": "main"})
    ]
    fake.pages(f"{base}/environments", [ENVIRONMENTS])
    fake.pages(f"{base}/deployments", deployments or [[DEP_41, DEP_42], [DEVLAKE_DEPLOYMENT]])
    fake.pages(f"{base}/merge_requests", merge_requests or [[MERGE_REQUEST]])
    fake.pages(f"{base}/pipelines", [LISTED])
    fake.routes[(f"{base}/pipelines/287", "1")] = [fake.ok(PIPELINE_287)]
    fake.pages(f"{base}/pipelines/287/jobs", [JOBS_287[:2], JOBS_287[2:]])
    fake.pages(f"{base}/issues", [[LABELLED]])
    fake.pages(f"{base}/issues?incident", [[TYPED]])
    fake.routes[(f"{base}/repository/compare", "1")] = [
        fake.ok({"commit": COMMITS[0], "commits": COMMITS, "diffs": [], "compare_timeout": False})
    ]
    return fake


def utc(value: Any) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else str(value)


def rows(store: Store, type_name: str, *fields: str) -> set[tuple[Any, ...]]:
    return {
        tuple(
            utc(r[f])
            if isinstance(r[f], datetime)
            else tuple(r[f])
            if isinstance(r[f], list)
            else r[f]
            for f in fields
        )
        for r in store.rows(type_name)
    }


def sync(store: Store, settings: Settings, fake: FakeGitlab, clock: FakeClock | None = None) -> Any:
    return sync_gitlab(
        store,
        settings,
        GitlabSource((PATH,), TOKEN, API),
        transport=httpx.MockTransport(fake),
        clock=clock or FakeClock(NOW),
    )


def paths(fake: FakeGitlab) -> list[str]:
    out = []
    for r in fake.requests:
        path = r.url.raw_path.decode().split("?")[0].removeprefix(f"/api/v4/projects/{PID}")
        page = r.url.params.get("page")
        out.append(path + (f"?page={page}" if page else ""))
    return out


SHA_41 = "99d03678b90d914dbb1b109132516d71a4a03ea8"
SHA_42 = "a91957a858320c0e17f3a0eca7cfacbff50ea29a"
SHA_DEVLAKE = "add237f6852e6108ee8e0246780a54ce909c6087"
# (id, service, environment, result, finished_at, commit_sha, commits), by hand
DEPLOYMENTS = {
    (
        f"{PATH}/deployments/41",
        "shop",
        "production",
        "success",
        "2016-08-11T07:36:39.851000+00:00",
        SHA_41,
        (SHA_41,),  # the first deployment ships only its own sha
    ),
    (
        f"{PATH}/deployments/42",
        "shop",
        "production",
        "success",
        "2016-08-11T11:32:35.145000+00:00",
        SHA_42,
        # the compare answer's commits, in its order
        ("ed899a2f4b50b4370feeea94676502b42383c746", "6104942438c14ec7bd21c6cd5bd995272b3faff6"),
    ),
    (
        f"{PATH}/deployments/13426753",
        "shop",
        "staging",
        "success",
        "2019-03-13T14:17:47.640000+00:00",  # its job's finished_at
        SHA_DEVLAKE,
        (SHA_DEVLAKE,),
    ),
}
# (id, committed_at, authored_at, author, title, pr_opened_at, merged_at)
CHANGES = {
    (
        "ed899a2f4b50b4370feeea94676502b42383c746",
        "2012-09-20T08:50:22+00:00",
        "2012-09-20T08:50:22+00:00",
        "Dmitriy Zaporozhets",
        "Replace sanitize with escape once",
        None,
        None,
    ),
    (
        "6104942438c14ec7bd21c6cd5bd995272b3faff6",
        "2012-09-20T06:06:12+00:00",  # no committed_date: its created_at
        None,
        "randx",
        "Sanitize for network graph",
        None,
        None,
    ),
    (  # the fast-forward merge request: its head sha, committed_at = merged_at until read
        "8888888888888888888888888888888888888888",
        "2018-09-07T11:16:17.520000+00:00",
        None,
        None,
        None,
        "2017-04-29T08:46:00+00:00",
        "2018-09-07T11:16:17.520000+00:00",
    ),
}
# (id, ts, outcome, duration_s, actor, run, attempt)
USAGE = {
    ("287/1", "2022-09-21T01:05:07.200000+00:00", "failure", None, "root", "287", 1),
    ("287", "2022-09-21T01:05:07.200000+00:00", "success", 34.0, "root", "287", 2),
}
# (id, opened_at, resolved_at, severity, service)
INCIDENTS = {
    (
        f"{PATH}#1",
        "2016-01-04T15:31:46.176000+00:00",
        "2016-01-05T15:31:46.176000+00:00",
        "2",
        "shop",
    ),
    (f"{PATH}#2", "2016-01-06T09:00:00+00:00", None, "critical", "shop"),
}


def usage(store: Store) -> set[tuple[Any, ...]]:
    return {
        (
            r["id"],
            utc(r["ts"]),
            r["outcome"],
            None if r["duration_s"] is None else float(r["duration_s"]),
            r["actor"],
            r["run"],
            r["attempt"],
        )
        for r in store.rows("usage")
    }


def test_backfill_reads_every_stream_into_records(duck_store: Store, settings: Settings) -> None:
    fake = fake_gitlab()
    clock = FakeClock(NOW)
    result = sync(duck_store, settings, fake, clock)
    assert (
        rows(
            duck_store,
            "deployment",
            "id",
            "service",
            "environment",
            "result",
            "finished_at",
            "commit_sha",
            "commits",
        )
        == DEPLOYMENTS
    )
    fields = ("id", "committed_at", "authored_at", "author", "title", "pr_opened_at", "merged_at")
    assert {r[:5] + r[6:] for r in rows(duck_store, "change", *fields)} == {
        c[:5] + c[6:] for c in CHANGES
    }
    assert usage(duck_store) == USAGE
    assert {r["capability"] for r in duck_store.rows("usage")} == {"ci"}
    assert rows(
        duck_store, "incident", "id", "opened_at", "resolved_at", "severity", "service"
    ) == (INCIDENTS)
    assert paths(fake) == [
        "/api/v4/projects/acme%2Fshop",
        "/environments",
        "/deployments",
        "/deployments?page=2",
        "/merge_requests",
        "/pipelines",
        "/pipelines/287",
        "/pipelines/287/jobs",
        "/pipelines/287/jobs?page=2",
        "/issues",
        "/issues",
        "/repository/compare",
    ]
    compare = fake.requests[-1].url.params
    assert (compare["from"], compare["to"]) == (SHA_41, SHA_42)
    assert clock.slept == []
    assert result.summary == (
        "1 project: 3 deployments, 1 merge requests, 2 pipelines, 1 incidents, "
        "1 incident issues, 1 deployments compared (12 request(s))"
    )
    # each stream's cursor is the last update read, committed with its records
    state = duck_store.sync_state(
        state_name(GitlabSource((PATH,), base_url=API), PATH, "pipelines")
    )
    assert state is not None and state["cursor"] == "2016-08-12T10:09:56.223Z"
    assert not state.get("resume")


def test_merge_request_pr_times_keep_a_commits_own_time(
    duck_store: Store, settings: Settings
) -> None:
    sync(duck_store, settings, fake_gitlab())
    # later: a merge request merged as commit ed899a2f… (already read from the compare API)
    merged = {
        **copy.deepcopy(MERGE_REQUEST),
        "iid": 2,
        "merge_commit_sha": "ed899a2f4b50b4370feeea94676502b42383c746",
        "updated_at": "2018-09-08T00:00:00Z",
    }
    fake = fake_gitlab(merge_requests=[[merged]])
    sync(duck_store, settings, fake)
    [row] = [r for r in duck_store.rows("change") if r["id"].startswith("ed899a2f")]
    # its commit time and author stay; the PR times are added
    assert utc(row["committed_at"]) == "2012-09-20T08:50:22+00:00"
    assert row["author"] == "Dmitriy Zaporozhets"
    assert utc(row["pr_opened_at"]) == "2017-04-29T08:46:00+00:00"
    assert utc(row["merged_at"]) == "2018-09-07T11:16:17.520000+00:00"
    # the second sync asked from the cursors: every list with updated_after
    lists = [r for r in fake.requests if r.url.path.endswith(("/deployments", "/pipelines"))]
    assert {r.url.params.get("updated_after") for r in lists} == {
        "2019-03-13T14:17:47.647Z",
        "2016-08-12T10:09:56.223Z",
    }


def test_second_sync_compares_only_new_deployments(duck_store: Store, settings: Settings) -> None:
    sync(duck_store, settings, fake_gitlab())
    fake = fake_gitlab(deployments=[[DEVLAKE_DEPLOYMENT]])
    sync(duck_store, settings, fake)
    assert "/repository/compare" not in paths(fake)


def test_gitlab_tier_decides_production_unless_the_setting_says_otherwise() -> None:
    default = ["production", "prod"]
    assert environment_of("production", "production", default) == "production"
    assert environment_of("live", "production", default) == "production"
    assert environment_of("prod", "staging", default) == "prod (staging tier)"
    assert environment_of("staging", "staging", default) == "staging"
    assert environment_of("live", None, default) == "live"  # no tier known: the name
    # production_environments set: the names decide, recorded as they are
    assert environment_of("live", "production", ["prod-*"]) == "live"
    assert environment_of("prod-eu", "staging", ["prod-*"]) == "prod-eu"


def test_tier_from_the_environments_api(duck_store: Store, settings: Settings) -> None:
    live = {**copy.deepcopy(DEP_41), "environment": {"id": 10, "name": "live"}}
    fake = fake_gitlab(deployments=[[live]])
    fake.pages(f"projects/{PID}/environments", [[{"id": 10, "name": "live", "tier": "production"}]])
    sync(duck_store, settings, fake)
    assert [r["environment"] for r in duck_store.rows("deployment")] == ["production"]
    custom = load_settings(config=None, environ={}, overrides={"production_environments": ["x"]})
    other = Store.open(":memory:")
    with other:
        fake = fake_gitlab(deployments=[[live]])
        fake.pages(
            f"projects/{PID}/environments", [[{"id": 10, "name": "live", "tier": "production"}]]
        )
        sync(other, custom, fake)
        assert [r["environment"] for r in other.rows("deployment")] == ["live"]


def test_429_then_success_waits_what_retry_after_says(
    duck_store: Store, settings: Settings
) -> None:
    fake = fake_gitlab()
    key = (f"projects/{PID}/deployments", "1")
    fake.routes[key] = [
        httpx.Response(429, headers={"retry-after": "7"}, json={"message": "Retry later"}),
        *fake.routes[key],
    ]
    clock = FakeClock(NOW)
    sync(duck_store, settings, fake, clock)
    assert clock.slept == [7.0]
    assert len(duck_store.rows("deployment")) == 3


def test_5xx_is_retried(duck_store: Store, settings: Settings) -> None:
    fake = fake_gitlab()
    key = (f"projects/{PID}/pipelines", "1")
    fake.routes[key] = [httpx.Response(502, text="Bad Gateway"), *fake.routes[key]]
    clock = FakeClock(NOW)
    sync(duck_store, settings, fake, clock)
    assert clock.slept == [1.0]
    assert usage(duck_store) == USAGE


def test_bad_token_is_one_clear_line_without_the_token(
    duck_store: Store, settings: Settings
) -> None:
    fake = fake_gitlab()
    fake.routes[("projects/acme%2Fshop", "1")] = [
        httpx.Response(401, json={"message": f"401 Unauthorized {TOKEN}"})
    ]
    with pytest.raises(ConnectorError) as raised:
        sync(duck_store, settings, fake)
    assert str(raised.value) == (
        "GitLab rejected the token (401 Unauthorized ***) while reading project acme/shop: "
        "check --token or GITLAB_TOKEN — it may be mistyped, expired or revoked"
    )


def test_next_page_loop_is_an_error(duck_store: Store, settings: Settings) -> None:
    fake = fake_gitlab()
    # page 2 says its next page is 2 again
    fake.routes[(f"projects/{PID}/deployments", "2")] = [
        fake.ok([DEVLAKE_DEPLOYMENT], {"x-next-page": "2"})
    ]
    with pytest.raises(ConnectorError, match="came back again after 2 page"):
        sync(duck_store, settings, fake)


def test_resume_after_interruption_without_duplicates(
    duck_store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import heatlens.ingest as ingest

    real = ingest.ingest_records
    calls = {"n": 0}

    def dies_on_second_page(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # the deployments' second page: killed before it commits
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest, "ingest_records", dies_on_second_page)
    with pytest.raises(KeyboardInterrupt):
        sync(duck_store, settings, fake_gitlab())
    assert {r["id"] for r in duck_store.rows("deployment")} == {
        f"{PATH}/deployments/41",
        f"{PATH}/deployments/42",
    }
    monkeypatch.setattr(ingest, "ingest_records", real)
    fake = fake_gitlab()
    result = sync(duck_store, settings, fake)
    # resumed at page 2: page 1 is not read again
    assert paths(fake)[1:3] == ["/environments", "/deployments?page=2"]
    assert result.counts["deployment"].inserted == 1
    assert len(duck_store.rows("deployment")) == 3


def test_group_lists_its_projects_by_link_header(duck_store: Store, settings: Settings) -> None:
    fake = fake_gitlab()
    other = {"id": 4, "path_with_namespace": "acme/archived", "archived": True}
    shop = {"id": PID, "path_with_namespace": PATH, "archived": False}
    link = f'<{API}/groups/acme/projects?page=2&per_page=100>; rel="next"'
    fake.routes[("groups/acme/projects", "1")] = [fake.ok([other], {"link": link})]
    fake.routes[("groups/acme/projects", "2")] = [fake.ok([shop])]
    result = sync_gitlab(
        duck_store,
        settings,
        GitlabSource((), TOKEN, API, groups=("acme",)),
        transport=httpx.MockTransport(fake),
        clock=FakeClock(NOW),
    )
    assert result.summary.startswith("1 project: 3 deployments")
    assert len(duck_store.rows("deployment")) == 3


def test_source_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="needs --project GROUP/PROJECT or --group GROUP"):
        GitlabSource(())
    with pytest.raises(ConfigError, match="--project 'shop': expected the project's full path"):
        GitlabSource(("shop",))
    with pytest.raises(ConfigError, match="--since 'May': expected an ISO date"):
        GitlabSource((PATH,), since="May")


def test_sync_entries_of_gitlab_and_pagerduty() -> None:
    from heatlens.connectors.schedule import parse_sync_jobs

    entries = [
        {"kind": "gitlab", "project": [PATH], "group": "acme", "every": "1h"},
        {"kind": "pagerduty", "service": "PIKL83L", "every": "30m"},
    ]
    settings = load_settings(config=None, environ={}, overrides={"sync": entries})
    gitlab, pagerduty = parse_sync_jobs(settings)
    assert (gitlab.name, gitlab.kind, gitlab.every.total_seconds()) == (
        f"gitlab:{PATH},acme",
        "gitlab",
        3600,
    )
    assert (pagerduty.name, pagerduty.kind) == ("pagerduty:PIKL83L", "pagerduty")
    assert gitlab.run_outside is not None and pagerduty.run_outside is not None
    bad = load_settings(config=None, environ={}, overrides={"sync": [{"kind": "pagerduty"}]})
    with pytest.raises(ConfigError, match=r"^sync\[0\]\.service: missing"):
        parse_sync_jobs(bad)
    bad = load_settings(
        config=None, environ={}, overrides={"sync": [{"kind": "gitlab", "project": "shop"}]}
    )
    with pytest.raises(ConfigError, match=r"^sync\[0\]: --project 'shop'"):
        parse_sync_jobs(bad)


def test_three_attempts_of_a_pipeline() -> None:
    from heatlens.connectors.gitlab.mapping import GitLabOptions
    from heatlens.connectors.gitlab.sync import pipeline_usage

    # written here: `test` ran three times (failed, canceled, success), `lint` twice (failed,
    # success), `build` once
    jobs = [
        {"name": "test", "status": "failed", "created_at": "2022-09-21T01:05:08Z"},
        {"name": "lint", "status": "failed", "created_at": "2022-09-21T01:05:09Z"},
        {"name": "build", "status": "success", "created_at": "2022-09-21T01:05:10Z"},
        {"name": "test", "status": "canceled", "created_at": "2022-09-21 03:10:00 +0200"},
        {"name": "lint", "status": "success", "created_at": "2022-09-21T01:10:01Z"},
        {"name": "test", "status": "success", "created_at": "2022-09-21T01:20:00Z"},
    ]
    records = pipeline_usage(PIPELINE_287, jobs, PATH, GitLabOptions())
    assert [
        (r["id"], r["ts"], r["outcome"], r.get("duration_s"), r["run"], r["attempt"])
        for r in records
    ] == [
        # attempt 1: test and lint ran again after it; test failed
        ("287/1", "2022-09-21T01:05:07.200000+00:00", "failure", None, "287", 1),
        # attempt 2: only test ran again after it, canceled; it began with test's second run
        # (written in GitLab's spaced format: 01:10:00 UTC)
        ("287/2", "2022-09-21T01:10:00+00:00", "abandoned", None, "287", 2),
        # the pipeline as it stands: the webhook's id
        ("287", "2022-09-21T01:05:07.200000+00:00", "success", 34, "287", 3),
    ]


def test_since_starts_a_first_sync_there(duck_store: Store, settings: Settings) -> None:
    fake = fake_gitlab()
    sync_gitlab(
        duck_store,
        settings,
        GitlabSource((PATH,), TOKEN, API, since="2016-08-11T10:00:00Z"),
        transport=httpx.MockTransport(fake),
        clock=FakeClock(NOW),
    )
    lists = [r.url.params for r in fake.requests if r.url.path.endswith("/deployments")]
    assert lists[0]["updated_after"] == "2016-08-11T10:00:00Z"
