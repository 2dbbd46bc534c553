"""The server's one writer: it groups concurrent ingest requests into one transaction (DESIGN §5).

Requests queue up while the writer is busy. When it is free it takes every request waiting (up to
`max_records` records) and validates them in one pass, each judged on its own — a bad request gets
its own InputError and never affects the others (heatlens.ingest.pipeline). Then, holding the store
lock, it writes all the valid ones in ONE transaction and commits before answering any of them: an
answer means committed. If that write fails, every request of the group gets the error and nothing
of the group is stored.

Counts: each request reports its own records as if the group's requests had been written one
after another in the order taken: a record inserted by an earlier request of the group counts as
updated or unchanged for a later one, exactly as if the two requests had come in separate groups.
Every request of a group gets the data version after the group's commit.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from heatlens.errors import InputError, StoreError
from heatlens.ingest import IngestResult, Prepared, discard, prepare_records
from heatlens.ingest import write as write_prepared
from heatlens.settings import Settings
from heatlens.store import Store

log = logging.getLogger("heatlens.web")

# a group stops growing past this many records: it bounds the latency a group adds
MAX_GROUP_RECORDS = 50_000
# seconds the writer waits for more requests once clients are seen posting concurrently
LINGER = 0.02

Write = Callable[[Store, Prepared], list[IngestResult | InputError]]
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """What the writer did with one request: its counts, once committed."""

    result: IngestResult
    data_version: int
    group: int  # how many requests were written in the same transaction


class WriteFailed(StoreError):
    """The group's transaction failed: nothing of the request was stored."""


@dataclass
class _Job:
    records: list[dict[str, Any]]
    future: Future[Outcome]


@dataclass
class _Task:
    """Any other write (admin ingest, delete, tokens, syncs): run alone, in its turn."""

    fn: Callable[[Store], Any]
    future: Future[Any]


_STOP = object()


class Writer:
    """A thread owning every ingest of the server, on a store connection of its own.

    `store` gives that store. The writer validates without any lock, then holds `exclusive` (the
    lock every other writer of the store takes) while it counts, writes and commits a group.
    """

    def __init__(
        self,
        exclusive: AbstractContextManager[Any],
        store: Callable[[], Store],
        settings: Settings,
        *,
        max_records: int = MAX_GROUP_RECORDS,
        linger: float = LINGER,
        write: Write = write_prepared,
    ) -> None:
        self._exclusive = exclusive
        self._store = store
        self._settings = settings
        self._max_records = max_records
        self._write = write
        self._queue: queue.SimpleQueue[_Job | _Task | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._gate = threading.Lock()
        self._linger = linger
        self._last_group = 0

    def start(self) -> None:
        """Start the writer thread (at app startup)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="heatlens-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Write what is queued, then stop the thread (at app shutdown)."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Hold back the next group: requests submitted meanwhile are taken together after."""
        with self._gate:
            yield

    def submit(self, records: list[dict[str, Any]]) -> Future[Outcome]:
        """Queue records to be validated and written; the future resolves once committed."""
        if self._thread is None:
            raise RuntimeError("the writer is not running: run the app inside its lifespan")
        future: Future[Outcome] = Future()
        self._queue.put(_Job(records, future))
        return future

    def run(self, fn: Callable[[Store], T]) -> Future[T]:
        """Queue any write `fn(store)`; the future gives its result once it returned (its
        transactions committed), or its exception."""
        if self._thread is None:
            raise RuntimeError("the writer is not running: run the app inside its lifespan")
        future: Future[T] = Future()
        self._queue.put(_Task(fn, future))
        return future

    def _loop(self) -> None:
        stopping = False
        pending: object | None = None
        while not stopping:
            first = pending if pending is not None else self._queue.get()
            pending = None
            if first is _STOP:
                break
            if isinstance(first, _Task):
                self._run_task(first)
                continue
            with self._gate:
                jobs, stopping, pending = self._take(first)
                try:
                    self._run_group(jobs)
                except Exception as exc:  # never leave a request waiting for ever
                    log.exception("the writer failed")
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(WriteFailed(f"the writer failed: {exc}"))

    def _run_task(self, task: _Task) -> None:
        if not task.future.set_running_or_notify_cancel():
            return
        try:
            with self._gate, self._exclusive:
                result = task.fn(self._store())
        except BaseException as exc:
            task.future.set_exception(exc)
        else:
            task.future.set_result(result)

    def _take(self, first: object) -> tuple[list[_Job], bool, object | None]:
        """The first job and every job waiting behind it, up to the group's record limit.

        When the last group held several requests, clients are posting concurrently: the writer
        then lingers a moment for the ones still on their way, since a group costs about the
        same whatever its size. A lone client is never made to wait.
        """
        jobs: list[_Job] = []
        size = 0
        item = first
        deadline = time.monotonic() + (self._linger if self._last_group > 1 else 0.0)
        while True:
            assert isinstance(item, _Job)
            # a request whose client went away before its turn is dropped, never written
            if item.future.set_running_or_notify_cancel():
                jobs.append(item)
                size += len(item.records)
            if size >= self._max_records:
                break
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is _STOP or isinstance(item, _Task):
                # a task is not part of the group: it runs next, after the group's commit
                self._last_group = len(jobs)
                return jobs, item is _STOP, item if isinstance(item, _Task) else None
        self._last_group = len(jobs)
        return jobs, False, None

    def _run_group(self, jobs: list[_Job]) -> None:
        store = self._store()
        try:
            group = prepare_records(store, [j.records for j in jobs], self._settings, source="api")
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].future.set_exception(exc)
                return
            # something no rule foresaw broke the pass: judge each request alone, so only the
            # request that causes it fails
            for job in jobs:
                self._run_group([job])
            return
        try:
            written: list[IngestResult | Exception]
            version = 0
            if any(isinstance(o, IngestResult) for o in group.results):
                try:
                    with self._exclusive:
                        written = list(self._write(store, group))
                        version = store.data_version()
                except Exception as exc:
                    log.error("a group of %d ingest request(s) failed: %s", len(jobs), exc)
                    failed = WriteFailed(f"the store could not commit the records: {exc}")
                    written = [failed if isinstance(o, IngestResult) else o for o in group.results]
            else:
                written = list(group.results)
            together = sum(isinstance(w, IngestResult) for w in written)
            for job, w in zip(jobs, written, strict=True):
                if isinstance(w, IngestResult):
                    job.future.set_result(Outcome(w, version, together))
                else:
                    job.future.set_exception(w)
        finally:
            try:
                discard(store, group)
            except Exception:
                log.exception("could not drop the staging tables of an ingest group")
