"""Rendering: views through Jinja2 templates into dashboard pages or the self-contained report.

One set of templates serves both. A page links its stylesheet and scripts from /static; the report
inlines the same files, so it opens offline from a file:// URL with nothing fetched from anywhere.
Chart specs travel as JSON data blocks (`<script type="application/json">`), which a
Content-Security-Policy lets through without allowing inline script.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.utils import htmlsafe_json_dumps
from markupsafe import Markup, escape

from heatlens.metrics.catalog import CATALOG, DIMENSION_TITLES, GRAINS
from heatlens.report.html.present import Links, View, show, show_value
from heatlens.version import __version__

WEB = Path(__file__).resolve().parent
STATIC = WEB / "static"
STYLESHEET = "heatlens.css"
# order matters: vega-lite and vega-embed read the `vega` global, the interpreter too
SCRIPTS = (
    "vendor/vega.min.js",
    "vendor/vega-lite.min.js",
    "vendor/vega-embed.min.js",
    "vendor/vega-interpreter.js",
    "dashboard.js",
)


@cache
def environment() -> Environment:
    """The one Jinja2 environment (autoescaping on, undefined names are errors)."""
    env = Environment(
        loader=FileSystemLoader(WEB / "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        show=show,
        show_value=show_value,
        catalog=CATALOG,
        dimension_titles=DIMENSION_TITLES,
        grains=GRAINS,
        version=__version__,
        label=metric_label,
    )
    env.filters["ticks"] = ticks
    return env


def ticks(text: str) -> Markup:
    """Plain text whose `backticked` spans (setting names, fields, commands in the engine's
    warnings and the catalog's descriptions) read as code; everything else is escaped."""
    parts = str(text).split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: leave the text as it is
        return escape(text)
    return Markup("").join(
        Markup("<code>{}</code>").format(p) if i % 2 else escape(p) for i, p in enumerate(parts)
    )


@cache
def asset(name: str) -> str:
    """A static file's text (read once)."""
    return (STATIC / name).read_text(encoding="utf-8")


def metric_label(metric: str) -> str:
    """`dora.lead_time_p50` → `lead time p50`."""
    return metric.split(".", 1)[-1].replace("_", " ")


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]+", "-", text).strip("-") or "x"


def _chart(view: View, name: str, label: str) -> Markup:
    spec = view.charts.get(name)
    if spec is None:
        return Markup("")
    cid = f"chart-{_slug(view.anchor)}-{_slug(name)}"
    return Markup(
        '<figure class="chart"><div class="vis" data-chart="{id}" role="img" '
        'aria-label="{label}"></div></figure>'
        '<script type="application/json" id="{id}">{spec}</script>'
    ).format(id=cid, label=label, spec=htmlsafe_json_dumps(spec))


def fragment(view: View, links: Links) -> Markup:
    """The body of one view."""
    template = environment().get_template("empty.html" if view.empty else view.template)

    def chart(name: str, label: str) -> Markup:
        return _chart(view, name, label)

    html = template.render(
        **view.context, view=view, links=links, chart=chart, filters=view.filters
    )
    return Markup(html)


def page(
    view: View,
    *,
    nav: dict[str, Sequence[Any]],
    user: str | None,
    links: Links | None = None,
) -> str:
    """A dashboard page: header and navigation, the view's filters, its body."""
    links = links or Links()
    return (
        environment()
        .get_template("page.html")
        .render(
            title=view.title,
            view=view,
            body=fragment(view, links),
            links=links,
            nav=nav,
            user=user,
            filters=view.filters,
            fields=view.fields,
            scripts=SCRIPTS,
        )
    )


def message(title: str, text: str, *, user: str | None = None, login: bool = False) -> str:
    """A page that only says something: an error, a refusal, an empty store."""
    return (
        environment()
        .get_template("message.html")
        .render(title=title, text=text, user=user, login=login, links=Links())
    )


def login(error: str | None, next_url: str) -> str:
    """The login form (a read token becomes a session cookie)."""
    return (
        environment()
        .get_template("login.html")
        .render(title="Log in", error=error, next_url=next_url, links=Links(), user=None)
    )


def _inline_script(text: str) -> str:
    """Script text that cannot end its `<script>` element early."""
    return re.sub(r"</(script)", r"<\\/\1", text, flags=re.IGNORECASE)


def report(views: Sequence[View], *, title: str, subtitle: str) -> str:
    """The self-contained HTML report: every view as a section, stylesheet, scripts and chart
    specs inline; no request leaves the file."""
    links = Links(static=True)
    return (
        environment()
        .get_template("report.html")
        .render(
            title=title,
            subtitle=subtitle,
            sections=[(v, fragment(v, links)) for v in views],
            css=Markup(asset(STYLESHEET)),
            scripts=[Markup(_inline_script(asset(s))) for s in SCRIPTS],
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            links=links,
            user=None,
        )
    )
