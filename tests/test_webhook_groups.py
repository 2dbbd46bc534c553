"""Webhook deliveries in the writer's group transaction (issue 15): dedupe by delivery id also
within one group, partial records of one group merged in order, a bad delivery never affecting
the others, counters counted once per delivery, old delivery ids forgotten.

Deliveries are submitted while the writer is paused, so it takes them as ONE group. Payloads are
the real PagerDuty fixtures (tests/fixtures/pagerduty, see SOURCE.txt)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from heatlens.connectors.pagerduty.mapping import PagerDutyOptions, map_event
from heatlens.errors import InputError
from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.store.deliveries import FOLDING, counters, fold, seen_row
from heatlens.web.webhooks import Delivery, hook
from heatlens.web.writer import Outcome, Writer

FIXTURES = Path(__file__).parent / "fixtures" / "pagerduty" / "zulip"


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"duckdb:///{tmp_path / 'g.duckdb'}") as s:
        yield s


@pytest.fixture
def writer(duck: Store, settings: Settings) -> Iterator[Writer]:
    w = Writer(threading.Lock(), lambda: duck, settings)
    w.start()
    yield w
    w.stop()


def pd(name: str, **event: Any) -> Delivery:
    """A PagerDuty fixture, its event fields replaced by `event`, mapped as the route maps it."""
    payload = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    data = event.pop("data", {})
    payload["event"].update(event)
    payload["event"]["data"].update(data)
    mapped = map_event(payload, PagerDutyOptions())
    e = payload["event"]
    return Delivery("pagerduty", e["event_type"], e["id"], mapped.records, mapped.reason)


# the real trigger is of another incident: re-addressed to the resolve's PCPZE64, 13:02:11
def trigger(delivery_id: str = "trigger-1") -> Delivery:
    return pd(
        "triggered_v3.json",
        id=delivery_id,
        occurred_at="2021-06-04T13:02:11.000Z",
        data={"id": "PCPZE64"},
    )


def resolve() -> Delivery:
    return pd("resolved_v3.json")  # PCPZE64 resolved at 13:16:53.816, delivery 01BZYH1J…


def one_group(writer: Writer, deliveries: list[Delivery]) -> list[Future[Outcome]]:
    with writer.paused():
        return [writer.submit(d.records, hook(d)) for d in deliveries]


def test_trigger_and_resolve_in_one_group_merge_into_one_incident(
    writer: Writer, duck: Store
) -> None:
    futures = one_group(writer, [trigger(), resolve()])
    outcomes = [f.result(timeout=60) for f in futures]
    assert [o.group for o in outcomes] == [2, 2]  # one transaction
    [row] = duck.rows("incident")
    assert row["opened_at"] == datetime(2021, 6, 4, 13, 2, 11, tzinfo=UTC)
    assert row["resolved_at"] == datetime(2021, 6, 4, 13, 16, 53, 816000, tzinfo=UTC)
    # counted as if one after the other: the trigger inserted it, the resolve updated it
    assert outcomes[0].result.counts["incident"].inserted == 1
    assert outcomes[1].result.counts["incident"].updated == 1
    [stats] = counters(duck)
    assert stats["deliveries"] == 2 and stats["last_event"] == "incident.resolved"


def test_the_same_delivery_twice_in_one_group_is_stored_once(writer: Writer, duck: Store) -> None:
    first, second = one_group(writer, [trigger("same-id"), trigger("same-id")])
    assert not first.result(timeout=60).duplicate
    assert second.result(timeout=60).duplicate
    assert len(duck.rows("incident")) == 1
    [stats] = counters(duck)
    assert stats["deliveries"] == 1
    assert duck.known_sync_states(["webhook-delivery:pagerduty:same-id"]) == {
        "webhook-delivery:pagerduty:same-id"
    }
    # and again in a later group: still a duplicate, nothing changes
    version = duck.data_version()
    [again] = one_group(writer, [trigger("same-id")])
    assert again.result(timeout=60).duplicate
    assert duck.data_version() == version and counters(duck)[0]["deliveries"] == 1


def test_a_bad_delivery_does_not_touch_the_others_of_its_group(writer: Writer, duck: Store) -> None:
    # an incident event with a cause heatlens does not know, for the same incident, between the
    # trigger and the resolve: were it overlaid on the resolve, the resolve would carry its bad
    # cause and its team
    bad = Delivery(
        "pagerduty",
        "incident.annotated",
        "bad-1",
        [
            {
                "type": "incident",
                "id": "PCPZE64",
                "opened_at": "2021-06-04T13:05:00Z",
                "cause": "gremlins",
                "team": "intruders",
            }
        ],
        None,
    )
    t, b, r = one_group(writer, [trigger(), bad, resolve()])
    with pytest.raises(InputError):
        b.result(timeout=60)
    assert t.result(timeout=60).group == 2 and r.result(timeout=60).group == 2
    [row] = duck.rows("incident")
    assert (row["cause"], row["team"]) == (None, None)
    assert row["opened_at"] == datetime(2021, 6, 4, 13, 2, 11, tzinfo=UTC)
    assert row["resolved_at"] == datetime(2021, 6, 4, 13, 16, 53, 816000, tzinfo=UTC)
    assert counters(duck)[0]["deliveries"] == 2
    # the refused delivery's id is not remembered: fixed and sent again, it is taken
    assert duck.known_sync_states(["webhook-delivery:pagerduty:bad-1"]) == set()


def test_a_copy_of_a_refused_delivery_in_its_group_is_refused_too(
    writer: Writer, duck: Store
) -> None:
    bad = Delivery(
        "pagerduty",
        "incident.annotated",
        "bad-2",
        [{"type": "incident", "id": "X1", "opened_at": "2021-06-04T13:05:00Z", "cause": "?"}],
        None,
    )
    first, second = one_group(writer, [bad, bad])
    for f in (first, second):
        with pytest.raises(InputError):
            f.result(timeout=60)
    assert duck.rows("incident") == [] and counters(duck) == []


def test_an_ignored_delivery_is_counted_and_remembered_in_the_group(
    writer: Writer, duck: Store
) -> None:
    ignored = Delivery("pagerduty", "service.updated", "ign-1", [], "not an incident event")
    a, b = one_group(writer, [ignored, trigger()])
    assert a.result(timeout=60).result.read == 0 and b.result(timeout=60).result.read == 1
    [stats] = counters(duck)
    assert (stats["deliveries"], stats["ignored"]) == (2, 1)
    assert stats["last_ignored"] == {"event": "service.updated", "reason": "not an incident event"}


def test_deliveries_without_an_id_are_counted_in_their_sources_row(
    writer: Writer, duck: Store
) -> None:
    # a sender that gives no delivery id: every copy is taken, and counted in `webhook:<source>`
    bare = Delivery("gitlab", "Note Hook", None, [], "not mapped")
    futures = one_group(writer, [bare, bare, trigger()])
    assert [f.result(timeout=60).duplicate for f in futures] == [False, False, False]
    assert duck.sync_states("webhook-delivery:gitlab") == []
    base = duck.sync_state("webhook:gitlab")
    assert base is not None and (base["deliveries"], base["ignored"]) == (2, 2)
    by_source = {c["source"]: c for c in counters(duck)}
    assert {k: (c["deliveries"], c["ignored"]) for k, c in by_source.items()} == {
        "gitlab": (2, 2),
        "pagerduty": (1, 0),
    }
    assert by_source["gitlab"]["last_ignored"] == {"event": "Note Hook", "reason": "not mapped"}


def test_delivery_ids_older_than_the_retention_are_forgotten_their_counts_kept(
    duck: Store,
) -> None:
    now = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)

    def seen(name: str, days: float, event: str, reason: str | None = None) -> None:
        at = now - timedelta(days=days)
        duck.save_sync_state(f"webhook-delivery:github:{name}", seen_row(event, at, reason), at=at)

    seen("old", 9, "push", "not mapped")
    seen("older", 10, "workflow_run")
    seen("new", 6, "deployment")
    # the deliveries without an id row: 2, one ignored, the last 30 days ago
    duck.save_sync_state(
        "webhook:github",
        {"deliveries": 2, "ignored": 1, "last_delivery_at": (now - timedelta(days=30)).isoformat()},
        at=now - timedelta(days=30),
    )
    duck.save_sync_state("webhook-deliveryx", {"other": 1}, at=now - timedelta(days=30))
    before = counters(duck)
    assert (before[0]["deliveries"], before[0]["ignored"]) == (5, 2)

    assert fold(duck, 7, now) == 2
    names = [name for name, _, _ in duck.sync_states()]
    assert names == ["webhook-delivery:github:new", "webhook-deliveryx", "webhook:github"]
    assert counters(duck) == before  # the forgotten ones still counted
    base = duck.sync_state("webhook:github")
    assert base is not None and (base["deliveries"], base["ignored"]) == (4, 2)
    assert base["last_ignored"] == {"event": "push", "reason": "not mapped"}
    assert before[0]["last_event"] == "deployment"  # the newest, still an id row
    assert fold(duck, 7, now) == 0  # nothing counted twice
    assert counters(duck) == before
    assert Settings().webhooks_delivery_retention_days == 7


@pytest.mark.postgres
def test_two_replicas_never_fold_the_same_delivery_ids(postgres_url: str) -> None:
    now = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)
    with Store.open(postgres_url) as one, Store.open(postgres_url) as other:
        for i in range(3):
            at = now - timedelta(days=10)
            one.save_sync_state(f"webhook-delivery:github:{i}", seen_row("push", at, None), at=at)
        assert one.try_lock(FOLDING)  # one replica folding…
        assert fold(other, 7, now) == 0  # …the other leaves the rows to it
        assert counters(other)[0]["deliveries"] == 3
        one.unlock(FOLDING)
        assert fold(other, 7, now) == 3
        assert fold(one, 7, now) == 0
        assert counters(one)[0]["deliveries"] == 3
        assert one.sync_states("webhook-delivery:") == []


def test_a_cdevent_twice_in_one_group_is_stored_once(writer: Writer, duck: Store) -> None:
    # the CDEvents conformance example of service.deployed (tests/fixtures/cdevents/SOURCE.txt)
    from heatlens.connectors.cdevents.mapping import CdeventsOptions, from_structured
    from heatlens.connectors.cdevents.mapping import map_event as map_cdevent
    from heatlens.web.cdevents import _key
    from heatlens.web.writer import Hook

    path = Path(__file__).parent / "fixtures" / "cdevents" / "service_deployed.json"
    event = from_structured(json.loads(path.read_text(encoding="utf-8")))
    records = map_cdevent(event, CdeventsOptions()).records
    key = _key(records)
    assert key is not None and key[0] == "deployment"
    with writer.paused():
        first, second = (writer.submit(records, Hook("api", key)) for _ in range(2))
    assert not first.result(timeout=60).duplicate
    assert second.result(timeout=60).duplicate
    assert [row["id"] for row in duck.rows("deployment")] == [key[1]]
    assert duck.rows("deployment")[0]["source"] == "api"
