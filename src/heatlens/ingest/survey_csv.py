"""Survey answers exported by form tools (Google Forms, Microsoft Forms, Typeform: a CSV with a
timestamp column and one column per question) → `survey_response` records.

`--map question=column` names the column of each question; answers are read through label scales
("Very satisfied" → 5, "10 - Extremely likely" → 10; a file of labels replaces or extends them).
Every problem is collected before anything is written and names the file, the line, the column,
the value and what was expected; one problem stores nothing, as with `heatlens ingest`. The
records then go through the one ingest pipeline (heatlens.ingest), which checks them again.

Nothing here links an answer to a person: respondent ids are hashes of the mapped answers only
(never of an e-mail or name column, which is not read), so re-importing the same export replaces
the same records; answer times are kept to the day.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from heatlens.errors import InputError
from heatlens.model import SCORE_RANGES

__all__ = ["DEFAULT_LABELS", "TIMESTAMP_COLUMNS", "naive_instant", "parse_mapping", "read_answers"]

# common English answer scales, compared case-insensitively with spaces squeezed
DEFAULT_LABELS: dict[str, dict[str, int]] = {
    "csat": {
        "very dissatisfied": 1,
        "dissatisfied": 2,
        "neutral": 3,
        "neither satisfied nor dissatisfied": 3,
        "satisfied": 4,
        "very satisfied": 5,
    },
    "likert": {
        "strongly disagree": 1,
        "disagree": 2,
        "neutral": 3,
        "neither agree nor disagree": 3,
        "agree": 4,
        "strongly agree": 5,
    },
    "nps": {"not at all likely": 0, "extremely likely": 10},
}
# the timestamp column of each tool's export, tried in order when --timestamp is not given
TIMESTAMP_COLUMNS = ("Timestamp", "Completion time", "Submit Date (UTC)", "Submitted At", "Date")
_FORMATS = (
    "%Y/%m/%d %I:%M:%S %p",  # Google Forms (English locale), zone suffix removed
    "%Y/%m/%d %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",  # Google Forms (US), Microsoft Forms
    "%m/%d/%Y %H:%M",
    "%m/%d/%y %H:%M:%S",
    "%m/%d/%y %H:%M",
    "%Y-%m-%d %H:%M:%S",  # Typeform
    "%Y-%m-%d %H:%M",
)
_ZONE_SUFFIX = re.compile(r"\s+(GMT|UTC)([+-]\d{1,2}(:?\d{2})?)?$", re.IGNORECASE)
_LEADING = re.compile(r"^\s*(\d{1,2})(\s*[-–:(.]|\s|$)")


def _norm(label: str) -> str:
    return " ".join(label.lower().split())


def read_answers(
    text: str,
    name: str,
    survey: Mapping[str, Any],
    mapping: Mapping[str, str],
    *,
    tz: str,
    team: str | None = None,
    timestamp: str | None = None,
    labels: Mapping[str, Mapping[str, int]] | None = None,
) -> list[dict[str, Any]]:
    """The `survey_response` records of a CSV export (`name` is the file, for messages).

    `mapping` is question id → column (and optionally `team` → column); `team` gives every
    answer the same team instead.
    """
    questions = {q["id"]: q for q in survey.get("questions") or []}
    sid = str(survey["id"])
    scales = {kind: dict(scale) for kind, scale in DEFAULT_LABELS.items()}
    for kind, scale in (labels or {}).items():
        scales.setdefault(kind, {}).update({_norm(k): int(v) for k, v in scale.items()})
    wanted = {qid: col for qid, col in mapping.items() if qid != "team"}
    if not wanted:
        raise InputError(
            f"{name}: no --map QUESTION=COLUMN given; questions of {sid}: " + ", ".join(questions)
        )
    unknown = [qid for qid in wanted if qid not in questions]
    if unknown:
        raise InputError(
            f"--map {unknown[0]}=…: survey {sid} has no question {unknown[0]!r}; its questions: "
            + ", ".join(questions)
        )
    if team is not None and "team" in mapping:
        raise InputError("give the team either as --team or as --map team=COLUMN, not both")
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        first = next(reader, None)
    except csv.Error as exc:
        raise InputError(f"{name} line 1: not readable as CSV ({exc})") from None
    if first is None:
        raise InputError(f"{name}: the file is empty: expected a header row and answers")
    header = [h.strip() for h in first]
    where = {col: i for i, col in reversed(list(enumerate(header)))}
    ts_col = timestamp or next((c for c in TIMESTAMP_COLUMNS if c in where), None)
    needed = [("timestamp", ts_col)] if ts_col else []
    needed += [(f"question {qid}", col) for qid, col in wanted.items()]
    needed += [("team", mapping["team"])] if "team" in mapping else []
    missing = [(what, col) for what, col in needed if col not in where]
    if ts_col is None or missing:
        what, col = missing[0] if missing else ("timestamp", " or ".join(TIMESTAMP_COLUMNS))
        raise InputError(
            f"{name} line 1: no column {col!r} (for {what}); the header has: "
            + ", ".join(repr(h) for h in header)
            + (" — name the timestamp column with --timestamp" if what == "timestamp" else "")
        )
    assert ts_col is not None
    zone = ZoneInfo(tz)
    problems: list[str] = []
    records: list[dict[str, Any]] = []
    seen: Counter[str] = Counter()
    while True:
        line = reader.line_num + 1  # where the row starts (a quoted cell may span lines)
        try:
            cells = next(reader, None)
        except csv.Error as exc:
            raise InputError(f"{name} line {line}: not readable as CSV ({exc})") from None
        if cells is None:
            break
        if not any(c.strip() for c in cells):
            continue
        if len(cells) < len(header):
            cells = cells + [""] * (len(header) - len(cells))

        def problem(col: str, value: str, expected: str, line: int = line) -> None:
            problems.append(f"{name} line {line}, column {col!r}: {value!r}: expected {expected}")

        day = _day(cells[where[ts_col]], zone)
        if day is None:
            problem(ts_col, cells[where[ts_col]], "a date-time such as 2026-04-07 09:30:00")
        row_team = team
        if "team" in mapping:
            row_team = cells[where[mapping["team"]]].strip() or None
        answers: list[tuple[str, int | None, str | None]] = []
        for qid, col in wanted.items():
            value = cells[where[col]].strip()
            if not value:
                continue  # not answered
            kind = questions[qid]["kind"]
            if kind == "text":
                answers.append((qid, None, value))
                continue
            score = _score(value, kind, scales.get(kind, {}))
            if score is None:
                low, high = SCORE_RANGES[kind]
                known = ", ".join(repr(k) for k in scales.get(kind, {}))
                problem(
                    col,
                    value,
                    f"a {kind} answer: a number {low}–{high} or one of {known} "
                    "(add labels with --labels FILE)",
                )
                continue
            answers.append((qid, score, None))
        if day is None or not answers:
            continue
        key = "\x1f".join(
            [
                sid,
                cells[where[ts_col]],
                row_team or "",
                *(cells[where[col]] for col in wanted.values()),
            ]
        )
        seen[key] += 1
        respondent = hashlib.sha256(f"{key}\x1f{seen[key]}".encode()).hexdigest()[:20]
        for qid, score, comment in answers:
            q = questions[qid]
            record: dict[str, Any] = {
                "type": "survey_response",
                "id": f"{respondent}/{qid}",
                "survey": sid,
                "question": qid,
                "kind": q["kind"],
                "respondent": respondent,
                "ts": day.isoformat(),
            }
            if score is not None:
                record["score"] = score
            if comment is not None:
                record["comment"] = comment
            if row_team:
                record["team"] = row_team
            if q.get("capability"):
                record["capability"] = q["capability"]
            records.append(record)
    if problems:
        raise InputError(
            f"{len(problems)} problem(s) in {name}; nothing was stored", list(problems)
        )
    if not records:
        raise InputError(f"{name}: no answers in the mapped columns; nothing was stored")
    return records


def naive_instant(text: str, tz: str) -> datetime:
    """An ISO date or date-time; one without offset is read in `tz` (as ingest reads it)."""
    found = datetime.fromisoformat(text)
    return found if found.tzinfo else found.replace(tzinfo=ZoneInfo(tz))


def _day(value: str, zone: ZoneInfo) -> date | None:
    """The day (in `zone` when the value has no offset) of a form tool's timestamp."""
    text = value.strip()
    if not text:
        return None
    suffix = _ZONE_SUFFIX.search(text)
    text = _ZONE_SUFFIX.sub("", text)
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        found = None
        for fmt in _FORMATS:
            try:
                found = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if found is None:
        return None
    if found.tzinfo is None and suffix is None:
        found = found.replace(tzinfo=zone)
    if found.tzinfo is None:
        # a `GMT+1` suffix: the offset it names
        offset = suffix.group(2) if suffix else None
        found = datetime.fromisoformat(found.isoformat() + _offset(offset))
    return found.astimezone(zone).date()


def _offset(text: str | None) -> str:
    if not text:
        return "+00:00"
    sign, rest = text[0], text[1:].replace(":", "")
    hours, minutes = (rest, "00") if len(rest) <= 2 else (rest[:-2], rest[-2:])
    return f"{sign}{int(hours):02d}:{minutes}"


def _score(value: str, kind: str, scale: Mapping[str, int]) -> int | None:
    """An answer's score: a label of the scale, else a number (alone or leading a label)."""
    low, high = SCORE_RANGES[kind]
    found = scale.get(_norm(value))
    if found is None:
        lead = _LEADING.match(value)
        found = int(lead.group(1)) if lead else None
    return found if found is not None and low <= found <= high else None


def parse_mapping(pairs: Sequence[str]) -> dict[str, str]:
    """`question=column` pairs (the column may hold `=`) as a dict."""
    out: dict[str, str] = {}
    for pair in pairs:
        qid, sep, col = pair.partition("=")
        if not sep or not qid.strip() or not col.strip():
            raise InputError(f"--map {pair!r}: expected QUESTION=COLUMN, e.g. nps='How likely…'")
        out[qid.strip()] = col.strip()
    return out
