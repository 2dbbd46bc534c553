"""The impact analysis (heatlens.analysis.impact) as words, JSON and a terminal view.

`impact_doc` is the `heatlens.impact/v1` document, with the plain verdict and the pre-trend
warning; `render_impact` draws one such document for a terminal, from the document alone, so the
CLI shows the same thing whether it ran the analysis or a server did.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from heatlens.analysis.did import Estimate
from heatlens.analysis.impact import MIN_ADOPTERS, Impact
from heatlens.metrics.catalog import CATALOG, Metric
from heatlens.report.units import scaled

SCHEMA = "heatlens.impact/v1"
METHOD = "callaway_santanna"
ASSUMPTIONS = (
    "Parallel trends: had they not adopted, adopting teams' numbers would have moved like those "
    "of the teams that had not adopted yet (or never did).",
    "No anticipation: teams did not change how they work in the periods before they adopted.",
    "Adoption is the first period with usage of the capability; a team's effect is measured "
    "against its own period just before that.",
)
BAR = 41  # characters of the terminal chart's interval axis
# the periods since adoption the terminal chart shows (the JSON has every one)
SHOWN_K = range(-6, 13)


def label(metric: Metric) -> str:
    """`dora.lead_time_p50` → `lead time`: the metric as a sentence names it."""
    return metric.id.split(".", 1)[-1].replace("_", " ").removesuffix(" p50")


def verdict(impact: Impact) -> str:
    """One sentence: the effect and its interval, no detectable effect, or not enough data."""
    r, n = impact.result, impact.adopters
    if n < MIN_ADOPTERS:
        return (
            f"not enough data: {n} adopting team{'' if n == 1 else 's'} "
            f"(at least {MIN_ADOPTERS} needed)"
        )
    if r is None or r.overall.value is None:
        return "not enough data: no adopting team has values both before and after adopting"
    if r.overall.ci is None:
        return "not enough data: too few teams to compare the adopters with"
    value, (low, high) = r.overall.value, r.overall.ci
    metric, cap = impact.metric, impact.capability
    unit, name = metric.unit, label(metric)
    if not r.overall.significant:
        return (
            f"no detectable effect of adopting {cap} on {name} (95 % interval "
            f"{interval([low, high], unit).replace('+', '')})"
        )
    near, far = sorted((abs(low), abs(high)))
    judged = ""
    if metric.direction != "none":
        judged = " — better" if (value > 0) == (metric.direction == "up") else " — worse"
    return (
        f"{name} {'rose' if value > 0 else 'fell'} by about {magnitude(value, unit)} "
        f"(95 % interval {magnitude(near, unit, far)}–{magnitude(far, unit)}) after teams "
        f"adopted {cap}{judged}"
    )


def pre_trend_warning(impact: Impact) -> str | None:
    """A warning when adopters already drifted from the others before adopting."""
    if not impact.pre_trend_differs or impact.result is None:
        return None
    drift = impact.result.pre_trend.value or 0.0
    return (
        f"before adopting {impact.capability}, adopting teams' {label(impact.metric)} already "
        f"{'rose' if drift > 0 else 'fell'} by about {magnitude(drift, impact.metric.unit)} "
        f"a {impact.grain} more than the others': parallel trends look doubtful, and the "
        "estimate may mix the platform's effect with differences that were there anyway"
    )


def magnitude(value: float, unit: str, like: float | None = None) -> str:
    """The size of an effect, in the unit that suits `like` (default: its own size): a ratio's
    in percentage points, a frequency's per day, week or month."""
    return scaled(value, unit, value if like is None else like)


def signed(value: float | None, unit: str, like: float | None = None) -> str:
    """An effect with its sign: `−6.0 h`, `+2.1 pp`, `0`; "—" for none. Values shown together
    pass the same `like` so they share a unit."""
    if value is None:
        return "—"
    size = magnitude(value, unit, like)
    if value == 0 or not any(digit in size for digit in "123456789"):
        return size  # 0, or too small to show: no sign
    return ("−" if value < 0 else "+") + size


def _estimate(e: Estimate | None) -> dict[str, Any]:
    return {
        "estimate": None if e is None else e.value,
        "ci": None if e is None or e.ci is None else list(e.ci),
    }


def impact_doc(impact: Impact) -> dict[str, Any]:
    """The `heatlens.impact/v1` document of one metric (DESIGN §5); numbers in the metric's
    unit (hours, ratio, per day)."""
    r = impact.result
    overall = _estimate(r.overall if r else None)
    return {
        "schema": SCHEMA,
        "capability": impact.capability,
        "metric": impact.metric.id,
        "unit": impact.metric.unit,
        "direction": impact.metric.direction,
        "grain": impact.grain,
        "from": impact.start.isoformat(),
        "to": impact.end.isoformat(),
        "method": METHOD,
        "estimate": overall["estimate"],
        "ci": overall["ci"],
        "adopters": impact.adopters,
        "never_adopters": impact.never_adopters,
        "excluded": impact.excluded,
        "verdict": verdict(impact),
        "pre_trend": {
            **_estimate(r.pre_trend if r else None),
            "warning": pre_trend_warning(impact),
        },
        "by_period_since_adoption": [
            {"k": k, **_estimate(e)} for k, e in (r.event_study.items() if r else ())
        ],
        "naive": {
            "adopters_vs_not": _estimate(r.adopters_vs_not if r else None),
            "before_after": _estimate(r.before_after if r else None),
        },
        "assumptions": list(ASSUMPTIONS),
    }


def interval(ci: list[float] | None, unit: str, like: float | None = None) -> str:
    """A 95 % interval of an effect: `−9.0 pp to −1.5 pp`, both ends in the unit that suits
    `like` (default: the end farther from 0)."""
    if ci is None:
        return "—"
    like = max(ci, key=abs) if like is None else like
    return f"{signed(ci[0], unit, like)} to {signed(ci[1], unit, like)}"


def render_impact(doc: dict[str, Any]) -> Group:
    """One impact document for a terminal: the verdict, the estimate beside the naive
    contrasts, and the event-study curve drawn as intervals around 0."""
    unit = doc["unit"]
    metric = CATALOG.get(doc["metric"])
    name = label(metric) if metric else doc["metric"]
    head = Text(f"impact of {doc['capability']} on {doc['metric']}", "bold")
    head.append(
        f" · grain {doc['grain']} · {doc['from']} to {doc['to']} · {doc['adopters']} adopting, "
        f"{doc['never_adopters']} not adopting, {doc['excluded']} excluded",
        "dim",
    )
    parts: list[Any] = [head, Text(doc["verdict"], "bold cyan")]
    warning = doc["pre_trend"]["warning"]
    if warning:
        parts.append(Text(f"warning: {warning}", "yellow"))
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("contrast")
    table.add_column("estimate", justify="right", no_wrap=True)
    table.add_column("95 % interval", justify="right", no_wrap=True)
    naive = doc["naive"]
    for title, part in (
        ("diff.-in-diff. (Callaway–Sant'Anna)", doc),
        ("naive: adopters vs never adopters", naive["adopters_vs_not"]),
        ("naive: adopters after vs before", naive["before_after"]),
        ("pre-trend: drift per period before", doc["pre_trend"]),
    ):
        # naive contrasts are differences too: every row reads as a signed change
        like = part["estimate"] if title.startswith("pre-trend") else doc["estimate"]
        table.add_row(title, signed(part["estimate"], unit, like), interval(part["ci"], unit, like))
    parts.append(table)
    every = [p for p in doc["by_period_since_adoption"] if p["estimate"] is not None]
    curve = [p for p in every if p["k"] in SHOWN_K]
    if curve:
        grain = doc["grain"]
        title = f"effect on {name} by {grain}s since adopting (k = 0: the {grain} of adoption"
        hidden = len(every) - len(curve)
        title += f"; {hidden} more in --format json)" if hidden else ")"
        parts.append(Text(title, "bold"))
        parts.append(_event_chart(curve, unit))
    return Group(*parts)


def _event_chart(curve: list[dict[str, Any]], unit: str) -> Text:
    """Each k on a line: its interval as `─`, the estimate as `●`, 0 as `│`."""
    ends = [v for p in curve for v in (p["ci"] or [p["estimate"]] * 2)] + [0.0]
    low, high = min(ends), max(ends)
    span = (high - low) or 1.0
    like = max((p["estimate"] for p in curve), key=abs)

    def at(value: float) -> int:
        return round((value - low) / span * (BAR - 1))

    text = Text()
    for p in curve:
        row = [" "] * BAR
        if p["ci"]:
            for i in range(at(p["ci"][0]), at(p["ci"][1]) + 1):
                row[i] = "─"
        row[at(0.0)] = "│"
        row[at(p["estimate"])] = "●"
        text.append(f"{p['k']:>4} ")
        text.append("".join(row), "cyan" if p["k"] >= 0 else "dim")
        text.append(f" {signed(p['estimate'], unit, like)}\n")
    return text
