"""GitLab webhook payloads → canonical records (pure: no I/O).

One function per `object_kind`: `push` → changes, `merge_request` merged → the merge commit's
pull-request times, `pipeline` finished → usage of the CI capability, `deployment` finished →
deployment, `issue` labelled as an incident (or of GitLab's incident type) → incident. Records
follow DESIGN §3's vendor merge rules: each carries only what this event knows, and the caller
merges it into the stored record by id.

GitLab writes timestamps in several formats, sometimes within one payload (`2021-04-28 21:50:00
+0200`, `2016-08-12 15:23:28 UTC`, `2013-12-03T17:15:43Z`, `2012-01-03T23:36:29+02:00`): every one
goes through `parse_time`, and records carry UTC ISO 8601.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from heatlens.settings import Settings

Record = dict[str, Any]

# pipeline status → usage outcome; statuses not listed (running, pending, created, manual,
# skipped, …) are not a finished run
_PIPELINE_OUTCOMES = {"success": "success", "failed": "failure", "canceled": "abandoned"}
# deployment status → deployment result; running, created and canceled deployments shipped nothing
_DEPLOYMENT_RESULTS = {"success": "success", "failed": "failure"}
# "2021-04-28 21:50:00 +0200", "2016-08-12 15:23:28 UTC": a space before the zone
_SPACED_ZONE = re.compile(r"^(\S+)[ T](\S+?) ?(UTC|Z|[+-]\d{2}:?\d{2})$")
_FULL_SHA = re.compile(r"/commit/([0-9a-f]{40})(?:[/?#]|$)")
_SEVERITY_LEVEL = re.compile(r"(?:sev|p|s)-?\d", re.IGNORECASE)


@dataclass(frozen=True)
class GitLabOptions:
    """What the mapping needs from the settings (DESIGN §5 names)."""

    ci_capability: str = "ci"
    incident_label: str = "incident"
    # repository (`group/project`, or just `project`) → service id; unmapped: the project's path
    service_map: Mapping[str, str] = field(default_factory=dict)
    # a label `<prefix><value>` gives severity `value` (GitLab's scoped `severity::1` too);
    # `sev1`, `S2`, `P1` are severities as-is; else an incident's own GitLab severity
    severity_prefixes: tuple[str, ...] = (
        "severity::",
        "severity:",
        "severity/",
        "severity-",
        "sev:",
    )

    @classmethod
    def of(cls, settings: Settings) -> GitLabOptions:
        """The options the settings give (webhooks and the sync alike)."""
        return cls(
            ci_capability=settings.ci_capability,
            incident_label=settings.incident_label,
            service_map=settings.service_map,
        )


@dataclass(frozen=True)
class Mapped:
    """The records one event maps to; when there are none, `reason` says why."""

    records: list[Record]
    reason: str | None = None


def parse_time(value: Any) -> datetime | None:
    """A GitLab timestamp in any of its formats, as an aware datetime; None when absent.

    A timestamp without a zone is refused: GitLab always sends one, so a bare one is a payload
    heatlens does not understand, not a local time to guess.
    """
    if value is None or value == "":
        return None
    text = str(value).strip()
    m = _SPACED_ZONE.match(text)
    if m:
        date, clock, zone = m.groups()
        if zone in ("UTC", "Z"):
            zone = "+00:00"
        elif ":" not in zone:
            zone = f"{zone[:3]}:{zone[3:]}"
        text = f"{date}T{clock}{zone}"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"GitLab timestamp without a time zone: {value!r}")
    return parsed


def iso(value: Any) -> str | None:
    """A GitLab timestamp as UTC ISO 8601, or None."""
    parsed = parse_time(value)
    return parsed.astimezone(UTC).isoformat() if parsed else None


def map_event(payload: Mapping[str, Any], options: GitLabOptions | None = None) -> Mapped:
    """The records one GitLab webhook payload maps to (its `object_kind` says which event)."""
    options = options or GitLabOptions()
    kind = payload.get("object_kind")
    handler = _HANDLERS.get(str(kind))
    if handler is None:
        return Mapped([], f"GitLab event {kind!r} is not mapped")
    return handler(payload, options)


def _repo(payload: Mapping[str, Any]) -> str | None:
    project = payload.get("project") or {}
    return project.get("path_with_namespace")


def _service(repo: str | None, options: GitLabOptions) -> str | None:
    """The service a repository deploys: `service_map` by full path, then by the project's
    path, else the project's path (as the GitHub mapping does with a repository's name)."""
    if repo is None:
        return None
    name = repo.rsplit("/", 1)[-1]
    return options.service_map.get(repo) or options.service_map.get(name) or name


def _compact(record: Record) -> Record:
    """Leave out what the event does not know, so merging keeps the stored value."""
    return {k: v for k, v in record.items() if v is not None and v != ""}


def _push(payload: Mapping[str, Any], options: GitLabOptions) -> Mapped:
    repo = _repo(payload)
    records = [
        _compact(
            {
                "type": "change",
                "id": c["id"],
                "committed_at": iso(c.get("timestamp")),
                "author": (c.get("author") or {}).get("name") or None,
                "title": _first_line(c.get("message")) or c.get("title") or None,
                "service": _service(repo, options),
                "repo": repo,
            }
        )
        for c in payload.get("commits") or []
        if c.get("id") and c.get("timestamp")
    ]
    if not records:
        return Mapped([], "push without commits (a branch deleted or created at a known commit)")
    return Mapped(records)


def _first_line(message: str | None) -> str:
    return message.strip().splitlines()[0].strip() if message and message.strip() else ""


def _merge_request(payload: Mapping[str, Any], options: GitLabOptions) -> Mapped:
    attrs = payload.get("object_attributes") or {}
    if attrs.get("action") != "merge":
        return Mapped([], f"merge request action {attrs.get('action')!r} is not a merge")
    sha = attrs.get("merge_commit_sha") or attrs.get("squash_commit_sha")
    if not sha:
        return Mapped([], "merged merge request without a merge commit (fast-forward)")
    # GitLab's merge event has no merged_at; the merge is its last update
    merged_at = iso(attrs.get("merged_at") or attrs.get("updated_at"))
    repo = (attrs.get("target") or {}).get("path_with_namespace") or _repo(payload)
    record = {
        "type": "change",
        "id": sha,
        # the merge commit is made by the merge; its push (a later event) brings the exact time
        "committed_at": merged_at,
        "pr_opened_at": iso(attrs.get("created_at")),
        "merged_at": merged_at,
        "service": _service(repo, options),
        "repo": repo,
    }
    return Mapped([_compact(record)])


def _pipeline(payload: Mapping[str, Any], options: GitLabOptions) -> Mapped:
    attrs = payload.get("object_attributes") or {}
    status = attrs.get("status")
    outcome = _PIPELINE_OUTCOMES.get(str(status))
    if outcome is None:
        return Mapped([], f"pipeline status {status!r} is not a finished run")
    repo = _repo(payload)
    record = {
        "type": "usage",
        # a pipeline webhook does not show retries: a retried pipeline keeps its id and replaces
        # the earlier outcome
        "id": str(attrs["id"]),
        "ts": iso(attrs.get("created_at")),
        "capability": options.ci_capability,
        "actor": (payload.get("user") or {}).get("username"),
        "service": _service(repo, options),
        "outcome": outcome,
        "duration_s": attrs.get("duration"),
        "attributes": _compact(
            {"ref": attrs.get("ref"), "source": attrs.get("source"), "sha": attrs.get("sha")}
        )
        or None,
    }
    return Mapped([_compact(record)])


def _deployment(payload: Mapping[str, Any], options: GitLabOptions) -> Mapped:
    status = payload.get("status")
    result = _DEPLOYMENT_RESULTS.get(str(status))
    if result is None:
        return Mapped([], f"deployment status {status!r} is not a finished deployment")
    repo = _repo(payload)
    # the payload gives only the short sha; the full one is the last part of commit_url
    m = _FULL_SHA.search(payload.get("commit_url") or "")
    sha = m.group(1) if m else payload.get("short_sha")
    record = {
        "type": "deployment",
        "id": f"{repo}/deployments/{payload['deployment_id']}",
        "service": _service(repo, options),
        "environment": payload.get("environment"),
        "result": result,
        "finished_at": iso(payload.get("status_changed_at")),
        "commit_sha": sha,
    }
    return Mapped([_compact(record)])


def _issue(payload: Mapping[str, Any], options: GitLabOptions) -> Mapped:
    attrs = payload.get("object_attributes") or {}
    labels = [
        str(label.get("title", ""))
        for label in (payload.get("labels") or attrs.get("labels") or [])
    ]
    lowered = [label.lower() for label in labels]
    incident_type = "incident" in (
        str(attrs.get("issue_type", "")).lower(),
        str(attrs.get("type", "")).lower(),
    )
    if options.incident_label.lower() not in lowered and not incident_type:
        return Mapped([], f"issue without the {options.incident_label!r} label")
    repo = _repo(payload)
    severity = _severity(labels, options)
    if severity is None and attrs.get("severity") not in (None, "", "unknown"):
        severity = attrs["severity"]
    closed = attrs.get("state") == "closed"
    record = {
        "type": "incident",
        "id": f"{repo}#{attrs['iid']}",
        "opened_at": iso(attrs.get("created_at")),
        "resolved_at": iso(attrs.get("closed_at")) if closed else None,
        "severity": severity,
        "service": _service(repo, options),
    }
    return Mapped([_compact(record)])


def _severity(labels: list[str], options: GitLabOptions) -> str | None:
    for label in labels:
        for prefix in options.severity_prefixes:
            if label.lower().startswith(prefix) and label[len(prefix) :].strip():
                return label[len(prefix) :].strip()
        if _SEVERITY_LEVEL.fullmatch(label):
            return label
    return None


_HANDLERS: dict[str, Callable[[Mapping[str, Any], GitLabOptions], Mapped]] = {
    "push": _push,
    "merge_request": _merge_request,
    "pipeline": _pipeline,
    "deployment": _deployment,
    "issue": _issue,
}
