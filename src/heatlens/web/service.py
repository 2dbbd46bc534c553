"""The one object the web app shares: settings and one store, used by one request at a time.

Store work is blocking, so it runs in a worker thread; one lock serialises it because a store holds
a single connection, which neither DuckDB nor psycopg lets two threads use at once. Writes commit
before the lock is released, so a response sent after `run` returns describes committed data.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool

from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.web.limits import RateLimiter

P = ParamSpec("P")
T = TypeVar("T")


class Service:
    """Settings plus the store the app owns from startup to shutdown."""

    def __init__(self, settings: Settings, store_url: str) -> None:
        self.settings = settings
        self.store_url = store_url
        self._store: Store | None = None
        self._lock = threading.Lock()
        self.limiter = RateLimiter(settings.server_rate_limit_per_minute)

    def open(self) -> None:
        """Open the store (at app startup)."""
        if self._store is None:
            self._store = Store.open(self.store_url)

    def close(self) -> None:
        """Close the store (at app shutdown)."""
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def store(self) -> Store:
        """The open store; only use it inside `run`."""
        if self._store is None:
            raise RuntimeError("the app's store is not open: run the app inside its lifespan")
        return self._store

    async def run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Call `fn(store, *args, **kwargs)` in a worker thread, holding the store lock."""

        def locked() -> T:
            with self._lock:
                return fn(self.store, *args, **kwargs)

        return await run_in_threadpool(locked)
