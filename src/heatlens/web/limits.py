"""Per-token rate limit (`server.rate_limit_per_minute`): a sliding window of one minute, counting
what requests cost.

A request is counted per token — the token a Bearer secret names or a session stands for, known
before the store is asked — or per client address without one. A request counts 1 when it comes,
and once answered one more per `UNIT_SECONDS` it kept a store connection busy (heatlens.web.cost).
Past the limit the API answers 429 with `Retry-After`, the seconds until enough of the counted
requests leave the window. Keys that have been quiet for a minute are forgotten, so the table
stays as small as the last minute's clients.

A server on a DuckDB store is the only process writing it, so it counts in memory
(`RateLimiter`). Servers on one Postgres store share their windows through it
(`SharedRateLimiter`, heatlens.store.web_state): the same counting, one statement a request, by
the wall clock (the servers' clocks are assumed in step, as for `ingested_at`).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from heatlens.store import Store
from heatlens.store.web_state import (
    charge_window,
    forget_quiet_windows,
    hit_window,
    read_window,
)

WINDOW = 60.0


@dataclass
class _Window:
    hits: deque[tuple[float, int]] = field(default_factory=deque)
    total: int = 0

    def expire(self, now: float) -> None:
        while self.hits and self.hits[0][0] <= now - WINDOW:
            self.total -= self.hits.popleft()[1]


class RateLimiter:
    """At most `per_minute` units per key in any 60 seconds."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self._swept = clock()

    def __len__(self) -> int:
        """Keys currently remembered."""
        return len(self._windows)

    def hit(self, key: str, units: int = 1) -> int | None:
        """Count `units` (at most the whole minute's allowance) for `key`; None when allowed,
        else the seconds to wait (≥ 1), and nothing is counted."""
        now = self.clock()
        units = max(1, min(units, self.per_minute))
        with self._lock:
            self._sweep(now)
            window = self._windows.setdefault(key, _Window())
            window.expire(now)
            if window.total + units > self.per_minute:
                return self._wait(window, units, now)
            window.hits.append((now, units))
            window.total += units
            return None

    def charge(self, key: str, units: int) -> None:
        """Count `units` for `key` after the fact (what a request turned out to cost), even past
        the limit: the key's next request is refused until they leave the window."""
        if units <= 0:
            return
        now = self.clock()
        with self._lock:
            window = self._windows.setdefault(key, _Window())
            n = min(units, self.per_minute)
            window.hits.append((now, n))
            window.total += n

    def full(self, key: str) -> int | None:
        """Whether one more unit for `key` would be refused (the seconds to wait), counting
        nothing."""
        now = self.clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                return None
            window.expire(now)
            return self._wait(window, 1, now) if window.total + 1 > self.per_minute else None

    def _wait(self, window: _Window, units: int, now: float) -> int:
        """Seconds until `units` more fit in the window."""
        return _wait(list(window.hits), units, now, self.per_minute)

    def _sweep(self, now: float) -> None:
        """Forget keys with no hit in the last minute (at most once a window)."""
        if now - self._swept < WINDOW:
            return
        self._swept = now
        quiet = [k for k, w in self._windows.items() if not w.hits or w.hits[-1][0] <= now - WINDOW]
        for key in quiet:
            del self._windows[key]


def _wait(hits: list[tuple[float, int]], units: int, now: float, per_minute: int) -> int:
    """Seconds until `units` more fit in a window holding `hits` (time, units), oldest first."""
    freed = sum(n for _, n in hits) + units - per_minute
    for at, n in hits:
        freed -= n
        if freed <= 0:
            return max(1, math.ceil(at + WINDOW - now))
    return max(1, math.ceil(WINDOW))


class Limiter(Protocol):
    """What the server asks of a rate limiter (both kinds below)."""

    per_minute: int
    clock: Callable[[], float]

    def hit(self, key: str, units: int = 1) -> int | None: ...

    def charge(self, key: str, units: int) -> None: ...

    def full(self, key: str) -> int | None: ...


class SharedRateLimiter:
    """`RateLimiter`'s counting, kept in the store so that every server on it shares one window
    per key. `run` calls a function on a store connection of this server's own."""

    def __init__(
        self,
        per_minute: int,
        run: Callable[[Callable[[Store], Any]], Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.per_minute = per_minute
        self.run = run
        self.clock = clock
        self._swept = clock()

    def hit(self, key: str, units: int = 1) -> int | None:
        """As `RateLimiter.hit`; one statement when allowed, two when refused."""
        now = self.clock()
        units = max(1, min(units, self.per_minute))
        if now - self._swept >= WINDOW:
            self._swept = now
            self.run(lambda store: forget_quiet_windows(store, now, WINDOW))
        if self.run(lambda store: hit_window(store, key, now, units, self.per_minute, WINDOW)):
            return None
        hits = self.run(lambda store: read_window(store, key, now, WINDOW))
        return _wait(hits, units, now, self.per_minute)

    def charge(self, key: str, units: int) -> None:
        """As `RateLimiter.charge`."""
        if units <= 0:
            return
        now = self.clock()
        n = min(units, self.per_minute)
        self.run(lambda store: charge_window(store, key, now, n, WINDOW))

    def full(self, key: str) -> int | None:
        """As `RateLimiter.full`."""
        now = self.clock()
        hits = self.run(lambda store: read_window(store, key, now, WINDOW))
        if sum(n for _, n in hits) + 1 > self.per_minute:
            return _wait(hits, 1, now, self.per_minute)
        return None
