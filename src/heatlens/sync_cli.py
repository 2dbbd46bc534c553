"""`heatlens sync …`: read a source system into the store (DESIGN §5).

cli.py registers this group at its very end; the helpers it shares with the other commands (the
Context, one-line errors, progress bars, counts) are imported when a command runs, so importing this
module never needs cli.py to be complete.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from heatlens.cli import Context
    from heatlens.connectors import ProgressFn, SyncResult

F = TypeVar("F", bound=Callable[..., Any])


def _command(fn: F) -> F:
    """cli.py's `command` (one-line errors), applied when the command runs."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from heatlens.cli import command

        return command(fn)(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@contextmanager
def _bar() -> Iterator[ProgressFn]:
    """A progress bar driven by a connector's progress callback."""
    from heatlens.cli import _progress

    with _progress() as progress:
        task = progress.add_task("starting", total=None)

        def update(description: str, completed: int, total: int | None) -> None:
            progress.update(task, description=description, completed=completed, total=total)

        yield update


def _report(result: SyncResult, seconds: float) -> None:
    from heatlens.cli import _print_counts, err, out
    from heatlens.operations import counts_doc

    if result.counts:
        _print_counts(counts_doc(result.counts), seconds)
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}", markup=True, soft_wrap=True)
    out.print(f"{result.source}: {result.summary}", markup=False, soft_wrap=True)


@click.group()
def sync() -> None:
    """Read records from a source system into the store (run again to pick up what is new)."""


@sync.command("git", short_help="A local git repository: commits, tags or branch deployments.")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--service", required=True, help="Service id the repository deploys.")
@click.option("--deploy-tags", metavar="GLOB", help="Tags that are deployments, e.g. 'v*'.")
@click.option(
    "--deploy-branch",
    metavar="BRANCH",
    help="Branch whose first-parent commits are deployments, e.g. main.",
)
@click.option(
    "--skip-first",
    is_flag=True,
    help="The first deployment ships only its own commit, not the whole history before it "
    "(otherwise old commits get absurd lead times).",
)
@click.option(
    "--environment", default="production", show_default=True, help="Environment deployed to."
)
@click.option("--repo", "repo_name", help="Repository name on changes (default: its directory).")
@click.option(
    "--full", is_flag=True, help="Read the whole history again, ignoring earlier syncs' state."
)
@click.pass_obj
@_command
def sync_git_command(
    ctx: Context,
    path: Path,
    service: str,
    deploy_tags: str | None,
    deploy_branch: str | None,
    skip_first: bool,
    environment: str,
    repo_name: str | None,
    full: bool,
) -> None:
    """Commits of the git repository at PATH → changes; its tags or branch → deployments.

    Each tag matching --deploy-tags is a deployment at its tag time, shipping the commits
    reachable from it and from no earlier tag; with --deploy-branch each first-parent commit of
    the branch is a deployment at its commit time. A second sync adds only what is new.
    """
    from heatlens.connectors.git import GitSource, sync_git

    source = GitSource(
        path, service, deploy_tags, deploy_branch, skip_first, environment, repo_name
    )
    started = time.perf_counter()
    with ctx.open_store() as store, _bar() as progress:
        result = sync_git(store, ctx.settings, source, full=full, progress=progress)
    _report(result, time.perf_counter() - started)


@sync.command("backstage", short_help="A Backstage catalog: teams, memberships, services.")
@click.option(
    "--catalog",
    required=True,
    metavar="FILE|DIR|URL",
    help="A catalog YAML file, a directory to search, or an http(s) URL of a catalog file.",
)
@click.option(
    "--pattern",
    default="catalog-info.yaml",
    show_default=True,
    help="File names read under a directory (a glob, e.g. '*.yaml').",
)
@click.pass_obj
@_command
def sync_backstage_command(ctx: Context, catalog: str, pattern: str) -> None:
    """Backstage catalog → teams (Groups), memberships (Users, Group members) and services
    (Components with their owner, lifecycle, system and domain)."""
    from heatlens.connectors.backstage import sync_backstage

    started = time.perf_counter()
    with ctx.open_store() as store, _bar() as progress:
        result = sync_backstage(store, ctx.settings, catalog, pattern=pattern, progress=progress)
    _report(result, time.perf_counter() - started)
