"""What each deployment shipped: GitHub's compare API between a service's consecutive deployed shas.

After the deployments stream, the stored successful deployments of the repository are taken per
(service, environment) in order of `finished_at` (ties: id). Each one after the first ships the
commits of `GET /repos/{r}/compare/{previous sha}...{its sha}` (oldest first, paged): they become
`change` records and the deployment's `commits`. The first deployment ships nothing but its own
`commit_sha` (DESIGN §4: a deployment without `commits` ships only that) — the history before it was
shipped by deployments heatlens never saw.

Only the deployments written since the last sync are taken (`Store.deployments_by_prefix`, by
`ingested_at`), each compared with the one before it (`Store.adjacent_deployment`); the one after a
deployment recorded late, between two others, is compared again. The state (`…:shipped`) is
bounded: `after`, the latest write read, and `done`, the deployments of the last sync with the sha
each was compared with, so their own write-backs (read again by the next sync) are not compared
twice. Each deployment's records commit with the state; a sync killed half-way compares the rest
next time.
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
    """Compare each deployment of `repo` (those whose ids begin with `prefix`) written since the
    last sync with the one before it; returns how many were compared."""
    # another prefix (deployments now from elsewhere): a fresh start
    state = state if state and state.get("prefix") == prefix else {}
    after = datetime.fromisoformat(state["after"]) if state.get("after") else None
    last: dict[str, str | None] = dict(state.get("done") or {})
    rows: list[Mapping[str, Any]] = with_store(
        lambda store: store.deployments_by_prefix(prefix, ingested_after=after)
    )
    if not rows:
        return 0
    newest = max(r["ingested_at"] for r in rows)
    todo = {str(r["id"]): r for r in rows}
    done: dict[str, str | None] = {}
    compared = 0
    while todo:
        key = min(todo, key=lambda k: (todo[k]["finished_at"], k))
        row = todo.pop(key)
        sha = str(row["commit_sha"])
        before = _adjacent(with_store, prefix, row, later=False)
        previous = str(before["commit_sha"]) if before else None
        done[key] = previous
        # written back by the last sync with this very comparison (unless the deployments
        # stream, reading it again, wrote it without its commits since)
        wiped = row.get("commits") is None and previous not in (None, sha)
        if key in last and last[key] == previous and not wiped:
            continue
        records: list[Record] = []
        if previous is not None and previous != sha:
            commits = _compare(client, repo, previous, sha)
            records = [change_of(c, row["service"], repo) for c in commits]
            records.append(_record(row, [str(c["sha"]) for c in commits]))
            compared += 1
        # the one after it may have had another predecessor: compared again
        after_it = _adjacent(with_store, prefix, row, later=True)
        if after_it is not None and str(after_it["id"]) not in done:
            todo.setdefault(str(after_it["id"]), after_it)
        commit(records, {"prefix": prefix, "after": state.get("after"), "done": last | done})
    # the next sync starts after what this one read; its own write-backs, read again then, are
    # known by `done`
    commit([], {"prefix": prefix, "after": _iso(newest), "done": done})
    return compared


def _adjacent(
    with_store: Callable[[Callable[[Store], Any]], Any],
    prefix: str,
    row: Mapping[str, Any],
    *,
    later: bool,
) -> Any:
    return with_store(lambda store: store.adjacent_deployment(prefix, row, later=later))


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
