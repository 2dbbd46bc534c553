"""The server's security model in-process (docs/security.md): scopes on pages, team scoping of
explain, login CSRF, bad input as 4xx, headers on 500s, reads that do not wait for each other,
the cost bound and the cost-counting rate limit, uploads. Findings that need a real server
(revocation, memory, slow clients, SIGTERM, forwarded headers) are in test_security_serve.py."""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from heatlens.application import LocalApplication
from heatlens.ingest import ingest_records
from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.store.tokens import create_token
from heatlens.web import create_app
from heatlens.web.limits import RateLimiter
from tests.conftest import record

RECORDS = [
    record("team", id="alpha"),
    record("team", id="beta"),
    record("service", id="api", team="alpha"),
    record("service", id="db", team="beta"),
    record("deployment", id="d1", service="api", finished_at="2026-03-03T10:00:00Z"),
    # beta deploys a service nobody registered: an organisation-wide warning
    record("deployment", id="d2", service="ghost", team="beta", finished_at="2026-03-04T10:00:00Z"),
    *(
        record(
            "usage",
            id=f"u{i}",
            ts=f"2026-03-0{i}T10:00:00Z",
            capability="ci",
            team=team,
            outcome="success",
        )
        for i, team in ((1, "alpha"), (2, "alpha"), (3, "beta"))
    ),
]
EXPLAIN = {"metric": "dora.deployments", "period": "2026-03-03", "grain": "week"}
PAGES = [
    "/",
    "/dora",
    "/data",
    "/teams/alpha",
    "/capabilities/ci",
    "/explain?metric=dora.deployments&period=2026-03-03&segment=team=alpha",
]


@pytest.fixture
def store_url(tmp_path: Path, settings: Settings) -> str:
    url = f"duckdb:///{tmp_path / 'security.duckdb'}"
    with Store.open(url) as store:
        ingest_records(store, RECORDS, settings, source="file:t.ndjson")
    return url


@pytest.fixture
def secrets_(store_url: str) -> dict[str, str]:
    with Store.open(store_url) as store:
        specs = {"read": ((), "read"), "ingest": ((), "ingest"), "admin": ((), "admin")}
        found = {name: create_token(store, scope, teams=t)[1] for name, (t, scope) in specs.items()}
        found["alpha"] = create_token(store, "read", teams=("alpha",))[1]
    return found


def _client(url: str, settings: Settings, **kw: Any) -> TestClient:
    return TestClient(create_app(settings, url), follow_redirects=False, **kw)


@pytest.fixture
def client(store_url: str, settings: Settings, secrets_: dict[str, str]) -> Iterator[TestClient]:
    with _client(store_url, settings) as c:
        yield c


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# -- 2. an ingest token reads nothing -----------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_an_ingest_token_reads_no_dashboard_page(
    client: TestClient, secrets_: dict[str, str], page: str
) -> None:
    refused = client.get(page, headers=_bearer(secrets_["ingest"]))
    assert refused.status_code == 403
    assert "scope 'ingest'" in html.unescape(refused.text)
    assert client.get(page, headers=_bearer(secrets_["read"])).status_code == 200


def test_an_ingest_token_reads_neither_the_api_nor_the_html_report(
    client: TestClient, secrets_: dict[str, str]
) -> None:
    ingest = _bearer(secrets_["ingest"])
    assert client.get("/api/v1/explain", params=EXPLAIN, headers=ingest).status_code == 403
    assert client.get("/api/v1/report.html", headers=ingest).status_code == 403


# -- 5. team-scoped explain shows no organisation-wide warning ---------------------------------


def test_team_scoped_explain_leaves_out_other_teams_warnings(
    client: TestClient, secrets_: dict[str, str]
) -> None:
    params = {**EXPLAIN, "segment": "team=alpha"}
    org = client.get("/api/v1/explain", params=params, headers=_bearer(secrets_["read"])).json()
    assert any(n.startswith("unknown_services:") for n in org["notes"])  # beta's ghost service
    scoped = client.get("/api/v1/explain", params=params, headers=_bearer(secrets_["alpha"]))
    assert scoped.status_code == 200
    assert scoped.json()["total"] == org["total"] == 1
    assert not any("unknown_services" in n for n in scoped.json()["notes"])
    page = client.get(PAGES[-1], headers=_bearer(secrets_["alpha"]))
    assert page.status_code == 200 and "unknown_services" not in page.text
    assert "unknown_services" in client.get(PAGES[-1], headers=_bearer(secrets_["read"])).text


# -- 6. login CSRF ------------------------------------------------------------------------------


def test_a_login_posted_from_another_site_is_refused(
    client: TestClient, secrets_: dict[str, str]
) -> None:
    form = {"token": secrets_["read"], "next": "/"}
    forged = client.post("/login", data=form, headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403 and "set-cookie" not in forged.headers
    forged = client.post("/login", data=form, headers={"Referer": "https://evil.example/x"})
    assert forged.status_code == 403 and "set-cookie" not in forged.headers
    forged = client.post("/login", data=form, headers={"Sec-Fetch-Site": "cross-site"})
    assert forged.status_code == 403 and "set-cookie" not in forged.headers
    hidden = {"Origin": "null"}  # a posting page with Referrer-Policy: no-referrer
    assert client.post("/login", data=form, headers=hidden).status_code == 403
    modern = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/login", data=form, headers=modern).status_code == 303
    same = client.post("/login", data=form, headers={"Origin": "http://testserver"})
    assert same.status_code == 303 and "heatlens_session=" in same.headers["set-cookie"]


# -- 7. bad input is a 4xx; a 500 keeps the security headers ----------------------------------


def test_a_nul_byte_and_an_unknown_grain_are_400s(
    client: TestClient, secrets_: dict[str, str]
) -> None:
    read = _bearer(secrets_["read"])
    nul = client.get(
        "/api/v1/explain?metric=dora.deployments&period=2026-03-03&segment=team=al%00pha",
        headers=read,
    )
    assert nul.status_code == 400 and "NUL" in nul.json()["error"]["message"]
    assert client.get("/teams/al%00pha", headers=read).status_code == 400
    grain = client.get("/api/v1/explain", params={**EXPLAIN, "grain": "fortnight"}, headers=read)
    assert grain.status_code == 400 and "unknown grain 'fortnight'" in grain.text
    page = client.get("/explain?metric=dora.deployments&period=2026-03-03&grain=x", headers=read)
    assert page.status_code == 400 and "unknown grain" in page.text


def test_an_unexpected_error_keeps_the_security_headers(
    store_url: str, settings: Settings, secrets_: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: LocalApplication) -> dict[str, Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(LocalApplication, "status", broken)
    with _client(store_url, settings, raise_server_exceptions=False) as c:
        r = c.get("/api/v1/admin/status", headers=_bearer(secrets_["admin"]))
    assert r.status_code == 500 and "boom" not in r.text
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"


# -- 4. reads do not wait for each other; cost is bounded and counted --------------------------


def test_a_long_read_holds_up_neither_healthz_nor_other_reads(
    client: TestClient, secrets_: dict[str, str]
) -> None:
    service = client.app.state.service  # type: ignore[attr-defined]
    started, release = threading.Event(), threading.Event()

    def long_read(store: Store) -> None:
        started.set()
        release.wait(60)

    holder = threading.Thread(target=service.read, args=(long_read,))
    holder.start()
    answers: dict[str, int] = {}

    def others() -> None:
        answers["healthz"] = client.get("/healthz").status_code
        metrics = client.get(
            "/api/v1/metrics",
            params={"metric": "dora.deployments"},
            headers=_bearer(secrets_["read"]),
        )
        answers["metrics"] = metrics.status_code

    try:
        assert started.wait(30)
        asking = threading.Thread(target=others)
        asking.start()
        asking.join(60)  # a deadline, not a wait for something: they must not need the long read
        assert answers == {"healthz": 200, "metrics": 200}
    finally:
        release.set()
        holder.join(60)


def test_a_report_over_the_cost_bound_is_refused_before_any_work(
    store_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    computed: list[str] = []
    for name in ("metrics", "report", "report_html"):
        original = getattr(LocalApplication, name)

        def spy(self: Any, *a: Any, _name: str = name, _f: Any = original, **k: Any) -> Any:
            computed.append(_name)
            return _f(self, *a, **k)

        monkeypatch.setattr(LocalApplication, name, spy)
    small = settings.model_copy(
        update={"server_max_report_periods": 100, "server_max_report_cells": 150}
    )
    with _client(store_url, small) as c:
        # 101 days: more periods than allowed
        r = c.get(
            "/api/v1/metrics", params={"grain": "day", "from": "2026-01-01", "to": "2026-04-12"}
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "too_expensive"
        assert "101 periods of a day" in r.json()["error"]["message"]
        # 2 teams × 80 days = 160 cells
        params = {"grain": "day", "from": "2026-01-01", "to": "2026-03-22", "by": "team"}
        r = c.get("/api/v1/report", params=params)
        assert r.status_code == 400
        assert "80 periods × 2 segments = 160 cells" in r.json()["error"]["message"]
        r = c.get("/api/v1/report.html", params={"grain": "day", "from": "1970-01-01"})
        assert r.status_code == 400
        page = c.get("/dora?grain=day&from=2026-01-01&to=2026-04-12")
        assert page.status_code == 400 and "server.max_report_periods" in page.text
        assert computed == []
        assert c.get("/api/v1/metrics", params={**params, "to": "2026-02-01"}).status_code == 200
    assert computed == ["metrics"]


def test_the_rate_limit_counts_store_work(
    store_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every read "takes" 1 s of the store; a report is two reads (its cost, then the report):
    # 1 s free, then 10 units of 0.1 s
    clock = iter(float(i) for i in range(10_000))
    monkeypatch.setattr(
        "heatlens.web.service.time",
        SimpleNamespace(perf_counter=lambda: next(clock)),
        raising=False,
    )
    limited = settings.model_copy(update={"server_rate_limit_per_minute": 20})
    with _client(store_url, limited) as c:
        c.app.state.service.limiter.clock = lambda: 0.0  # type: ignore[attr-defined]
        ask = {"metric": "dora.deployments", "from": "2026-03-02", "to": "2026-03-09"}
        assert c.get("/api/v1/metrics", params=ask).status_code == 200  # 1 + 10
        assert c.get("/api/v1/metrics", params=ask).status_code == 200  # 12 + 10
        refused = c.get("/api/v1/metrics", params=ask)  # 23 > 20
        assert refused.status_code == 429
        # /healthz is no read of the pool: it costs nothing and is never limited
        assert c.get("/healthz").status_code == 200


# -- 9. the limiter: no lookup past the limit, a table that forgets ----------------------------


def test_a_request_past_the_limit_is_refused_before_its_token_is_looked_up(
    store_url: str, settings: Settings, secrets_: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import heatlens.web.auth as auth

    lookups: list[str] = []
    verify = auth.verify_token

    def counted(store: Store, secret: str) -> Any:
        lookups.append(secret)
        return verify(store, secret)

    monkeypatch.setattr(auth, "verify_token", counted)
    limited = settings.model_copy(update={"server_rate_limit_per_minute": 2})
    with _client(store_url, limited) as c:
        c.app.state.service.limiter.clock = lambda: 0.0  # type: ignore[attr-defined]
        read = _bearer(secrets_["read"])
        for _ in range(2):
            assert c.get("/api/v1/admin/tokens", headers=read).status_code == 403
        assert c.get("/api/v1/admin/tokens", headers=read).status_code == 429
    assert len(lookups) == 2


def test_inventing_token_ids_buys_no_fresh_allowance(
    store_url: str, settings: Settings, secrets_: dict[str, str]
) -> None:
    limited = settings.model_copy(update={"server_rate_limit_per_minute": 3})
    with _client(store_url, limited) as c:
        c.app.state.service.limiter.clock = lambda: 0.0  # type: ignore[attr-defined]
        codes = [
            c.get("/healthz").status_code,
            *(
                c.get("/api/v1/metrics", headers=_bearer(f"hl_fake{i}_x")).status_code
                for i in range(5)
            ),
        ]
    assert codes == [200, 401, 401, 401, 429, 429]


def test_the_limiter_forgets_quiet_clients() -> None:
    now = [0.0]
    limiter = RateLimiter(5, clock=lambda: now[0])
    for i in range(1000):
        assert limiter.hit(f"client:10.0.{i // 256}.{i % 256}") is None
    assert len(limiter) == 1000
    now[0] = 61.0
    assert limiter.hit("client:10.1.0.1") is None
    assert len(limiter) == 1


# -- 3 and 8. bodies and uploads ----------------------------------------------------------------


def test_an_admin_body_is_not_read_before_authentication(
    client: TestClient, secrets_: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[int] = []

    def body() -> Iterator[bytes]:
        for _ in range(64):
            read.append(1)
            yield b" " * 65536

    for path in ("/api/v1/admin/tokens", "/api/v1/admin/delete", "/api/v1/admin/ingest"):
        read.clear()
        r = client.post(path, content=body(), headers={"Content-Type": "application/json"})
        assert r.status_code == 401
    limit = client.app.state.service.settings.server_max_request_bytes  # type: ignore[attr-defined]
    big = b'{"scope": "read", "name": "' + b"x" * limit + b'"}'
    r = client.post("/api/v1/admin/tokens", content=big, headers=_bearer(secrets_["admin"]))
    assert r.status_code == 413
    ok = client.post(
        "/api/v1/admin/tokens", json={"scope": "read"}, headers=_bearer(secrets_["admin"])
    )
    assert ok.status_code == 201


def test_uploads_share_a_quota_and_names_are_whole_names(
    tmp_path: Path, settings: Settings
) -> None:
    small = settings.model_copy(update={"server_max_upload_bytes": 1000})
    with _client(f"duckdb:///{tmp_path / 'up.duckdb'}", small) as c:
        first = c.put("/api/v1/admin/uploads/a.ndjson", content=b"x" * 600)
        assert first.status_code == 201
        second = c.put("/api/v1/admin/uploads/b.ndjson", content=b"x" * 600)
        assert second.status_code == 413 and "pending uploads" in second.text
        newline = c.put("/api/v1/admin/uploads/c.ndjson%0A", content=b"x")
        assert newline.status_code == 400
        uploads = c.app.state.uploads.root  # type: ignore[attr-defined]
        assert [p.name for p in uploads.iterdir()] == [first.json()["upload"]]
    assert not uploads.exists()  # removed with the app


def test_an_upload_nobody_ingests_expires_after_an_hour(monkeypatch: pytest.MonkeyPatch) -> None:
    from heatlens.web.uploads import EXPIRY, Uploads

    now = [0.0]
    monkeypatch.setattr("heatlens.web.uploads.time", SimpleNamespace(monotonic=lambda: now[0]))
    uploads = Uploads(quota=1000)
    try:
        old, path = uploads.new("a.ndjson")
        path.write_bytes(b"x")
        uploads.grow(old, 1, "a.ndjson")
        now[0] = EXPIRY - 1
        kept, _ = uploads.new("b.ndjson")
        assert {p.name for p in uploads.root.iterdir()} == {old, kept}
        now[0] = EXPIRY + 1
        uploads.new("c.ndjson")
        assert old not in {p.name for p in uploads.root.iterdir()}
        assert kept in {p.name for p in uploads.root.iterdir()}
    finally:
        uploads.discard_all()
