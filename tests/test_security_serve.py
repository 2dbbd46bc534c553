"""The server's security model against a real `heatlens serve` subprocess (docs/security.md): an
open API is a startup decision that revoking tokens never reverses; bodies are not buffered
before authentication; a report's cost is bounded before work; slow clients are cut off;
forwarded headers are not believed by default; uploads do not outlive the server."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from heatlens.ingest import ingest_records
from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.store.tokens import create_token
from tests.conftest import record
from tests.serve_process import ServeProcess, serving

HUGE = 200 * 1024 * 1024


def _store(
    tmp_path: Path, settings: Settings, *, teams: int = 0, token: bool = True
) -> tuple[str, str]:
    """A store with `teams` teams (and a deployment), and an admin token's secret ("" without)."""
    url = f"duckdb:///{tmp_path / 'served.duckdb'}"
    records = [record("team", id=f"t{i:02d}") for i in range(teams)]
    records.append(record("deployment", id="d1", service="api", finished_at="2026-03-03T10:00:00Z"))
    with Store.open(url) as store:
        ingest_records(store, records, settings, source="file:t.ndjson")
        secret = create_token(store, "admin")[1] if token else ""
    return url, secret


def _peak_rss_kib(server: ServeProcess) -> int:
    assert server._proc is not None
    status = Path(f"/proc/{server._proc.pid}/status").read_text(encoding="ascii")
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))


def _send_huge(url: str, path: str, content_type: str) -> bytes:
    """POST a HUGE body (declared up front) while reading the response; what came back."""
    where = urlsplit(url)
    sock = socket.create_connection((where.hostname, where.port), timeout=120)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {where.netloc}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {HUGE}\r\n\r\n"
    )
    sock.sendall(head.encode("ascii"))

    def send() -> None:
        chunk = b" " * (1 << 20)
        try:
            for _ in range(HUGE // len(chunk)):
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed: the rest is not wanted

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = b""
    try:
        while b"\r\n\r\n" not in answer:
            part = sock.recv(65536)
            if not part:
                break
            answer += part
    finally:
        sock.close()
        sender.join(120)
    return answer


# -- 1. an open API is decided at start; revoking never opens it --------------------------------


def test_revoking_every_token_never_opens_the_server(tmp_path: Path, settings: Settings) -> None:
    url, admin = _store(tmp_path, settings)
    with serving(url, tmp_path) as server:
        auth = {"Authorization": f"Bearer {admin}"}
        (token,) = httpx.get(server.url + "/api/v1/admin/tokens", headers=auth).json()["tokens"]
        revoked = httpx.post(f"{server.url}/api/v1/admin/tokens/{token['id']}/revoke", headers=auth)
        assert revoked.status_code == 200 and revoked.json()["token"]["revoked_at"]
        grab = httpx.post(server.url + "/api/v1/admin/tokens", json={"scope": "admin"})
        assert grab.status_code == 401 and "secret" not in grab.text
        assert httpx.get(server.url + "/api/v1/metrics").status_code == 401
        assert httpx.get(server.url + "/dora").status_code == 303  # to the login page
        assert "tokens required" in "".join(server.log)
    # restarted, the store that had a token is still closed
    with serving(url, tmp_path) as server:
        assert "tokens required" in "".join(server.log) and "OPEN API" not in "".join(server.log)
        assert (
            httpx.post(server.url + "/api/v1/admin/tokens", json={"scope": "admin"}).status_code
            == 401
        )


def test_an_open_server_says_so_and_its_first_token_closes_it(
    tmp_path: Path, settings: Settings
) -> None:
    url, _ = _store(tmp_path, settings, token=False)
    with serving(url, tmp_path) as server:
        assert "OPEN API" in "".join(server.log)
        made = httpx.post(server.url + "/api/v1/admin/tokens", json={"scope": "read"})
        assert made.status_code == 201
        assert (
            httpx.post(server.url + "/api/v1/admin/tokens", json={"scope": "admin"}).status_code
            == 401
        )


# -- 3. no body is buffered before authentication ------------------------------------------------


def test_a_huge_unauthenticated_body_is_refused_without_being_buffered(
    tmp_path: Path, settings: Settings
) -> None:
    url, _ = _store(tmp_path, settings)
    with serving(url, tmp_path) as server:
        before = _peak_rss_kib(server)
        admin = _send_huge(server.url, "/api/v1/admin/tokens", "application/json")
        login = _send_huge(server.url, "/login", "application/x-www-form-urlencoded")
        grown_mib = (_peak_rss_kib(server) - before) / 1024
        assert grown_mib < 50, f"the server grew by {grown_mib:.0f} MiB"
        assert admin.startswith(b"HTTP/1.1 401"), admin[:200]
        assert login.startswith(b"HTTP/1.1 413"), login[:200]
        assert httpx.get(server.url + "/healthz").status_code == 200


# -- 4. a report's cost is bounded before any work -----------------------------------------------


def test_a_report_too_costly_is_refused_at_once(tmp_path: Path, settings: Settings) -> None:
    url, admin = _store(tmp_path, settings, teams=30)
    auth = {"Authorization": f"Bearer {admin}"}
    with serving(url, tmp_path) as server:
        asked = {"grain": "day", "from": "2013-01-01", "to": "2026-09-01", "by": "team"}
        r = httpx.get(server.url + "/api/v1/metrics", params=asked, headers=auth, timeout=120)
        assert r.status_code == 400, r.text[:300]
        error = r.json()["error"]
        assert error["code"] == "too_expensive" and "4,991 periods of a day" in error["message"]
    with serving(url, tmp_path, env={"HEATLENS_SERVER_MAX_REPORT_CELLS": "5000"}) as server:
        asked = {"grain": "day", "from": "2026-01-01", "to": "2026-10-28", "by": "team"}
        r = httpx.get(server.url + "/api/v1/metrics", params=asked, headers=auth, timeout=120)
        assert r.status_code == 400
        assert "300 periods × 30 segments = 9,000 cells" in r.json()["error"]["message"]


# -- 9. forwarded headers are not believed by default --------------------------------------------


def test_x_forwarded_for_does_not_make_a_client_new(tmp_path: Path, settings: Settings) -> None:
    url, _ = _store(tmp_path, settings, token=False)
    env = {"HEATLENS_SERVER_RATE_LIMIT_PER_MINUTE": "3"}
    with serving(url, tmp_path, env=env) as server:
        codes = [
            httpx.get(
                server.url + "/api/v1/admin/tokens", headers={"X-Forwarded-For": f"10.9.8.{i}"}
            ).status_code
            for i in range(4)
        ]
    assert codes == [200, 200, 200, 429]


# -- 10. slow clients --------------------------------------------------------------------------


def test_a_client_that_never_finishes_its_headers_is_cut_off(
    tmp_path: Path, settings: Settings
) -> None:
    url, _ = _store(tmp_path, settings)
    with serving(url, tmp_path, env={"HEATLENS_SERVER_HEADER_TIMEOUT": "1"}) as server:
        where = urlsplit(server.url)
        with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a")
            started = time.monotonic()
            assert sock.recv(1024) == b""  # closed by the server, not by our 30 s timeout
        assert time.monotonic() - started < 20
        # the same for a later request of a kept-alive connection
        with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            first = b""
            while not first.endswith(b"}"):
                first += sock.recv(4096)
            assert first.startswith(b"HTTP/1.1 200")
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost")
            started = time.monotonic()
            assert sock.recv(1024) == b""
        assert time.monotonic() - started < 20
        assert httpx.get(server.url + "/healthz").status_code == 200


def _until(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Poll `condition` until it holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the server never got there"
        time.sleep(0.02)


# -- 8. uploads do not outlive the server ---------------------------------------------------------


def test_uploads_are_removed_on_sigterm_and_when_the_client_goes_away(
    tmp_path: Path, settings: Settings
) -> None:
    url, admin = _store(tmp_path, settings)
    temp = tmp_path / "tmp"
    temp.mkdir()
    server = ServeProcess(url, cwd=tmp_path, env={"TMPDIR": str(temp)})
    server.start()
    try:
        auth = {"Authorization": f"Bearer {admin}"}
        put = httpx.put(
            server.url + "/api/v1/admin/uploads/a.ndjson",
            content=json.dumps(record("team", id="x")).encode(),
            headers=auth,
        )
        assert put.status_code == 201
        (root,) = temp.glob("heatlens-uploads-*")
        assert [p.name for p in root.iterdir()] == [put.json()["upload"]]
        # a client that goes away mid-upload leaves nothing behind
        where = urlsplit(server.url)
        with socket.create_connection((where.hostname, where.port), timeout=30) as sock:
            sock.sendall(
                f"PUT /api/v1/admin/uploads/b.ndjson HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {admin}\r\nContent-Length: 1000000\r\n\r\n".encode()
                + b"x" * 10_000
            )
            _until(lambda: len(list(root.glob("*/b.ndjson"))) == 1)
        _until(lambda: not list(root.glob("*/b.ndjson")))
        assert [p.name for p in root.iterdir()] == [put.json()["upload"]]
        assert server._proc is not None
        server._proc.send_signal(signal.SIGTERM)
        server._proc.wait(60)
    finally:
        server.kill()
    assert list(temp.iterdir()) == []
    assert "Unexpected" not in "".join(server.log) and "Traceback" not in "".join(server.log)
