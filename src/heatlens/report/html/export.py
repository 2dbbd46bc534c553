"""`heatlens report --format html`: the dashboard's views in one self-contained file to send to
leadership — overview, DORA and every capability, with stylesheet, scripts and charts inline, so
it opens offline from a file:// URL and fetches nothing.

The views, templates and chart specs are the dashboard's own, so the report and the pages cannot
disagree; they only arrange the engine's rows and the scorecard, so anonymity and the metric
definitions hold here too. It lives beside the dashboard (web/) rather than in report/, so the
import direction of DESIGN §2 (cli → web → report) holds.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from heatlens.metrics import Request
from heatlens.settings import Settings
from heatlens.store import Store


def render_html(store: Store, settings: Settings, request: Request) -> str:
    """The report as one HTML document.

    From `request`: `grain`, `start`, `end` and `now` (as `heatlens report` gives them); `by` and
    `metrics` are not used — the report has the dashboard's fixed sections:

    - the overview: the scorecard of the last complete period before `end` (default: now) at
      the grain when it is a calendar grain (day to quarter), else month; at grain `all`, every
      capability over the range;
    - DORA trends: organisation-wide DORA over every period of the range (at grain `all`, by the
      grain that suits the data's span);
    - DORA per team and service for the last complete period of the range (by week at grain
      day);
    - one section per capability with records in the range.

    A section whose records lie outside the range says where they are and the command that
    shows them; nothing is computed for it, so the report's time follows what it shows.
    """
    from heatlens.analysis.coverage import coverage
    from heatlens.metrics.catalog import CALENDAR_GRAINS, CATALOG
    from heatlens.metrics.engine import resolve
    from heatlens.metrics.periods import calendar_next
    from heatlens.report.html import delivery, heat, pages, present
    from heatlens.report.html.filters import Filters
    from heatlens.report.html.present import Links, View

    now = request.now or datetime.now(UTC)
    links = Links(static=True)
    tz = settings.timezone
    grain = request.grain
    _, start, end, _ = resolve(
        Request(grain, request.start, request.end, now=now), settings, tables=store
    )
    card = grain if grain in CALENDAR_GRAINS or grain == "all" else "month"
    # DORA of the scored period is the DORA section's (the same last complete period), except
    # at grain day, where that section is by week
    views: list[View] = [
        heat.overview(
            store,
            settings,
            Filters(card, request.start, request.end),
            links,
            now,
            with_dora=grain == "day",
        )
    ]
    if store.is_empty():
        return pages.report(views, title="heatlens report", subtitle=f"grain {grain}")

    def metrics(names: tuple[str, ...]) -> list[Any]:
        return [CATALOG[m] for m in names]

    # trends over every period of the range
    trend_grain = grain
    if grain == "all":
        found = coverage(store, metrics(heat.TREND_DORA), start, end, tz).suggestion()
        trend_grain = found[0] if found else "month"
    views.append(heat.trends(store, settings, Filters(trend_grain, start, end), links, now))

    # DORA per team and service, for the last complete period of the range
    dora_grain = grain if grain != "day" else "week"
    if dora_grain == "all":
        shown: tuple[date, date] | None = (start, end)
    else:
        last = present.last_complete(dora_grain, start, end, tz, now)
        shown = None if last is None else (last, calendar_next(last, dora_grain))
    dora_cov = None if shown is None else coverage(store, metrics(DORA_NEEDS), *shown, tz)
    if shown is not None and dora_cov is not None and not dora_cov.empty:
        views.append(delivery.dora(store, settings, Filters(dora_grain, *shown), links, now))
    else:
        views.append(_no_dora(dora_grain, shown, start, end))

    # one section per capability with records in the range
    filters = Filters(grain, start, end)
    cap_cov = coverage(store, metrics(heat.CAPABILITY_METRICS), start, end, tz)
    if not cap_cov.empty:
        shared = heat.capability_rows(store, settings, filters, now)
        held = {r.segment.get("capability") for r in shared.report.rows if r.value}
        for name in store.capability_ids():
            if name in held:
                views.append(heat.capability(store, settings, filters, links, now, name, shared))
    last_day = end - timedelta(days=1)
    subtitle = f"grain {grain} · {start} to {last_day}"
    return pages.report(views, title="heatlens report", subtitle=subtitle)


# the records DORA per team and service reads (delivery.DORA_METRICS)
DORA_NEEDS = (
    "dora.deployments",
    "dora.recovery_time_p50",
)


def _no_dora(grain: str, shown: tuple[date, date] | None, start: date, end: date) -> Any:
    """The DORA section when its period holds no deployment or incident: which period that is;
    the trends section above shows the whole range."""
    from heatlens.report.html.present import View

    view = View("DORA", "empty.html", "dora")
    if shown is None:
        text = (
            f"No {grain} of {start} to {end - timedelta(days=1)} has ended yet, so DORA per "
            "team and service has no complete period to show."
        )
    else:
        text = (
            f"No deployments or incidents in the last complete {grain} ({shown[0]} to "
            f"{shown[1] - timedelta(days=1)}), so DORA per team and service has nothing to "
            "show there; the DORA trends above show every period of the range."
        )
    view.empty = text
    view.context["where"] = {"text": text, "links": [], "stored": True}
    return view


def report_policy(html: str) -> str:
    """A Content-Security-Policy for serving the report over HTTP: exactly its own inline scripts
    and stylesheet (by SHA-256), nothing fetched. (From a file:// URL no policy applies.)"""

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        digests = {hashlib.sha256(b.encode("utf-8")).digest() for b in blocks}
        return " ".join(sorted(f"'sha256-{base64.b64encode(d).decode()}'" for d in digests))

    return (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
