"""GitHub releases as deployments (setting `webhooks.github_release_deployments`), and what the
Data page and `GET /api/v1/admin/status` show of webhooks: each source's last delivery and
counters, and the refused deliveries — kept in the process's memory, never in the store."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.web import create_app
from heatlens.web.refusals import WebhookActivity
from tests.test_webhooks import GITHUB_SECRET, github_signature, post_github, raw

RELEASE = raw("github/release.published.json")  # Codertocat/Hello-World 0.0.1, target master


def _client(tmp_path: Path, settings: Settings, **update: object) -> TestClient:
    configured = settings.model_copy(
        update={"webhooks_github_secret": SecretStr(GITHUB_SECRET), **update}
    )
    return TestClient(create_app(configured, f"duckdb:///{tmp_path / 'd.duckdb'}"))


@pytest.fixture
def client(tmp_path: Path, settings: Settings) -> Iterator[TestClient]:
    with _client(tmp_path, settings) as c:
        yield c


def _store(client: TestClient) -> Store:
    store: Store = client.app.state.service.store  # type: ignore[attr-defined]
    return store


def text_of(page: str) -> str:
    page = re.sub(r"<script.*?</script>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


# -- releases -------------------------------------------------------------------------------------


def test_release_is_ignored_by_default_naming_the_setting(client: TestClient) -> None:
    response = post_github(client, "release", RELEASE, "r-1")
    assert response.status_code == 202
    assert response.json()["status"] == "ignored"
    assert "webhooks.github_release_deployments" in response.json()["reason"]
    assert _store(client).rows("deployment") == []


@pytest.mark.parametrize("setting", [True, ["Codertocat/Hello-World"], ["Hello-World"]])
def test_release_is_a_deployment_when_configured(
    tmp_path: Path, settings: Settings, setting: object
) -> None:
    with _client(tmp_path, settings, webhooks_github_release_deployments=setting) as client:
        assert post_github(client, "release", RELEASE, "r-1").status_code == 200
        [row] = _store(client).rows("deployment")
    # from release.published.json, by hand: tag 0.0.1 of Hello-World, published 15:20:53Z
    assert row["id"] == "Hello-World@0.0.1"
    assert (row["service"], row["environment"], row["result"]) == (
        "Hello-World",
        "production",
        "success",
    )
    assert row["finished_at"] == datetime.fromisoformat("2019-05-15T15:20:53+00:00")
    assert row["commit_sha"] is None  # target_commitish "master" is no sha
    assert row["source"] == "webhook:github"


def test_release_of_an_unlisted_repository_is_ignored(tmp_path: Path, settings: Settings) -> None:
    with _client(tmp_path, settings, webhooks_github_release_deployments=["acme/api"]) as client:
        response = post_github(client, "release", RELEASE, "r-1")
        assert response.status_code == 202
        assert "Codertocat/Hello-World" in response.json()["reason"]


# -- refusals and the Data page -------------------------------------------------------------------


def _refuse_three(client: TestClient) -> None:
    body = raw("github/push.drone.json")
    bad = post_github(client, "push", body, "x-1", github_signature(body, "guess"))
    assert bad.status_code == 401
    # GitLab is not configured on this server
    assert client.post("/webhooks/gitlab", content=b"{}").status_code == 404
    # signed, but a push without its repository
    broken = json.dumps({"commits": [{"id": "1" * 40}]}).encode()
    assert post_github(client, "push", broken, "x-2").status_code == 422


def test_refusals_write_nothing_and_are_in_admin_status(client: TestClient) -> None:
    _refuse_three(client)
    store = _store(client)
    assert store.sync_states() == []
    assert store.counts_by_source() == []
    refused = client.get("/api/v1/admin/status").json()["webhook_refusals"]
    assert refused["total"] == 3 and refused["ring"] == 50
    assert refused["counts"] == [
        {"source": "github", "status": 401, "refused": 1},
        {"source": "github", "status": 422, "refused": 1},
        {"source": "gitlab", "status": 404, "refused": 1},
    ]
    last = refused["last"]  # newest first
    assert [(r["source"], r["status"], r["code"]) for r in last] == [
        ("github", 422, "invalid_payload"),
        ("gitlab", 404, "webhook_not_configured"),
        ("github", 401, "bad_signature"),
    ]
    assert {r["client"] for r in last} == {"testclient"}  # TestClient's peer address
    assert last[2]["event"] == "push"
    assert "webhooks.gitlab_token" in last[1]["reason"]


def test_data_page_shows_deliveries_and_refusals(client: TestClient) -> None:
    assert "No webhook delivery has been refused" in text_of(client.get("/data").text)
    assert post_github(client, "push", raw("github/push.drone.json"), "d-1").status_code == 200
    assert post_github(client, "ping", b'{"zen": "Design for failure."}', "d-2").status_code == 202
    _refuse_three(client)
    page = text_of(client.get("/data").text)  # the same data version: not the cached page
    # the github row: last delivery the ping, 2 deliveries, 1 ignored with its reason
    assert re.search(
        r"github \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC ping 2 1 ping : event 'ping' is not mapped",
        page,
    ), page
    assert "3 refused since this server process started: github 401 × 1, github 422 × 1, " in page
    assert "gitlab 404 × 1" in page
    assert re.search(r"UTC github 401 bad_signature testclient push the X-Hub-Signature-256", page)
    assert re.search(r"UTC gitlab 404 webhook_not_configured testclient .*GitLab webhook", page)
    assert "keeps the last 50 in memory" in page
    # the delivery-id states are no syncs
    assert "webhook-delivery:" not in page


def test_the_ring_keeps_the_last_ones_and_counts_all() -> None:
    ring = WebhookActivity(size=3)
    for n in range(5):
        ring.refused("github", 401, "bad_signature", f"10.0.0.{n}", "bad")
    snap = ring.snapshot()
    assert snap["total"] == 5
    assert [r["client"] for r in snap["last"]] == ["10.0.0.4", "10.0.0.3", "10.0.0.2"]
    assert snap["counts"] == [{"source": "github", "status": 401, "refused": 5}]
    ring.refused("github", 401, "bad_signature", "10.0.0.9", "bad", event="e" * 10_000)
    assert ring.snapshot()["last"][0]["event"] == "e" * 100  # a sender's header, kept short
