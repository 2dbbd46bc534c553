"""The one object the web app shares: settings, the store, and the writer that groups ingests.

Store work is blocking, so it runs in worker threads. A store holds a single connection, which
neither DuckDB nor psycopg lets two threads use at once, so the app opens the store twice: one
connection for `run` (reads, and the admin commands' writes), one for the ingest writer
(heatlens.web.writer), which validates each group of requests on its own connection while `run`
goes on. One first-come-first-served lock is held by each `run` call and by the writer while it
writes a group: writes never interleave, and a read waits for at most one group's commit, never
for a stream of them. Writes commit before the lock is released, so a response sent after `run`
or `ingest` returns describes committed data; reads see committed data only.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool

from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.web.limits import RateLimiter
from heatlens.web.writer import Outcome, Writer

P = ParamSpec("P")
T = TypeVar("T")


class FairLock:
    """A lock granted in the order it was asked for (threading.Lock lets a releasing thread
    take it straight back, which would starve readers behind a busy writer)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._waiting: deque[object] = deque()
        self._held = False

    def __enter__(self) -> None:
        me = object()
        with self._cond:
            self._waiting.append(me)
            while self._held or self._waiting[0] is not me:
                self._cond.wait()
            self._waiting.popleft()
            self._held = True

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()


class Service:
    """Settings plus the store the app owns from startup to shutdown."""

    def __init__(self, settings: Settings, store_url: str) -> None:
        self.settings = settings
        self.store_url = store_url
        self._store: Store | None = None
        self._writer_store: Store | None = None
        self._lock = FairLock()
        self.limiter = RateLimiter(settings.server_rate_limit_per_minute)
        self.writer = Writer(self._lock, self._ingest_store, settings)

    def open(self) -> None:
        """Open the store (twice) and start the writer (at app startup)."""
        if self._store is None:
            self._store = Store.open(self.store_url)
            self._writer_store = Store.open(self.store_url)
        self.writer.start()

    def close(self) -> None:
        """Stop the writer (after it has written what is queued), close the store."""
        self.writer.stop()
        for store in (self._writer_store, self._store):
            if store is not None:
                store.close()
        self._store = self._writer_store = None

    def _ingest_store(self) -> Store:
        if self._writer_store is None:
            raise RuntimeError("the app's store is not open: run the app inside its lifespan")
        return self._writer_store

    @property
    def store(self) -> Store:
        """The open store; only use it inside `run` (or the writer)."""
        if self._store is None:
            raise RuntimeError("the app's store is not open: run the app inside its lifespan")
        return self._store

    async def run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Call `fn(store, *args, **kwargs)` in a worker thread, holding the store lock."""

        def locked() -> T:
            with self._lock:
                return fn(self.store, *args, **kwargs)

        return await run_in_threadpool(locked)

    def call(self, fn: Callable[[Store], T]) -> T:
        """Call `fn(store)` in this thread, holding the store lock (for background work such as
        scheduled syncs, which then wait their turn like any request)."""
        with self._lock:
            return fn(self.store)

    async def ingest(self, records: list[dict[str, Any]]) -> Outcome:
        """Validate and write records through the writer; returns once they are committed.

        Raises InputError (nothing stored) or WriteFailed (nothing of the group stored).
        """
        return await asyncio.wrap_future(self.writer.submit(records))
