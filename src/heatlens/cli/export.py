"""`heatlens export`: the store as Parquet, for another engine (`report --engine pyspark`)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from heatlens.cli.context import CliContext, command, out, pass_ctx, progress_bar


@click.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet"]),
    default="parquet",
    show_default=True,
    help="Output format.",
)
@pass_ctx
@command
def export(ctx: CliContext, directory: Path, fmt: str) -> None:
    """Write every record type under DIRECTORY as Parquet, partitioned by type and month (UTC) of
    its main timestamp, with manifest.json naming the store's data and schema versions.

    The export is written beside DIRECTORY and renamed into place: readers see the earlier
    export or the new one, never part of one. An earlier export there is replaced; any other
    existing, non-empty DIRECTORY is refused. Report on it with `heatlens report --from-export
    DIRECTORY [--engine pyspark]`.
    """
    from heatlens.application.export import export as write

    started = time.perf_counter()
    app = ctx.local_application()
    with app, progress_bar() as progress:
        tasks: dict[str, object] = {}

        def step(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=total or None)
            progress.update(tasks[name], completed=done)  # type: ignore[arg-type]

        manifest = write(app, directory, step)
    records = sum(int(t["records"]) for t in manifest["types"].values())
    out.print(
        f"exported {records:,} records ({fmt}) to {directory} in "
        f"{time.perf_counter() - started:.1f} s: data version {manifest['data_version']}, "
        f"schema version {manifest['schema_version']}"
    )
