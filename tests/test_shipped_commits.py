"""Shipped commits of webhook deployments (DESIGN §3, Four Keys' method): the stored pushes of the
service between its previously deployed sha and this one, by `committed_at`; else only the sha.
Expected lists are written by hand from the timelines below."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from heatlens.ingest import ingest_records
from heatlens.ingest.partial import overlay_stored
from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.web import create_app
from tests.test_webhooks import GITHUB_SECRET, post_github, raw

Record = dict[str, Any]


def change(sha: str, at: str, service: str = "api", repo: str = "acme/api") -> Record:
    return {
        "type": "change",
        "id": sha,
        "committed_at": f"2026-03-02T{at}:00Z",
        "service": service,
        "repo": repo,
    }


def deployment(did: str, sha: str, at: str, **extra: Any) -> Record:
    return {
        "type": "deployment",
        "id": did,
        "service": "api",
        "finished_at": f"2026-03-02T{at}:00Z",
        "commit_sha": sha,
        **extra,
    }


def deliver(store: Store, settings: Settings, records: list[Record]) -> list[Record]:
    """What the webhook writer does: overlay on the stored records, then ingest."""
    merged = overlay_stored(store, records)
    ingest_records(store, merged, settings, source="webhook:test")
    return merged


def commits(store: Store, did: str) -> list[str]:
    [row] = store.rows("deployment", ids=[did])
    return list(row["commits"] or [])


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as s:
        yield s


def test_push_push_deploy_push_deploy(store: Store, settings: Settings) -> None:
    deliver(store, settings, [change("a1", "09:00"), change("a2", "09:05")])  # push 1
    deliver(store, settings, [change("b1", "10:00"), change("b2", "10:10")])  # push 2
    # another service's commit, and another repository of this service, inside the window
    deliver(store, settings, [change("w1", "10:30", service="web", repo="acme/web")])
    deliver(store, settings, [change("o1", "10:40", repo="acme/other")])
    # the service's first deployment: nothing deployed before it, so only its sha
    deliver(store, settings, [deployment("d1", "b2", "10:20")])
    assert commits(store, "d1") == ["b2"]
    deliver(store, settings, [change("c1", "11:00"), change("c2", "11:05"), change("c3", "11:10")])
    # a failed one and a staging one in between are not "previously deployed" for production
    deliver(store, settings, [deployment("f1", "c1", "11:20", result="failure")])
    deliver(store, settings, [deployment("s1", "c1", "11:25", environment="staging")])
    deliver(store, settings, [deployment("d2", "c2", "11:30")])
    # committed after b2 (10:10) up to c2 (11:05), of service api in repo acme/api
    assert commits(store, "d2") == ["c1", "c2"]
    deliver(store, settings, [deployment("d3", "c3", "11:40")])
    assert commits(store, "d3") == ["c3"]  # previous is d2's c2 now


def test_first_deployment_of_a_service_ships_only_its_sha(store: Store, settings: Settings) -> None:
    deliver(store, settings, [change("a1", "09:00"), change("a2", "09:05")])
    deliver(store, settings, [deployment("other", "zz", "08:00", service="web")])
    deliver(store, settings, [deployment("d1", "a2", "10:00")])
    assert commits(store, "d1") == ["a2"]


def test_listed_commits_are_kept(store: Store, settings: Settings) -> None:
    deliver(store, settings, [change("a1", "09:00"), change("a2", "09:05"), change("a3", "09:10")])
    deliver(store, settings, [deployment("d1", "a1", "09:30")])
    deliver(store, settings, [deployment("d2", "a3", "10:00", commits=["a3"])])
    assert commits(store, "d2") == ["a3"]  # not [a2, a3]: the payload said which


def test_redelivered_status_keeps_the_list(store: Store, settings: Settings) -> None:
    deliver(store, settings, [change("a1", "09:00"), change("a2", "09:05")])
    deliver(store, settings, [deployment("d1", "a1", "09:30")])
    deliver(store, settings, [deployment("d2", "a2", "10:00")])
    assert commits(store, "d2") == ["a2"]
    # a commit inside d2's window arrives late; the same status is delivered again
    deliver(store, settings, [change("late", "09:02")])
    merged = deliver(store, settings, [deployment("d2", "a2", "10:00")])
    assert merged[0]["commits"] == ["a2"]
    assert commits(store, "d2") == ["a2"]


def test_rollback_ships_only_its_sha(store: Store, settings: Settings) -> None:
    deliver(store, settings, [change("a1", "09:00"), change("a2", "09:05")])
    deliver(store, settings, [deployment("d1", "a2", "09:30")])
    deliver(store, settings, [deployment("d2", "a1", "10:00", kind="rollback")])
    assert commits(store, "d2") == ["a1"]


def test_push_and_deployment_in_one_write(store: Store, settings: Settings) -> None:
    deliver(store, settings, [change("a1", "09:00"), deployment("d1", "a1", "09:30")])
    merged = deliver(
        store,
        settings,
        [change("b1", "10:00"), change("b2", "10:05"), deployment("d2", "b2", "11:00")],
    )
    assert merged[-1]["commits"] == ["b1", "b2"]


# -- through the GitHub webhook -------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path, settings: Settings) -> Iterator[TestClient]:
    configured = settings.model_copy(update={"webhooks_github_secret": SecretStr(GITHUB_SECRET)})
    with TestClient(create_app(configured, f"duckdb:///{tmp_path / 'h.duckdb'}")) as c:
        yield c


def _push(shas_at: list[tuple[str, str]]) -> bytes:
    payload = json.loads(raw("github/push.drone.json"))
    template = payload["commits"][0]
    payload["commits"] = [{**copy.deepcopy(template), "id": s, "timestamp": t} for s, t in shas_at]
    return json.dumps(payload).encode()


def _status(deployment_id: int, sha: str, at: str) -> bytes:
    payload = json.loads(raw("github/deployment_status.json"))
    payload["deployment"]["id"] = deployment_id
    payload["deployment"]["sha"] = sha
    payload["deployment_status"]["updated_at"] = at
    return json.dumps(payload).encode()


def test_github_deployments_ship_the_pushed_commits(client: TestClient) -> None:
    x, y1, y2 = "1" * 40, "2" * 40, "3" * 40
    assert (
        post_github(client, "push", _push([(x, "2019-05-15T10:00:00Z")]), "p1").status_code == 200
    )
    first = _status(1, x, "2019-05-15T11:00:00Z")
    assert post_github(client, "deployment_status", first, "s1").status_code == 200
    pushed = _push([(y1, "2019-05-15T12:00:00Z"), (y2, "2019-05-15T12:30:00Z")])
    assert post_github(client, "push", pushed, "p2").status_code == 200
    second = _status(2, y2, "2019-05-15T13:00:00Z")
    assert post_github(client, "deployment_status", second, "s2").status_code == 200
    store: Store = client.app.state.service.store  # type: ignore[attr-defined]
    ids = ["Codertocat/Hello-World/deployments/1", "Codertocat/Hello-World/deployments/2"]
    rows = {r["id"]: list(r["commits"]) for r in store.rows("deployment", ids=ids)}
    assert rows == {ids[0]: [x], ids[1]: [y1, y2]}
    # the same status again under a new delivery id, and under the old one: the list stays
    assert post_github(client, "deployment_status", second, "s2").json()["status"] == "duplicate"
    assert post_github(client, "deployment_status", second, "s3").status_code == 200
    [row] = store.rows("deployment", ids=[ids[1]])
    assert list(row["commits"]) == [y1, y2]
