"""CDEvents v0.5: the mapping of each conformance example (records written by hand from reading
the example), schema validation, and POST /api/v1/cdevents in structured and binary mode."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from heatlens.connectors.cdevents import CdeventsOptions, map_event
from heatlens.connectors.cdevents.mapping import event_key
from heatlens.connectors.cdevents.schema import validate
from heatlens.ingest.partial import overlay
from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.store.tokens import create_token
from heatlens.web import create_app

FIXTURES = Path(__file__).parent / "fixtures" / "cdevents"
URL = "/api/v1/cdevents"

# the conformance examples share one CloudEvents identity per family (see fixtures SOURCE.txt)
RUN_KEY = "cdevents:/event/source/123#271069a8-fc18-44f1-b38f-9d70a1695819"
INCIDENT = "cdevents:/monitoring/prod1#incident-123"
AT = "2023-03-20T14:27:05.315384+00:00"  # 2023-03-20T14:27:05.315384Z
INCIDENT_AT = "2022-11-11T13:52:20.079000+00:00"  # 2022-11-11T13:52:20.079Z

DEPLOYMENT = {
    "type": "deployment",
    "id": RUN_KEY,
    "service": "mySubject123",
    "finished_at": AT,
    "result": "success",
    "environment": "test123",
}
EXPECTED: dict[str, list[dict[str, Any]]] = {
    "service_deployed": [DEPLOYMENT],
    "service_upgraded": [DEPLOYMENT],
    "service_rolledback": [{**DEPLOYMENT, "kind": "rollback"}],
    "change_merged": [
        {
            "type": "change",
            "id": "mySubject123",
            "committed_at": AT,
            "merged_at": AT,
            "repo": "TestRepo/TestOrg",
        }
    ],
    "incident_detected": [
        {"type": "incident", "id": INCIDENT, "opened_at": INCIDENT_AT, "service": "myApp"}
    ],
    "incident_reported": [
        {
            "type": "incident",
            "id": INCIDENT,
            "opened_at": INCIDENT_AT,
            "service": "myApp",
            "severity": "medium",  # customData.severity
        }
    ],
    "incident_resolved": [
        {
            "type": "incident",
            "id": INCIDENT,
            "opened_at": INCIDENT_AT,
            "resolved_at": INCIDENT_AT,
            "service": "myApp",
        }
    ],
    "pipelinerun_finished": [
        {
            "type": "usage",
            "id": RUN_KEY,
            "ts": AT,
            "capability": "ci",
            "action": "pipelinerun",
            "outcome": "failure",
            "attributes": {"name": "myPipeline", "uri": "https://www.example.com/mySubject123"},
        }
    ],
    "taskrun_finished": [
        {
            "type": "usage",
            "id": RUN_KEY,
            "ts": AT,
            "capability": "ci",
            "action": "taskrun",
            "outcome": "failure",
            "attributes": {
                "name": "myTask",
                "uri": "https://www.example.com/mySubject123",
                "pipeline_run": "mySubject123",
            },
        }
    ],
}


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def renamed(name: str, event_id: str) -> dict[str, Any]:
    """An example with a context id of its own (the examples reuse theirs)."""
    event = example(name)
    event["context"]["id"] = event_id
    return event


@pytest.fixture
def client(tmp_path: Path, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, f"duckdb:///{tmp_path / 'cdevents.duckdb'}")
    with TestClient(app) as c:
        yield c


def _store(client: TestClient) -> Store:
    store: Store = client.app.state.service.store  # type: ignore[attr-defined]
    return store


def rows(client: TestClient, type_name: str) -> list[dict[str, Any]]:
    """Stored records as canonical dicts: set fields only, times in ISO 8601."""
    return [
        {
            "type": type_name,
            **{
                k: _plain(k, v)
                for k, v in row.items()
                if v is not None and k not in ("source", "ingested_at")
            },
        }
        for row in _store(client).rows(type_name)
    ]


def _plain(name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if name == "attributes" and isinstance(value, str):  # stored as JSON text
        return json.loads(value)
    return value


def version(client: TestClient) -> int:
    return int(client.get("/healthz").json()["data_version"])


# --- the mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_supported_example_is_valid_and_maps_to_the_records_by_hand(name: str) -> None:
    event = example(name)
    assert validate(event) == []
    assert map_event(event).records == EXPECTED[name]


def test_options_name_the_ci_capability_and_map_services() -> None:
    options = CdeventsOptions(ci_capability="pipelines", service_map={"mySubject123": "checkout"})
    assert map_event(example("pipelinerun_finished"), options).records[0]["capability"] == (
        "pipelines"
    )
    assert map_event(example("service_deployed"), options).records[0]["service"] == "checkout"


def test_a_cancelled_pipeline_run_is_abandoned() -> None:
    event = example("pipelinerun_finished")
    event["subject"]["content"]["outcome"] = "cancel"
    assert validate(event) == []
    assert map_event(event).records[0]["outcome"] == "abandoned"


def test_other_types_map_to_nothing_with_a_reason() -> None:
    mapped = map_event(example("artifact_packaged"))
    assert mapped.records == []
    assert mapped.reason and "artifact.packaged" in mapped.reason


def test_event_keys_cannot_collide_through_the_separator() -> None:
    assert event_key("a#b", "c") != event_key("a", "b#c")
    assert event_key("a%23b", "c") != event_key("a#b", "c")


def test_incident_merge_keeps_the_earliest_open_and_never_clears_the_resolve() -> None:
    opened = {"type": "incident", "id": "i", "opened_at": "2026-03-02T13:00:00+00:00"}
    resolved = {**opened, "opened_at": "2026-03-02T14:30:00+00:00"}
    resolved["resolved_at"] = "2026-03-02T14:30:00+00:00"
    both = {**opened, "resolved_at": "2026-03-02T14:30:00+00:00"}
    assert overlay(opened, resolved) == both
    assert overlay(resolved, opened) == both  # the resolve came first


# --- the endpoint -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_supported_example_is_stored_in_structured_mode(client: TestClient, name: str) -> None:
    response = client.post(URL, json=example(name))
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "stored"
    (expected,) = EXPECTED[name]
    assert rows(client, expected["type"]) == [expected]
    # the records say where they came from, like webhook records (`webhook:github`)
    assert [r["source"] for r in _store(client).rows(expected["type"])] == ["cdevents"]


def test_binary_mode_headers_carry_the_context(client: TestClient) -> None:
    event = example("service_deployed")
    context = event["context"]
    headers = {
        "ce-specversion": "1.0",
        "ce-id": context["id"],
        "ce-source": context["source"],
        "ce-type": context["type"],
        "ce-time": context["timestamp"],
    }
    # the body is the CDEvent's subject
    response = client.post(URL, json={"subject": event["subject"]}, headers=headers)
    assert response.status_code == 201, response.text
    assert rows(client, "deployment") == [DEPLOYMENT]
    # the bare subject, or the whole CDEvent (the CDEvents binding), are the same event: a replay
    for body in (event["subject"], event):
        response = client.post(URL, json=body, headers=headers)
        assert response.status_code == 200 and response.json()["status"] == "duplicate"
    assert rows(client, "deployment") == [DEPLOYMENT]


def test_binary_mode_without_a_time_or_source_is_refused(client: TestClient) -> None:
    event = example("pipelinerun_finished")
    context = event["context"]
    headers = {"ce-id": context["id"], "ce-source": context["source"], "ce-type": context["type"]}
    no_time = client.post(URL, json=event["subject"], headers=headers)
    assert no_time.status_code == 422
    assert no_time.json()["error"]["details"][0]["schema_path"] == "properties/context/required"
    del headers["ce-source"]
    no_source = client.post(URL, json=event["subject"], headers=headers)
    assert no_source.status_code == 422
    assert no_source.json()["error"]["details"] == [{"field": "ce-source", "reason": "missing"}]
    assert rows(client, "usage") == []


def test_a_cloudevents_json_envelope_is_structured_mode(client: TestClient) -> None:
    event = example("change_merged")
    context = event["context"]
    envelope = {
        "specversion": "1.0",
        "id": context["id"],
        "source": context["source"],
        "type": context["type"],
        "time": context["timestamp"],
        "datacontenttype": "application/json",
        "data": {"subject": event["subject"]},
    }
    response = client.post(
        URL,
        content=json.dumps(envelope),
        headers={"Content-Type": "application/cloudevents+json; charset=utf-8"},
    )
    assert response.status_code == 201, response.text
    assert rows(client, "change") == EXPECTED["change_merged"]


def test_a_replay_changes_nothing(client: TestClient) -> None:
    for name in ("service_deployed", "pipelinerun_finished", "change_merged"):
        assert client.post(URL, json=example(name)).status_code == 201
    before = version(client)
    stored = {t: rows(client, t) for t in ("deployment", "usage", "change")}
    for name in ("service_deployed", "pipelinerun_finished", "change_merged"):
        again = client.post(URL, json=example(name))
        assert again.status_code == 200, again.text
    assert version(client) == before
    assert {t: rows(client, t) for t in ("deployment", "usage", "change")} == stored


def test_the_same_source_and_id_is_one_event_whatever_its_type(client: TestClient) -> None:
    # the conformance examples reuse /event/source/123 + 271069a8-…: by CloudEvents' rule the
    # second is a duplicate of the first, and changes nothing
    assert client.post(URL, json=example("service_deployed")).status_code == 201
    again = client.post(URL, json=example("service_rolledback"))
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert rows(client, "deployment") == [DEPLOYMENT]


def test_a_rollback_is_a_deployment_of_kind_rollback(client: TestClient) -> None:
    assert client.post(URL, json=example("service_deployed")).status_code == 201
    rollback = renamed("service_rolledback", "rollback-1")
    rollback["context"]["timestamp"] = "2023-03-20T15:00:00Z"
    assert client.post(URL, json=rollback).status_code == 201
    assert rows(client, "deployment") == [  # by id
        DEPLOYMENT,
        {
            **DEPLOYMENT,
            "id": "cdevents:/event/source/123#rollback-1",
            "finished_at": "2023-03-20T15:00:00+00:00",
            "kind": "rollback",
        },
    ]


@pytest.mark.parametrize("resolve_first", [False, True])
def test_detected_and_resolved_are_one_incident_in_either_order(
    client: TestClient, resolve_first: bool
) -> None:
    detected = example("incident_detected")
    resolved = renamed("incident_resolved", "resolve-1")
    resolved["context"]["timestamp"] = "2022-11-11T14:30:00Z"
    for event in (resolved, detected) if resolve_first else (detected, resolved):
        assert client.post(URL, json=event).status_code in (200, 201)
    expected = {
        "type": "incident",
        "id": INCIDENT,
        "opened_at": INCIDENT_AT,
        "resolved_at": "2022-11-11T14:30:00+00:00",
        "service": "myApp",
    }
    assert rows(client, "incident") == [expected]
    before = version(client)
    for event in (detected, resolved):  # replays
        assert client.post(URL, json=event).status_code == 200
    assert version(client) == before
    assert rows(client, "incident") == [expected]


def test_an_invalid_event_says_what_and_where_and_stores_nothing(client: TestClient) -> None:
    event = example("service_deployed")
    del event["subject"]["content"]["environment"]["id"]
    response = client.post(URL, json=event)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_cdevent" and "service.deployed" in error["message"]
    assert error["details"] == [
        {
            "field": "subject.content.environment",
            "schema_path": "properties/subject/properties/content/properties/environment/required",
            "reason": "'id' is a required property",
        }
    ]
    bad_time = example("service_deployed")
    bad_time["context"]["timestamp"] = "yesterday"
    details = client.post(URL, json=bad_time).json()["error"]["details"]
    assert [d["field"] for d in details] == ["context.timestamp"]
    old = example("service_deployed")
    old["context"]["type"] = "dev.cdevents.service.deployed.0.1.0"
    details = client.post(URL, json=old).json()["error"]["details"]
    assert [(d["field"], d["schema_path"]) for d in details] == [
        ("context.type", "properties/context/properties/type/enum")
    ]
    assert rows(client, "deployment") == []
    assert version(client) == 0


def test_unmapped_and_unknown_types_are_accepted_and_ignored(client: TestClient) -> None:
    packaged = client.post(URL, json=example("artifact_packaged"))
    assert packaged.status_code == 202
    assert (
        packaged.json()["status"] == "ignored"
        and "artifact.packaged" in (packaged.json()["reason"])
    )
    custom = copy.deepcopy(example("service_deployed"))
    custom["context"]["type"] = "dev.cdeventsx.mytool-resource.created.0.1.0"
    assert client.post(URL, json=custom).status_code == 202
    assert version(client) == 0


def test_bodies_that_are_no_cdevent_are_refused(client: TestClient) -> None:
    assert client.post(URL, content=b"{}", headers={"Content-Type": "text/plain"}).status_code == (
        415
    )
    assert client.post(URL, content=b"{nope", headers={"Content-Type": "application/json"}).json()[
        "error"
    ]["code"] == ("invalid_json")
    assert client.post(URL, json={"subject": {}}).status_code == 422


def test_the_ingest_scope_is_needed(client: TestClient) -> None:
    store = _store(client)
    _, read = create_token(store, "read")
    _, ingest = create_token(store, "ingest")
    assert client.post(URL, json=example("service_deployed")).status_code == 401
    as_read = {"Authorization": f"Bearer {read}"}
    assert client.post(URL, json=example("service_deployed"), headers=as_read).status_code == 403
    as_ingest = {"Authorization": f"Bearer {ingest}"}
    assert client.post(URL, json=example("service_deployed"), headers=as_ingest).status_code == 201


def test_custom_data_of_any_json_type_is_no_severity() -> None:
    # customData may be any JSON value (a string, or base64 text with customDataContentType)
    event = example("incident_reported")
    event["customData"] = "severity: high"
    assert validate(event) == []
    assert "severity" not in map_event(event).records[0]
