"""`heatlens impact`: did adopting a capability move delivery?"""

from __future__ import annotations

import json
import sys

import click

from heatlens.cli.context import CliContext, command, day_option, out, pass_ctx
from heatlens.metrics.catalog import CALENDAR_GRAINS, IMPACT_GRAIN


@click.command()
@click.option(
    "--capability", required=True, metavar="ID", help="The capability whose adoption to judge."
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="ID",
    help="Metric id or prefix computed per team, e.g. dora.lead_time_p50 (repeatable; default: "
    "deployment frequency, lead time, change failure rate and recovery time).",
)
@click.option(
    "--grain",
    type=click.Choice(CALENDAR_GRAINS),
    default=IMPACT_GRAIN,
    show_default=True,
    help="Period length of the team × period panel (a team's weekly change failure rate swings "
    "too much for one week to be compared with the next; see docs/analysis.md).",
)
@click.option(
    "--from",
    "start",
    metavar="DATE",
    help="First day (default: the period of the earliest stored record).",
)
@click.option(
    "--to",
    "end",
    metavar="DATE",
    help="Day after the last (default: start of the current period).",
)
@click.option(
    "--min-uses",
    type=int,
    default=1,
    show_default=True,
    help="Usage records of the capability in a period that make a team an adopter.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@pass_ctx
@command
def impact(
    ctx: CliContext,
    capability: str,
    metrics: tuple[str, ...],
    grain: str,
    start: str | None,
    end: str | None,
    min_uses: int,
    fmt: str,
) -> None:
    """Did adopting a capability move delivery? Staggered difference-in-differences per team
    and period (Callaway–Sant'Anna, against teams that had not adopted yet or never did), the
    effect by periods since adoption, the naive contrasts beside it, 95 % intervals from
    resampling teams, a pre-trend check and a plain verdict.

    json is heatlens.impact/v1: one object per metric, an array when --metric is repeated or
    left out (docs/analysis.md explains the method and its limits).
    """
    from heatlens.report.impact import render_impact

    with ctx.application() as app, ctx.working("estimating the impact"):
        docs = app.impact(
            capability,
            metrics,
            grain=grain,
            start=day_option(start, "--from"),
            end=day_option(end, "--to"),
            min_uses=min_uses,
        )
    if fmt == "json":
        shown = docs[0] if len(metrics) == 1 and len(docs) == 1 else docs
        sys.stdout.write(json.dumps(shown, indent=2) + "\n")
        return
    for i, doc in enumerate(docs):
        if i:
            out.print()
        out.print(render_impact(doc))
