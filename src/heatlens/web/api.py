"""Routes of the JSON API: thin — parse the request, call ingest or the metric engine through the
service, and return the same documents the CLI prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from heatlens.application import LocalApplication
from heatlens.application.documents import counts_doc
from heatlens.errors import InputError
from heatlens.ingest import quick
from heatlens.metrics import Report
from heatlens.metrics import Request as MetricsRequest
from heatlens.metrics.explain import parse_segments
from heatlens.metrics.periods import parse_day
from heatlens.store import Store
from heatlens.store.tokens import Token
from heatlens.web.auth import require
from heatlens.web.body import QuickJSON, media_type, parse_records, read_body, records_schema
from heatlens.web.cost import bound
from heatlens.web.errors import ApiError, problem_details
from heatlens.web.service import Service
from heatlens.web.writer import Hook, WriteFailed

router = APIRouter()


async def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(_service)]


async def _application(request: Request) -> LocalApplication:
    application: LocalApplication = request.app.state.application
    return application


AppDep = Annotated[LocalApplication, Depends(_application)]


@router.get("/healthz")
async def healthz(service: ServiceDep, app: AppDep) -> dict[str, Any]:
    """Liveness, and the store's data version (it changes with every write that changed records)."""
    version = await service.lookup(Store.data_version)
    return {"status": "ok", "data_version": version}


async def _ingest(
    service: Service,
    records: list[dict[str, Any]],
    hook: Hook | None = None,
    typed: dict[str, pa.Table] | None = None,
) -> dict[str, Any]:
    """Write records through the service's writer; the response document once committed.

    `counts` are this request's own records, as if written alone after the requests grouped
    before it (heatlens.web.writer); `data_version` is the store's after the commit.
    """
    try:
        outcome = await service.ingest(records, hook, typed)
    except InputError as exc:
        # keep ingest's count of invalid records; say what an API client should do
        count = str(exc).split(" in ", 1)[0]
        raise ApiError(
            422,
            "invalid_records",
            f"{count} in the request; nothing was stored: fix them and send the batch again",
            problem_details(exc),
        ) from None
    except WriteFailed as exc:
        raise ApiError(
            503, "store_error", f"{exc}; nothing of this request was stored: send it again"
        ) from None
    if outcome.duplicate:
        return {"duplicate": True}
    result = outcome.result
    return {
        "records": result.read,
        "counts": counts_doc(result.counts),
        "data_version": outcome.data_version,
    }


@router.post(
    "/api/v1/events",
    dependencies=[Depends(require("ingest"))],
    openapi_extra={"requestBody": records_schema()},
)
async def post_events(request: Request, service: ServiceDep) -> QuickJSON:
    """Store canonical records (a JSON array or NDJSON), all or nothing, by the file rules.

    201 when a record was inserted, else 200; a 2xx means the records are committed. Concurrent
    requests are written together in one transaction, each validated and answered on its own:
    `counts` are this request's records as if the requests written with it had been written one
    after another in arrival order (a record an earlier request of the group inserted counts as
    updated or unchanged here), and `data_version` is the store's after the commit.
    """
    return await store_events(request, await read_events(request))


# a request of this many records or more is typed as it is read (heatlens.ingest.quick.typed):
# by an HTTP front process, off the writer's process; a smaller one is typed by the writer with
# its group, which costs less than handing over its typed table
TYPE_FROM = 16


@dataclass(frozen=True)
class Events:
    """The records of a `POST /api/v1/events` body, and their types when known."""

    records: list[dict[str, Any]]
    typed: dict[str, pa.Table] | None = None


async def read_events(request: Request) -> Events:
    """The records of a `POST /api/v1/events` body (read, parsed and typed: no store needed,
    so an HTTP front process does it: heatlens.web.fronts)."""
    settings = request.app.state.settings
    body = await read_body(request, settings.server_max_request_bytes)
    records = parse_records(body, media_type(request))
    return Events(records, quick.typed(records) if len(records) >= TYPE_FROM else None)


async def store_events(request: Request, events: Events) -> QuickJSON:
    """Write the records of `POST /api/v1/events`; the answer once committed."""
    service: Service = request.app.state.service
    doc = await _ingest(service, events.records, typed=events.typed)
    inserted = any(c["inserted"] for c in doc["counts"].values())
    return QuickJSON(doc, status_code=201 if inserted else 200)


ReadToken = Annotated[Token | None, Depends(require("read"))]


def teams_only(token: Token | None, teams_asked: list[Any] | None) -> tuple[str, ...]:
    """A token scoped to teams reads per-team numbers of those teams only (DESIGN §5): org-wide
    numbers and other teams' are refused, so nothing can be recovered by subtraction."""
    if token is None or not token.teams:
        return ()
    allowed = ", ".join(token.teams)
    if teams_asked is None or any(t not in token.teams for t in teams_asked):
        raise ApiError(
            403,
            "forbidden",
            f"token {token.id} may read only teams {allowed}: "
            "segment by team (by=team, or segment=team=…)",
        )
    return token.teams


def report_query(
    grain: str = "week",
    start: Annotated[str | None, Query(alias="from")] = None,
    end: Annotated[str | None, Query(alias="to")] = None,
    by: Annotated[list[str] | None, Query()] = None,
    metric: Annotated[list[str] | None, Query()] = None,
) -> MetricsRequest:
    """The parameters of `heatlens report` as query arguments."""
    return MetricsRequest(
        grain,
        parse_day(start, "from"),
        parse_day(end, "to"),
        tuple(by or ()),
        tuple(metric or ()),
    )


ReportQuery = Annotated[MetricsRequest, Depends(report_query)]


def report_teams(token: Token | None, request: MetricsRequest) -> tuple[str, ...]:
    """The teams a team-scoped token's report is cut down to (() for any other token); a
    report it may not ask for is refused before any work."""
    return teams_only(token, [] if "team" in request.by else None)


def keep_teams(report: Report, teams: tuple[str, ...]) -> None:
    """Cut a report down to `teams`' rows (nothing to do when `teams` is empty)."""
    if teams:
        report.rows = [r for r in report.rows if r.segment.get("team") in teams]
        report.warnings = []  # organisation-wide counts are not the token's to see
        report.coverage = None  # nor are the store's spans


@router.get("/api/v1/metrics")
async def get_metrics(
    http: Request, service: ServiceDep, app: AppDep, token: ReadToken, request: ReportQuery
) -> JSONResponse:
    """The report (`heatlens.report/v1`), with the parameters of `heatlens report`."""
    teams = report_teams(token, request)
    await bound(http, request)
    report = await service.call(app.metrics, request)
    keep_teams(report, teams)
    return JSONResponse(report.to_json())


@router.get("/api/v1/explain")
async def get_explain(
    service: ServiceDep,
    app: AppDep,
    token: ReadToken,
    metric: str,
    period: str,
    grain: str = "week",
    segment: Annotated[list[str] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    every: Annotated[bool, Query(alias="all")] = False,
    failures_only: bool = False,
) -> Response:
    """The records behind one number, with the parameters of `heatlens explain`: `limit`
    records from `offset` (`all` for every one), only failures with `failures_only`."""
    segments = parse_segments(segment or ())
    teams_only(token, [segments["team"]] if "team" in segments else None)
    day = parse_day(period, "period")
    teams = token.teams if token is not None else ()
    doc = await service.call(
        app.explain,
        metric,
        day,
        segments,
        grain=grain,
        limit=None if every else limit,
        teams=teams,
        offset=offset,
        failures_only=failures_only,
    )
    return JSONResponse(doc)
