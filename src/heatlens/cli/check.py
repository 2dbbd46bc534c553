"""`heatlens check`: targets on the last complete period, and HEAT tensions."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from heatlens.cli.context import CliContext, command, day_option, out, pass_ctx
from heatlens.metrics.catalog import CATALOG

_STATUS_STYLE = {"met": "green", "missed": "bold red", "no_data": "yellow", "not_due": "cyan"}


@click.command()
@click.option(
    "--as-of",
    metavar="DATE",
    help="Judge the periods complete by this day (default: today).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@pass_ctx
@command
def check(ctx: CliContext, as_of: str | None, fmt: str) -> None:
    """Evaluate the config's [[targets]] on the last complete period of each target's grain,
    and list tensions (a HEAT dimension bought at another's expense).

    Exit 1 when a target is missed, 2 on an error, else 0. Through --server, the server's
    config gives the targets.
    """
    with ctx.application() as app, ctx.working("checking targets"):
        doc = app.check(day_option(as_of, "--as-of"))
    if fmt == "json":
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        _print_check(doc)
    if any(t["status"] == "missed" for t in doc["targets"]):
        sys.exit(1)


def _print_check(doc: dict[str, Any]) -> None:
    # here, not at the top: importing heatlens.report loads the metric engine, which the other
    # commands (`heatlens ingest`) do not need
    from heatlens.report.units import format_value

    if not doc["targets"]:
        out.print(
            "no targets: add [[targets]] tables to heatlens.toml (see `heatlens check -h`)",
            markup=False,
        )
    else:
        table = Table(box=None)
        # names fold on a narrow terminal; numbers and statuses are never cut
        table.add_column("metric", overflow="fold")
        table.add_column("segment", overflow="fold")
        for name in ("target", "grain", "period", "actual", "status"):
            table.add_column(name, no_wrap=True)
        for t in doc["targets"]:
            segment = ", ".join(f"{k}={v}" for k, v in t["segment"].items()) or "all"
            status = Text(t["status"], style=_STATUS_STYLE.get(t["status"], ""))
            unit = CATALOG[t["metric"]].unit if t["metric"] in CATALOG else ""
            table.add_row(
                t["metric"],
                segment,
                f"{t['op']} {format_value(t['value'], unit)}",
                t["grain"],
                t["period"] + (f" (wave {t['survey']})" if t.get("survey") else ""),
                format_value(t["actual"], unit),
                status,
            )
        out.print(table)
    for tension in doc["tensions"]:
        where = tension["capability"] or "overall (all capabilities)"
        out.print(
            f"[yellow]tension[/] {where} ({tension['period']} vs "
            f"{tension['previous']}): better {', '.join(tension['better'])}; "
            f"worse {', '.join(tension['worse'])}",
            markup=True,
        )
    if not doc["tensions"]:
        out.print(
            "no tensions: neither the organisation nor any capability gained one HEAT "
            "dimension at another's expense"
        )
