"""Metric definitions (DESIGN §4): the catalog, pure Ibis expressions per dimension, and the engine
that applies the common rules. No I/O besides running expressions; no backend is imported here.

The names below load on first use, so a command that only needs the catalog (the CLI's option
lists) does not pay for importing Ibis.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from heatlens.metrics.catalog import CATALOG, METRICS, Metric
    from heatlens.metrics.engine import Request, compute
    from heatlens.metrics.result import Report, ReportWarning, Row

__all__ = ["CATALOG", "METRICS", "Metric", "Report", "ReportWarning", "Request", "Row", "compute"]

_HOMES = {
    "CATALOG": "catalog",
    "METRICS": "catalog",
    "Metric": "catalog",
    "Request": "engine",
    "compute": "engine",
    "Report": "result",
    "Row": "result",
    "ReportWarning": "result",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'heatlens.metrics' has no attribute {name!r}")
    return getattr(importlib.import_module(f"heatlens.metrics.{home}"), name)
