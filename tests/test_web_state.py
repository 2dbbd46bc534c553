"""Sessions and rate-limit windows kept in the store (heatlens.store.web_state): two server
processes on one store see the same sessions and count in the same windows."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from heatlens.store import Store
from heatlens.store.tokens import Token
from heatlens.web.auth import Sessions
from heatlens.web.limits import SharedRateLimiter
from tests.together import together

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TOKEN = Token("t1", None, "read", (), NOW, None)


def _runner(store: Store) -> Callable[[Callable[[Store], Any]], Any]:
    lock = threading.Lock()

    def run(fn: Callable[[Store], Any]) -> Any:
        with lock:
            return fn(store)

    return run


def test_sessions_in_the_store_are_shared_hashed_and_end(store_url: str) -> None:
    now = [NOW]
    with Store.open(store_url) as a_store, Store.open(store_url) as b_store:
        a = Sessions(12.0, clock=lambda: now[0], run=_runner(a_store))
        b = Sessions(12.0, clock=lambda: now[0], run=_runner(b_store))
        session = a.create(TOKEN)
        # made on one server, known on the other, with its token and end
        found = b.get(session.id)
        assert found is not None and found.token_id == "t1"
        assert found.expires == NOW + timedelta(hours=12)
        # only the SHA-256 of the id is stored
        rows = a_store._backend.fetchall("SELECT id_hash, token_id FROM web_session")
        assert rows == [(hashlib.sha256(session.id.encode()).hexdigest(), "t1")]
        assert b.get("not-a-session") is None and b.get(None) is None
        # a logout on one server ends it on the other
        other = a.create(TOKEN)
        b.drop(other.id)
        assert a.get(other.id) is None and a.get(session.id) is not None
        # an ended session is refused, and forgotten when the next one is made
        now[0] = NOW + timedelta(hours=12)
        assert a.get(session.id) is None and b.get(session.id) is None
        b.create(TOKEN)
        assert len(a_store._backend.fetchall("SELECT id_hash FROM web_session")) == 1


@pytest.mark.postgres
def test_two_servers_count_in_one_rate_limit_window(postgres_url: str) -> None:
    now = [1000.0]
    with Store.open(postgres_url) as a_store, Store.open(postgres_url) as b_store:
        a = SharedRateLimiter(3, _runner(a_store), clock=lambda: now[0])
        b = SharedRateLimiter(3, _runner(b_store), clock=lambda: now[0])
        assert a.hit("token:x") is None and a.hit("token:x") is None
        assert b.hit("token:x") is None  # the third of 3 in the minute
        assert b.hit("token:x") == 60 and a.hit("token:x") == 60  # full on both
        assert a.hit("token:y") is None  # per key
        assert a.full("token:x") == 60 and b.full("token:y") is None
        now[0] = 1030.0
        assert a.hit("token:x") == 30  # the requests at 1000 leave at 1060
        b.charge("token:x", 2)  # a request found to cost 2 more, counted past the limit
        now[0] = 1060.5  # the three at 1000 have left; the 2 charged at 1030 remain
        assert b.hit("token:x") is None  # 2 + 1 = 3: fits
        # a minute after B started counting, it forgot the keys quiet for a minute (y: 1000)
        assert b_store._backend.fetchall("SELECT key FROM rate_window") == [("token:x",)]
        assert a.full("token:x") == 30  # 3 + 1 > 3 until the charge leaves at 1090
        # a request costing more than the whole allowance counts as the allowance
        now[0] = 2000.0
        assert a.hit("token:z", 10) is None and b.hit("token:z") == 60


@pytest.mark.postgres
def test_concurrent_hits_from_two_servers_never_pass_the_limit(postgres_url: str) -> None:
    stores = [Store.open(postgres_url) for _ in range(2)]
    limiters = [SharedRateLimiter(50, _runner(s), clock=lambda: 5000.0) for s in stores]
    allowed = [0, 0]

    def hammer(i: int) -> None:
        for _ in range(60):
            if limiters[i].hit("client:1.2.3.4") is None:
                allowed[i] += 1

    together(hammer, 2)
    for s in stores:
        s.close()
    assert sum(allowed) == 50  # 120 asked, exactly the limit let through
