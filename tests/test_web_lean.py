"""The lean ingest routes (heatlens.web.lean) and the token cache behind them: a live token is
looked up once, and creating or revoking a token takes effect on the very next request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.store import tokens as token_module
from heatlens.store.tokens import create_token
from heatlens.web import create_app
from tests.conftest import record

SECURITY = {"x-content-type-options": "nosniff", "x-frame-options": "DENY"}


def _usage(id_: str) -> list[dict[str, Any]]:
    return [record("usage", id=id_, ts="2026-03-02T10:00:00Z", capability="ci", team="t")]


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The store lookups of tokens made (verify_token, has_tokens), by name."""
    calls: list[str] = []
    for name in ("verify_token", "has_tokens"):
        real = getattr(token_module, name)

        def spy(*args: Any, real: Any = real, name: str = name) -> Any:
            calls.append(name)
            return real(*args)

        monkeypatch.setattr(token_module, name, spy)
    return calls


def test_a_live_token_is_looked_up_once_and_a_revoked_one_refused_at_once(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"duckdb:///{tmp_path / 'lean.duckdb'}"
    with Store.open(url) as store:
        ingest = create_token(store, "ingest")
        admin_secret = create_token(store, "admin")[1]
    calls = _lookups(monkeypatch)
    with TestClient(create_app(settings, url)) as client:
        for n in range(3):
            answer = client.post("/api/v1/events", json=_usage(f"u{n}"), headers=_bearer(ingest[1]))
            assert answer.status_code == 201
            assert {k: answer.headers[k] for k in SECURITY} == SECURITY
        assert calls.count("verify_token") == 1  # the two later requests: from the cache
        revoked = client.post(
            f"/api/v1/admin/tokens/{ingest[0].id}/revoke", headers=_bearer(admin_secret)
        )
        assert revoked.status_code == 200
        refused = client.post("/api/v1/events", json=_usage("u9"), headers=_bearer(ingest[1]))
    assert refused.status_code == 401
    assert refused.json()["error"] == {
        "code": "unauthorized",
        "message": "the token is unknown or revoked",
        "details": [],
    }
    assert refused.headers["www-authenticate"] == "Bearer"


def test_an_open_server_closes_with_its_first_token(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"duckdb:///{tmp_path / 'open.duckdb'}"
    calls = _lookups(monkeypatch)
    with TestClient(create_app(settings, url)) as client:
        for n in range(3):
            assert client.post("/api/v1/events", json=_usage(f"u{n}")).status_code == 201
        # startup asked once, the first request once: the others were answered from the cache
        assert calls.count("has_tokens") <= 2
        made = client.post("/api/v1/admin/tokens", json={"scope": "ingest"})
        assert made.status_code == 201
        refused = client.post("/api/v1/events", json=_usage("u9"))
        assert refused.status_code == 401
        accepted = client.post(
            "/api/v1/events", json=_usage("u9"), headers=_bearer(made.json()["secret"])
        )
        assert accepted.status_code == 201


def test_other_methods_and_a_query_string_go_through_fastapi(
    tmp_path: Path, settings: Settings
) -> None:
    url = f"duckdb:///{tmp_path / 'other.duckdb'}"
    with TestClient(create_app(settings, url)) as client:
        wrong = client.get("/api/v1/events")
        nul = client.post("/api/v1/events?x=%00", json=_usage("u1"))
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert nul.status_code == 400 and "NUL" in nul.json()["error"]["message"]
