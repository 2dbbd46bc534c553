"""`heatlens ingest`: load canonical records from files."""

from __future__ import annotations

import time
from pathlib import Path

import click

from heatlens.cli.context import CliContext, command, err, pass_ctx, print_counts, progress_bar
from heatlens.model import TYPE_NAMES


@click.command()
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ndjson", "json", "csv", "parquet"]),
    help="Input format (default: from the file suffix; sniffed for stdin).",
)
@click.option(
    "--type",
    "default_type",
    type=click.Choice(TYPE_NAMES),
    metavar="TYPE",
    help="Record type of rows without a `type` (CSV files of one type).",
)
@click.option("--source", help="Source recorded on every row (default file:<name>).")
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Store the valid records and write the invalid ones to --rejects.",
)
@click.option(
    "--rejects",
    type=click.Path(path_type=Path, dir_okay=False),
    help="NDJSON file for invalid records and their problems (with --skip-invalid).",
)
@pass_ctx
@command
def ingest(
    ctx: CliContext,
    files: tuple[str, ...],
    fmt: str | None,
    default_type: str | None,
    source: str | None,
    skip_invalid: bool,
    rejects: Path | None,
) -> None:
    """Load canonical records from FILES (NDJSON, JSON array, CSV, Parquet; `-` is stdin).

    Records replace stored records with the same type and id, so loading a file twice changes
    nothing. A file with any invalid record stores nothing unless --skip-invalid.
    """
    started = time.perf_counter()
    verb = f"sending to {ctx.server}" if ctx.server else "reading records"
    with ctx.application() as app, progress_bar() as progress:
        task = progress.add_task(verb, total=None)
        doc = app.ingest(
            files,
            fmt=fmt,
            default_type=default_type,
            source=source,
            skip_invalid=skip_invalid,
            rejects=rejects,
            progress=lambda n: progress.update(task, advance=n),
        )
        progress.update(task, description="stored", completed=doc["read"], total=doc["read"])
    print_counts(doc["counts"], time.perf_counter() - started)
    if doc["rejected"]:
        err.print(f"[yellow]{doc['rejected']} invalid record(s) skipped; see {rejects}[/]")
