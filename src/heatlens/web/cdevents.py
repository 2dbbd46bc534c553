"""POST /api/v1/cdevents: one CDEvent (v0.5, CloudEvents structured or binary mode), validated
against the CDEvents schemas, mapped to canonical records (heatlens.connectors.cdevents) and
written like POST /api/v1/events — same token scope, body limit, and the writer's group
transaction, in which a replayed event (its `(source, id)` stored, or earlier in the group) is a
duplicate and partial records are overlaid on the stored ones; a 2xx means committed. See
docs/cdevents.md."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from heatlens.connectors.cdevents.mapping import (
    CdeventError,
    CdeventsOptions,
    event_type,
    from_binary,
    from_structured,
    map_event,
)
from heatlens.connectors.cdevents.schema import has_schema, validate
from heatlens.settings import Settings
from heatlens.web.api import ServiceDep, _ingest
from heatlens.web.auth import require
from heatlens.web.body import JSON, media_type, parse_json, read_body
from heatlens.web.errors import ApiError
from heatlens.web.writer import Hook

router = APIRouter()

CLOUDEVENTS_JSON = "application/cloudevents+json"
# records whose id is the event's (source, id): one stored already means this event was seen
_EVENT_KEYED = ("deployment", "usage")


def options(settings: Settings) -> CdeventsOptions:
    """The mapping's options from the settings that name them (DESIGN §5), defaults otherwise."""
    defaults = CdeventsOptions()
    return CdeventsOptions(
        ci_capability=getattr(settings, "ci_capability", defaults.ci_capability),
        service_map=getattr(settings, "service_map", defaults.service_map),
    )


# for clients and schemathesis; the CDEvents schemas themselves are applied by the route
_CDEVENT = {
    "type": "object",
    "properties": {"context": {"type": "object"}, "subject": {"type": "object"}},
    "required": ["context", "subject"],
}
_BODY = {
    "required": True,
    "content": {JSON: {"schema": _CDEVENT}, CLOUDEVENTS_JSON: {"schema": {"type": "object"}}},
}


@router.post(
    "/api/v1/cdevents",
    dependencies=[Depends(require("ingest"))],
    openapi_extra={"requestBody": _BODY},
)
async def post_cdevent(request: Request, service: ServiceDep) -> JSONResponse:
    """Store one CDEvent. Structured mode: `application/json` (a CDEvent: `context`, `subject`)
    or `application/cloudevents+json`; binary mode: `ce-*` headers carry the context and the
    JSON body the CDEvent's subject (or the whole CDEvent).

    201 when a record was inserted, 200 when the event changed nothing new (a replay by
    `(source, id)`), 202 for an event type heatlens does not map (nothing stored, with the
    reason), 422 for an event its CDEvents schema refuses (what and where; nothing stored).
    """
    body = await read_body(request, service.settings.server_max_request_bytes)
    event = _event(request, body)
    kind = event_type(event)
    label = event["context"].get("type")
    if kind is None or not has_schema(kind[0]):
        return _ignored(label, f"{label!r} is not a CDEvents v0.5 core event type")
    problems = validate(event)
    if problems:
        raise ApiError(
            422,
            "invalid_cdevent",
            f"the event does not match the CDEvents 0.5.1 schema of {kind[0]}: nothing was "
            "stored; fix the fields named in details (schema_path is the rule broken)",
            problems,
        )
    mapped = map_event(event, options(service.settings))
    if not mapped.records:
        return _ignored(label, mapped.reason or "no records")
    hook = Hook("cdevents", _key(mapped.records))  # the records' source: `cdevents`
    doc = await _ingest(service, mapped.records, hook)
    if doc.get("duplicate"):
        key = hook.key[1] if hook.key else None
        return JSONResponse(
            {"status": "duplicate", "type": label, "records": 0, "id": key}, status_code=200
        )
    inserted = any(c["inserted"] for c in doc["counts"].values())
    return JSONResponse(
        {"status": "stored", "type": label, **doc}, status_code=201 if inserted else 200
    )


def _key(records: list[dict[str, Any]]) -> tuple[str, str] | None:
    """An event's identity in the store: the record keyed by its `(source, id)` (a deployment or
    a usage); a second event with it is a duplicate. Incidents are keyed by their subject, so
    their events fold into one record instead (overlaid in the writer's group)."""
    for record in records:
        if record.get("type") in _EVENT_KEYED and isinstance(record.get("id"), str):
            return (str(record["type"]), str(record["id"]))
    return None


def _event(request: Request, body: bytes) -> dict[str, Any]:
    """The CDEvent of the request in either mode; 415 or 4xx when it cannot be one."""
    kind = media_type(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    binary = kind != CLOUDEVENTS_JSON and "ce-id" in headers
    if kind not in (JSON, CLOUDEVENTS_JSON):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {kind or '(none)'!r} is not accepted: send a CDEvent as {JSON} "
            f"(structured, or binary mode with ce-* headers) or {CLOUDEVENTS_JSON}",
        )
    value = parse_json(body)
    try:
        if binary:
            attributes = {k[3:]: v for k, v in headers.items() if k.startswith("ce-")}
            return from_binary(attributes, value)
        return from_structured(value)
    except CdeventError as exc:
        raise ApiError(422, "invalid_cdevent", f"{exc}: nothing was stored", exc.details) from None


def _ignored(label: Any, reason: str) -> JSONResponse:
    return JSONResponse({"status": "ignored", "type": label, "reason": reason}, status_code=202)
