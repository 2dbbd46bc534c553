"""The HTTP API in-process: ingest by the file rules, the report, one error shape, tokens."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.store.tokens import create_token, revoke_token
from heatlens.web import create_app
from heatlens.web.limits import RateLimiter
from tests.conftest import Cli, record, stored

CORPUS = json.loads(
    (Path(__file__).parent / "fixtures" / "invalid_records.json").read_text(encoding="utf-8")
)
TEAM = record("team", id="payments", name="Payments")
USAGE = [
    record(
        "usage",
        id=f"u{i}",
        ts=f"2026-03-0{i}T10:00:00Z",
        capability="ci",
        actor="ana",
        team="payments",
        outcome="success",
    )
    for i in range(1, 4)
]
LIMIT = 4096


@pytest.fixture
def client(tmp_path: Path, settings: Settings) -> Iterator[TestClient]:
    small = settings.model_copy(update={"server_max_request_bytes": LIMIT})
    app = create_app(small, f"duckdb:///{tmp_path / 'api.duckdb'}")
    with TestClient(app) as c:
        yield c


def _store(client: TestClient) -> Store:
    store: Store = client.app.state.service.store  # type: ignore[attr-defined]
    return store


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert the one error shape and give its body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], list)
    return dict(body["error"])


def test_healthz_reports_the_data_version(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "data_version": 0}
    client.post("/api/v1/events", json=[TEAM])
    assert client.get("/healthz").json()["data_version"] == 1


def test_posted_records_are_stored_and_a_replay_changes_nothing(client: TestClient) -> None:
    first = client.post("/api/v1/events", json=[TEAM, *USAGE])
    assert first.status_code == 201
    assert first.json()["counts"] == {
        "team": {"inserted": 1, "updated": 0, "unchanged": 0},
        "usage": {"inserted": 3, "updated": 0, "unchanged": 0},
    }
    rows = stored(_store(client), "usage", "id", "source")
    assert rows == [("u1", "api"), ("u2", "api"), ("u3", "api")]

    again = client.post("/api/v1/events", json=[TEAM, *USAGE])
    assert again.status_code == 200
    assert again.json()["counts"]["usage"] == {"inserted": 0, "updated": 0, "unchanged": 3}


def test_ndjson_bodies_are_accepted(client: TestClient) -> None:
    body = "\n".join(json.dumps(r) for r in [TEAM, *USAGE]) + "\n"
    response = client.post(
        "/api/v1/events", content=body, headers={"Content-Type": "application/x-ndjson"}
    )
    assert response.status_code == 201
    assert response.json()["records"] == 4


def test_an_invalid_record_in_the_middle_stores_nothing(client: TestClient) -> None:
    response = client.post("/api/v1/events", json=[TEAM, {"type": "team"}, USAGE[0]])
    error = _error(response, 422, "invalid_records")
    assert error["details"] == [
        {
            "index": 2,
            "field": "id",
            "reason": "team.id is missing: required",
            "text": "request record 2: team.id is missing: required",
        }
    ]
    assert error["message"].startswith("1 invalid record(s) in the request; nothing was stored")
    assert _store(client).is_empty()


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_every_invalid_record_of_the_corpus_is_refused(
    client: TestClient, case: dict[str, Any]
) -> None:
    # written as a file would be: an infinite float is the JSON number 1e999
    body = json.dumps([TEAM, case["record"], USAGE[0]]).replace("Infinity", "1e999")
    response = client.post(
        "/api/v1/events", content=body, headers={"Content-Type": "application/json"}
    )
    error = _error(response, 422, "invalid_records")
    assert {d["index"] for d in error["details"]} == {2}
    assert sorted(d["reason"] for d in error["details"]) == sorted(case["messages"])
    assert _store(client).is_empty()


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b'[{"type": "team", "id": ', "application/json", 400, "invalid_json"),
        (b'{"type": "team", "id": "x"}', "application/json", 400, "invalid_json"),
        (b'[{"type": "team", "id": "x"}]', "text/plain", 415, "unsupported_media_type"),
        (b'[{"type": "team", "id": "\xff\xfe"}]', "application/json", 400, "invalid_utf8"),
        (b"[" * 50 + b"]" * 50, "application/json", 400, "invalid_json"),
        (b"[" * 100_000, "application/json", 413, "request_too_large"),
        (b'[{"type": "team", "id": NaN}]', "application/json", 400, "invalid_json"),
        (b"[1, 2]", "application/json", 422, "invalid_records"),
    ],
    ids=[
        "truncated",
        "not-an-array",
        "wrong-type",
        "bad-utf8",
        "deep",
        "oversize",
        "nan",
        "not-objects",
    ],
)
def test_bad_bodies_get_a_4xx_in_the_one_shape(
    client: TestClient, content: bytes, content_type: str, status: int, code: str
) -> None:
    response = client.post(
        "/api/v1/events", content=content, headers={"Content-Type": content_type}
    )
    _error(response, status, code)
    assert _store(client).is_empty()


def test_unknown_routes_and_methods_use_the_one_shape(client: TestClient) -> None:
    _error(client.get("/nope"), 404, "not_found")
    _error(client.delete("/api/v1/events"), 405, "method_not_allowed")
    _error(client.get("/api/v1/explain"), 422, "invalid_request")


# two teams over two weeks (Mon 2026-02-23 and Mon 2026-03-02): who used CI and how it went
MIXED = [
    record("team", id="payments"),
    record("team", id="search"),
    *(
        record("usage", id=i, ts=ts, capability="ci", actor=a, team=team, outcome=o)
        for i, ts, a, team, o in [
            ("m1", "2026-02-26T10:00:00Z", "ana", "payments", "success"),
            ("m2", "2026-03-02T10:00:00Z", "ana", "payments", "success"),
            ("m3", "2026-03-03T10:00:00Z", "bo", "payments", "failure"),
            ("m4", "2026-03-04T10:00:00Z", "cy", "search", "success"),
            ("m5", "2026-03-05T10:00:00Z", "cy", "search", "failure"),
            ("m6", "2026-03-08T23:59:00Z", "dee", "search", "success"),
        ]
    ),
]


def test_metrics_give_the_values_counted_by_hand(client: TestClient) -> None:
    client.post("/api/v1/events", json=MIXED)
    params = {
        "grain": "week",
        "from": "2026-02-23",
        "to": "2026-03-09",
        "by": "team",
        "metric": ["adoption.active_users", "task.attempts", "task.success_rate"],
    }
    response = client.get("/api/v1/metrics", params=params)
    assert response.status_code == 200
    doc = response.json()
    assert doc["schema"] == "heatlens.report/v1"
    assert (doc["grain"], doc["from"], doc["to"]) == ("week", "2026-02-23", "2026-03-09")
    got = {
        (r["metric"], r["period"], r["segment"]["team"]): (r["value"], r["n"])
        for r in doc["rows"]
        if r["n"]
    }
    assert got == {
        # week of 02-23: ana once, a success
        ("adoption.active_users", "2026-02-23", "payments"): (1, 1),
        ("task.attempts", "2026-02-23", "payments"): (1, 1),
        ("task.success_rate", "2026-02-23", "payments"): (1.0, 1),
        # week of 03-02: ana and bo, one success of two; cy twice and dee once, two of three
        ("adoption.active_users", "2026-03-02", "payments"): (2, 2),
        ("task.attempts", "2026-03-02", "payments"): (2, 2),
        ("task.success_rate", "2026-03-02", "payments"): (0.5, 2),
        ("adoption.active_users", "2026-03-02", "search"): (2, 2),
        ("task.attempts", "2026-03-02", "search"): (3, 3),
        ("task.success_rate", "2026-03-02", "search"): (2 / 3, 3),
    }


def test_bad_metric_parameters_are_a_400_with_the_engine_message(client: TestClient) -> None:
    error = _error(client.get("/api/v1/metrics", params={"grain": "fortnight"}), 400, "bad_request")
    assert "unknown grain 'fortnight'" in error["message"]
    _error(client.get("/api/v1/metrics", params={"from": "March"}), 400, "bad_request")


def test_explain_lists_the_records_behind_a_number(client: TestClient) -> None:
    client.post("/api/v1/events", json=MIXED)
    params = {"metric": "adoption.active_teams", "period": "2026-03-02", "grain": "week"}
    response = client.get("/api/v1/explain", params=params)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["schema"] == "heatlens.explain/v1"
    assert doc["metric"] == "adoption.active_teams" and doc["period"] == "2026-03-02"
    assert doc["row"]["value"] == 2  # payments and search
    assert doc["total"] == 5
    assert [(r["id"], r["team"]) for r in doc["records"]] == [
        ("m2", "payments"),
        ("m3", "payments"),
        ("m4", "search"),
        ("m5", "search"),
        ("m6", "search"),
    ]
    # one team's failures: only its records of that week
    failing = {
        "metric": "task.success_rate",
        "period": "2026-03-02",
        "grain": "week",
        "segment": "team=payments",
    }
    doc = client.get("/api/v1/explain", params=failing).json()
    assert doc["row"]["value"] == 0.5 and doc["row"]["segment"] == {"team": "payments"}
    # attempts that did not succeed first
    assert [(r["id"], r["outcome"]) for r in doc["records"]] == [
        ("m3", "failure"),
        ("m2", "success"),
    ]
    only = client.get("/api/v1/explain", params={**failing, "failures_only": "true"}).json()
    assert [r["id"] for r in only["records"]] == ["m3"] and only["matching"] == 1
    assert only["total"] == 2  # the records behind the number, failed or not
    _error(client.get("/api/v1/explain", params={**params, "metric": "nope"}), 400, "bad_request")


def test_once_a_token_exists_requests_need_one_of_the_right_scope(client: TestClient) -> None:
    store = _store(client)
    _, read = create_token(store, "read", name="dashboards")
    _, ingest = create_token(store, "ingest")

    _error(client.get("/api/v1/metrics"), 401, "unauthorized")
    bad = {"Authorization": "Bearer hl_nothing_here"}
    _error(client.get("/api/v1/metrics", headers=bad), 401, "unauthorized")
    as_read = {"Authorization": f"Bearer {read}"}
    _error(client.post("/api/v1/events", json=[TEAM], headers=as_read), 403, "forbidden")
    as_ingest = {"Authorization": f"Bearer {ingest}"}
    assert client.post("/api/v1/events", json=[TEAM], headers=as_ingest).status_code == 201
    assert client.get("/api/v1/metrics", headers=as_read).status_code == 200
    assert client.get("/healthz").status_code == 200  # liveness stays open


def test_admin_covers_every_scope_and_revoked_tokens_are_refused(client: TestClient) -> None:
    store = _store(client)
    admin, secret = create_token(store, "admin")
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.post("/api/v1/events", json=[TEAM], headers=headers).status_code == 201
    assert client.get("/api/v1/metrics", headers=headers).status_code == 200
    create_token(store, "read")  # keep the API closed after the revoke
    revoke_token(store, admin.id)
    _error(client.get("/api/v1/metrics", headers=headers), 401, "unauthorized")


def test_tokens_are_stored_hashed(client: TestClient) -> None:
    store = _store(client)
    token, secret = create_token(store, "read", teams=["payments"])
    tokens = store.table("api_token")
    [row] = tokens.filter(tokens.id == token.id).to_pyarrow().to_pylist()
    assert row["secret_hash"] != secret and secret not in row["secret_hash"]
    assert len(row["secret_hash"]) == 64
    assert list(row["teams"]) == ["payments"]


def test_responses_carry_security_headers(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_token_commands_create_list_and_revoke(run: Cli, tmp_path: Path) -> None:
    store = str(tmp_path / "cli.duckdb")
    created = run("--store", store, "token", "create", "--scope", "ingest", "--name", "ci")
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("hl_")
    listed = run("--store", store, "token", "list")
    assert "ci" in listed.stdout and "ingest" in listed.stdout and secret not in listed.stdout
    token_id = secret.removeprefix("hl_").split("_", 1)[0]
    assert run("--store", store, "token", "revoke", token_id).exit_code == 0
    unknown = run("--store", store, "token", "revoke", "nope")
    assert unknown.exit_code == 2 and "no token 'nope'" in unknown.stderr


def test_serve_refuses_an_open_api_beyond_loopback(run: Cli, tmp_path: Path) -> None:
    result = run("--store", str(tmp_path / "s.duckdb"), "serve", "--host", "0.0.0.0")
    assert result.exit_code == 2
    assert "create a token first" in result.stderr


def test_rate_limiter_window() -> None:
    now = [1000.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert limiter.hit("a") is None and limiter.hit("a") is None
    assert limiter.hit("a") == 60  # the oldest counted request leaves the window in 60 s
    assert limiter.hit("b") is None  # per key
    now[0] += 30
    assert limiter.hit("a") == 30
    now[0] += 30
    assert limiter.hit("a") is None  # the first two have left the window


def test_requests_past_the_limit_get_429_with_retry_after(
    tmp_path: Path, settings: Settings
) -> None:
    limited = settings.model_copy(update={"server_rate_limit_per_minute": 3})
    app = create_app(limited, f"duckdb:///{tmp_path / 'api.duckdb'}")
    with TestClient(app) as c:
        now = [0.0]
        c.app.state.service.limiter.clock = lambda: now[0]  # type: ignore[attr-defined]
        for _ in range(3):
            assert (
                c.get("/api/v1/metrics", params={"metric": "dora.deployments"}).status_code == 200
            )
        refused = c.get("/api/v1/metrics", params={"metric": "dora.deployments"})
        body = _error(refused, 429, "rate_limited")
        assert refused.headers["Retry-After"] == "60"
        assert "more than 3 requests (or their cost) in a minute" in body["message"]
        assert c.get("/healthz").status_code == 200  # health checks are not limited
        now[0] += 61
        assert c.get("/api/v1/metrics", params={"metric": "dora.deployments"}).status_code == 200


def test_a_team_scoped_read_token_sees_only_its_teams(client: TestClient) -> None:
    store = _store(client)
    _, admin = create_token(store, "admin")
    _, payments = create_token(store, "read", teams=["payments"])
    records = [
        {
            "type": "deployment",
            "id": f"d{i}",
            "service": "s",
            "team": team,
            "finished_at": "2026-03-03T10:00:00Z",
        }
        for i, team in enumerate(["payments", "search", "search"])
    ]
    posted = client.post(
        "/api/v1/events", json=records, headers={"Authorization": f"Bearer {admin}"}
    )
    assert posted.status_code == 201, posted.text
    auth = {"Authorization": f"Bearer {payments}"}
    params: dict[str, Any] = {
        "metric": "dora.deployments",
        "grain": "week",
        "from": "2026-03-02",
        "to": "2026-03-09",
    }
    _error(client.get("/api/v1/metrics", params=params, headers=auth), 403, "forbidden")
    by_team = client.get("/api/v1/metrics", params={**params, "by": "team"}, headers=auth)
    assert by_team.status_code == 200, by_team.text
    assert [(r["segment"], r["value"]) for r in by_team.json()["rows"]] == [
        ({"team": "payments"}, 1)
    ]
    everyone = client.get(
        "/api/v1/metrics",
        params={**params, "by": "team"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert sorted(r["value"] for r in everyone.json()["rows"]) == [1, 2]
    explain = {"metric": "dora.deployments", "period": "2026-03-03"}
    _error(
        client.get("/api/v1/explain", params={**explain, "segment": "team=search"}, headers=auth),
        403,
        "forbidden",
    )
    mine = client.get(
        "/api/v1/explain", params={**explain, "segment": "team=payments"}, headers=auth
    )
    assert mine.status_code == 200 and mine.json()["total"] == 1
