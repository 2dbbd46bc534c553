"""A survey's results (heatlens.survey-results/v1) as CSV, Markdown and terminal tables.

JSON and CSV keep raw numbers; Markdown and the terminal show them in human units
(heatlens.report.units). Hidden cells stay hidden in every format: their numbers are not in the
document to begin with.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from heatlens.report.units import format_value

__all__ = ["CSV_COLUMNS", "lines", "to_csv", "to_markdown"]

UNITS = {"happiness.csat": "ratio", "happiness.nps": "score", "happiness.likert_mean": "score"}
CSV_COLUMNS = (
    "period",
    "row",
    "id",
    "kind",
    "capability",
    "value",
    "ci_low",
    "ci_high",
    "median",
    "respondents",
    "invited",
    "suppressed",
    "distribution",
)


def _unit(q: dict[str, Any]) -> str:
    return UNITS.get(q.get("metric") or "", "score")


def _value(q: dict[str, Any]) -> str:
    if q["suppressed"]:
        return "hidden"
    if q["kind"] == "text" or not q.get("answered", True):
        return "—"
    text = format_value(q["value"], _unit(q))
    if q["ci"]:
        low, high = (format_value(v, _unit(q)) for v in q["ci"])
        text += f" [{low} – {high}]"
    if q.get("median") is not None:
        text += f", median {format_value(q['median'], 'score')}"
    return text


def _dist(q: dict[str, Any]) -> str:
    d = q.get("distribution")
    return " ".join(f"{s}:{n}" for s, n in d.items()) if d else ""


def _rate(cell: dict[str, Any]) -> str:
    if cell["suppressed"]:
        return "hidden"
    return format_value(cell["value"], "ratio") if cell["value"] is not None else "—"


def lines(doc: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of each table a person reads: per period, questions then teams."""
    out = []
    for p in doc["periods"]:
        head = f"{doc['survey']['id']} · {p['period']}" + ("" if p["complete"] else " (open)")
        resp = p["respondents"]
        count = "hidden" if resp["suppressed"] else str(resp["n"] or 0)
        out.append(
            (
                f"{head} · {count} respondents · response rate {_rate(p['response_rate'])}",
                ["question", "kind", "result", "respondents", "answers"],
                [
                    [
                        q["id"],
                        q["kind"],
                        _value(q),
                        "hidden" if q["suppressed"] else str(q["respondents"] or 0),
                        _dist(q),
                    ]
                    for q in p["questions"]
                ],
            )
        )
        out.append(
            (
                "response rate per team",
                ["team", "invited", "respondents", "response rate"],
                [
                    [
                        t["team"] or "(no team)",
                        str(t["invited"]),
                        "hidden" if t["suppressed"] else str(t["n"] or 0),
                        _rate(t),
                    ]
                    for t in p["teams"]
                ],
            )
        )
    return out


def comments(doc: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(question id, comments) of every question whose comments are shown."""
    return [
        (f"{p['period']} {q['id']}", q["comments"])
        for p in doc["periods"]
        for q in p["questions"]
        if q.get("comments")
    ]


def to_markdown(doc: dict[str, Any]) -> str:
    s = doc["survey"]
    parts = [f"# Survey {s['title'] or s['id']}", ""]
    parts.append(
        f"Anonymity: fewer than k = {s['k']} respondents are hidden; comments from "
        f"{s['comment_k']} respondents."
    )
    for title, header, rows in lines(doc):
        parts += ["", f"## {title}", ""]
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|" + "|".join("---" for _ in header) + "|")
        parts += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    for where, texts in comments(doc):
        parts += ["", f"### Comments: {where}", ""] + [f"- {t}" for t in texts]
    return "\n".join(parts) + "\n"


def to_csv(doc: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for p in doc["periods"]:
        overall = p["response_rate"]
        w.writerow(
            [
                p["period"],
                "overall",
                "",
                "",
                "",
                overall["value"],
                *(overall["ci"] or ["", ""]),
                "",
                p["respondents"]["n"],
                "",
                overall["suppressed"] or p["respondents"]["suppressed"],
                "",
            ]
        )
        for q in p["questions"]:
            ci = q["ci"] or ["", ""]
            w.writerow(
                [
                    p["period"],
                    "question",
                    q["id"],
                    q["kind"],
                    q["capability"] or "",
                    q["value"],
                    *ci,
                    q["median"],
                    q["respondents"],
                    "",
                    q["suppressed"],
                    _dist(q),
                ]
            )
        for t in p["teams"]:
            ci = t["ci"] or ["", ""]
            w.writerow(
                [
                    p["period"],
                    "team",
                    t["team"] or "",
                    "",
                    "",
                    t["value"],
                    *ci,
                    "",
                    t["n"],
                    t["invited"],
                    t["suppressed"],
                    "",
                ]
            )
    return buf.getvalue()
