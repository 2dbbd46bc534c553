"""Metric definitions (DESIGN §4): the catalog, pure Ibis expressions per dimension, and the engine
that applies the common rules. No I/O besides running expressions; no backend is imported here."""

from heatlens.metrics.catalog import CATALOG, METRICS, Metric
from heatlens.metrics.engine import Request, compute
from heatlens.metrics.result import Report, ReportWarning, Row

__all__ = ["CATALOG", "METRICS", "Metric", "Report", "ReportWarning", "Request", "Row", "compute"]
