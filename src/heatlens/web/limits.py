"""Per-token rate limit (`server.rate_limit_per_minute`): a sliding window of one minute, counting
what requests cost.

A request is counted per token — the token a Bearer secret names or a session stands for, known
before the store is asked — or per client address without one. A request counts 1 when it comes,
and once answered one more per `UNIT_SECONDS` it kept a store connection busy (heatlens.web.cost).
Past the limit the API answers 429 with `Retry-After`, the seconds until enough of the counted
requests leave the window. Keys that have been quiet for a minute are forgotten, so the table
stays as small as the last minute's clients.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

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
        freed = window.total + units - self.per_minute
        for at, n in window.hits:
            freed -= n
            if freed <= 0:
                return max(1, math.ceil(at + WINDOW - now))
        return max(1, math.ceil(WINDOW))

    def _sweep(self, now: float) -> None:
        """Forget keys with no hit in the last minute (at most once a window)."""
        if now - self._swept < WINDOW:
            return
        self._swept = now
        quiet = [k for k, w in self._windows.items() if not w.hits or w.hits[-1][0] <= now - WINDOW]
        for key in quiet:
            del self._windows[key]
