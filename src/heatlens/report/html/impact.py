"""The "Is the platform helping?" page: did adopting each capability move each DORA key?

Every cell is `heatlens impact` for one capability and one DORA metric (heatlens.analysis.impact),
all from one engine call for the panel and one query for adoption. The table gives each verdict;
below it, one capability in detail: the effect by periods since adoption as charts, the naive
contrasts beside the estimate, the pre-trend warnings, and the assumptions in plain words.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from heatlens.analysis.impact import DORA_METRICS, Impact, impacts
from heatlens.metrics.catalog import CALENDAR_GRAINS
from heatlens.report.html import charts
from heatlens.report.html.filters import Filters
from heatlens.report.html.present import EMPTY_STORE, Links, View
from heatlens.report.impact import ASSUMPTIONS, impact_doc, interval, label, signed
from heatlens.settings import Settings
from heatlens.store import Store

TITLE = "Is the platform helping?"


def helping(
    store: Store, settings: Settings, filters: Filters, links: Links, now: datetime
) -> View:
    """Every capability × DORA key: the verdict of the staggered difference-in-differences, and
    the chosen capability (`capability` filter; default: the first with a detectable effect) in
    detail."""
    view = View(
        TITLE,
        "impact.html",
        "impact",
        filters=filters,
        fields=("grain", "from", "to", "capability"),
    )
    if store.is_empty():
        view.empty = EMPTY_STORE
        return view
    grain = filters.grain if filters.grain in CALENDAR_GRAINS else "month"
    capabilities = store.capability_ids()
    view.context.update(
        grain=grain, metrics=DORA_METRICS, rows=[], detail=None, assumptions=ASSUMPTIONS
    )
    if not capabilities:
        return view
    found = impacts(
        store,
        settings,
        capabilities,
        DORA_METRICS,
        grain=grain,
        start=filters.start,
        end=filters.end,
        now=now,
        strict=False,
    )
    docs = {c: [impact_doc(i) for i in found[c]] for c in capabilities}
    view.context["rows"] = [
        {
            "capability": c,
            "href": _pick(filters, c),
            "cells": [_cell(d) for d in docs[c]],
        }
        for c in capabilities
    ]
    chosen = filters.capability if filters.capability in docs else _first_effect(found)
    view.context["detail"] = {
        "capability": chosen,
        "items": [_detail(view, i, d) for i, d in zip(found[chosen], docs[chosen], strict=True)],
        "from": docs[chosen][0]["from"],
        "to": docs[chosen][0]["to"],
    }
    return view


def _pick(filters: Filters, capability: str) -> str:
    return "/impact" + filters.query(capability=capability)


def _first_effect(found: dict[str, list[Impact]]) -> str:
    """The first capability with a detectable effect on any DORA key, else the first."""
    for capability, items in found.items():
        if any(i.enough and i.result and i.result.overall.significant for i in items):
            return capability
    return next(iter(found))


def _cell(doc: dict[str, Any]) -> dict[str, Any]:
    """One verdict as a table cell: the estimate and interval, and its kind (better, worse, no
    detectable effect, not enough data) for its colour and words."""
    verdict = doc["verdict"]
    kind = "none"
    if verdict.startswith("not enough data"):
        kind = "unknown"
    elif verdict.endswith("— better"):
        kind = "better"
    elif verdict.endswith("— worse"):
        kind = "worse"
    unit = doc["unit"]
    return {
        "kind": kind,
        "estimate": signed(doc["estimate"], unit),
        "interval": interval(doc["ci"], unit),
        "verdict": verdict,
        "warning": doc["pre_trend"]["warning"],
        "adopters": doc["adopters"],
    }


def _detail(view: View, item: Impact, doc: dict[str, Any]) -> dict[str, Any]:
    """One metric of the chosen capability: its verdict, the contrasts, and its chart."""
    unit = doc["unit"]
    # the curve's labels share the unit of its largest point
    like = max(
        (p["estimate"] for p in doc["by_period_since_adoption"] if p["estimate"]),
        key=abs,
        default=None,
    )
    points = []
    for p in doc["by_period_since_adoption"]:
        if p["estimate"] is None:
            continue
        lo, hi = p["ci"] or (None, None)
        points.append(
            {
                "k": p["k"],
                "value": p["estimate"],
                "lo": lo,
                "hi": hi,
                "label": signed(p["estimate"], unit, like),
                "interval": interval(p["ci"], unit),
            }
        )
    name = f"impact-{doc['metric']}"
    if points:
        title = f"{label(item.metric).capitalize()}: effect by {doc['grain']}s since adopting"
        view.charts[name] = charts.event_study(points, unit, title)

    def contrast(title: str, part: dict[str, Any]) -> dict[str, str]:
        return {
            "title": title,
            "estimate": signed(part["estimate"], unit),
            "interval": interval(part["ci"], unit),
        }

    return {
        "metric": doc["metric"],
        "chart": name if points else None,
        "verdict": doc["verdict"],
        "warning": doc["pre_trend"]["warning"],
        "counts": (doc["adopters"], doc["never_adopters"], doc["excluded"]),
        "contrasts": [
            contrast("Difference-in-differences (the estimate)", doc),
            contrast("Naive: adopters after vs never adopters", doc["naive"]["adopters_vs_not"]),
            contrast("Naive: adopters after vs before", doc["naive"]["before_after"]),
            contrast(f"Drift before adopting, per {doc['grain']}", doc["pre_trend"]),
        ],
    }
