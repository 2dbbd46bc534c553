"""The lean ingest routes (heatlens.web.lean) and the token cache behind them: a live token is
looked up once, and creating or revoking a token takes effect on the very next request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from heatlens.ingest import pipeline
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


def test_a_large_request_typed_as_read_is_counted_like_any_other(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request of 2,500 records (more than the writer types itself: quick.MAX_RECORDS) is
    typed as it is read and inserted in one statement when its ids are new; once they are
    stored it is merged, and the counts are those of the records, whichever way it went."""
    url = f"duckdb:///{tmp_path / 'typed.duckdb'}"
    batch = [r for n in range(2_500) for r in _usage(f"u{n:04d}")]
    changed = [dict(r, outcome="failure") if r["id"] == "u0007" else r for r in batch]
    inserts: list[tuple[int, int | None]] = []  # rows given to Store.insert_new, its answer
    real = Store.insert_new

    def spy(store: Store, rtype: Any, data: Any, select: str) -> int | None:
        inserts.append((data.num_rows, version := real(store, rtype, data, select)))
        return version

    monkeypatch.setattr(Store, "insert_new", spy)
    validated: list[object] = []  # passes the SQL rules judged
    real_validate = pipeline.validate

    def counted(*args: Any, **kwargs: Any) -> Any:
        validated.append(args[1])
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(pipeline, "validate", counted)
    with TestClient(create_app(settings, url)) as client:
        first = client.post("/api/v1/events", json=batch)
        assert first.status_code == 201
        assert first.json()["counts"]["usage"] == {"inserted": 2_500, "updated": 0, "unchanged": 0}
        assert len(inserts) == 1 and inserts[0][0] == 2_500 and inserts[0][1] is not None
        again = client.post("/api/v1/events", json=changed)
        assert again.status_code == 200
        assert again.json()["counts"]["usage"] == {"inserted": 0, "updated": 1, "unchanged": 2_499}
        # not inserted (its ids are stored: the insert wrote nothing) but merged, staged from
        # its types: no pass went through the SQL rules
        assert inserts[1:] == [(2_500, None)] and validated == []
    with Store.open(url) as store:
        rows = store.rows("usage")
    assert [r["id"] for r in rows] == [f"u{n:04d}" for n in range(2_500)]
    assert [r["id"] for r in rows if r["outcome"] == "failure"] == ["u0007"]
