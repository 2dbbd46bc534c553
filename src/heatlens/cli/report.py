"""`heatlens report` and `heatlens explain`: the metrics, and the records behind one number."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table

from heatlens.cli.context import (
    GRAIN,
    CliContext,
    cell,
    command,
    day_option,
    err,
    out,
    pass_ctx,
    say,
)
from heatlens.metrics.catalog import KEYS as SEGMENT_KEYS


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", "markdown", "html"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to this file instead of the terminal.",
)
@GRAIN
@click.option(
    "--from",
    "start",
    metavar="DATE",
    help="First day (inclusive; default: 12 periods before --to; with --grain all, the day of "
    "the earliest stored record: all history).",
)
@click.option(
    "--to",
    "end",
    metavar="DATE",
    help="Day after the last (exclusive; default: start of the current period; with --grain "
    "all, today).",
)
@click.option(
    "--by",
    multiple=True,
    metavar="KEY",
    type=click.Choice(SEGMENT_KEYS),
    help=f"Segment by {', '.join(SEGMENT_KEYS[:-1])} or {SEGMENT_KEYS[-1]} (repeatable).",
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="ID",
    help="Metric id or prefix, e.g. dora or adoption.team_adoption_rate (repeatable; "
    "default: all).",
)
@pass_ctx
@command
def report(
    ctx: CliContext,
    fmt: str,
    out_path: Path | None,
    grain: str,
    start: str | None,
    end: str | None,
    by: tuple[str, ...],
    metrics: tuple[str, ...],
) -> None:
    """HEAT and DORA metrics per period (and segment), with warnings.

    The table is grouped by HEAT dimension then DORA: the latest value, its change against the
    previous period, a trend, n and DORA tiers. json is heatlens.report/v1 (docs/metrics.md).

    When the range holds none of the records the metrics read, the table and markdown say where
    the records are and the command that shows them (json and csv keep their rows, with the
    same hint on stderr); that is not an error: the exit code is 0. Metrics whose records the
    range lacks are left out, in one line saying which and why.
    """
    from heatlens.metrics import Request
    from heatlens.report import render, terminal_table
    from heatlens.report.terminal import shown

    request = Request(grain, day_option(start, "--from"), day_option(end, "--to"), by, metrics)
    if fmt == "html":
        with ctx.application() as app, ctx.working("rendering the report"):
            text = app.report_html(request)
        if out_path is None:
            sys.stdout.write(text)
        else:
            out_path.write_text(text, encoding="utf-8")
            size = len(text.encode()) / 1024
            err.print(f"wrote {out_path} ({size:,.0f} KiB): open it in any browser")
        return
    with ctx.application() as app, ctx.working("computing metrics"):
        result = app.report(request, changes=fmt == "table")
    # the user's command, for the hint of an empty range to complete with a range that is not
    command = ctx.command_line("report", _report_options(fmt, out_path, by, metrics))
    hint = shown(result.report, command).hint
    if out_path is not None:
        out_path.write_text(render(result.report, fmt, result.changes, command), encoding="utf-8")
        say(f"wrote {len(result.report.rows):,} rows to {out_path}")
        if hint:
            say(hint)
    elif fmt == "table":
        out.print(terminal_table(result.report, result.changes, command), soft_wrap=True)
    else:
        sys.stdout.write(render(result.report, fmt, command=command))
        if hint and fmt in ("json", "csv"):
            say(hint)  # beside the data, for the person who ran it


def _report_options(
    fmt: str, out_path: Path | None, by: tuple[str, ...], metrics: tuple[str, ...]
) -> list[str]:
    """The options of a report command a suggested range keeps (not --grain, --from, --to)."""
    options = [] if fmt == "table" else ["--format", fmt]
    options += ["--out", str(out_path)] if out_path is not None else []
    for key in by:
        options += ["--by", key]
    for metric in metrics:
        options += ["--metric", metric]
    return options


@click.command()
@click.argument("metric")
@click.option(
    "--period",
    required=True,
    metavar="DATE",
    help="A day of the period to explain (the period of --grain containing it).",
)
@GRAIN
@click.option(
    "--segment",
    "segments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Segment, e.g. team=payments (repeatable; `KEY=` for a null value).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=50,
    show_default=True,
    help="Records to list.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@pass_ctx
@command
def explain(
    ctx: CliContext,
    metric: str,
    period: str,
    grain: str,
    segments: tuple[str, ...],
    limit: int,
    fmt: str,
) -> None:
    """List the records behind one number: what was counted, how incidents were linked, what
    was dropped and why."""
    from heatlens.metrics.explain import parse_segments

    segment = parse_segments(segments, "--segment")
    day = day_option(period, "--period")
    assert day is not None
    with ctx.application() as app:
        doc = app.explain(metric, day, segment, grain=grain, limit=limit)
    if fmt == "json":
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    row = doc["row"]
    value = (
        "no value (no observations)"
        if row is None
        else ("suppressed" if row["suppressed"] else f"{row['value']} (n = {row['n']})")
    )
    out.print(
        f"[bold]{metric}[/] · {grain} of {doc['period']} · {doc['segment'] or 'all'}: {value}"
    )
    columns = doc["columns"]
    if doc["records"]:
        table = Table(*columns, box=None)
        for rec in doc["records"]:
            table.add_row(*(cell(rec.get(c)) for c in columns))
        out.print(table)
        shown = len(doc["records"])
        if doc["total"] > shown:
            out.print(f"… {doc['total'] - shown:,} more (--limit)")
    if doc["dropped"]:
        out.print("[bold]dropped[/]")
        table = Table(*columns, "reason", box=None)
        for rec in doc["dropped"]:
            table.add_row(*(cell(rec.get(c)) for c in [*columns, "reason"]))
        out.print(table)
    for note in doc["notes"]:
        out.print(f"• {note}", markup=False)
