"""Survey routes: the answer form at /s/<token>, the results page /surveys/{id}, and the routes
`heatlens survey … --server URL` calls (the application's survey operations, run here).

The form asks no login — the single-use link is its credential — and works without JavaScript.
Its POST is refused when a browser says it came from another site (the login form's check,
heatlens.web.dashboard.routes), and the link is marked used on the store's one writer, so it
answers once. Uvicorn's access log would print each link with the time it was used; the filter
below writes `/s/…` instead, so no log ties a link to a moment.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from heatlens.application import LocalApplication
from heatlens.application.surveys import FormOutcome
from heatlens.errors import HeatlensError
from heatlens.report.html import pages
from heatlens.report.html.filters import Filters
from heatlens.report.html.present import Links, View
from heatlens.report.html.surveys import form_page, results_view
from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.store.tokens import Token
from heatlens.web.auth import charge, require
from heatlens.web.body import body_schema, json_body, read_body
from heatlens.web.dashboard.routes import _page, _same_origin
from heatlens.web.errors import ApiError
from heatlens.web.service import Service

log = logging.getLogger("heatlens.web")
router = APIRouter()
ADMIN = [Depends(require("admin"))]
FORM_BODY_LIMIT = 64 * 1024
_STATUS = {"form": 200, "thanks": 200, "used": 409, "closed": 410, "not_open": 403, "unknown": 404}


class _RedactSurveyLinks(logging.Filter):
    """Access-log lines show `/s/…` instead of a survey link's secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        path = args[2] if isinstance(args, tuple) and len(args) >= 3 else None
        if isinstance(path, str) and path.startswith("/s/") and isinstance(args, tuple):
            record.args = (*args[:2], "/s/…", *args[3:])
        return True


_access_log = logging.getLogger("uvicorn.access")
if not any(isinstance(f, _RedactSurveyLinks) for f in _access_log.filters):
    _access_log.addFilter(_RedactSurveyLinks())


async def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def _application(request: Request) -> LocalApplication:
    application: LocalApplication = request.app.state.application
    return application


ServiceDep = Annotated[Service, Depends(_service)]
AppDep = Annotated[LocalApplication, Depends(_application)]
ReadToken = Annotated[Token | None, Depends(require("read"))]


# -- the form ---------------------------------------------------------------------------------


def _form_response(outcome: FormOutcome, token: str) -> HTMLResponse:
    status = 422 if outcome.state == "form" and outcome.errors else _STATUS[outcome.state]
    response = HTMLResponse(form_page(outcome, token), status_code=status)
    # nothing of a survey form is kept by the browser or a proxy
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/s/{token}", response_class=HTMLResponse, include_in_schema=False)
async def survey_form(token: str, request: Request, service: ServiceDep, app: AppDep) -> Response:
    """The survey behind a single-use link: a plain form, or why it cannot be answered."""
    charge(request, 1)
    outcome = await service.call(app.survey_form, token)
    return _form_response(outcome, token)


@router.post("/s/{token}", response_class=HTMLResponse, include_in_schema=False)
async def survey_submit(token: str, request: Request, service: ServiceDep, app: AppDep) -> Response:
    """Store one set of answers and use the link up."""
    charge(request, 1)
    if not _same_origin(request):
        page = pages.message(
            "Not sent",
            "This form was sent from another site, so it was not accepted. Open your survey "
            "link again and answer there.",
        )
        return HTMLResponse(page, status_code=403)
    try:
        body = await read_body(request, FORM_BODY_LIMIT)
    except ApiError:
        return HTMLResponse(pages.message("Not sent", "The answers are too long."), 413)
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items() if v}
    try:
        outcome = await service.call(app.submit_answers, token, form)
    except HeatlensError as exc:
        log.error("survey form: %s", exc)
        page = pages.message("Not saved", "Your answers could not be saved; please try again.")
        return HTMLResponse(page, status_code=500)
    return _form_response(outcome, token)


# -- the results page -------------------------------------------------------------------------


@router.get("/surveys/{survey_id}", response_class=HTMLResponse, include_in_schema=False)
async def survey_page(request: Request, survey_id: str) -> Response:
    """One survey's results: per question, distributions, response rate per team, comments."""

    def builder(
        store: Store,
        settings: Settings,
        filters: Filters,
        links: Links,
        now: datetime,
        survey: str,
    ) -> View:
        return results_view(store, settings, survey, now)

    return await _page(
        request,
        "survey",
        builder,
        survey_id,
        default_grain="all",
        org_wide=True,
        ranged=False,
    )


# -- the CLI's routes (`heatlens survey … --server URL`) --------------------------------------


class DefineBody(BaseModel):
    text: str | None = None
    name: str = Field("platform_survey.toml", max_length=200)
    overrides: dict[str, str | int | bool | None] = {}


class InviteBody(BaseModel):
    team: str = Field(min_length=1, max_length=200)
    count: int = Field(ge=1, le=10_000)
    batch: str | None = Field(None, max_length=200)


class ImportBody(BaseModel):
    text: str
    name: str = Field("answers.csv", max_length=200)
    map: dict[str, str] = Field(min_length=1)
    team: str | None = None
    timestamp: str | None = None
    labels: dict[str, dict[str, int]] = {}


@router.get("/api/v1/admin/surveys", dependencies=ADMIN)
async def surveys(service: ServiceDep, app: AppDep) -> dict[str, Any]:
    """Every stored survey (`heatlens survey list`)."""
    return await service.call(app.list_surveys)


@router.post(
    "/api/v1/admin/surveys",
    dependencies=ADMIN,
    openapi_extra={"requestBody": body_schema(DefineBody)},
)
async def define(
    body: Annotated[DefineBody, Depends(json_body(DefineBody))], service: ServiceDep, app: AppDep
) -> dict[str, Any]:
    """Store survey definitions from TOML (`heatlens survey define`)."""
    return await service.call(app.define_surveys, body.text, body.name, body.overrides)


@router.post(
    "/api/v1/admin/surveys/{survey_id}/invitations",
    dependencies=ADMIN,
    status_code=201,
    openapi_extra={"requestBody": body_schema(InviteBody)},
)
async def invite(
    survey_id: str,
    body: Annotated[InviteBody, Depends(json_body(InviteBody))],
    service: ServiceDep,
    app: AppDep,
) -> dict[str, Any]:
    """Single-use links for a team, and the invitation batch (`heatlens survey invite`); the
    secrets are in this response only."""
    return await service.call(app.invite, survey_id, body.team, body.count, batch=body.batch)


@router.get("/api/v1/admin/surveys/{survey_id}/status", dependencies=ADMIN)
async def status(survey_id: str, service: ServiceDep, app: AppDep) -> dict[str, Any]:
    """Links and response rate per team (`heatlens survey status`)."""
    return await service.call(app.survey_status, survey_id)


@router.post(
    "/api/v1/admin/surveys/{survey_id}/import",
    dependencies=ADMIN,
    openapi_extra={"requestBody": body_schema(ImportBody)},
)
async def import_answers(
    survey_id: str,
    body: Annotated[ImportBody, Depends(json_body(ImportBody))],
    service: ServiceDep,
    app: AppDep,
) -> dict[str, Any]:
    """A form tool's CSV export of a survey's answers (`heatlens survey import`)."""
    return await service.call(
        app.import_answers,
        body.text,
        body.name,
        survey_id,
        body.map,
        team=body.team,
        timestamp=body.timestamp,
        labels=body.labels,
    )


@router.get("/api/v1/surveys/{survey_id}/results")
async def results(
    survey_id: str, service: ServiceDep, app: AppDep, token: ReadToken
) -> dict[str, Any]:
    """One survey's results (`heatlens survey results`), organisation-wide."""
    if token is not None and token.teams:
        raise ApiError(
            403, "forbidden", "survey results are organisation-wide: this token reads its teams"
        )
    return await service.call(app.survey_results, survey_id)
