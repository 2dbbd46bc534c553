"""PagerDuty V3 webhook payloads → incident records: real payloads (tests/fixtures/pagerduty, see
its SOURCE.txt), each compared with the record written by hand from reading it, and merged into one
incident whatever order the deliveries arrive in."""

from __future__ import annotations

import copy
import itertools
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from heatlens.connectors.pagerduty import Mapped, PagerDutyOptions, map_event
from heatlens.ingest import ingest_records
from heatlens.ingest.partial import overlay
from heatlens.settings import Settings
from heatlens.store import Store
from tests.conftest import stored

FIXTURES = Path(__file__).parent / "fixtures" / "pagerduty" / "zulip"


def payload(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}_v3.json").read_text())


def record(p: dict[str, Any], options: PagerDutyOptions | None = None) -> dict[str, Any]:
    mapped = map_event(p, options)
    assert mapped.reason is None, mapped.reason
    (only,) = mapped.records
    return only


def test_triggered_opens_the_incident() -> None:
    assert record(payload("triggered")) == {
        "type": "incident",
        "id": "PFQZPSY",
        "opened_at": "2021-06-04T13:35:29.781000+00:00",
        "severity": "high",
        "service": "PA2P440",
    }


def test_acknowledged_knows_only_that_the_incident_was_open() -> None:
    """No created_at in this (older) V3 shape: opened_at is the acknowledge, an upper bound."""
    assert record(payload("acknowledged")) == {
        "type": "incident",
        "id": "PQ1K5C8",
        "opened_at": "2021-06-04T13:55:30.394000+00:00",
        "severity": "high",
        "service": "PA2P440",
    }


def test_resolved_time_is_the_occurred_at_of_the_resolve() -> None:
    """The quirk: V3 payloads have no resolved_at."""
    p = payload("resolved")
    assert "resolved_at" not in p["event"]["data"]
    assert record(p, PagerDutyOptions(service_map={"PA2P440": "checkout"})) == {
        "type": "incident",
        "id": "PCPZE64",
        "opened_at": "2021-06-04T13:16:53.816000+00:00",
        "resolved_at": "2021-06-04T13:16:53.816000+00:00",
        "severity": "high",
        "service": "checkout",
    }


def test_created_at_when_present_is_the_opening_time() -> None:
    p = copy.deepcopy(payload("resolved"))
    p["event"]["data"]["created_at"] = "2021-06-04T13:01:02Z"  # the newer V3 shape carries it
    assert record(p)["opened_at"] == "2021-06-04T13:01:02+00:00"


def test_severity_is_the_priority_name_when_set_else_the_urgency() -> None:
    p = copy.deepcopy(payload("triggered"))
    assert p["event"]["data"]["priority"] is None
    assert record(p)["severity"] == "high"
    p["event"]["data"]["priority"] = {
        "id": "PSO75BM",
        "summary": "P1",
        "type": "priority_reference",
    }
    assert record(p)["severity"] == "P1"


@pytest.mark.parametrize(
    "event_type", ["incident.annotated", "incident.reassigned", "service.updated", None]
)
def test_unknown_events_give_nothing_with_a_reason(event_type: str | None) -> None:
    p = copy.deepcopy(payload("triggered"))
    p["event"]["event_type"] = event_type
    assert map_event(p) == Mapped([], f"PagerDuty event {event_type!r} is not mapped")


# --- one incident from several deliveries --------------------------------------------------------


def lifecycle() -> list[dict[str, Any]]:
    """Trigger, acknowledge and resolve of incident PCPZE64. The three real payloads are of three
    incidents, so the trigger and the acknowledge are re-addressed to PCPZE64 and given times
    before its real resolve (13:16:53.816); nothing else in them is changed."""
    trigger = copy.deepcopy(payload("triggered"))
    ack = copy.deepcopy(payload("acknowledged"))
    for p, at in ((trigger, "2021-06-04T13:02:11.000Z"), (ack, "2021-06-04T13:05:00.000Z")):
        p["event"]["data"]["id"] = "PCPZE64"
        p["event"]["occurred_at"] = at
    return [record(trigger), record(ack), record(payload("resolved"))]


RESTORED = {
    "type": "incident",
    "id": "PCPZE64",
    "opened_at": "2021-06-04T13:02:11+00:00",
    "resolved_at": "2021-06-04T13:16:53.816000+00:00",
    "severity": "high",
    "service": "PA2P440",
}


def merged(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    result: dict[str, Any] | None = None
    for r in records:
        result = overlay(result, r)
    return result


def test_resolve_after_trigger_gives_the_time_to_restore() -> None:
    incident = merged(lifecycle())
    assert incident == RESTORED
    restore = datetime.fromisoformat(incident["resolved_at"]) - datetime.fromisoformat(
        incident["opened_at"]
    )
    assert restore == timedelta(minutes=14, seconds=42, milliseconds=816)


def test_resolve_before_its_trigger_merges_to_the_same_incident() -> None:
    trigger, _, resolve = lifecycle()
    early = overlay(None, resolve)
    # on its own the resolve is a valid record: open and resolved at the resolve time
    assert early["opened_at"] == early["resolved_at"] == "2021-06-04T13:16:53.816000+00:00"
    assert overlay(early, trigger) == RESTORED


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_any_delivery_order_gives_the_same_incident(order: tuple[int, ...]) -> None:
    deliveries = lifecycle()
    assert merged([deliveries[i] for i in order]) == RESTORED


def test_merge_refuses_another_incident() -> None:
    with pytest.raises(ValueError, match="PFQZPSY"):
        overlay(record(payload("resolved")), record(payload("triggered")))


def test_every_record_and_the_merge_are_ingestable(duck_store: Store, settings: Settings) -> None:
    """Each partial record is valid on its own (the store replaces whole records today, so the
    caller merges with overlay before ingesting)."""
    singles = [record(payload(n)) for n in ("triggered", "acknowledged", "resolved")]
    assert ingest_records(duck_store, singles, settings, source="webhook:pagerduty").problems == []
    trigger, ack, resolve = lifecycle()
    for step in (overlay(None, resolve), merged([resolve, ack, trigger])):
        result = ingest_records(duck_store, [step], settings, source="webhook:pagerduty")
        assert result.problems == []
    rows = stored(duck_store, "incident", "id", "opened_at", "resolved_at")
    by_id = {row[0]: row[1:] for row in rows}
    opened, resolved = by_id["PCPZE64"]
    assert resolved - opened == timedelta(minutes=14, seconds=42, milliseconds=816)
