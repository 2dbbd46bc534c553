"""The Python executor of the rules (heatlens.ingest.quick) against the SQL one
(heatlens.ingest.validate): on the error corpus and on generated records, whatever the Python
executor accepts, the SQL rules accept too, with the very same staged rows and column types; and
it defers every invalid record."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heatlens.ingest import formats, quick
from heatlens.ingest.validate import validate
from heatlens.model import BY_NAME, Kind

CORPUS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "fixtures" / "invalid_records.json").read_text(encoding="utf-8")
)
TZ = "Europe/Paris"  # naive timestamps would depend on it; the Python executor defers them
_run = itertools.count()


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def _stage_rows(con: duckdb.DuckDBPyConnection, table: str) -> tuple[list[Any], list[Any]]:
    types = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall()
    rows = con.execute(f"SELECT * FROM {table} ORDER BY __line").fetchall()
    return types, rows


def _both(con: duckdb.DuckDBPyConnection, records: list[Any]) -> tuple[Any, Any]:
    """(quick stages or None, SQL StagedInput) of the same records, numbered from 1."""
    n = next(_run)
    numbered = list(enumerate(records, 1))
    fast = quick.stage(con, f"q{n}", numbered)
    raw = formats.read_records(con, "request", f"s{n}_raw", records)
    slow = validate(con, raw, tz=TZ, prefix=f"s{n}", limit=None)
    return fast, slow


def _assert_same(con: duckdb.DuckDBPyConnection, records: list[Any]) -> bool:
    """True when the Python executor accepted the records; then the SQL rules agree row for row."""
    fast, slow = _both(con, records)
    if fast is None:
        return False
    assert slow.bad_rows == 0 and slow.problems == []
    assert sorted(fast) == sorted(slow.stages)
    for name in fast:
        assert _stage_rows(con, fast[name]) == _stage_rows(con, slow.stages[name]), name
    return True


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_every_corpus_record_is_deferred_to_the_sql_rules(
    case: dict[str, Any], con: duckdb.DuckDBPyConnection
) -> None:
    good = {"type": "team", "id": "payments", "name": "Payments"}
    fast, slow = _both(con, [good, case["record"]])
    assert fast is None
    assert slow.bad_rows == 1


def test_valid_records_of_every_quick_type_are_staged_as_the_sql_rules_stage_them(
    con: duckdb.DuckDBPyConnection,
) -> None:
    records: list[dict[str, Any]] = [
        {"type": "team", "id": "t", "parent": "g", "created_at": "2026-01-01T00:00:00Z"},
        {"type": "team", "id": "u", "attributes": {"b": [1, 2.5, None], "a": {"é": "x"}}},
        {"type": "service", "id": "s", "team": "t", "tier": "", "attributes": {}},
        {"type": "capability", "id": "ci", "eligible": ["t", "u"], "mandated": True},
        {"type": "capability", "id": "cd"},
        {
            "type": "usage",
            "id": "u-1",
            "ts": "2026-03-02T10:15:00.123456+05:30",
            "capability": "ci",
            "outcome": "abandoned",
            "duration_s": 3,
            "attempt": 2,
            "run": "r",
        },
        {"type": "usage", "id": "u-2", "ts": "1970-01-01T00:00:00Z", "capability": "ci"},
        {
            "type": "deployment",
            "id": "d",
            "service": "s",
            "finished_at": "2099-12-31T23:59:59.9+01:00",
            "commits": [],
            "kind": "hotfix",
        },
        {"type": "change", "id": "abc", "committed_at": "2026-03-01T16:20:00Z", "title": "x"},
        {"type": "incident", "id": "i", "opened_at": "2026-03-02T13:00:00Z", "cause": "change"},
    ]
    assert _assert_same(con, records)
    # the defaults are applied, and an absent enum stays NULL (hand-checked against DESIGN §3)
    fast, _ = _both(con, records[7:8])
    assert fast is not None
    row = con.execute(f"SELECT environment, result, kind FROM {fast['deployment']}").fetchone()
    assert row == ("production", "success", "hotfix")
    fast, _ = _both(con, records[4:5])
    assert fast is not None
    assert con.execute(f"SELECT mandated FROM {fast['capability']}").fetchone() == (False,)


def test_records_the_python_executor_cannot_vouch_for_are_deferred(
    con: duckdb.DuckDBPyConnection,
) -> None:
    ok = {"type": "usage", "id": "u", "ts": "2026-03-02T10:15:00Z", "capability": "ci"}
    for change in (
        {"ts": "2026-03-02T10:15:00"},  # naive: depends on the time zone setting
        {"ts": "2026-03-02"},
        {"ts": "2026-03-02 10:15:00Z"},
        {"duration_s": 10**30},
        {"attempt": 1.0},
        {"attributes": {"n": 1 << 70}},
        {"actor": "\ud800"},  # a lone surrogate has no UTF-8
        {"id": "\ud800"},
    ):
        fast, _ = _both(con, [{**ok, **change}])
        assert fast is None, change
    for record in (
        {"type": "membership", "actor": "a", "team": "t"},  # derived id
        {"type": "survey", "id": "s"},  # questions
    ):
        fast, slow = _both(con, [record])
        assert fast is None and slow.bad_rows == 0


def _timestamps() -> st.SearchStrategy[str]:
    moments = st.datetimes(
        min_value=datetime(1960, 1, 1), max_value=datetime(2110, 1, 1), timezones=st.just(UTC)
    )
    offsets = st.integers(-15 * 60, 15 * 60).map(lambda m: timezone(timedelta(minutes=m)))

    def shown(at: datetime, off: timezone, form: int) -> str:
        local = at.astimezone(off)
        if form == 0:
            return local.isoformat()
        if form == 1:
            return at.strftime("%Y-%m-%dT%H:%M:%S") + "Z"
        if form == 2:
            return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        if form == 3:
            return local.strftime("%Y-%m-%d %H:%M:%S")
        return local.strftime("%Y-%m-%d")

    return st.builds(shown, moments, offsets, st.integers(0, 4)) | st.text(max_size=25)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)


def _value(kind: Kind) -> st.SearchStrategy[Any]:
    good: dict[Kind, st.SearchStrategy[Any]] = {
        Kind.STRING: st.text(max_size=8),
        Kind.TIMESTAMP: _timestamps(),
        Kind.NUMBER: st.integers(-5, 10**20) | st.floats(),
        Kind.INTEGER: st.integers(-(1 << 64), 1 << 64),
        Kind.BOOLEAN: st.booleans(),
        Kind.STRING_LIST: st.lists(st.text(max_size=4), max_size=3),
        Kind.OBJECT: st.dictionaries(st.text(max_size=4), _json, max_size=3),
    }
    return st.one_of(good.get(kind, st.text(max_size=8)), _json)


@st.composite
def _records(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from([*sorted(quick.QUICK_TYPES), "membership", "survey_response"]))
    rtype = BY_NAME[name]
    record: dict[str, Any] = {"type": name}
    for f in rtype.fields:
        if f.kind is Kind.ENUM:
            value = st.sampled_from([*f.choices, "Other", ""]) | _json
        else:
            value = _value(f.kind)
        if draw(st.booleans()) or (f.required and draw(st.integers(0, 9)) > 0):
            record[f.name] = draw(value)
    if draw(st.integers(0, 19)) == 0:
        record["unexpected"] = 1
    return record


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_records(), min_size=1, max_size=4))
def test_generated_records_are_staged_alike_or_deferred(records: list[dict[str, Any]]) -> None:
    con = _shared()
    for record in records:  # each alone: an accepted record is checked against SQL on its own
        _assert_same(con, [record])
    _assert_same(con, records)


_con: list[duckdb.DuckDBPyConnection] = []


def _shared() -> duckdb.DuckDBPyConnection:
    if not _con:
        _con.append(duckdb.connect())
    return _con[0]


def _valid_value(kind: Kind, choices: tuple[str, ...]) -> st.SearchStrategy[Any]:
    moments = st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)
    )
    return {
        Kind.STRING: st.text(min_size=1, max_size=8),
        Kind.ENUM: st.sampled_from(choices or ("x",)),
        Kind.TIMESTAMP: moments.map(lambda at: at.isoformat().replace("+00:00", "Z")),
        Kind.NUMBER: st.integers(0, 10**6) | st.floats(0, 1e9),
        Kind.INTEGER: st.integers(3, 1000),
        Kind.BOOLEAN: st.booleans(),
        Kind.STRING_LIST: st.lists(st.text(max_size=4), max_size=3),
        Kind.OBJECT: st.dictionaries(
            st.text(max_size=4), st.integers(-(1 << 63), (1 << 63) - 1) | st.text(), max_size=3
        ),
    }[kind]


@st.composite
def _valid_records(draw: st.DrawFn) -> dict[str, Any]:
    rtype = BY_NAME[draw(st.sampled_from(sorted(quick.QUICK_TYPES)))]
    record: dict[str, Any] = {"type": rtype.name}
    for f in rtype.fields:
        if f.required or draw(st.booleans()):
            record[f.name] = draw(_valid_value(f.kind, f.choices))
    return record


@settings(max_examples=60, deadline=None)
@given(st.lists(_valid_records(), min_size=1, max_size=5))
def test_generated_valid_records_are_accepted_and_staged_alike(
    records: list[dict[str, Any]],
) -> None:
    # valid by construction (DESIGN §3): the Python executor takes them, so the comparison
    # above is not vacuous
    assert _assert_same(_shared(), records)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(_valid_records(), min_size=1, max_size=4), min_size=1, max_size=4))
def test_requests_typed_alone_join_as_their_records_are_typed_together(
    requests: list[list[dict[str, Any]]],
) -> None:
    """What an HTTP front process types per request (quick.typed), joined in the writer
    (quick.joined), is the table the writer would type from the group's records (by_part)."""
    alone = [(i, quick.typed(records)) for i, records in enumerate(requests)]
    assert all(tables is not None for _, tables in alone)
    together = quick.by_part([(i, r) for i, records in enumerate(requests) for r in records])
    assert together is not None
    joined = quick.joined([(i, t) for i, t in alone if t is not None])
    assert sorted(joined) == sorted(together)
    for name, table in together.items():
        assert joined[name].to_pylist() == table.to_pylist()
