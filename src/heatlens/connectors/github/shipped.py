"""What each deployment shipped: GitHub's compare API between a service's consecutive deployed shas.

After the deployments stream, the stored successful deployments of the repository are taken per
(service, environment) in order of `finished_at` (ties: id). Each one after the first ships the
commits of `GET /repos/{r}/compare/{previous sha}...{its sha}` (oldest first, paged): they become
`change` records and the deployment's `commits`. The first deployment ships nothing but its own
`commit_sha` (DESIGN §4: a deployment without `commits` ships only that) — the history before it was
shipped by deployments heatlens never saw.

The state (`…:shipped`) maps each deployment done to the previous sha it was compared with, so a
later sync compares only new deployments, and one whose predecessor changed (a deployment recorded
late, between two others) is compared again. Each deployment's records commit with its state entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from heatlens.connectors.http import HttpClient
from heatlens.connectors.streams import Stream, read_stream
from heatlens.store import Store

Record = dict[str, Any]
Commit = Callable[[list[Record], dict[str, Any]], None]


def change_of(commit: Mapping[str, Any], service: str, repo: str) -> Record:
    """A commit of the REST API (compare, list commits) → a change."""
    inner = commit.get("commit") or {}
    author, committer = inner.get("author") or {}, inner.get("committer") or {}
    login = (commit.get("author") or {}).get("login")
    email = str(author.get("email") or "").lower() or None
    record = {
        "type": "change",
        "id": commit["sha"],
        "committed_at": committer.get("date") or author.get("date"),
        "authored_at": author.get("date"),
        "author": login or email or author.get("name"),
        "title": str(inner.get("message") or "").split("\n", 1)[0].strip()[:300],
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
    repo: str,
    prefix: str,
    state: Mapping[str, Any] | None,
    commit: Commit,
) -> int:
    """Compare each new deployment of `repo` (those whose ids begin with `prefix`) with the one
    before it; returns how many were compared."""
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
                commits = _compare(client, repo, previous, sha)
                records = [change_of(c, row["service"], repo) for c in commits]
                records.append(_record(row, [str(c["sha"]) for c in commits]))
                compared += 1
            done[key] = previous
            commit(records, {"done": dict(done)})
            previous = sha
    return compared


def _compare(client: HttpClient, repo: str, base: str, head: str) -> list[Any]:
    found: list[Any] = []
    stream = Stream(
        name="compare",
        path=f"repos/{repo}/compare/{base}...{head}",
        params=lambda cursor: {"per_page": 100},
        items_key="commits",
        cursor_field=None,
        map=lambda item: [item],
    )
    read_stream(client, stream, None, lambda items, state: found.extend(items))
    return found
