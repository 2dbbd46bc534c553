"""`heatlens.explain/v1`: the JSON document of an explanation, for the CLI and the API alike, its
CSV (raw values, every record), and its records as a person reads them (column titles, values in
human units, times in the report's timezone) for the terminal and the dashboard."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from heatlens.metrics.catalog import CATALOG
from heatlens.metrics.engine import WARNING_ORDER
from heatlens.metrics.explain import Explanation
from heatlens.report.units import format_value

_WARNING_NOTES = tuple(f"{code}: " for code in WARNING_ORDER)
SHA_SHOWN = 10  # a commit sha is shown by its first characters, as git does


def team_notes(notes: list[str]) -> list[str]:
    """The notes a reader scoped to teams may see: the engine's warnings count records of every
    team, so they are left out."""
    return [n for n in notes if not n.startswith(_WARNING_NOTES)]


def scope_to_teams(result: Explanation) -> Explanation:
    """What a reader scoped to teams may see of an explanation: without the engine's warnings
    (they count records of every team), in the notes and in what was not counted."""
    result.notes = team_notes(result.notes)
    result.not_counted = [n for n in result.not_counted if n["code"] not in WARNING_ORDER]
    return result


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
        "titles": result.titles,
        "kinds": result.kinds,
        "order": result.order,
        "offset": result.offset,
        "matching": result.matching,
        "failures": result.failures,
        "failures_only": result.failures_only,
        "dropped_total": result.dropped_total,
        "not_counted": result.not_counted,
        "timezone": result.timezone,
    }


def plain(result: Explanation) -> dict[str, Any]:
    """The JSON document as plain JSON values (times as ISO strings), as the API sends it, so
    every caller renders the same thing."""
    doc: dict[str, Any] = json.loads(json.dumps(explanation_json(result), default=str))
    return doc


def _time(value: Any, tz: ZoneInfo) -> str:
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if at.tzinfo is not None:
        at = at.astimezone(tz)
    return at.strftime("%Y-%m-%d %H:%M")


def show_cell(value: Any, kind: str, tz: ZoneInfo, column: str = "") -> str:
    """One value of a listing as a person reads it."""
    if value is None:
        return ""
    if kind == "time":
        return _time(value, tz)
    if kind in ("hours", "days", "seconds"):
        return format_value(float(value), kind)
    if kind == "flag":
        return "yes" if value else ""
    if kind == "list":
        return ", ".join(str(v) for v in value)
    if column in ("change", "commit_sha"):
        return str(value)[:SHA_SHOWN]
    return str(value)


def readable(
    doc: dict[str, Any], key: str = "records"
) -> tuple[list[str], list[str], list[list[str]]]:
    """(columns, their titles, rows of cells) of the document's `records` (or `dropped`), as a
    person reads them; columns with no value in any listed record are left out."""
    columns = list(doc["columns"]) + (["reason"] if key == "dropped" else [])
    records = doc[key]
    kinds, titles = doc.get("kinds", {}), doc.get("titles", {})
    # a column nothing listed has a value in (or a flag none has set) is left out
    columns = [c for c in columns if any(r.get(c) not in (None, [], False) for r in records)]
    tz = ZoneInfo(doc.get("timezone") or "UTC")
    rows = [[show_cell(r.get(c), kinds.get(c, "text"), tz, c) for c in columns] for r in records]
    return columns, [titles.get(c, c) for c in columns], rows


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def csv_of(doc: dict[str, Any]) -> str:
    """The document's listed records as CSV: field names as the header, raw values (durations
    in the catalog's units, times in UTC), lists space-separated."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(doc["columns"])
    for record in doc["records"]:
        writer.writerow([_csv_cell(record.get(c)) for c in doc["columns"]])
    return out.getvalue()


def value_text(row: dict[str, Any] | None) -> str:
    """The explained number of a document's `row`, as a person reads it."""
    if row is None:
        return "no value (no observations)"
    if row["suppressed"]:
        return "suppressed"
    unit = CATALOG[row["metric"]].unit if row["metric"] in CATALOG else ""
    n = f" (n = {row['n']:,})" if row.get("n") is not None else ""
    return format_value(row["value"], unit) + n
