"""Validating a CDEvent against the CDEvents v0.5.1 JSON Schemas shipped in `schemas/` (see
schemas/SOURCE.txt for their origin and licence). The schemas are read once, on first use."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from heatlens.connectors.cdevents.mapping import event_type


@cache
def _registry() -> tuple[Registry, dict[str, dict[str, Any]]]:
    """Every schema by its `$id` (links resolve through it), and the event schemas by file
    name (`servicedeployed`)."""
    root = files("heatlens.connectors.cdevents") / "schemas"
    events: dict[str, dict[str, Any]] = {}
    resources = []
    for folder in (root, root / "links"):
        for entry in folder.iterdir():
            if not entry.name.endswith(".json"):
                continue
            schema = json.loads(entry.read_text(encoding="utf-8"))
            resources.append((schema["$id"], Resource.from_contents(schema)))
            if folder == root:
                events[entry.name.removesuffix(".json")] = schema
    return Registry().with_resources(resources), events


def has_schema(name: str) -> bool:
    """Whether `name` (`service.deployed`) is a CDEvents core type with a schema here."""
    return name.replace(".", "") in _registry()[1]


def validate(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What is wrong with `event` (a CDEvent of a type `has_schema` knows), each as `{field,
    schema_path, reason}` — `field` the dotted place in the event, `schema_path` the rule broken;
    [] when it is valid."""
    kind = event_type(event)
    if kind is None or not has_schema(kind[0]):
        raise ValueError("validate() needs a CDEvents core event type")
    registry, events = _registry()
    validator = Draft202012Validator(
        events[kind[0].replace(".", "")], registry=registry, format_checker=FormatChecker()
    )
    problems = [
        {
            "field": ".".join(str(p) for p in error.absolute_path) or None,
            "schema_path": "/".join(str(p) for p in error.absolute_schema_path),
            "reason": error.message,
        }
        for error in sorted(validator.iter_errors(event), key=_where)
    ]
    timestamp = (event.get("context") or {}).get("timestamp")
    if not _is_time(timestamp) and all(p["field"] != "context.timestamp" for p in problems):
        problems.append(
            {
                "field": "context.timestamp",
                "schema_path": "properties/context/properties/timestamp/format",
                "reason": f"{timestamp!r} is not a date-time (RFC 3339)",
            }
        )
    return problems


def _where(error: Any) -> list[str]:
    return [str(p) for p in error.absolute_path]


def _is_time(value: Any) -> bool:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True
