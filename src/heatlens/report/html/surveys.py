"""Survey pages: the answer form behind a single-use link, and one survey's results.

The form is plain HTML — fieldsets with legends, radio groups, labelled text areas, one submit
button — so it works without JavaScript, with the keyboard alone and with a screen reader. The
results view shows what heatlens.metrics.survey_results gives (every number from the engine).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from heatlens.metrics.survey_results import survey_results
from heatlens.report.html.pages import environment
from heatlens.report.html.present import Links, View
from heatlens.report.units import format_value
from heatlens.settings import Settings
from heatlens.store import Store

__all__ = ["SCALES", "form_page", "results_view"]

# the answers a person chooses from, per question kind: (score, label)
SCALES: dict[str, list[tuple[int, str]]] = {
    "csat": [
        (1, "Very dissatisfied"),
        (2, "Dissatisfied"),
        (3, "Neutral"),
        (4, "Satisfied"),
        (5, "Very satisfied"),
    ],
    "likert": [
        (1, "Strongly disagree"),
        (2, "Disagree"),
        (3, "Neither agree nor disagree"),
        (4, "Agree"),
        (5, "Strongly agree"),
    ],
    "nps": [(i, str(i)) for i in range(11)],
}
UNITS = {"happiness.csat": "ratio", "happiness.nps": "score", "happiness.likert_mean": "score"}
HEADINGS = {
    "form": None,
    "thanks": "Thank you",
    "used": "Already answered",
    "closed": "This survey has closed",
    "not_open": "This survey has not opened yet",
    "unknown": "Unknown survey link",
}
MESSAGES = {
    "thanks": "Your answers were saved. They are stored without your name or this link, and "
    "shown only in groups large enough that no one can tell who said what.",
    "used": "This link has already been used to answer, and each link answers once. If that "
    "was not you, tell the person who sent it; your answers so far are safe.",
    "closed": "Answers are no longer taken for this survey. Thank you for your time — there "
    "will be another one.",
    "not_open": "Answers are taken from the date the survey opens. Please come back then.",
    "unknown": "This link is not one heatlens knows. Check that the whole link was copied, or "
    "ask for a new one.",
}


def form_page(outcome: Any, token: str) -> str:
    """The page at /s/<token> for a FormOutcome (heatlens.application.surveys)."""
    survey = outcome.survey or {}
    questions = []
    for i, q in enumerate(survey.get("questions") or []):
        questions.append(
            {
                **q,
                "field": f"q{i}",
                "scale": SCALES.get(q["kind"], []),
                "given": outcome.given.get(f"q{i}", ""),
            }
        )
    title = survey.get("title") or "Survey"
    return (
        environment()
        .get_template("survey_form.html")
        .render(
            title=HEADINGS[outcome.state] or title,
            survey_title=title,
            state=outcome.state,
            message=MESSAGES.get(outcome.state, ""),
            errors=outcome.errors,
            questions=questions,
            token=token,
            k=survey.get("k", 5),
            links=Links(),
            user=None,
        )
    )


def _show(cell: dict[str, Any], unit: str) -> str:
    if cell.get("suppressed"):
        return "hidden"
    return format_value(cell.get("value"), unit)


def _interval(ci: list[float] | None, unit: str) -> str:
    if not ci:
        return ""
    return f"{format_value(ci[0], unit)} – {format_value(ci[1], unit)}"


def results_view(store: Store, settings: Settings, survey_id: str, now: datetime) -> View:
    """One survey's results page."""
    doc = survey_results(store, settings, survey_id, now=now).to_json()
    periods = []
    for p in doc["periods"]:
        questions = []
        for q in p["questions"]:
            unit = UNITS.get(q["metric"] or "", "score")
            dist = q["distribution"]
            total = sum(dist.values()) if dist else 0
            bars = []
            if dist is not None:
                labels = dict(SCALES.get(q["kind"], []))
                for score, label in sorted(labels.items()):
                    n = dist.get(str(score), 0)
                    share = n / total if total else 0.0
                    bars.append({"label": label, "n": n, "pct": round(100 * share)})
            questions.append(
                {
                    **q,
                    "shown_value": format_value(q["value"], unit) if q["value"] is not None else "",
                    "shown_ci": _interval(q["ci"], unit),
                    "shown_median": format_value(q["median"], "score")
                    if q["median"] is not None
                    else "",
                    "bars": bars,
                }
            )
        teams = [
            {
                "team": t["team"] or "(no team)",
                "invited": t["invited"],
                "rate": _show(t, "ratio") if t["n"] is not None or t["suppressed"] else "—",
                "n": t["n"],
                "suppressed": t["suppressed"],
            }
            for t in p["teams"]
        ]
        periods.append(
            {
                **p,
                "questions": questions,
                "teams": teams,
                "rate": _show(p["response_rate"], "ratio")
                if p["response_rate"]["value"] is not None or p["response_rate"]["suppressed"]
                else "—",
            }
        )
    survey = doc["survey"]
    title = survey["title"] or survey["id"]
    empty = None
    if not periods:
        empty = (
            f"Survey {survey['id']} has no answers yet: invite people with `heatlens survey "
            f"invite {survey['id']} --team T --count N`, or import a form tool's export."
        )
    return View(
        f"Survey: {title}",
        "survey_results.html",
        "survey",
        context={"survey": survey, "periods": periods, "grain": doc["grain"]},
        empty=empty,
    )
