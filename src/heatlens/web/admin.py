"""Routes the CLI needs to work through a running server (`heatlens --server URL …`).

While `serve` owns a DuckDB store, no other process may open it; these routes run the
application's operations (ingest of uploaded files, status, delete, tokens, the report with its
significance column, check) — the very methods the local CLI calls (heatlens.application), so both
give the same documents; writes go through the server's one writer. Everything under
/api/v1/admin needs an admin token (or an open loopback server); the reports need a read token.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from heatlens.analysis.impact import GRAIN as IMPACT_GRAIN
from heatlens.application import LocalApplication
from heatlens.application.documents import changes_doc
from heatlens.errors import InputError
from heatlens.metrics import Request as MetricsRequest
from heatlens.metrics.periods import parse_day
from heatlens.store.tokens import Token
from heatlens.web.api import ReportQuery, keep_teams, report_teams, teams_only
from heatlens.web.auth import require
from heatlens.web.body import body_schema, json_body
from heatlens.web.cost import bound
from heatlens.web.errors import ApiError, problem_details
from heatlens.web.refusals import activity
from heatlens.web.service import Service
from heatlens.web.uploads import Uploads

router = APIRouter()
ADMIN = [Depends(require("admin"))]


async def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(_service)]


async def _application(request: Request) -> LocalApplication:
    application: LocalApplication = request.app.state.application
    return application


AppDep = Annotated[LocalApplication, Depends(_application)]


def _uploads(request: Request) -> Uploads:
    uploads: Uploads = request.app.state.uploads
    return uploads


# -- status and ingest -----------------------------------------------------------------------


@router.get("/api/v1/admin/status", dependencies=ADMIN)
async def status(request: Request, service: ServiceDep, app: AppDep) -> dict[str, Any]:
    """Records per type and source, schema and data version (`heatlens status`), and this
    process's refused webhook deliveries (kept in memory, never stored), and the engine's model
    as this process built it ahead of the pages (`model.built_version`: the data version it was
    last built at; heatlens.web.warm)."""
    doc = await service.call(app.status)
    return {
        **doc,
        "webhook_refusals": activity(request.app).snapshot(),
        "model": service.warmer.status(),
    }


@router.put("/api/v1/admin/uploads/{name}", dependencies=ADMIN, status_code=201)
async def upload(name: str, request: Request, service: ServiceDep) -> dict[str, Any]:
    """Receive one file as it is (any format ingest reads), streamed to disk; returns its id."""
    uploads = _uploads(request)
    limit = service.settings.server_max_upload_bytes
    upload_id, path = uploads.new(name)
    size = 0
    try:
        with path.open("wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise ApiError(
                        413,
                        "request_too_large",
                        f"{name} is larger than server.max_upload_bytes ({limit:,} bytes)",
                    )
                uploads.grow(upload_id, len(chunk), name)
                fh.write(chunk)
    except ClientDisconnect:
        # the client went away mid-upload: nothing to keep, and nobody to answer
        uploads.discard(upload_id)
        raise ApiError(400, "client_disconnected", f"the upload of {name} was cut off") from None
    except BaseException:
        uploads.discard(upload_id)
        raise
    return {"upload": upload_id, "name": name, "bytes": size}


class UploadRef(BaseModel):
    upload: str
    format: Literal["ndjson", "json", "csv", "parquet"] | None = None


class IngestBody(BaseModel):
    uploads: list[UploadRef] = Field(min_length=1)
    type: str | None = None
    source: str | None = None
    skip_invalid: bool = False


def _ingest_uploads(app: LocalApplication, body: IngestBody, uploads: Uploads) -> Any:
    paths = [uploads.path(u.upload) for u in body.uploads]
    kinds = {u.format for u in body.uploads}
    # one format for all files is what ingest takes; mixed formats go by each file's suffix
    fmt = kinds.pop() if len(kinds) == 1 else None
    rejects = paths[0].parent / "rejects.ndjson" if body.skip_invalid else None
    doc = app.ingest(
        [str(p) for p in paths],
        fmt=fmt,
        default_type=body.type,
        source=body.source,
        skip_invalid=body.skip_invalid,
        rejects=rejects,
    )
    if rejects is not None and rejects.exists():
        doc["rejects"] = rejects.read_text(encoding="utf-8")
    return doc


@router.post(
    "/api/v1/admin/ingest",
    dependencies=ADMIN,
    openapi_extra={"requestBody": body_schema(IngestBody)},
)
async def ingest(
    body: Annotated[IngestBody, Depends(json_body(IngestBody))],
    request: Request,
    service: ServiceDep,
    app: AppDep,
) -> dict[str, Any]:
    """Ingest uploaded files in one all-or-nothing write (`heatlens ingest`); the uploads are
    discarded afterwards, whatever the outcome."""
    uploads = _uploads(request)
    try:
        doc: dict[str, Any] = await service.call(_ingest_uploads, app, body, uploads)
    except InputError as exc:
        raise ApiError(422, "invalid_records", str(exc), problem_details(exc)) from None
    finally:
        for u in body.uploads:
            uploads.discard(u.upload)
    return doc


# -- delete ----------------------------------------------------------------------------------


class DeleteBody(BaseModel):
    type_name: str | None = None
    ids: list[str] = []
    source: str | None = None
    ingested_between: list[str] | None = None
    actors: list[str] = []


@router.post(
    "/api/v1/admin/delete",
    dependencies=ADMIN,
    openapi_extra={"requestBody": body_schema(DeleteBody)},
)
async def delete(
    body: Annotated[DeleteBody, Depends(json_body(DeleteBody))], service: ServiceDep, app: AppDep
) -> dict[str, Any]:
    """Delete records or erase people (`heatlens delete`), audit-logged."""
    return await service.call(app.delete, **body.model_dump())


# -- tokens ----------------------------------------------------------------------------------


class TokenBody(BaseModel):
    scope: Literal["ingest", "read", "admin"]
    name: str | None = None
    teams: list[str] = []


@router.get("/api/v1/admin/tokens", dependencies=ADMIN)
async def tokens(service: ServiceDep, app: AppDep) -> dict[str, Any]:
    """Every token, never a secret (`heatlens token list`)."""
    return await service.call(app.list_tokens)


@router.post(
    "/api/v1/admin/tokens",
    dependencies=ADMIN,
    status_code=201,
    openapi_extra={"requestBody": body_schema(TokenBody)},
)
async def token_create(
    body: Annotated[TokenBody, Depends(json_body(TokenBody))], service: ServiceDep, app: AppDep
) -> dict[str, Any]:
    """Create a token; the secret is in this response only (`heatlens token create`)."""
    return await service.call(app.create_token, body.scope, body.name, body.teams)


@router.post("/api/v1/admin/tokens/{token_id}/revoke", dependencies=ADMIN)
async def token_revoke(token_id: str, service: ServiceDep, app: AppDep) -> dict[str, Any]:
    """Revoke a token (`heatlens token revoke`)."""
    return await service.call(app.revoke_token, token_id)


# -- the reports -----------------------------------------------------------------------------


ReadToken = Annotated[Token | None, Depends(require("read"))]


@router.get("/api/v1/report")
async def report(
    http: Request,
    service: ServiceDep,
    app: AppDep,
    token: ReadToken,
    request: ReportQuery,
    changes: bool = False,
) -> dict[str, Any]:
    """What `heatlens report` prints: the report (heatlens.report/v1) and, with changes=true,
    the significance test of the last period against the one before (DESIGN §4)."""
    teams = report_teams(token, request)
    await bound(http, request)
    result = await service.call(app.report, request, changes=changes)
    keep_teams(result.report, teams)
    found = {} if teams else result.changes
    return {"report": result.report.to_json(), "changes": changes_doc(found)}


@router.get("/api/v1/check")
async def check(
    service: ServiceDep, app: AppDep, token: ReadToken, as_of: str | None = None
) -> dict[str, Any]:
    """`heatlens check`: the server's configured targets on the last complete period of each
    target's grain as of `as_of` (default today), and tensions (`heatlens.check/v1`)."""
    teams_only(token, None)  # targets are organisation-wide numbers
    return await service.call(app.check, parse_day(as_of, "as_of"))


@router.get("/api/v1/impact")
async def impact(
    http: Request,
    service: ServiceDep,
    app: AppDep,
    token: ReadToken,
    capability: str,
    metric: Annotated[list[str] | None, Query()] = None,
    grain: str = IMPACT_GRAIN,
    start: Annotated[str | None, Query(alias="from")] = None,
    end: Annotated[str | None, Query(alias="to")] = None,
    min_uses: int = 1,
) -> list[dict[str, Any]]:
    """`heatlens impact`: did adopting `capability` move each `metric` (default: the DORA
    keys)? One `heatlens.impact/v1` document per metric."""
    teams_only(token, None)  # compares teams across the organisation
    first, last = parse_day(start, "from"), parse_day(end, "to")
    # the panel is one report by team: bounded like one
    await bound(http, MetricsRequest(grain, first, last, ("team",), tuple(metric or ())))
    docs: list[dict[str, Any]] = await service.call(
        app.impact,
        capability,
        tuple(metric or ()),
        grain=grain,
        start=first,
        end=last,
        min_uses=min_uses,
    )
    return docs


@router.get("/api/v1/report.html", response_class=HTMLResponse)
async def report_html(
    http: Request,
    service: ServiceDep,
    app: AppDep,
    token: ReadToken,
    grain: str = "week",
    start: Annotated[str | None, Query(alias="from")] = None,
    end: Annotated[str | None, Query(alias="to")] = None,
) -> HTMLResponse:
    """`heatlens report --format html`: the self-contained HTML report, to save and send."""
    teams_only(token, None)  # the report shows organisation-wide numbers
    request = MetricsRequest(grain, parse_day(start, "from"), parse_day(end, "to"))
    await bound(http, request, views=True)
    from heatlens.report.html.export import report_policy

    text = await service.call(app.report_html, request)
    # its own policy: the report's inline scripts and styles, by hash, and nothing fetched
    return HTMLResponse(text, headers={"Content-Security-Policy": report_policy(text)})
