"""The server's one writer: it groups concurrent ingest requests into one transaction (DESIGN §5).

Requests queue up while the writer is busy. When it is free it takes every request waiting (up to
`max_records` records) and validates them in one pass, each judged on its own — a bad request gets
its own InputError and never affects the others (heatlens.ingest.pipeline). Then, holding the store
lock, it writes all the valid ones in ONE transaction and commits before answering any of them: an
answer means committed. If that write fails, every request of the group gets the error and nothing
of the group is stored.

Webhook deliveries and CDEvents join the same groups with a `Hook`: in the group's transaction a
request whose identity (a delivery id, an event's record) is stored or taken earlier in the group is
a duplicate; partial records are overlaid on the stored ones and on the group's earlier hooked
requests (heatlens.ingest.partial.overlay_stored) before validation; a refused request that fed a
later one's overlay is taken out and the later ones judged again; and the accepted requests' sync
state (delivery ids, counters) is saved with the records. Everything — lookups, overlays,
validation, the merge, the sync state — runs in ONE store transaction, committed before any answer.

Counts: each request reports its own records as if the group's requests had been written one
after another in the order taken: a record inserted by an earlier request of the group counts as
updated or unchanged for a later one, exactly as if the two requests had come in separate groups.
Every request of a group gets the data version after the group's commit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from heatlens.errors import InputError, StoreError
from heatlens.ingest import IngestResult, Input, Part, Prepared, discard, prepare, quick
from heatlens.ingest import write as write_prepared
from heatlens.ingest.partial import overlay_stored
from heatlens.model import BY_NAME
from heatlens.settings import Settings
from heatlens.store import PART, Store, WriteCounts

log = logging.getLogger("heatlens.web")

# a group stops growing past this many records: it bounds the latency a group adds
MAX_GROUP_RECORDS = 50_000
# seconds the writer waits for more requests once clients are seen posting concurrently…
LINGER = 0.02
# …unless none came for this long: the event loop parses a one-record request in well under
# 0.1 ms, so 1 ms without one means the concurrent ones are in (4 ms left the writer idle for
# as long as parsing a whole group took: docs/performance.md, "Seventh round")
GAP = 0.001

Write = Callable[[Store, Prepared], list[IngestResult | InputError]]
T = TypeVar("T")
StateOf = Callable[[str], "dict[str, Any] | None"]
SYNC_STATE = "sync_state"  # a Hook key naming a sync state, not a record type


@dataclass(frozen=True)
class Outcome:
    """What the writer did with one request: its counts, once committed."""

    result: IngestResult
    data_version: int
    group: int  # how many requests were written in the same transaction
    duplicate: bool = False  # its key was taken before: nothing of it was written


@dataclass(frozen=True)
class Hook:
    """What a request carrying a vendor's partial records (a webhook delivery, a CDEvent) adds
    to plain records — all in its group's transaction:

    - `source`: its records' source;
    - `key`: its identity, `(SYNC_STATE, name)` (a state `state` saves) or `(type, id)` (a record
      it writes): when the store has it, or an earlier request of the group has it, the request
      is a duplicate and nothing of it is written (a copy of a refused request gets the same
      refusal);
    - its records are overlaid on the stored ones and on those of the hooked requests before it
      in the group (heatlens.ingest.partial.overlay_stored), so two events of one incident in
      one group merge;
    - `state(current)`: the sync state (name → state) saved with it once it is accepted;
      `current(name)` is a state as the group left it so far, else as stored.
    """

    source: str
    key: tuple[str, str] | None = None
    state: Callable[[StateOf], dict[str, dict[str, Any]]] | None = None


class WriteFailed(StoreError):
    """The group's transaction failed: nothing of the request was stored."""


class _Answer:
    """The answer to a request awaited in an asyncio loop (`Writer.answer`): the writer sets
    it like a concurrent Future's, and hands the answers of a whole group to each loop in one
    call (`Writer._settle`) instead of waking the loop once per request."""

    def __init__(self, writer: Writer, loop: asyncio.AbstractEventLoop) -> None:
        self.writer = writer
        self.loop = loop
        self.future: asyncio.Future[Outcome] = loop.create_future()
        self.value: Outcome | None = None
        self.error: BaseException | None = None
        self._set = False

    def set_running_or_notify_cancel(self) -> bool:
        return not self.future.cancelled()  # the client went away before its turn

    def done(self) -> bool:
        return self._set

    def set_result(self, value: Outcome) -> None:
        self.value, self._set = value, True
        self.writer._answered.append(self)

    def set_exception(self, error: BaseException) -> None:
        self.error, self._set = error, True
        self.writer._answered.append(self)

    def deliver(self) -> None:
        """In the loop: resolve the asyncio future (unless it was cancelled meanwhile)."""
        if not self.future.done():
            if self.error is not None:
                self.future.set_exception(self.error)
            else:
                self.future.set_result(self.value)  # type: ignore[arg-type]


def _deliver(answers: list[_Answer]) -> None:
    for answer in answers:
        answer.deliver()


@dataclass
class _Job:
    records: list[dict[str, Any]]
    future: Future[Outcome] | _Answer
    hook: Hook | None = None
    typed: dict[str, pa.Table] | None = None  # the records as quick.typed gave them


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
        gap: float = GAP,
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
        self._gap = gap
        self._last_group = 0
        self._answered: list[_Answer] = []  # answers set, not yet handed to their loops
        # told (from the writer thread) each time a group or task finished, committed or not:
        # the server's model warmer checks the data version itself (heatlens.web.warm)
        self.written: Callable[[], None] = lambda: None

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

    def submit(self, records: list[dict[str, Any]], hook: Hook | None = None) -> Future[Outcome]:
        """Queue records (with what `hook` adds) to be validated and written; the future
        resolves once committed."""
        if self._thread is None:
            raise RuntimeError("the writer is not running: run the app inside its lifespan")
        future: Future[Outcome] = Future()
        self._queue.put(_Job(records, future, hook))
        return future

    async def answer(
        self,
        records: list[dict[str, Any]],
        hook: Hook | None = None,
        typed: dict[str, pa.Table] | None = None,
    ) -> Outcome:
        """`submit`, awaited in the running loop: the outcome once committed. The answers of a
        group reach the loop in one call (cheaper than a concurrent Future per request).
        `typed`: the records as heatlens.ingest.quick.typed gave them, when it was called."""
        if self._thread is None:
            raise RuntimeError("the writer is not running: run the app inside its lifespan")
        answer = _Answer(self, asyncio.get_running_loop())
        self._queue.put(_Job(records, answer, hook, typed))
        return await answer.future

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
                finally:
                    self._settle()
                    self.written()

    def _settle(self) -> None:
        """Hand the answers set during a group to their loops: one call per loop."""
        answered, self._answered = self._answered, []
        by_loop: dict[asyncio.AbstractEventLoop, list[_Answer]] = {}
        for answer in answered:
            by_loop.setdefault(answer.loop, []).append(answer)
        for loop, answers in by_loop.items():
            with suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_deliver, answers)

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
        finally:
            self.written()

    def _take(self, first: object) -> tuple[list[_Job], bool, object | None]:
        """The first job and every job waiting behind it, up to the group's record limit.

        When the last group held several requests, clients are posting concurrently: the writer
        then lingers a moment (at most `linger`, and only while requests keep coming, one at
        least every `gap` seconds) for the ones still on their way, since a group costs about
        the same whatever its size. A lone client is never made to wait.
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
            # lingering ends early once requests stop coming: all the concurrent ones are in
            wait = min(deadline - time.monotonic(), self._gap)
            try:
                item = self._queue.get(timeout=max(0.0, wait))
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
            with self._exclusive:
                answers = self._group(store, jobs)
        except _Broke as broke:
            cause = broke.__cause__ or broke
            if len(jobs) == 1:
                jobs[0].future.set_exception(cause)
                return
            # something no rule foresaw broke the pass: judge each request alone, so only the
            # request that causes it fails
            for job in jobs:
                self._run_group([job])
            return
        for job, answer in zip(jobs, answers, strict=True):
            if isinstance(answer, Outcome):
                job.future.set_result(answer)
            else:
                job.future.set_exception(answer)

    def _group(self, store: Store, jobs: list[_Job]) -> list[Outcome | BaseException]:
        """Admit, validate and write a group in ONE transaction; each request's answer."""
        answers: list[Outcome | BaseException | None] = [None] * len(jobs)
        admitted = _Admitted()
        try:
            try:
                with store.transaction():
                    try:
                        admitted = self._admit(store, jobs, answers)
                    except Exception as exc:
                        raise _Broke() from exc
                    if admitted.prepared is not None and admitted.results:
                        self._write(store, admitted.prepared)
                    if admitted.state:
                        store.save_sync_states(admitted.state, new=admitted.unsaved(jobs))
                    # the insert's own bump when it gave one: nothing else wrote since
                    version = admitted.version or store.data_version()
            except _Broke:
                raise
            except Exception as exc:
                log.error("a group of %d ingest request(s) failed: %s", len(jobs), exc)
                failed = WriteFailed(f"the store could not commit the records: {exc}")
                for i in admitted.accepted:
                    answers[i] = failed
                version = 0
        finally:
            if admitted.prepared is not None:
                try:
                    discard(store, admitted.prepared)
                except Exception:
                    log.exception("could not drop the staging tables of an ingest group")
        together = len(admitted.accepted)
        for i in admitted.accepted:
            if answers[i] is None:
                answers[i] = Outcome(admitted.results.get(i, IngestResult()), version, together)
        for i, answer in enumerate(answers):
            if answer is None:  # a duplicate: of a stored request, or of one earlier in the group
                original = answers[admitted.copies[i]] if i in admitted.copies else None
                if isinstance(original, BaseException):
                    answers[i] = original  # the same delivery again: the same refusal
                else:
                    answers[i] = Outcome(IngestResult(), version, together, duplicate=True)
        return [a for a in answers if a is not None]

    def _admit(
        self, store: Store, jobs: list[_Job], answers: list[Outcome | BaseException | None]
    ) -> _Admitted:
        """Find the duplicates, overlay the partial records, validate and stage the rest; the
        refused requests get their InputError in `answers`."""
        admitted = _Admitted()
        keyed = [(i, job.hook.key) for i, job in enumerate(jobs) if job.hook and job.hook.key]
        stored = _stored_keys(store, [k for _, k in keyed])
        first: dict[tuple[str, str], int] = {}
        duplicates: set[int] = set()
        for i, key in keyed:
            if key in stored:
                duplicates.add(i)
            elif key in first:
                admitted.copies[i] = first[key]
            else:
                first[key] = i
        todo = [i for i in range(len(jobs)) if i not in duplicates and i not in admitted.copies]
        refused: set[int] = set()
        overlaid = None
        if self._write is write_prepared:  # (a test's own `write` sees every group)
            mine = [i for i in todo if jobs[i].records]
            overlaid = _overlaid(store, jobs, mine)
            inserted = _insert_new(store, jobs, mine, overlaid, self._settings)
            if inserted is not None:
                admitted.accepted = todo
                admitted.results, admitted.version = inserted
                self._save_state(store, jobs, admitted)
                return admitted
        while True:
            # a request refused here may have fed its records to a later request's overlay:
            # then the later ones are judged again without it (a bad delivery never affects
            # another)
            live = [i for i in todo if i not in refused]
            mine = [i for i in live if jobs[i].records]
            records = overlaid if overlaid is not None else _overlaid(store, jobs, mine)
            overlaid = None  # judged again: without the refused requests
            inputs = [Input([_part(jobs[i], records[i])], advice="") for i in mine]
            prepared = prepare(store, inputs, self._settings) if inputs else None
            results = prepared.results if prepared is not None else []
            bad = [i for i, r in zip(mine, results, strict=True) if isinstance(r, InputError)]
            first_bad = min((i for i in bad if jobs[i].hook), default=None)
            for i, r in zip(mine, results, strict=True):
                if isinstance(r, InputError) and (
                    first_bad is None or jobs[i].hook is None or i <= first_bad
                ):
                    answers[i] = r
                    refused.add(i)
            fed = first_bad is not None and any(
                jobs[i].hook is not None and i > first_bad for i in mine
            )
            if not fed:
                break
            assert prepared is not None
            discard(store, prepared)
        admitted.prepared = prepared
        admitted.accepted = [i for i in live if i not in refused]
        admitted.results = {
            i: r for i, r in zip(mine, results, strict=True) if isinstance(r, IngestResult)
        }
        self._save_state(store, jobs, admitted)
        return admitted

    def _save_state(self, store: Store, jobs: list[_Job], admitted: _Admitted) -> None:
        """The sync state the accepted hooked requests save, in order."""
        state = admitted.state

        def current(name: str) -> dict[str, Any] | None:
            return state[name] if name in state else store.sync_state(name)

        for i in admitted.accepted:
            hook = jobs[i].hook
            if hook is not None and hook.state is not None:
                state.update(hook.state(current))


class _Broke(Exception):
    """The group's pass raised: no request of it was judged."""


@dataclass
class _Admitted:
    """A group once admitted: what to write, and who is in it."""

    prepared: Prepared | None = None
    accepted: list[int] = field(default_factory=list)  # requests written (in the group's order)
    results: dict[int, IngestResult] = field(default_factory=dict)  # those with records
    copies: dict[int, int] = field(default_factory=dict)  # request → earlier one with its key
    state: dict[str, dict[str, Any]] = field(default_factory=dict)  # sync state to save
    version: int | None = None  # the data version, when the group's insert gave it

    def unsaved(self, jobs: list[_Job]) -> set[str]:
        """The sync states the accepted requests are keyed on: found unsaved by `_admit`, in
        the group's transaction."""
        hooks = (jobs[i].hook for i in self.accepted)
        keys = [hook.key for hook in hooks if hook is not None and hook.key is not None]
        return {value for kind, value in keys if kind == SYNC_STATE}


def _source(job: _Job) -> str:
    return job.hook.source if job.hook is not None else "api"


def _part(job: _Job, records: list[dict[str, Any]]) -> Part:
    """A request's records as an ingest part (typed already when the request came typed and
    nothing was overlaid on them)."""
    typed = job.typed if job.hook is None else None
    return Part(_source(job), records=records, typed=typed)


def _insert_new(
    store: Store,
    jobs: list[_Job],
    mine: list[int],
    records: dict[int, list[dict[str, Any]]],
    settings: Settings,
) -> tuple[dict[int, IngestResult], int] | None:
    """A group's records written with one insert (Store.insert_new), when they are of one
    type, each valid by heatlens.ingest.quick, each id once in the group and none of them
    stored: every record is then inserted, whatever the merge would compare. Each request's
    result and the data version; None, with nothing written, for any other group (the whole
    merge is needed). Requests typed before (`_Job.typed`, however large) are not typed again;
    the others only in a small group."""
    if not mine or settings.pseudonymise_key is not None:
        return None
    typed = [(i, t) for i in mine if jobs[i].hook is None and (t := jobs[i].typed) is not None]
    tables: dict[str, pa.Table] | None
    if len(typed) == len(mine):
        tables = quick.joined(typed)
    else:
        tables = quick.by_part([(i, r) for i in mine for r in records[i]])
    if tables is None or len(tables) != 1:
        return None
    [(name, data)] = tables.items()
    if pc.count_distinct(data.column("id")).as_py() != data.num_rows:
        return None
    parts = data.column(PART).to_pylist()
    sources = pa.array([_source(jobs[i]) for i in parts], pa.string())
    version = store.insert_new(
        BY_NAME[name], data.append_column("__source", sources), quick.stored_columns(name)
    )
    if version is None:
        return None
    inserted = Counter(parts)
    results = {
        i: IngestResult({name: WriteCounts(inserted=inserted[i])}, read=len(records[i]))
        for i in mine
    }
    return results, version


def _stored_keys(store: Store, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which request keys the store knows: saved sync states, stored records (few queries)."""
    names = [value for kind, value in keys if kind == SYNC_STATE]
    found = {(SYNC_STATE, name) for name in store.known_sync_states(names)}
    by_type: dict[str, list[str]] = {}
    for kind, value in keys:
        if kind != SYNC_STATE:
            by_type.setdefault(kind, []).append(value)
    for type_name, ids in by_type.items():
        found |= {(type_name, str(row["id"])) for row in store.rows(type_name, ids=ids)}
    return found


def _overlaid(store: Store, jobs: list[_Job], mine: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each request's records, those of hooked requests overlaid on the stored records and on
    the hooked requests before them in the group (heatlens.ingest.partial)."""
    out = {i: jobs[i].records for i in mine}
    partial = [i for i in mine if jobs[i].hook is not None]
    flat = [r for i in partial for r in jobs[i].records]
    if not flat:
        return out
    merged = overlay_stored(store, flat)
    if len(merged) != len(flat):
        raise RuntimeError("overlay_stored must give one record per record")
    at = 0
    for i in partial:
        n = len(jobs[i].records)
        out[i] = merged[at : at + n]
        at += n
    return out
