"""HTTP front processes (heatlens.web.fronts) of a real `heatlens serve`.

`server.front_processes` processes (here 1; the default is 0) take the HTTP requests; the process
holding the store answers what they hand over. These tests check what a client and an operator
can see of that split: which process answers, that the store's process sees the client's
address, that a refusal the front answers is noted where the Data page reads it, that a large
body passes through whole, that a crashed front is replaced, and that no front outlives the
server (a SIGKILL included) or keeps its port.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from heatlens.store import Store
from tests.serve_process import ServeProcess, serving

SECRET = "fronts-test-secret"
PUSH = Path(__file__).parent / "fixtures" / "github" / "workflow_run.completed.json"
FRONT = {"HEATLENS_SERVER_FRONT_PROCESSES": "1"}
ENV = {"HEATLENS_WEBHOOKS_GITHUB_SECRET": SECRET, **FRONT}


def _children(pid: int) -> list[int]:
    """The live child processes of `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid …: comm may hold spaces, so split after its closing parenthesis
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "workflow_run",
        "X-GitHub-Delivery": "fronts-1",
        "X-Hub-Signature-256": f"sha256={digest}",
    }


pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads processes from /proc")


def test_a_front_process_serves_and_the_store_process_writes(tmp_path: Path) -> None:
    store_url = f"duckdb:///{tmp_path / 's.duckdb'}"
    server = ServeProcess(store_url, cwd=tmp_path, env=ENV)
    url = server.start()
    try:
        assert server._proc is not None
        fronts = _children(server._proc.pid)
        assert len(fronts) == 1, "one front process"
        body = PUSH.read_bytes()
        stored = httpx.post(url + "/webhooks/github", content=body, headers=_signed(body))
        assert stored.status_code == 200 and stored.json()["status"] == "stored"
        again = httpx.post(url + "/webhooks/github", content=body, headers=_signed(body))
        assert again.json() == {"status": "duplicate", "delivery": "fronts-1"}
        events = httpx.post(url + "/api/v1/events", json=[{"type": "team", "id": "payments"}])
        assert events.status_code == 201, events.text
        # a refusal the front answers (bad signature) is noted in the store's process, with the
        # client's address as the front saw it
        bad = httpx.post(
            url + "/webhooks/github", content=body, headers={"X-Hub-Signature-256": "x"}
        )
        assert bad.status_code == 401
        assert bad.headers["x-content-type-options"] == "nosniff"
        status = httpx.get(url + "/api/v1/admin/status").json()
        [refusal] = status["webhook_refusals"]["last"]
        assert (refusal["status"], refusal["client"]) == (401, "127.0.0.1")
        # every other route is answered by the store's process through the front
        page = httpx.get(url + "/data")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "Content-Security-Policy" in page.headers
        assert httpx.get(url + "/no-such-page").status_code == 404
    finally:
        server.stop()
    with Store.open(store_url) as store:
        [run] = store.rows("usage")
        assert run["source"] == "webhook:github"
        assert [t["id"] for t in store.rows("team")] == ["payments"]
    assert not any(_alive(pid) for pid in fronts), "the fronts stop with the server"


def _usage(n: int, count: int, *, bad: bool) -> list[dict[str, object]]:
    """Request `n`'s `count` usage records (the last one without its required `ts` when `bad`)."""
    records: list[dict[str, object]] = [
        {
            "type": "usage",
            "id": f"r{n}-{i}",
            "ts": "2026-03-01T10:00:00Z",
            "capability": "ci",
            "action": "build",
            "actor": f"dev{i}",
            "outcome": "success",
        }
        for i in range(count)
    ]
    if bad:
        del records[-1]["ts"]
    return records


def test_concurrent_ingest_requests_through_a_front_each_get_their_own_answer(
    tmp_path: Path,
) -> None:
    """The front hands the ingest requests of a busy moment to the store's process together,
    and their answers come back together (heatlens.web.fronts, `lean`): each request must get
    its own. Request k carries k records, so each answer's count names its request; every
    seventh is invalid (422, nothing of it stored); webhook deliveries sent twice at once are
    stored once, the other copy answered as that delivery's duplicate."""
    store_url = f"duckdb:///{tmp_path / 's.duckdb'}"
    sizes = range(1, 41)
    template = PUSH.read_text()
    run_id = str(json.loads(template)["workflow_run"]["id"])

    def delivery(n: int) -> tuple[bytes, dict[str, str]]:
        body = template.replace(run_id, str(9_000 + n)).encode()
        return body, {**_signed(body), "X-GitHub-Delivery": f"twice-{n}"}

    async def post_all(url: str) -> tuple[list[httpx.Response], list[httpx.Response]]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            events = [
                client.post("/api/v1/events", json=_usage(k, k, bad=k % 7 == 0)) for k in sizes
            ]
            hooks = [
                client.post("/webhooks/github", content=body, headers=headers)
                for n in range(10)
                for body, headers in [delivery(n), delivery(n)]
            ]
            answers = await asyncio.gather(*events, *hooks)
        return answers[: len(sizes)], answers[len(sizes) :]

    with serving(store_url, tmp_path, env=ENV) as server:
        events, hooks = asyncio.run(post_all(server.url))
    for k, answer in zip(sizes, events, strict=True):
        assert answer.headers["x-content-type-options"] == "nosniff"
        if k % 7 == 0:
            assert answer.status_code == 422, (k, answer.text)
            assert answer.json()["error"]["code"] == "invalid_records"
        else:
            assert answer.status_code == 201, (k, answer.text)
            assert answer.json()["records"] == k
            assert answer.json()["counts"]["usage"]["inserted"] == k
    for n in range(10):
        pair = [hooks[2 * n].json(), hooks[2 * n + 1].json()]
        assert sorted(doc["status"] for doc in pair) == ["duplicate", "stored"], pair
        assert {"status": "duplicate", "delivery": f"twice-{n}"} in pair
    with Store.open(store_url) as store:
        ids = {r["id"] for r in store.rows("usage") if r["source"] == "api"}
        runs = [r for r in store.rows("usage") if r["source"] == "webhook:github"]
    assert ids == {f"r{k}-{i}" for k in sizes if k % 7 for i in range(k)}
    assert len(runs) == 10


def test_no_front_outlives_a_killed_server(tmp_path: Path) -> None:
    store_url = f"duckdb:///{tmp_path / 's.duckdb'}"
    server = ServeProcess(store_url, cwd=tmp_path, env=FRONT)
    url = server.start()
    assert server._proc is not None
    fronts = _children(server._proc.pid)
    port = int(url.rsplit(":", 1)[1])
    server.kill()
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in fronts) and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for processes to exit, not for a server to start
    assert fronts and not any(_alive(pid) for pid in fronts)
    with socket.socket() as probe:  # the port is free again: nothing holds the socket
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


def test_a_crashed_front_is_replaced(tmp_path: Path) -> None:
    store_url = f"duckdb:///{tmp_path / 's.duckdb'}"
    with serving(store_url, tmp_path, env=FRONT) as server:
        assert server._proc is not None
        [front] = _children(server._proc.pid)
        os.kill(front, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # waiting for a process to start, not for a server
            replaced = [pid for pid in _children(server._proc.pid) if pid != front]
            if replaced:
                break
            time.sleep(0.05)
        assert replaced, "no front process was started again"
        # the new front serves (the socket kept listening: a connection waits to be accepted)
        answer = httpx.post(server.url + "/api/v1/events", json=[{"type": "team", "id": "a"}])
        assert answer.status_code == 201, answer.text
        assert any("HTTP front process exited" in line for line in server.log)


def test_a_large_upload_passes_through_the_front(tmp_path: Path) -> None:
    """An 8 MB upload reaches the store's process (a chunk at a time) whole, and is ingested."""
    store_url = f"duckdb:///{tmp_path / 's.duckdb'}"
    rows = "\n".join(
        f'{{"type":"usage","id":"u{i:06d}","ts":"2026-03-01T10:00:00Z","capability":"ci",'
        f'"action":"build-{"x" * 40}","actor":"dev{i % 9}","outcome":"success"}}'
        for i in range(80_000)
    ).encode()
    assert len(rows) > 8_000_000
    with serving(store_url, tmp_path, env=FRONT) as server:
        put = httpx.put(server.url + "/api/v1/admin/uploads/big.ndjson", content=rows, timeout=120)
        assert put.status_code == 201, put.text
        done = httpx.post(
            server.url + "/api/v1/admin/ingest",
            json={"uploads": [{"upload": put.json()["upload"]}]},
            timeout=300,
        )
        assert done.status_code == 200, done.text
    with Store.open(store_url) as store:
        ids = [r["id"] for r in store.rows("usage")]
    assert ids == [f"u{i:06d}" for i in range(80_000)]


def test_no_front_processes_serves_from_one_process(tmp_path: Path) -> None:
    store_url = f"duckdb:///{tmp_path / 's.duckdb'}"
    env = {"HEATLENS_SERVER_FRONT_PROCESSES": "0"}
    with serving(store_url, tmp_path, env=env) as server:
        assert server._proc is not None
        assert _children(server._proc.pid) == []
        answer = httpx.post(server.url + "/api/v1/events", json=[{"type": "team", "id": "a"}])
        assert answer.status_code == 201
