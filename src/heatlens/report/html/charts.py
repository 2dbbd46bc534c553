"""Vega-Lite chart specs (built with Altair) for the dashboard and the HTML report.

Charts only draw numbers the views took from the engine's rows; they aggregate nothing. Colours
are Okabe & Ito's colour-blind-safe palette, and every mark has a tooltip with the exact value, so
no chart relies on colour alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import altair as alt

from heatlens.report.units import DAYS_PER_MONTH

# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour blindnesses
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#000000"]
WIDTH = "container"
HEIGHT = 220

QUADRANTS: tuple[tuple[float, float, str, Literal["left", "right"]], ...] = (
    (0.02, 0.96, "grow awareness", "left"),
    (0.98, 0.96, "invest", "right"),
    (0.02, 0.04, "rethink", "left"),
    (0.98, 0.04, "fix quality", "right"),
)

Spec = dict[str, Any]
Point = dict[str, Any]


def _axis_format(unit: str) -> str:
    return ".0%" if unit == "ratio" else "~s" if unit in ("teams", "users", "tasks") else ",.3~f"


def _finish(chart: alt.TopLevelMixin) -> Spec:
    """The spec with heatlens's look; no schema validation on the request path (tests do it)."""
    themed = chart.configure_range(category=PALETTE).configure_view(stroke=None)
    spec: Spec = themed.to_dict(validate=False)
    return spec


# (unit, largest value from which the next axis unit reads better, axis title, factor)
AXIS_UNITS: dict[str, tuple[tuple[float, str, float], ...]] = {
    "seconds": ((3 * 3600, "hours", 1 / 3600), (180, "minutes", 1 / 60)),
    "hours": ((72, "days", 1 / 24),),
    "per day": ((1, "per day", 1.0), (1 / 7, "per week", 7.0), (0, "per month", DAYS_PER_MONTH)),
}


def axis_unit(points: Sequence[Point], unit: str) -> tuple[str, float]:
    """The axis title and factor that put `points` in the unit a person reads them in, as
    report/units.py does for one value: durations grow into minutes, hours and days, a
    frequency falls from per day to per week and per month (the tooltips keep each value's own
    wording)."""
    values = [abs(float(p["value"])) for p in points if p.get("value") is not None]
    top = max(values, default=0.0)
    for threshold, title, factor in AXIS_UNITS.get(unit, ()):
        if top >= threshold:
            return title, factor
    return unit, 1.0


def trend(points: Sequence[Point], unit: str, title: str, *, band: bool = False) -> Spec:
    """Lines over periods, one per `series`, on an axis in human units (`axis_unit`); with
    `band`, the 95 % interval (`lo`, `hi`) as a shaded area behind each line (rows without an
    interval draw no band)."""
    unit, factor = axis_unit(points, unit)
    if factor != 1.0:
        points = [
            {
                **p,
                **{k: float(p[k]) * factor for k in ("value", "lo", "hi") if p.get(k) is not None},
            }
            for p in points
        ]
    data = alt.Data(values=list(points))
    # one series needs no legend: the title names it
    legend = alt.Legend(orient="bottom") if len({p["series"] for p in points}) > 1 else None
    base = alt.Chart(data).encode(
        # ordinal: one tick per period, labelled by its start, whatever the grain
        x=alt.X("period:O", title=None, axis=alt.Axis(labelAngle=-30, labelOverlap=True)),
        color=alt.Color("series:N", title=None, legend=legend),
    )
    tooltip = [
        alt.Tooltip("series:N", title="series"),
        alt.Tooltip("period:O", title="period"),
        alt.Tooltip("label:N", title="value"),
    ]
    line = base.mark_line(point=True).encode(
        y=alt.Y("value:Q", title=unit, axis=alt.Axis(format=_axis_format(unit))),
        tooltip=tooltip,
    )
    layers: list[alt.Chart] = [line]
    if band:
        area = (
            base.transform_filter("isValid(datum.lo) && isValid(datum.hi)")
            .mark_area(opacity=0.2)
            .encode(y="lo:Q", y2="hi:Q")
        )
        layers.insert(0, area)
    chart = alt.layer(*layers).properties(title=title, width=WIDTH, height=HEIGHT)
    return _finish(chart)


def stacked(points: Sequence[Point], title: str) -> Spec:
    """Shares of a whole per period, stacked (task outcomes: success, failure, error, abandoned)."""
    data = alt.Data(values=list(points))
    order = ["success", "failure", "error", "abandoned"]
    chart = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("period:O", title=None, axis=alt.Axis(labelAngle=-30, labelOverlap=True)),
            y=alt.Y("value:Q", title="share of attempts", axis=alt.Axis(format=".0%")),
            color=alt.Color(
                "series:N",
                title=None,
                sort=order,
                scale=alt.Scale(domain=order, range=[PALETTE[2], PALETTE[1], PALETTE[3], "#999"]),
                legend=alt.Legend(orient="bottom"),
            ),
            order=alt.Order("rank:Q"),
            tooltip=[alt.Tooltip("series:N"), alt.Tooltip("period:O"), alt.Tooltip("label:N")],
        )
        .properties(title=title, width=WIDTH, height=HEIGHT)
    )
    return _finish(chart)


def portfolio(points: Sequence[Point]) -> Spec:
    """Capabilities placed by team adoption rate (x) and CSAT (y), coloured by task success (a
    sequential scale with its legend; a capability without task success is grey): the "adopt
    before you invest" view. Quadrant lines at 50 % name what to do next. The axes run a little
    past 0 and 100 % so a capability at either end is drawn whole, never cut at the plot's edge."""
    data = alt.Data(values=list(points))
    # a margin around [0, 1], so a dot at either end is drawn whole
    scale = alt.Scale(domain=[-0.06, 1.06], nice=False)
    dots = (
        alt.Chart(data)
        .mark_circle(size=260, opacity=0.95, stroke="#222", strokeWidth=0.8, clip=False)
        .encode(
            x=alt.X(
                "adoption:Q",
                title="team adoption rate",
                scale=scale,
                axis=alt.Axis(format=".0%", tickCount=5),
            ),
            y=alt.Y(
                "csat:Q",
                title="CSAT (top-2-box)",
                scale=scale,
                axis=alt.Axis(format=".0%", tickCount=5),
            ),
            color=alt.condition(
                "isValid(datum.success)",
                alt.Color(
                    "success:Q",
                    title="task success",
                    # red (half the attempts fail, or worse) → yellow → green (all succeed);
                    # the legend reads the colour and the tooltip gives the exact number
                    scale=alt.Scale(
                        domain=[0.5, 0.75, 1], range=["#b2182b", "#f0e442", "#1a7837"], clamp=True
                    ),
                    legend=alt.Legend(format=".0%", orient="bottom", gradientLength=160),
                ),
                alt.value("#bbbbbb"),
            ),
            tooltip=[
                alt.Tooltip("capability:N"),
                alt.Tooltip("adoption_label:N", title="adoption"),
                alt.Tooltip("csat_label:N", title="CSAT"),
                alt.Tooltip("success_label:N", title="task success"),
            ],
        )
    )
    # names to the right of their dot, or to the left near the right edge, so none runs off
    labels = [
        dots.transform_filter(test)
        .mark_text(align=align, dx=dx, dy=-9, fontSize=11, clip=False)
        .encode(text="capability:N", color=alt.value("#222"))
        for test, align, dx in (
            ("datum.adoption <= 0.7", "left", 11),
            ("datum.adoption > 0.7", "right", -11),
        )
    ]
    guides = alt.Data(values=[{"at": 0.5}])
    vrule = alt.Chart(guides).mark_rule(strokeDash=[4, 4], color="#888").encode(x="at:Q")
    hrule = alt.Chart(guides).mark_rule(strokeDash=[4, 4], color="#888").encode(y="at:Q")
    quadrants = [
        alt.Chart(alt.Data(values=[{"x": x, "y": y, "text": text}]))
        .mark_text(fontStyle="italic", color="#666", align=align)
        .encode(x="x:Q", y="y:Q", text="text:N")
        for x, y, text, align in QUADRANTS
    ]
    chart = alt.layer(vrule, hrule, *quadrants, dots, *labels).properties(
        title="Portfolio: adoption × CSAT (colour: task success)", width=WIDTH, height=320
    )
    return _finish(chart)


def event_study(points: Sequence[Point], unit: str, title: str) -> Spec:
    """The effect by periods since adoption (`k`, 0 = the period of adoption): each point's
    estimate (`value`) with its 95 % interval (`lo`, `hi`) as a rule, a line at 0 (no effect)
    and one at adoption; periods before adoption grey, after it blue."""
    unit, factor = axis_unit(points, unit)
    rows = [
        {
            **p,
            "when": "after adopting" if p["k"] >= 0 else "before adopting",
            **{k: float(p[k]) * factor for k in ("value", "lo", "hi") if p.get(k) is not None},
        }
        for p in points
    ]
    data = alt.Data(values=rows)
    colour = alt.Color(
        "when:N",
        title=None,
        scale=alt.Scale(domain=["before adopting", "after adopting"], range=["#999", PALETTE[0]]),
        legend=alt.Legend(orient="bottom"),
    )
    x = alt.X("k:Q", title="periods since adopting", axis=alt.Axis(tickMinStep=1, format="d"))
    tooltip = [
        alt.Tooltip("k:Q", title="periods since adopting"),
        alt.Tooltip("label:N", title="effect"),
        alt.Tooltip("interval:N", title="95 % interval"),
    ]
    base = alt.Chart(data).encode(x=x, color=colour)
    interval = (
        base.transform_filter("isValid(datum.lo) && isValid(datum.hi)")
        .mark_rule()
        .encode(y=alt.Y("lo:Q", title=unit, axis=alt.Axis(format=_axis_format(unit))), y2="hi:Q")
    )
    point = base.mark_point(filled=True, size=40).encode(y="value:Q", tooltip=tooltip)
    zero = alt.Chart(alt.Data(values=[{"y": 0}])).mark_rule(strokeDash=[4, 4]).encode(y="y:Q")
    adopted = alt.Chart(alt.Data(values=[{"x": -0.5}])).mark_rule(color="#bbb").encode(x="x:Q")
    chart = alt.layer(zero, adopted, interval, point).properties(
        title=title, width=WIDTH, height=HEIGHT
    )
    return _finish(chart)
