"""Several `heatlens serve` processes on one real Postgres (docs/scaling-postgres.md).

Two servers take records from clients posting to both at once, half of every batch ids that
every client sends (the same new id reaches both servers together): the counts they answer add
up exactly. Then one server is SIGKILLed mid-load, the clients resend what got no 2xx to the
other, and every acknowledged record is stored once, none twice; the survivor and a restarted
second server give the same report. Browser sessions and rate-limit windows live in the store:
a login on one server works on the other and after a restart, a logout on one ends it on both,
and both count in one window.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from heatlens.store import Store
from heatlens.store.tokens import create_token
from tests.serve_process import ServeProcess

pytestmark = pytest.mark.postgres

CLIENTS = 4  # clients 0 and 2 post to server A, 1 and 3 to server B
UNIQUE = 30  # records of a batch only its client sends
SHARED = 30  # records of a batch every client sends, with the same content


def _batch(client: int, n: int) -> list[dict[str, Any]]:
    def usage(rid: str, i: int) -> dict[str, Any]:
        return {
            "type": "usage",
            "id": rid,
            "ts": f"2026-03-{1 + n % 28:02d}T10:{i % 60:02d}:00Z",
            "capability": ["ci", "cd", "secrets"][i % 3],
            "actor": f"dev{i % 7}",
            "outcome": "success" if i % 5 else "failure",
        }

    return [usage(f"c{client}-b{n}-r{i}", i) for i in range(UNIQUE)] + [
        usage(f"s-b{n}-r{i}", i) for i in range(SHARED)
    ]


def _ids(client: int, n: int) -> set[str]:
    return {r["id"] for r in _batch(client, n)}


class Load:
    """Client threads posting batches to their server; what each got."""

    def __init__(self, urls: dict[int, str], secret: str) -> None:
        self.urls = urls  # client → server URL
        self.headers = {"Authorization": f"Bearer {secret}"}
        self.stop = threading.Event()
        self.lock = threading.Condition()
        self.acked: list[tuple[int, int]] = []
        self.unacked: list[tuple[int, int]] = []
        self.counts: list[dict[str, int]] = []  # the usage counts of every 2xx
        self.errors: list[str] = []

    def client(self, client: int, batches: list[int]) -> None:
        with httpx.Client(timeout=120, headers=self.headers) as http:
            for n in batches:
                ok = False
                if not self.stop.is_set():
                    try:
                        r = http.post(self.urls[client] + "/api/v1/events", json=_batch(client, n))
                        ok = r.status_code in (200, 201)
                        with self.lock:
                            if ok:
                                self.counts.append(r.json()["counts"]["usage"])
                            else:
                                self.errors.append(f"{r.status_code} {r.text[:200]}")
                    except httpx.TransportError as exc:
                        with self.lock:
                            self.errors.append(type(exc).__name__)
                with self.lock:
                    (self.acked if ok else self.unacked).append((client, n))
                    self.lock.notify_all()

    def run(self, work: dict[int, list[int]]) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.client, args=(c, ns)) for c, ns in work.items()]
        for t in threads:
            t.start()
        return threads


def _report(url: str, secret: str) -> Any:
    r = httpx.get(
        url + "/api/v1/report",
        params={
            "grain": "month",
            "from": "2026-03-01",
            "to": "2026-04-01",
            "by": "capability",
            "metric": ["task.attempts", "task.failure_rate", "adoption.active_users"],
        },
        headers={"Authorization": f"Bearer {secret}"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return r.json()


def _tokens(url: str, *scopes: str) -> list[str]:
    with Store.open(url) as store:
        return [create_token(store, scope)[1] for scope in scopes]


def test_two_servers_on_one_postgres_lose_nothing_and_double_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    ingest, read = _tokens(postgres_url, "ingest", "read")
    a = ServeProcess(postgres_url, cwd=tmp_path)
    b = ServeProcess(postgres_url, cwd=tmp_path)
    urls = {"a": a.start(), "b": b.start()}
    try:
        # 1. both servers, every client at once, no failure: the answered counts are exact
        load = Load({c: urls["ab"[c % 2]] for c in range(CLIENTS)}, ingest)
        first = range(8)
        for t in load.run({c: list(first) for c in range(CLIENTS)}):
            t.join(timeout=300)
        assert load.errors == [] and len(load.acked) == CLIENTS * len(first)
        sent = {i for c in range(CLIENTS) for n in first for i in _ids(c, n)}
        # each id is new exactly once over all answers; every record sent is counted once
        assert sum(c["inserted"] for c in load.counts) == len(sent) == 8 * (4 * UNIQUE + SHARED)
        assert sum(sum(c.values()) for c in load.counts) == CLIENTS * 8 * (UNIQUE + SHARED)
        # the shared records all have the same content: no answer saw one changed
        assert sum(c["updated"] for c in load.counts) == 0
        acked = list(load.acked)

        # 2. A is SIGKILLed mid-load; its clients resend what got no 2xx to B
        load = Load({c: urls["ab"[c % 2]] for c in range(CLIENTS)}, ingest)
        second = list(range(8, 30))
        threads = load.run({c: second for c in range(CLIENTS)})
        with load.lock:
            load.lock.wait_for(lambda: len(load.acked) >= 12, timeout=300)
        a.kill()
        for t in threads:
            t.join(timeout=300)
        lost = [(c, n) for c, n in load.unacked if c % 2 == 0]
        assert lost, "A had no request in flight or queued when it was killed"
        assert not [(c, n) for c, n in load.unacked if c % 2 == 1], load.errors[-3:]
        acked += load.acked
        retry = Load({c: urls["b"] for c in range(CLIENTS)}, ingest)
        retried: dict[int, list[int]] = {}
        for c, n in lost:
            retried.setdefault(c, []).append(n)
        for t in retry.run(retried):
            t.join(timeout=300)
        assert retry.errors == [] and not retry.unacked

        with Store.open(postgres_url) as store:
            stored = Counter(row["id"] for row in store.rows("usage"))
        everything = {i for c in range(CLIENTS) for n in range(30) for i in _ids(c, n)}
        acknowledged = {i for c, n in [*acked, *retry.acked] for i in _ids(c, n)}
        assert acknowledged == everything  # every batch was acknowledged, once resent
        assert set(stored) == everything and set(stored.values()) == {1}  # none lost or doubled
        assert len(stored) == 30 * (CLIENTS * UNIQUE + SHARED)

        # 3. the survivor and a restarted second server give the same report
        urls["a"] = a.start()
        from_b, from_a = _report(urls["b"], read), _report(urls["a"], read)
        assert from_a == from_b
        rows = from_a["report"]["rows"]
        # task attempts of March by capability: counted here by hand from the batches
        expected = Counter(
            ["ci", "cd", "secrets"][int(rid.rsplit("-r", 1)[1]) % 3] for rid in everything
        )
        got = {
            r["segment"]["capability"]: r["value"] for r in rows if r["metric"] == "task.attempts"
        }
        assert got == expected
    finally:
        a.kill()
        b.stop()


def _login(http: httpx.Client, url: str, secret: str) -> str:
    r = http.post(
        url + "/login",
        data={"token": secret, "next": "/data"},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert r.status_code == 303, r.text
    return r.cookies["heatlens_session"]


def _page(url: str, cookie: str) -> int:
    r = httpx.get(url + "/data", headers={"Cookie": f"heatlens_session={cookie}"}, timeout=120)
    return r.status_code


def test_sessions_and_rate_limits_are_shared_by_the_servers(
    postgres_url: str, tmp_path: Path
) -> None:
    read, limited = _tokens(postgres_url, "read", "admin")
    env = {"HEATLENS_SERVER_RATE_LIMIT_PER_MINUTE": "20"}
    a = ServeProcess(postgres_url, cwd=tmp_path, env=env)
    b = ServeProcess(postgres_url, cwd=tmp_path, env=env)
    url_a, url_b = a.start(), b.start()
    try:
        with httpx.Client(timeout=120) as http:
            cookie = _login(http, url_a, read)
        assert _page(url_b, cookie) == 200  # made on A, good on B
        assert _page(url_b, "forged") == 303
        a.stop()
        url_a = a.start()
        assert _page(url_a, cookie) == 200  # A restarted: still logged in
        with httpx.Client(timeout=120) as http:
            r = http.post(
                url_b + "/logout",
                headers={"Sec-Fetch-Site": "same-origin", "Cookie": f"heatlens_session={cookie}"},
            )
            assert r.status_code == 303
        assert _page(url_a, cookie) == 303  # logged out on B: gone on A too

        # one window of 20 a minute for the admin token, whichever server counts it
        headers = {"Authorization": f"Bearer {limited}"}
        statuses = []
        for i in range(20):
            url = url_a if i % 2 else url_b
            statuses.append(httpx.get(url + "/api/v1/admin/tokens", headers=headers).status_code)
        assert statuses == [200] * 20
        for url in (url_a, url_b):
            r = httpx.get(url + "/api/v1/admin/tokens", headers=headers)
            assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
    finally:
        a.stop()
        b.stop()
