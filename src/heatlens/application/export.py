"""Exports (issue 20): a store written as Parquet, and reports computed on an export by DuckDB or
PySpark — the same metric definitions (heatlens.metrics.compute) on another engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from heatlens.application.local import LocalApplication, ReportResult
from heatlens.errors import ConfigError, EmptyStoreError
from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.store.export import ENGINES, ExportTables, export_parquet

if TYPE_CHECKING:
    from heatlens.metrics import Request

__all__ = ["ENGINES", "export", "export_version", "report_from_export"]


def export(
    app: LocalApplication, target: Path, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, Any]:
    """Write the application's store under `target` as Parquet; give the manifest."""

    def run(store: Store) -> dict[str, Any]:
        return export_parquet(store, target, progress)

    return app.read(run)


def report_from_export(
    settings: Settings,
    request: Request,
    path: Path,
    *,
    engine: str = "duckdb",
    master: str | None = None,
    changes: bool = False,
) -> ReportResult:
    """The report of `request` computed by `engine` on the export at `path` (with its coverage,
    and the last period's changes when asked), as `LocalApplication.report` gives it."""
    from dataclasses import replace
    from datetime import UTC, datetime

    from heatlens.analysis import report_changes
    from heatlens.analysis.coverage import coverage
    from heatlens.metrics import compute
    from heatlens.metrics.engine import resolve

    if master is not None and engine != "pyspark":
        raise ConfigError("--spark-master is for --engine pyspark: drop it or add the engine")
    if request.now is None:
        request = replace(request, now=datetime.now(UTC))
    with ExportTables(path, engine, master) as tables:
        if tables.is_empty():
            raise EmptyStoreError(
                f"export {path} holds no records: export a store that has some "
                "(`heatlens status` shows what a store holds)"
            )
        result = compute(tables, request, settings)
        metrics = resolve(request, settings, tables)[0]
        found = coverage(tables, metrics, result.start, result.end, result.timezone)
        result.coverage = found.to_json()
        extra = report_changes(tables, result, settings) if changes else {}
        return ReportResult(result, extra)


def export_version(path: Path) -> tuple[int, int]:
    """(data version, schema version) of the export at `path`."""
    from heatlens.store.export import read_manifest

    doc = read_manifest(path)
    return int(doc["data_version"]), int(doc["schema_version"])
