"""Webhooks: GitHub, GitLab and PagerDuty push their events here (DESIGN §5, issue 15).

`POST /webhooks/github`, `/webhooks/gitlab`, `/webhooks/pagerduty` take a vendor's delivery as it
is sent. Each route, in order:

1. answers 404 when its secret setting (`webhooks.*`) is unset: the source is not configured;
2. reads the body (bounded by `server.max_request_bytes`) and checks its signature in constant
   time — GitHub's `X-Hub-Signature-256` (HMAC-SHA256 of the raw body), GitLab's `X-Gitlab-Token`
   (the shared secret itself), PagerDuty's `X-PagerDuty-Signature` (`v1=<hex>` HMAC-SHA256, one
   per active secret while a secret is rotated: any match passes); a bad or missing one is 401
   and nothing is stored;
3. maps the payload with the vendor's mapping (heatlens.connectors.<vendor>.mapping); an event
   the mapping does not take is answered 202, stored nowhere, and counted;
4. joins the server's one writer's next group (heatlens.web.writer), and in that group's ONE
   transaction: skips a delivery whose id it has seen (`X-GitHub-Delivery`,
   `X-Gitlab-Event-UUID`, PagerDuty's `event.id`) — stored, or earlier in the same group —,
   overlays each partial record on its stored record and on the group's earlier deliveries
   (heatlens.ingest.partial), ingests the result by the file rules, and remembers the delivery id
   — its row is also its count in the source's counters (heatlens.store.deliveries, shown by
   `heatlens status` / `GET /api/v1/admin/status` and the Data page); it answers once the group
   committed. Delivery ids are forgotten after `webhooks.delivery_retention_days` (pruned at
   most once an hour, their counts kept).

Webhooks do not take API tokens: the signature is the credential.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from heatlens.application.documents import counts_doc
from heatlens.connectors.github.mapping import GithubOptions
from heatlens.connectors.github.mapping import map_event as map_github
from heatlens.connectors.gitlab.mapping import GitLabOptions
from heatlens.connectors.gitlab.mapping import map_event as map_gitlab
from heatlens.connectors.pagerduty.mapping import PagerDutyOptions
from heatlens.connectors.pagerduty.mapping import map_event as map_pagerduty
from heatlens.errors import InputError, StoreError
from heatlens.settings import Settings
from heatlens.store import deliveries
from heatlens.web.auth import client_address
from heatlens.web.body import QuickJSON, parse_json, read_body
from heatlens.web.errors import ApiError, problem_details
from heatlens.web.refusals import noting
from heatlens.web.service import Service
from heatlens.web.writer import SYNC_STATE, Hook, StateOf

log = logging.getLogger("heatlens.web")
router = APIRouter()


Record = dict[str, Any]
M = TypeVar("M", bound="_Mapped")


@dataclass(frozen=True)
class Delivery:
    """One verified delivery, mapped: its records, or none and why."""

    source: str
    event: str
    delivery_id: str | None
    records: list[Record]
    reason: str | None


# -- signatures ---------------------------------------------------------------------------------


# bytes hashed per call: hashlib lets go of the GIL for 2,048 bytes or more, and taking it back
# from the writer thread cost the event loop more than the hashing (docs/performance.md)
_HASH_CHUNK = 2_047


def _hmac_hex(secret: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha256)
    view = memoryview(body)
    for at in range(0, len(body), _HASH_CHUNK):
        mac.update(view[at : at + _HASH_CHUNK])
    return mac.hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def github_signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`."""
    return header is not None and _same("sha256=" + _hmac_hex(secret, body), header.strip())


def gitlab_token_ok(secret: str, header: str | None) -> bool:
    """`X-Gitlab-Token: <the secret token>`."""
    return header is not None and _same(secret, header)


def pagerduty_signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """`X-PagerDuty-Signature: v1=<hex>[,v1=<hex>…]`: one signature per active secret while a
    secret is rotated; any of them matching passes (every one is compared)."""
    if header is None:
        return False
    expected = "v1=" + _hmac_hex(secret, body)
    found = [_same(expected, part.strip()) for part in header.split(",") if part.strip()]
    return any(found)


# -- the routes ---------------------------------------------------------------------------------


def _secret(value: SecretStr | None, setting: str, source: str) -> str:
    if value is None or not value.get_secret_value():
        raise ApiError(
            404,
            "webhook_not_configured",
            f"the {source} webhook is not configured on this server: set {setting} "
            "(see docs/webhooks.md)",
        )
    return value.get_secret_value()


def _refused(source: str, request: Request, header: str) -> ApiError:
    client = client_address(request)
    log.warning("%s webhook from %s refused: bad or missing %s", source, client, header)
    return ApiError(
        401,
        "bad_signature",
        f"the {header} header is missing or does not match webhooks settings: nothing was stored",
    )


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_json", "expected a JSON object (the webhook payload)")
    return value


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@router.post("/webhooks/github", status_code=200)
async def github(request: Request) -> JSONResponse:
    """A GitHub webhook delivery (content type `application/json`, any events)."""
    return await take(request, await read_github(request))


@router.post("/webhooks/gitlab", status_code=200)
async def gitlab(request: Request) -> JSONResponse:
    """A GitLab webhook delivery (its `object_kind` says which event)."""
    return await take(request, await read_gitlab(request))


@router.post("/webhooks/pagerduty", status_code=200)
async def pagerduty(request: Request) -> JSONResponse:
    """A PagerDuty V3 webhook delivery (`incident.*` events)."""
    return await take(request, await read_pagerduty(request))


# Each route is two halves: `read_<source>` checks and maps the delivery — it needs no store, so
# an HTTP front process runs it (heatlens.web.fronts) — and `take` writes it and answers.


async def read_github(request: Request) -> Delivery:
    """A verified GitHub delivery, mapped (a refusal is an ApiError, noted)."""
    return await _noted_read("github", request, _github)


async def read_gitlab(request: Request) -> Delivery:
    """A verified GitLab delivery, mapped (a refusal is an ApiError, noted)."""
    return await _noted_read("gitlab", request, _gitlab)


async def read_pagerduty(request: Request) -> Delivery:
    """A verified PagerDuty delivery, mapped (a refusal is an ApiError, noted)."""
    return await _noted_read("pagerduty", request, _pagerduty)


async def _github(request: Request) -> Delivery:
    settings = _settings(request)
    secret = _secret(settings.webhooks_github_secret, "webhooks.github_secret", "GitHub")
    body = await read_body(request, settings.server_max_request_bytes)
    if not github_signature_ok(secret, body, request.headers.get("x-hub-signature-256")):
        raise _refused("github", request, "X-Hub-Signature-256")
    payload = _object(parse_json(body))
    event = request.headers.get("x-github-event", "")
    mapped = _mapped(lambda: map_github(event, payload, GithubOptions.of(settings)), "GitHub")
    return Delivery(
        "github", event, request.headers.get("x-github-delivery"), mapped.records, mapped.reason
    )


async def _gitlab(request: Request) -> Delivery:
    settings = _settings(request)
    secret = _secret(settings.webhooks_gitlab_token, "webhooks.gitlab_token", "GitLab")
    if not gitlab_token_ok(secret, request.headers.get("x-gitlab-token")):
        raise _refused("gitlab", request, "X-Gitlab-Token")
    body = await read_body(request, settings.server_max_request_bytes)
    payload = _object(parse_json(body))
    mapped = _mapped(lambda: map_gitlab(payload, GitLabOptions.of(settings)), "GitLab")
    event = str(payload.get("object_kind") or request.headers.get("x-gitlab-event", ""))
    return Delivery(
        "gitlab", event, request.headers.get("x-gitlab-event-uuid"), mapped.records, mapped.reason
    )


async def _pagerduty(request: Request) -> Delivery:
    settings = _settings(request)
    secret = _secret(settings.webhooks_pagerduty_secret, "webhooks.pagerduty_secret", "PagerDuty")
    body = await read_body(request, settings.server_max_request_bytes)
    if not pagerduty_signature_ok(secret, body, request.headers.get("x-pagerduty-signature")):
        raise _refused("pagerduty", request, "X-PagerDuty-Signature")
    payload = _object(parse_json(body))
    event = payload.get("event") if isinstance(payload.get("event"), dict) else {}
    assert isinstance(event, dict)
    options = PagerDutyOptions(service_map=settings.service_map)
    mapped = _mapped(lambda: map_pagerduty(payload, options), "PagerDuty")
    event_id = event.get("id")
    return Delivery(
        "pagerduty",
        str(event.get("event_type") or ""),
        str(event_id) if event_id else None,
        mapped.records,
        mapped.reason,
    )


async def _noted_read(
    source: str, request: Request, read: Callable[[Request], Awaitable[Delivery]]
) -> Delivery:
    """The delivery `read` gives; a refusal (any 4xx) is noted in the process's memory (never
    in the store: an unauthenticated sender must not make the server write; heatlens.web.refusals)
    — through the store's process when this is a front process."""
    try:
        return await read(request)
    except ApiError as exc:
        if 400 <= exc.status < 500:
            _note(source, request, exc)
        else:
            noting(request.app).answered()
        raise


async def take(request: Request, delivery: Delivery) -> JSONResponse:
    """Write a verified delivery (see `hook`) and answer once it committed; noted like a read."""
    noted = noting(request.app)
    try:
        response = await _take(request.app.state.service, delivery)
    except ApiError as exc:
        if 400 <= exc.status < 500:
            _note(delivery.source, request, exc)
        else:
            noted.answered()
        raise
    noted.answered()
    return response


def _note(source: str, request: Request, exc: ApiError) -> None:
    noting(request.app).refused(
        source,
        exc.status,
        exc.code,
        client_address(request),
        exc.message,
        _event_header(source, request),
    )


def _event_header(source: str, request: Request) -> str:
    header = {"github": "x-github-event", "gitlab": "x-gitlab-event"}.get(source)
    return request.headers.get(header, "") if header else ""


class _Mapped(Protocol):
    @property
    def records(self) -> list[Record]: ...
    @property
    def reason(self) -> str | None: ...


def _mapped(mapping: Callable[[], M], vendor: str) -> M:
    """The mapping's result; a signed payload lacking what its event always carries is a 422."""
    try:
        return mapping()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ApiError(
            422,
            "invalid_payload",
            f"the {vendor} payload lacks what its event carries ({type(exc).__name__}: {exc}); "
            "nothing was stored",
        ) from None


# -- writing ------------------------------------------------------------------------------------


async def _take(service: Service, delivery: Delivery) -> JSONResponse:
    """Write the delivery in the writer's next group (see `hook`) and answer once it committed."""
    _prune_when_due(service)
    try:
        outcome = await service.writer.answer(delivery.records, hook(delivery))
    except InputError as exc:
        raise ApiError(
            422,
            "invalid_records",
            f"the {delivery.source} {delivery.event!r} event maps to invalid records; nothing "
            "was stored",
            problem_details(exc),
        ) from None
    except StoreError as exc:
        raise ApiError(
            503, "store_error", f"{exc}; nothing of this delivery was stored: send it again"
        ) from None
    if outcome.duplicate:
        return QuickJSON({"status": "duplicate", "delivery": delivery.delivery_id})
    if not delivery.records:
        doc = {"status": "ignored", "event": delivery.event, "reason": delivery.reason}
        return QuickJSON(doc, status_code=202)
    result = outcome.result
    stored: dict[str, Any] = {
        "status": "stored",
        "event": delivery.event,
        "records": result.read,
        "counts": counts_doc(result.counts),
        "data_version": outcome.data_version,
    }
    return QuickJSON(stored)


def hook(delivery: Delivery) -> Hook:
    """What the writer does with a verified delivery in its group's ONE transaction: nothing
    when its id was seen before (stored, or earlier in the same group); else its records overlaid
    on the stored ones (and on the group's earlier deliveries) and its id row saved — which is
    its count (heatlens.store.deliveries); a delivery without an id is counted in its source's
    counters row."""
    seen = deliveries.seen_name(delivery.source, delivery.delivery_id)
    reason = None if delivery.records else (delivery.reason or "")

    def state(current: StateOf) -> dict[str, dict[str, Any]]:
        return deliveries.taken(
            current, delivery.source, delivery.delivery_id, delivery.event, reason
        )

    key = (SYNC_STATE, seen) if seen is not None else None
    return Hook(f"webhook:{delivery.source}", key, state)


# -- forgetting delivery ids --------------------------------------------------------------------

PRUNE_EVERY = 3600.0  # seconds between two prunes of the seen delivery ids
_pruned: dict[int, float] = {}  # id(service) → monotonic time of its last prune


def _prune_when_due(service: Service) -> None:
    """Forget delivery ids older than `webhooks.delivery_retention_days`, at most once an hour,
    on the writer (in its turn; no request waits for it)."""
    now = time.monotonic()
    last = _pruned.get(id(service))
    if last is not None and now - last < PRUNE_EVERY:
        return
    _pruned[id(service)] = now
    days = service.settings.webhooks_delivery_retention_days
    future = service.writer.run(lambda store: deliveries.fold(store, days))
    future.add_done_callback(_log_prune)


def _log_prune(future: Future[int]) -> None:
    exc = future.exception()
    if exc is not None:
        log.warning("could not forget old webhook delivery ids: %s", exc)
    elif future.result():
        log.info("forgot %d webhook delivery id(s) past their retention", future.result())
