"""`heatlens.explain/v1`: the JSON document of an explanation, for the CLI and the API alike."""

from __future__ import annotations

from typing import Any

from heatlens.metrics.engine import WARNING_ORDER
from heatlens.metrics.explain import Explanation

_WARNING_NOTES = tuple(f"{code}: " for code in WARNING_ORDER)


def team_notes(notes: list[str]) -> list[str]:
    """The notes a reader scoped to teams may see: the engine's warnings count records of every
    team, so they are left out."""
    return [n for n in notes if not n.startswith(_WARNING_NOTES)]


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
