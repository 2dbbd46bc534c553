"""GitHub webhook payloads → canonical records (pure: no I/O).

One event (the `X-GitHub-Event` header) and its JSON payload give a few records, or none with the
reason why (the webhook answers 202 and counts it):

- `push` → one change per commit (its sha, timestamp, author, first line of its message);
- `pull_request` `closed` with `merged: true` → the change of `merge_commit_sha` with its PR times
  (a closed PR that was not merged still carries a `merge_commit_sha`: the test merge, no change);
- `deployment_status` (with its `deployment`) → a deployment once the status is final;
- `workflow_run` `completed` → a usage of the CI capability, one per run attempt;
- `issues` carrying the incident label → an incident;
- `release` `published` → a deployment, only when the options ask for it.

Records are partial where the payload knows only part of the story (a PR's change has no author,
an open incident no `resolved_at`): DESIGN §3's vendor merge rules combine them by id, later
non-null fields winning. Which commits a deployment shipped needs the stored pushes, so it is left
to the writer (heatlens.ingest.partial.ship_commits); the mapping gives only `commit_sha`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from heatlens.settings import Settings

Payload = Mapping[str, Any]
Record = dict[str, Any]

# workflow_run `conclusion` → usage outcome (OpenTelemetry's split: error = the platform failed)
OUTCOMES = {
    "success": "success",
    "failure": "failure",
    "startup_failure": "error",
    "timed_out": "error",
    "cancelled": "abandoned",
}
# deployment_status `state` → deployment result; other states are not final
RESULTS = {"success": "success", "failure": "failure", "error": "failure"}
KINDS = ("planned", "hotfix", "rollback")
SHA = re.compile(r"[0-9a-f]{40}")
ROOT_CAUSE = re.compile(r"root[ _-]?cause\s*:\s*([0-9a-f]{7,40})\b", re.IGNORECASE)
SEVERITY_LEVEL = re.compile(r"(?:sev|p)-?\d", re.IGNORECASE)


@dataclass(frozen=True)
class GithubOptions:
    """What the mapping needs from settings (names as DESIGN §5's settings)."""

    ci_capability: str = "ci"
    incident_label: str = "incident"
    # repository (`owner/name`, or just `name`) → service id; unmapped: the repository's name
    service_map: Mapping[str, str] = field(default_factory=dict)
    # a label `<prefix><value>` gives severity `value`; `sev1`, `sev-2`, `P1` are severities as-is
    severity_prefixes: tuple[str, ...] = ("severity:", "severity/", "severity-", "sev:")
    # `release` `published` → deployment: True for every repository, or the repositories
    # (`owner/name` or `name`) whose releases are deployments; off: deployments come from
    # deployment events (setting `webhooks.github_release_deployments`)
    release_deployments: bool | tuple[str, ...] = False
    release_environment: str = "production"

    @classmethod
    def of(cls, settings: Settings) -> GithubOptions:
        """The options the settings give (webhooks and the sync alike)."""
        releases = settings.webhooks_github_release_deployments
        return cls(
            ci_capability=settings.ci_capability,
            incident_label=settings.incident_label,
            service_map=settings.service_map,
            release_deployments=releases if isinstance(releases, bool) else tuple(releases),
        )


@dataclass(frozen=True)
class Mapped:
    """The records of one event, or none and why."""

    records: list[Record]
    reason: str | None = None


def map_event(event: str, payload: Payload, options: GithubOptions) -> Mapped:
    """The canonical records of one webhook delivery: `event` is its `X-GitHub-Event` header."""
    mapper = _MAPPERS.get(event)
    if mapper is None:
        return Mapped([], f"event {event!r} is not mapped")
    return mapper(payload, options)


def service_for(repository: Payload, options: GithubOptions) -> str:
    """The service a repository deploys: `service_map` by full name, then by name, else its name."""
    full_name, name = str(repository.get("full_name") or ""), str(repository.get("name") or "")
    return options.service_map.get(full_name) or options.service_map.get(name) or name


def timestamp(value: Any) -> str | None:
    """An ISO 8601 timestamp as GitHub sent it; a Unix epoch (push's `repository.pushed_at`) →
    ISO 8601 UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
    return str(value)


def _push(payload: Payload, options: GithubOptions) -> Mapped:
    if payload.get("deleted"):
        return Mapped([], "push deletes a ref")
    commits = payload.get("commits") or []
    if not commits:
        return Mapped([], "push has no commits")
    repository = payload["repository"]
    service, repo = service_for(repository, options), repository.get("full_name")
    records = []
    for commit in commits:
        author = commit.get("author") or {}
        records.append(
            _compact(
                {
                    "type": "change",
                    "id": commit["id"],
                    "committed_at": timestamp(commit.get("timestamp")),
                    "author": author.get("username") or author.get("name"),
                    "title": (commit.get("message") or "").split("\n", 1)[0].strip(),
                    "service": service,
                    "repo": repo,
                }
            )
        )
    return Mapped(records)


def _pull_request(payload: Payload, options: GithubOptions) -> Mapped:
    pr = payload["pull_request"]
    if payload.get("action") != "closed":
        return Mapped([], f"pull_request {payload.get('action')!r} is not a merge")
    # a closed, unmerged PR still has a merge_commit_sha (GitHub's test merge): trust `merged`
    if not pr.get("merged") or not pr.get("merged_at") or not pr.get("merge_commit_sha"):
        return Mapped([], "pull_request closed without merging")
    repository = (pr.get("base") or {}).get("repo") or payload["repository"]
    merged_at = timestamp(pr["merged_at"])
    return Mapped(
        [
            _compact(
                {
                    "type": "change",
                    "id": pr["merge_commit_sha"],
                    # GitHub writes the merge (or squash, or last rebased) commit when it merges
                    "committed_at": merged_at,
                    "pr_opened_at": timestamp(pr.get("created_at")),
                    "merged_at": merged_at,
                    "service": service_for(repository, options),
                    "repo": repository.get("full_name"),
                }
            )
        ]
    )


def _deployment_status(payload: Payload, options: GithubOptions) -> Mapped:
    status, deployment = payload["deployment_status"], payload["deployment"]
    state = status.get("state")
    result = RESULTS.get(state)
    if result is None:
        return Mapped([], f"deployment_status {state!r} is not final")
    repository = payload["repository"]
    return Mapped(
        [
            _compact(
                {
                    "type": "deployment",
                    "id": f"{repository['full_name']}/deployments/{deployment['id']}",
                    "service": service_for(repository, options),
                    "environment": status.get("environment") or deployment.get("environment"),
                    "result": result,
                    "started_at": timestamp(deployment.get("created_at")),
                    "finished_at": timestamp(status.get("updated_at") or status.get("created_at")),
                    "commit_sha": deployment.get("sha"),
                    "kind": _deployment_kind(deployment),
                }
            )
        ]
    )


def _deployment_kind(deployment: Payload) -> str | None:
    """`kind` only when the deployment says so: its payload's `kind`, or a task naming it
    (`deploy:rollback`, `hotfix`)."""
    extra = deployment.get("payload")
    if isinstance(extra, str):  # the REST API accepts the payload as a JSON string
        try:
            extra = json.loads(extra)
        except ValueError:
            extra = None
    if isinstance(extra, Mapping) and str(extra.get("kind", "")).lower() in KINDS:
        return str(extra["kind"]).lower()
    task = str(deployment.get("task") or "").lower()
    return next((kind for kind in ("rollback", "hotfix") if kind in task), None)


def _deployment(payload: Payload, options: GithubOptions) -> Mapped:
    return Mapped([], "a deployment is mapped when its deployment_status is final")


def _workflow_run(payload: Payload, options: GithubOptions) -> Mapped:
    if payload.get("action") != "completed":
        return Mapped([], f"workflow_run {payload.get('action')!r} is not completed")
    run = payload["workflow_run"]
    started = timestamp(run.get("run_started_at") or run.get("created_at"))
    # workflow_run has no completed_at: a completed run was last updated when it finished
    finished = timestamp(run.get("updated_at"))
    actor = run.get("triggering_actor") or run.get("actor") or {}
    attempt = int(run.get("run_attempt") or 1)
    return Mapped(
        [
            _compact(
                {
                    "type": "usage",
                    "id": f"{run['id']}/{attempt}",
                    "ts": started,
                    "capability": options.ci_capability,
                    "actor": actor.get("login"),
                    "service": service_for(run.get("repository") or payload["repository"], options),
                    "outcome": OUTCOMES.get(run.get("conclusion") or ""),
                    "duration_s": _seconds(started, finished),
                    "run": str(run["id"]),
                    "attempt": attempt,
                    "attributes": _compact(
                        {
                            "workflow": run.get("name") or run.get("path"),
                            "event": run.get("event"),
                            "conclusion": run.get("conclusion"),
                            "head_sha": run.get("head_sha"),
                        }
                    ),
                }
            )
        ]
    )


def _issues(payload: Payload, options: GithubOptions) -> Mapped:
    issue = payload["issue"]
    labels = [str(label.get("name") or "") for label in issue.get("labels") or []]
    if options.incident_label.lower() not in (label.lower() for label in labels):
        return Mapped([], f"issue has no {options.incident_label!r} label")
    repository = payload["repository"]
    root_cause = ROOT_CAUSE.search(issue.get("body") or "")
    closed = issue.get("state") == "closed"
    return Mapped(
        [
            _compact(
                {
                    "type": "incident",
                    "id": f"{repository['full_name']}#{issue['number']}",
                    "opened_at": timestamp(issue.get("created_at")),
                    # a reopened issue keeps its old closed_at; the merge never clears resolved_at
                    "resolved_at": timestamp(issue.get("closed_at")) if closed else None,
                    "service": service_for(repository, options),
                    "severity": _severity(labels, options),
                    "root_cause_sha": root_cause.group(1).lower() if root_cause else None,
                }
            )
        ]
    )


def _severity(labels: list[str], options: GithubOptions) -> str | None:
    for label in labels:
        for prefix in options.severity_prefixes:
            if label.lower().startswith(prefix) and label[len(prefix) :].strip():
                return label[len(prefix) :].strip()
        if SEVERITY_LEVEL.fullmatch(label):
            return label
    return None


def _release(payload: Payload, options: GithubOptions) -> Mapped:
    if payload.get("action") != "published":
        return Mapped([], f"release {payload.get('action')!r} is not a publication")
    repository = payload["repository"]
    if not _releases_deploy(repository, options.release_deployments):
        return Mapped(
            [],
            f"releases of {repository.get('full_name')} are not deployments here "
            "(setting webhooks.github_release_deployments)",
        )
    release = payload["release"]
    if release.get("draft") or release.get("prerelease"):
        return Mapped([], "a draft or pre-release is no deployment")
    service = service_for(repository, options)
    target = str(release.get("target_commitish") or "")
    return Mapped(
        [
            _compact(
                {
                    "type": "deployment",
                    # the git connector's id for a tag: a release and its tag are one deployment
                    "id": f"{service}@{release['tag_name']}",
                    "service": service,
                    "environment": options.release_environment,
                    "finished_at": timestamp(release.get("published_at")),
                    # target_commitish is usually a branch: a sha only when it is one
                    "commit_sha": target if SHA.fullmatch(target) else None,
                }
            )
        ]
    )


def _releases_deploy(repository: Payload, setting: bool | tuple[str, ...]) -> bool:
    if isinstance(setting, bool):
        return setting
    names = {str(repository.get("full_name") or ""), str(repository.get("name") or "")}
    return bool(names & set(setting))


def _seconds(start: str | None, end: str | None) -> float | None:
    if start is None or end is None:
        return None
    delta = _parse(end) - _parse(start)
    return max(delta.total_seconds(), 0.0)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _compact(record: Record) -> Record:
    """Leave out what the payload did not say, so a merge never overwrites a known value with
    nothing."""
    return {k: v for k, v in record.items() if v is not None and v != ""}


_MAPPERS: dict[str, Callable[[Payload, GithubOptions], Mapped]] = {
    "push": _push,
    "pull_request": _pull_request,
    "deployment": _deployment,
    "deployment_status": _deployment_status,
    "workflow_run": _workflow_run,
    "issues": _issues,
    "release": _release,
}
