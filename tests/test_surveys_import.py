"""Importing a form tool's CSV export: labels become scores, every problem is named by file, line
and column, and a file with any problem stores nothing (as `heatlens ingest`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from heatlens.application import LocalApplication
from heatlens.errors import InputError
from heatlens.settings import load_settings
from tests.conftest import Cli
from tests.test_surveys import REGISTRY, WAVE

CI, NPS, FEEDBACK, SLOWS = (
    "How satisfied are you with CI?",
    "How likely are you to recommend the platform?",
    "I get clear feedback on the outcome of my tasks.",
    "What slows you down?",
)
MAP = {"ci-csat": CI, "nps": NPS, "feedback": FEEDBACK, "slows": SLOWS, "team": "Team"}
GOOGLE = (
    f"Timestamp,Email Address,{CI},{NPS},{FEEDBACK},{SLOWS},Team\n"
    "2026/03/03 9:15:02 AM GMT+1,ana@example.org,Very satisfied,10 - Extremely likely,Agree,"
    '"Slow reviews,\nand flaky tests",payments\n'
    "2026/03/03 11:40:10 PM GMT+1,bo@example.org,Dissatisfied,6,Strongly disagree,,payments\n"
    "2026/03/04 8:00:00 AM GMT+1,cy@example.org,4,Not at all likely,"
    "Neither agree nor disagree,Nothing,search\n"
)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[LocalApplication]:
    settings = load_settings(
        config=None, environ={}, overrides={"store": f"duckdb:///{tmp_path / 's.duckdb'}"}
    )
    now = datetime(2026, 3, 10, tzinfo=UTC)
    with LocalApplication(settings, clock=lambda: now) as application:
        application.ingest_records(REGISTRY, source="t")
        application.define_surveys(WAVE, "wave.toml")
        yield application


def _responses(app: LocalApplication) -> list[tuple[object, ...]]:
    rows = app.read(lambda s: s.rows("survey_response"))
    return sorted(
        (r["question"], r["score"], r["comment"], r["team"], r["ts"].date().isoformat())
        for r in rows
    )


def test_a_google_forms_export_becomes_scored_answers(app: LocalApplication) -> None:
    doc = app.import_answers(GOOGLE, "answers.csv", "2026-q1", MAP)
    assert doc["respondents"] == 3
    assert doc["counts"] == {"survey_response": {"inserted": 11, "updated": 0, "unchanged": 0}}
    assert _responses(app) == sorted(
        [
            ("ci-csat", 5, None, "payments", "2026-03-03"),
            ("nps", 10, None, "payments", "2026-03-03"),
            ("feedback", 4, None, "payments", "2026-03-03"),
            ("slows", None, "Slow reviews,\nand flaky tests", "payments", "2026-03-03"),
            # 11:40 PM at GMT+1 is 22:40 UTC: still the 3rd in the UTC report time zone
            ("ci-csat", 2, None, "payments", "2026-03-03"),
            ("nps", 6, None, "payments", "2026-03-03"),
            ("feedback", 1, None, "payments", "2026-03-03"),
            ("ci-csat", 4, None, "search", "2026-03-04"),
            ("nps", 0, None, "search", "2026-03-04"),
            ("feedback", 3, None, "search", "2026-03-04"),
            ("slows", None, "Nothing", "search", "2026-03-04"),
        ]
    )
    stored = json.dumps(app.read(lambda s: s.rows("survey_response")), default=str)
    assert "example.org" not in stored  # unmapped columns are never read
    again = app.import_answers(GOOGLE, "answers.csv", "2026-q1", MAP)
    assert again["counts"] == {"survey_response": {"inserted": 0, "updated": 0, "unchanged": 11}}


def test_a_microsoft_forms_export_with_a_fixed_team(app: LocalApplication) -> None:
    text = (
        f"ID,Start time,Completion time,Email,Name,{CI},{NPS}\n"
        "1,3/3/2026 9:00:00,3/3/2026 9:04:00,anonymous,,Satisfied,9\n"
    )
    app.import_answers(text, "ms.csv", "2026-q1", {"ci-csat": CI, "nps": NPS}, team="search")
    assert _responses(app) == [
        ("ci-csat", 4, None, "search", "2026-03-03"),
        ("nps", 9, None, "search", "2026-03-03"),
    ]


def test_a_bad_label_names_file_line_and_column_and_stores_nothing(app: LocalApplication) -> None:
    bad = GOOGLE.replace("Dissatisfied,6", "Meh,6").replace("Not at all likely", "eleven")
    before = app.data_version()
    with pytest.raises(InputError) as caught:
        app.import_answers(bad, "answers.csv", "2026-q1", MAP)
    assert str(caught.value) == "2 problem(s) in answers.csv; nothing was stored"
    assert [str(p) for p in caught.value.problems] == [
        f"answers.csv line 4, column {CI!r}: 'Meh': expected a csat answer: a number 1–5 or one "
        "of 'very dissatisfied', 'dissatisfied', 'neutral', 'neither satisfied nor dissatisfied', "
        "'satisfied', 'very satisfied' (add labels with --labels FILE)",
        f"answers.csv line 5, column {NPS!r}: 'eleven': expected a nps answer: a number 0–10 or "
        "one of 'not at all likely', 'extremely likely' (add labels with --labels FILE)",
    ]
    assert app.data_version() == before
    assert _responses(app) == []


def test_a_missing_column_is_named_with_the_header(app: LocalApplication) -> None:
    with pytest.raises(
        InputError,
        match=r"answers.csv line 1: no column 'Likely\?' \(for question nps\); "
        r"the header has: 'Timestamp', 'Email Address'",
    ):
        app.import_answers(GOOGLE, "answers.csv", "2026-q1", {**MAP, "nps": "Likely?"})
    with pytest.raises(InputError, match=r"survey 2026-q1 has no question 'speed'"):
        app.import_answers(GOOGLE, "answers.csv", "2026-q1", {"speed": CI})
    no_time = GOOGLE.replace("Timestamp,", "When,", 1)
    with pytest.raises(InputError, match=r"no column 'Timestamp or Completion time.*--timestamp"):
        app.import_answers(no_time, "answers.csv", "2026-q1", MAP)
    assert _responses(app) == []


def test_a_bad_timestamp_names_its_line(app: LocalApplication) -> None:
    bad = GOOGLE.replace("2026/03/04 8:00:00 AM GMT+1", "yesterday")
    with pytest.raises(InputError) as caught:
        app.import_answers(bad, "answers.csv", "2026-q1", MAP)
    assert [str(p) for p in caught.value.problems] == [
        "answers.csv line 5, column 'Timestamp': 'yesterday': expected a date-time such as "
        "2026-04-07 09:30:00"
    ]
    assert _responses(app) == []


def test_the_cli_imports_with_extra_labels_and_refuses_a_bad_file(run: Cli, tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'cli.duckdb'}"
    (tmp_path / "reg.ndjson").write_text("".join(json.dumps(r) + "\n" for r in REGISTRY))
    (tmp_path / "wave.toml").write_text(WAVE)
    assert run("--store", url, "ingest", "reg.ndjson").exit_code == 0
    assert run("--store", url, "survey", "define", "wave.toml").exit_code == 0
    (tmp_path / "fr.csv").write_text(f"Timestamp,{CI}\n2026-03-03 10:00:00,Très satisfait\n")
    (tmp_path / "labels.toml").write_text('[csat]\n"Très satisfait" = 5\n')
    refused = run(
        "--store",
        url,
        "survey",
        "import",
        "fr.csv",
        "--survey",
        "2026-q1",
        "--map",
        f"ci-csat={CI}",
    )
    assert refused.exit_code == 2
    assert (
        f"fr.csv line 2, column {CI!r}: 'Très satisfait': expected a csat answer" in refused.stderr
    )
    assert "nothing was stored" in refused.stderr
    done = run(
        "--store",
        url,
        "survey",
        "import",
        "fr.csv",
        "--survey",
        "2026-q1",
        "--map",
        f"ci-csat={CI}",
        "--team",
        "payments",
        "--labels",
        "labels.toml",
    )
    assert done.exit_code == 0, done.output
    assert "1 respondents imported into survey 2026-q1" in done.stderr
