"""Refused webhook deliveries, kept in memory (issue 15).

A delivery the server refuses — 401 bad or missing signature, 404 source not configured, 400/422
a payload it cannot read, 413 too large — is never written to the store: a sender who cannot
sign must not be able to make the server write. Each process keeps the last `RING` refusals
(time, source, status, client address, reason) and counters per source and status instead; the
Data page and `GET /api/v1/admin/status` show them. They start empty when the server starts.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.applications import Starlette

RING = 50  # refusals kept per process
TEXT = 100  # characters kept of a refusal's client and event (4× for its reason)


@dataclass
class WebhookActivity:
    """One process's webhook requests: a version bumped by each one answered (pages showing
    webhook state key their cache on it), and the last refusals with counters."""

    size: int = RING
    version: int = 0
    refused_total: int = 0
    counts: dict[tuple[str, int], int] = field(default_factory=dict)
    last: deque[dict[str, Any]] = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.last = deque(maxlen=self.size)

    def answered(self) -> None:
        """A webhook request was answered (taken, ignored, duplicate or refused)."""
        with self._lock:
            self.version += 1

    def refused(
        self, source: str, status: int, code: str, client: str, reason: str, event: str = ""
    ) -> None:
        with self._lock:
            self.version += 1
            self.refused_total += 1
            self.counts[(source, status)] = self.counts.get((source, status), 0) + 1
            self.last.append(
                {
                    "at": datetime.now(UTC).isoformat(),
                    "source": source,
                    "status": status,
                    "code": code,
                    # an unauthenticated sender chooses the event header: kept short
                    "client": client[:TEXT],
                    "event": event[:TEXT],
                    "reason": reason[: 4 * TEXT],
                }
            )

    def snapshot(self) -> dict[str, Any]:
        """The refusals as a JSON document: total, counts per source and status, the last ones
        (newest first), and how many are kept."""
        with self._lock:
            return {
                "kept_in_memory": True,
                "ring": self.size,
                "total": self.refused_total,
                "counts": [
                    {"source": s, "status": st, "refused": n}
                    for (s, st), n in sorted(self.counts.items())
                ],
                "last": list(reversed(self.last)),
            }


def activity(app: Starlette) -> WebhookActivity:
    """The app's webhook activity (created on first use; one per app, so one per process)."""
    found = getattr(app.state, "webhook_activity", None)
    if found is None:
        found = WebhookActivity()
        app.state.webhook_activity = found
    assert isinstance(found, WebhookActivity)
    return found


class Noting(Protocol):
    """What notes a webhook request: the process's WebhookActivity, or a front process's
    stand-in sending its notes to the store's process (heatlens.web.fronts)."""

    def answered(self) -> None: ...

    def refused(
        self, source: str, status: int, code: str, client: str, reason: str, event: str = ""
    ) -> None: ...


def noting(app: Any) -> Noting:
    """Where a webhook request of `app` is noted."""
    found = getattr(app.state, "webhook_activity", None)
    return found if found is not None else activity(app)
