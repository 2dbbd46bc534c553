"""PagerDuty V3 webhook payloads → canonical incident records (pure: no I/O).

`incident.triggered`, `incident.acknowledged` and `incident.resolved` each give a partial record of
the one incident named by the PagerDuty incident id; `heatlens.ingest.partial.overlay` folds
them together in whatever order they arrive (DESIGN §3: later non-null fields win, `opened_at` is
the earliest seen, `resolved_at` is never cleared).

V3 payloads have no `resolved_at`: the resolve time is the `occurred_at` of `incident.resolved`.
Older V3 payloads carry no `created_at` either; then an event other than the trigger only knows that
the incident was open by the time it occurred, so its `opened_at` is that time, an upper bound that
the trigger (or any earlier event) lowers when it is merged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Record = dict[str, Any]

_EVENTS = ("incident.triggered", "incident.acknowledged", "incident.resolved")


@dataclass(frozen=True)
class PagerDutyOptions:
    """What the mapping needs from the settings (DESIGN §5 names)."""

    # PagerDuty service id → heatlens service id; an unmapped service keeps its PagerDuty id
    service_map: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Mapped:
    """The records one event maps to; when there are none, `reason` says why."""

    records: list[Record]
    reason: str | None = None


def map_event(payload: Mapping[str, Any], options: PagerDutyOptions | None = None) -> Mapped:
    """The incident record one PagerDuty V3 webhook payload gives (partial: merge it by id)."""
    options = options or PagerDutyOptions()
    event = payload.get("event") or {}
    kind = event.get("event_type")
    if kind not in _EVENTS:
        return Mapped([], f"PagerDuty event {kind!r} is not mapped")
    data = event.get("data") or {}
    if not data.get("id") or not event.get("occurred_at"):
        return Mapped([], f"{kind} without an incident id or occurred_at")
    occurred = _iso(event["occurred_at"])
    opened = _iso(data["created_at"]) if data.get("created_at") else occurred
    service_id = (data.get("service") or {}).get("id")
    record = {
        "type": "incident",
        "id": data["id"],
        "opened_at": opened,
        "resolved_at": occurred if kind == "incident.resolved" else None,
        "severity": _severity(data),
        "service": options.service_map.get(service_id, service_id) if service_id else None,
    }
    return Mapped([{k: v for k, v in record.items() if v is not None}])


def _severity(data: Mapping[str, Any]) -> str | None:
    """The priority's name when the account uses priorities (P1…), else the urgency."""
    priority = data.get("priority") or {}
    name = priority.get("name") or priority.get("summary")
    return str(name) if name else data.get("urgency")


def _parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"PagerDuty timestamp without a time zone: {value!r}")
    return parsed


def _iso(value: str) -> str:
    return _parse(value).astimezone(UTC).isoformat()
