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
from dataclasses import replace
from datetime import UTC, datetime

from heatlens.metrics import Request
from heatlens.settings import Settings
from heatlens.store import Store


def render_html(store: Store, settings: Settings, request: Request) -> str:
    """The report as one HTML document.

    From `request`: `grain`, `start`, `end` and `now` (as `heatlens report` gives them); `by` and
    `metrics` are not used — the report has the dashboard's fixed sections. The overview's
    scorecard uses the grain when it is a calendar grain (day to quarter), else month, and
    scores the last complete period before `end` (default: now).
    """
    from heatlens.metrics.catalog import CALENDAR_GRAINS
    from heatlens.report.html import delivery, heat, pages
    from heatlens.report.html.filters import Filters
    from heatlens.report.html.present import Links, View

    now = request.now or datetime.now(UTC)
    links = Links(static=True)
    filters = Filters(request.grain, request.start, request.end)
    card_filters = replace(
        filters, grain=request.grain if request.grain in CALENDAR_GRAINS else "month"
    )
    views: list[View] = [heat.overview(store, settings, card_filters, links, now)]
    dora_filters = replace(filters, grain=request.grain if request.grain != "day" else "week")
    views.append(delivery.dora(store, settings, dora_filters, links, now))
    shared = heat.capability_rows(store, settings, filters, now)
    for name in store.capability_ids():
        views.append(heat.capability(store, settings, filters, links, now, name, shared))
    first = views[1].context
    subtitle = f"grain {request.grain}"
    if "start" in first and "end" in first:
        subtitle += f" · {first['start']} to {first['end']}"
    return pages.report(views, title="heatlens report", subtitle=subtitle)


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
