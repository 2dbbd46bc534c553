"""The hand-computed edge-case fixtures of tests/reference/test_reference.py, run on the engine.

Each fixture there asserts numbers worked out by hand (clipped periods, a change shipped by two
services, each incident link rule, anonymity with 4 and 5 respondents, time zones…) against
`report(...)`. Here the same functions run with `report` replaced by the engine — records go
through the real ingest into a real store (DuckDB, and Postgres) — so the engine must produce the
same hand-computed answers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime
from typing import Any

import pytest

import tests.reference.test_reference as fixtures
from heatlens.ingest import ingest_records
from heatlens.metrics import Request, compute
from heatlens.model import RECORD_TYPES
from heatlens.settings import load_settings
from heatlens.store import Store
from tests.reference import heat_dora as ref

CASES = [
    name
    for name, fn in inspect.getmembers(fixtures, inspect.isfunction)
    if name.startswith("test_") and "report(" in inspect.getsource(fn)
]


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def engine_report(store_url: str, quiet_too: bool = False) -> Callable[..., dict[str, Any]]:
    """A function with the reference's `report` signature that runs the engine on a store
    (`quiet_too`: also without warnings, which must give the same rows and no warnings)."""

    def run(
        records: dict[str, list[dict[str, Any]]],
        *,
        grain: str,
        start: date,
        end: date,
        by: tuple[str, ...] = (),
        metrics: tuple[str, ...] | None = None,
        settings: ref.Settings = ref.DEFAULT_SETTINGS,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        window = settings.incident_link_window
        options = {
            "timezone": settings.timezone,
            "production_environments": list(settings.production_environments),
            "incident_link_window": "unbounded"
            if window is None
            else f"{int(window.total_seconds() // 60)}m",
            "quantile": settings.quantile,
            "tier_year": settings.tier_year,
            "failure_from_remediation": settings.failure_from_remediation,
            "failure_severities": list(settings.failure_severities),
            "tier_min_n": settings.tier_min_n,
            "lead_time_start": settings.lead_time_start,
            "bot_actors": list(settings.bot_actors),
        }
        s = load_settings(environ={}, overrides=options)
        canonical = [
            {"type": kind, **{k: _canonical(v) for k, v in r.items() if v is not None}}
            for kind, recs in records.items()
            for r in recs
        ]
        with Store.open(store_url) as store:
            _empty(store)
            ingest_records(store, canonical, s, source="fixture")
            request = Request(
                grain,
                start,
                end,
                tuple(by),
                tuple(metrics or ()),
                now=now or datetime(2030, 1, 1).astimezone(),
            )
            report = compute(store, request, s)
            if quiet_too:
                quiet = compute(store, replace(request, warnings=False), s).to_json()
                assert quiet["rows"] == report.to_json()["rows"]
                assert quiet["warnings"] == []
        return report.to_json()

    return run


def _empty(store: Store) -> None:
    for rtype in RECORD_TYPES:
        store.delete_records(rtype, source="fixture")


@pytest.mark.parametrize("name", CASES)
def test_engine_gives_the_hand_computed_answers(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setattr(fixtures, "report", engine_report(str(tmp_path / "s.duckdb")))
    getattr(fixtures, name)()


@pytest.mark.parametrize("name", CASES)
def test_reports_without_warnings_give_the_same_rows(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Request.warnings false (the scorecard, the waves, the overview's DORA): the rows the
    hand-computed answers hold, and no warnings."""
    monkeypatch.setattr(fixtures, "report", engine_report(str(tmp_path / "s.duckdb"), True))
    getattr(fixtures, name)()


@pytest.mark.postgres
@pytest.mark.parametrize("name", CASES)
def test_engine_gives_the_hand_computed_answers_on_postgres(
    name: str, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    monkeypatch.setattr(fixtures, "report", engine_report(postgres_url))
    getattr(fixtures, name)()
