"""`heatlens.explain/v1`: the JSON document of an explanation, for the CLI and the API alike."""

from __future__ import annotations

from typing import Any

from heatlens.metrics.explain import Explanation


def explanation_json(result: Explanation) -> dict[str, Any]:
    """`heatlens.explain/v1`: the same document as `heatlens explain --format json`."""
    return {
        "schema": "heatlens.explain/v1",
        "metric": result.metric,
        "grain": result.grain,
        "period": result.period.isoformat(),
        "segment": result.segment,
        "row": result.row.to_json() if result.row else None,
        "columns": result.columns,
        "total": result.total,
        "records": result.records,
        "dropped": result.dropped,
        "notes": result.notes,
    }
