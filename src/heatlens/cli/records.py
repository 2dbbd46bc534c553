"""`heatlens status` and `heatlens delete`: what the store holds, and taking records out."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from heatlens.application.documents import empty_store_message
from heatlens.cli.context import CliContext, command, out, pass_ctx
from heatlens.errors import EmptyStoreError
from heatlens.model import TYPE_NAMES


@click.command()
@pass_ctx
@command
def status(ctx: CliContext) -> None:
    """What the store holds: records per type and source, versions."""
    with ctx.application() as app:
        doc = app.status()
    if not doc["sources"]:
        raise EmptyStoreError(empty_store_message(doc["store"]))
    table = Table("type", "source", "records", box=None)
    for row in doc["sources"]:
        table.add_row(row["type"], row["source"], f"{row['records']:,}")
    out.print(table)
    for job in doc.get("syncs", []):
        state = "[green]ok[/]" if job["ok"] else "[bold red]failed[/]"
        summary = escape(job["summary"])
        out.print(
            f"sync {escape(job['name'])} ({job['kind']}): {state} at {job['at']}: {summary}",
            soft_wrap=True,
        )
    for hook in doc.get("webhooks", []):
        out.print(
            f"webhook {escape(str(hook.get('source')))}: {hook.get('deliveries', 0):,} "
            f"deliveries ({hook.get('ignored', 0):,} ignored), "
            f"last at {hook.get('last_delivery_at')}",
            soft_wrap=True,
        )
    out.print(f"store {doc['store']}: schema {doc['schema']}, data version {doc['data_version']}")


@click.command()
@click.option(
    "--type",
    "type_name",
    type=click.Choice(TYPE_NAMES),
    metavar="TYPE",
    help="Record type to delete from.",
)
@click.option("--id", "ids", multiple=True, help="Id of a record to delete (repeatable).")
@click.option("--source", help="Delete every record of TYPE from this source.")
@click.option(
    "--ingested-between",
    nargs=2,
    metavar="FROM TO",
    help="Delete records of TYPE ingested in [FROM, TO) (ISO 8601, UTC if no offset).",
)
@click.option(
    "--actor",
    "actors",
    multiple=True,
    help="Erase a person everywhere (repeatable): memberships and survey answers "
    "deleted, their id removed from usage and changes.",
)
@pass_ctx
@command
def delete(
    ctx: CliContext,
    type_name: str | None,
    ids: tuple[str, ...],
    source: str | None,
    ingested_between: tuple[str, str] | None,
    actors: tuple[str, ...],
) -> None:
    """Delete records by type and id, source or ingestion time, or erase a person (logged)."""
    with ctx.application() as app:
        doc = app.delete(
            type_name=type_name,
            ids=list(ids),
            source=source,
            ingested_between=list(ingested_between) if ingested_between else None,
            actors=list(actors),
        )
    if "erased" in doc:
        out.print("erased: " + ", ".join(f"{n:,} {t}" for t, n in doc["erased"].items()))
    for name, n in doc.get("deleted", {}).items():
        out.print(f"deleted {n:,} {name} record(s)")
