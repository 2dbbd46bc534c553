"""The server's access to its store (a heatlens.application.StoreAccess): a pool of readers, one
quick connection, one writer.

Store work is blocking, so it runs in worker threads. A store holds a single connection, which
neither DuckDB nor psycopg lets two threads use at once, so the server opens the store several
times in its one process (DuckDB shares one database between them; Postgres gives each its own
session):

- `server.read_connections` connections for reads (`read`, `run`): reports, pages, explain. Each
  read takes a free one, so reads run side by side and one slow read never holds up another;
  when every one is busy, a read waits for the first to be free.
- one quick connection (`lookup`) for the small lookups every request makes before its work —
  authentication, the data version of /healthz and of the page cache — so they never wait behind
  a report.
- one shared-state connection (`shared`) for browser sessions and, on Postgres, rate-limit
  windows (heatlens.store.web_state): a statement of a few rows, run in the calling thread, so
  that several servers on one Postgres share them.
- one for the writer thread (heatlens.web.writer), which runs EVERY write of the server — the
  events API's grouped requests, admin ingest, deletes, tokens and scheduled syncs — one after
  another.

Reads see committed data only (each engine isolates a read from a concurrent write), and writes
commit before their caller is answered, so a response describes committed data.

The application (heatlens.application.LocalApplication) runs on this access inside the server, so
its operations are the same code as on the command line.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

import pyarrow as pa
from starlette.concurrency import run_in_threadpool

from heatlens.model import RECORD_TYPES
from heatlens.settings import Settings
from heatlens.store import Store, parse_store_url
from heatlens.store.tokens import TokenCache
from heatlens.web.limits import Limiter, RateLimiter, SharedRateLimiter
from heatlens.web.warm import ModelWarmer
from heatlens.web.writer import Hook, Outcome, Writer

log = logging.getLogger("heatlens.web")
P = ParamSpec("P")
T = TypeVar("T")

# the seconds each read of the current request held a read connection (heatlens.web.cost)
_WORK: ContextVar[list[float] | None] = ContextVar("heatlens_store_work", default=None)


class Service:
    """Settings, the store the app owns from startup to shutdown, and the application on it.

    `open_api` is decided once at startup (LocalApplication.ensure_servable): True only for a
    loopback server on a store that never had a token; the first token created closes it.
    """

    def __init__(self, settings: Settings, store_url: str) -> None:
        self.settings = settings
        self.url = self.store_url = store_url
        self.memory_limit = settings.duckdb_memory_bytes  # DuckDB's, for every connection
        self.open_api = False
        self._readers: list[Store] = []
        self._free: queue.Queue[Store] = queue.Queue()
        self._quick: Store | None = None
        self._quick_lock = threading.Lock()
        self._quick_thread: ThreadPoolExecutor | None = None
        self._writer_store: Store | None = None
        self._shared: Store | None = None
        self._shared_lock = threading.Lock()
        self.limiter: Limiter
        if parse_store_url(store_url).dialect == "postgres":
            # several servers may share this store: they count in one window per key
            self.limiter = SharedRateLimiter(settings.server_rate_limit_per_minute, self.shared)
        else:  # the only process writing the store: counting in memory is the same, cheaper
            self.limiter = RateLimiter(settings.server_rate_limit_per_minute)
        # tokens as last looked up, for a store only this server changes (heatlens.web.auth)
        self.tokens = TokenCache() if parse_store_url(store_url).dialect == "duckdb" else None
        self.writer = Writer(threading.Lock(), self._ingest_store, settings)
        # the engine's model, built at start and after writes (heatlens.web.warm)
        self.warmer = ModelWarmer(lambda: self.quick(Store.data_version), self._build_model)
        self.writer.written = self.warmer.poke

    def _build_model(self) -> int | None:
        from heatlens.metrics.engine import warm  # Ibis loads with the first report

        return self.read(lambda store: warm(store, self.settings))

    def open(self) -> None:
        """Open the store (the writer's connection first: it creates or migrates the store),
        the quick connection and the readers, and start the writer (at app startup)."""
        if self._writer_store is None:
            self._writer_store = Store.open(self.store_url, memory_limit=self.memory_limit)
            # the only writer of a DuckDB file: it keeps the stored ids in memory instead of
            # scanning a table for every small write (heatlens.store.ids)
            self._writer_store.keep_ids = parse_store_url(self.store_url).dialect == "duckdb"
            self._quick = Store.open(self.store_url, memory_limit=self.memory_limit)
            self._shared = Store.open(self.store_url, memory_limit=self.memory_limit)
            for _ in range(self.settings.server_read_connections):
                reader = Store.open(self.store_url, memory_limit=self.memory_limit)
                self._readers.append(reader)
                self._free.put(reader)
        if self._quick_thread is None:
            self._quick_thread = ThreadPoolExecutor(1, thread_name_prefix="heatlens-quick")
        self.writer.start()

    def close(self) -> None:
        """Stop the writer (after it has written what is queued), close every connection."""
        self.writer.stop()
        if self._quick_thread is not None:
            self._quick_thread.shutdown(wait=True)
            self._quick_thread = None
        for store in (self._writer_store, self._quick, self._shared, *self._readers):
            if store is not None:
                store.close()
        self._writer_store = self._quick = self._shared = None
        self._readers = []
        self._free = queue.Queue()

    def read_ids_ahead(self) -> threading.Thread | None:
        """Read the writer connection's directories of stored ids (heatlens.store.ids) from a
        read connection, in a thread of their own, so that the first writes after start do not
        wait for them (about 5 s at 10 M records); the thread, or None when nothing is read."""
        writer = self._writer_store
        if writer is None or not writer.keep_ids:
            return None

        def run() -> None:
            # on a connection of its own: not one of the pages' readers, nor metered as theirs
            try:
                with Store.open(self.store_url, memory_limit=self.memory_limit) as store:
                    for rtype in RECORD_TYPES:
                        directory = store.read_id_directory(rtype.name)
                        if directory is not None:
                            writer.adopt_ids(rtype.name, directory)
            except Exception as exc:  # the writer reads them itself when it needs them
                log.warning("could not read the stored ids ahead: %s", exc)

        thread = threading.Thread(target=run, name="heatlens-ids", daemon=True)
        thread.start()
        return thread

    def _ingest_store(self) -> Store:
        if self._writer_store is None:
            raise RuntimeError("the app's store is not open: run the app inside its lifespan")
        return self._writer_store

    @property
    def store(self) -> Store:
        """The quick connection (tests look at the store through it)."""
        if self._quick is None:
            raise RuntimeError("the app's store is not open: run the app inside its lifespan")
        return self._quick

    def read(self, fn: Callable[[Store], T]) -> T:
        """Call `fn(store)` in this thread on a free read connection; `fn` must not write."""
        if not self._readers:
            raise RuntimeError("the app's store is not open: run the app inside its lifespan")
        store = self._free.get()
        started = time.perf_counter()
        try:
            return fn(store)
        finally:
            self._free.put(store)
            work = _WORK.get()
            if work is not None:
                work.append(time.perf_counter() - started)

    def meter(self) -> list[float]:
        """Start measuring the store work of the current request (and of what it calls in
        worker threads): the list gets the seconds of each of its reads."""
        work: list[float] = []
        _WORK.set(work)
        return work

    def quick(self, fn: Callable[[Store], T]) -> T:
        """Call `fn(store)` on the quick connection: for lookups of a few rows only."""
        with self._quick_lock:
            return fn(self.store)

    def shared(self, fn: Callable[[Store], T]) -> T:
        """Call `fn(store)` on the shared-state connection, in this thread: for the one-statement
        reads and writes of sessions and rate limits (heatlens.store.web_state) only."""
        with self._shared_lock:
            if self._shared is None:
                raise RuntimeError("the app's store is not open: run the app inside its lifespan")
            return fn(self._shared)

    def write(self, fn: Callable[[Store], T]) -> T:
        """Call `fn(store)` on the writer thread, in its turn; returns once it committed."""
        return self.writer.run(fn).result()

    async def run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Call `fn(store, *args, **kwargs)` (a read) in a worker thread."""
        return await run_in_threadpool(self.read, lambda store: fn(store, *args, **kwargs))

    async def lookup(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Call `fn(store, *args, **kwargs)` (a small read) on the quick connection, in the
        quick connection's own thread (one: the connection serves one call at a time). Handing
        a call to it costs the event loop a fraction of what AnyIO's worker threads cost, and
        every authenticated request makes one (docs/performance.md)."""
        if self._quick_thread is None:
            raise RuntimeError("the app's store is not open: run the app inside its lifespan")
        loop = asyncio.get_running_loop()
        call = functools.partial(self.quick, lambda store: fn(store, *args, **kwargs))
        return await loop.run_in_executor(self._quick_thread, call)

    async def call(self, method: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Call an application method in a worker thread (it reads or writes through this
        access itself)."""
        return await run_in_threadpool(method, *args, **kwargs)

    async def ingest(
        self,
        records: list[dict[str, Any]],
        hook: Hook | None = None,
        typed: dict[str, pa.Table] | None = None,
    ) -> Outcome:
        """Validate and write records through the writer; returns once they are committed.
        `typed`: the records as heatlens.ingest.quick.typed gave them, when it was called.

        Raises InputError (nothing stored) or WriteFailed (nothing of the group stored).
        """
        return await self.writer.answer(records, hook, typed)
