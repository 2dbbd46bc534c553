"""What a request may cost the store: bounded before any work, and counted by the rate limit.

Before a report, a dashboard page or the HTML report is computed, its periods and its cells
(periods × segments, heatlens.application.cost) are checked against `server.max_report_periods`
and `server.max_report_cells`: past either, 400 `too_expensive` at once, naming the numbers and
what to change. Afterwards, the time the request held a store connection is charged to the
caller's rate limit: past the first `FREE_SECONDS`, one more request per `UNIT_SECONDS` of store
work, so a client cannot run big reports back to back at the rate of small ones (the 429 comes on
its next request).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

from heatlens.web.errors import ApiError

if TYPE_CHECKING:
    from heatlens.application import LocalApplication
    from heatlens.metrics import Request as MetricsRequest
    from heatlens.web.service import Service

# store work every request may do for its one count, and how much more counts as one more request
FREE_SECONDS = 1.0
UNIT_SECONDS = 0.1


async def bound(request: Request, asked: MetricsRequest, *, views: bool = False) -> None:
    """Refuse `asked` when it spans more than `server.max_report_periods` periods or
    `server.max_report_cells` cells. `views`: a dashboard page or the HTML report."""
    service: Service = request.app.state.service
    app: LocalApplication = request.app.state.application
    cost = await service.call(app.cost, asked, views=views)
    settings = service.settings
    if cost.periods > settings.server_max_report_periods:
        raise ApiError(
            400,
            "too_expensive",
            f"this asks for {cost.periods:,} periods of a {asked.grain}, more than "
            f"server.max_report_periods ({settings.server_max_report_periods:,}): use a "
            "coarser grain or a shorter range",
        )
    if cost.cells > settings.server_max_report_cells:
        raise ApiError(
            400,
            "too_expensive",
            f"this asks for {cost.periods:,} periods × {cost.segments:,} segments = "
            f"{cost.cells:,} cells, more than server.max_report_cells "
            f"({settings.server_max_report_cells:,}): use a coarser grain, a shorter range or "
            "fewer `by` keys",
        )


def work_units(seconds: float) -> int:
    """The requests `seconds` of store work count as, beyond the request itself."""
    return int(max(0.0, seconds - FREE_SECONDS) / UNIT_SECONDS)
