"""Building the engine's model ahead of the pages (heatlens.metrics.model, DESIGN §2 v2).

Without this the first page asked after the server starts, or after a write, pays for building
the model (resolved usage of all history, the deployment links, the survey waves' decisions…).
The server instead builds it in a thread of its own, on a read connection:

- once at start, without delaying readiness (the server listens meanwhile);
- after writes: every write of the server goes through its one writer (heatlens.web.service
  tells the warmer when one finished), and the build starts once writes have paused for
  `debounce` seconds — a burst of writes builds once — or, under a steady stream of writes,
  `max_wait` seconds after the first of them, or later when the last build took long: builds
  then take at most a tenth of the time (`BUSY_SHARE`) and leave the rest of the process — one
  interpreter lock for all its Python threads — to the writes. A write landing during a build
  means one more build after it. Nothing is built when the data version has not moved (a
  token, a pruned delivery id).

Pages still build what they need themselves when they come first: the model is shared and
locked per part, so a page and the warmer never build the same part twice.
`GET /api/v1/admin/status` shows the state (`model`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("heatlens.web")

DEBOUNCE = 0.5  # seconds without a write before building
MAX_WAIT = 10.0  # seconds after the first write of a steady stream before building anyway…
BUSY_SHARE = 0.1  # …or later: under a steady stream, building takes at most this share of time
STOP_WAIT = 10.0  # seconds the server's shutdown waits for a build under way


class ModelWarmer:
    """One thread building the model when asked (`poke`), debounced.

    `version()` gives the store's data version (a quick lookup); `build()` builds the model and
    returns the data version it was built at, or None when the store keeps no model."""

    def __init__(
        self,
        version: Callable[[], int],
        build: Callable[[], int | None],
        *,
        debounce: float = DEBOUNCE,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self._version = version
        self._build = build
        self.debounce = debounce
        self.max_wait = max_wait
        # set by the first poke of a round, and by stop: the pokes after it only note their
        # time, so a steady stream of writes does not wake the thread once per write (each wake
        # takes the interpreter lock from the requests)
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._first_poke: float | None = None
        self._last_poke = 0.0
        self._stopping = False
        self._thread: threading.Thread | None = None
        # what admin status shows
        self.built_version: int | None = None
        self.building = False
        self.builds = 0
        self.last_seconds: float | None = None
        self.error: str | None = None
        self.disabled = False  # the store keeps no model: nothing is built ahead

    def start(self) -> None:
        """Start the thread and ask for a first build (at server start)."""
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._loop, name="heatlens-model", daemon=True)
            self._thread.start()
            self.poke()

    def poke(self) -> None:
        """Data may have changed (a write finished): build once writes pause. Thread-safe."""
        with self._lock:
            self._last_poke = time.monotonic()
            if self._first_poke is None:
                self._first_poke = self._last_poke
                self._wake.set()

    def stop(self, timeout: float = STOP_WAIT) -> None:
        """Stop the thread; a build under way is waited for up to `timeout` seconds."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping = True
        self._wake.set()
        thread.join(timeout)
        if thread.is_alive():
            log.warning("model: a build was still running at shutdown; not waiting for it")

    def status(self) -> dict[str, Any]:
        return {
            "built_version": self.built_version,
            "building": self.building,
            "builds": self.builds,
            "last_build_seconds": (
                None if self.last_seconds is None else round(self.last_seconds, 3)
            ),
            "error": self.error,
            "ahead": not self.disabled,
        }

    def _settle(self) -> None:
        """Wait until no poke came for `debounce` seconds, or `max_wait` passed since the first
        poke of this round."""
        while True:
            with self._lock:
                self._wake.clear()  # (set again by stop only, until the round ends)
                now = time.monotonic()
                first = self._first_poke if self._first_poke is not None else now
                left = self._longest_wait() - (now - first)
                quiet = self.debounce - (now - self._last_poke)
            if self._stopping or left <= 0 or quiet <= 0:
                return
            self._wake.wait(min(quiet, left))

    def _longest_wait(self) -> float:
        """How long a steady stream of writes holds back the next build."""
        took = self.last_seconds or 0.0
        return max(self.max_wait, took * (1 - BUSY_SHARE) / BUSY_SHARE)

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            if self._stopping:
                return
            self._settle()
            if self._stopping:
                return
            with self._lock:  # writes from now on are read by this build or start the next
                self._first_poke = None
                self._wake.clear()
            if self.disabled:
                continue
            try:
                if self._version() == self.built_version:
                    continue
                self.building = True
                started = time.perf_counter()
                built = self._build()
                self.last_seconds = time.perf_counter() - started
                if built is None:
                    self.disabled = True
                    continue
                self.built_version = built
                self.builds += 1
                self.error = None
                log.info("model: built for data version %s in %.1f s", built, self.last_seconds)
            except Exception as exc:  # the pages build what they need; the next write retries
                self.error = str(exc)
                log.error("model: building ahead failed: %s", exc)
            finally:
                self.building = False
