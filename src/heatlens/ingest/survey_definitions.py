"""Survey definitions as code (DESIGN §3 `survey`): `[[survey]]` tables of a TOML file → `survey`
records, checked with errors that name the file, the survey (numbered from 0) and the field.

```toml
[[survey]]
id = "platform-2026-q2"          # stable: results and waves are keyed by it
title = "Platform survey, Q2 2026"
opens_at = 2026-04-06            # a TOML date or date-time (naive: the ingest time zone)
closes_at = 2026-04-20
k = 5                            # anonymity threshold, ≥ 3, frozen once the survey opens
comment_k = 10                   # fewest respondents for comments to be shown
continuous = false               # true: an always-on micro-survey

[[survey.questions]]
id = "csat-{capability}"         # with each_capability: one question per registered capability
kind = "csat"                    # csat | nps | likert | text
text = "How satisfied are you with {name}?"
each_capability = true
```

The packaged default platform survey (`platform_survey.toml` beside this module) is such a file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from datetime import date, datetime
from importlib.resources import files
from typing import Any

from heatlens.errors import InputError
from heatlens.model import SURVEY_KINDS

__all__ = ["DEFAULT_SURVEY", "default_survey_text", "parse_surveys"]

DEFAULT_SURVEY = "platform_survey.toml"
MIN_K = 5 - 2  # DESIGN §3: k ≥ 3
_SURVEY_KEYS = ("id", "title", "opens_at", "closes_at", "k", "comment_k", "continuous", "questions")
_QUESTION_KEYS = ("id", "kind", "text", "capability", "each_capability")


def default_survey_text() -> str:
    """The TOML of the default platform survey that ships with heatlens."""
    return files("heatlens.ingest").joinpath(DEFAULT_SURVEY).read_text(encoding="utf-8")


def parse_surveys(
    text: str,
    name: str,
    *,
    capabilities: Mapping[str, str | None] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The `survey` records of a TOML text (`name` is the file, for messages), all or nothing.

    `capabilities` (id → display name) expands questions with `each_capability = true`;
    `overrides` (id, title, opens_at, closes_at, k …) replace fields of the file's only survey.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{name}: not valid TOML ({exc})") from None
    unknown = sorted(set(doc) - {"survey"})
    if unknown:
        raise InputError(f"{name}: unknown table {unknown[0]!r}: expected [[survey]] tables")
    tables = doc.get("survey")
    if not isinstance(tables, list) or not tables:
        raise InputError(f"{name}: no [[survey]] table: define at least one survey")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if given and len(tables) != 1:
        raise InputError(
            f"{name} defines {len(tables)} surveys: --id, --title, --opens and --closes apply "
            "to a file of one survey only"
        )
    problems: list[str] = []
    records = []
    for i, table in enumerate(tables):
        where = f"{name}: survey {i}"
        if isinstance(table, dict) and isinstance(table.get("id"), str):
            where += f" (id {table['id']!r})"
        found = _survey({**table, **given}, where, capabilities or {}, problems)
        if found is not None:
            records.append(found)
    seen: set[str] = set()
    for i, r in enumerate(records):
        if r["id"] in seen:
            problems.append(f"{name}: survey {i}: id {r['id']!r} is defined twice")
        seen.add(r["id"])
    if problems:
        raise InputError(
            f"{len(problems)} problem(s) in {name}; nothing was stored", list(problems)
        )
    return records


def _survey(
    table: Any, where: str, capabilities: Mapping[str, str | None], problems: list[str]
) -> dict[str, Any] | None:
    if not isinstance(table, dict):
        problems.append(f"{where}: expected a table")
        return None
    before = len(problems)
    for key in sorted(set(table) - set(_SURVEY_KEYS)):
        problems.append(f"{where}: unknown field {key!r} (a survey has {', '.join(_SURVEY_KEYS)})")
    sid = table.get("id")
    if not isinstance(sid, str) or not sid.strip():
        problems.append(f"{where}: id is missing: give every survey a stable id")
    title = table.get("title")
    if title is not None and not isinstance(title, str):
        problems.append(f"{where}: title = {title!r}: expected a string")
    opens, closes = (_instant(table.get(f), f, where, problems) for f in ("opens_at", "closes_at"))
    if opens and closes and _order(opens) >= _order(closes):
        problems.append(f"{where}: closes_at {closes} must be after opens_at {opens}")
    k = _integer(table, "k", 5, MIN_K, where, problems)
    comment_k = _integer(table, "comment_k", 10, 1, where, problems)
    if k is not None and comment_k is not None and comment_k < k:
        problems.append(f"{where}: comment_k = {comment_k}: expected at least k ({k})")
    continuous = table.get("continuous", False)
    if not isinstance(continuous, bool):
        problems.append(f"{where}: continuous = {continuous!r}: expected true or false")
    questions = _questions(table.get("questions"), where, capabilities, problems)
    if len(problems) > before:
        return None
    record: dict[str, Any] = {
        "type": "survey",
        "id": sid,
        "k": k,
        "comment_k": comment_k,
        "continuous": continuous,
        "questions": questions,
    }
    for key, value in (("title", title), ("opens_at", opens), ("closes_at", closes)):
        if value is not None:
            record[key] = value
    return record


def _order(text: str) -> str:
    # dates and date-times compare as text once a date is read as its midnight
    return text if "T" in text else text + "T00:00:00"


def _instant(value: Any, field: str, where: str, problems: list[str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return (
                datetime.fromisoformat(value).isoformat()
                if "T" in value or " " in value
                else (date.fromisoformat(value).isoformat())
            )
        except ValueError:
            pass
    problems.append(f"{where}: {field} = {value!r}: expected a date (2026-04-06) or date-time")
    return None


def _integer(
    table: dict[str, Any], field: str, default: int, least: int, where: str, problems: list[str]
) -> int | None:
    value = table.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        rule = f"an integer ≥ {least}"
        if field == "k":
            rule += " (fewer respondents than 3 can never be anonymous)"
        problems.append(f"{where}: {field} = {value!r}: expected {rule}")
        return None
    return value


def _questions(
    value: Any, where: str, capabilities: Mapping[str, str | None], problems: list[str]
) -> list[dict[str, Any]]:
    if value is None:
        problems.append(f"{where}: no questions: add [[survey.questions]] tables")
        return []
    if not isinstance(value, list):
        problems.append(f"{where}: questions: expected [[survey.questions]] tables")
        return []
    out: list[dict[str, Any]] = []
    for j, q in enumerate(value):
        at = f"{where}: questions[{j}]"
        if not isinstance(q, dict):
            problems.append(f"{at}: expected a table")
            continue
        for key in sorted(set(q) - set(_QUESTION_KEYS)):
            problems.append(
                f"{at}: unknown field {key!r} (a question has {', '.join(_QUESTION_KEYS)})"
            )
        qid, kind = q.get("id"), q.get("kind")
        if not isinstance(qid, str) or not qid.strip():
            problems.append(f"{at}: id is missing: question ids must stay the same across waves")
            continue
        if kind not in SURVEY_KINDS:
            problems.append(f"{at}: kind = {kind!r}: expected one of {', '.join(SURVEY_KINDS)}")
            continue
        text = q.get("text", "")
        if not isinstance(text, str):
            problems.append(f"{at}: text = {text!r}: expected a string")
            continue
        if q.get("each_capability"):
            if kind != "csat":
                problems.append(f"{at}: each_capability applies to csat questions only")
                continue
            for cid, cname in sorted(capabilities.items()):
                fill = {"capability": cid, "name": cname or cid}
                try:
                    qid_c, text_c = qid.format(**fill), text.format(**fill)
                except (KeyError, IndexError, ValueError, AttributeError):
                    problems.append(
                        f"{at}: id and text may only use the placeholders {{capability}} and "
                        "{name} (write {{ and }} for braces)"
                    )
                    break
                out.append({"id": qid_c, "kind": kind, "text": text_c, "capability": cid})
            continue
        capability = q.get("capability")
        if capability is not None and not isinstance(capability, str):
            problems.append(f"{at}: capability = {capability!r}: expected a capability id")
            continue
        out.append({"id": qid, "kind": kind, "text": text, "capability": capability})
    ids = [q["id"] for q in out]
    for qid in sorted({x for x in ids if ids.count(x) > 1}):
        problems.append(f"{where}: question id {qid!r} is used twice: ids must be unique")
    if not out and isinstance(value, list) and value and not capabilities:
        problems.append(
            f"{where}: no questions after expanding each_capability: the store has no "
            "capability records yet (ingest them first)"
        )
    return out
