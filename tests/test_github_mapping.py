"""GitHub webhook payloads → canonical records: real payloads (tests/fixtures/github, see its
SOURCE.txt) against records written by hand from reading them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from heatlens.connectors.github import GithubOptions, Mapped, map_event
from heatlens.connectors.github.mapping import timestamp
from heatlens.ingest import ingest_records
from heatlens.settings import Settings
from heatlens.store import Store

FIXTURES = Path(__file__).parent / "fixtures" / "github"
OPTIONS = GithubOptions()


def payload(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def records(event: str, name: str, options: GithubOptions = OPTIONS) -> list[dict[str, Any]]:
    mapped = map_event(event, payload(name), options)
    assert mapped.reason is None
    return mapped.records


def ignored(event: str, data: dict[str, Any], options: GithubOptions = OPTIONS) -> str:
    mapped = map_event(event, data, options)
    assert mapped.records == []
    assert mapped.reason
    return mapped.reason


# push


def test_push_gives_one_change_per_commit() -> None:
    assert records("push", "push.with-new-branch") == [
        {
            "type": "change",
            "id": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
            "committed_at": "2019-05-15T15:19:25Z",
            "author": "Codertocat",
            "title": "Initial commit",
            "service": "Hello-World",
            "repo": "Codertocat/Hello-World",
        }
    ]


def test_push_keeps_the_commit_timestamp_offset_and_maps_the_service() -> None:
    options = GithubOptions(service_map={"Codertocat/Hello-World": "hello"})
    assert records("push", "push.drone", options) == [
        {
            "type": "change",
            "id": "199eddf46df50de8d02e99bf1c5fdb4101338224",
            "committed_at": "2018-06-15T13:01:51-07:00",
            "author": "Codertocat",
            "title": "Update README",
            "service": "hello",
            "repo": "Codertocat/Hello-World",
        }
    ]


def test_push_title_is_the_first_line_of_the_message() -> None:
    data = payload("push.drone")
    data["commits"][0]["message"] = "Update README\n\nLonger explanation."
    [change] = map_event("push", data, OPTIONS).records
    assert change["title"] == "Update README"


def test_push_author_without_a_username_is_their_name() -> None:
    data = payload("push.with-no-username-committer")
    del data["commits"][0]["author"]["username"]
    [change] = map_event("push", data, OPTIONS).records
    assert change["author"] == "Codertocat"


def test_push_of_a_tag_or_a_deletion_gives_nothing() -> None:
    assert ignored("push", payload("push.tag-deleted")) == "push deletes a ref"
    assert ignored("push", payload("push.tag.drone")) == "push has no commits"


def test_quirk_push_pushed_at_is_an_epoch_integer() -> None:
    """`repository.pushed_at` is a Unix epoch in push payloads, an ISO string elsewhere: the
    change's time comes from the commit, and an epoch reads as UTC."""
    data = payload("push.with-new-branch")
    assert data["repository"]["pushed_at"] == 1557933657
    [change] = map_event("push", data, OPTIONS).records
    assert change["committed_at"] == "2019-05-15T15:19:25Z"
    assert timestamp(1557933657) == "2019-05-15T15:20:57Z"


# pull_request


def merged(data: dict[str, Any]) -> dict[str, Any]:
    """The real closed PR as GitHub sends it once merged: only `merged` and `merged_at` differ
    (no public merged `closed` payload exists; see SOURCE.txt)."""
    data = copy.deepcopy(data)
    data["pull_request"]["merged"] = True
    data["pull_request"]["merged_at"] = data["pull_request"]["closed_at"]
    return data


def test_merged_pull_request_gives_its_merge_commit_pr_times() -> None:
    mapped = map_event("pull_request", merged(payload("pull_request.closed")), OPTIONS)
    assert mapped.records == [
        {
            "type": "change",
            "id": "c4295bd74fb0f4fda03689c3df3f2803b658fd85",
            "committed_at": "2019-05-15T15:21:18Z",
            "pr_opened_at": "2019-05-15T15:20:33Z",
            "merged_at": "2019-05-15T15:21:18Z",
            "service": "Hello-World",
            "repo": "Codertocat/Hello-World",
        }
    ]


def test_quirk_closed_unmerged_pull_request_has_a_merge_commit_sha_but_is_no_change() -> None:
    data = payload("pull_request.closed")
    assert data["pull_request"]["merge_commit_sha"] and data["pull_request"]["merged"] is False
    assert ignored("pull_request", data) == "pull_request closed without merging"


def test_merged_false_wins_over_a_merged_at() -> None:
    data = merged(payload("pull_request.closed"))
    data["pull_request"]["merged"] = False
    ignored("pull_request", data)


def test_opened_pull_request_gives_nothing() -> None:
    assert "not a merge" in ignored("pull_request", payload("pull_request.opened"))


# deployment_status


def test_successful_deployment_status_gives_a_deployment() -> None:
    assert records("deployment_status", "deployment_status") == [
        {
            "type": "deployment",
            "id": "Codertocat/Hello-World/deployments/145988746",
            "service": "Hello-World",
            "environment": "production",
            "result": "success",
            "started_at": "2019-05-15T15:20:53Z",
            "finished_at": "2019-05-15T15:20:55Z",
            "commit_sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
        }
    ]


def test_deployment_status_in_progress_is_not_final() -> None:
    data = payload("deployment_status.gh-pages")
    assert data["deployment_status"]["state"] == "in_progress"
    assert ignored("deployment_status", data) == "deployment_status 'in_progress' is not final"


@pytest.mark.parametrize(("state", "result"), [("failure", "failure"), ("error", "failure")])
def test_failed_deployment_status(state: str, result: str) -> None:
    data = payload("deployment_status.gh-pages")
    data["deployment_status"]["state"] = state
    [deployment] = map_event("deployment_status", data, OPTIONS).records
    assert deployment["result"] == result
    assert deployment["environment"] == "github-pages"
    assert deployment["finished_at"] == "2022-01-03T01:28:40Z"


def test_deployment_kind_only_when_the_payload_says_so() -> None:
    data = payload("deployment_status")
    [plain] = map_event("deployment_status", data, OPTIONS).records
    assert "kind" not in plain  # task "deploy", empty payload: unknown, not "planned"
    data["deployment"]["task"] = "deploy:rollback"
    assert map_event("deployment_status", data, OPTIONS).records[0]["kind"] == "rollback"
    data["deployment"]["task"] = "deploy"
    data["deployment"]["payload"] = {"kind": "hotfix"}
    assert map_event("deployment_status", data, OPTIONS).records[0]["kind"] == "hotfix"
    data["deployment"]["payload"] = '{"kind": "rollback"}'  # a payload sent as a JSON string
    assert map_event("deployment_status", data, OPTIONS).records[0]["kind"] == "rollback"


def test_deployment_event_waits_for_its_final_status() -> None:
    assert "deployment_status" in ignored("deployment", payload("deployment.drone"))


# workflow_run


def test_completed_workflow_run_gives_a_ci_usage() -> None:
    options = GithubOptions(ci_capability="actions", service_map={"octo-org/octo-repo": "octo"})
    assert records("workflow_run", "workflow_run.completed", options) == [
        {
            "type": "usage",
            "id": "289782451/1",
            "ts": "2020-10-05T16:33:49Z",
            "capability": "actions",
            "actor": "Codertocat",
            "service": "octo",
            "outcome": "success",
            "duration_s": 0.0,
            "run": "289782451",
            "attempt": 1,
            "attributes": {
                "workflow": ".github/workflows/test.yml",
                "event": "repository_dispatch",
                "conclusion": "success",
                "head_sha": "3484a3fb816e0859fd6e1cea078d76385ff50625",
            },
        }
    ]


@pytest.mark.parametrize(
    ("conclusion", "outcome"),
    [
        ("success", "success"),
        ("failure", "failure"),
        ("startup_failure", "error"),
        ("timed_out", "error"),
        ("cancelled", "abandoned"),
        ("neutral", None),
    ],
)
def test_workflow_run_conclusion_to_outcome(conclusion: str, outcome: str | None) -> None:
    data = payload("workflow_run.completed")
    data["workflow_run"]["conclusion"] = conclusion
    [usage] = map_event("workflow_run", data, OPTIONS).records
    assert usage.get("outcome") == outcome


def test_quirk_workflow_run_has_no_completed_at_so_duration_ends_at_updated_at() -> None:
    data = payload("workflow_run.drone")
    data["action"] = "completed"  # the capture's action disagrees with its status (SOURCE.txt)
    assert "completed_at" not in data["workflow_run"]
    [usage] = map_event("workflow_run", data, OPTIONS).records
    assert usage["ts"] == "2025-03-24T08:03:42Z"
    assert usage["duration_s"] == 4.0  # 08:03:42 → updated_at 08:03:46


def test_workflow_run_rerun_is_another_attempt_of_the_same_run() -> None:
    data = payload("workflow_run.completed")
    data["workflow_run"]["conclusion"] = "failure"
    [first] = map_event("workflow_run", data, OPTIONS).records
    data["workflow_run"]["run_attempt"] = 2
    data["workflow_run"]["conclusion"] = "success"
    [second] = map_event("workflow_run", data, OPTIONS).records
    assert (first["id"], first["run"], first["attempt"]) == ("289782451/1", "289782451", 1)
    assert (second["id"], second["run"], second["attempt"]) == ("289782451/2", "289782451", 2)


def test_workflow_run_not_completed_gives_nothing() -> None:
    ignored("workflow_run", payload("workflow_run.requested"))
    # a run completed but announced under another action is not taken twice
    assert "in_progress" in ignored("workflow_run", payload("workflow_run.drone"))


# issues


def test_issue_with_the_incident_label_gives_an_incident() -> None:
    assert records("issues", "issues.opened", GithubOptions(incident_label="Bug")) == [
        {
            "type": "incident",
            "id": "Codertocat/Hello-World#1",
            "opened_at": "2019-05-15T15:20:18Z",
            "service": "Hello-World",
        }
    ]


def test_issue_without_the_incident_label_gives_nothing() -> None:
    assert ignored("issues", payload("issues.opened")) == "issue has no 'incident' label"


def test_closed_incident_is_resolved_with_root_cause_and_severity() -> None:
    data = payload("issues.closed.zulip")
    # the real closed issue, labelled and described as an incident would be
    data["issue"]["labels"] = [{"name": "incident"}, {"name": "severity:high"}]
    data["issue"]["body"] = "Bot crashed.\n\nRoot cause: 9FCEB02D0AE598E95DC970B74767F19372D61AF8"
    [incident] = map_event("issues", data, OPTIONS).records
    assert incident == {
        "type": "incident",
        "id": "Pritesh-30/test-repo#8",
        "opened_at": "2026-01-31T08:11:06Z",
        "resolved_at": "2026-01-31T08:11:37Z",
        "service": "test-repo",
        "severity": "high",
        "root_cause_sha": "9fceb02d0ae598e95dc970b74767f19372d61af8",
    }


@pytest.mark.parametrize(
    ("label", "severity"), [("sev1", "sev1"), ("SEV-2", "SEV-2"), ("P1", "P1"), ("bug", None)]
)
def test_severity_labels(label: str, severity: str | None) -> None:
    data = payload("issues.opened")
    data["issue"]["labels"].append({"name": "incident"})
    data["issue"]["labels"].append({"name": label})
    [incident] = map_event("issues", data, OPTIONS).records
    assert incident.get("severity") == severity


def test_reopened_incident_is_not_resolved() -> None:
    """A reopened issue keeps its old `closed_at`; it is open again, so no `resolved_at` (and the
    merge never clears the stored one)."""
    [incident] = records("issues", "issues.reopened", GithubOptions(incident_label="bug"))
    assert incident == {
        "type": "incident",
        "id": "Codertocat/Hello-World#1",
        "opened_at": "2021-07-05T18:05:24Z",
        "service": "Hello-World",
    }


# release


def test_release_is_no_deployment_unless_configured() -> None:
    reason = ignored("release", payload("release.published"))
    assert "webhooks.github_release_deployments" in reason


def test_release_deployments_per_repository() -> None:
    # release.published.json is a release of Codertocat/Hello-World
    for listed in (("Codertocat/Hello-World",), ("Hello-World",), ("other", "Hello-World")):
        options = GithubOptions(release_deployments=listed)
        [deployment] = records("release", "release.published", options)
        assert deployment["id"] == "Hello-World@0.0.1"
    options = GithubOptions(release_deployments=("Codertocat/other",))
    assert "Codertocat/Hello-World" in ignored("release", payload("release.published"), options)


def test_published_release_gives_a_deployment_when_configured() -> None:
    options = GithubOptions(release_deployments=True, release_environment="prod")
    assert records("release", "release.published", options) == [
        {
            "type": "deployment",
            "id": "Hello-World@0.0.1",
            "service": "Hello-World",
            "environment": "prod",
            "finished_at": "2019-05-15T15:20:53Z",
        }
    ]
    [deployment] = records("release", "release.published.drone", options)
    assert deployment["id"] == "harness-ngtriggers-test@v1.0.0"
    assert "commit_sha" not in deployment  # target_commitish "test-branch" is no sha


def test_release_created_gives_nothing() -> None:
    ignored("release", payload("release.created"), GithubOptions(release_deployments=True))


# unknown events


def test_unknown_event_gives_nothing_with_a_reason() -> None:
    assert map_event("ping", {"zen": "Design for failure."}, OPTIONS) == Mapped(
        [], "event 'ping' is not mapped"
    )


# every mapped record is ingestable


def test_mapped_records_are_ingestable(duck_store: Store, settings: Settings) -> None:
    incident = payload("issues.closed.zulip")
    incident["issue"]["labels"] = [{"name": "incident"}, {"name": "sev2"}]
    incident["issue"]["body"] = "root cause: 199eddf46df50de8d02e99bf1c5fdb4101338224"
    deliveries = [
        ("push", payload("push.with-new-branch")),
        ("push", payload("push.drone")),
        ("pull_request", merged(payload("pull_request.closed"))),
        ("deployment_status", payload("deployment_status")),
        ("workflow_run", payload("workflow_run.completed")),
        ("issues", incident),
        ("release", payload("release.published")),
    ]
    options = GithubOptions(release_deployments=True)
    mapped = [r for event, data in deliveries for r in map_event(event, data, options).records]
    assert len(mapped) == 7
    result = ingest_records(duck_store, mapped, settings, source="webhook:github")
    assert (result.problems, result.rejected) == ([], 0)
    assert sorted(row["id"] for row in duck_store.rows("change")) == [
        "199eddf46df50de8d02e99bf1c5fdb4101338224",
        "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "c4295bd74fb0f4fda03689c3df3f2803b658fd85",
    ]
    assert {row["id"] for row in duck_store.rows("deployment")} == {
        "Codertocat/Hello-World/deployments/145988746",
        "Hello-World@0.0.1",
    }
    [usage] = duck_store.rows("usage")
    assert (usage["outcome"], usage["attempt"]) == ("success", 1)
    [stored_incident] = duck_store.rows("incident")
    assert stored_incident["root_cause_sha"] == "199eddf46df50de8d02e99bf1c5fdb4101338224"
