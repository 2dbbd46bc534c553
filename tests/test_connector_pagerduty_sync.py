"""`heatlens sync pagerduty` against a fake PagerDuty (an httpx transport, no network) replaying the
recorded incidents of DevLake's test account (tests/fixtures/rest/pagerduty, see SOURCE.txt:
Apache-2.0) over pages of `offset`/`more`; the records expected were written by hand from them.

And the end-to-end check: a GitLab project and a PagerDuty service synced into one store give the
change failure rate and recovery time computed by hand from the responses."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from heatlens.connectors.pagerduty.sync import PagerDutySource, state_name, sync_pagerduty
from heatlens.errors import ConfigError, ConnectorError
from heatlens.settings import Settings, load_settings
from heatlens.store import Store

REST = Path(__file__).parent / "fixtures" / "rest" / "pagerduty"
API = "https://pagerduty.test"
SERVICE = "PIKL83L"
TOKEN = "u+s3cr3tT0ken"
PAGE = json.loads((REST / "assembled_list-incidents-page.json").read_text())
TRIGGERED, ACKNOWLEDGED, RESOLVED = PAGE["incidents"]  # #4, #5, #6
NOW = datetime(2022, 11, 10, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.t = now.timestamp()
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def _at(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class FakePagerDuty:
    """`GET /services/ID` and `GET /incidents` answering `page_size` incidents from `offset`,
    with `more` as PagerDuty's classic pagination; `before` answers come first, in turn."""

    def __init__(self, incidents: list[Any], page_size: int = 2) -> None:
        self.incidents = incidents
        self.page_size = page_size
        self.before: list[httpx.Response] = []
        self.requests: list[httpx.Request] = []
        self.ignore_offset = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.url.host == "pagerduty.test"
        assert request.headers["authorization"] == f"Token token={TOKEN}"
        assert request.headers["accept"] == "application/vnd.pagerduty+json;version=2"
        if self.before:
            return self.before.pop(0)
        if request.url.path == f"/services/{SERVICE}":
            return httpx.Response(200, json={"service": {"id": SERVICE, "name": "DevService"}})
        if request.url.path != "/incidents":
            return httpx.Response(404, json={"error": {"message": "Not Found", "code": 2100}})
        assert request.url.params["service_ids[]"] == SERVICE
        offset = 0 if self.ignore_offset else int(request.url.params.get("offset", 0))
        found = self.incidents
        if "since" in request.url.params:  # created in [since, until)
            since, until = (_at(request.url.params[k]) for k in ("since", "until"))
            found = [i for i in found if since <= _at(i["created_at"]) < until]
        items = found[offset : offset + self.page_size]
        more = offset + self.page_size < len(found)
        body = {"incidents": items, "limit": self.page_size, "offset": offset, "more": more}
        return httpx.Response(200, json={**body, "total": None})


def sync(
    store: Store,
    settings: Settings,
    fake: FakePagerDuty,
    clock: FakeClock | None = None,
    **source: Any,
) -> Any:
    return sync_pagerduty(
        store,
        settings,
        PagerDutySource((SERVICE,), TOKEN, API, **source),
        transport=httpx.MockTransport(fake),
        clock=clock or FakeClock(NOW),
    )


def mapped() -> Settings:
    return load_settings(config=None, environ={}, overrides={"service_map": {SERVICE: "shop"}})


def utc(value: Any) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def incidents(store: Store) -> set[tuple[Any, ...]]:
    return {
        (r["id"], utc(r["opened_at"]), utc(r["resolved_at"]), r["severity"], r["service"])
        for r in store.rows("incident")
    }


# by hand from the three recorded incidents: created_at; the resolved one's last status change;
# urgency (no priority in the account); the service mapped by service_map
INCIDENTS = {
    ("Q3YON8WNWTZMRQ", "2022-11-03T06:23:06+00:00", None, "high", "shop"),
    ("Q3CZAU7Q4008QD", "2022-11-03T06:44:28+00:00", None, "high", "shop"),
    ("Q1OHFWFP3GPXOG", "2022-11-03T06:45:36+00:00", "2022-11-03T06:51:44+00:00", "low", "shop"),
}


def test_backfill_over_offset_pages(duck_store: Store) -> None:
    fake = FakePagerDuty([TRIGGERED, ACKNOWLEDGED, RESOLVED])
    result = sync(duck_store, mapped(), fake)
    assert incidents(duck_store) == INCIDENTS
    listed = [r.url.params for r in fake.requests if r.url.path == "/incidents"]
    assert [(p.get("offset"), p.get("date_range")) for p in listed] == [(None, "all"), ("2", "all")]
    assert all(p["sort_by"] == "created_at:asc" for p in listed)
    assert result.summary == "1 service: 3 incidents (3 request(s))"
    # the oldest open incident (#4) holds the cursor: the next sync reads it again
    state = duck_store.sync_state(state_name(PagerDutySource((SERVICE,), base_url=API), SERVICE))
    assert state is not None
    assert (state["cursor"], state["held"]) == ("2022-11-03T06:23:06.000000Z", True)
    assert not state.get("resume")


def test_unmapped_service_keeps_its_id_and_priority_is_the_severity(
    duck_store: Store, settings: Settings
) -> None:
    prioritised = {**copy.deepcopy(RESOLVED), "priority": {"id": "PX", "summary": "P1"}}
    sync(duck_store, settings, FakePagerDuty([prioritised]))
    assert incidents(duck_store) == {
        ("Q1OHFWFP3GPXOG", "2022-11-03T06:45:36+00:00", "2022-11-03T06:51:44+00:00", "P1", SERVICE)
    }


def test_second_sync_reads_from_the_held_cursor_and_sees_the_resolve(duck_store: Store) -> None:
    sync(duck_store, mapped(), FakePagerDuty([TRIGGERED, ACKNOWLEDGED, RESOLVED]))
    resolved = {
        **copy.deepcopy(TRIGGERED),
        "status": "resolved",
        "last_status_change_at": "2022-11-03T08:00:00.000000Z",
    }
    fake = FakePagerDuty([resolved, ACKNOWLEDGED, RESOLVED])
    sync(duck_store, mapped(), fake)
    [first] = [r.url.params for r in fake.requests if r.url.path == "/incidents"][:1]
    assert (first["since"], first["until"]) == (
        "2022-11-03T06:23:06.000000Z",
        "2022-11-10T00:00:00Z",
    )
    assert (
        "Q3YON8WNWTZMRQ",
        "2022-11-03T06:23:06+00:00",
        "2022-11-03T08:00:00+00:00",
        "high",
        "shop",
    ) in (incidents(duck_store))
    # #5 (acknowledged) still holds the cursor
    state = duck_store.sync_state(state_name(PagerDutySource((SERVICE,), base_url=API), SERVICE))
    assert state is not None and state["cursor"] == "2022-11-03T06:44:28.000000Z"


def test_since_starts_a_first_sync_there(duck_store: Store) -> None:
    fake = FakePagerDuty([RESOLVED])
    sync(duck_store, mapped(), fake, since="2022-11-01")
    [params] = [r.url.params for r in fake.requests if r.url.path == "/incidents"]
    assert (params["since"], "date_range" in params) == ("2022-11-01", False)


def test_a_cursor_older_than_six_months_is_read_a_window_at_a_time(duck_store: Store) -> None:
    fake = FakePagerDuty([TRIGGERED, ACKNOWLEDGED, RESOLVED])
    sync(duck_store, mapped(), fake, since="2022-01-01")
    windows = [
        (r.url.params["since"], r.url.params["until"])
        for r in fake.requests
        if r.url.path == "/incidents"
    ]
    # 2022-01-01 + 179 days = 2022-06-29; then from there to now (2022-11-10)
    assert windows == [
        ("2022-01-01", "2022-06-29T00:00:00Z"),
        ("2022-06-29T00:00:00Z", "2022-11-10T00:00:00Z"),
        ("2022-06-29T00:00:00Z", "2022-11-10T00:00:00Z"),  # its second page (offset 2)
    ]
    assert incidents(duck_store) == INCIDENTS


def test_429_then_success_and_a_5xx_retry(duck_store: Store) -> None:
    fake = FakePagerDuty([TRIGGERED, ACKNOWLEDGED, RESOLVED])
    fake.before = [
        httpx.Response(429, headers={"retry-after": "3"}, json={"error": {"message": "Slow"}}),
        httpx.Response(503, json={"error": {"message": "Unavailable"}}),
    ]
    clock = FakeClock(NOW)
    sync(duck_store, mapped(), fake, clock)
    # the 429 waits Retry-After; the 503, on the second try, the backoff doubled once (1 s × 2)
    assert clock.slept == [3.0, 2.0]
    assert incidents(duck_store) == INCIDENTS


def test_bad_token_is_one_clear_line_without_the_token(duck_store: Store) -> None:
    fake = FakePagerDuty([])
    fake.before = [httpx.Response(401, json={"error": {"message": "Unauthorized", "code": 2006}})]
    with pytest.raises(ConnectorError) as raised:
        sync(duck_store, mapped(), fake)
    message = str(raised.value)
    assert message == (
        "PagerDuty rejected the token (401 Unauthorized) while reading service PIKL83L: check "
        "--token or PAGERDUTY_TOKEN — it may be mistyped or revoked (a REST API key, not an "
        "integration key)"
    )
    assert TOKEN not in message


def test_offset_ignored_by_the_server_stops_at_the_page_guard(duck_store: Store) -> None:
    fake = FakePagerDuty([TRIGGERED, ACKNOWLEDGED, RESOLVED])
    fake.ignore_offset = True  # every page is the first, with more = true
    with pytest.raises(ConnectorError, match="paging in a loop"):
        sync(duck_store, mapped(), fake)
    # PagerDuty serves at most 10,000 (offset + limit): 101 pages of 100 is past any real answer
    assert len([r for r in fake.requests if r.url.path == "/incidents"]) == 101


def test_resume_after_interruption_without_duplicates(
    duck_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import heatlens.ingest as ingest

    real = ingest.ingest_records
    calls = {"n": 0}

    def dies_on_second_page(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest, "ingest_records", dies_on_second_page)
    with pytest.raises(KeyboardInterrupt):
        sync(duck_store, mapped(), FakePagerDuty([TRIGGERED, ACKNOWLEDGED, RESOLVED]))
    assert {r["id"] for r in duck_store.rows("incident")} == {"Q3YON8WNWTZMRQ", "Q3CZAU7Q4008QD"}
    monkeypatch.setattr(ingest, "ingest_records", real)
    fake = FakePagerDuty([TRIGGERED, ACKNOWLEDGED, RESOLVED])
    result = sync(duck_store, mapped(), fake)
    listed = [r.url.params.get("offset") for r in fake.requests if r.url.path == "/incidents"]
    assert listed == ["2"]  # resumed at the second page
    assert result.counts["incident"].inserted == 1
    assert incidents(duck_store) == INCIDENTS


def test_source_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="needs --service ID"):
        PagerDutySource(())
    with pytest.raises(ConfigError, match="--service 'a/b': expected a PagerDuty service id"):
        PagerDutySource(("a/b",))


# -- end to end: GitLab deployments and PagerDuty incidents in one store -------------------------


def test_gitlab_and_pagerduty_give_the_failure_rate_and_recovery_time_by_hand(
    duck_store: Store,
) -> None:
    from heatlens.connectors.gitlab.sync import GitlabSource, sync_gitlab
    from heatlens.metrics import Request, compute
    from tests.test_connector_gitlab_sync import DOC_DEPLOYMENTS, PID, FakeGitlab

    gitlab = FakeGitlab()
    gitlab.routes[("projects/acme%2Fshop", "1")] = [
        gitlab.ok({"id": PID, "path_with_namespace": "acme/shop"})
    ]
    gitlab.pages(f"projects/{PID}/environments", [[{"name": "production", "tier": "production"}]])
    # the docs' deployment, three times at the PagerDuty account's dates (changed here): A a day
    # before the incidents, B 23 minutes before the first, C the next day
    deps = []
    for n, finished in enumerate(
        ["2022-11-02T06:00:00Z", "2022-11-03T06:00:00Z", "2022-11-04T06:00:00Z"], 1
    ):
        dep = copy.deepcopy(DOC_DEPLOYMENTS[0])
        dep.update(id=n, status="success", sha=f"{n:040x}", updated_at=finished)
        dep["deployable"]["finished_at"] = finished
        deps.append(dep)
    gitlab.pages(f"projects/{PID}/deployments", [deps[:2], deps[2:]])
    for empty in ("merge_requests", "pipelines", "issues", "issues?incident"):
        gitlab.pages(f"projects/{PID}/{empty}", [[]])
    gitlab.routes[(f"projects/{PID}/repository/compare", "1")] = [
        gitlab.ok({"commits": []})  # nothing new between them: each ships only its sha
    ]
    settings = mapped()
    sync_gitlab(
        duck_store,
        settings,
        GitlabSource(("acme/shop",), "glpat-s3cr3tT0ken", "https://gitlab.test/api/v4"),
        transport=httpx.MockTransport(gitlab),
        clock=FakeClock(NOW),
    )
    sync(duck_store, settings, FakePagerDuty([TRIGGERED, ACKNOWLEDGED, RESOLVED]))

    report = compute(
        duck_store,
        Request(
            grain="all",
            start=date(2022, 11, 1),
            end=date(2022, 12, 1),
            metrics=("dora.change_failure_rate", "dora.recovery_time_p50"),
            now=datetime(2023, 6, 1, tzinfo=UTC),
        ),
        settings,
    )
    by = {row.metric: row for row in report.rows}
    # the three incidents (06:23, 06:44, 06:45 on Nov 3) all follow B (06:00) within 7 days:
    # one failed deployment of three
    cfr = by["dora.change_failure_rate"]
    assert (cfr.x, cfr.n) == (1, 3)
    assert cfr.value == pytest.approx(1 / 3, abs=1e-12)
    # one resolved linked incident (#6, resolved 06:51:44): 51 min 44 s after B finished
    recovery = by["dora.recovery_time_p50"]
    assert recovery.n == 1
    assert recovery.value == pytest.approx((51 * 60 + 44) / 3600, abs=1e-9)
