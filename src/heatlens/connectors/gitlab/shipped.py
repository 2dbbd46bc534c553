"""What each GitLab deployment shipped: the compare API between a service's consecutive deployed
shas — the GitHub connector's rule (docs/connectors/github.md), with GitLab's endpoint.

After the streams, the stored successful deployments of the project are taken per (service,
environment) in order of `finished_at` (ties: id). Each one after the first ships the commits of
`GET /projects/{id}/repository/compare?from={previous sha}&to={its sha}`: they become `change`
records and the deployment's `commits`. The first deployment heatlens sees ships only its own
`commit_sha` (DESIGN §4): the history before it was shipped by deployments heatlens never saw.

The state (`…:shipped`) maps each deployment done to the previous sha it was compared with, so a
later sync compares only new deployments, and one whose predecessor changed (a deployment recorded
late, between two others) is compared again. Each deployment's records commit with its state entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from heatlens.connectors.gitlab.mapping import GitLabOptions, iso
from heatlens.connectors.http import HttpClient
from heatlens.store import Store

Record = dict[str, Any]
Commit = Callable[[list[Record], dict[str, Any]], None]


def change_of(commit: Mapping[str, Any], service: str, repo: str) -> Record:
    """A commit of GitLab's REST API (compare, list commits) → a change (author by name, as the
    `push` webhook gives it)."""
    message = str(commit.get("message") or "").strip()
    title = str(commit.get("title") or "").strip() or (message.splitlines() or [""])[0]
    record = {
        "type": "change",
        "id": commit["id"],
        "committed_at": iso(commit.get("committed_date") or commit.get("created_at")),
        "authored_at": iso(commit.get("authored_date")),
        "author": commit.get("author_name"),
        "title": title.strip()[:300],
        "service": service,
        "repo": repo,
    }
    return {k: v for k, v in record.items() if v is not None and v != ""}


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _record(row: Mapping[str, Any], commits: list[str]) -> Record:
    """A stored deployment again, with the commits it shipped."""
    fields = ("id", "service", "finished_at", "environment", "result", "started_at")
    record: Record = {"type": "deployment"}
    record |= {k: _iso(row[k]) for k in (*fields, "commit_sha", "kind", "team") if row.get(k)}
    record["commits"] = commits
    return record


def ship(
    with_store: Callable[[Callable[[Store], Any]], Any],
    client: HttpClient,
    project: Mapping[str, Any],
    prefix: str,
    state: Mapping[str, Any] | None,
    commit: Commit,
    options: GitLabOptions,
) -> int:
    """Compare each new deployment of `project` (ids beginning with `prefix`) with the one
    before it; returns how many were compared."""
    path = str(project["path_with_namespace"])
    done: dict[str, str | None] = dict((state or {}).get("done") or {})
    rows = [
        r
        for r in with_store(lambda store: store.rows("deployment"))
        if str(r["id"]).startswith(prefix) and r["result"] == "success" and r["commit_sha"]
    ]
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for found in sorted(rows, key=lambda r: (r["finished_at"], r["id"])):
        groups.setdefault((found["service"], found["environment"]), []).append(found)
    compared = 0
    for group in groups.values():
        previous: str | None = None
        for row in group:
            key, sha = str(row["id"]), str(row["commit_sha"])
            if key in done and done[key] == previous:
                previous = sha
                continue
            records: list[Record] = []
            if previous is not None and previous != sha:
                answer = client.get(
                    f"projects/{project['id']}/repository/compare",
                    {"from": previous, "to": sha},
                    what=f"{path} compare {previous[:12]}...{sha[:12]}",
                ).data
                commits = list(answer.get("commits") or [])
                records = [change_of(c, row["service"], path) for c in commits]
                records.append(_record(row, [str(c["id"]) for c in commits]))
                compared += 1
            done[key] = previous
            commit(records, {"done": dict(done)})
            previous = sha
    return compared
