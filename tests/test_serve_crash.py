"""Durability of a real `heatlens serve`: a 2xx means committed, even when the server is SIGKILLed.

The same for webhooks: signed GitHub deliveries posted concurrently, the server killed mid-load and
restarted, the unacknowledged ones delivered again, then every one replayed: each acknowledged
delivery's record is stored exactly once, and the replays change nothing.

Client threads post batches of usage records with unique ids; once some batches are acknowledged
the server is killed mid-load, restarted on the same DuckDB file, and the clients resend every batch
that got no 2xx. Every acknowledged record must then be stored exactly once, and the store must hold
exactly the distinct ids sent (a batch committed just before the kill but never acknowledged is
resent and counted unchanged, not twice).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from heatlens.store import Store
from heatlens.store.deliveries import counters
from tests.serve_process import ServeProcess

CLIENTS = 4
BATCHES = 40  # per client
BATCH = 100  # records per batch
KILL_AFTER = 12  # acknowledged batches before the kill


def _batch(client: int, n: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "usage",
            "id": f"c{client}-b{n}-r{i}",
            "ts": f"2026-03-{1 + n % 28:02d}T10:{i % 60:02d}:00Z",
            "capability": "ci",
            "actor": f"dev{i % 7}",
            "outcome": "success",
        }
        for i in range(BATCH)
    ]


class Load:
    """Shared state of the client threads."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Condition()  # notified as each batch is answered
        self.acked: list[tuple[int, int]] = []
        self.unacked: list[tuple[int, int]] = []
        self.errors: list[str] = []
        self.read_statuses: list[int] = []
        self.read_after_kill: list[int] = []  # answers that came once the kill was sent
        self.killed = False
        self.done = 0  # clients that finished

    def send(self, http: httpx.Client, client: int, n: int) -> bool:
        try:
            response = http.post(self.url + "/api/v1/events", json=_batch(client, n))
        except httpx.TransportError as exc:
            with self.lock:
                self.errors.append(type(exc).__name__)
            return False
        if response.status_code in (200, 201):
            assert response.json()["records"] == BATCH
            return True
        with self.lock:
            self.errors.append(f"{response.status_code} {response.text[:200]}")
        return False

    def client(self, client: int, batches: list[int]) -> None:
        with httpx.Client(timeout=60) as http:
            for n in batches:
                ok = not self.stop.is_set() and self.send(http, client, n)
                with self.lock:
                    (self.acked if ok else self.unacked).append((client, n))
                    self.lock.notify_all()
            with self.lock:
                self.done += 1
                self.lock.notify_all()

    def reader(self) -> None:
        """Reads keep working while writes happen."""
        with httpx.Client(timeout=60) as http:
            while not self.stop.is_set():
                try:
                    status = http.get(self.url + "/healthz").status_code
                except httpx.TransportError:
                    continue  # the kill
                with self.lock:
                    (self.read_after_kill if self.killed else self.read_statuses).append(status)


def test_every_acknowledged_record_survives_a_sigkill(tmp_path: Path) -> None:
    store_url = f"duckdb:///{tmp_path / 's.duckdb'}"
    server = ServeProcess(store_url, cwd=tmp_path)
    load = Load(server.start())
    work = {c: list(range(BATCHES)) for c in range(CLIENTS)}
    threads = [threading.Thread(target=load.client, args=(c, ns)) for c, ns in work.items()]
    threads.append(threading.Thread(target=load.reader))
    for t in threads:
        t.start()
    try:
        with load.lock:
            load.lock.wait_for(lambda: len(load.acked) >= KILL_AFTER or load.done, timeout=120)
            assert not load.done, "a client finished before the kill"
            assert len(load.acked) >= KILL_AFTER, f"too few acknowledgements: {load.errors[:3]}"
        with load.lock:
            load.killed = True
        server.kill()  # SIGKILL while the clients are posting
        load.stop.set()
        for t in threads:
            t.join(timeout=120)
        acked_before = set(load.acked)
        assert load.unacked, "every batch was acknowledged before the kill: no load was in flight"
        cut = [e for e in load.errors if e != "ConnectError"]
        assert cut, "the kill interrupted no request: it did not happen mid-load"
        assert load.read_statuses and set(load.read_statuses) == {200}
        # a request an HTTP front process (heatlens.web.fronts) held when the store's process
        # died is answered 503 ("send it again"), never acknowledged
        assert set(load.read_after_kill) <= {200, 503}

        # restart on the same file; the clients resend every batch that got no 2xx
        server = ServeProcess(store_url, cwd=tmp_path)
        load.url = server.start()
        load.stop.clear()
        retry: dict[int, list[int]] = {}
        for c, n in load.unacked:
            retry.setdefault(c, []).append(n)
        load.unacked = []
        threads = [threading.Thread(target=load.client, args=(c, ns)) for c, ns in retry.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not load.unacked, f"batches refused after the restart: {load.errors[-3:]}"
    finally:
        load.stop.set()
        server.stop()

    sent = {f"c{c}-b{n}-r{i}" for c in range(CLIENTS) for n in range(BATCHES) for i in range(BATCH)}
    with Store.open(store_url, read_only=True) as store:
        stored = Counter(row["id"] for row in store.rows("usage"))
    acknowledged = {f"c{c}-b{n}-r{i}" for c, n in acked_before for i in range(BATCH)}
    assert acknowledged <= set(stored)  # nothing acknowledged was lost
    assert all(n == 1 for n in stored.values())  # nothing stored twice
    assert set(stored) == sent and len(stored) == CLIENTS * BATCHES * BATCH


# -- webhooks ---------------------------------------------------------------------------------

SECRET = "crash-test-secret"
WORKFLOW_RUN = Path(__file__).parent / "fixtures" / "github" / "workflow_run.completed.json"
HOOK_CLIENTS = 6
HOOKS = 30  # deliveries per client
HOOK_KILL_AFTER = 25


def _delivery(client: int, n: int) -> tuple[bytes, dict[str, str], str]:
    """A signed GitHub workflow_run delivery: the real fixture with run id 9000000000 + …;
    (body, headers, the usage id it stores: `{run_id}/{attempt}`)."""
    text = WORKFLOW_RUN.read_text(encoding="utf-8")
    run_id = str(json.loads(text)["workflow_run"]["id"])
    new = str(9_000_000_000 + client * 1000 + n)
    body = text.replace(run_id, new).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "workflow_run",
        "X-GitHub-Delivery": f"crash-{client}-{n}",
        "X-Hub-Signature-256": "sha256="
        + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    }
    return body, headers, f"{new}/1"


class Hooks:
    """Client threads posting deliveries; which ones got a 200."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Condition()
        self.acked: list[tuple[int, int]] = []
        self.unacked: list[tuple[int, int]] = []
        self.statuses: Counter[str] = Counter()
        self.done = 0

    def client(self, client: int, numbers: list[int]) -> None:
        with httpx.Client(timeout=60) as http:
            for n in numbers:
                status = "stopped"
                if not self.stop.is_set():
                    body, headers, _ = _delivery(client, n)
                    try:
                        response = http.post(
                            self.url + "/webhooks/github", content=body, headers=headers
                        )
                        status = str(response.json().get("status", response.status_code))
                    except (httpx.TransportError, ValueError) as exc:
                        status = type(exc).__name__
                with self.lock:
                    self.statuses[status] += 1
                    ok = status in ("stored", "duplicate")
                    (self.acked if ok else self.unacked).append((client, n))
                    self.lock.notify_all()
            with self.lock:
                self.done += 1
                self.lock.notify_all()


@pytest.mark.parametrize("fronts", [0, 1], ids=["one process", "a front process"])
def test_every_acknowledged_webhook_delivery_survives_a_sigkill(
    tmp_path: Path, fronts: int
) -> None:
    """With HTTP front processes the store's process is the one killed (heatlens.web.fronts)."""
    store_url = f"duckdb:///{tmp_path / 's.duckdb'}"
    env = {
        "HEATLENS_WEBHOOKS_GITHUB_SECRET": SECRET,
        "HEATLENS_SERVER_FRONT_PROCESSES": str(fronts),
    }
    server = ServeProcess(store_url, cwd=tmp_path, env=env)
    load = Hooks(server.start())
    work = {c: list(range(HOOKS)) for c in range(HOOK_CLIENTS)}
    threads = [threading.Thread(target=load.client, args=(c, ns)) for c, ns in work.items()]
    for t in threads:
        t.start()
    try:
        with load.lock:
            load.lock.wait_for(lambda: len(load.acked) >= HOOK_KILL_AFTER or load.done, timeout=120)
            assert not load.done, "a client finished before the kill"
        server.kill()  # SIGKILL while the deliveries are coming
        load.stop.set()
        for t in threads:
            t.join(timeout=120)
        acked_before = set(load.acked)
        assert load.unacked, "every delivery was acknowledged before the kill"
        cut = set(load.statuses) - {"stored", "stopped", "ConnectError"}
        assert cut, f"the kill interrupted no delivery: {load.statuses}"

        # restart; the senders deliver again every delivery that got no 200 …
        server = ServeProcess(store_url, cwd=tmp_path, env=env)
        load.url = server.start()
        load.stop.clear()
        retry: dict[int, list[int]] = {}
        for c, n in load.unacked:
            retry.setdefault(c, []).append(n)
        load.unacked, load.acked = [], []
        threads = [threading.Thread(target=load.client, args=(c, ns)) for c, ns in retry.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        # … a delivery committed just before the kill but never acknowledged is a duplicate now
        assert not load.unacked, f"deliveries refused after the restart: {load.statuses}"
        version = httpx.get(load.url + "/healthz").json()["data_version"]
        # replays of EVERY delivery (as a sender's redelivery) change nothing
        load.statuses.clear()
        load.unacked, load.acked = [], []
        threads = [threading.Thread(target=load.client, args=(c, ns)) for c, ns in work.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert load.statuses == Counter({"duplicate": HOOK_CLIENTS * HOOKS})
        assert httpx.get(load.url + "/healthz").json()["data_version"] == version
    finally:
        load.stop.set()
        server.stop()

    expected = {_delivery(c, n)[2] for c in range(HOOK_CLIENTS) for n in range(HOOKS)}
    with Store.open(store_url, read_only=True) as store:
        stored = Counter(row["id"] for row in store.rows("usage"))
        seen = {name for name, _, _ in store.sync_states("webhook-delivery:github:")}
        [stats] = counters(store)
    acknowledged = {_delivery(c, n)[2] for c, n in acked_before}
    assert acknowledged <= set(stored)  # nothing acknowledged was lost
    assert all(n == 1 for n in stored.values())  # nothing stored twice
    assert set(stored) == expected
    assert seen == {f"webhook-delivery:github:crash-{c}-{n}" for c, n in work_items(work)}
    # each delivery counted once, whether acknowledged before the kill or after the restart
    assert stats["deliveries"] == HOOK_CLIENTS * HOOKS


def work_items(work: dict[int, list[int]]) -> list[tuple[int, int]]:
    return [(c, n) for c, ns in work.items() for n in ns]
