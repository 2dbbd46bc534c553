"""The one HTTP client of API connectors (GitHub, GitLab, PagerDuty): httpx with timeouts, retries
that respect the vendor's rate limits, conditional requests and secrets kept out of messages.

`HttpClient.get` retries
- network errors and 5xx answers, with exponential backoff;
- 429, and a 403 that is a rate limit (GitHub's secondary limits answer 403 with `retry-after`, or
  with `x-ratelimit-remaining: 0` for the primary one): it waits what `Retry-After` says, else until
  the `x-ratelimit-reset` epoch when nothing is left, else at least a minute, growing;
and, when the last answer (a 200 too) left nothing of the rate limit, waits for its reset before
asking again rather than be refused;
and gives up — with a one-line error saying until when — when the wait would exceed `max_wait`.

A request given an ETag sends `If-None-Match`: a 304 comes back as a `Page` with `not_modified`
(GitHub does not count it against the rate limit). Every error and log line passes through
`redact`, so the token never appears in them. Time is read and slept through an injectable
`Clock`, so tests never sleep.

Vendor specifics (header names, how a 4xx is explained to the user) come in as a `Vendor`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from heatlens.errors import ConnectorError

__all__ = [
    "Budget",
    "Clock",
    "HttpClient",
    "HttpError",
    "Page",
    "RateLimited",
    "RetryPolicy",
    "SystemClock",
    "Vendor",
    "make_client",
    "redact",
]

log = logging.getLogger("heatlens.connectors.http")
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


class Clock(Protocol):
    """Wall time (epoch seconds) and a way to wait: the real one, or a fake in tests."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


# tries of a client's very first request when the server cannot be reached at all (a connection
# refused or a host not found before any answer): a wrong --base-url should not take a minute
FIRST_CONTACT_TRIES = 2


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # tries in all, the first included
    backoff: float = 1.0  # first wait after a network error or 5xx, doubling
    limit_backoff: float = 60.0  # first wait on a rate limit that names no time, doubling
    max_wait: float = 15 * 60.0  # a longer wait is an error (run again later)


@dataclass
class Budget:
    """The rate limit left, from the last response's headers (None: not said)."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None  # epoch seconds

    def describe(self) -> str:
        if self.remaining is None:
            return ""
        return f"{self.remaining:,}/{self.limit:,}" if self.limit else f"{self.remaining:,}"


class RateLimited(ConnectorError):
    """The vendor's rate limit is spent for longer than the client may wait."""


class HttpError(ConnectorError):
    """The vendor answered with an error status (after any retries)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _status_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, Mapping) and body.get("message"):
        return str(body["message"])
    return response.reason_phrase


@dataclass(frozen=True)
class Vendor:
    """What differs between vendors' HTTP APIs."""

    name: str  # "GitHub", in messages
    auth_header: Callable[[str], dict[str, str]] = lambda token: {
        "Authorization": f"Bearer {token}"
    }
    headers: Mapping[str, str] = field(default_factory=dict)
    limit_header: str = "x-ratelimit-limit"
    remaining_header: str = "x-ratelimit-remaining"
    reset_header: str = "x-ratelimit-reset"  # epoch seconds
    # is this 403 a rate limit (to wait out) rather than a refusal?
    is_rate_limit: Callable[[httpx.Response], bool] = lambda response: False
    # a final 4xx → the one-line message the user sees (None: a generic one)
    explain: Callable[[httpx.Response, str], str | None] = lambda response, what: None
    token_hint: str = "--token"  # where the token comes from, in messages


@dataclass(frozen=True)
class Page:
    """One answer: its JSON, headers, and whether it was unchanged (304)."""

    url: str
    data: Any
    headers: httpx.Headers
    etag: str | None
    not_modified: bool = False
    links: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def redact(text: str, secrets: list[str]) -> str:
    """`text` with every secret replaced by `***`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class HttpClient:
    """GET JSON from one vendor's API, within its rate limits (see the module)."""

    def __init__(
        self,
        client: httpx.Client,
        vendor: Vendor,
        *,
        secrets: list[str],
        clock: Clock,
        retry: RetryPolicy,
    ) -> None:
        self._client = client
        self.vendor = vendor
        self._secrets = secrets
        self.clock = clock
        self.retry = retry
        self.budget = Budget()
        self.requests = 0  # answers received, 304s and retries included

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        *,
        etag: str | None = None,
        what: str = "",
    ) -> Page:
        """GET `url` (absolute, or relative to the base URL); `what` names it in errors."""
        headers = {"If-None-Match": etag} if etag else {}
        what = what or url
        self._await_budget(what)
        limit_waits = 0
        for attempt in range(1, self.retry.attempts + 1):
            last = attempt == self.retry.attempts
            try:
                response = self._client.get(url, params=params, headers=headers)
            except httpx.TransportError as exc:
                # never reached at all (refused, unknown host): most likely a wrong --base-url,
                # so say so after one retry rather than after a minute of backoff
                unreachable = self.requests == 0 and isinstance(exc, httpx.ConnectError)
                if last or (unreachable and attempt >= FIRST_CONTACT_TRIES):
                    raise ConnectorError(
                        self.redact(
                            f"{self.vendor.name}: {what}: {type(exc).__name__}: {exc} after "
                            f"{attempt} tries; check the network and --base-url, then run again"
                        )
                    ) from None
                self._wait(self.retry.backoff * 2 ** (attempt - 1), f"{what}: {exc}")
                continue
            self.requests += 1
            self._read_budget(response)
            status = response.status_code
            if status == 304:
                return Page(str(response.url), None, response.headers, etag, not_modified=True)
            if status < 300:
                return Page(
                    str(response.url),
                    response.json(),
                    response.headers,
                    response.headers.get("etag"),
                    links={str(k): v for k, v in response.links.items()},
                )
            limited = status == 429 or (status == 403 and self.vendor.is_rate_limit(response))
            if limited:
                wait = self._limit_wait(response, limit_waits)
                limit_waits += 1
                if wait > self.retry.max_wait or last:
                    raise RateLimited(self._exhausted(what, wait))
                self._wait(wait, f"{what}: rate limited ({status})")
                continue
            if status in RETRIED_STATUSES and not last:
                self._wait(self._retry_after(response, attempt), f"{what}: {status}")
                continue
            message = self.vendor.explain(response, what) or (
                f"{self.vendor.name}: {what}: {status} {_status_message(response)}"
                + ("; try again later" if status >= 500 else "")
            )
            raise HttpError(self.redact(message), status)
        raise AssertionError("unreachable")  # pragma: no cover

    def _await_budget(self, what: str) -> None:
        """Nothing left after the last answer (even a 200): wait for the reset before asking
        again, rather than be refused."""
        left, reset = self.budget.remaining, self.budget.reset
        if left != 0 or reset is None or reset <= self.clock.now():
            return
        wait = reset - self.clock.now() + 1.0
        if wait > self.retry.max_wait:
            raise RateLimited(self._exhausted(what, wait))
        self._wait(wait, f"{what}: rate limit spent until its reset")

    def _read_budget(self, response: httpx.Response) -> None:
        h, v = response.headers, self.vendor
        limit, remaining, reset = (
            h.get(v.limit_header),
            h.get(v.remaining_header),
            h.get(v.reset_header),
        )
        if remaining is not None and remaining.strip().isdigit():
            self.budget.remaining = int(remaining)
        if limit is not None and limit.strip().isdigit():
            self.budget.limit = int(limit)
        if reset is not None and reset.strip().isdigit():
            self.budget.reset = float(reset)

    def _retry_after(self, response: httpx.Response, attempt: int) -> float:
        after = _seconds(response.headers.get("retry-after"), self.clock.now())
        return after if after is not None else self.retry.backoff * 2 ** (attempt - 1)

    def _limit_wait(self, response: httpx.Response, earlier: int) -> float:
        """GitHub's rule: `retry-after` if given; else the reset when nothing is left; else at
        least a minute, growing exponentially."""
        after = _seconds(response.headers.get("retry-after"), self.clock.now())
        if after is not None:
            return after
        if self.budget.remaining == 0 and self.budget.reset is not None:
            return max(self.budget.reset - self.clock.now(), 0.0) + 1.0
        return self.retry.limit_backoff * 2**earlier

    def _exhausted(self, what: str, wait: float) -> str:
        until = datetime.fromtimestamp(self.clock.now() + wait, UTC).strftime("%H:%M UTC")
        left = self.budget.describe()
        return self.redact(
            f"{self.vendor.name} rate limit exhausted until {until}"
            + (f" ({left} left)" if left else "")
            + f" while reading {what}: run the sync again after {until} (it resumes where it "
            f"stopped), or use a token with a higher limit"
        )

    def _wait(self, seconds: float, why: str) -> None:
        log.info("%s: retrying in %.0f s", self.redact(why), seconds)
        self.clock.sleep(seconds)


def _seconds(value: str | None, now: float) -> float | None:
    """A `Retry-After` value (seconds, or an HTTP date) → seconds to wait."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        return max(parsedate_to_datetime(value).timestamp() - now, 0.0)
    except (TypeError, ValueError):
        return None


def make_client(
    base_url: str,
    token: str | None,
    vendor: Vendor,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Clock | None = None,
    retry: RetryPolicy | None = None,
    timeout: float = 30.0,
) -> HttpClient:
    """The client of one vendor's API at `base_url`, authenticated with `token` (if any).
    `transport` replaces the network (tests)."""
    headers = {"User-Agent": "heatlens", **vendor.headers}
    if token:
        headers.update(vendor.auth_header(token))
    client = httpx.Client(
        base_url=base_url.rstrip("/") + "/",
        headers=headers,
        timeout=httpx.Timeout(timeout, connect=10.0),
        transport=transport,
        follow_redirects=True,
    )
    return HttpClient(
        client,
        vendor,
        secrets=[token] if token else [],
        clock=clock or SystemClock(),
        retry=retry or RetryPolicy(),
    )
