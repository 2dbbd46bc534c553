"""Dashboard routes: thin — authenticate, read the filters from the URL, build the view in the
store's worker thread, and serve it from a cache keyed by the store's data version.

A page is computed once per (page, filters, team scope, day) and data version, then served from
memory, so only the first load pays for the engine. After a write (a new data version) the page of
the previous version is served at once, marked as such (a note in the page, the
`Heatlens-Stale` header), while the new one is built in the background; the engine's model
(heatlens.metrics.model) is rebuilt only for the record types the write touched, and the server
starts that as soon as the write commits (heatlens.web.warm), not at the next page. Login turns a
read token into a session cookie (see `heatlens.web.auth`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import escape

from heatlens.errors import ConfigError, HeatlensError
from heatlens.metrics import Request as MetricsRequest
from heatlens.metrics.catalog import GRAINS
from heatlens.metrics.explain import parse_segments
from heatlens.metrics.periods import parse_day
from heatlens.report.explain import csv_of
from heatlens.report.html import delivery, heat, impact, pages, records
from heatlens.report.html.filters import Filters, parse_filters
from heatlens.report.html.present import Links, View
from heatlens.settings import Settings
from heatlens.store import Store
from heatlens.store.tokens import has_tokens, verify_token
from heatlens.web import auth
from heatlens.web.body import read_body
from heatlens.web.cost import bound
from heatlens.web.errors import ApiError
from heatlens.web.refusals import activity
from heatlens.web.service import Service

log = logging.getLogger("heatlens.web")
router = APIRouter(include_in_schema=False)
CACHE_PAGES = 256
LOGIN_BODY_LIMIT = 16 * 1024
USER_MARK = "\u2063heatlens-user\u2063"  # where a cached page shows who is logged in

Builder = Callable[[Store, Settings, Filters, Links, datetime], View]


class PageCache:
    """The last rendered pages, least recently used evicted first; each page is kept with the
    data version it shows, so that after a write the previous version's page can be served
    while the new one is built in the background (`refreshing`)."""

    def __init__(self, size: int = CACHE_PAGES) -> None:
        self.size = size
        self._pages: OrderedDict[Hashable, tuple[int, str]] = OrderedDict()
        self._lock = threading.Lock()
        # pages being rebuilt for a newer data version (key → task), at most one each
        self.refreshing: dict[Hashable, asyncio.Task[None]] = {}

    def get(self, key: Hashable) -> tuple[int, str] | None:
        with self._lock:
            page = self._pages.get(key)
            if page is not None:
                self._pages.move_to_end(key)
            return page

    def put(self, key: Hashable, version: int, html: str) -> None:
        with self._lock:
            kept = self._pages.get(key)
            if kept is not None and kept[0] > version:
                return  # a newer version's page got there first
            self._pages[key] = (version, html)
            self._pages.move_to_end(key)
            while len(self._pages) > self.size:
                self._pages.popitem(last=False)


STALE_MARK = "<!--heatlens-stale-->"  # where a page served from an older version says so


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status)


def _nav(store: Store, teams: tuple[str, ...]) -> dict[str, Any]:
    """Teams (not groups) and capabilities for the menus and filters; a team-scoped session
    sees only its teams and none of the organisation-wide pages."""
    if teams:
        return {"org": False, "teams": list(teams), "capabilities": [], "surveys": []}
    return {
        "org": True,
        "teams": store.leaf_team_ids(),
        "capabilities": store.capability_ids(),
        # survey results are organisation-wide pages (refused to team-scoped sessions)
        "surveys": [str(r["id"]) for r in store.rows("survey")],
    }


async def _access(request: Request) -> auth.Access:
    return await auth.authenticate(request, browser=True)


def _not_reader(access: auth.Access) -> HTMLResponse:
    """A login whose token may not read (an ingest token): no page shows it anything."""
    assert access.token is not None
    return _html(
        pages.message(
            "Not for this token",
            f"Token {access.token.id} has scope {access.token.scope!r}; the dashboard needs a "
            "read (or admin) token.",
        ),
        403,
    )


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)


def _refuse(access: auth.Access, what: str) -> HTMLResponse:
    teams = ", ".join(access.teams)
    return _html(
        pages.message(
            "Not for this login",
            f"This login may read teams {teams} only; {what} shows other teams' or "
            f"organisation-wide numbers. Open your team's page instead.",
            user=access.user,
        ),
        403,
    )


async def _serve(
    request: Request,
    key: tuple[Hashable, ...],
    build: Callable[[Store, datetime], View],
    access: auth.Access,
    asked: MetricsRequest | None = None,
) -> Response:
    """The cached page for `key`, or build, render and cache it — once `asked`, the range it
    covers, is within the server's cost bound (heatlens.web.cost)."""
    service: Service = request.app.state.service
    cache: PageCache = request.app.state.pages
    started = time.perf_counter()
    try:
        version = await service.lookup(Store.data_version)
        now = datetime.now(UTC)
        today = now.astimezone(ZoneInfo(service.settings.timezone)).date()
        # pages are shared by logins of the same team scope; the header's user name is filled in
        # per request. The data version is not part of the key: a page of an older version is
        # served (marked) while the new one is built in the background.
        full = (*key, access.teams, access.user is not None, today)

        def render(store: Store) -> str:
            view = build(store, now)
            nav = _nav(store, access.teams)
            return pages.page(view, nav=nav, user=USER_MARK if access.user else None)

        async def refresh() -> None:
            try:
                cache.put(full, version, await service.run(render))
            except Exception as exc:  # the next request tries again
                log.error("dashboard: refreshing %s failed: %s", key[0], exc)
            finally:
                cache.refreshing.pop(full, None)

        kept = cache.get(full)
        stale = kept is not None and kept[0] < version
        if kept is not None and stale:
            if full not in cache.refreshing:
                cache.refreshing[full] = asyncio.create_task(refresh())
            shown, html = kept
        elif kept is not None:
            shown, html = kept
        else:
            running = cache.refreshing.get(full)
            if running is not None:
                await asyncio.shield(running)
            kept = cache.get(full)
            if kept is not None:
                shown, html = kept
            else:
                if asked is not None:
                    await bound(request, asked, views=True)
                html = await service.run(render)
                shown = version
                cache.put(full, version, html)
        note = ""
        if stale:
            note = (
                f'<p class="stale" role="status">Updating — showing data as of version {shown} '
                f"(the store is at version {version}); reload in a moment.</p>"
            )
        html = html.replace(STALE_MARK, note, 1)
        if access.user:
            html = html.replace(USER_MARK, str(escape(access.user)))
        response = _html(html)
        # the server's time for this page (bench/dashboard.py reads it; so do browsers' tools)
        ms = (time.perf_counter() - started) * 1000
        response.headers["Server-Timing"] = f"page;dur={ms:.1f}"
        # the data version the page shows, and (while a newer one is being built) the store's
        response.headers["Heatlens-Data-Version"] = str(shown)
        if stale:
            response.headers["Heatlens-Stale"] = str(version)
        return response
    except ConfigError as exc:
        return _html(pages.message("Cannot show this page", str(exc), user=access.user), 400)
    except ApiError as exc:
        page = _html(pages.message("Cannot show this page", exc.message, user=access.user))
        page.status_code = exc.status
        page.headers.update(exc.headers or {})
        return page
    except HeatlensError as exc:
        log.error("dashboard: %s", exc)
        return _html(pages.message("Something went wrong", str(exc), user=access.user), 500)


async def _page(
    request: Request,
    name: str,
    builder: Callable[..., View],
    *args: str,
    default_grain: str,
    org_wide: bool,
    team: str | None = None,
    per_team_filter: bool = False,
    ranged: bool = True,
    key_extra: Hashable = None,
) -> Response:
    access = await _access(request)
    if not access.allowed:
        return _to_login(request)
    if not access.permits("read"):
        return _not_reader(access)
    try:
        filters = parse_filters(request.query_params, default_grain)
    except ConfigError as exc:
        return _html(pages.message("Cannot show this page", str(exc), user=access.user), 400)
    if access.teams and name == "overview":
        return RedirectResponse("/teams/" + quote(access.teams[0], safe=""), status_code=303)
    if access.teams:
        # a team-scoped login reads per-team numbers of its teams only: a team's page, or a
        # page whose team filter makes every number on it that team's
        asked = team or (filters.team if per_team_filter else None)
        if asked is None and org_wide:
            return _refuse(access, f"the {name} page")
        if asked is not None and asked not in access.teams:
            return _refuse(access, f"team {asked}'s numbers")
    service: Service = request.app.state.service

    def build(store: Store, now: datetime) -> View:
        return builder(store, service.settings, filters, Links(), now, *args)

    span = MetricsRequest(filters.grain, filters.start, filters.end) if ranged else None
    return await _serve(request, (name, args, filters, key_extra), build, access, span)


@router.get("/", response_class=HTMLResponse)
async def overview_page(request: Request) -> Response:
    """HEAT scorecard per capability, DORA with tiers, the portfolio chart."""
    return await _page(request, "overview", heat.overview, default_grain="month", org_wide=True)


@router.get("/capabilities/{name}", response_class=HTMLResponse)
async def capability_page(request: Request, name: str) -> Response:
    """One capability: adoption curve, task outcomes, durations, CSAT, failing actions."""
    return await _page(
        request,
        "capability",
        heat.capability,
        name,
        default_grain="week",
        org_wide=True,
        per_team_filter=True,
    )


@router.get("/teams/{name}", response_class=HTMLResponse)
async def team_page(request: Request, name: str) -> Response:
    """One team: capabilities used and since when, DORA trend, survey results."""
    return await _page(
        request, "team", heat.team, name, default_grain="month", org_wide=False, team=name
    )


@router.get("/dora", response_class=HTMLResponse)
async def dora_page(request: Request) -> Response:
    """DORA per team and service, tiers, warnings; numbers link to `explain`; sorted by
    `sort` (name or a metric id) in `dir` (asc, desc), narrowed to names containing `q`."""
    params = request.query_params
    sort, direction = params.get("sort") or "", params.get("dir") or ""
    q = (params.get("q") or "").strip()
    return await _page(
        request,
        "DORA",
        delivery.dora,
        sort,
        direction,
        q,
        default_grain="month",
        org_wide=True,
    )


@router.get("/impact", response_class=HTMLResponse)
async def impact_page(request: Request) -> Response:
    """Is the platform helping? Every capability × DORA key as `heatlens impact` judges it, one
    capability in detail (`capability`), the assumptions and the pre-trend warnings."""
    return await _page(request, "impact", impact.helping, default_grain="month", org_wide=True)


@router.get("/services/{name}", response_class=HTMLResponse)
async def service_page(request: Request, name: str) -> Response:
    """One service: owner, DORA per period with the lead time trend, its deployments with their
    result, its incidents; numbers link to `explain`."""
    return await _page(
        request, "service", delivery.service, name, default_grain="month", org_wide=True
    )


@router.get("/data", response_class=HTMLResponse)
async def data_page(request: Request) -> Response:
    """Records per source and type, last delivery per source, webhooks (with the refused
    deliveries this process remembers), syncs, ingest errors."""
    webhooks = activity(request.app)
    # webhook counters and refusals change without a data version bump: key on their version
    version = webhooks.version
    refused = webhooks.snapshot()

    def builder(
        store: Store, settings: Settings, filters: Filters, links: Links, now: datetime
    ) -> View:
        return records.data(store, refused)

    return await _page(
        request,
        "data",
        builder,
        default_grain="week",
        org_wide=True,
        ranged=False,
        key_extra=("webhooks", version),
    )


def _explain_params(request: Request) -> tuple[str, str, date, dict[str, str | None]]:
    """(metric, grain, period, segment) of an explain page or its CSV; a bad one is a
    ConfigError naming the parameter."""
    params = request.query_params
    metric = params.get("metric") or ""
    grain = params.get("grain") or "week"
    if grain not in GRAINS:
        raise ConfigError(f"unknown grain {grain!r}: expected one of {', '.join(GRAINS)}")
    period = parse_day(params.get("period") or None, "period")
    if period is None:
        raise ConfigError("period: expected a date YYYY-MM-DD (a day of the period)")
    return metric, grain, period, parse_segments(params.getlist("segment"))


def _page_number(value: str | None) -> int:
    if not value:
        return 1
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"page {value!r}: expected a page number, 1 or more")
    return int(value)


@router.get("/explain", response_class=HTMLResponse)
async def explain_page(request: Request) -> Response:
    """The records behind one number, as `heatlens explain` lists them: 50 a page (`page`),
    only failures with `failures=True`."""
    access = await _access(request)
    if not access.allowed:
        return _to_login(request)
    if not access.permits("read"):
        return _not_reader(access)
    try:
        metric, grain, period, segment = _explain_params(request)
        page = _page_number(request.query_params.get("page"))
        failures = request.query_params.get("failures") not in (None, "", "False", "false", "0")
    except ConfigError as exc:
        return _html(pages.message("Cannot explain", str(exc), user=access.user), 400)
    if access.teams and segment.get("team") not in access.teams:
        return _refuse(access, "this number")
    service: Service = request.app.state.service

    def build(store: Store, now: datetime) -> View:
        return delivery.explanation(
            store,
            service.settings,
            metric,
            period,
            grain,
            segment,
            now,
            access.teams,
            page=page,
            failures_only=failures,
        )

    where = tuple(sorted(segment.items(), key=str))
    key = ("explain", metric, grain, period, where, page, failures)
    return await _serve(request, key, build, access)


@router.get("/explain.csv")
async def explain_csv(request: Request) -> Response:
    """Every record behind one number as CSV (raw values), with the explain page's parameters;
    read scope, as the page."""
    access = await _access(request)
    if not access.allowed:
        return _to_login(request)
    if not access.permits("read"):
        return _not_reader(access)
    try:
        metric, grain, period, segment = _explain_params(request)
        failures = request.query_params.get("failures") not in (None, "", "False", "false", "0")
    except ConfigError as exc:
        return _html(pages.message("Cannot explain", str(exc), user=access.user), 400)
    if access.teams and segment.get("team") not in access.teams:
        return _refuse(access, "this number")
    service: Service = request.app.state.service
    app = request.app.state.application
    try:
        doc = await service.call(
            app.explain,
            metric,
            period,
            segment,
            grain=grain,
            limit=None,
            teams=access.teams,
            failures_only=failures,
        )
    except HeatlensError as exc:
        return _html(pages.message("Cannot explain", str(exc), user=access.user), 400)
    name = f"{metric}-{grain}-{period.isoformat()}{'-failures' if failures else ''}.csv"
    return Response(
        csv_of(doc),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# -- login ------------------------------------------------------------------------------------


def _safe_next(value: str | None) -> str:
    """Only a path on this server (no scheme, no host, no `//`), so login cannot redirect away."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    """The login form; an open server has nothing to log in to."""
    service: Service = request.app.state.service
    if service.open_api and not await service.lookup(has_tokens):
        return RedirectResponse("/", status_code=303)
    return _html(pages.login(None, _safe_next(request.query_params.get("next"))))


def _same_origin(request: Request) -> bool:
    """False when a browser says the form was posted from another site: SameSite=Strict does not
    stop a cross-site top-level POST, so without this a page elsewhere could log a visitor in
    under its own token. Modern browsers say where a request comes from in `Sec-Fetch-Site`;
    older ones in `Origin` (`null` when the posting page hides it), else `Referer`. Clients that
    send none of them (curl, scripts) are not browsers being tricked."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    sent = request.headers.get("origin") or request.headers.get("referer")
    if sent is None:
        return True
    return urlsplit(sent).netloc.lower() == request.headers.get("host", "").lower()


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Exchange a read (or admin) token for a session cookie; the token is not kept."""
    service: Service = request.app.state.service
    auth.charge(request, 1)
    if not _same_origin(request):
        return _html(pages.login("This form was sent from another site.", "/"), 403)
    try:
        body = await read_body(request, LOGIN_BODY_LIMIT)
    except ApiError:
        return _html(pages.login("The form is too large.", "/"), 413)
    form = parse_qs(body.decode("utf-8", "replace"))
    secret = (form.get("token") or [""])[0].strip()
    next_url = _safe_next((form.get("next") or ["/"])[0])

    def check(store: Store) -> Any:
        return verify_token(store, secret) if secret else None

    token = await service.lookup(check)
    if token is None:
        return _html(pages.login("That token is unknown or revoked.", next_url), 401)
    if not token.allows("read"):
        error = f"Token {token.id} has scope {token.scope!r}; the dashboard needs a read token."
        return _html(pages.login(error, next_url), 403)
    session = auth.sessions(request).create(token)
    response = RedirectResponse(next_url, status_code=303)
    response.set_cookie(
        auth.SESSION_COOKIE,
        session.id,
        max_age=int(service.settings.server_session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session and forget the cookie."""
    if not _same_origin(request):
        return _html(pages.message("Not logged out", "This form was sent from another site."), 403)
    auth.sessions(request).drop(request.cookies.get(auth.SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(auth.SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
