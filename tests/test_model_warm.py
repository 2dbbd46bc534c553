"""The server builds the engine's model ahead of the pages: at start, and once after each burst
of writes (heatlens.web.warm)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from heatlens.ingest import ingest_records
from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.web.warm import ModelWarmer
from tests.serve_process import ServeProcess
from tests.test_dashboard import _usage, organisation


def _model_at(c: httpx.Client, version: int) -> dict[str, Any]:
    """Poll admin status until the model was built at `version` (no page is asked meanwhile)."""
    for _ in range(1_000_000):
        status = c.get("/api/v1/admin/status").json()
        model = status["model"]
        assert model["error"] is None, model
        if model["built_version"] == version and not model["building"]:
            return status
    raise AssertionError(f"the model was never built at version {version}")


def test_the_server_builds_the_model_at_start_and_after_a_write_without_a_page(
    tmp_path: Path, settings: Settings
) -> None:
    url = f"duckdb:///{tmp_path / 'warm.duckdb'}"
    with Store.open(url) as store:
        ingest_records(store, organisation(), settings, source="file:org.ndjson")
        version = store.data_version()
    server = ServeProcess(url, cwd=tmp_path)
    base = server.start()
    try:
        with httpx.Client(base_url=base, timeout=60) as c:
            status = _model_at(c, version)
            assert status["model"]["builds"] == 1
            assert status["model"]["ahead"] is True

            posted = c.post(
                "/api/v1/events", json=[_usage(100, "2026-03-25T10:00:00Z", "tiny", "success")]
            )
            assert posted.status_code == 201
            after = posted.json()["data_version"]
            assert after == version + 1
            status = _model_at(c, after)
            assert status["model"]["builds"] == 2
            assert status["data_version"] == after
    finally:
        server.stop()


class _Fake:
    """A store whose version is a counter and whose builds are recorded."""

    def __init__(self) -> None:
        self.version = 1
        self.built: list[int] = []
        self.done = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()

    def build(self) -> int:
        seen = self.version  # as engine.warm: the version read when the build starts
        self.started.set()
        self.release.wait()
        self.built.append(seen)
        self.done.set()
        return seen


def test_a_burst_of_writes_builds_once() -> None:
    fake = _Fake()
    # a long quiet time: the five pokes below come well within it
    warmer = ModelWarmer(lambda: fake.version, fake.build, debounce=2.0, max_wait=60.0)
    warmer.start()  # the first build (server start)
    assert fake.done.wait(60)
    fake.done.clear()
    for _ in range(5):
        fake.version += 1
        warmer.poke()
    assert fake.done.wait(60)
    warmer.stop()
    assert fake.built == [1, 6]
    assert warmer.status()["built_version"] == 6
    assert warmer.status()["builds"] == 2


def test_a_write_during_a_build_builds_once_more_after_it() -> None:
    fake = _Fake()
    fake.release.clear()
    warmer = ModelWarmer(lambda: fake.version, fake.build, debounce=0.01)
    warmer.start()
    assert fake.started.wait(60)  # building version 1, held
    fake.version = 2
    warmer.poke()
    fake.version = 3
    warmer.poke()
    fake.done.clear()
    fake.release.set()
    while len(fake.built) < 2:  # the second build follows the first
        assert fake.done.wait(60)
        fake.done.clear()
    warmer.stop()
    assert fake.built == [1, 3]


def test_nothing_is_built_when_the_data_version_did_not_move() -> None:
    fake = _Fake()
    warmer = ModelWarmer(lambda: fake.version, fake.build, debounce=0.01)
    warmer.start()
    assert fake.done.wait(60)
    checked = threading.Event()

    def version() -> int:
        checked.set()
        return fake.version

    warmer._version = version  # a write that changed no record (a token): poked, not rebuilt
    warmer.poke()
    assert checked.wait(60)
    warmer.stop()
    assert fake.built == [1]


def test_under_a_steady_stream_of_writes_building_takes_at_most_a_tenth_of_the_time() -> None:
    warmer = ModelWarmer(lambda: 1, lambda: 1, debounce=0.5, max_wait=10.0)
    assert warmer._longest_wait() == 10.0  # nothing built yet: max_wait
    warmer.last_seconds = 0.5  # a quick build: max_wait still holds writes back longest
    assert warmer._longest_wait() == 10.0
    warmer.last_seconds = 4.0  # 4 s of building, then 36 s of writes: a tenth of the time
    assert warmer._longest_wait() == pytest.approx(36.0)


def test_a_steady_stream_of_pokes_does_not_wake_the_thread_once_per_write() -> None:
    """Each wake of the thread takes the interpreter lock from the requests: the pokes of a
    round only note their time, and the thread looks at it when its wait ends."""
    fake = _Fake()
    warmer = ModelWarmer(lambda: fake.version, fake.build, debounce=30.0, max_wait=60.0)
    waits: list[float | None] = []
    event = warmer._wake

    class Counted(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout)
            return event.wait(timeout)

        def set(self) -> None:
            event.set()

        def clear(self) -> None:
            event.clear()

    warmer._wake = Counted()
    warmer.start()
    assert fake.done.wait(60)  # the first build
    before = len(waits)
    for _ in range(100):  # a write every millisecond or so
        fake.version += 1
        warmer.poke()
        time.sleep(0.001)  # (lets the thread run, were it woken)
    started = time.monotonic()
    warmer.stop()  # wakes the thread at once, mid-round: nothing more is built
    assert time.monotonic() - started < 10
    assert fake.built == [1]
    # the first poke woke the idle thread, which then waits out the quiet time: a few waits
    # (a thread woken by each poke would have waited about 100 times)
    assert len(waits) - before <= 3, waits[before:]
