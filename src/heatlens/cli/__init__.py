"""The `heatlens` command line: thin commands that parse options, call the application
(heatlens.application) and render what it returns. Errors are one line and a non-zero exit (a
traceback only with --debug)."""

from __future__ import annotations

from pathlib import Path

import click

from heatlens.cli.check import check
from heatlens.cli.context import CliContext, HeatlensGroup
from heatlens.cli.demo import demo, generate
from heatlens.cli.export import export
from heatlens.cli.impact import impact
from heatlens.cli.ingest import ingest
from heatlens.cli.records import delete, status
from heatlens.cli.report import explain, report
from heatlens.cli.serve import serve, token
from heatlens.cli.survey import survey
from heatlens.cli.sync import sync
from heatlens.version import __version__

__all__ = ["cli", "main"]


@click.group(
    cls=HeatlensGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default ./heatlens.toml when it exists).",
)
@click.option(
    "--store",
    envvar="HEATLENS_STORE",
    metavar="URL",
    help="Store URL: duckdb:///path.duckdb, a path, or postgres://… "
    "[env HEATLENS_STORE; default duckdb:///heatlens.duckdb]",
)
@click.option(
    "--server",
    envvar="HEATLENS_SERVER",
    metavar="URL",
    help="Send commands through a running `heatlens serve` that owns the store "
    "[env HEATLENS_SERVER].",
)
@click.option(
    "--token",
    envvar="HEATLENS_TOKEN",
    metavar="SECRET",
    help="API token for --server when it requires one [env HEATLENS_TOKEN; prefer the env var].",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(__version__, prog_name="heatlens")
@click.pass_context
def cli(
    ctx: click.Context,
    config: Path | None,
    store: str | None,
    server: str | None,
    token: str | None,
    debug: bool,
) -> None:
    """heatlens measures your internal platform as a product: HEAT (Happiness, Efficiency,
    Adoption, Task success) beside DORA.

    Start with `heatlens demo`, or load your records with `heatlens ingest FILE`.
    """
    ctx.obj = CliContext(config, store, server, debug, token)


for _command in (
    ingest,
    report,
    explain,
    check,
    impact,
    delete,
    status,
    generate,
    demo,
    serve,
    token,
    sync,
    export,
):
    cli.add_command(_command)
cli.add_command(survey)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="heatlens")
