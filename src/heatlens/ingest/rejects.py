"""The rejects file of `--skip-invalid --rejects FILE`: each invalid record with its problems."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from heatlens.ingest.validate import StagedInput

__all__ = ["write_rejects"]


def write_rejects(
    con: duckdb.DuckDBPyConnection, checked: Sequence[StagedInput], path: Path
) -> None:
    """Invalid records with their problems, one JSON object per line, in input order."""
    by_line: dict[tuple[str, int | None], list[str]] = {}
    for staged in checked:
        for p in staged.problems:
            by_line.setdefault((p.input, p.line), []).append(p.message)
    with path.open("w", encoding="utf-8") as out:
        for staged in checked:
            raw = staged.raw
            lines = sorted({line for (name, line) in by_line if name == raw.name and line})
            if not lines:
                continue
            record = "__text" if raw.shape == "json" else "to_json(r)"
            rows = con.execute(
                f"SELECT __line, CAST({record} AS VARCHAR) FROM {raw.table} r "
                f"WHERE __line IN (SELECT unnest(?))",
                [lines],
            ).fetchall()
            for line, text in sorted(rows):
                try:
                    parsed: Any = json.loads(text)
                except json.JSONDecodeError:
                    parsed = text
                if isinstance(parsed, dict):
                    parsed.pop("__line", None)
                entry = {
                    "input": raw.name,
                    raw.unit: line,
                    "errors": by_line[(raw.name, line)],
                    "record": parsed,
                }
                out.write(json.dumps(entry) + "\n")
