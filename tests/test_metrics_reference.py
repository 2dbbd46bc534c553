"""The engine against the independent plain-Python reference (tests/reference), on random data.

Random organisations go through the real ingest into a real store; the engine's report must equal
the reference's row for row (values to 1e-9) and warning for warning, for every grain, segment key,
time zone and option. The same comparison runs on Postgres.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heatlens.ingest import ingest_records
from heatlens.metrics import Request, compute
from heatlens.model import RECORD_TYPES
from heatlens.settings import Settings, load_settings
from heatlens.store import Store
from tests.metrics_data import by_type, organisation
from tests.reference import heat_dora as ref

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
CASES = [
    ("week", (), "UTC", {}),
    ("day", ("capability",), "UTC", {}),
    ("week", ("team",), "Europe/Berlin", {}),
    ("month", ("group",), "America/New_York", {"tier_year": 2021}),
    ("month", ("service",), "UTC", {"quantile": "lower"}),
    ("week", ("capability", "team"), "UTC", {}),
    ("quarter", ("environment",), "UTC", {"incident_link_window": "unbounded"}),
    ("all", ("action",), "Asia/Tokyo", {}),
    ("week", ("survey",), "UTC", {}),
    ("week", ("question",), "UTC", {}),
    ("month", ("survey", "team"), "UTC", {}),
    ("week", ("capability", "group"), "UTC", {"incident_link_window": "36h"}),
    # the v2 rules, each away from its default
    ("month", ("team",), "UTC", {"production_environments": ["production", "prod-*"]}),
    ("week", ("service",), "UTC", {"failure_from_remediation": False, "tier_min_n": 1}),
    ("month", ("environment",), "UTC", {"production_environments": ["*prod*"]}),
    ("all", ("team",), "UTC", {"failure_severities": ["SEV1", "sev2"], "tier_min_n": 2}),
    ("week", (), "Europe/Berlin", {"lead_time_start": "authored"}),
    ("month", ("group",), "UTC", {"definitions": "devlake"}),
    ("quarter", ("service",), "UTC", {"definitions": "fourkeys"}),
    ("week", ("team",), "UTC", {"incident_link_window": "0m"}),
]


def reference_settings(s: Settings) -> ref.Settings:
    """The reference's settings for the engine's (presets already applied by the engine's
    loader; the reference's own preset table is checked against them in a test below)."""
    return ref.Settings(
        timezone=s.timezone,
        production_environments=tuple(s.production_environments),
        incident_link_window=s.link_window,
        quantile=s.quantile,
        tier_year=s.tier_year,
        failure_from_remediation=s.failure_from_remediation,
        failure_severities=tuple(s.failure_severities),
        tier_min_n=s.tier_min_n,
        lead_time_start=s.lead_time_start,
        bot_actors=tuple(s.bot_actors),
    )


@pytest.mark.parametrize("definitions", ["heatlens", "devlake", "fourkeys"])
def test_presets_are_the_references(definitions: str) -> None:
    """`definitions` sets what the reference, written from DESIGN, reads each preset to be."""
    engine = load_settings(environ={}, overrides={"definitions": definitions})
    assert reference_settings(engine) == ref.settings_for(definitions)


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["metric"], row["period"], tuple(sorted(row["segment"].items(), key=str)))


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


def compare(
    store: Store,
    records: list[dict[str, Any]],
    grain: str,
    by: tuple[str, ...],
    s: Settings,
    start: date,
    end: date,
    metrics: tuple[str, ...] = (),
) -> None:
    """Engine and reference agree on every row and warning."""
    got = compute(store, Request(grain, start, end, by, metrics, now=NOW), s).to_json()
    want = ref.report(
        by_type(records),
        grain=grain,
        start=start,
        end=end,
        by=by,
        metrics=metrics or None,
        settings=reference_settings(s),
        now=NOW,
    )
    got_rows = {_key(r): r for r in got["rows"]}
    want_rows = {_key(r): r for r in want["rows"]}
    missing = sorted(set(want_rows) - set(got_rows), key=str)[:5]
    extra = sorted(set(got_rows) - set(want_rows), key=str)[:5]
    assert not missing and not extra, f"rows only in reference: {missing}; only in engine: {extra}"
    for key, w in want_rows.items():
        g = got_rows[key]
        for field in ("value", "n", "ci"):
            assert _close(g[field], w[field]), f"{key} {field}: engine {g[field]} ≠ {w[field]}"
        for field in ("suppressed", "tier", "complete"):
            assert g[field] == w[field], f"{key} {field}: engine {g[field]} ≠ {w[field]}"
    assert {(w["code"], w["count"]) for w in got["warnings"]} == {
        (w["code"], w["count"]) for w in want["warnings"]
    }


def _run(
    store_url: str,
    seed: int,
    case: tuple[str, tuple[str, ...], str, dict[str, Any]],
    start_offset: int,
    days: int,
    metrics: tuple[str, ...] = (),
) -> None:
    grain, by, tz, options = case
    rng = random.Random(seed)
    records = organisation(rng)
    s = load_settings(environ={}, overrides={"timezone": tz, **options})
    with Store.open(store_url) as store:
        ingest_records(store, records, s, source="test")
        start = date(2026, 1, 1) + timedelta(days=start_offset)
        compare(store, records, grain, by, s, start, start + timedelta(days=days), metrics)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{'+'.join(c[1]) or 'all'}-{c[2]}")
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), start_offset=st.integers(-5, 40), days=st.integers(1, 60))
def test_engine_matches_reference_on_duckdb(
    case: Any, seed: int, start_offset: int, days: int
) -> None:
    _run("duckdb:///:memory:", seed, case, start_offset, days)


DORA_CASES = [c for c in CASES if not set(c[1]) & {"capability", "action", "survey", "question"}]


@pytest.mark.parametrize(
    "case", DORA_CASES, ids=lambda c: f"{c[0]}-{'+'.join(c[1]) or 'all'}-{c[2]}-{sorted(c[3])}"
)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), start_offset=st.integers(-5, 40), days=st.integers(1, 60))
def test_dora_matches_reference_on_duckdb(
    case: Any, seed: int, start_offset: int, days: int
) -> None:
    """The DORA metrics alone, on more organisations (cheaper than the whole catalog)."""
    _run("duckdb:///:memory:", seed, case, start_offset, days, ("dora",))


@pytest.mark.postgres
@pytest.mark.parametrize(
    "case",
    CASES[:6] + CASES[12:16],
    ids=lambda c: f"{c[0]}-{'+'.join(c[1]) or 'all'}-{sorted(c[3])}",
)
def test_engine_matches_reference_on_postgres(case: Any, postgres_url: str) -> None:
    for seed in range(3):
        with Store.open(postgres_url) as store:
            for rtype in RECORD_TYPES:
                store.delete_records(rtype, source="test")
        _run(postgres_url, seed, case, 3, 40)
