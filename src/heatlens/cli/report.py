"""`heatlens report` and `heatlens explain`: the metrics, and the records behind one number."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from heatlens.cli.context import (
    GRAIN,
    CliContext,
    command,
    day_option,
    err,
    out,
    pass_ctx,
    say,
)
from heatlens.errors import ConfigError
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
@click.option(
    "--from-export",
    "export_dir",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Compute on a Parquet export (`heatlens export --format parquet DIR`), not the store.",
)
@click.option(
    "--engine",
    type=click.Choice(["duckdb", "pyspark"]),
    default="duckdb",
    show_default=True,
    help="Engine computing an export's report (pyspark: pip install 'heatlens[spark]', Java 17).",
)
@click.option(
    "--spark-master",
    metavar="URL",
    help="Spark master for --engine pyspark, e.g. spark://host:7077 (default local[2]).",
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
    export_dir: Path | None,
    engine: str,
    spark_master: str | None,
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
    from heatlens.report.terminal import empty_hint

    request = Request(grain, day_option(start, "--from"), day_option(end, "--to"), by, metrics)
    if export_dir is None and (engine != "duckdb" or spark_master):
        raise ConfigError(
            f"--engine {engine} computes on an export: add --from-export DIR "
            "(made by `heatlens export --format parquet DIR`)"
        )
    if export_dir is not None:
        _report_from_export(
            ctx, request, fmt, out_path, by, metrics, export_dir, engine, spark_master
        )
        return
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
    hint = empty_hint(result.report, command)
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


def _report_from_export(
    ctx: CliContext,
    request: Any,
    fmt: str,
    out_path: Path | None,
    by: tuple[str, ...],
    metrics: tuple[str, ...],
    export_dir: Path,
    engine: str,
    master: str | None,
) -> None:
    """`report --from-export DIR [--engine pyspark]`: the same report, computed on an export."""
    from heatlens.application.export import export_version, report_from_export
    from heatlens.report import render, terminal_table

    if ctx.server:
        raise ConfigError("--from-export reads a local export, not --server: drop --server")
    if fmt == "html":
        raise ConfigError("--format html reads the store: drop --from-export, or pick a format")
    data_version, schema_version = export_version(export_dir)
    with ctx.working(f"computing metrics with {engine} on {export_dir}"):
        result = report_from_export(
            ctx.settings,
            request,
            export_dir,
            engine=engine,
            master=master,
            changes=fmt == "table",
        )
    say(
        f"computed by {engine} on export {export_dir} (data version {data_version}, "
        f"schema version {schema_version})"
    )
    options = ["--from-export", str(export_dir), "--engine", engine]
    options += ["--spark-master", master] if master else []
    command = ctx.command_line("report", [*_report_options(fmt, out_path, by, metrics), *options])
    if out_path is not None:
        out_path.write_text(render(result.report, fmt, result.changes, command), encoding="utf-8")
        say(f"wrote {len(result.report.rows):,} rows to {out_path}")
    elif fmt == "table":
        out.print(terminal_table(result.report, result.changes, command), soft_wrap=True)
    else:
        sys.stdout.write(render(result.report, fmt, command=command))


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
    "--offset",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Records to skip first (the next page: --offset 50).",
)
@click.option("--all", "every", is_flag=True, help="List every record (no --limit).")
@click.option(
    "--failures-only",
    is_flag=True,
    help="Only failed deployments (DORA deployment metrics) or attempts that did not succeed "
    "(task metrics).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="table: titles and human units; json: heatlens.explain/v1; csv: the listed records, "
    "raw values.",
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
    offset: int,
    every: bool,
    failures_only: bool,
    fmt: str,
) -> None:
    """List the records behind one number: what was counted (in a useful order: longest lead
    time first, failed deployments first, …), how incidents were linked, what was dropped and
    why, and what was not counted."""
    from heatlens.metrics.explain import parse_segments
    from heatlens.report.explain import csv_of, readable, value_text

    segment = parse_segments(segments, "--segment")
    day = day_option(period, "--period")
    assert day is not None
    with ctx.application() as app:
        doc = app.explain(
            metric,
            day,
            segment,
            grain=grain,
            limit=None if every else limit,
            offset=offset,
            failures_only=failures_only,
        )
    if fmt == "json":
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    if fmt == "csv":
        sys.stdout.write(csv_of(doc))
        return
    value = value_text(doc["row"])
    where = ", ".join(f"{k}={v or '(none)'}" for k, v in doc["segment"].items()) or "all"
    out.print(f"[bold]{metric}[/] · {grain} of {doc['period']} · {where}: {value}", markup=True)
    if doc["records"]:
        _, titles, rows = readable(doc)
        table = Table(*titles, box=None)
        for cells in rows:
            table.add_row(*cells)
        first, shown = doc["offset"] + 1, len(doc["records"])
        what = (
            f"{doc['matching']:,} {doc['failures']}"
            if doc["failures_only"]
            else f"{doc['total']:,} records"
        )
        last = first + shown - 1
        out.print(f"{what} · {doc['order']} · {first:,}–{last:,} shown", markup=False)
        out.print(table)
        left = doc["matching"] - last
        if left > 0:
            out.print(
                f"… {left:,} more: --offset {last} for the next, --all for every one",
                markup=False,
            )
    elif doc["matching"] and doc["offset"] >= doc["matching"]:
        out.print(f"no records from --offset {doc['offset']} ({doc['matching']:,} in all)")
    if doc["dropped"]:
        out.print(f"[bold]dropped[/] ({doc['dropped_total']:,})")
        _, titles, rows = readable(doc, "dropped")
        table = Table(*titles, box=None)
        for cells in rows:
            table.add_row(*cells)
        out.print(table)
    if doc["not_counted"]:
        out.print("[bold]not counted, and warnings[/]")
        for item in doc["not_counted"]:
            out.print(f"• {item['count']:,}: {item['text']}", markup=False, soft_wrap=True)
    for note in doc["notes"]:
        if not any(note.startswith(f"{n['code']}: ") for n in doc["not_counted"]):
            out.print(f"• {note}", markup=False)
