"""`heatlens sync github`, the gaps closed after the first version: re-runs of older runs, the
shipped commits asked of the store by id prefix with bounded state, waiting for the rate limit's
reset after a 200 that left none, releases chosen by `webhooks.github_release_deployments`, team
memberships, and the command's help. Same fake GitHub as tests/test_connector_github_sync.py;
every expected value was worked out by hand from the responses written there and here."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from heatlens.connectors.github.sync import GithubSource, state_name
from heatlens.ingest import ingest_records
from heatlens.settings import Settings, load_settings
from heatlens.store import Store
from tests.test_connector_github_sync import (
    API,
    COMPARE,
    DEPLOYMENT,
    DEPLOYMENT_2,
    NOW,
    REPO,
    RUN_A,
    RUN_B,
    STATUSES,
    USAGE,
    FakeClock,
    deployments,
    fake_github,
    fixture,
    sync,
    usage,
)

# -- 1. re-runs of runs created before the cursor ------------------------------------------------

# RUN_B (created 2022-08-27, attempt 1 stored by the first sync) re-run on 2022-09-03
RUN_B_AGAIN = {
    **RUN_B,
    "run_attempt": 2,
    "run_started_at": "2022-09-03T12:30:00Z",
    "updated_at": "2022-09-03T12:31:00Z",
}
AT = datetime(2022, 9, 3, 12, 0, tzinfo=UTC)  # the 7-day window starts 2022-08-27: both runs in


def test_a_re_run_of_an_older_run_is_stored_as_a_new_attempt(
    duck_store: Store, settings: Settings
) -> None:
    sync(duck_store, settings, fake_github(runs=[[RUN_A], [RUN_B]]), FakeClock(AT))
    assert usage(duck_store) == USAGE
    looked = duck_store.sync_state(
        state_name(GithubSource((REPO,), base_url=API), REPO, "workflow_reruns")
    )
    assert looked is not None and looked["checked"] == "2022-09-03T11:55:00Z"  # AT less 5 min
    # an hour later RUN_B has a second attempt; the runs' cursor (RUN_A, 2022-09-03T05:15:09Z)
    # is after RUN_B's creation, so the runs stream stops before it: the look-back finds it
    fake = fake_github(runs=[[RUN_A], [RUN_B_AGAIN]])
    attempt_1 = f"repos/{REPO}/actions/runs/2938072864/attempts/1"
    fake.routes[(attempt_1, "1")] = [fake.ok(RUN_B)]
    result = sync(duck_store, settings, fake, FakeClock(AT + timedelta(hours=1)))
    # the look-back, last: the window (created since 2022-08-27), its page 2 by the Link header,
    # and RUN_B's first attempt
    tail = [(r.url.path.removeprefix(f"/repos/{REPO}"), dict(r.url.params)) for r in fake.requests]
    assert tail[-3:] == [
        ("/actions/runs", {"per_page": "100", "created": ">=2022-08-27"}),
        ("/actions/runs", {"per_page": "100", "page": "2"}),
        ("/actions/runs/2938072864/attempts/1", {}),
    ]
    again = ("2938072864/2", "2022-09-03T12:30:00Z", "panjf2000", "ants", "success", 60.0)
    assert usage(duck_store) == USAGE | {(*again, "2938072864")}
    assert result.counts["usage"].inserted == 1 and result.counts["usage"].updated == 0
    # RUN_A read again at the cursor (a tie), RUN_B's re-run found by the look-back
    assert result.summary.startswith("1 repository read: 1 workflow run, 1 re-run; unchanged:")
    # a later pass: RUN_B was updated (12:31) before the last pass began (12:55): not again
    fake.requests.clear()
    sync(duck_store, settings, fake, FakeClock(AT + timedelta(hours=2)))
    assert not any("/attempts/" in r.url.path for r in fake.requests)
    assert len(duck_store.rows("usage")) == 3


def test_rerun_days_zero_turns_the_look_back_off(duck_store: Store, settings: Settings) -> None:
    fake = fake_github(runs=[[RUN_A], [RUN_B]])
    sync(duck_store, settings, fake, FakeClock(AT), rerun_days=0)
    assert sum(r.url.path.endswith("/actions/runs") for r in fake.requests) == 2  # its 2 pages


# -- 2. shipped commits: new deployments from the store, bounded state ---------------------------

HEAD = COMPARE["commits"][0]["sha"]  # 6dcb09b…
LATER = {**DEPLOYMENT_2, "id": 3, "sha": HEAD, "created_at": "2012-07-21T10:00:00Z"}
DONE_3 = [{**STATUSES[0], "updated_at": "2012-07-21T10:05:00Z"}]
C, D = "c" * 40, "d" * 40


def _commit(sha: str) -> dict[str, Any]:
    return {"commits": [{**copy.deepcopy(COMPARE["commits"][0]), "sha": sha}]}


def _shipping(fake: Any) -> None:
    fake.routes[(f"repos/{REPO}/deployments/3/statuses", "1")] = [fake.ok(DONE_3)]
    base = f"repos/{REPO}/compare/"
    fake.routes[(f"{base}{DEPLOYMENT['sha']}...{HEAD}", "1")] = [fake.ok(COMPARE)]
    fake.routes[(f"{base}{DEPLOYMENT['sha']}...{C}", "1")] = [fake.ok(_commit(C))]
    fake.routes[(f"{base}{C}...{HEAD}", "1")] = [fake.ok(COMPARE)]
    fake.routes[(f"{base}{HEAD}...{D}", "1")] = [fake.ok(_commit(D))]


def _compares(fake: Any) -> list[str]:
    """The compare requests, as `BASE…HEAD` (4 characters of each sha)."""
    heads = [r.url.path.rsplit("/", 1)[1].split("...") for r in fake.requests]
    return [f"{b[:4]}…{h[-4:]}" for b, *rest in heads if rest for h in rest]


def test_a_late_deployment_and_a_wiped_one_are_compared_again_with_bounded_state(
    duck_store: Store, settings: Settings
) -> None:
    fake = fake_github()
    fake.pages(f"repos/{REPO}/deployments", [[LATER, DEPLOYMENT]])
    _shipping(fake)
    sync(duck_store, settings, fake)
    assert _compares(fake) == ["a84d…db5e"]
    # deployment 4, recorded late (a webhook, say): finished between 1 (07-20) and 3 (07-21 10:05)
    late = {
        "type": "deployment",
        "id": f"{REPO}/deployments/4",
        "service": "example",
        "environment": "production",
        "result": "success",
        "started_at": "2012-07-21T07:00:00Z",
        "finished_at": "2012-07-21T08:00:00Z",
        "commit_sha": C,
    }
    ingest_records(duck_store, [late], settings, source="webhook:github")
    fake.requests.clear()
    sync(duck_store, settings, fake)
    # 4 ships 1..4, and 3, whose predecessor is now 4, ships 4..3
    assert _compares(fake) == ["a84d…cccc", "cccc…db5e"]
    commits = {r["id"].rsplit("/", 1)[1]: r["commits"] for r in duck_store.rows("deployment")}
    assert commits == {"1": None, "3": [HEAD], "4": [C]}
    # deployment 5 after 3: the list changed, so it is read again, 3 with it (the newest seen
    # before: a tie with the cursor) — written back without its commits, which are asked again
    five = {**LATER, "id": 5, "sha": D, "created_at": "2012-07-21T11:00:00Z"}
    fake.pages(f"repos/{REPO}/deployments", [[five, LATER, DEPLOYMENT]])
    done_5 = [{**STATUSES[0], "updated_at": "2012-07-21T11:05:00Z"}]
    fake.routes[(f"repos/{REPO}/deployments/5/statuses", "1")] = [fake.ok(done_5)]
    fake.requests.clear()
    result = sync(duck_store, settings, fake)
    assert _compares(fake) == ["cccc…db5e", "6dcb…dddd"]
    commits = {r["id"].rsplit("/", 1)[1]: r["commits"] for r in duck_store.rows("deployment")}
    assert commits == {"1": None, "3": [HEAD], "4": [C], "5": [D]}
    assert "2 deployments compared" in result.summary
    # the state names only the last sync's deployments, not every one ever compared
    state = duck_store.sync_state(state_name(GithubSource((REPO,), base_url=API), REPO, "shipped"))
    assert state is not None
    assert state["done"] == {
        f"{REPO}/deployments/4": DEPLOYMENT["sha"],
        f"{REPO}/deployments/3": C,
        f"{REPO}/deployments/5": HEAD,
    }
    # nothing new: nothing compared
    fake.requests.clear()
    sync(duck_store, settings, fake)
    assert _compares(fake) == []


def test_deployments_by_prefix_and_their_neighbours(store: Store, settings: Settings) -> None:
    def dep(id: str, finished: str, **more: Any) -> dict[str, Any]:
        return {
            "type": "deployment",
            "id": id,
            "service": "s",
            "finished_at": finished,
            "commit_sha": "a" * 40,
        } | more

    ingest_records(
        store,
        [
            dep("o/a_b/deployments/3", "2024-01-03T00:00:00Z"),
            dep("o/a_b/deployments/1", "2024-01-01T00:00:00Z"),
            dep("o/a_b/deployments/2", "2024-01-02T00:00:00Z", result="failure"),
            dep("o/aXb/deployments/9", "2024-01-02T00:00:00Z"),  # `_` is no wildcard
            dep("o/a_b/deployments/5", "2024-01-05T00:00:00Z", environment="staging"),
        ],
        settings,
        source="test",
    )
    prefix = "o/a_b/deployments/"
    found = store.deployments_by_prefix(prefix)
    assert [r["id"] for r in found] == [f"{prefix}1", f"{prefix}3", f"{prefix}5"]
    first, third = found[0], found[1]
    assert store.adjacent_deployment(prefix, third, later=False)["id"] == f"{prefix}1"
    assert store.adjacent_deployment(prefix, first, later=True)["id"] == f"{prefix}3"
    assert store.adjacent_deployment(prefix, first, later=False) is None
    assert store.adjacent_deployment(prefix, third, later=True) is None  # 5 is staging
    later = datetime(2100, 1, 1, tzinfo=UTC)
    assert store.deployments_by_prefix(prefix, ingested_after=later) == []


# -- 3. a 200 that left no rate limit: wait for the reset before asking again ---------------------


def test_a_spent_budget_on_a_200_waits_for_the_reset_first(
    duck_store: Store, settings: Settings
) -> None:
    fake = fake_github()
    [page_1] = fake.routes[(f"repos/{REPO}/actions/runs", "1")]
    reset = int(NOW.timestamp()) + 100
    page_1.headers["x-ratelimit-remaining"] = "0"
    page_1.headers["x-ratelimit-reset"] = str(reset)
    clock = FakeClock(NOW)
    sync(duck_store, settings, fake, clock)
    assert clock.slept == [101.0]  # until the reset, and a second for the clocks' difference
    assert usage(duck_store) == USAGE


def test_a_spent_budget_for_long_stops_before_asking_again(
    duck_store: Store, settings: Settings
) -> None:
    import pytest

    from heatlens.connectors.http import RateLimited

    fake = fake_github()
    [page_1] = fake.routes[(f"repos/{REPO}/actions/runs", "1")]
    page_1.headers["x-ratelimit-remaining"] = "0"
    page_1.headers["x-ratelimit-reset"] = str(int(NOW.timestamp()) + 2 * 3600)  # 02:00 UTC
    clock = FakeClock(NOW)
    with pytest.raises(RateLimited, match="rate limit exhausted until 02:00 UTC"):
        sync(duck_store, settings, fake, clock)
    assert clock.slept == []
    # page 1 was the last request: page 2 was not asked only to be refused
    assert fake.requests[-1].url.path.endswith("/actions/runs")
    assert "page" not in fake.requests[-1].url.params
    assert len(usage(duck_store)) == 1  # page 1 committed: the next sync resumes at page 2


# -- 4. releases as deployments, per webhooks.github_release_deployments -----------------------

RELEASE = fixture("repos_list-releases.json")[0]  # v1.0.0, published 2013-02-27T19:35:32Z
RELEASED = (
    "example@v1.0.0",
    "example",
    "production",
    "success",
    None,
    "2013-02-27T19:35:32Z",
    "6dcb09b5b57875f334f61aebed695e2e4193db5e",
    None,
)


def _releasing() -> Any:
    fake = fake_github()
    fake.pages(f"repos/{REPO}/releases", [[RELEASE]])
    tag = f"repos/{REPO}/commits/v1.0.0"
    fake.routes[(tag, "1")] = [fake.ok(fixture("repos_get-commit.json"))]
    return fake


def test_the_release_setting_chooses_releases_unless_the_command_says_otherwise(
    tmp_path: Path,
) -> None:
    named = load_settings(
        config=None, environ={}, overrides={"webhooks_github_release_deployments": [REPO]}
    )
    other = load_settings(
        config=None, environ={}, overrides={"webhooks_github_release_deployments": ["x/y"]}
    )
    for n, (settings, flag, releases) in enumerate(
        [
            (named, None, True),  # the setting names the repository
            (named, False, False),  # --no-deploy-releases: the Deployments API all the same
            (other, None, False),  # the setting names another repository
            (other, True, True),  # --deploy-releases
        ]
    ):
        with Store.open(str(tmp_path / f"{n}.duckdb")) as store:
            fake = _releasing()
            sync(store, settings, fake, deploy_releases=flag)
            asked = {r.url.path.rsplit("/", 1)[1] for r in fake.requests}
            assert ("releases" in asked, "deployments" in asked) == (releases, not releases)
            api = {d for d in deployments(store) if d[0].startswith(REPO)}
            assert (deployments(store) == {RELEASED}) if releases else (len(api) == 1), n


# -- 5. team memberships -------------------------------------------------------------------------

LEAGUE = fixture("teams_list.json")[0]  # justice-league, admin
WRITERS = {**LEAGUE, "id": 2, "slug": "writers", "name": "Writers", "permission": "push"}
OCTOCAT = DEPLOYMENT["creator"]  # a simple user of the OpenAPI examples: octocat
HUBOT = {**OCTOCAT, "login": "hubot", "id": 2}  # written here


def _teams(fake: Any) -> None:
    fake.pages(f"repos/{REPO}/teams", [[WRITERS], [LEAGUE]])
    fake.pages("orgs/octocat/teams/justice-league/members", [[OCTOCAT]])
    fake.pages("orgs/octocat/teams/writers/members", [[HUBOT, OCTOCAT]])


def test_team_members_become_memberships(duck_store: Store, settings: Settings) -> None:
    fake = fake_github()
    _teams(fake)
    result = sync(duck_store, settings, fake, teams=True)
    assert {(r["actor"], r["team"]) for r in duck_store.rows("membership")} == {
        ("octocat", "justice-league"),
        ("hubot", "writers"),
        ("octocat", "writers"),
    }
    assert "2 teams, 3 team members" in result.summary and result.warnings == []
    # unchanged: the teams and each members list are asked conditionally, and 304
    fake.requests.clear()
    sync(duck_store, settings, fake, teams=True)
    members = [r for r in fake.requests if r.url.path.endswith("/members")]
    assert len(members) == 2 and all(r.headers.get("if-none-match") for r in members)


def test_members_the_token_may_not_read_are_a_warning(
    duck_store: Store, settings: Settings
) -> None:
    fake = fake_github()
    _teams(fake)
    fake.routes[("orgs/octocat/teams/writers/members", "1")] = [
        httpx.Response(403, json={"message": "Resource not accessible by integration"})
    ]
    result = sync(duck_store, settings, fake, teams=True)
    assert result.warnings == [
        f"{REPO}: members of team writers not read (GitHub answered 403): the token needs "
        "`read:org` (classic) or the organization's Members read permission (fine-grained); "
        "memberships unchanged"
    ]
    assert {r["id"] for r in duck_store.rows("team")} == {"writers", "justice-league"}
    assert duck_store.rows("membership") == []
    assert usage(duck_store) == USAGE  # the rest synced


# -- 6. the command, as a new user meets it ------------------------------------------------------


def test_help_shows_examples_and_every_choice(tmp_path: Path) -> None:
    from tests.conftest import Cli

    done = Cli(tmp_path)("sync", "github", "--help")
    assert done.exit_code == 0
    text = " ".join(done.output.split())
    for said in (
        "heatlens sync github --repo acme/api",
        "--deploy-releases / --no-deploy-releases",
        "webhooks.github_release_deployments",
        "--rerun-days DAYS",
        "Needs `read:org`",
        "docs/connectors/github.md",
    ):
        assert said in text, said


def test_sync_entry_takes_rerun_days() -> None:
    import pytest

    from heatlens.connectors.schedule import parse_sync_jobs
    from heatlens.errors import ConfigError

    entry = {"kind": "github", "repo": REPO, "rerun_days": 0}
    settings = load_settings(config=None, environ={}, overrides={"sync": [entry]})
    assert len(parse_sync_jobs(settings)) == 1
    entry = {"kind": "github", "repo": REPO, "rerun_days": "7"}
    settings = load_settings(config=None, environ={}, overrides={"sync": [entry]})
    with pytest.raises(ConfigError, match=r"^sync\[0\]\.rerun_days: expected an int, got '7'$"):
        parse_sync_jobs(settings)
