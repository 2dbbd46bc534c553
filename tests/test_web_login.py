"""Browser login (DESIGN §5): a read token becomes an HttpOnly session cookie; a trusted auth
proxy's header may stand in for it; both give read access to the dashboard and the read API only,
and a team-scoped login sees its teams' pages and nothing organisation-wide."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from heatlens.ingest import ingest_records
from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.store.tokens import Token, create_token, revoke_token
from heatlens.web import create_app
from heatlens.web.auth import SESSION_COOKIE, Sessions
from tests.conftest import record

RECORDS = [
    record("team", id="alpha"),
    record("team", id="beta"),
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
PAGE = "/data"
TEAM_PAGE = "/teams/alpha?grain=month&from=2026-03-01&to=2026-04-01"


@pytest.fixture
def store_url(tmp_path: Path, settings: Settings) -> str:
    url = f"duckdb:///{tmp_path / 'login.duckdb'}"
    with Store.open(url) as store:
        ingest_records(store, RECORDS, settings, source="file:t.ndjson")
    return url


def _tokens(url: str, *specs: tuple[str, tuple[str, ...]]) -> list[str]:
    with Store.open(url) as store:
        return [create_token(store, scope, teams=teams)[1] for scope, teams in specs]


def _client(url: str, settings: Settings, **kw: Any) -> TestClient:
    return TestClient(create_app(settings, url), follow_redirects=False, **kw)


@pytest.fixture
def secrets_(store_url: str) -> list[str]:
    """read, ingest, read limited to alpha, admin."""
    return _tokens(store_url, ("read", ()), ("ingest", ()), ("read", ("alpha",)), ("admin", ()))


@pytest.fixture
def client(store_url: str, settings: Settings, secrets_: list[str]) -> Iterator[TestClient]:
    with _client(store_url, settings) as c:
        yield c


def _login(c: TestClient, secret: str, next_url: str = "/") -> Any:
    return c.post("/login", data={"token": secret, "next": next_url})


def test_without_tokens_the_dashboard_is_open(store_url: str, settings: Settings) -> None:
    with _client(store_url, settings) as c:
        assert c.get(PAGE).status_code == 200
        assert c.get("/login").headers["location"] == "/"


def test_pages_send_a_visitor_without_a_session_to_the_login_page(client: TestClient) -> None:
    r = client.get(TEAM_PAGE)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login?next=%2Fteams%2Falpha%3Fgrain%3Dmonth")
    form = client.get(r.headers["location"])
    assert form.status_code == 200 and 'name="token"' in form.text
    assert 'value="/teams/alpha?grain=month&amp;from=2026-03-01&amp;to=2026-04-01"' in form.text


def test_a_read_token_becomes_an_httponly_session_cookie(
    client: TestClient, secrets_: list[str]
) -> None:
    read = secrets_[0]
    r = _login(client, read, PAGE)
    assert r.status_code == 303 and r.headers["location"] == PAGE
    cookie = r.headers["set-cookie"]
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
    assert {"httponly", "max-age", "path"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "secure" not in attributes  # plain http here; see the https test
    assert "max-age=43200" in cookie.lower()  # server.session_hours = 12
    sid = client.cookies[SESSION_COOKIE]
    assert read not in cookie and sid not in read and len(sid) >= 40
    assert client.get(PAGE).status_code == 200
    # the session reads the API too
    assert client.get("/api/v1/metrics?metric=task.attempts").status_code == 200


def test_the_cookie_is_secure_over_https(
    store_url: str, settings: Settings, secrets_: list[str]
) -> None:
    with _client(store_url, settings, base_url="https://testserver") as c:
        cookie = _login(c, secrets_[0]).headers["set-cookie"]
    assert "secure" in {a.strip().lower() for a in cookie.split(";")}


def test_a_session_does_not_count_for_writes(client: TestClient, secrets_: list[str]) -> None:
    _login(client, secrets_[3])  # even an admin token's session is read-only
    r = client.post("/api/v1/events", json=[record("team", id="gamma")])
    assert r.status_code == 401


def test_wrong_tokens_and_ingest_tokens_cannot_log_in(
    client: TestClient, secrets_: list[str]
) -> None:
    r = _login(client, "hl_nope_nope")
    assert r.status_code == 401 and "unknown or revoked" in r.text
    r = _login(client, secrets_[1])
    assert r.status_code == 403 and "needs a read token" in r.text
    assert SESSION_COOKIE not in client.cookies


def test_login_only_redirects_within_the_server(client: TestClient, secrets_: list[str]) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        assert _login(client, secrets_[0], target).headers["location"] == "/"


def test_logout_ends_the_session(client: TestClient, secrets_: list[str]) -> None:
    _login(client, secrets_[0])
    sid = client.cookies[SESSION_COOKIE]
    r = client.post("/logout")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert SESSION_COOKIE not in client.cookies
    client.cookies.set(SESSION_COOKIE, sid)  # a copy of the old cookie no longer works
    assert client.get(PAGE).status_code == 303


def test_revoking_the_token_ends_its_sessions(
    client: TestClient, secrets_: list[str], store_url: str
) -> None:
    _login(client, secrets_[0])
    assert client.get(PAGE).status_code == 200
    token_id = secrets_[0].split("_")[1]
    store: Store = client.app.state.service.store  # type: ignore[attr-defined]
    revoke_token(store, token_id)
    assert client.get(PAGE).status_code == 303


def test_sessions_expire_after_the_configured_hours(
    client: TestClient, secrets_: list[str]
) -> None:
    sessions: Sessions = client.app.state.sessions  # type: ignore[attr-defined]
    login = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    now = [login]
    sessions.clock = lambda: now[0]  # the sessions' clock, moved by the test
    _login(client, secrets_[0])
    now[0] = login + timedelta(hours=12, seconds=-1)
    assert client.get(PAGE).status_code == 200
    now[0] = login + timedelta(hours=12)
    assert client.get(PAGE).status_code == 303


def test_a_team_scoped_login_sees_only_its_teams(client: TestClient, secrets_: list[str]) -> None:
    _login(client, secrets_[2])
    assert client.get("/").headers["location"] == "/teams/alpha"
    assert client.get(TEAM_PAGE).status_code == 200
    for path in ("/teams/beta", "/dora", "/data", "/capabilities/ci", "/dora?team=alpha"):
        r = client.get(path)
        assert r.status_code == 403, path
        assert "may read teams alpha only" in r.text
    assert (
        client.get("/capabilities/ci?team=alpha&from=2026-03-01&to=2026-04-01").status_code == 200
    )
    explain = "/explain?metric=task.attempts&period=2026-03-01&grain=month"
    assert client.get(explain + "&segment=team=beta").status_code == 403
    assert client.get(explain + "&segment=team=alpha").status_code == 200
    # the read API with the session: per-team rows of alpha only, org-wide refused
    assert client.get("/api/v1/metrics?metric=task.attempts").status_code == 403
    march = "metric=task.attempts&by=team&grain=month&from=2026-03-01&to=2026-04-01"
    rows = client.get(f"/api/v1/metrics?{march}").json()["rows"]
    assert [(r["segment"]["team"], r["value"]) for r in rows] == [("alpha", 2)]


def _proxy_settings(settings: Settings, trusted: list[str]) -> Settings:
    return settings.model_copy(
        update={"server_auth_proxy_header": "X-Auth-User", "server_trusted_proxies": trusted}
    )


def test_a_trusted_proxy_header_reads_without_a_token(
    store_url: str, settings: Settings, secrets_: list[str]
) -> None:
    # Starlette's test client connects from the address "testclient"
    with _client(store_url, _proxy_settings(settings, ["testclient"])) as c:
        r = c.get(PAGE, headers={"X-Auth-User": "ana@example.org"})
        assert r.status_code == 200 and "ana@example.org" in r.text
        api = c.get("/api/v1/metrics?metric=task.attempts", headers={"X-Auth-User": "ana"})
        assert api.status_code == 200
        write = c.post("/api/v1/events", json=[], headers={"X-Auth-User": "ana"})
        assert write.status_code == 401
        assert c.get(PAGE, headers={"X-Auth-User": ""}).status_code == 303
        # the page is cached once for every login of the same scope; each sees its own name
        other = c.get(PAGE, headers={"X-Auth-User": "<b>bob</b>"}).text
        assert "&lt;b&gt;bob&lt;/b&gt;" in other and "ana@example.org" not in other


def test_the_proxy_header_is_ignored_from_untrusted_clients(
    store_url: str, settings: Settings, secrets_: list[str]
) -> None:
    with _client(store_url, _proxy_settings(settings, ["127.0.0.1"])) as c:
        assert c.get(PAGE, headers={"X-Auth-User": "mallory"}).status_code == 303
        r = c.get("/api/v1/metrics", headers={"X-Auth-User": "mallory"})
        assert r.status_code == 401
    # unset header name: ignored even from a trusted address
    with _client(
        store_url, settings.model_copy(update={"server_trusted_proxies": ["testclient"]})
    ) as c:
        assert c.get(PAGE, headers={"X-Auth-User": "ana"}).status_code == 303


def test_session_table_forgets_expired_sessions() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    table = Sessions(1.0, clock=lambda: now)
    a = table.create(Token("t1", None, "read", (), now, None))
    assert table.get(a.id) == a
    now += timedelta(hours=1)
    assert table.get(a.id) is None
    assert table.get("not-a-session") is None
