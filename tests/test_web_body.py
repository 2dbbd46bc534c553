"""Bodies that must be refused with a 4xx in the one error shape, never a 5xx (issue 4 §5):
regressions found by probing the ingest endpoint past the corpus of test_web_api."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from heatlens.settings import Settings
from heatlens.web import create_app

USAGE = '{"type": "usage", "id": %s, "ts": "2026-03-02T10:00:00Z", "capability": "ci"%s}'


@pytest.fixture
def client(tmp_path: Path, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, f"duckdb:///{tmp_path / 'body.duckdb'}")
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _post(client: TestClient, body: str) -> tuple[int, dict[str, str]]:
    response = client.post(
        "/api/v1/events",
        content=body.encode("utf-8", "surrogatepass"),
        headers={"Content-Type": "application/json"},
    )
    return response.status_code, response.json().get("error", {})


def test_an_integer_too_long_for_python_is_a_400_that_says_so(client: TestClient) -> None:
    status, error = _post(client, "[" + USAGE % ('"a"', ', "duration_s": ' + "9" * 5000) + "]")
    assert (status, error["code"]) == (400, "invalid_json")
    assert "too many digits" in error["message"]
    assert "sys." not in error["message"]  # Python's own advice is not the client's to follow


def test_an_integer_beyond_64_bits_is_not_read_as_a_float() -> None:
    # orjson would give 1.8446744073709552e+19; the value as written must reach validation
    from heatlens.web.body import parse_records

    body = '[{"type": "usage", "n": 18446744073709551616, "x": 1.5}, {"n": 20}]'
    records = parse_records(body.encode(), "application/json")
    assert records[0]["n"] == 18446744073709551616 and type(records[0]["n"]) is int
    assert records[1] == {"n": 20}


def test_nan_is_still_malformed_json(client: TestClient) -> None:
    status, error = _post(client, "[" + USAGE % ('"a"', ', "duration_s": NaN') + "]")
    assert (status, error["code"]) == (400, "invalid_json")
    assert "NaN is not a JSON number" in error["message"]


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (USAGE % ('"\\ud800"', ""), None),  # a lone surrogate: not a string DuckDB can hold
        (USAGE % ('{"x": 1}', ""), "id"),
        (USAGE.replace("2026-03-02", "99999-03-02") % ('"a"', ""), "ts"),
        (USAGE.replace("2026-03-02T10:00:00Z", "2026-13-45T99:99:99+99:99") % ('"a"', ""), "ts"),
    ],
    ids=["lone-surrogate", "object-id", "five-digit-year", "impossible-time"],
)
def test_records_no_rule_expected_are_a_422_for_that_record(
    client: TestClient, record: str, field: str | None
) -> None:
    good = USAGE % ('"ok"', "")
    status, error = _post(client, f"[{good}, {record}]")
    assert status == 422, error
    assert [(d["index"], d["field"]) for d in error["details"]] == [(2, field)]
    assert client.get("/healthz").json()["data_version"] == 0


def test_a_body_of_many_requests_worth_of_problems_lists_each_record(client: TestClient) -> None:
    records = [json.loads(USAGE % (f'"u{i}"', "")) for i in range(3)]
    for r in records:
        del r["ts"]
    status, error = _post(client, json.dumps(records))
    assert status == 422
    assert [(d["index"], d["field"]) for d in error["details"]] == [(1, "ts"), (2, "ts"), (3, "ts")]


def test_json_nested_deeper_than_the_limit_is_a_400_and_up_to_it_is_read() -> None:
    from heatlens.web.body import MAX_DEPTH, ApiError, parse_json

    def nested(levels: int) -> str:  # `levels` objects, the innermost holding 1
        return '{"a": ' * levels + "1" + "}" * levels

    value = parse_json(nested(MAX_DEPTH).encode())
    for _ in range(MAX_DEPTH):
        value = value["a"]
    assert value == 1
    with pytest.raises(ApiError, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_json(nested(MAX_DEPTH + 1).encode())
    # deep in one branch only, beside shallow ones
    with pytest.raises(ApiError, match="nested deeper"):
        parse_json(('{"x": 1, "y": [2, 3], "z": ' + nested(MAX_DEPTH) + "}").encode())


def test_long_digit_runs_in_strings_and_big_integers_deep_inside_keep_their_values() -> None:
    from heatlens.web.body import parse_json

    body = (
        '{"sha": "1234567890123456789012abc", "run": {"attempts": [{"id": 123456789012345678901}]},'
        ' "ratio": 0.5, "small": 7}'
    )
    value = parse_json(body.encode())
    assert value == {
        "sha": "1234567890123456789012abc",
        "run": {"attempts": [{"id": 123456789012345678901}]},
        "ratio": 0.5,
        "small": 7,
    }
    assert type(value["run"]["attempts"][0]["id"]) is int
    # a 19-digit run only inside a string, no float: the fast parse stands, values as written
    assert parse_json(b'{"node": "99999999999999999999", "n": 3}') == {
        "node": "99999999999999999999",
        "n": 3,
    }
