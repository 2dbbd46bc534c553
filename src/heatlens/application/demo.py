"""The demo: a generated organisation in a fresh DuckDB file, and its scorecard."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heatlens.application.documents import counts_doc
from heatlens.application.local import Clock, LocalApplication
from heatlens.errors import ConfigError
from heatlens.settings import Settings
from heatlens.store import Store

__all__ = ["DemoResult", "build_demo"]


@dataclass
class DemoResult:
    """The application on the demo store, what was loaded and the month's scorecard."""

    app: LocalApplication
    path: Path
    counts: dict[str, dict[str, int]]
    seconds: float
    scorecard: Any  # heatlens.analysis.Scorecard


def build_demo(
    settings: Settings,
    path: Path,
    spec: Any,
    *,
    clock: Clock | None = None,
    status: Any = None,
) -> DemoResult:
    """Generate the organisation of `spec` (heatlens.demo.OrgSpec) into a fresh store at `path`.

    The file is rebuilt from scratch; it is opened first so that a store in use is reported
    before anything is removed. `status(text)` names each step (a context manager factory).
    """
    from contextlib import nullcontext

    from heatlens.analysis import scorecard
    from heatlens.demo import generate
    from heatlens.ingest import ingest_arrow

    if "://" in str(path):
        raise ConfigError("demo builds a DuckDB file: pass --store as a path")
    step = status or (lambda text: nullcontext())
    started = time.perf_counter()
    with step("generating the sample organisation…"):
        tables = generate(spec)
    with Store.open(str(path), memory_limit=settings.duckdb_memory_bytes):
        pass
    path.unlink()
    app = LocalApplication(settings.model_copy(update={"store": str(path)}), clock=clock)
    with step("loading it into the store…"):
        result = app.access.write(
            lambda store: ingest_arrow(store, tables, app.settings, source="demo")
        )
    seconds = time.perf_counter() - started
    with step("computing the scorecard…"):
        card = app.read(
            lambda store: scorecard(store, app.settings, grain="month", as_of=app.clock())
        )
    return DemoResult(app, path, counts_doc(result.counts), seconds, card)
