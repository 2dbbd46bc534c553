"""The application on a running `heatlens serve` (`--server URL`): the methods of
LocalApplication, sent over HTTP.

While a server owns a DuckDB store no other process may open it, so every operation is sent to the
server instead: files are uploaded as they are and ingested there by the same code, and the answers
are the documents the server's LocalApplication builds. Server errors come back as the same
HeatlensErrors, so the CLI prints them as it prints local ones.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from heatlens.application.documents import changes_from_doc
from heatlens.application.local import ReportResult
from heatlens.application.surveys import RemoteSurveyOperations
from heatlens.errors import (
    ConfigError,
    EmptyStoreError,
    HeatlensError,
    InputError,
    StoreError,
    StoreLockedError,
)
from heatlens.metrics.catalog import IMPACT_GRAIN

if TYPE_CHECKING:
    from heatlens.metrics import Request

CHUNK = 1024 * 1024


class ServerError(HeatlensError):
    """The server could not be reached or answered something unexpected."""


class RemoteApplication(RemoteSurveyOperations):
    """One server, one token (or none on an open loopback server)."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 600.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--server {url!r}: expected an http:// or https:// URL")
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteApplication:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A successful response, or the HeatlensError the server's answer means."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerError(
                f"cannot reach the server at {self.url} ({exc.__class__.__name__}: {exc}): "
                "is `heatlens serve` running there?"
            ) from None
        if response.is_success:
            return response
        raise self._error(response)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    def _error(self, response: httpx.Response) -> HeatlensError:
        try:
            error = response.json()["error"]
            code, message = str(error["code"]), str(error["message"])
            details = list(error.get("details") or [])
        except (ValueError, KeyError, TypeError):
            return ServerError(
                f"{self.url} answered {response.status_code} without heatlens's error shape: "
                "is this a heatlens server?"
            )
        where = f"server {self.url}: {message}"
        if code in ("invalid_records", "invalid_request") and response.status_code == 422:
            problems = [d.get("text") or _problem_text(d) for d in details]
            return InputError(message, problems)
        if code == "empty_store":
            return EmptyStoreError(message)
        if code == "store_busy":
            return StoreLockedError(where)
        if code in ("unauthorized", "forbidden"):
            hint = "" if "HEATLENS_TOKEN" in message else " (give a token with HEATLENS_TOKEN)"
            return ConfigError(where + hint)
        if response.status_code >= 500:
            return StoreError(where)
        return ConfigError(where)

    # -- the application's operations -------------------------------------------------------

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = self._call("GET", "/api/v1/admin/status")
        return doc

    def ingest(
        self,
        paths: Sequence[str],
        *,
        fmt: str | None = None,
        default_type: str | None = None,
        source: str | None = None,
        skip_invalid: bool = False,
        rejects: Path | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Upload every file, then ingest them on the server in one all-or-nothing write; the
        invalid records the server set aside are written to `rejects` here."""
        from heatlens.ingest.formats import detect_format, sniff_format

        if skip_invalid and rejects is None:
            raise InputError("--skip-invalid needs --rejects FILE to keep the invalid records")
        uploads = []
        for p in paths:
            if p == "-":
                data = sys.stdin.buffer.read()
                kind = fmt or sniff_format(data[:64])
                name, body = "stdin", _chunks_of(data, progress)
            else:
                path = Path(p)
                kind = detect_format(path, fmt)
                if not path.is_file():
                    raise InputError(f"{p}: no such file")
                name, body = path.name, _file_chunks(path, progress)
            doc = self._call(
                "PUT",
                f"/api/v1/admin/uploads/{name}",
                content=body,
                headers={"Content-Type": "application/octet-stream"},
            )
            uploads.append({"upload": doc["upload"], "format": kind})
        result: dict[str, Any] = self._call(
            "POST",
            "/api/v1/admin/ingest",
            json={
                "uploads": uploads,
                "type": default_type,
                "source": source,
                "skip_invalid": skip_invalid,
            },
        )
        text = result.pop("rejects", None)
        if rejects is not None and text is not None:
            rejects.write_text(text, encoding="utf-8")
        return result

    def report(self, request: Request, *, changes: bool = False) -> ReportResult:
        params: list[tuple[str, str]] = [("grain", request.grain)]
        params += [("changes", str(changes).lower())]
        params += [("from", request.start.isoformat())] if request.start else []
        params += [("to", request.end.isoformat())] if request.end else []
        params += [("by", b) for b in request.by] + [("metric", m) for m in request.metrics]
        doc: dict[str, Any] = self._call("GET", "/api/v1/report", params=params)
        from heatlens.metrics import Report

        report = Report.from_json(doc["report"], by=request.by)
        return ReportResult(report, changes_from_doc(doc["changes"]))

    def report_html(self, request: Request) -> str:
        """The self-contained HTML report, rendered by the server."""
        if request.by or request.metrics:
            raise ConfigError(
                "--format html has the dashboard's fixed sections: drop --by and --metric"
            )
        params = {"grain": request.grain}
        params |= {"from": request.start.isoformat()} if request.start else {}
        params |= {"to": request.end.isoformat()} if request.end else {}
        return self._send("GET", "/api/v1/report.html", params=params).text

    def explain(
        self,
        metric: str,
        period: date,
        segment: dict[str, str | None],
        *,
        grain: str = "week",
        limit: int | None = 50,
        offset: int = 0,
        failures_only: bool = False,
    ) -> dict[str, Any]:
        params = [("metric", metric), ("period", period.isoformat()), ("grain", grain)]
        params += [("limit", str(limit))] if limit is not None else [("all", "true")]
        params += [("offset", str(offset))] if offset else []
        params += [("failures_only", "true")] if failures_only else []
        params += [("segment", f"{k}={v or ''}") for k, v in segment.items()]
        doc: dict[str, Any] = self._call("GET", "/api/v1/explain", params=params)
        return doc

    def check(self, as_of: date | None = None) -> dict[str, Any]:
        params = {"as_of": as_of.isoformat()} if as_of else {}
        doc: dict[str, Any] = self._call("GET", "/api/v1/check", params=params)
        return doc

    def impact(
        self,
        capability: str,
        metrics: Sequence[str] = (),
        *,
        grain: str = IMPACT_GRAIN,
        start: date | None = None,
        end: date | None = None,
        min_uses: int = 1,
    ) -> list[dict[str, Any]]:
        params = [("capability", capability), ("grain", grain), ("min_uses", str(min_uses))]
        params += [("metric", m) for m in metrics]
        params += [("from", start.isoformat())] if start else []
        params += [("to", end.isoformat())] if end else []
        docs: list[dict[str, Any]] = self._call("GET", "/api/v1/impact", params=params)
        return docs

    def delete(self, **selection: Any) -> dict[str, Any]:
        body = {k: list(v) if isinstance(v, tuple) else v for k, v in selection.items()}
        doc: dict[str, Any] = self._call("POST", "/api/v1/admin/delete", json=body)
        return doc

    def create_token(
        self, scope: str, name: str | None = None, teams: Sequence[str] = ()
    ) -> dict[str, Any]:
        body = {"scope": scope, "name": name, "teams": list(teams)}
        doc: dict[str, Any] = self._call("POST", "/api/v1/admin/tokens", json=body)
        return doc

    def list_tokens(self) -> dict[str, Any]:
        doc: dict[str, Any] = self._call("GET", "/api/v1/admin/tokens")
        return doc

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = self._call("POST", f"/api/v1/admin/tokens/{token_id}/revoke")
        return doc

    def sync_git(self, source: Any, **options: Any) -> dict[str, Any]:
        raise self._local_only("sync git")

    def sync_backstage(self, catalog: str, **options: Any) -> dict[str, Any]:
        raise self._local_only("sync backstage")

    def sync_github(self, source: Any, **options: Any) -> dict[str, Any]:
        raise self._local_only("sync github")

    def sync_gitlab(self, source: Any, **options: Any) -> dict[str, Any]:
        raise self._local_only("sync gitlab")

    def sync_pagerduty(self, source: Any, **options: Any) -> dict[str, Any]:
        raise self._local_only("sync pagerduty")

    def _local_only(self, command: str) -> ConfigError:
        return ConfigError(
            f"`heatlens {command}` reads local files into a store it opens itself, not through "
            f"--server {self.url}: run it where the store is, without --server "
            "(or configure it as a [[sync]] entry of the server)"
        )


def _problem_text(detail: dict[str, Any]) -> str:
    where = f"record {detail['index']}: " if detail.get("index") is not None else ""
    return where + str(detail.get("reason") or json.dumps(detail))


def _file_chunks(path: Path, progress: Callable[[int], None] | None) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            if progress:
                progress(len(chunk))
            yield chunk


def _chunks_of(data: bytes, progress: Callable[[int], None] | None) -> Iterator[bytes]:
    for i in range(0, len(data), CHUNK):
        if progress:
            progress(min(CHUNK, len(data) - i))
        yield data[i : i + CHUNK]
