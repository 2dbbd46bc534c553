"""The CLI's client for a running `heatlens serve` (`--server URL`).

While a server owns a DuckDB store no other process may open it, so every store command sends its
work to the server instead: files are uploaded as they are and ingested there by the same code, and
the answers are the same documents the local commands build (heatlens/operations.py). Server errors
come back as the same HeatlensErrors, so the CLI prints them as it prints local ones.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from heatlens.errors import (
    ConfigError,
    EmptyStoreError,
    HeatlensError,
    InputError,
    StoreError,
    StoreLockedError,
)

CHUNK = 1024 * 1024


class ServerError(HeatlensError):
    """The server could not be reached or answered something unexpected."""


class ServerClient:
    """One server, one token (or none on an open loopback server)."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 600.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--server {url!r}: expected an http:// or https:// URL")
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServerClient:
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

    # -- commands --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = self._call("GET", "/api/v1/admin/status")
        return doc

    def ingest(
        self,
        paths: Sequence[str],
        *,
        fmt: str | None,
        default_type: str | None,
        source: str | None,
        skip_invalid: bool,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Upload every file, then ingest them on the server in one all-or-nothing write.

        The response carries the invalid records' NDJSON (`rejects`) when `skip_invalid`."""
        from heatlens.ingest.formats import detect_format, sniff_format

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
        return result

    def report(
        self,
        grain: str,
        start: date | None,
        end: date | None,
        by: Sequence[str],
        metrics: Sequence[str],
        *,
        changes: bool,
    ) -> dict[str, Any]:
        params: list[tuple[str, str]] = [("grain", grain), ("changes", str(changes).lower())]
        params += [("from", start.isoformat())] if start else []
        params += [("to", end.isoformat())] if end else []
        params += [("by", b) for b in by] + [("metric", m) for m in metrics]
        doc: dict[str, Any] = self._call("GET", "/api/v1/report", params=params)
        return doc

    def report_html(self, grain: str, start: date | None, end: date | None) -> str:
        """The self-contained HTML report, rendered by the server."""
        params = {"grain": grain}
        params |= {"from": start.isoformat()} if start else {}
        params |= {"to": end.isoformat()} if end else {}
        return self._send("GET", "/api/v1/report.html", params=params).text

    def explain(
        self, metric: str, period: date, grain: str, segment: dict[str, str | None], limit: int
    ) -> dict[str, Any]:
        params = [("metric", metric), ("period", period.isoformat()), ("grain", grain)]
        params += [("limit", str(limit))]
        params += [("segment", f"{k}={v or ''}") for k, v in segment.items()]
        doc: dict[str, Any] = self._call("GET", "/api/v1/explain", params=params)
        return doc

    def check(self, as_of: date) -> dict[str, Any]:
        doc: dict[str, Any] = self._call("GET", "/api/v1/check", params={"as_of": str(as_of)})
        return doc

    def delete(self, **selection: Any) -> dict[str, Any]:
        doc: dict[str, Any] = self._call("POST", "/api/v1/admin/delete", json=selection)
        return doc

    def token_create(self, scope: str, name: str | None, teams: Sequence[str]) -> dict[str, Any]:
        body = {"scope": scope, "name": name, "teams": list(teams)}
        doc: dict[str, Any] = self._call("POST", "/api/v1/admin/tokens", json=body)
        return doc

    def token_list(self) -> dict[str, Any]:
        doc: dict[str, Any] = self._call("GET", "/api/v1/admin/tokens")
        return doc

    def token_revoke(self, token_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = self._call("POST", f"/api/v1/admin/tokens/{token_id}/revoke")
        return doc


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
