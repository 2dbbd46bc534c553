"""Reading a records request body: size limit, content type, UTF-8, JSON, nesting depth.

Everything wrong with a body is the client's to fix, so each check ends in a 4xx ApiError —
never a 5xx. Record-level rules (fields, types, values) are ingest's, the same as for files.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from heatlens.model import RECORD_TYPES, SURVEY_KINDS, Field, Kind
from heatlens.web.errors import ApiError

JSON = "application/json"
NDJSON = "application/x-ndjson"
M = TypeVar("M", bound=BaseModel)
# canonical records are shallow (an object field or a question list at most); a deeper body is
# an attack or a mistake, and refusing it early keeps the parser's recursion bounded
MAX_DEPTH = 16


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def json_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A dependency giving the request's JSON body as `model`, read only when the route's own
    dependencies (authentication first) let the request through, and at most
    `server.max_request_bytes` of it (FastAPI reads a declared body model before any
    dependency runs, unbounded)."""

    async def dependency(request: Request) -> M:
        limit: int = request.app.state.service.settings.server_max_request_bytes
        raw = await read_body(request, limit)
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            details = [
                {"field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]}
                for e in exc.errors()
            ]
            raise ApiError(422, "invalid_request", "the request body is invalid", details) from None

    return dependency


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a `json_body` route (nested models inlined)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"required": True, "content": {JSON: {"schema": inline(schema)}}}


def too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        "request_too_large",
        f"the body is larger than {limit:,} bytes (server.max_request_bytes): "
        "send the records in smaller batches",
    )


def media_type(request: Request) -> str:
    """The request's media type, without parameters, lower-cased."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def parse_records(body: bytes, kind: str) -> list[dict[str, Any]]:
    """Records from a JSON array or NDJSON body; a 4xx ApiError when it is not that."""
    if kind not in (JSON, NDJSON):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type {kind or '(none)'!r} is not accepted: send records as {JSON} "
            f"(an array) or {NDJSON} (one object per line)",
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, "invalid_utf8", f"the body is not valid UTF-8 (byte {exc.start})"
        ) from None
    if kind == JSON:
        value = _loads(text, None)
        if not isinstance(value, list):
            raise ApiError(400, "invalid_json", "expected a JSON array of record objects")
        items = value
    else:
        items = [
            _loads(line, n) for n, line in enumerate(text.splitlines(), start=1) if line.strip()
        ]
    not_objects = [
        {"index": i, "field": None, "reason": "expected a JSON object (a record)"}
        for i, item in enumerate(items, start=1)
        if not isinstance(item, dict)
    ]
    if not_objects:
        raise ApiError(422, "invalid_records", "every record must be a JSON object", not_objects)
    return items


class QuickJSON(JSONResponse):
    """A JSON response rendered by orjson: the ingest routes' answers (several thousand a second
    under load; the standard library's encoder costs several times more). Same bytes as
    JSONResponse for the documents they send: compact, UTF-8, string keys."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def parse_json(body: bytes) -> Any:
    """One JSON value from a UTF-8 body, by the same rules as records; a 400 ApiError when it
    is not that."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, "invalid_utf8", f"the body is not valid UTF-8 (byte {exc.start})"
        ) from None
    return _loads(text, None)


# a run of 19 digits, looked for in the bytes with every digit made "0" and all else " " (a few
# µs for a 20 kB webhook; a regular expression took 180)
_DIGITS_ONLY = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGITS = b"0" * 19


class _NotANumber(ValueError):
    """NaN and Infinity, which Python's parser accepts but JSON does not have."""


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; a number too large for a float (1e999) is, and ingest
    # refuses it with its field, as it does in files
    raise _NotANumber(f"{name} is not a JSON number")


def _loads(text: str, line: int | None) -> Any:
    where = f" on line {line}" if line is not None else ""
    # orjson parses about 5× faster; what it refuses (NaN, infinities, lone surrogates, deep
    # nesting, bad JSON) goes on to json below, which says why or takes it. orjson turns an
    # integer beyond 64 bits into a float: so when the text holds a run of 19 digits or more
    # and the result a float, json parses it again.
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    else:
        if _depth(value) > MAX_DEPTH:
            raise _too_deep(where)
        digits = text.encode().translate(_DIGITS_ONLY)
        if _LONG_DIGITS not in digits or not _has_float(value):
            return value
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise _too_deep(where) from None
    except (json.JSONDecodeError, _NotANumber) as exc:
        raise ApiError(400, "invalid_json", f"malformed JSON{where}: {exc}") from None
    except ValueError:  # an integer too long for Python to convert (its message is about Python)
        raise ApiError(
            400, "invalid_json", f"a number{where} has too many digits (more than 4,300)"
        ) from None
    if _depth(value) > MAX_DEPTH:
        raise _too_deep(where)
    return value


def _too_deep(where: str) -> ApiError:
    return ApiError(400, "invalid_json", f"JSON nested deeper than {MAX_DEPTH} levels{where}")


def _depth(value: Any) -> int:
    """Nesting depth, counted level by level without recursion (up to `MAX_DEPTH` + 1); the
    scalars are only looked at once, to be left out."""
    depth = 0
    level = [value] if type(value) is dict or type(value) is list else []
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            break
        level = [
            c
            for v in level
            for c in (v.values() if type(v) is dict else v)
            if type(c) is dict or type(c) is list
        ]
    return depth


def _has_float(value: Any) -> bool:
    """Whether a float is anywhere in the value (of at most `MAX_DEPTH` levels)."""
    level = [value]
    while level:
        if any(type(v) is float for v in level):
            return True
        level = [
            c
            for v in level
            if type(v) is dict or type(v) is list
            for c in (v.values() if type(v) is dict else v)
        ]
    return False


def records_schema() -> dict[str, Any]:
    """The OpenAPI request body of a records request, generated from the data model.

    It documents the canonical records for clients and lets schemathesis generate plausible
    bodies; the rules themselves stay in ingest, which reports every broken one with a 422.
    """
    records = [
        {
            "type": "object",
            "title": rtype.name,
            "properties": {
                "type": {"type": "string", "enum": [rtype.name]},
                **{f.name: _field_schema(f) for f in rtype.fields},
            },
            "required": ["type", *(f.name for f in rtype.fields if f.required)],
        }
        for rtype in RECORD_TYPES
    ]
    array = {"type": "array", "items": {"oneOf": records}}
    return {
        "required": True,
        "content": {
            JSON: {"schema": array},
            NDJSON: {"schema": {"type": "string", "description": "one JSON record per line"}},
        },
    }


def _field_schema(field: Field) -> dict[str, Any]:
    schema: dict[str, Any]
    if field.kind is Kind.ENUM:
        schema = {"type": "string", "enum": list(field.choices)}
    elif field.kind is Kind.TIMESTAMP:
        schema = {"type": "string", "format": "date-time"}
    elif field.kind in (Kind.NUMBER, Kind.INTEGER):
        schema = {"type": "number" if field.kind is Kind.NUMBER else "integer"}
        if field.minimum is not None:
            schema["minimum"] = field.minimum
        if field.maximum is not None:
            schema["maximum"] = field.maximum
    elif field.kind is Kind.BOOLEAN:
        schema = {"type": "boolean"}
    elif field.kind is Kind.STRING_LIST:
        schema = {"type": "array", "items": {"type": "string"}}
    elif field.kind is Kind.OBJECT:
        schema = {"type": "object"}
    elif field.kind is Kind.QUESTIONS:
        kind = {"type": "string", "enum": list(SURVEY_KINDS)}
        question = {"id": {"type": "string"}, "kind": kind}
        schema = {
            "type": "array",
            "items": {"type": "object", "properties": question, "required": ["id", "kind"]},
        }
    else:
        schema = {"type": "string", "minLength": 1} if field.required else {"type": "string"}
    if field.help:
        schema["description"] = field.help
    return schema
