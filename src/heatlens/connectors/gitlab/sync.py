"""`heatlens sync gitlab`: projects' history from GitLab's REST API (v4), then what is new.

Streams per project (each with its own sync state, `gitlab:<host>:<group/project>:<stream>`), all
asked oldest update first (`order_by=updated_at&sort=asc&updated_after=<cursor>`, the cursor moving
with every page), paged by `X-Next-Page`:

- `deployments` — `GET /projects/{id}/deployments` → a deployment once it is finished (`success` →
  success, `failed` → failure), id `group/project/deployments/ID` as the `deployment` webhook's.
  Its environment's GitLab tier (`GET /projects/{id}/environments`) decides what is production
  while `production_environments` is left at its default (see `environment_of`).
- `merge_requests` — `GET /projects/{id}/merge_requests?state=merged` → the merged commit's change
  with `pr_opened_at` and `merged_at`, mapped as the `merge_request` webhook is.
- `pipelines` — `GET /projects/{id}/pipelines` → one usage of `ci_capability` per finished
  pipeline attempt (see `pipeline_usage`).
- `incidents` and `incident_issues` — `GET /projects/{id}/issues?labels=<incident_label>` and
  `…?issue_type=incident` → incidents, mapped as the `issue` webhook is.

Then each successful deployment is compared with the one before it of the same service and
environment (`GET /projects/{id}/repository/compare?from=…&to=…`, see `shipped.py`).

Projects are named by path (`--project group/sub/name`) or listed from a group (`--group G`,
subgroups included, archived projects left out; `GET /groups/{g}/projects`, paged by its `Link`
header). Each project is looked up first, so a wrong path or a token that cannot see it is one
clear error before anything is read. Records are written through the one merge of partial
records (`heatlens.ingest.partial.overlay_stored`), so what a webhook said is kept.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from heatlens.connectors import ProgressFn, SyncResult, no_progress
from heatlens.connectors.gitlab.mapping import GitLabOptions, iso, map_event
from heatlens.connectors.http import Clock, HttpClient, RetryPolicy, Vendor, make_client
from heatlens.connectors.streams import (
    Commit,
    LinkHeader,
    NextPageHeader,
    Stream,
    StreamProgress,
    WithStore,
    check_since,
    holding,
    read_stream,
)
from heatlens.errors import ConfigError
from heatlens.settings import Settings
from heatlens.store import Store, WriteCounts

__all__ = ["GITLAB", "GitlabSource", "gitlab_client", "state_name", "sync_gitlab"]

Record = dict[str, Any]
DEFAULT_BASE_URL = "https://gitlab.com/api/v4"
# production_environments' default: while it is left so, GitLab's tiers decide
DEFAULT_PRODUCTION = tuple(Settings.model_fields["production_environments"].default)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, Mapping):
        return ""
    said = body.get("message") or body.get("error_description") or body.get("error") or ""
    return str(said).strip()


def _explain(response: httpx.Response, what: str) -> str | None:
    status = response.status_code
    message = _message(response)
    # GitLab's messages often begin with the status already ("401 Unauthorized")
    said = message if message.startswith(str(status)) else f"{status} {message}".strip()
    if status == 401:
        return (
            f"GitLab rejected the token ({said}) while reading {what}: check --token or "
            "GITLAB_TOKEN — it may be mistyped, expired or revoked"
        )
    if status == 403:
        return (
            f"GitLab refused {what} ({said}): the token needs the `read_api` scope and at least "
            "the Reporter role on the project; see docs/connectors/gitlab.md"
        )
    if status == 404:
        return (
            f"GitLab: {what}: not found (404) — check the path (group/project), or the token "
            "cannot see it"
        )
    return None


GITLAB = Vendor(
    name="GitLab",
    auth_header=lambda token: {"PRIVATE-TOKEN": token},
    limit_header="ratelimit-limit",
    remaining_header="ratelimit-remaining",
    reset_header="ratelimit-reset",  # epoch seconds
    explain=_explain,
    token_hint="--token or GITLAB_TOKEN",
)


def gitlab_client(
    token: str | None,
    base_url: str = DEFAULT_BASE_URL,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Clock | None = None,
    retry: RetryPolicy | None = None,
) -> HttpClient:
    return make_client(base_url, token, GITLAB, transport=transport, clock=clock, retry=retry)


@dataclass(frozen=True)
class GitlabSource:
    """What to read: projects (`group/project` paths) or groups, from which API, since when."""

    projects: tuple[str, ...] = ()
    token: str | None = None
    base_url: str = DEFAULT_BASE_URL
    since: str | None = None  # ISO date: where a first sync starts (default: all history)
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.projects and not self.groups:
            raise ConfigError(
                "sync gitlab needs --project GROUP/PROJECT or --group GROUP (repeat either for "
                "more)"
            )
        for path in self.projects:
            if "/" not in path or not all(path.split("/")):
                raise ConfigError(
                    f"--project {path!r}: expected the project's full path, e.g. gitlab-org/gitlab"
                )
        check_since(self.since)


def state_name(source: GitlabSource, project: str, stream: str) -> str:
    host = urlsplit(source.base_url).netloc or source.base_url
    return f"gitlab:{host}:{project}:{stream}"


def sync_gitlab(
    store: Store | WithStore,
    settings: Settings,
    source: GitlabSource,
    *,
    progress: ProgressFn = no_progress,
    transport: httpx.BaseTransport | None = None,
    clock: Clock | None = None,
) -> SyncResult:
    """Read `source`'s projects' streams into the store, each from where it was left.

    `store` is a Store, or a function that runs a function on the store (the server's writer):
    the store is then held only for each read of state and each page's write, never while GitLab
    is asked or a rate limit waited out."""
    from heatlens.connectors.gitlab.shipped import ship

    with_store = holding(store)

    def state_of(name: str) -> dict[str, Any] | None:
        return with_store(lambda store: store.sync_state(name))

    result = SyncResult(source="sync:gitlab")
    options = GitLabOptions.of(settings)
    totals: dict[str, int] = {}

    def committer(name: str, path: str, keep_stored: tuple[str, ...] = ()) -> Commit:
        def commit(records: list[Record], new: dict[str, Any]) -> None:
            written = with_store(
                lambda store: _write(store, settings, records, path, {name: new}, keep_stored)
            )
            for kind, counts in written.counts.items():
                result.counts.setdefault(kind, WriteCounts()).add(counts)

        return commit

    with gitlab_client(source.token, source.base_url, transport=transport, clock=clock) as client:
        projects: dict[str, Mapping[str, Any]] = {}
        for path in source.projects:
            projects[path] = _project(client, path)
        for group in source.groups:
            progress(f"listing the projects of {group}", 0, None)
            for found in group_projects(client, group):
                projects.setdefault(str(found["path_with_namespace"]), found)
        for path, project in projects.items():
            tiers = environment_tiers(client, project)
            for stream, keep in project_streams(client, project, options, settings, tiers):
                name = state_name(source, path, stream.name)
                state = state_of(name)
                if state is None and source.since is not None:
                    state = {"cursor": source.since}

                def shown(p: StreamProgress, label: str = f"{path} {stream.name}") -> None:
                    left = client.budget.describe()
                    budget = f", rate limit left {left}" if left else ""
                    progress(f"{label}: {p.items:,} read{budget}", p.items, None)

                read = read_stream(
                    client, stream, state, committer(name, path, keep), on_page=shown
                )
                totals[stream.name] = totals.get(stream.name, 0) + read.items
            name = state_name(source, path, "shipped")
            progress(f"{path}: comparing deployments", 0, None)
            shipped = ship(
                with_store, client, project, f"{path}/deployments/", state_of(name),
                committer(name, path), options,
            )  # fmt: skip
            if shipped:
                totals["deployments compared"] = totals.get("deployments compared", 0) + shipped
        requests = client.requests
    parts = [f"{n:,} {k.replace('_', ' ')}" for k, n in totals.items()]
    result.summary = (
        f"{len(projects):,} project{'' if len(projects) == 1 else 's'}: "
        + (", ".join(parts) if parts else "nothing new")
        + f" ({requests:,} request(s))"
    )
    return result


def _write(
    store: Store,
    settings: Settings,
    records: list[Record],
    path: str,
    state: dict[str, dict[str, Any]],
    keep_stored: tuple[str, ...],
) -> Any:
    """Records merged onto the stored ones (the one merge of partial records), written with the
    state that covers them in one transaction. `keep_stored` fields are only a stand-in (a merge
    request's time for its commit's): a stored value wins over them."""
    from heatlens.ingest import ingest_records
    from heatlens.ingest.partial import overlay_stored

    if keep_stored and records:
        by_type: dict[str, list[str]] = {}
        for r in records:
            by_type.setdefault(str(r["type"]), []).append(str(r["id"]))
        stored = {
            (t, row["id"]): row for t, ids in by_type.items() for row in store.rows(t, ids=ids)
        }
        records = [
            {
                k: v
                for k, v in r.items()
                if not (k in keep_stored and (r["type"], r["id"]) in stored)
            }
            for r in records
        ]
    return ingest_records(
        store,
        overlay_stored(store, records) if records else [],
        settings,
        source=f"sync:gitlab:{path}",
        name=f"gitlab {path}",
        sync_state=state,
    )


def _project(client: HttpClient, path: str) -> Mapping[str, Any]:
    """The project (checks that it exists and the token sees it)."""
    data = client.get(f"projects/{quote(path, safe='')}", what=f"project {path}").data
    return {k: data.get(k) for k in ("id", "path_with_namespace", "default_branch")}


def group_projects(client: HttpClient, group: str) -> list[Mapping[str, Any]]:
    """A group's projects, subgroups included, archived ones left out (Link-header paging)."""
    found: list[Any] = []
    stream = Stream(
        name=f"projects of group {group}",
        path=f"groups/{quote(group, safe='')}/projects",
        params=lambda cursor: {
            "include_subgroups": "true",
            "archived": "false",
            "order_by": "id",
            "sort": "asc",
            "per_page": 100,
        },
        map=lambda project: [project],
        paginator=LinkHeader(),
        cursor_field=None,
    )
    read_stream(client, stream, None, lambda items, state: found.extend(items))
    keys = ("id", "path_with_namespace", "default_branch")
    return [{k: p.get(k) for k in keys} for p in found if not p.get("archived")]


def environment_tiers(client: HttpClient, project: Mapping[str, Any]) -> dict[str, str]:
    """The project's environments' tiers by name (`production`, `staging`, …)."""
    found: list[Any] = []
    stream = Stream(
        name="environments",
        path=f"projects/{project['id']}/environments",
        params=lambda cursor: {"per_page": 100},
        map=lambda env: [env],
        paginator=NextPageHeader(),
        cursor_field=None,
    )
    read_stream(client, stream, None, lambda items, state: found.extend(items))
    return {str(e["name"]): str(e["tier"]) for e in found if e.get("name") and e.get("tier")}


_GLOB_SPECIAL = re.compile(r"[*?]")


def _matches(name: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """`production_environments`' glob rule (case-insensitive, `*` and `?`)."""
    low = name.lower()
    for pattern in patterns:
        regex = "".join(
            ".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern.lower()
        )
        if re.fullmatch(regex, low):
            return True
    return False


def environment_of(name: str, tier: str | None, production_environments: list[str]) -> str:
    """The environment a deployment is recorded in.

    While `production_environments` is at its default, GitLab's tier decides: an environment of
    the `production` tier whose name the default does not match (`live`, `prod-eu`) is recorded
    as `production`, and one of another tier whose name it does match (`prod` in the `staging`
    tier) as `NAME (TIER tier)`, which no default pattern matches. Once `production_environments`
    is set, the names decide and are recorded as they are."""
    if tier is None or tuple(production_environments) != DEFAULT_PRODUCTION:
        return name
    by_name = _matches(name, DEFAULT_PRODUCTION)
    if tier == "production" and not by_name:
        return "production"
    if tier != "production" and by_name:
        return f"{name} ({tier} tier)"
    return name


def _service(path: str, options: GitLabOptions) -> str:
    name = path.rsplit("/", 1)[-1]
    return options.service_map.get(path) or options.service_map.get(name) or name


def _compact(record: Record) -> Record:
    return {k: v for k, v in record.items() if v is not None and v != ""}


_DEPLOYMENT_RESULTS = {"success": "success", "failed": "failure"}


def deployment_record(
    dep: Mapping[str, Any],
    path: str,
    options: GitLabOptions,
    tiers: Mapping[str, str],
    production_environments: list[str],
) -> list[Record]:
    """A finished deployment of the REST API → a deployment (running, created, canceled and
    blocked ones shipped nothing)."""
    result = _DEPLOYMENT_RESULTS.get(str(dep.get("status")))
    if result is None:
        return []
    env = dep.get("environment") or {}
    name = str(env.get("name") or "production")
    tier = env.get("tier") or tiers.get(name)
    deployable = dep.get("deployable") or {}
    record = {
        "type": "deployment",
        "id": f"{path}/deployments/{dep['id']}",
        "service": _service(path, options),
        "environment": environment_of(name, tier, production_environments),
        "result": result,
        "started_at": iso(deployable.get("started_at")),
        # the deployment's own finish (newer GitLab), else its job's, else its last update
        "finished_at": iso(
            dep.get("finished_at") or deployable.get("finished_at") or dep.get("updated_at")
        ),
        "commit_sha": dep.get("sha"),
    }
    return [_compact(record)]


def merge_request_record(mr: Mapping[str, Any], path: str, options: GitLabOptions) -> list[Record]:
    """A merged merge request → its merged commit's PR times, as the webhook maps a merge. A
    fast-forward merge has no merge or squash commit: its head `sha` is what landed."""
    if mr.get("state") != "merged":
        return []
    sha = mr.get("merge_commit_sha") or mr.get("squash_commit_sha") or mr.get("sha")
    attrs = {**mr, "action": "merge", "merge_commit_sha": sha}
    payload = {
        "object_kind": "merge_request",
        "object_attributes": attrs,
        "project": {"path_with_namespace": path},
    }
    return map_event(payload, options).records


def issue_record(issue: Mapping[str, Any], path: str, options: GitLabOptions) -> list[Record]:
    """An issue with the incident label, or of GitLab's incident type → an incident, as the
    webhook maps it (the REST API names labels as strings and severities in capitals)."""
    labels = [{"title": str(label)} for label in issue.get("labels") or []]
    severity = issue.get("severity")
    attrs = {
        **issue,
        "severity": str(severity).lower() if severity else None,
        "labels": labels,
    }
    payload = {
        "object_kind": "issue",
        "object_attributes": attrs,
        "labels": labels,
        "project": {"path_with_namespace": path},
    }
    return map_event(payload, options).records


_FINISHED = {"success", "failed", "canceled"}
_OUTCOMES = {"success": "success", "failed": "failure", "canceled": "abandoned"}


def pipeline_usage(
    pipeline: Mapping[str, Any],
    jobs: list[Mapping[str, Any]],
    path: str,
    options: GitLabOptions,
) -> list[Record]:
    """A finished pipeline (the single-pipeline answer) and its jobs, retried ones included →
    one usage per attempt.

    GitLab retries a pipeline in place: its failed jobs run again and it keeps its id. The
    attempts are the most runs of any one job; the last is the pipeline as it stands, with the
    id the `pipeline` webhook gives it (`ID`); each earlier attempt `k` is `ID/k`, at the start
    of its first job, with its outcome from the jobs that ran again after it (failed → failure,
    else canceled → abandoned, else success)."""
    final = map_event(
        {
            "object_kind": "pipeline",
            "object_attributes": pipeline,
            "user": pipeline.get("user"),
            "project": {"path_with_namespace": path},
        },
        options,
    ).records
    if not final:
        return []
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for job in sorted(jobs, key=lambda j: (str(iso(j.get("created_at")) or ""), j.get("id", 0))):
        by_name.setdefault(str(job.get("name")), []).append(job)
    attempts = max((len(runs) for runs in by_name.values()), default=1)
    pid = str(pipeline["id"])
    records: list[Record] = []
    for k in range(1, attempts):
        ran = [runs[k - 1] for runs in by_name.values() if len(runs) > k]
        statuses = Counter(str(j.get("status")) for j in ran)
        outcome = (
            "failure" if statuses["failed"] else "abandoned" if statuses["canceled"] else "success"
        )
        firsts = [iso(j.get("started_at") or j.get("created_at")) for j in ran]
        started = min((t for t in firsts if t), default=None) if k > 1 else None
        record = {
            **final[0],
            "id": f"{pid}/{k}",
            "ts": started or final[0]["ts"],
            "outcome": outcome,
            "run": pid,
            "attempt": k,
        }
        record.pop("duration_s", None)
        records.append(record)
    records.append({**final[0], "run": pid, "attempt": attempts})
    return records


def project_streams(
    client: HttpClient,
    project: Mapping[str, Any],
    options: GitLabOptions,
    settings: Settings,
    tiers: Mapping[str, str],
) -> list[tuple[Stream, tuple[str, ...]]]:
    """The streams of one project, in the order they are read, each with the fields a stored
    value keeps (see `_write`)."""
    pid, path = project["id"], str(project["path_with_namespace"])
    base = f"projects/{pid}"

    def by_update(**query: Any) -> Callable[[str | None], dict[str, Any]]:
        def params(cursor: str | None) -> dict[str, Any]:
            ordered = {"order_by": "updated_at", "sort": "asc", "per_page": 100, **query}
            return ordered | ({"updated_after": cursor} if cursor else {})

        return params

    def stream(name: str, where: str, map: Callable[[Any], list[Record]], **query: Any) -> Stream:
        return Stream(
            name=name,
            path=f"{base}/{where}",
            params=by_update(**query),
            map=map,
            paginator=NextPageHeader(),
            cursor_field="updated_at",
            newest_first=False,
        )

    envs = list(settings.production_environments)

    def pipeline(item: Mapping[str, Any]) -> list[Record]:
        if item.get("status") not in _FINISHED:
            return []  # read again once it is updated (finished)
        one = client.get(f"{base}/pipelines/{item['id']}", what=f"{path} pipeline {item['id']}")
        jobs: list[Any] = []
        job_stream = Stream(
            name=f"jobs of pipeline {item['id']}",
            path=f"{base}/pipelines/{item['id']}/jobs",
            params=lambda cursor: {"include_retried": "true", "per_page": 100},
            map=lambda job: [job],
            paginator=NextPageHeader(),
            cursor_field=None,
        )
        read_stream(client, job_stream, None, lambda items, state: jobs.extend(items))
        return pipeline_usage(one.data, jobs, path, options)

    return [
        (
            stream(
                "deployments",
                "deployments",
                lambda d: deployment_record(d, path, options, tiers, envs),
            ),
            (),
        ),
        (
            stream(
                "merge_requests",
                "merge_requests",
                lambda mr: merge_request_record(mr, path, options),
                state="merged",
            ),
            ("committed_at",),
        ),
        (stream("pipelines", "pipelines", pipeline), ()),
        (
            stream(
                "incidents",
                "issues",
                lambda i: issue_record(i, path, options),
                labels=options.incident_label,
                scope="all",
            ),
            (),
        ),
        (
            stream(
                "incident_issues",
                "issues",
                lambda i: issue_record(i, path, options),
                issue_type="incident",
                scope="all",
            ),
            (),
        ),
    ]
