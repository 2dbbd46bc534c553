"""The cost bound of reports and pages: checked before any work, and counted by the rate limit.

A report's cost is its periods × its segments (heatlens.application.cost). Past
`server.max_report_cells` the request gets 400 `too_expensive` at once, naming both numbers and
what to change; below it, every `CELLS_PER_UNIT` cells count as one more request against the
caller's rate limit, so a client cannot run big reports back to back at the rate of small ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

from heatlens.web.auth import charge
from heatlens.web.errors import ApiError

if TYPE_CHECKING:
    from heatlens.application import LocalApplication
    from heatlens.metrics import Request as MetricsRequest
    from heatlens.web.service import Service

CELLS_PER_UNIT = 1_000


async def bound(request: Request, asked: MetricsRequest, *, views: bool = False) -> None:
    """Refuse `asked` when it costs more than `server.max_report_cells`, else charge its cost
    to the caller's rate limit. `views`: a dashboard page or the HTML report."""
    service: Service = request.app.state.service
    app: LocalApplication = request.app.state.application
    cost = await service.call(app.cost, asked, views=views)
    limit = service.settings.server_max_report_cells
    if cost.cells > limit:
        raise ApiError(
            400,
            "too_expensive",
            f"this asks for {cost.periods:,} periods × {cost.segments:,} segments = "
            f"{cost.cells:,} cells, more than server.max_report_cells ({limit:,}): use a "
            "coarser grain, a shorter range or fewer `by` keys",
        )
    if cost.cells >= CELLS_PER_UNIT:
        charge(request, cost.cells // CELLS_PER_UNIT)
