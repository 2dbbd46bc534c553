"""Metric definitions (DESIGN §4): the catalog, pure Ibis expressions per dimension, and the engine
that applies the common rules. No I/O besides running expressions; no backend is imported here.

The names below load on first use, so a command that only needs the catalog (the CLI's option
lists) does not pay for importing Ibis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from heatlens.lazy import lazy_names

if TYPE_CHECKING:
    from heatlens.metrics.catalog import CATALOG, METRICS, Metric
    from heatlens.metrics.engine import Request, compute, compute_all
    from heatlens.metrics.result import Report, ReportWarning, Row

__all__ = [
    "CATALOG",
    "METRICS",
    "Metric",
    "Report",
    "ReportWarning",
    "Request",
    "Row",
    "compute",
    "compute_all",
]

__getattr__ = lazy_names(
    "heatlens.metrics",
    {
        "CATALOG": "catalog",
        "METRICS": "catalog",
        "Metric": "catalog",
        "Request": "engine",
        "compute": "engine",
        "compute_all": "engine",
        "Report": "result",
        "Row": "result",
        "ReportWarning": "result",
    },
)
