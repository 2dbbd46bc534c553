"""`heatlens sync pagerduty`: services' incidents from PagerDuty's REST API (v2), then what is new.

One stream per service (`pagerduty:<host>:<service id>:incidents`): `GET /incidents?service_ids[]=
ID&sort_by=created_at:asc&time_zone=UTC`, oldest first, paged by `offset`/`more`. A first sync asks
`date_range=all` (or `since=--since`); later ones `since=<cursor>&until=<now>`, in windows of 179
days (PagerDuty searches six months at most). The cursor moves with every page to the newest
creation read — except that the oldest incident not resolved yet holds it at its creation (for
`open_days`, 30), so the next sync reads it again and sees it resolved.

Each incident maps as the V3 webhook's events do (one merge of partial records,
`heatlens.ingest.partial.overlay_stored`, so a webhook's and a sync's records of one incident fold
together): `opened_at` = `created_at`; a resolved incident's `resolved_at` = its
`last_status_change_at` (a resolved incident changes status no more: its last change is the
resolve); severity = the priority's name when the account uses priorities, else the urgency; the
PagerDuty service id → a heatlens service through `service_map`.

The service is looked up first (`GET /services/ID`), so a wrong id or a token that cannot see it
is one clear error before anything is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from heatlens.connectors import ProgressFn, SyncResult, no_progress
from heatlens.connectors.http import Clock, HttpClient, RetryPolicy, Vendor, make_client
from heatlens.connectors.pagerduty.mapping import PagerDutyOptions, map_event
from heatlens.connectors.streams import (
    OffsetMore,
    Stream,
    StreamProgress,
    WithStore,
    check_since,
    holding,
    read_stream,
)
from heatlens.errors import ConfigError
from heatlens.settings import Settings
from heatlens.store import Store, WriteCounts

__all__ = ["PAGERDUTY", "PagerDutySource", "incident_record", "pagerduty_client", "sync_pagerduty"]

Record = dict[str, Any]
DEFAULT_BASE_URL = "https://api.pagerduty.com"


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        return str(error.get("message") or "").strip()
    return ""


def _explain(response: httpx.Response, what: str) -> str | None:
    status = response.status_code
    said = f"{status} {_message(response)}".strip()
    if status == 401:
        return (
            f"PagerDuty rejected the token ({said}) while reading {what}: check --token or "
            "PAGERDUTY_TOKEN — it may be mistyped or revoked (a REST API key, not an "
            "integration key)"
        )
    if status == 403:
        return (
            f"PagerDuty refused {what} ({said}): the key may not read incidents; use a read-only "
            "account key or a user key whose user sees the service"
        )
    if status == 404:
        return f"PagerDuty: {what}: not found (404) — check the service id (e.g. PIKL83L)"
    return None


PAGERDUTY = Vendor(
    name="PagerDuty",
    auth_header=lambda token: {"Authorization": f"Token token={token}"},
    headers={"Accept": "application/vnd.pagerduty+json;version=2"},
    limit_header="ratelimit-limit",
    remaining_header="ratelimit-remaining",
    reset_header="x-heatlens-no-epoch-reset",  # PagerDuty's ratelimit-reset is seconds, not epoch
    explain=_explain,
    token_hint="--token or PAGERDUTY_TOKEN",
)


def pagerduty_client(
    token: str | None,
    base_url: str = DEFAULT_BASE_URL,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Clock | None = None,
    retry: RetryPolicy | None = None,
) -> HttpClient:
    return make_client(base_url, token, PAGERDUTY, transport=transport, clock=clock, retry=retry)


@dataclass(frozen=True)
class PagerDutySource:
    """What to read: PagerDuty services (ids), from which API, since when."""

    services: tuple[str, ...]
    token: str | None = None
    base_url: str = DEFAULT_BASE_URL
    since: str | None = None  # ISO date: where a first sync starts (default: all history)
    open_days: int = 30  # an incident not resolved holds the cursor this long

    def __post_init__(self) -> None:
        if not self.services:
            raise ConfigError("sync pagerduty needs --service ID (repeat for more), e.g. PIKL83L")
        for service in self.services:
            if not service.isalnum():
                raise ConfigError(
                    f"--service {service!r}: expected a PagerDuty service id, e.g. PIKL83L"
                )
        check_since(self.since)


def state_name(source: PagerDutySource, service: str) -> str:
    host = urlsplit(source.base_url).netloc or source.base_url
    return f"pagerduty:{host}:{service}:incidents"


def incident_record(incident: Mapping[str, Any], options: PagerDutyOptions) -> list[Record]:
    """An incident of the REST API → its record, as the V3 webhook's events map it: the trigger
    (created), and for a resolved one the resolve at its last status change."""
    resolved = incident.get("status") == "resolved" and incident.get("last_status_change_at")
    event = {
        "event_type": "incident.resolved" if resolved else "incident.triggered",
        "occurred_at": incident["last_status_change_at"] if resolved else incident["created_at"],
        "data": incident,
    }
    return map_event({"event": event}, options).records


# PagerDuty's longest `since`…`until` range is six months; a little less, to be safe
WINDOW = timedelta(days=179)


def _window_end(cursor: str, now: datetime) -> datetime:
    """The end of the search window that starts at `cursor` (a date is midnight UTC)."""
    start = _time(cursor)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return min(now, start + WINDOW)


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(value: Any) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def sync_pagerduty(
    store: Store | WithStore,
    settings: Settings,
    source: PagerDutySource,
    *,
    progress: ProgressFn = no_progress,
    transport: httpx.BaseTransport | None = None,
    clock: Clock | None = None,
) -> SyncResult:
    """Read `source`'s services' incidents into the store, each from where it was left (the
    store held only to read a state and write a page, as `sync_github`)."""
    from heatlens.ingest import ingest_records
    from heatlens.ingest.partial import overlay_stored

    with_store = holding(store)
    result = SyncResult(source="sync:pagerduty")
    options = PagerDutyOptions(service_map=settings.service_map)
    total = 0
    with pagerduty_client(
        source.token, source.base_url, transport=transport, clock=clock
    ) as client:
        now = datetime.fromtimestamp(client.clock.now(), UTC)
        give_up_before = now - timedelta(days=source.open_days)
        for service in source.services:
            client.get(f"services/{service}", what=f"service {service}")
            name = state_name(source, service)
            state = with_store(lambda store: store.sync_state(name))  # noqa: B023
            if state is None and source.since is not None:
                state = {"cursor": source.since}

            def params(cursor: str | None, service: str = service) -> dict[str, Any]:
                query: dict[str, Any] = {
                    "service_ids[]": service,
                    "sort_by": "created_at:asc",
                    "time_zone": "UTC",
                    "limit": 100,
                }
                if cursor is None:
                    return query | {"date_range": "all"}
                return query | {"since": cursor, "until": _stamp(_window_end(cursor, now))}

            def commit(
                records: list[Record], new: dict[str, Any], name: str = name, service: str = service
            ) -> None:
                def write(store: Store) -> Any:
                    return ingest_records(
                        store,
                        overlay_stored(store, records) if records else [],
                        settings,
                        source=f"sync:pagerduty:{service}",
                        name=f"pagerduty {service}",
                        sync_state={name: new},
                    )

                written = with_store(write)
                for kind, counts in written.counts.items():
                    result.counts.setdefault(kind, WriteCounts()).add(counts)

            def shown(p: StreamProgress, label: str = f"service {service} incidents") -> None:
                left = client.budget.describe()
                budget = f", rate limit left {left}" if left else ""
                progress(f"{label}: {p.items:,} read{budget}", p.items, None)

            stream = Stream(
                name="incidents",
                path="incidents",
                items_key="incidents",
                params=params,
                map=lambda incident: incident_record(incident, options),
                paginator=OffsetMore(limit=100),
                cursor_field="created_at",
                newest_first=False,
                # PagerDuty answers at most offset + limit = 10,000: more pages is a loop
                max_pages=10_000 // 100 + 1,
                is_open=lambda incident: (
                    incident.get("status") != "resolved"
                    and _time(incident["created_at"]) >= give_up_before
                ),
            )
            while True:
                total += read_stream(client, stream, state, commit, on_page=shown).items
                # PagerDuty searches six months at most: a cursor older than that is read a
                # window at a time, each moving the cursor to its end
                state = with_store(lambda store: store.sync_state(name))  # noqa: B023
                cursor = (state or {}).get("cursor")
                if cursor is None or (state or {}).get("resume"):
                    break
                end = _window_end(cursor, now)
                # an open incident holding the cursor is recent (`open_days`): read up to now
                if end >= now or (state or {}).get("held"):
                    break
                state = {**(state or {}), "cursor": _stamp(end), "etag": None}
                with_store(lambda store: store.save_sync_state(name, state))  # noqa: B023
        requests = client.requests
    n = len(source.services)
    result.summary = (
        f"{n:,} service{'' if n == 1 else 's'}: {total:,} incidents ({requests:,} request(s))"
    )
    return result
