"""What a report costs, known before it is computed: its periods × its segments.

A server bounds both (`server.max_report_periods`, `server.max_report_cells`, heatlens.web.cost),
so one request cannot keep the engine busy for minutes (docs/security.md). The command line does
not: a user's own process may take as long as they like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from heatlens.settings import Settings
from heatlens.store import Store

if TYPE_CHECKING:
    from heatlens.metrics import Request

# the splits of the dashboard's pages and of the HTML report: rows per team, capability, service
VIEW_KEYS = ("team", "capability", "service")


@dataclass(frozen=True)
class Cost:
    """The periods and segments (rows per period) a request asks for."""

    periods: int
    segments: int

    @property
    def cells(self) -> int:
        return self.periods * self.segments


def report_cost(store: Store, request: Request, settings: Settings, *, views: bool = False) -> Cost:
    """The cost of `request` (checked as the engine checks it: a bad request is a ConfigError
    here already). `views`: the dashboard's pages or the HTML report over the request's range,
    whose sections split by team, capability and service."""
    from heatlens.metrics.engine import resolve
    from heatlens.metrics.periods import periods

    _, start, end, _ = resolve(request, settings, store)
    count = len(periods(request.grain, start, end, ZoneInfo(settings.timezone)))
    if views:
        segments = sum(store.segment_count(k) for k in VIEW_KEYS)
    else:
        segments = math.prod(store.segment_count(k) for k in request.by)
    return Cost(count, segments)
