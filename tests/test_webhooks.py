"""Webhooks in-process: real payloads (tests/fixtures, see their SOURCE.txt) signed with real
HMACs; bad signatures store nothing, replays change nothing, partial records merge by id."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from heatlens.ingest import pseudonym
from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.store.deliveries import counters
from heatlens.web import create_app

FIXTURES = Path(__file__).parent / "fixtures"
GITHUB_SECRET = "It's a Secret to Everybody"  # GitHub's own example secret
GITLAB_TOKEN = "gitlab-shared-token"
PD_SECRET = "pagerduty-signing-secret"
PD_OLD_SECRET = "pagerduty-previous-secret"


def raw(path: str) -> bytes:
    return (FIXTURES / path).read_bytes()


def github_signature(body: bytes, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def pd_signature(body: bytes, secret: str) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def client(tmp_path: Path, settings: Settings) -> Iterator[TestClient]:
    configured = settings.model_copy(
        update={
            "webhooks_github_secret": SecretStr(GITHUB_SECRET),
            "webhooks_gitlab_token": SecretStr(GITLAB_TOKEN),
            "webhooks_pagerduty_secret": SecretStr(PD_SECRET),
        }
    )
    app = create_app(configured, f"duckdb:///{tmp_path / 'hooks.duckdb'}")
    with TestClient(app) as c:
        yield c


def _store(client: TestClient) -> Store:
    store: Store = client.app.state.service.store  # type: ignore[attr-defined]
    return store


def post_github(
    client: TestClient, event: str, body: bytes, delivery: str, signature: str | None = None
) -> Any:
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": signature if signature is not None else github_signature(body),
    }
    return client.post("/webhooks/github", content=body, headers=headers)


def post_pagerduty(client: TestClient, body: bytes, signature: str) -> Any:
    headers = {"Content-Type": "application/json", "X-PagerDuty-Signature": signature}
    return client.post("/webhooks/pagerduty", content=body, headers=headers)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- GitHub ---------------------------------------------------------------------------------------


def test_github_push_is_stored_as_the_change_written_by_hand(client: TestClient) -> None:
    body = raw("github/push.drone.json")
    response = post_github(client, "push", body, "d-1")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "stored"
    [row] = _store(client).rows("change")
    # from push.drone.json's head commit, read by hand
    assert row["id"] == "199eddf46df50de8d02e99bf1c5fdb4101338224"
    assert row["committed_at"] == at("2018-06-15T13:01:51-07:00")
    assert (row["author"], row["title"]) == ("Codertocat", "Update README")
    assert (row["repo"], row["service"]) == ("Codertocat/Hello-World", "Hello-World")
    assert row["source"] == "webhook:github"


def test_tampered_body_is_401_and_stores_nothing(client: TestClient) -> None:
    body = raw("github/push.drone.json")
    signature = github_signature(body)
    tampered = body.replace(b"Update README", b"Update READMX")
    assert tampered != body
    response = post_github(client, "push", tampered, "d-1", signature)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "bad_signature"
    missing = client.post("/webhooks/github", content=body, headers={"X-GitHub-Event": "push"})
    assert missing.status_code == 401
    wrong_secret = post_github(client, "push", body, "d-2", github_signature(body, "guess"))
    assert wrong_secret.status_code == 401
    assert _store(client).rows("change") == []
    assert counters(_store(client)) == []


def test_replayed_delivery_changes_nothing(client: TestClient) -> None:
    body = raw("github/push.drone.json")
    assert post_github(client, "push", body, "d-1").json()["status"] == "stored"
    store = _store(client)
    version = store.data_version()
    before = store.rows("change")
    again = post_github(client, "push", body, "d-1")
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "delivery": "d-1"}
    assert store.data_version() == version
    assert store.rows("change") == before
    [stats] = counters(store)
    assert stats["deliveries"] == 1


def test_unknown_event_is_202_ignored_and_counted(client: TestClient) -> None:
    body = raw("github/pull_request.opened.json")
    response = post_github(client, "pull_request", body, "d-1")
    assert response.status_code == 202
    assert response.json()["status"] == "ignored"
    ping = post_github(client, "ping", b'{"zen": "Keep it logically awesome."}', "d-2")
    assert ping.status_code == 202
    store = _store(client)
    assert store.rows("change") == []
    [stats] = counters(store)
    assert (stats["source"], stats["deliveries"], stats["ignored"]) == ("github", 2, 2)
    assert stats["last_ignored"] == {"event": "ping", "reason": "event 'ping' is not mapped"}
    status = client.app.state.application.status()  # type: ignore[attr-defined]
    assert status["webhooks"] == [stats]


def test_push_then_merged_pr_keeps_the_push_author_and_title(client: TestClient) -> None:
    push = raw("github/push.with-new-branch.json")
    assert post_github(client, "push", push, "d-push").status_code == 200
    # the real closed PR of the same repository, as GitHub sends it once merged (no public
    # merged payload exists): merged, merged_at = closed_at, and its merge commit re-addressed to
    # the pushed commit so both deliveries name one change
    pr = json.loads(raw("github/pull_request.closed.json"))
    pr["pull_request"]["merged"] = True
    pr["pull_request"]["merged_at"] = pr["pull_request"]["closed_at"]
    pr["pull_request"]["merge_commit_sha"] = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    body = json.dumps(pr).encode()
    response = post_github(client, "pull_request", body, "d-pr")
    assert response.status_code == 200, response.text
    [row] = _store(client).rows("change")
    assert row["id"] == "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
    # from the push, by hand
    assert (row["author"], row["title"]) == ("Codertocat", "Initial commit")
    # from the PR, by hand; the PR gives the merge commit's time as committed_at, and the later
    # non-null value wins (DESIGN §3)
    assert row["pr_opened_at"] == at("2019-05-15T15:20:33Z")
    assert row["merged_at"] == row["committed_at"] == at("2019-05-15T15:21:18Z")


# -- GitLab ---------------------------------------------------------------------------------------


def test_gitlab_token_checked_and_push_stored(client: TestClient) -> None:
    body = raw("gitlab/xanzy-go-gitlab/push.json")
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": "Push Hook"}
    bad = client.post("/webhooks/gitlab", content=body, headers={**headers, "X-Gitlab-Token": "x"})
    assert bad.status_code == 401
    assert _store(client).rows("change") == []
    good = {**headers, "X-Gitlab-Token": GITLAB_TOKEN, "X-Gitlab-Event-UUID": "u-1"}
    assert client.post("/webhooks/gitlab", content=body, headers=good).status_code == 200
    rows = {r["id"]: r for r in _store(client).rows("change")}
    # push.json's two commits, by hand
    assert set(rows) == {
        "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
        "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    }
    assert rows["da1560886d4f094c3e6c9ef40349f7d38b5d27d7"]["title"] == "fixed readme"
    assert rows["da1560886d4f094c3e6c9ef40349f7d38b5d27d7"]["committed_at"] == at(
        "2012-01-03T23:36:29+02:00"
    )
    version = _store(client).data_version()
    replay = client.post("/webhooks/gitlab", content=body, headers=good)
    assert replay.json()["status"] == "duplicate"
    assert _store(client).data_version() == version


# -- PagerDuty ------------------------------------------------------------------------------------


def test_pagerduty_rotated_secret_any_signature_passes(client: TestClient) -> None:
    body = raw("pagerduty/zulip/triggered_v3.json")
    both = f"{pd_signature(body, PD_OLD_SECRET)},{pd_signature(body, PD_SECRET)}"
    assert post_pagerduty(client, body, both).status_code == 200
    [row] = _store(client).rows("incident")
    assert (row["id"], row["severity"], row["service"]) == ("PFQZPSY", "high", "PA2P440")
    assert row["opened_at"] == at("2021-06-04T13:35:29.781Z")
    old_only = post_pagerduty(client, body, pd_signature(body, PD_OLD_SECRET))
    assert old_only.status_code == 401


def test_pagerduty_resolve_after_trigger_gives_both_times(client: TestClient) -> None:
    # the real trigger is of another incident: re-addressed to the resolve's PCPZE64 and given a
    # time before the real resolve (13:16:53.816); nothing else changed
    trigger = json.loads(raw("pagerduty/zulip/triggered_v3.json"))
    trigger["event"]["data"]["id"] = "PCPZE64"
    trigger["event"]["occurred_at"] = "2021-06-04T13:02:11.000Z"
    first = json.dumps(trigger).encode()
    assert post_pagerduty(client, first, pd_signature(first, PD_SECRET)).status_code == 200
    resolve = raw("pagerduty/zulip/resolved_v3.json")
    assert post_pagerduty(client, resolve, pd_signature(resolve, PD_SECRET)).status_code == 200
    [row] = _store(client).rows("incident")
    assert row["opened_at"] == at("2021-06-04T13:02:11Z")
    assert row["resolved_at"] == at("2021-06-04T13:16:53.816Z")
    # time to restore by hand: 13:02:11 → 13:16:53.816 = 14 min 42.816 s
    assert (row["resolved_at"] - row["opened_at"]).total_seconds() == 882.816
    # the trigger delivered again (same event id) changes nothing
    again = post_pagerduty(client, first, pd_signature(first, PD_SECRET))
    assert again.json()["status"] == "duplicate"
    assert _store(client).rows("incident") == [row]


def test_resolve_before_trigger_keeps_the_resolve(client: TestClient) -> None:
    resolve = raw("pagerduty/zulip/resolved_v3.json")
    assert post_pagerduty(client, resolve, pd_signature(resolve, PD_SECRET)).status_code == 200
    trigger = copy.deepcopy(json.loads(raw("pagerduty/zulip/triggered_v3.json")))
    trigger["event"]["data"]["id"] = "PCPZE64"
    trigger["event"]["occurred_at"] = "2021-06-04T13:02:11.000Z"
    late = json.dumps(trigger).encode()
    assert post_pagerduty(client, late, pd_signature(late, PD_SECRET)).status_code == 200
    [row] = _store(client).rows("incident")
    assert row["opened_at"] == at("2021-06-04T13:02:11Z")
    assert row["resolved_at"] == at("2021-06-04T13:16:53.816Z")


# -- configuration --------------------------------------------------------------------------------


def test_unconfigured_source_is_404_with_the_setting_to_set(
    tmp_path: Path, settings: Settings
) -> None:
    app = create_app(settings, f"duckdb:///{tmp_path / 'bare.duckdb'}")
    body = raw("github/push.drone.json")
    with TestClient(app) as c:
        response = post_github(c, "push", body, "d-1")
        assert response.status_code == 404
        assert "webhooks.github_secret" in response.json()["error"]["message"]
        assert c.app.state.service.store.rows("change") == []  # type: ignore[attr-defined]


def test_overlay_keeps_a_pseudonymised_author_as_it_is(tmp_path: Path, settings: Settings) -> None:
    """The push's author is stored pseudonymised; the PR's overlay carries the stored pseudonym,
    which ingest must not pseudonymise again."""
    keyed = settings.model_copy(
        update={
            "webhooks_github_secret": SecretStr(GITHUB_SECRET),
            "pseudonymise_key": SecretStr("k3y"),
        }
    )
    app = create_app(keyed, f"duckdb:///{tmp_path / 'keyed.duckdb'}")
    with TestClient(app) as c:
        assert (
            post_github(c, "push", raw("github/push.with-new-branch.json"), "a").status_code == 200
        )
        store: Store = c.app.state.service.store  # type: ignore[attr-defined]
        [pushed] = store.rows("change")
        assert pushed["author"] == pseudonym("k3y", "Codertocat")
        pr = json.loads(raw("github/pull_request.closed.json"))
        pr["pull_request"].update(
            merged=True,
            merged_at=pr["pull_request"]["closed_at"],
            merge_commit_sha="6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        )
        assert post_github(c, "pull_request", json.dumps(pr).encode(), "b").status_code == 200
        [row] = store.rows("change")
        assert row["author"] == pseudonym("k3y", "Codertocat")


def test_signed_payload_not_of_its_event_is_422(client: TestClient) -> None:
    body = raw("github/push.drone.json")  # a push sent as a pull_request: no `pull_request`
    response = post_github(client, "pull_request", body, "d-1")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_payload"
    assert _store(client).rows("change") == []
