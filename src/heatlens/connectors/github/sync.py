"""`heatlens sync github`: a repository's history from GitHub's REST API, then what is new.

Streams per repository (each with its own sync state, `github:<host>:<owner/name>:<stream>`):

- `workflow_runs` — `GET /repos/{r}/actions/runs?created=>=<cursor>`, newest first → one usage of
  `ci_capability` per completed run attempt, mapped as the `workflow_run` webhook is; earlier
  attempts of a re-run come from `…/runs/{id}/attempts/{n}`. A run not completed holds the cursor
  for `open_days`.
- `deployments` — `GET /repos/{r}/deployments`, newest first, with each one's statuses → a
  deployment once its latest status is final, mapped as the `deployment_status` webhook is. One
  without a final status holds the cursor for `open_days`, then is given up.
- `incidents` — `GET /repos/{r}/issues?labels=<incident_label>&state=all&sort=updated&
  direction=asc&since=<cursor>`, oldest update first → incidents, mapped as the `issues` webhook
  is (opened/closed, `root cause: <sha>`, severity labels); pull requests are left out.

- `pull_requests` — `GET /repos/{r}/pulls?state=closed&sort=updated&direction=desc`, newest update
  first → the merge commit's change with `pr_opened_at` and `merged_at`, mapped as the
  `pull_request` webhook is.

- `workflow_reruns` — the look-back: the runs created in the last `rerun_days` read again, every
  page, for re-runs of runs older than the runs' cursor (`_reruns`).
- with `teams`: the repository's teams and each team's members (`_teams`, `_members`).

Where deployments come from (the Deployments API, workflow runs or releases) is settled per
repository by `deploy_source`.

Then the deployments are compared with the ones before them (`shipped.py`): their commits become
changes and the deployments' `commits`.

The repository is looked up first, so a wrong name or a token that cannot see it is one clear
error before anything is read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from heatlens.connectors import ProgressFn, SyncResult, no_progress
from heatlens.connectors.github.mapping import RESULTS, GithubOptions, map_event, service_for
from heatlens.connectors.github.shipped import ship
from heatlens.connectors.http import (
    Clock,
    HttpClient,
    HttpError,
    RetryPolicy,
    Vendor,
    make_client,
)
from heatlens.connectors.streams import (
    Commit,
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

__all__ = ["GITHUB", "GithubSource", "github_client", "sync_github"]

DEFAULT_BASE_URL = "https://api.github.com"
Record = dict[str, Any]


def _is_rate_limit(response: httpx.Response) -> bool:
    if response.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in response.headers:
        return True
    try:
        message = str(response.json().get("message", ""))
    except (ValueError, AttributeError):
        return False
    return "rate limit" in message.lower()


def _explain(response: httpx.Response, what: str) -> str | None:
    try:
        message = str(response.json().get("message") or "").strip()
    except (ValueError, AttributeError):
        message = ""
    status = response.status_code
    said = f"{status} {message}".strip()
    if status == 401:
        return (
            f"GitHub rejected the token ({said}) while reading {what}: check --token or "
            "GITHUB_TOKEN — it may be mistyped, expired or revoked"
        )
    if status == 403:
        needs = response.headers.get("x-accepted-oauth-scopes") or response.headers.get(
            "x-accepted-github-permissions"
        )
        return (
            f"GitHub refused {what} ({said}): the token lacks a scope"
            + (f" — this needs {needs}" if needs else "")
            + "; give it `repo` (classic) or read access to Actions, Deployments, Contents, "
            "Issues, Pull requests and Metadata (fine-grained); see docs/connectors/github.md"
        )
    if status == 404:
        return (
            f"GitHub: {what}: not found (404) — check the name, or the token cannot see it "
            "(private repositories need the `repo` scope)"
        )
    return None


GITHUB = Vendor(
    name="GitHub",
    headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"},
    is_rate_limit=_is_rate_limit,
    explain=_explain,
    token_hint="--token or GITHUB_TOKEN",
)


def github_client(
    token: str | None,
    base_url: str = DEFAULT_BASE_URL,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Clock | None = None,
    retry: RetryPolicy | None = None,
) -> HttpClient:
    return make_client(base_url, token, GITHUB, transport=transport, clock=clock, retry=retry)


@dataclass(frozen=True)
class GithubSource:
    """What to read: repositories (`owner/name`), from which API, since when."""

    repos: tuple[str, ...]
    token: str | None = None
    base_url: str = DEFAULT_BASE_URL
    since: str | None = None  # ISO date: where a first sync starts (default: all history)
    open_days: int = 7  # a deployment with no final status holds the cursor this long
    rerun_days: int = 7  # runs created this many days back are read again for re-runs (0: never)
    # where deployments come from: the Deployments API (default), runs of these workflows (names
    # or file names), or published releases
    deploy_workflows: tuple[str, ...] = ()
    # None: releases where the setting `webhooks.github_release_deployments` says so
    deploy_releases: bool | None = None
    environment: str = "production"  # of deployments from workflows or releases
    teams: bool = False  # read the repositories' teams and record the owner of each service
    orgs: tuple[str, ...] = ()  # every repository of these organisations (not archived or forks)

    def __post_init__(self) -> None:
        if not self.repos and not self.orgs:
            raise ConfigError(
                "sync github needs --repo OWNER/NAME or --org ORG (repeat either for more)"
            )
        for repo in self.repos:
            if repo.count("/") != 1 or not all(repo.split("/")):
                raise ConfigError(f"--repo {repo!r}: expected OWNER/NAME, e.g. octocat/Hello-World")
        if self.deploy_workflows and self.deploy_releases:
            raise ConfigError(
                "deployments come from --deploy-workflow or from --deploy-releases, not both"
            )
        if self.rerun_days < 0:
            raise ConfigError(f"--rerun-days {self.rerun_days}: expected 0 or more days")
        check_since(self.since)


def state_name(source: GithubSource, repo: str, stream: str) -> str:
    host = urlsplit(source.base_url).netloc or source.base_url
    return f"github:{host}:{repo}:{stream}"


def sync_github(
    store: Store | WithStore,
    settings: Settings,
    source: GithubSource,
    *,
    progress: ProgressFn = no_progress,
    transport: httpx.BaseTransport | None = None,
    clock: Clock | None = None,
) -> SyncResult:
    """Read `source`'s repositories' streams into the store, each from where it was left.

    `store` is a Store, or a function that runs a function on the store (the server's writer):
    then the store is held only for each read of state and each page's write, never while
    GitHub is asked or a rate limit waited out, so other writers are not held up."""
    from heatlens.ingest import ingest_records

    with_store = holding(store)

    def state_of(name: str) -> dict[str, Any] | None:
        return with_store(lambda store: store.sync_state(name))

    result = SyncResult(source="sync:github")
    options = GithubOptions.of(settings)
    totals: dict[str, int] = {}

    def committer(name: str, repo: str) -> Commit:
        def commit(records: list[Record], new: dict[str, Any]) -> None:
            # the state commits with the records it covers, in one transaction
            ingested = with_store(
                lambda store: ingest_records(
                    store,
                    records,
                    settings,
                    source=f"sync:github:{repo}",
                    name=f"github {repo}",
                    sync_state={name: new},
                )
            )
            for kind, counts in ingested.counts.items():
                result.counts.setdefault(kind, WriteCounts()).add(counts)

        return commit

    with github_client(source.token, source.base_url, transport=transport, clock=clock) as client:
        now = datetime.fromtimestamp(client.clock.now(), UTC)
        repos = list(source.repos)
        for org in source.orgs:
            progress(f"listing the repositories of {org}", 0, None)
            repos += [r for r in org_repos(client, org) if r not in repos]
        for repo in repos:
            progress(f"{repo}: looking it up", 0, None)
            repository = _repository(with_store, client, source, repo)
            chosen = deploy_source(source, repository, settings)
            for stream in repo_streams(client, repo, repository, options, chosen, now):
                name = state_name(source, repo, stream.name)
                state = state_of(name)
                if state is None and source.since is not None:
                    state = {"cursor": source.since}

                commit = committer(name, repo)

                label = f"{repo}: {stream.name.replace('_', ' ')}"

                def shown(p: StreamProgress, label: str = label) -> None:
                    left = client.budget.describe()
                    budget = f", rate limit left {left}" if left else ""
                    what = "unchanged" if p.not_modified else f"{p.items:,} read"
                    progress(f"{label}: {what}{budget}", p.items, None)

                read = read_stream(client, stream, state, commit, on_page=shown)
                key = f"{stream.name} unchanged" if read.not_modified else stream.name
                totals[key] = totals.get(key, 0) + read.items
            if source.rerun_days > 0:
                name = state_name(source, repo, "workflow_reruns")
                progress(
                    f"{repo}: looking for re-runs of the last {source.rerun_days} days", 0, None
                )
                found = _reruns(client, repo, repository, options, chosen, now, state_of(name))
                if found(committer(name, repo)) and found.count:
                    totals["re-runs"] = totals.get("re-runs", 0) + found.count
            if source.teams:
                name = state_name(source, repo, "teams")
                progress(f"{repo}: reading teams and their members", 0, None)
                owners = _teams(client, repo, repository, options, state_of(name))
                result.warnings += owners.warnings
                if owners.state is not None:
                    committer(name, repo)(owners.records, owners.state)
                    totals["teams"] = totals.get("teams", 0) + owners.count
                    totals["team members"] = totals.get("team members", 0) + owners.members
            name = state_name(source, repo, "shipped")
            progress(f"{repo}: comparing deployments", 0, None)
            prefix = _deployment_prefix(chosen, repository, options)
            shipped = ship(with_store, client, repo, prefix, state_of(name), committer(name, repo))
            if shipped:
                totals["compared"] = totals.get("compared", 0) + shipped
        requests = client.requests
    result.summary = _summary(len(repos), totals, requests)
    return result


# what the summary counts, in the singular
_ONE = {
    "workflow runs": "workflow run",
    "deployments": "deployment",
    "releases": "release",
    "incidents": "incident",
    "pull requests": "pull request",
    "re-runs": "re-run",
    "teams": "team",
    "team members": "team member",
}


def _summary(repos: int, totals: Mapping[str, int], requests: int) -> str:
    """`1 repository read: 60 workflow runs, 12 deployments, …; unchanged: incidents; 11
    deployments compared with the one before (54 requests)`."""

    def counted(n: int, what: str) -> str:
        return f"{n:,} {_ONE.get(what, what) if n == 1 else what}"

    compared = totals.get("compared", 0)
    parts = [
        counted(n, k.replace("_", " "))
        for k, n in totals.items()
        if not k.endswith(" unchanged") and k != "compared"
    ]
    same = [
        k.removesuffix(" unchanged").replace("_", " ") for k in totals if k.endswith(" unchanged")
    ]
    return (
        f"{repos:,} repositor{'y' if repos == 1 else 'ies'} read: "
        + (", ".join(parts) if parts else "nothing new")
        + (f"; unchanged: {', '.join(same)}" if same else "")
        + (f"; {counted(compared, 'deployments')} compared with the one before" if compared else "")
        + f" ({requests:,} request{'' if requests == 1 else 's'})"
    )


def deploy_source(
    source: GithubSource, repository: Mapping[str, Any], settings: Settings
) -> GithubSource:
    """`source` with where this repository's deployments come from settled: the command's or
    entry's `--deploy-workflow` or `--deploy-releases`/`--no-deploy-releases` first; else releases
    when `webhooks.github_release_deployments` is true or names the repository; else the
    Deployments API."""
    if source.deploy_workflows:
        return replace(source, deploy_releases=False)
    if source.deploy_releases is not None:
        return source
    setting = settings.webhooks_github_release_deployments
    names = {str(repository.get("full_name") or ""), str(repository.get("name") or "")}
    chosen = setting if isinstance(setting, bool) else bool(names & set(setting))
    return replace(source, deploy_releases=chosen)


def _deployment_prefix(
    source: GithubSource, repository: Mapping[str, Any], options: GithubOptions
) -> str:
    """How the ids of this sync's deployments of a repository begin."""
    if source.deploy_releases:
        return f"{service_for(repository, options)}@"
    kind = "actions/runs" if source.deploy_workflows else "deployments"
    return f"{repository.get('full_name')}/{kind}/"


def _time(text: Any) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _repository(with_store: WithStore, client: HttpClient, source: GithubSource, repo: str) -> Any:
    """The repository (checks that it exists and the token sees it), asked conditionally: an
    unchanged one costs no rate limit."""
    name = state_name(source, repo, "repository")
    known = with_store(lambda store: store.sync_state(name)) or {}
    page = client.get(f"repos/{repo}", etag=known.get("etag"), what=f"repository {repo}")
    if page.not_modified:
        return known["repository"]
    kept = {k: page.data.get(k) for k in ("id", "full_name", "name", "default_branch")}
    with_store(lambda store: store.save_sync_state(name, {"etag": page.etag, "repository": kept}))
    return kept


def repo_streams(
    client: HttpClient,
    repo: str,
    repository: Mapping[str, Any],
    options: GithubOptions,
    source: GithubSource,
    now: datetime,
) -> list[Stream]:
    """The streams of one repository, in the order they are read."""
    give_up_before = now - timedelta(days=source.open_days)
    if source.deploy_releases:
        deploys = _releases(client, repo, repository, options, source.environment)
    elif not source.deploy_workflows:
        deploys = _deployments(client, repo, repository, options, give_up_before)
    return [
        _workflow_runs(client, repo, repository, options, source, give_up_before),
        *([deploys] if not source.deploy_workflows else []),
        _incidents(repo, repository, options),
        _pull_requests(repo, repository, options),
    ]


def deploys_by_workflow(run: Mapping[str, Any], workflows: tuple[str, ...]) -> bool:
    """Is `run` one of the deploy workflows (by name, path, or the path's file name)?"""
    path = str(run.get("path") or "")
    names = {str(run.get("name") or ""), path, path.rsplit("/", 1)[-1]}
    return any(w in names for w in workflows)


def workflow_deployment(
    run: Mapping[str, Any], repository: Mapping[str, Any], options: GithubOptions, env: str
) -> list[Record]:
    """A completed run of a deploy workflow → a deployment per attempt (a cancelled or skipped one
    deployed nothing)."""
    result = {"success": "success", "failure": "failure", "timed_out": "failure"}.get(
        str(run.get("conclusion"))
    )
    if result is None:
        return []
    attempt = int(run.get("run_attempt") or 1)
    record = {
        "type": "deployment",
        "id": f"{repository.get('full_name')}/actions/runs/{run['id']}/{attempt}",
        "service": service_for(run.get("repository") or repository, options),
        "environment": env,
        "result": result,
        "started_at": run.get("run_started_at") or run.get("created_at"),
        "finished_at": run.get("updated_at"),
        "commit_sha": run.get("head_sha"),
    }
    return [{k: v for k, v in record.items() if v is not None}]


def _workflow_runs(
    client: HttpClient,
    repo: str,
    repository: Mapping[str, Any],
    options: GithubOptions,
    source: GithubSource,
    give_up_before: datetime,
) -> Stream:
    usage = _run_records(client, repo, repository, options, source)

    def params(cursor: str | None) -> dict[str, Any]:
        return {"per_page": 100, **({"created": f">={cursor}"} if cursor else {})}

    return Stream(
        name="workflow_runs",
        path=f"repos/{repo}/actions/runs",
        items_key="workflow_runs",
        params=params,
        map=usage,
        # a run waiting for approval may wait for weeks: it holds the cursor `open_days` at most
        is_open=lambda run: (
            run.get("status") != "completed" and _time(run["created_at"]) >= give_up_before
        ),
    )


def _run_records(
    client: HttpClient,
    repo: str,
    repository: Mapping[str, Any],
    options: GithubOptions,
    source: GithubSource,
) -> Callable[[Mapping[str, Any]], list[Record]]:
    """A run → its records: one usage (and deployment, of a deploy workflow) per attempt once it
    completed; earlier attempts are asked for."""

    def usage(run: Mapping[str, Any]) -> list[Record]:
        if run.get("status") != "completed":
            return []
        runs = [run]
        for n in range(1, int(run.get("run_attempt") or 1)):
            path = f"repos/{repo}/actions/runs/{run['id']}/attempts/{n}"
            runs.append(client.get(path, what=f"{repo} run {run['id']} attempt {n}").data)
        records: list[Record] = []
        for one in runs:
            payload = {"action": "completed", "workflow_run": one, "repository": repository}
            records += map_event("workflow_run", payload, options).records
            if source.deploy_workflows and deploys_by_workflow(one, source.deploy_workflows):
                records += workflow_deployment(one, repository, options, source.environment)
        return records

    return usage


@dataclass
class _Reruns:
    """The look-back for re-runs of one repository: called with the committer, reads it."""

    client: HttpClient
    stream: Stream
    state: dict[str, Any]
    started: str
    count: int = 0

    def __call__(self, commit: Commit) -> bool:
        """Read; False when the runs were unchanged (304)."""
        pages = 0 if not self.state.get("resume") else 1
        checked = self.state.get("checked")

        def with_pass(records: list[Record], new: dict[str, Any]) -> None:
            nonlocal pages
            pages += 1
            if new.get("resume"):  # half-way: the pass's start is kept to resume it
                commit(records, {**new, "checked": checked, "pass": self.started})
            else:  # a one-page window keeps its ETag: an unchanged poll costs nothing
                etag = new.get("etag") if pages == 1 else None
                commit(records, {**new, "etag": etag, "checked": self.started})

        return not read_stream(self.client, self.stream, self.state, with_pass).not_modified


def _reruns(
    client: HttpClient,
    repo: str,
    repository: Mapping[str, Any],
    options: GithubOptions,
    source: GithubSource,
    now: datetime,
    state: Mapping[str, Any] | None,
) -> _Reruns:
    """Runs are listed by creation: a re-run of a run created before the runs' cursor is seen
    only by reading again the runs created in the last `rerun_days` (`created=>=DATE`), every
    page. A run on its second attempt or later, updated since the last such pass began (less
    five minutes for the clocks' difference), is mapped again: its new attempts are stored,
    the others replace themselves (ids `RUN/ATTEMPT`)."""
    state = dict(state or {})
    window = (now - timedelta(days=source.rerun_days)).date().isoformat()
    started = state.get("pass") or (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    checked = state.get("checked")
    usage = _run_records(client, repo, repository, options, source)

    def rerun(run: Mapping[str, Any]) -> list[Record]:
        if int(run.get("run_attempt") or 1) < 2 or run.get("status") != "completed":
            return []
        if checked is not None and str(run.get("updated_at") or "") < checked:
            return []
        found.count += 1
        return usage(run)

    stream = Stream(
        name="workflow_reruns",
        path=f"repos/{repo}/actions/runs",
        items_key="workflow_runs",
        params=lambda cursor: {"per_page": 100, "created": f">={window}"},
        map=rerun,
        cursor_field=None,
    )
    found = _Reruns(client, stream, state, started)
    return found


def _deployments(
    client: HttpClient,
    repo: str,
    repository: Mapping[str, Any],
    options: GithubOptions,
    give_up_before: datetime,
) -> Stream:
    final: dict[Any, bool] = {}

    def deployment(dep: Mapping[str, Any]) -> list[Record]:
        statuses = client.get(
            f"repos/{repo}/deployments/{dep['id']}/statuses",
            {"per_page": 100},
            what=f"{repo} deployment {dep['id']} statuses",
        ).data
        # newest first: the latest final status decides
        status = next((s for s in statuses if s.get("state") in RESULTS), None)
        final[dep["id"]] = status is not None and statuses[0] is status
        if status is None:
            return []
        payload = {"deployment_status": status, "deployment": dep, "repository": repository}
        return map_event("deployment_status", payload, options).records

    def still_open(dep: Mapping[str, Any]) -> bool:
        return not final.get(dep["id"], False) and _time(dep["created_at"]) >= give_up_before

    return Stream(
        name="deployments",
        path=f"repos/{repo}/deployments",
        params=lambda cursor: {"per_page": 100},
        map=deployment,
        is_open=still_open,
    )


def _incidents(repo: str, repository: Mapping[str, Any], options: GithubOptions) -> Stream:
    """Issues labelled `incident_label`, by last update, oldest first (`since` = the cursor)."""

    def incident(issue: Mapping[str, Any]) -> list[Record]:
        if "pull_request" in issue:  # the issues API lists pull requests too
            return []
        payload = {"action": "edited", "issue": issue, "repository": repository}
        return map_event("issues", payload, options).records

    def params(cursor: str | None) -> dict[str, Any]:
        query: dict[str, Any] = {"state": "all", "labels": options.incident_label}
        query["sort"] = "updated"
        query |= {"direction": "asc", "per_page": 100}
        return query | ({"since": cursor} if cursor else {})

    return Stream(
        name="incidents",
        path=f"repos/{repo}/issues",
        params=params,
        map=incident,
        cursor_field="updated_at",
        newest_first=False,
    )


def _pull_requests(repo: str, repository: Mapping[str, Any], options: GithubOptions) -> Stream:
    """Closed pull requests, last updated first: a merged one gives its merge commit's change with
    the PR's open and merge times (the shipped commit of a squash or merge)."""

    def merged(pr: Mapping[str, Any]) -> list[Record]:
        # the list endpoint has no `merged`: merged_at says it
        full = {**pr, "merged": pr.get("merged_at") is not None}
        payload = {"action": "closed", "pull_request": full, "repository": repository}
        return map_event("pull_request", payload, options).records

    return Stream(
        name="pull_requests",
        path=f"repos/{repo}/pulls",
        params=lambda cursor: {
            "state": "closed",
            "sort": "updated",
            "direction": "desc",
            "per_page": 100,
        },
        map=merged,
        cursor_field="updated_at",
    )


def _releases(
    client: HttpClient,
    repo: str,
    repository: Mapping[str, Any],
    options: GithubOptions,
    environment: str,
) -> Stream:
    """Published releases, newest first → deployments, mapped as the `release` webhook is (drafts
    and pre-releases are none); the tag's commit is asked when the release names a branch."""
    as_deployments = replace(options, release_deployments=True, release_environment=environment)

    def deployment(release: Mapping[str, Any]) -> list[Record]:
        payload = {"action": "published", "release": release, "repository": repository}
        records = map_event("release", payload, as_deployments).records
        for record in records:
            if "commit_sha" not in record:
                tag = release["tag_name"]
                found = client.get(f"repos/{repo}/commits/{tag}", what=f"{repo} tag {tag}")
                record["commit_sha"] = found.data["sha"]
        return records

    return Stream(
        name="releases",
        path=f"repos/{repo}/releases",
        params=lambda cursor: {"per_page": 100},
        map=deployment,
        cursor_field="created_at",
    )


# a team's permission on a repository, strongest first: the strongest team owns the service
PERMISSIONS = ("admin", "maintain", "push", "triage", "pull")


@dataclass
class _Owners:
    records: list[Record]
    state: dict[str, Any] | None  # None: nothing changed since the last sync (304s)
    count: int = 0  # teams read
    members: int = 0  # memberships read
    warnings: list[str] = field(default_factory=list)


READ_ORG = (
    "the token needs `read:org` (classic) or the organization's Members read permission "
    "(fine-grained)"
)


def _teams(
    client: HttpClient,
    repo: str,
    repository: Mapping[str, Any],
    options: GithubOptions,
    state: Mapping[str, Any] | None,
) -> _Owners:
    """The repository's teams → teams, and its service owned by the team with the strongest
    permission (ties: the first listed); then each team's members → memberships. A token that
    may not read teams or members gets a warning."""
    teams: list[Any] = []
    last: dict[str, Any] = {}

    def keep(items: list[Record], new: dict[str, Any]) -> None:
        teams.extend(items)
        last.clear()
        last.update(new)

    stream = Stream(
        name="teams",
        path=f"repos/{repo}/teams",
        params=lambda cursor: {"per_page": 100},
        map=lambda team: [team],
        cursor_field=None,
    )
    # the list is read whole (ownership needs every team): never resumed half-way
    state = state or {}
    fresh = {k: v for k, v in state.items() if k in ("etag", "cursor")}
    try:
        read = read_stream(client, stream, fresh, keep)
    except HttpError as exc:
        if exc.status not in (403, 404):
            raise
        warning = (
            f"{repo}: teams not read (GitHub answered {exc.status}): {READ_ORG}; owners unchanged"
        )
        return _Owners([], None, warnings=[warning])
    records: list[Record] = []
    if read.not_modified:
        slugs = list(state.get("slugs") or [])
        new_state: dict[str, Any] = dict(state)
    else:
        slugs = [str(t["slug"]) for t in teams]
        new_state = {**last, "resume": None, "slugs": slugs}
        records += _team_records(teams, repository, options)
    owner = str(repository.get("full_name") or repo).split("/")[0]
    members = _members(client, repo, owner, slugs, state.get("members") or {})
    new_state["members"] = members.state
    if read.not_modified and members.state == (state.get("members") or {}):
        return _Owners([], None, warnings=members.warnings)
    return _Owners(
        records + members.records,
        new_state,
        count=len(teams),
        members=len(members.records),
        warnings=members.warnings,
    )


def _team_records(
    teams: list[Any], repository: Mapping[str, Any], options: GithubOptions
) -> list[Record]:
    records: list[Record] = []
    for team in teams:
        parent = (team.get("parent") or {}).get("slug")
        record = {"type": "team", "id": team["slug"], "name": team.get("name"), "parent": parent}
        records.append({k: v for k, v in record.items() if v is not None})
    ranked = sorted(
        (t for t in teams if t.get("permission") in PERMISSIONS),
        key=lambda t: PERMISSIONS.index(t["permission"]),
    )
    if ranked:
        service = service_for(repository, options)
        owner = ranked[0]["slug"]
        full = repository.get("full_name")
        records.append({"type": "service", "id": service, "team": owner, "repo": full})
    return records


@dataclass
class _Members:
    records: list[Record]
    state: dict[str, Any]  # team slug → [first page key, ETag] of its one-page list, or None
    warnings: list[str]


def _members(
    client: HttpClient, repo: str, org: str, slugs: list[str], known: Mapping[str, Any]
) -> _Members:
    """`GET /orgs/{org}/teams/{slug}/members` of each team → memberships (actor = login), asked
    conditionally: an unchanged list costs no rate limit. A refusal (403/404: the token may not
    read members) stops with a warning."""
    records: list[Record] = []
    state: dict[str, Any] = {}
    for slug in slugs:
        found: list[Any] = []
        last: dict[str, Any] = {}

        def keep(
            items: list[Any], new: dict[str, Any], found: list[Any] = found, last: Any = last
        ) -> None:
            found.extend(items)
            last.update(new)

        stream = Stream(
            name=f"members of team {slug}",
            path=f"orgs/{org}/teams/{slug}/members",
            params=lambda cursor: {"per_page": 100},
            map=lambda member: [member],
            cursor_field=None,
        )
        etag = known.get(slug)
        try:
            read = read_stream(client, stream, {"etag": etag} if etag else None, keep)
        except HttpError as exc:
            if exc.status not in (403, 404):
                raise
            warning = (
                f"{repo}: members of team {slug} not read (GitHub answered {exc.status}): "
                f"{READ_ORG}; memberships unchanged"
            )
            return _Members(records, {**known, **state}, [warning])
        if read.not_modified:
            state[slug] = etag
            continue
        # a list of several pages may change past its first: asked in full every time
        state[slug] = last.get("etag") if read.pages == 1 else None
        for member in found:
            records.append({"type": "membership", "actor": member["login"], "team": slug})
    return _Members(records, state, [])


def org_repos(client: HttpClient, org: str) -> list[str]:
    """The full names of an organisation's repositories, archived ones and forks left out."""
    found: list[Any] = []
    stream = Stream(
        name=f"repositories of organization {org}",
        path=f"orgs/{org}/repos",
        params=lambda cursor: {"type": "all", "per_page": 100},
        map=lambda repo: [repo],
        cursor_field=None,
    )
    read_stream(client, stream, None, lambda items, state: found.extend(items))
    return [str(r["full_name"]) for r in found if not r.get("archived") and not r.get("fork")]
