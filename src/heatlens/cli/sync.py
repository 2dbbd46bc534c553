"""`heatlens sync …`: read a source system into the store (DESIGN §5)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from heatlens.cli.context import (
    CliContext,
    HeatlensGroup,
    command,
    err,
    out,
    pass_ctx,
    print_counts,
    progress_bar,
)
from heatlens.connectors import ProgressFn


@contextmanager
def _bar() -> Iterator[ProgressFn]:
    """A progress bar driven by a connector's progress callback."""
    with progress_bar() as progress:
        task = progress.add_task("starting", total=None)

        def update(description: str, completed: int, total: int | None) -> None:
            progress.update(task, description=description, completed=completed, total=total)

        yield update


def _report(ctx: CliContext, doc: dict[str, Any], seconds: float) -> None:
    if doc["counts"]:
        print_counts(doc["counts"], seconds)
    for warning in doc["warnings"]:
        err.print("warning: ", style="yellow", end="")
        err.print(own_commands(ctx, warning), markup=False, soft_wrap=True)
    out.print(f"{doc['source']}: {doc['summary']}", markup=False, soft_wrap=True)


def own_commands(ctx: CliContext, text: str) -> str:
    """A connector's advice with every `heatlens …` command it names run against the user's own
    store or server (`heatlens ingest -` → `heatlens --store x.duckdb ingest -`), so it pastes."""
    prefix = ctx.command_line("", [])
    return re.sub(r"(`|\| )heatlens (?=[a-z])", lambda m: m[1] + prefix + " ", text)


@click.group(cls=HeatlensGroup)
def sync() -> None:
    """Read records from a source system into the store (run again to pick up what is new)."""


@sync.command("git", short_help="A local git repository: commits, tags or branch deployments.")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--service", required=True, help="Service id the repository deploys.")
@click.option("--deploy-tags", metavar="GLOB", help="Tags that are deployments, e.g. 'v*'.")
@click.option(
    "--exclude-tags",
    metavar="GLOBS",
    multiple=True,
    help="Tags matching --deploy-tags that are not deployments: globs, comma-separated or "
    "repeated, e.g. '*rc*,*.x'.",
)
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
@pass_ctx
@command
def sync_git_command(
    ctx: CliContext,
    path: Path,
    service: str,
    deploy_tags: str | None,
    exclude_tags: tuple[str, ...],
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
    from heatlens.connectors.git import GitSource, split_globs

    source = GitSource(
        path,
        service,
        deploy_tags,
        deploy_branch,
        skip_first,
        environment,
        repo_name,
        exclude_tags=split_globs(exclude_tags),
    )
    started = time.perf_counter()
    with ctx.application() as app, _bar() as progress:
        doc = app.sync_git(source, full=full, progress=progress)
    _report(ctx, doc, time.perf_counter() - started)


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
@pass_ctx
@command
def sync_backstage_command(ctx: CliContext, catalog: str, pattern: str) -> None:
    """Backstage catalog → teams (Groups), memberships (Users, Group members) and services
    (Components with their owner, lifecycle, system and domain)."""
    started = time.perf_counter()
    with ctx.application() as app, _bar() as progress:
        doc = app.sync_backstage(catalog, pattern=pattern, progress=progress)
    _report(ctx, doc, time.perf_counter() - started)


# where a first sync of an API connector starts
SINCE = click.option(
    "--since",
    metavar="DATE",
    help="Where a first sync starts (ISO date, e.g. 2024-01-31); default: all history.",
)


@sync.command("github", short_help="GitHub repositories: runs, deployments, changes, incidents.")
@click.option(
    "--repo",
    "repos",
    multiple=True,
    metavar="OWNER/NAME",
    help="A repository to read (repeat for more).",
)
@click.option(
    "--org",
    "orgs",
    multiple=True,
    metavar="ORG",
    help="Read every repository of this organisation, archived ones and forks left out "
    "(repeat for more).",
)
@click.option(
    "--token",
    envvar="GITHUB_TOKEN",
    show_envvar=True,
    metavar="TOKEN",
    help="A GitHub token: `repo` scope for private repositories, `read:org` for --teams "
    "(docs/connectors/github.md). Without one, public repositories at 60 requests an hour.",
)
@click.option(
    "--base-url",
    metavar="URL",
    default="https://api.github.com",
    show_default=True,
    help="The REST API's root; GitHub Enterprise Server: https://HOST/api/v3.",
)
@SINCE
@click.option(
    "--deploy-workflow",
    "deploy_workflows",
    multiple=True,
    metavar="NAME",
    help="Deployments are the runs of this workflow (its name or file name, e.g. deploy.yml; "
    "repeat for more), not the Deployments API.",
)
@click.option(
    "--deploy-releases/--no-deploy-releases",
    default=None,
    help="Deployments are the published releases / the Deployments API, whatever "
    "webhooks.github_release_deployments says (default: releases for the repositories it names, "
    "else the Deployments API).",
)
@click.option(
    "--environment",
    metavar="NAME",
    default="production",
    show_default=True,
    help="Environment of deployments from --deploy-workflow or --deploy-releases.",
)
@click.option(
    "--teams",
    is_flag=True,
    help="Also read each repository's teams and their members: teams, memberships, and the "
    "service owned by the team with the strongest permission (leave off when Backstage or a "
    "file says who owns what). Needs `read:org`.",
)
@click.option(
    "--rerun-days",
    type=click.IntRange(min=0),
    default=7,
    show_default=True,
    metavar="DAYS",
    help="Read again the runs created this many days back, for re-runs of older runs (GitHub "
    "allows re-runs for 30 days); 0: never.",
)
@pass_ctx
@command
def sync_github_command(
    ctx: CliContext,
    repos: tuple[str, ...],
    orgs: tuple[str, ...],
    token: str | None,
    base_url: str,
    since: str | None,
    deploy_workflows: tuple[str, ...],
    deploy_releases: bool | None,
    environment: str,
    teams: bool,
    rerun_days: int,
) -> None:
    """Read GitHub repositories' history into the store, then (run again) what is new.

    \b
      heatlens sync github --repo acme/api                  # $GITHUB_TOKEN
      heatlens sync github --org acme --teams --since 2024-01-01
      heatlens sync github --repo acme/api --deploy-workflow deploy.yml

    \b
    Actions workflow runs       → usage of `ci_capability`, one per run attempt
    deployments and statuses    → deployments (or: runs of --deploy-workflow,
                                  or published releases)
    compare API between deploys → changes, and what each deployment shipped
    merged pull requests        → PR open/merge times of their merge commits
    labelled issues             → incidents (label: `incident_label`)

    A sync that was interrupted resumes where it stopped; a rate limit is waited out
    (at most 15 minutes). Token scopes and every rule: docs/connectors/github.md."""
    from heatlens.connectors.github.sync import GithubSource

    source = GithubSource(
        tuple(repos),
        token or None,
        base_url,
        since,
        deploy_workflows=tuple(deploy_workflows),
        deploy_releases=deploy_releases,
        environment=environment,
        teams=teams,
        orgs=tuple(orgs),
        rerun_days=rerun_days,
    )
    started = time.perf_counter()
    with ctx.application() as app, _bar() as progress:
        doc = app.sync_github(source, progress=progress)
    _report(ctx, doc, time.perf_counter() - started)


@sync.command("gitlab", short_help="GitLab projects: deployments, MRs, pipelines, incidents.")
@click.option(
    "--project",
    "projects",
    multiple=True,
    metavar="PATH",
    help="A project's full path, e.g. acme/platform/api (repeat for more).",
)
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="GROUP",
    help="Read every project of this group and its subgroups, archived ones left out "
    "(repeat for more).",
)
@click.option(
    "--token",
    envvar="GITLAB_TOKEN",
    show_envvar=True,
    help="A GitLab token with `read_api`; default: $GITLAB_TOKEN.",
)
@click.option(
    "--base-url",
    default="https://gitlab.com/api/v4",
    show_default=True,
    help="The REST API's root; self-managed GitLab: https://HOST/api/v4.",
)
@SINCE
@pass_ctx
@command
def sync_gitlab_command(
    ctx: CliContext,
    projects: tuple[str, ...],
    groups: tuple[str, ...],
    token: str | None,
    base_url: str,
    since: str | None,
) -> None:
    """GitLab deployments → deployments (GitLab's `production` tier decides production while
    `production_environments` is left at its default), with the commits each shipped (compare
    API) → changes; merged merge requests → their commit's PR times; pipelines → usage of the CI
    capability (one per attempt); issues labelled `incident_label` or of the incident type →
    incidents. A second sync reads only what is new; an interrupted one resumes."""
    from heatlens.connectors.gitlab.sync import GitlabSource

    source = GitlabSource(tuple(projects), token or None, base_url, since, groups=tuple(groups))
    started = time.perf_counter()
    with ctx.application() as app, _bar() as progress:
        doc = app.sync_gitlab(source, progress=progress)
    _report(ctx, doc, time.perf_counter() - started)


@sync.command("pagerduty", short_help="PagerDuty services: incidents.")
@click.option(
    "--service",
    "services",
    multiple=True,
    required=True,
    metavar="ID",
    help="A PagerDuty service id, e.g. PIKL83L (repeat for more); `service_map` maps it to a "
    "heatlens service.",
)
@click.option(
    "--token",
    envvar="PAGERDUTY_TOKEN",
    show_envvar=True,
    help="A PagerDuty REST API key (read-only is enough); default: $PAGERDUTY_TOKEN.",
)
@click.option(
    "--base-url",
    default="https://api.pagerduty.com",
    show_default=True,
    help="The REST API's root (https://api.eu.pagerduty.com for the EU service region).",
)
@SINCE
@pass_ctx
@command
def sync_pagerduty_command(
    ctx: CliContext,
    services: tuple[str, ...],
    token: str | None,
    base_url: str,
    since: str | None,
) -> None:
    """PagerDuty incidents → incidents: opened at creation, resolved at the resolve, severity
    from the priority (else the urgency), service through `service_map`. A second sync reads only
    what is new (and the incidents still open); an interrupted one resumes."""
    from heatlens.connectors.pagerduty.sync import PagerDutySource

    source = PagerDutySource(tuple(services), token or None, base_url, since)
    started = time.perf_counter()
    with ctx.application() as app, _bar() as progress:
        doc = app.sync_pagerduty(source, progress=progress)
    _report(ctx, doc, time.perf_counter() - started)
