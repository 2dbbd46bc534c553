"""Git history → canonical records (pure: no I/O).

Commits become changes; deploy points (tags, or first-parent commits of a branch) become
deployments. A deployment ships the commits reachable from it that no earlier deployment shipped —
computed by one walk of the history in deployment order, so the whole mapping is linear in the
number of commits however many deployments there are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from heatlens.connectors.git.repo import Commit


@dataclass(frozen=True)
class DeployPoint:
    """A deployment found in the history: a tag, or a first-parent commit of the deploy branch."""

    name: str  # tag name, or the commit sha for a branch
    commit: str
    at: datetime


def deployment_id(service: str, point: DeployPoint) -> str:
    """Stable: the same tag (or commit) of the same service is always the same deployment."""
    return f"{service}@{point.name}"


def change_records(commits: Iterable[Commit], *, service: str, repo: str) -> list[dict[str, Any]]:
    """One change per commit, at its committer time (when it entered the history); a commit
    with no readable time is no change."""
    return [
        {
            "type": "change",
            "id": c.sha,
            "committed_at": c.committed_at.isoformat(),
            "authored_at": c.authored_at.isoformat() if c.authored_at else None,
            "author": c.author or None,
            "title": c.title or None,
            "service": service,
            "repo": repo,
        }
        for c in commits
        if c.committed_at is not None
    ]


def deployment_records(
    points: Iterable[DeployPoint],
    graph: Mapping[str, Commit],
    *,
    service: str,
    environment: str,
    skip_first: bool,
) -> list[dict[str, Any]]:
    """Deployments of `points` (in deployment order), each with the commits it shipped.

    `graph` holds every commit not shipped before these points; a commit outside it was shipped by
    an earlier deployment. With `skip_first`, the first point still counts as a deployment but
    ships only its own commit: the history before it is treated as already shipped, instead of
    giving every old commit a lead time ending at the first tag. A commit with no readable time
    is walked through (its parents are shipped) but not listed: it is no change.
    """
    shipped: set[str] = set()
    records = []
    for i, point in enumerate(points):
        new = _walk(point.commit, graph, shipped)
        if skip_first and i == 0:
            new = [point.commit] if point.commit in new else []
        # a commit with no readable time is walked through but is no change to ship
        timed = [(at, sha) for sha in new if (at := graph[sha].committed_at) is not None]
        new = [sha for _, sha in sorted(timed)]
        records.append(
            {
                "type": "deployment",
                "id": deployment_id(service, point),
                "service": service,
                "environment": environment,
                "finished_at": point.at.isoformat(),
                "commit_sha": point.commit,
                "commits": new,
            }
        )
    return records


def reachable(tips: Iterable[str], graph: Mapping[str, Commit]) -> set[str]:
    """Commits of `graph` reachable from `tips` without leaving the graph."""
    seen: set[str] = set()
    for tip in tips:
        _walk(tip, graph, seen)
    return seen


def _walk(tip: str, graph: Mapping[str, Commit], seen: set[str]) -> list[str]:
    """Mark and return the commits of `graph` reachable from `tip` that are not in `seen`."""
    found = []
    stack = [tip]
    while stack:
        sha = stack.pop()
        commit = graph.get(sha)
        if commit is None or sha in seen:
            continue
        seen.add(sha)
        found.append(sha)
        stack.extend(commit.parents)
    return found
