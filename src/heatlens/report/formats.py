"""Report exports (`heatlens report --format json|csv|markdown|table`): pure text from a `Report`.

JSON is the `heatlens.report/v1` contract itself. CSV is the same rows flattened for spreadsheets:
raw numbers, one column per `--by` key. Markdown is the shareable reading of every row, formatted by
unit like the terminal table, whose plain-text export `table` returns.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
from rich.console import Console

from heatlens.errors import ConfigError
from heatlens.metrics.catalog import DIMENSION_TITLES
from heatlens.metrics.result import Report, Row
from heatlens.report.terminal import (
    COMMAND,
    Changes,
    segment_cells,
    shown,
    suppressed_label,
    terminal_table,
)
from heatlens.report.units import format_value

FORMATS = ("table", "json", "csv", "markdown")
TABLE_WIDTH = 120


def render(report: Report, fmt: str, changes: Changes | None = None, command: str = COMMAND) -> str:
    """The report as text in `fmt` (one of `FORMATS`).

    `changes` (from the analysis layer) only marks significant changes in the `table` format; the
    data formats carry the rows alone (and JSON the report's `coverage`). `command` is the user's
    command line, completed with a range in the hint an empty range gets in `table` and
    `markdown`. Raises ConfigError for an unknown format.
    """
    if fmt == "json":
        return to_json(report)
    if fmt == "csv":
        return to_csv(report)
    if fmt == "markdown":
        return to_markdown(report, command)
    if fmt == "table":
        return to_table_text(report, changes, command)
    raise ConfigError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")


def to_json(report: Report) -> str:
    """`report.to_json()` indented by 2, keys in contract order, non-ASCII kept as UTF-8.

    orjson, not `json.dumps`: with `indent` the standard library falls back to its pure-Python
    encoder, which took 8.4 of the 10.5 s W52 by-team gap (docs/performance.md); the text is the
    same (floats in their shortest form either way)."""
    return orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n"


def _cell(value: Any) -> str:
    """A CSV cell: empty for null, lower-case booleans as in JSON, numbers as Python prints them."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_csv(report: Report) -> str:
    """One line per row after a header; a suppressed row has empty value, n and interval."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "metric",
            "period",
            *report.columns,
            "value",
            "n",
            "ci_low",
            "ci_high",
            "suppressed",
            "tier",
            "complete",
        ]
    )
    for row in report.rows:
        # Suppression is enforced by the engine; blanking here again costs nothing and keeps
        # a hidden number out of a spreadsheet even if a caller built the row by hand.
        hidden = row.suppressed
        ci = (None, None) if hidden or row.ci is None else row.ci
        cells = [row.metric, row.period.isoformat(), *(row.segment.get(k) for k in report.columns)]
        cells += [None if hidden else row.value, None if hidden else row.n, *ci]
        cells += [row.suppressed, row.tier, row.complete]
        writer.writerow([_cell(c) for c in cells])
    return out.getvalue()


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_value(row: Row, unit: str) -> tuple[str, str, str]:
    """Value, n and interval cells of one row."""
    if row.suppressed:
        return suppressed_label(row), "", ""
    n = "" if row.n is None else f"{row.n:,}"
    ci = (
        ""
        if row.ci is None
        else f"{format_value(row.ci[0], unit)} – {format_value(row.ci[1], unit)}"
    )
    return format_value(row.value, unit), n, ci


def to_markdown(report: Report, command: str = COMMAND) -> str:
    """A title with grain, range and time zone; a table per dimension (or, when the range holds
    none of the records, where they are); then the warnings."""
    lines = [
        f"# heatlens report: {report.grain}, {report.start.isoformat()} to "
        f"{report.end.isoformat()} ({report.timezone})",
        "",
        "Periods are labelled by their first day; the end date is exclusive. Values are formatted "
        "by unit; the JSON and CSV exports carry the raw numbers.",
        "",
    ]
    view = shown(report, command)
    if view.hint:
        lines += [view.hint, ""]
    for dim, members in view.sections:
        lines += [
            f"## {DIMENSION_TITLES.get(dim, dim)}",
            "",
            "| "
            + " | ".join(["metric", *report.columns, "period", "value", "n", "95 % CI", "tier"])
            + " |",
            "|---" * (6 + len(report.columns)) + "|",
        ]
        for series in members:
            for row in series.rows:
                period = row.period.isoformat() + ("" if row.complete else " (partial)")
                segment = [_md(cell) for cell in segment_cells(row.segment, report.columns)]
                value, n, ci = _md_value(row, series.unit)
                cells = [f"`{row.metric}`", *segment, period, value, n, ci, row.tier or ""]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if view.omitted:
        lines += [view.omitted, ""]
    lines += ["## Warnings", ""]
    lines += [f"- `{w.code}` ({w.count:,}): {w.message}" for w in report.warnings] or [
        "No warnings."
    ]
    return "\n".join(lines) + "\n"


def to_table_text(report: Report, changes: Changes | None = None, command: str = COMMAND) -> str:
    """The terminal table as plain text at a fixed width, for files and tests; lines of text
    (hints holding a command to paste) are not wrapped."""
    console = Console(
        file=io.StringIO(), width=TABLE_WIDTH, record=True, color_system=None, highlight=False
    )
    console.print(terminal_table(report, changes, command), soft_wrap=True)
    # Rich pads every line to the table's width; files and diffs read better without it.
    return "".join(line.rstrip() + "\n" for line in console.export_text(styles=False).splitlines())
