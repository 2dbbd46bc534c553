"""`heatlens generate` and `heatlens demo`: a generated organisation, in a file or a store."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import click

from heatlens.cli.context import CliContext, command, err, out, pass_ctx, print_counts
from heatlens.errors import ConfigError

DEMO_STORE = Path("heatlens-demo.duckdb")
# the sizes `generate` and `demo` accept, as (least, most)
LIMITS = {"teams": (2, 100_000), "days": (7, 3650)}


def organisation_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--teams, --days and --seed, with the same bounds for `generate` and `demo`."""
    for option in reversed(
        [
            click.option(
                "--teams",
                type=click.IntRange(*LIMITS["teams"]),
                default=36,
                show_default=True,
                help="Stream-aligned teams.",
            ),
            click.option(
                "--days",
                type=click.IntRange(*LIMITS["days"]),
                default=365,
                show_default=True,
                help="Days of history, ending today.",
            ),
            click.option("--seed", type=int, default=7, show_default=True, help="Random seed."),
        ]
    ):
        fn = option(fn)
    return fn


@click.command()
@organisation_options
@click.option(
    "--usage-rows",
    type=click.IntRange(min=0),
    default=None,
    help="Aim for about this many usage records (default: what the teams produce).",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Output file: .parquet, .ndjson or .jsonl.",
)
@command
def generate(teams: int, days: int, seed: int, usage_rows: int | None, out_path: Path) -> None:
    """Write a generated organisation's records to a file (for trying things and benchmarks)."""
    from heatlens.demo import OrgSpec, usage_scale_for, write
    from heatlens.demo import generate as build

    if out_path.suffix.lower() not in (".parquet", ".ndjson", ".jsonl"):
        raise ConfigError(f"--out {out_path}: use a .parquet, .ndjson or .jsonl file")
    scale = usage_scale_for(usage_rows, teams, days) if usage_rows else 1.0
    started = time.perf_counter()
    with err.status("generating records…"):
        tables = build(OrgSpec(teams=teams, days=days, seed=seed, usage_scale=scale))
    with err.status(f"writing {out_path}…"):
        n = write(tables, out_path)
    out.print(f"wrote {n:,} records to {out_path} in {time.perf_counter() - started:.1f} s")


@click.command()
@click.option("--no-serve", is_flag=True, help="Only build the demo store.")
@organisation_options
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8000,
    show_default=True,
    help="Port of the dashboard on 127.0.0.1.",
)
@pass_ctx
@command
def demo(ctx: CliContext, no_serve: bool, teams: int, days: int, seed: int, port: int) -> None:
    """Build a realistic sample organisation into ./heatlens-demo.duckdb and summarise it."""
    from heatlens.application.demo import build_demo
    from heatlens.demo import OrgSpec
    from heatlens.report import render_scorecard
    from heatlens.web import check_port, run_server

    ctx.local_application()  # refuses --server
    if not no_serve:
        check_port("127.0.0.1", port)
    path = Path(ctx.store_url or DEMO_STORE)
    spec = OrgSpec(teams=teams, days=days, seed=seed, end=date.today())
    built = build_demo(ctx.settings, path, spec, status=lambda text: err.status(text))
    with built.app:
        out.print(
            f"[bold]heatlens demo[/]: a sample organisation in {path} ({built.seconds:.1f} s)"
        )
        print_counts(built.counts, built.seconds)
        out.print()
        out.print(render_scorecard(built.scorecard))
        out.print()
        out.print("Use it with any command, e.g.:")
        for example in (
            "report --grain month --by capability",
            "report --metric dora --by team",
            f"explain dora.change_failure_rate --period {built.scorecard.period.isoformat()} "
            "--grain month",
            "status",
        ):
            # unwrapped (the console's soft wrap) and quoted, so each line pastes whole
            line = shlex.join(["heatlens", "--store", str(path), *example.split()])
            out.print(f"  {line}", markup=False)
        if no_serve:
            return
        out.print()
        out.print(
            f"Serving the dashboard at http://127.0.0.1:{port}/ (Ctrl+C stops; "
            "`heatlens demo --no-serve` only builds the store)",
            markup=False,
        )
    run_server(
        built.app.settings,
        "127.0.0.1",
        port,
        announce=lambda text: err.print(text, markup=False, soft_wrap=True),
    )
