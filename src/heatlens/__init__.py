"""heatlens: measure an internal engineering platform as a product — HEAT beside DORA.

The Python API, for notebooks and scripts (pinned by tests/test_public_api.py)::

    import heatlens

    with heatlens.open("heatlens-demo.duckdb") as hl:          # or postgres://…, or a server:
        hl.ingest_records([{"type": "team", "id": "payments"}])  # heatlens.connect(url, token)
        report = hl.report(heatlens.Request("month", by=("capability",))).report
        frame = report.to_pandas()                               # or report.to_arrow()

Every command of the CLI is a method of the object `open` and `connect` return.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from heatlens.errors import (
    ConfigError,
    EmptyStoreError,
    HeatlensError,
    InputError,
    StoreError,
)
from heatlens.lazy import lazy_names

if TYPE_CHECKING:
    from heatlens.application import LocalApplication, RemoteApplication, ReportResult
    from heatlens.metrics import Report, Request

__all__ = [
    "ConfigError",
    "EmptyStoreError",
    "HeatlensError",
    "InputError",
    "LocalApplication",
    "RemoteApplication",
    "Report",
    "ReportResult",
    "Request",
    "StoreError",
    "__version__",
    "connect",
    "open",
]

# loaded on first use, so a command that only stores records (`heatlens ingest`) does not pay for
# importing the metric engine (Ibis) or the HTTP client
__getattr__ = lazy_names(
    "heatlens",
    {
        "LocalApplication": "application",
        "RemoteApplication": "application",
        "ReportResult": "application",
        "Report": "metrics",
        "Request": "metrics",
    },
)


def open(
    store: str | Path | None = None, *, config: str | Path | None = None, **settings: Any
) -> LocalApplication:
    """The application on a store: `store` is a DuckDB path or URL, or postgres://… (default
    the configured one); `config` a heatlens.toml; other keywords override settings by name
    (e.g. `timezone="Europe/Berlin"`)."""
    from heatlens.application import LocalApplication
    from heatlens.settings import load_settings

    overrides = {**settings, "store": str(store) if store is not None else None}
    loaded = load_settings(Path(config) if config is not None else None, overrides=overrides)
    return LocalApplication(loaded)


def connect(server: str, token: str | None = None) -> RemoteApplication:
    """The application of a running `heatlens serve` at `server` (http://host:port)."""
    from heatlens.application import RemoteApplication

    return RemoteApplication(server, token)
