"""`heatlens sync git`: a local repository's commits and deployments, incrementally.

The sync state (one per repository and service) remembers the deploy points already mapped and the
tips whose history was already read. A later sync reads only the history that no earlier deployment
shipped, and maps only new commits and new deploy points. When that would give a different answer
from a sync from scratch — the deploy options changed, a tag moved, a new tag sorts before one
already synced, the branch was rewritten — it syncs from scratch instead: ids are stable, so the
records that did not change are replaced by themselves and nothing is counted twice.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from heatlens.connectors import ProgressFn, SyncResult, no_progress
from heatlens.connectors.git.mapping import (
    DeployPoint,
    change_records,
    deployment_records,
    reachable,
)
from heatlens.connectors.git.repo import GitRepo, UnknownRevision
from heatlens.connectors.git.tags import odd_tags_warning, some
from heatlens.errors import ConfigError, ConnectorError
from heatlens.settings import Settings
from heatlens.store import Store


@dataclass(frozen=True)
class GitSource:
    """What to read: a repository, the service it deploys, and how deployments are recognised."""

    path: Path
    service: str
    deploy_tags: str | None = None
    deploy_branch: str | None = None
    skip_first: bool = False
    environment: str = "production"
    repo: str | None = None  # recorded on changes; default: the repository's directory name
    # globs of tags matching deploy_tags that are not deployments
    exclude_tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.deploy_tags is None) == (self.deploy_branch is None):
            raise ConfigError(
                "git sync needs exactly one of --deploy-tags GLOB or --deploy-branch BRANCH"
            )
        if not self.service:
            raise ConfigError("git sync needs --service NAME: the service the repository deploys")
        if self.exclude_tags and self.deploy_tags is None:
            raise ConfigError("--exclude-tags leaves out tags: it needs --deploy-tags GLOB")

    @property
    def mode(self) -> dict[str, Any]:
        """The options that decide which deployments exist (a change means a sync from scratch)."""
        mode: dict[str, Any] = {
            "deploy_tags": self.deploy_tags,
            "deploy_branch": self.deploy_branch,
            "skip_first": self.skip_first,
            "environment": self.environment,
        }
        if self.exclude_tags:  # absent when unused: states saved before it existed still match
            mode["exclude_tags"] = list(self.exclude_tags)
        return mode


def split_globs(values: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Globs given comma-separated, repeated, or both → one tuple (empty items dropped)."""
    items = [values] if isinstance(values, str) else values
    return tuple(g.strip() for item in items for g in item.split(",") if g.strip())


def state_name(repo: GitRepo, service: str) -> str:
    """Sync state key: one per repository and service (a monorepo may deploy several)."""
    return f"git:{service}:{repo.root}"


def sync_git(
    store: Store,
    settings: Settings,
    source: GitSource,
    *,
    full: bool = False,
    progress: ProgressFn = no_progress,
) -> SyncResult:
    """Read new commits and deployments of `source` into the store (`full`: read everything
    again, ignoring what earlier syncs read — after deleting their records, say)."""
    repo = GitRepo(source.path.expanduser().resolve())
    repo_name = source.repo or repo.root.name.removesuffix(".git")
    name = state_name(repo, source.service)
    result = SyncResult(source=f"sync:git:{repo_name}")
    previous = None if full else store.sync_state(name)
    if previous is not None and previous.get("mode") != source.mode:
        result.warnings.append(
            "deploy options changed since the last sync: synced from scratch; deployments "
            "recorded under the old options stay stored (to start clean, `heatlens delete "
            f"--type deployment --source {result.source}`, then sync again with --full)"
        )
        previous = None
    deployed_before: dict[str, str] = (previous or {}).get("deployed") or {}
    progress("reading deploy points", 0, None)
    if source.deploy_tags is not None:
        points, tips = _tag_points(repo, source.deploy_tags, source.exclude_tags, result)
    else:
        assert source.deploy_branch is not None
        tip = repo.branch(source.deploy_branch)
        points, tips = [DeployPoint(sha, sha, at) for sha, at in repo.first_parent(tip)], [tip]
    branch = source.deploy_branch is not None
    plan = _plan(repo, points, previous, branch=branch)
    progress("reading history", 0, None)

    def read(count: int) -> None:
        progress("reading history", count, None)

    try:
        commits = repo.commits(tips, plan.shipped_tips, read)
        seen = reachable(plan.read_tips, {c.sha: c for c in commits})
    except UnknownRevision:
        # an earlier sync's commits are gone (history rewritten): read everything again
        plan = _plan(repo, points, None, branch=branch)
        commits, seen = repo.commits(tips, progress=read), set()
    graph = {c.sha: c for c in commits}
    new_commits = [c for c in reversed(commits) if c.sha not in seen]
    progress("mapping commits", len(new_commits), len(new_commits))
    records = change_records(new_commits, service=source.service, repo=repo_name)
    records += deployment_records(
        plan.new_points,
        graph,
        service=source.service,
        environment=source.environment,
        skip_first=source.skip_first and plan.from_scratch,
    )
    state = {
        "mode": source.mode,
        # a branch's deployments are bounded by the last one; tags need every one
        "deployed": {} if branch else {**deployed_before, **{p.name: p.commit for p in points}},
        "last": [points[-1].at.isoformat(), points[-1].name] if points else None,
        "tips": tips,
        "synced_at": datetime.now(UTC).isoformat(),
    }
    from heatlens.ingest import ingest_records

    if records:
        progress("storing", 0, len(records))
    # the state commits with the records it covers: a sync killed at any point resumes cleanly
    ingested = ingest_records(
        store,
        records,
        settings,
        source=result.source,
        name=f"git {repo.root}",
        sync_state={name: state},
    )
    result.counts = ingested.counts
    if records:
        progress("storing", len(records), len(records))
    result.warnings += repo.oddities.warnings()
    if repo.shallow():
        result.warnings.append(
            f"{repo.root} is a shallow clone: only the history it holds is read, so the first "
            "deployments ship less than they did; for all of it, `git fetch --unshallow` and "
            "sync again with --full"
        )
    result.warnings += _unknown_service(store, source.service)
    # a branch's deploy points are shas, shortened as git shows them; tag names are shown whole
    shown = ", ".join(p.name[:12] if branch else p.name for p in plan.new_points[-3:])
    more = "…, " if len(plan.new_points) > 3 else ""
    counted = f"{len(new_commits):,} commit(s), {len(plan.new_points):,} deployment(s)" + (
        f" ({more}{shown})" if shown else ""
    )
    rescan = plan.from_scratch and previous is not None
    result.summary = f"read from scratch: {counted}" if rescan else f"new: {counted}"
    return result


def _tag_points(
    repo: GitRepo, glob: str, exclude: tuple[str, ...], result: SyncResult
) -> tuple[list[DeployPoint], list[str]]:
    tags, skipped = repo.tags()

    def wanted(name: str) -> bool:
        return fnmatch.fnmatchcase(name, glob) and not any(
            fnmatch.fnmatchcase(name, x) for x in exclude
        )

    for name in skipped:
        if wanted(name):
            result.warnings.append(f"tag {name} names no commit: not a deployment")
    untimed = [name for name in repo.untimed_tags if wanted(name)]
    if untimed:
        has = (
            "1 annotated tag has" if len(untimed) == 1 else f"{len(untimed):,} annotated tags have"
        )
        result.warnings.append(
            f"{has} no tagger date ({some(untimed)}): deployed at its commit's time, as a "
            "lightweight tag is"
        )
    matching = [t for t in tags if wanted(t.name)]
    if not matching:
        names = sorted(t.name for t in tags)
        known = ", ".join(names[:8]) + (" …" if len(names) > 8 else "") if names else "none"
        outside = f" outside --exclude-tags {','.join(exclude)}" if exclude else ""
        raise ConnectorError(f"{repo.root}: no tag matches {glob!r}{outside} (tags: {known})")
    matching.sort(key=lambda t: (t.at, t.name))
    # a second tag on a deployed commit (`v1.0rc1` on `v0.99.9h`'s, `1.0.x` on `1.0.0`'s) ships
    # nothing and deploys nothing new: the commit was deployed once
    first: dict[str, str] = {}
    points, aliases = [], []
    for t in matching:
        if t.commit in first:
            aliases.append(f"{t.name} = {first[t.commit]}")
            continue
        first[t.commit] = t.name
        points.append(DeployPoint(t.name, t.commit, t.at))
    if aliases:
        these = "1 tag names" if len(aliases) == 1 else f"{len(aliases):,} tags name"
        result.warnings.append(
            f"{these} a commit an earlier tag deployed ({some(aliases)}): not counted again"
        )
    warning = odd_tags_warning([p.name for p in points], glob)
    if warning:
        result.warnings.append(warning)
    head = repo.resolve("HEAD")
    tips = list(dict.fromkeys([*(p.commit for p in points), *([head] if head else [])]))
    return points, tips


def _unknown_service(store: Store, service: str) -> list[str]:
    """A warning when no `service` record names the service synced (its deployments then have
    no owning team), with the command that registers it."""
    if store.rows("service", ids=[service]):
        return []
    record = json.dumps({"type": "service", "id": service, "team": "TEAM"})
    return [
        f"service {service!r} is not registered: its deployments have no owning team. Register "
        f"it with `echo '{record}' | heatlens ingest -` (or `heatlens sync backstage`)"
    ]


@dataclass(frozen=True)
class _Plan:
    new_points: list[DeployPoint]
    shipped_tips: list[str]  # deployed commits: their history was shipped already
    read_tips: list[str]  # tips of the history read by earlier syncs
    from_scratch: bool


def _plan(
    repo: GitRepo, points: list[DeployPoint], previous: dict[str, Any] | None, *, branch: bool
) -> _Plan:
    """Which deploy points are new and which history is known; everything when in doubt."""
    scratch = _Plan(points, [], [], True)
    if previous is None or not previous.get("last"):
        return scratch
    last_at, last_name = datetime.fromisoformat(previous["last"][0]), previous["last"][1]
    if branch:
        # every earlier deployment is an ancestor of the last one: it alone bounds the history
        names = [p.name for p in points]
        if last_name not in names:
            return scratch  # the branch was rewritten
        new = points[names.index(last_name) + 1 :]
        shipped = [last_name]
    else:
        deployed: dict[str, str] = previous.get("deployed") or {}
        if any(deployed.get(p.name, p.commit) != p.commit for p in points):
            return scratch  # a tag was moved
        new = [p for p in points if p.name not in deployed]
        if new and (new[0].at, new[0].name) < (last_at, last_name):
            return scratch  # a new tag sorts before one synced: later ones ship other commits
        # a deleted tag's commits stay shipped: keep them out of the history read
        shipped = list(dict.fromkeys(deployed.values()))
        if len(repo.existing(shipped)) < len(shipped):
            return scratch
    tips = previous.get("tips") or []
    present = repo.existing(tips)
    read = [sha for sha in tips if sha in present]
    return _Plan(new, shipped, read, False)
