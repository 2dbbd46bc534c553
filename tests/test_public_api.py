"""The Python API for notebooks and scripts: its names are pinned, and it works as documented."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

import heatlens

USAGE = [
    # two people use ci on 2026-03-02, one of them twice; one person uses cd on 2026-03-03
    {"type": "usage", "id": "u1", "ts": "2026-03-02T09:00:00Z", "capability": "ci", "actor": "ana"},
    {"type": "usage", "id": "u2", "ts": "2026-03-02T10:00:00Z", "capability": "ci", "actor": "ana"},
    {"type": "usage", "id": "u3", "ts": "2026-03-02T11:00:00Z", "capability": "ci", "actor": "bo"},
    {"type": "usage", "id": "u4", "ts": "2026-03-03T11:00:00Z", "capability": "cd", "actor": "bo"},
]


def test_the_public_names_are_exactly_these() -> None:
    assert sorted(heatlens.__all__) == sorted(
        [
            "ConfigError",
            "EmptyStoreError",
            "HeatlensError",
            "InputError",
            "LocalApplication",
            "RemoteApplication",
            "Report",
            "ReportResult",
            "Request",
            "StoreError",
            "__version__",
            "connect",
            "open",
        ]
    )
    for name in heatlens.__all__:
        assert getattr(heatlens, name) is not None


def test_open_ingest_report_and_frames(tmp_path: Path) -> None:
    with heatlens.open(tmp_path / "nb.duckdb", timezone="UTC") as hl:
        doc = hl.ingest_records(USAGE, source="notebook")
        assert doc["counts"]["usage"] == {"inserted": 4, "updated": 0, "unchanged": 0}
        request = heatlens.Request(
            "day",
            date(2026, 3, 2),
            date(2026, 3, 4),
            by=("capability",),
            metrics=("adoption.active_users",),
        )
        report = hl.report(request).report
    # active users per capability and day, counted by hand from USAGE
    expected = {
        ("ci", date(2026, 3, 2)): 2,
        ("ci", date(2026, 3, 3)): 0,
        ("cd", date(2026, 3, 2)): 0,
        ("cd", date(2026, 3, 3)): 1,
    }
    table = report.to_arrow()
    assert table.column_names[:3] == ["metric", "period", "capability"]
    got = {
        (r["capability"], r["period"]): r["value"]
        for r in table.to_pylist()
        if r["metric"] == "adoption.active_users"
    }
    assert got == expected
    frame = report.to_pandas()
    assert len(frame) == table.num_rows
    ci = frame[(frame.capability == "ci") & (frame.period == date(2026, 3, 2))]
    assert ci.value.tolist() == [2.0]


def test_invalid_records_raise_and_store_nothing(tmp_path: Path) -> None:
    with heatlens.open(tmp_path / "nb.duckdb") as hl:
        with pytest.raises(heatlens.InputError) as caught:
            hl.ingest_records([*USAGE, {"type": "usage", "id": "bad", "ts": "yesterday"}])
        assert "ts" in " ".join(map(str, caught.value.problems))
        assert hl.status()["sources"] == []
