"""The server's access to its store (a heatlens.application.StoreAccess): one reader, one writer.

Store work is blocking, so it runs in worker threads. A store holds a single connection, which
neither DuckDB nor psycopg lets two threads use at once, so the server opens the store twice: one
connection for reads (`read`, `run`), one for the writer thread (heatlens.web.writer), which runs
EVERY write of the server — the events API's grouped requests, admin ingest, deletes, tokens and
scheduled syncs — one after another. One first-come-first-served lock is held by each read and by
the writer while it writes: a read waits for at most one write's commit, never for a stream of
them. Writes commit before their caller is answered, so a response describes committed data;
reads see committed data only.

The application (heatlens.application.LocalApplication) runs on this access inside the server, so
its operations are the same code as on the command line.
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
    """Settings, the store the app owns from startup to shutdown, and the application on it."""

    def __init__(self, settings: Settings, store_url: str) -> None:
        self.settings = settings
        self.url = self.store_url = store_url
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

    def read(self, fn: Callable[[Store], T]) -> T:
        """Call `fn(store)` in this thread, holding the read lock; `fn` must not write."""
        with self._lock:
            return fn(self.store)

    def write(self, fn: Callable[[Store], T]) -> T:
        """Call `fn(store)` on the writer thread, in its turn; returns once it committed."""
        return self.writer.run(fn).result()

    async def run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Call `fn(store, *args, **kwargs)` (a read) in a worker thread."""
        return await run_in_threadpool(self.read, lambda store: fn(store, *args, **kwargs))

    async def call(self, method: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Call an application method in a worker thread (it reads or writes through this
        access itself)."""
        return await run_in_threadpool(method, *args, **kwargs)

    async def ingest(self, records: list[dict[str, Any]]) -> Outcome:
        """Validate and write records through the writer; returns once they are committed.

        Raises InputError (nothing stored) or WriteFailed (nothing of the group stored).
        """
        return await asyncio.wrap_future(self.writer.submit(records))
