"""GitLab webhook payloads → canonical records: real payloads (tests/fixtures/gitlab, see its
SOURCE.txt), each compared with the records written by hand from reading it."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from heatlens.connectors.gitlab import GitLabOptions, Mapped, map_event, parse_time
from heatlens.ingest import ingest_records
from heatlens.settings import Settings
from heatlens.store import Store
from tests.conftest import stored

FIXTURES = Path(__file__).parent / "fixtures" / "gitlab"


def payload(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def records(name: str, options: GitLabOptions | None = None) -> list[dict[str, Any]]:
    mapped = map_event(payload(name), options)
    assert mapped.reason is None, mapped.reason
    return mapped.records


# --- timestamps: one parser for every format the fixtures hold ---------------------------------


@pytest.mark.parametrize(
    ("name", "path", "text", "utc"),
    [
        # "+0200" after a space: deployment events
        (
            "xanzy-go-gitlab/deployment",
            ("status_changed_at",),
            "2021-04-28 21:50:00 +0200",
            datetime(2021, 4, 28, 19, 50, tzinfo=UTC),
        ),
        # "UTC" after a space: pipelines, issues of 2017, jobs
        (
            "xanzy-go-gitlab/pipeline",
            ("object_attributes", "created_at"),
            "2016-08-12 15:23:28 UTC",
            datetime(2016, 8, 12, 15, 23, 28, tzinfo=UTC),
        ),
        # ISO with Z
        (
            "xanzy-go-gitlab/issue",
            ("object_attributes", "created_at"),
            "2013-12-03T17:15:43Z",
            datetime(2013, 12, 3, 17, 15, 43, tzinfo=UTC),
        ),
        # ISO with Z and milliseconds
        (
            "xanzy-go-gitlab/build",
            ("build_created_at",),
            "2021-02-23T02:41:37.886Z",
            datetime(2021, 2, 23, 2, 41, 37, 886000, tzinfo=UTC),
        ),
        # ISO with a +hh:mm offset: commit timestamps
        (
            "xanzy-go-gitlab/push",
            ("commits", 1, "timestamp"),
            "2012-01-03T23:36:29+02:00",
            datetime(2012, 1, 3, 21, 36, 29, tzinfo=UTC),
        ),
        # ISO with a negative offset
        (
            "drone-go-scm/push_merge",
            ("commits", 0, "timestamp"),
            "2017-12-10T08:28:36-08:00",
            datetime(2017, 12, 10, 16, 28, 36, tzinfo=UTC),
        ),
    ],
)
def test_every_timestamp_format_in_the_fixtures(
    name: str, path: tuple[Any, ...], text: str, utc: datetime
) -> None:
    value: Any = payload(name)
    for step in path:
        value = value[step]
    assert value == text  # the form is really in the payload
    parsed = parse_time(value)
    assert parsed == utc
    assert parsed is not None and parsed.utcoffset() is not None


def test_one_payload_mixes_timestamp_formats() -> None:
    """The quirk: a pipeline event has `… UTC` for the pipeline and `+02:00` for its commit."""
    p = payload("xanzy-go-gitlab/pipeline")
    assert parse_time(p["object_attributes"]["created_at"]) == datetime(
        2016, 8, 12, 15, 23, 28, tzinfo=UTC
    )
    assert parse_time(p["commit"]["timestamp"]) == datetime(
        2016, 8, 12, 17, 23, 21, tzinfo=timezone(timedelta(hours=2))
    )


def test_a_timestamp_without_zone_is_refused() -> None:
    assert parse_time(None) is None
    with pytest.raises(ValueError, match="without a time zone"):
        parse_time("2016-08-12 15:23:28")


# --- push → changes ------------------------------------------------------------------------------


def test_push_gives_one_change_per_commit() -> None:
    assert records("xanzy-go-gitlab/push") == [
        {
            "type": "change",
            "id": "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
            "committed_at": "2011-12-12T12:27:31+00:00",
            "author": "Jordi Mallach",
            # the first line of a multi-line message
            "title": "Merge branch 'some-feature' into 'master'",
            "service": "diaspora",
            "repo": "mike/diaspora",
        },
        {
            "type": "change",
            "id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "committed_at": "2012-01-03T21:36:29+00:00",
            "author": "GitLab dev user",
            "title": "fixed readme",
            "service": "diaspora",
            "repo": "mike/diaspora",
        },
    ]


def test_push_service_comes_from_service_map() -> None:
    options = GitLabOptions(service_map={"gitlab-org/hello-world": "hello", "hello-world": "no"})
    assert records("drone-go-scm/push", options) == [
        {
            "type": "change",
            "id": "2adc9465c4edfc33834e173fe89436a7cb899a1d",
            "committed_at": "2017-12-10T08:26:38+00:00",
            "author": "Sid Sijbrandij",
            "title": "added readme",
            "service": "hello",
            "repo": "gitlab-org/hello-world",
        }
    ]


def test_push_without_commits_gives_a_reason() -> None:
    p = copy.deepcopy(payload("drone-go-scm/push"))
    p["commits"] = []  # GitLab sends this for a deleted branch
    mapped = map_event(p)
    assert mapped == Mapped([], mapped.reason) and mapped.reason


# --- merge_request (merge) → the merge commit's pull-request times ------------------------------


def test_merged_merge_request_gives_its_merge_commit_pr_times() -> None:
    assert records("drone-go-scm/pull_request_merge") == [
        {
            "type": "change",
            "id": "78a76ee6b4992a6baf64c59fc4c44c7323d60438",
            # the merge event has no merged_at: its updated_at is the merge
            "committed_at": "2017-12-10T17:08:07+00:00",
            "pr_opened_at": "2017-12-10T17:01:11+00:00",
            "merged_at": "2017-12-10T17:08:07+00:00",
            "service": "hello-world",
            "repo": "gitlab-org/hello-world",
        }
    ]


def test_the_push_of_the_merge_commit_is_the_same_change() -> None:
    """The real captures: MR !1 merged as 78a76ee6, then the push of that commit."""
    pushed = {r["id"]: r for r in records("drone-go-scm/push_merge")}
    (merged,) = records("drone-go-scm/pull_request_merge")
    assert merged["id"] in pushed
    assert pushed[merged["id"]]["committed_at"] == "2017-12-10T17:08:06+00:00"
    assert pushed[merged["id"]]["title"] == "Merge branch 'feature' into 'master'"


@pytest.mark.parametrize(
    "name", ["xanzy-go-gitlab/merge_request", "drone-go-scm/pull_request_close"]
)
def test_merge_requests_not_merged_give_nothing(name: str) -> None:
    mapped = map_event(payload(name))
    assert mapped.records == []
    assert mapped.reason is not None and "not a merge" in mapped.reason


# --- pipeline → usage of ci_capability ------------------------------------------------------------


def test_pipeline_gives_usage_of_the_ci_capability() -> None:
    options = GitLabOptions(ci_capability="gitlab-ci", service_map={"gitlab-test": "t"})  # by path
    assert records("xanzy-go-gitlab/pipeline", options) == [
        {
            "type": "usage",
            "id": "31",
            "ts": "2016-08-12T15:23:28+00:00",
            "capability": "gitlab-ci",
            "actor": "user1",
            "service": "t",
            "outcome": "success",
            "duration_s": 63,
            "attributes": {
                "ref": "master",
                "source": "merge_request_event",
                "sha": "bcbb5ec396a2c0f828686f14fac9b80b780504f2",
            },
        }
    ]


@pytest.mark.parametrize(
    ("status", "outcome"),
    [("success", "success"), ("failed", "failure"), ("canceled", "abandoned")],
)
def test_pipeline_status_gives_the_outcome(status: str, outcome: str) -> None:
    # the real payload with its status changed to each finished status GitLab sends
    p = copy.deepcopy(payload("drone-go-scm/pipeline_hook"))
    p["object_attributes"]["status"] = status
    (usage,) = map_event(p).records
    assert usage["outcome"] == outcome
    assert usage["id"] == "31"


@pytest.mark.parametrize("status", ["skipped", "running", "pending", "created", "manual"])
def test_pipelines_skipped_or_unfinished_give_nothing(status: str) -> None:
    p = copy.deepcopy(payload("drone-go-scm/pipeline_hook"))
    p["object_attributes"]["status"] = status
    mapped = map_event(p)
    assert mapped.records == [] and mapped.reason is not None and status in mapped.reason


@pytest.mark.parametrize("name", ["xanzy-go-gitlab/job", "xanzy-go-gitlab/build"])
def test_job_events_are_not_mapped(name: str) -> None:
    """The quirk: in job events `commit.id` is the pipeline id, not a sha; pipelines give usage,
    so job events are ignored rather than read as commits."""
    p = payload(name)
    assert p["object_kind"] == "build" and isinstance(p["commit"]["id"], int)
    mapped = map_event(p)
    assert mapped.records == [] and mapped.reason == "GitLab event 'build' is not mapped"


# --- deployment → deployment -------------------------------------------------------------------


def test_deployment_gives_a_deployment_with_the_full_sha() -> None:
    """The quirk: the payload gives `short_sha`; the full sha is the end of `commit_url`."""
    p = payload("xanzy-go-gitlab/deployment")
    assert p["short_sha"] == "279484c0"
    assert records("xanzy-go-gitlab/deployment") == [
        {
            "type": "deployment",
            "id": "root/test-deployment-webhooks/deployments/15",
            "service": "test-deployment-webhooks",
            "environment": "staging",
            "result": "success",
            "finished_at": "2021-04-28T19:50:00+00:00",
            "commit_sha": "279484c09fbe69ededfced8c1bb6e6d24616b468",
        }
    ]


def test_failed_deployment_and_unfinished_ones() -> None:
    p = copy.deepcopy(payload("xanzy-go-gitlab/deployment"))
    p["status"] = "failed"
    (deployment,) = map_event(p).records
    assert deployment["result"] == "failure"
    for status in ("running", "created", "canceled"):
        p["status"] = status
        assert map_event(p).records == []


# --- issue with the incident label → incident ----------------------------------------------------


def test_issue_without_the_incident_label_gives_nothing() -> None:
    mapped = map_event(payload("drone-go-scm/issue_create"))
    assert mapped.records == [] and mapped.reason == "issue without the 'incident' label"


def test_labelled_issue_opens_an_incident_and_closing_resolves_it() -> None:
    options = GitLabOptions(incident_label="Critical")  # labels match case-insensitively
    assert records("drone-go-scm/issue_labeled", options) == [
        {
            "type": "incident",
            "id": "gitlab-org/hello-world#1",
            "opened_at": "2017-12-10T16:37:38+00:00",
            "service": "hello-world",
        }
    ]
    assert records("drone-go-scm/issue_closed", options) == [
        {
            "type": "incident",
            "id": "gitlab-org/hello-world#1",
            "opened_at": "2017-12-10T16:37:38+00:00",
            "resolved_at": "2017-12-10T16:41:28+00:00",
            "service": "hello-world",
        }
    ]


def test_severity_from_a_severity_label() -> None:
    options = GitLabOptions(incident_label="critical")
    p = copy.deepcopy(payload("drone-go-scm/issue_closed"))
    (incident,) = map_event(p, options).records
    assert "severity" not in incident  # `critical` is the incident label here, not a severity
    # the real payload with a second label, as GitLab's scoped labels and the sevN habit write it
    for label, severity in (("severity::2", "2"), ("Severity: high", "high"), ("S1", "S1")):
        p["labels"] = [*payload("drone-go-scm/issue_closed")["labels"], {"title": label}]
        (incident,) = map_event(p, options).records
        assert incident["severity"] == severity


def test_severity_from_gitlabs_own_incident_severity() -> None:
    """xanzy's issue carries GitLab's `severity: high` (and no severity label)."""
    (incident,) = records("xanzy-go-gitlab/issue", GitLabOptions(incident_label="api"))
    assert incident == {
        "type": "incident",
        "id": "gitlabhq/gitlab-test#23",
        "opened_at": "2013-12-03T17:15:43+00:00",
        "severity": "high",
        "service": "gitlab-test",
    }


def test_issue_of_gitlabs_incident_type_is_an_incident_without_the_label() -> None:
    p = copy.deepcopy(payload("xanzy-go-gitlab/issue"))
    p["object_attributes"]["type"] = "Incident"  # what GitLab sends for an incident issue
    (incident,) = map_event(p).records
    assert incident["id"] == "gitlabhq/gitlab-test#23"


def test_unknown_events_give_nothing_with_a_reason() -> None:
    mapped = map_event(payload("xanzy-go-gitlab/tag_push"))
    assert mapped == Mapped([], "GitLab event 'tag_push' is not mapped")
    assert map_event({}).reason == "GitLab event None is not mapped"


# --- every record is ingestable -----------------------------------------------------------------


def test_every_mapped_record_is_ingestable(duck_store: Store, settings: Settings) -> None:
    options = GitLabOptions(incident_label="critical")
    produced = [
        r
        for f in sorted(FIXTURES.glob("*/*.json"))
        for r in map_event(json.loads(f.read_text()), options).records
    ]
    assert {r["type"] for r in produced} == {"change", "usage", "deployment", "incident"}
    result = ingest_records(duck_store, produced, settings, source="webhook:gitlab")
    assert result.problems == []
    assert set(stored(duck_store, "deployment", "id", "commit_sha")) == {
        ("root/test-deployment-webhooks/deployments/15", "279484c09fbe69ededfced8c1bb6e6d24616b468")
    }
