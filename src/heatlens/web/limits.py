"""Per-token rate limit (DESIGN §5 `server.rate_limit_per_minute`): a sliding window of one minute.

Requests are counted per token, or per client address on an open API; past the limit the API
answers 429 with `Retry-After`, the seconds until the oldest counted request leaves the window.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW = 60.0


class RateLimiter:
    """At most `per_minute` requests per key in any 60 seconds."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> int | None:
        """Count a request; None when allowed, else the seconds to wait (≥ 1)."""
        now = self.clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - WINDOW:
                hits.popleft()
            if len(hits) >= self.per_minute:
                return max(1, math.ceil(hits[0] + WINDOW - now))
            hits.append(now)
            return None
