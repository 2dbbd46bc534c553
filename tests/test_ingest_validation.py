"""Every validation rule, on one shared corpus of invalid records
(tests/fixtures/invalid_records.json), through every way records come in: an invalid record
anywhere means nothing is stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from heatlens.errors import InputError
from heatlens.ingest import ingest_files, ingest_records
from heatlens.settings import Settings
from heatlens.store import Store

CORPUS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "fixtures" / "invalid_records.json").read_text(encoding="utf-8")
)
GOOD_BEFORE = {"type": "team", "id": "payments", "name": "Payments"}
GOOD_AFTER = {"type": "usage", "id": "u-ok", "ts": "2026-03-02T10:00:00Z", "capability": "ci"}


def _snapshot(store: Store) -> tuple[dict[str, int], int]:
    return store.counts(), store.data_version()


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_ndjson_record_in_the_middle_is_refused_with_line_and_field(
    case: dict[str, Any], tmp_path: Path, duck_store: Store, settings: Settings
) -> None:
    path = tmp_path / "events.ndjson"
    lines = [json.dumps(GOOD_BEFORE), json.dumps(case["record"]), json.dumps(GOOD_AFTER)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before = _snapshot(duck_store)
    with pytest.raises(InputError) as refused:
        ingest_files(duck_store, [str(path)], settings)
    assert [str(p) for p in refused.value.problems] == [
        f"events.ndjson line 2: {m}" for m in case["messages"]
    ]
    assert "1 invalid record(s) in events.ndjson; nothing was stored" in str(refused.value)
    assert _snapshot(duck_store) == before


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_json_array_and_api_records_give_the_same_messages(
    case: dict[str, Any], tmp_path: Path, duck_store: Store, settings: Settings
) -> None:
    records = [GOOD_BEFORE, case["record"], GOOD_AFTER]
    path = tmp_path / "events.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    with pytest.raises(InputError) as from_file:
        ingest_files(duck_store, [str(path)], settings)
    with pytest.raises(InputError) as from_api:
        ingest_records(duck_store, records, settings, source="api")
    assert [str(p) for p in from_file.value.problems] == [
        f"events.json record 2: {m}" for m in case["messages"]
    ]
    assert [p.message for p in from_api.value.problems] == case["messages"]
    assert duck_store.is_empty()


def test_malformed_lines_are_reported_at_their_line(
    tmp_path: Path, duck_store: Store, settings: Settings
) -> None:
    path = tmp_path / "events.ndjson"
    path.write_text(
        json.dumps(GOOD_BEFORE) + "\n\n{broken\n[1, 2]\n" + json.dumps(GOOD_AFTER) + "\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError) as refused:
        ingest_files(duck_store, [str(path)], settings)
    assert [str(p) for p in refused.value.problems] == [
        "events.ndjson line 3: expected a JSON object, got invalid JSON '{broken'",
        "events.ndjson line 4: expected a JSON object, got '[1, 2]'",
    ]


def test_invalid_utf8_is_refused_at_its_line(
    tmp_path: Path, duck_store: Store, settings: Settings
) -> None:
    path = tmp_path / "events.ndjson"
    path.write_bytes(json.dumps(GOOD_BEFORE).encode() + b'\n{"type": "team", "id": "\xff"}\n')
    with pytest.raises(InputError) as refused:
        ingest_files(duck_store, [str(path)], settings)
    assert [p.line for p in refused.value.problems] == [2]
    assert duck_store.is_empty()


def test_a_bad_file_among_good_ones_stores_nothing(
    tmp_path: Path, duck_store: Store, settings: Settings
) -> None:
    good = tmp_path / "good.ndjson"
    good.write_text(json.dumps(GOOD_BEFORE) + "\n", encoding="utf-8")
    bad = tmp_path / "bad.ndjson"
    bad.write_text(json.dumps({"type": "team"}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"in bad.ndjson; nothing was stored"):
        ingest_files(duck_store, [str(good), str(bad)], settings)
    assert duck_store.is_empty()


def test_refused_problems_are_kept_in_the_ingest_error_log(
    tmp_path: Path, duck_store: Store, settings: Settings
) -> None:
    path = tmp_path / "events.ndjson"
    path.write_text(json.dumps({"type": "team", "id": 1}) + "\n", encoding="utf-8")
    with pytest.raises(InputError):
        ingest_files(duck_store, [str(path)], settings)
    _, logged = duck_store.ingest_errors(limit=10)
    rows = [
        (source, location, field, value, message)
        for _, source, location, _, field, value, message in logged
    ]
    assert rows == [
        (
            "file:events.ndjson",
            "events.ndjson line 1",
            "id",
            "1",
            "team.id = 1: expected a non-empty string",
        )
    ]


def test_skip_invalid_stores_the_valid_and_writes_rejects(
    tmp_path: Path, duck_store: Store, settings: Settings
) -> None:
    path = tmp_path / "events.ndjson"
    bad = {"type": "usage", "id": "u-bad", "ts": "nope", "capability": "ci"}
    path.write_text(
        "\n".join(json.dumps(r) for r in [GOOD_BEFORE, bad, GOOD_AFTER]) + "\n", encoding="utf-8"
    )
    rejects = tmp_path / "rejects.ndjson"
    result = ingest_files(duck_store, [str(path)], settings, skip_invalid=True, rejects=rejects)
    assert result.rejected == 1
    assert duck_store.counts()["team"] == 1 and duck_store.counts()["usage"] == 1
    rejected = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert rejected == [
        {
            "input": "events.ndjson",
            "line": 2,
            "record": bad,
            "errors": [
                'usage.ts = "nope": expected an ISO 8601 timestamp between 1970 and 2100, '
                "e.g. 2026-03-02T10:15:00Z"
            ],
        }
    ]


def test_skip_invalid_needs_a_rejects_file(duck_store: Store, settings: Settings) -> None:
    with pytest.raises(InputError, match="--rejects"):
        ingest_files(duck_store, ["x.ndjson"], settings, skip_invalid=True)


def test_more_problems_than_shown_are_counted(
    tmp_path: Path, duck_store: Store, settings: Settings
) -> None:
    path = tmp_path / "events.ndjson"
    path.write_text(
        "".join(json.dumps({"type": "team", "id": i}) + "\n" for i in range(500)), encoding="utf-8"
    )
    with pytest.raises(InputError) as refused:
        ingest_files(duck_store, [str(path)], settings)
    assert str(refused.value).startswith("500 invalid record(s)")
    assert [p.line for p in refused.value.problems] == list(range(1, 51))
