"""Declared streams: what a vendor API lists, how it pages, and how far a sync has read it.

A `Stream` names a list endpoint (path, query, where the items sit in the answer), its
`Paginator`, the item field that is its incremental cursor, and a `map` from one item to canonical
records (which may fetch more, e.g. a deployment's statuses). `read_stream` walks it page by page
and hands each page's records to `commit` *together with the state that covers them*, so the
caller writes both in one transaction (`ingest_records(..., sync_state=...)`): a sync killed at
any point resumes from the last committed page, and a page read twice writes records that are
replaced by themselves (ids are stable), never counted twice.

The state of one stream (JSON, kept in the store's sync state):

    {"cursor": "2024-05-01T10:00:00Z",   # every item at or after this was read by earlier syncs
     "etag": ["<first page URL>", "<ETag>"],  # an unchanged first page costs no rate limit
     "held": false,                      # an open item holds the cursor: ask unconditionally
     "resume": {"url": …, "top": …, "hold": …} | null}   # a sync interrupted mid-way

Lists come newest first (GitHub's runs and deployments) or oldest first (`newest_first=False`):
newest first, the walk stops at the first item older than the cursor and the cursor moves to the
newest item seen only once the walk is complete; oldest first, each page moves it. An item the
stream says is still `open` (a run not completed, a deployment with no final status) holds the
cursor at its own time so a later sync reads it again.

Paginators (after dlt's and the Singer SDK's): `LinkHeader` (GitHub, GitLab keyset),
`NextPageHeader` (GitLab offset `X-Next-Page`), `OffsetMore` (PagerDuty `offset`/`more`). The walk
guards against a loop: a next page already visited is an error, not an endless sync.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from heatlens.connectors.http import HttpClient, Page
from heatlens.errors import ConfigError, ConnectorError
from heatlens.store import Store

__all__ = [
    "LinkHeader",
    "NextPageHeader",
    "OffsetMore",
    "PageRequest",
    "Paginator",
    "Stream",
    "StreamProgress",
    "read_stream",
]

Record = dict[str, Any]
Commit = Callable[[list[Record], dict[str, Any]], None]


@dataclass(frozen=True)
class PageRequest:
    url: str
    params: Mapping[str, Any] | None = None

    def key(self) -> str:
        return f"{self.url}?{sorted((self.params or {}).items())}"


class Paginator(Protocol):
    def next(self, request: PageRequest, page: Page, items: list[Any]) -> PageRequest | None:
        """The request of the page after `page` (None: it was the last)."""
        ...


class LinkHeader:
    """RFC 8288 `Link: <…>; rel="next"`: the next URL carries all its parameters."""

    def next(self, request: PageRequest, page: Page, items: list[Any]) -> PageRequest | None:
        nxt = (page.links.get("next") or {}).get("url")
        return PageRequest(nxt) if nxt else None


@dataclass(frozen=True)
class NextPageHeader:
    """A header naming the next page number (GitLab's `X-Next-Page`; empty on the last)."""

    header: str = "x-next-page"
    param: str = "page"

    def next(self, request: PageRequest, page: Page, items: list[Any]) -> PageRequest | None:
        number = (page.headers.get(self.header) or "").strip()
        if not number:
            return None
        return PageRequest(request.url, {**(request.params or {}), self.param: number})


@dataclass(frozen=True)
class OffsetMore:
    """`offset`/`limit` parameters and a `more` flag in the body (PagerDuty)."""

    limit: int = 100
    more_field: str = "more"

    def next(self, request: PageRequest, page: Page, items: list[Any]) -> PageRequest | None:
        if not (isinstance(page.data, Mapping) and page.data.get(self.more_field)) or not items:
            return None
        import httpx

        # a resumed request carries its offset in the URL, not in params
        params = {**dict(httpx.URL(request.url).params), **dict(request.params or {})}
        offset = int(params.get("offset", 0)) + len(items)
        return PageRequest(request.url, {**params, "offset": offset, "limit": self.limit})


@dataclass
class StreamProgress:
    """What a stream read so far, for the progress line."""

    pages: int = 0
    items: int = 0
    records: int = 0
    not_modified: bool = False


@dataclass(frozen=True)
class Stream:
    """One list endpoint, declared (see the module)."""

    name: str  # "workflow_runs"; with the repository, the key of its state
    path: str
    map: Callable[[Any], list[Record]]  # one item → its records (may fetch more)
    paginator: Paginator = field(default_factory=LinkHeader)
    params: Callable[[str | None], Mapping[str, Any]] = lambda cursor: {}
    items_key: str | None = None  # the answer's list (None: the answer is the list)
    cursor_field: str | None = "created_at"
    newest_first: bool = True
    # an item not final yet holds the cursor at its time (read again next sync)
    is_open: Callable[[Any], bool] = lambda item: False
    max_pages: int = 100_000


def read_stream(
    client: HttpClient,
    stream: Stream,
    state: Mapping[str, Any] | None,
    commit: Commit,
    *,
    on_page: Callable[[StreamProgress], None] = lambda progress: None,
) -> StreamProgress:
    """Read `stream` from where `state` left it, committing each page's records with the state
    that covers them (see the module). Returns what was read."""
    state = dict(state or {})
    cursor: str | None = state.get("cursor")
    resume: dict[str, Any] | None = state.get("resume")
    stored_etag = state.get("etag")
    progress = StreamProgress()
    if resume:
        request = PageRequest(resume["url"])
        top, hold = resume.get("top"), resume.get("hold")
        etag = None
    else:
        request = PageRequest(stream.path, dict(stream.params(cursor)))
        top = hold = None
        # an open item may change where the list does not show it (a deployment's statuses)
        held = state.get("held")
        same = stored_etag is not None and stored_etag[0] == request.key() and not held
        etag = str(stored_etag[1]) if stored_etag is not None and same else None
    first_key = request.key()
    new_etag = stored_etag
    seen: set[str] = set()
    while True:
        if request.key() in seen or progress.pages >= stream.max_pages:
            raise ConnectorError(
                client.redact(
                    f"{client.vendor.name}: {stream.path}: page {request.url} came back again "
                    f"after {progress.pages} page(s): the API is paging in a loop; report this "
                    "with the URL"
                )
            )
        seen.add(request.key())
        page = client.get(
            request.url, request.params, etag=etag, what=f"{stream.name} ({stream.path})"
        )
        etag = None  # only the first page is asked conditionally
        progress.pages += 1
        if page.not_modified:
            progress.not_modified = True
            on_page(progress)
            return progress
        if request.key() == first_key and not resume and page.etag:
            new_etag = [first_key, page.etag]
        items = _items(page.data, stream.items_key)
        records: list[Record] = []
        done = False
        for item in items:
            at = _field(item, stream.cursor_field)
            if stream.newest_first and cursor and at is not None and at < cursor:
                done = True  # read by an earlier sync (ties are read again: harmless)
                break
            records += stream.map(item)
            progress.items += 1
            if at is not None:
                top = at if top is None or at > top else top
                if stream.is_open(item):
                    hold = at if hold is None or at < hold else hold
        progress.records += len(records)
        nxt = None if done else stream.paginator.next(request, page, items)
        if nxt is None or not items:
            finished = hold if hold is not None else top
            final = {"cursor": _latest(cursor, finished, hold), "etag": new_etag}
            commit(records, {**final, "held": hold is not None})
            on_page(progress)
            return progress
        if stream.newest_first:
            run = {"url": str(_absolute(page, nxt)), "top": top, "hold": hold}
            commit(records, {"cursor": cursor, "etag": stored_etag, "resume": run})
        else:
            moved = hold if hold is not None else top
            run = {"url": str(_absolute(page, nxt)), "top": None, "hold": hold}
            commit(records, {"cursor": _latest(cursor, moved, hold), "resume": run})
        on_page(progress)
        request = nxt


def _latest(cursor: str | None, new: str | None, hold: str | None) -> str | None:
    """The cursor after reading up to `new`: never backwards, unless an open item holds it."""
    if new is None:
        return cursor
    if hold is not None:
        return new  # the oldest open item: read again from there
    return new if cursor is None or new > cursor else cursor


def _absolute(page: Page, request: PageRequest) -> str:
    """A next-page request as one URL (parameters included), to resume from."""
    import httpx

    url = httpx.URL(request.url)
    if url.is_relative_url:
        # a paginator's next page of the same endpoint (`X-Next-Page`, `offset`): the URL the
        # page was answered at, its query replaced by the request's parameters (joining a
        # relative path would repeat a base URL's path, e.g. GitLab's /api/v4)
        url = httpx.URL(page.url).copy_with(query=None)
    if request.params:
        url = url.copy_merge_params({k: str(v) for k, v in request.params.items()})
    return str(url)


def _items(data: Any, key: str | None) -> list[Any]:
    found = data.get(key) if key is not None and isinstance(data, Mapping) else data
    if not isinstance(found, list):
        raise ConnectorError(f"expected a list{f' under {key!r}' if key else ''} in the answer")
    return found


def _field(item: Any, name: str | None) -> str | None:
    if name is None or not isinstance(item, Mapping):
        return None
    value = item.get(name)
    return None if value is None else str(value)


# a sync holds the store only to read a state or write a page: `with_store(fn)` runs `fn(store)`
# under whatever lock the caller keeps (the server's writer), never while a vendor is asked
WithStore = Callable[[Callable[[Store], Any]], Any]


def holding(store: Store | WithStore) -> WithStore:
    """`store` as a WithStore: a caller's own, or one that simply hands over a held store."""
    if callable(store):
        return store

    def with_store(fn: Callable[[Store], Any]) -> Any:
        return fn(store)

    return with_store


def check_since(since: str | None) -> None:
    """`--since` must be an ISO date (or timestamp): a one-line error otherwise."""
    if since is None:
        return
    try:
        datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {since!r}: expected an ISO date, e.g. 2024-01-31") from None
