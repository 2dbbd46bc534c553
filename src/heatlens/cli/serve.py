"""`heatlens serve` and `heatlens token …`: the server, and the tokens that open its API."""

from __future__ import annotations

import sys

import click
from rich.table import Table

from heatlens.cli.context import CliContext, HeatlensGroup, cell, command, err, out, pass_ctx


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port."
)
@pass_ctx
@command
def serve(ctx: CliContext, host: str, port: int) -> None:
    """Serve the dashboard and the JSON API on the store, and run the config's [[sync]]
    entries on their schedule (it holds a DuckDB store until stopped: other commands then
    work through it with --server).

    Binds 127.0.0.1 by default. A store that never had a token is served open (the startup
    line says so), which is refused beyond loopback: create a token first (`heatlens token
    create`). Once a token was created, the server requires one for good. See
    docs/security.md.
    """
    from heatlens.web import run_server

    with ctx.local_application() as app:
        app.ensure_servable(host)
    run_server(
        ctx.settings,
        host,
        port,
        announce=lambda text: err.print(text, markup=False, soft_wrap=True),
    )


@click.group(cls=HeatlensGroup)
def token() -> None:
    """Create, list and revoke API tokens (the secret is shown once, at creation)."""


@token.command("create")
@click.option(
    "--scope",
    type=click.Choice(["ingest", "read", "admin"]),
    required=True,
    help="ingest: post records; read: metrics and explain; admin: everything.",
)
@click.option("--name", help="A label to recognise the token by.")
@click.option("--team", "teams", multiple=True, help="Limit a read token to a team (repeatable).")
@pass_ctx
@command
def token_create(ctx: CliContext, scope: str, name: str | None, teams: tuple[str, ...]) -> None:
    """Create a token and print its secret (only this once)."""
    with ctx.application() as app:
        doc = app.create_token(scope, name, teams)
    err.print(
        f"created token {doc['token']['id']} ({scope}); "
        "store the secret now, it is not shown again:"
    )
    sys.stdout.write(doc["secret"] + "\n")


@token.command("list")
@pass_ctx
@command
def token_list(ctx: CliContext) -> None:
    """List tokens (never their secrets)."""
    with ctx.application() as app:
        tokens = app.list_tokens()["tokens"]
    if not tokens:
        out.print(
            "no tokens: `heatlens serve` on 127.0.0.1 is open (`heatlens token create` closes it)"
        )
        return
    table = Table("id", "name", "scope", "teams", "created", "revoked", box=None)
    for t in tokens:
        table.add_row(
            t["id"],
            t["name"] or "—",
            t["scope"],
            ", ".join(t["teams"]) or "all",
            cell(t["created_at"]),
            cell(t["revoked_at"]),
        )
    out.print(table)


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@pass_ctx
@command
def token_revoke(ctx: CliContext, token_id: str) -> None:
    """Revoke a token by id: requests with it are refused from now on."""
    with ctx.application() as app:
        tok = app.revoke_token(token_id)["token"]
    out.print(f"revoked token {tok['id']} ({tok['scope']})")
