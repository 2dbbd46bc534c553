"""CDEvents v0.5 → canonical records (pure: no I/O).

A CDEvent arrives in one of the CloudEvents modes; `from_structured` and `from_binary` turn each
into the one CDEvent shape (`context`, `subject`, optional `customData`), which
`schema.validate` checks and `map_event` maps:

- `service.deployed` / `service.upgraded` → deployment; `service.rolledback` → deployment of kind
  `rollback` (the others leave `kind` out: the event does not say);
- `change.merged` → change (its id is the subject id: the producer's change id);
- `incident.detected` / `incident.reported` → incident opened, `incident.resolved` → incident
  resolved, all one incident per subject (folded by `heatlens.ingest.partial.overlay`);
- `pipelinerun.finished` / `taskrun.finished` → usage of `ci_capability`;
- anything else → no records, with the reason.

Record ids come from the event's CloudEvents identity `(source, id)` (`event_key`), so a replayed
event gives the same records again; incidents are keyed by their subject instead, so the events of
one incident fold into one record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Record = dict[str, Any]

PREFIX = "dev.cdevents."
# the CDEvents version whose schemas heatlens validates against
SPEC_VERSION = "0.5.1"

_DEPLOYMENTS = ("service.deployed", "service.upgraded", "service.rolledback")
_OPENED = ("incident.detected", "incident.reported")
_RUNS = {"pipelinerun.finished": "pipelineName", "taskrun.finished": "taskName"}
# CDEvents outcomes → heatlens's (DESIGN §3: failure = the user's, error = the platform's)
_OUTCOMES = {"success": "success", "failure": "failure", "error": "error", "cancel": "abandoned"}


class CdeventError(ValueError):
    """The request is no CDEvent heatlens can read: `details` say what is wrong and where."""

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


@dataclass(frozen=True)
class CdeventsOptions:
    """What the mapping needs from the settings (DESIGN §5 names)."""

    ci_capability: str = "ci"
    # a CDEvents service or repository id → heatlens service id; unmapped ids are kept as they are
    service_map: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Mapped:
    """The records one event maps to; when there are none, `reason` says why."""

    records: list[Record]
    reason: str | None = None


def event_type(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """`("service.deployed", "0.3.0")` for `dev.cdevents.service.deployed.0.3.0`; None for a type
    that is no CDEvents core type (custom `dev.cdeventsx.*` types included)."""
    name = (event.get("context") or {}).get("type")
    if not isinstance(name, str) or not name.startswith(PREFIX):
        return None
    parts = name.removeprefix(PREFIX).split(".")
    if len(parts) < 5:  # subject, predicate, major, minor, patch
        return None
    return ".".join(parts[:2]), ".".join(parts[2:])


def event_key(source: str, event_id: str) -> str:
    """A record id from a CloudEvents identity: `cdevents:<source>#<id>`, with `%` and `#` of the
    source escaped so that two different pairs never give the same id."""
    return f"cdevents:{source.replace('%', '%25').replace('#', '%23')}#{event_id}"


def from_structured(body: Any) -> dict[str, Any]:
    """The CDEvent of a structured-mode body: a CDEvent itself (`context` and `subject`), or a
    CloudEvents JSON envelope (`specversion`, `id`, `source`, `type`, `data`)."""
    if not isinstance(body, dict):
        raise CdeventError("expected a JSON object (a CDEvent)", [_at("", "not an object")])
    if "context" in body:
        if not isinstance(body["context"], dict):
            raise CdeventError("`context` must be an object", [_at("context", "not an object")])
        return body
    if "specversion" in body and "data" in body:
        attributes = {k: v for k, v in body.items() if k not in ("data", "data_base64")}
        return from_binary(attributes, body["data"])
    raise CdeventError(
        "a structured CDEvent needs `context` and `subject` (or a CloudEvents envelope with "
        "`data`)",
        [_at("context", "missing")],
    )


def from_binary(attributes: Mapping[str, Any], data: Any) -> dict[str, Any]:
    """The CDEvent of a CloudEvents binary-mode request: `attributes` are the CloudEvents
    attributes (the `ce-` headers without their prefix: id, source, type, time, …), `data` the
    body — the CDEvent itself, or its subject (`{"subject": …}` or the bare subject)."""
    missing = [a for a in ("id", "source", "type") if not attributes.get(a)]
    if missing:
        raise CdeventError(
            "CloudEvents attributes missing: " + ", ".join(f"ce-{a}" for a in missing),
            [_at(f"ce-{a}", "missing") for a in missing],
        )
    if not isinstance(data, dict):
        raise CdeventError("expected a JSON object as the event data", [_at("", "not an object")])
    if "context" in data:  # the CDEvents binding: data is the whole CDEvent
        given = data["context"] if isinstance(data["context"], dict) else {}
        clash = [
            _at(f"context.{a}", f"differs from ce-{a}")
            for a in ("id", "source", "type")
            if given.get(a) != attributes[a]
        ]
        if clash:
            raise CdeventError("the CloudEvents attributes and the CDEvent context differ", clash)
        return data
    context: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": attributes["id"],
        "source": attributes["source"],
        "type": attributes["type"],
    }
    if attributes.get("time"):
        context["timestamp"] = attributes["time"]
    if attributes.get("chainid"):
        context["chainId"] = attributes["chainid"]
    event: dict[str, Any] = {"context": context}
    if "subject" in data:
        event.update(data)
    else:
        event["subject"] = data
    return event


def map_event(event: Mapping[str, Any], options: CdeventsOptions | None = None) -> Mapped:
    """The records one (valid) CDEvent gives; incidents are partial — merge them by id."""
    options = options or CdeventsOptions()
    kind = event_type(event)
    context = event["context"]
    if kind is None:
        return Mapped([], f"event type {context.get('type')!r} is not a CDEvents core type")
    name, _version = kind
    subject = event.get("subject") or {}
    content = subject.get("content") or {}
    at = _iso(context["timestamp"])
    key = event_key(context["source"], context["id"])
    if name in _DEPLOYMENTS:
        record: Record = {
            "type": "deployment",
            "id": key,
            "service": _service(subject["id"], options),
            "finished_at": at,
            "result": "success",
        }
        environment = (content.get("environment") or {}).get("id")
        if environment:
            record["environment"] = environment
        if name == "service.rolledback":
            record["kind"] = "rollback"
        return Mapped([record])
    if name == "change.merged":
        record = {"type": "change", "id": subject["id"], "committed_at": at, "merged_at": at}
        repository = (content.get("repository") or {}).get("id")
        if repository:
            record["repo"] = repository
            if repository in options.service_map:
                record["service"] = options.service_map[repository]
        return Mapped([record])
    if name in (*_OPENED, "incident.resolved"):
        record = {
            "type": "incident",
            "id": event_key(subject.get("source") or context["source"], subject["id"]),
            # a resolve only knows the incident was open by then: an upper bound that the
            # detection lowers when merged (the overlay keeps the earliest)
            "opened_at": at,
        }
        if name == "incident.resolved":
            record["resolved_at"] = at
        service = (content.get("service") or {}).get("id")
        if service:
            record["service"] = _service(service, options)
        custom = event.get("customData")  # any JSON value (or base64 text)
        severity = custom.get("severity") if isinstance(custom, dict) else None
        if isinstance(severity, str) and severity:
            record["severity"] = severity
        return Mapped([record])
    if name in _RUNS:
        record = {
            "type": "usage",
            "id": key,
            "ts": at,
            "capability": options.ci_capability,
            "action": name.split(".")[0],
        }
        outcome = _OUTCOMES.get(str(content.get("outcome", "")).lower())
        if outcome:
            record["outcome"] = outcome
        attributes = {"name": content.get(_RUNS[name]), "uri": content.get("uri")}
        if name == "taskrun.finished":
            attributes["pipeline_run"] = (content.get("pipelineRun") or {}).get("id")
        attributes = {k: v for k, v in attributes.items() if v}
        if attributes:
            record["attributes"] = attributes
        return Mapped([record])
    return Mapped([], f"CDEvents {name} events are not mapped to heatlens records")


def _service(service_id: str, options: CdeventsOptions) -> str:
    return options.service_map.get(service_id, service_id)


def _at(path: str, reason: str) -> dict[str, Any]:
    return {"field": path or None, "reason": reason}


def _parse(value: str | datetime) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # the store's times are UTC
    return parsed


def _iso(value: str) -> str:
    return _parse(value).astimezone(UTC).isoformat()
