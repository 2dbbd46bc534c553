"""One JSON error shape for every error the API gives:
`{"error": {"code": str, "message": str, "details": [...]}}`.

Handlers turn Starlette's HTTP errors (404, 405 …), FastAPI's request validation, heatlens's
error tree and anything unexpected into that shape, so clients parse one thing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from heatlens.errors import (
    ConfigError,
    EmptyStoreError,
    HeatlensError,
    InputError,
    StoreLockedError,
)

log = logging.getLogger("heatlens.web")

# sent on every response, errors included: nothing is to be framed, sniffed or cached (static
# files excepted)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # no referrer leaves for other sites; same-origin posts keep a real Origin (with no-referrer
    # browsers send `Origin: null`, which the login form's cross-site check cannot tell apart)
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# machine-readable codes for the statuses Starlette raises by itself
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
}


class ApiError(Exception):
    """An error a route raises on purpose, with its status, code and details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The one error shape, with the security headers (a 500 is answered outside the
    middleware that adds them to everything else)."""
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return JSONResponse(body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def problem_details(exc: InputError) -> list[dict[str, Any]]:
    """Ingest problems as `{index, field, reason, text}`: index is the record's 1-based position
    (the line, for an uploaded file), `text` the whole line the CLI prints, location included."""
    return [
        {
            "index": getattr(p, "line", None),
            "field": getattr(p, "field", None),
            "reason": getattr(p, "message", str(p)),
            "text": str(p),
        }
        for p in exc.problems
    ]


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"field": ".".join(str(p) for p in e.get("loc", ())), "reason": e.get("msg", "")}
        for e in exc.errors()
    ]
    return error_response(422, "invalid_request", "the request is invalid", details)


async def _heatlens_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HeatlensError)
    if isinstance(exc, InputError):
        return error_response(422, "invalid_records", str(exc), problem_details(exc))
    if isinstance(exc, ConfigError):
        return error_response(400, "bad_request", str(exc))
    if isinstance(exc, StoreLockedError):
        return error_response(503, "store_busy", str(exc))
    if isinstance(exc, EmptyStoreError):
        return error_response(409, "empty_store", str(exc))
    log.error("store or engine error: %s", exc)
    return error_response(500, "internal_error", str(exc))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # the message of an unexpected error may leak internals: log it, answer generically
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal server error; see the server log")


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one shape."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HeatlensError, _heatlens_error)
    app.add_exception_handler(Exception, _unexpected)


async def error_for(request: Request, exc: Exception) -> JSONResponse:
    """The response `install`'s handlers give for `exc` (for routes answered outside FastAPI's
    routing: heatlens.web.lean)."""
    if isinstance(exc, ApiError):
        return await _api_error(request, exc)
    if isinstance(exc, StarletteHTTPException):
        return await _http_error(request, exc)
    if isinstance(exc, HeatlensError):
        return await _heatlens_error(request, exc)
    return await _unexpected(request, exc)
