"""Every input format stores the same records, with timestamps normalised to UTC."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from heatlens.errors import InputError
from heatlens.ingest import ingest_files
from heatlens.settings import Settings, load_settings
from heatlens.store import Store
from tests.conftest import stored

USAGE = [
    {
        "type": "usage",
        "id": "u1",
        "ts": "2026-03-02T10:15:00Z",
        "capability": "ci",
        "outcome": "success",
        "duration_s": 12.5,
        "actor": "ana",
    },
    {
        "type": "usage",
        "id": "u2",
        "ts": "2026-03-02T12:15:00+02:00",
        "capability": "cd",
        "outcome": "error",
    },
]
DEPLOYMENTS = [
    {
        "type": "deployment",
        "id": "d1",
        "service": "checkout",
        "finished_at": "2026-03-02T11:00:00Z",
        "commits": ["a1", "b2"],
        "kind": "hotfix",
    },
]
EXPECTED_USAGE = [
    ("u1", datetime(2026, 3, 2, 10, 15, tzinfo=UTC), "ci", "success", 12.5, "ana"),
    ("u2", datetime(2026, 3, 2, 10, 15, tzinfo=UTC), "cd", "error", None, None),
]
EXPECTED_DEPLOYMENTS = [
    (
        "d1",
        "checkout",
        datetime(2026, 3, 2, 11, 0, tzinfo=UTC),
        "production",
        "success",
        ["a1", "b2"],
        "hotfix",
    ),
]


def _stored(store: Store) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    usage = stored(store, "usage", "id", "ts", "capability", "outcome", "duration_s", "actor")
    deployments = stored(
        store,
        "deployment",
        "id",
        "service",
        "finished_at",
        "environment",
        "result",
        "commits",
        "kind",
    )
    return usage, deployments


def _csv(path: Path, records: list[dict[str, Any]], with_type: bool = True) -> None:
    fields = sorted({k for r in records for k in r if with_type or k != "type"})
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for r in records:
            writer.writerow(
                {
                    k: json.dumps(v) if isinstance(v, list) else v
                    for k, v in r.items()
                    if k in fields
                }
            )


def test_ndjson(tmp_path: Path, store: Store, settings: Settings) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in USAGE + DEPLOYMENTS), encoding="utf-8")
    ingest_files(store, [str(path)], settings)
    assert _stored(store) == (EXPECTED_USAGE, EXPECTED_DEPLOYMENTS)
    assert {source for (source,) in stored(store, "usage", "source")} == {"file:events.jsonl"}


def test_json_array(tmp_path: Path, store: Store, settings: Settings) -> None:
    path = tmp_path / "events.json"
    path.write_text(json.dumps(USAGE + DEPLOYMENTS), encoding="utf-8")
    ingest_files(store, [str(path)], settings)
    assert _stored(store) == (EXPECTED_USAGE, EXPECTED_DEPLOYMENTS)


def test_csv_with_type_column_and_with_type_option(
    tmp_path: Path, store: Store, settings: Settings
) -> None:
    _csv(tmp_path / "usage.csv", USAGE)
    _csv(tmp_path / "deploys.csv", DEPLOYMENTS, with_type=False)
    ingest_files(store, [str(tmp_path / "usage.csv")], settings)
    ingest_files(store, [str(tmp_path / "deploys.csv")], settings, default_type="deployment")
    assert _stored(store) == (EXPECTED_USAGE, EXPECTED_DEPLOYMENTS)


def test_csv_errors_name_the_file_line(
    tmp_path: Path, duck_store: Store, settings: Settings
) -> None:
    path = tmp_path / "usage.csv"
    path.write_text(
        "type,id,ts,capability,duration_s\nusage,u1,2026-03-02,ci,1\nusage,u2,2026-03-02,ci,fast\n",
        encoding="utf-8",
    )
    with pytest.raises(InputError) as refused:
        ingest_files(duck_store, [str(path)], settings)
    assert [str(p) for p in refused.value.problems] == [
        "usage.csv line 3: usage.duration_s = fast: expected a finite number ≥ 0"
    ]


def test_csv_without_type_needs_the_option(
    tmp_path: Path, duck_store: Store, settings: Settings
) -> None:
    _csv(tmp_path / "deploys.csv", DEPLOYMENTS, with_type=False)
    with pytest.raises(InputError, match=r"deploys.csv: no `type` column: add one, or pass --type"):
        ingest_files(duck_store, [str(tmp_path / "deploys.csv")], settings)


def test_parquet_with_native_types(tmp_path: Path, store: Store, settings: Settings) -> None:
    usage = pa.table(
        {
            "type": ["usage", "usage"],
            "id": ["u1", "u2"],
            "ts": pa.array(
                [
                    datetime(2026, 3, 2, 10, 15, tzinfo=UTC),
                    datetime(2026, 3, 2, 10, 15, tzinfo=UTC),
                ],
                pa.timestamp("us", "UTC"),
            ),
            "capability": ["ci", "cd"],
            "outcome": ["success", "error"],
            "duration_s": pa.array([12.5, None], pa.float64()),
            "actor": ["ana", None],
        }
    )
    pq.write_table(usage, tmp_path / "usage.parquet")
    deployments = pa.table(
        {
            "id": ["d1"],
            "service": ["checkout"],
            "finished_at": pa.array(
                [datetime(2026, 3, 2, 11, 0)], pa.timestamp("ms")
            ),  # naive: UTC
            "commits": pa.array([["a1", "b2"]], pa.list_(pa.string())),
            "kind": ["hotfix"],
        }
    )
    pq.write_table(deployments, tmp_path / "deploys.parquet")
    ingest_files(store, [str(tmp_path / "usage.parquet")], settings)
    ingest_files(store, [str(tmp_path / "deploys.parquet")], settings, default_type="deployment")
    assert _stored(store) == (EXPECTED_USAGE, EXPECTED_DEPLOYMENTS)


def test_parquet_errors_name_the_record(
    tmp_path: Path, duck_store: Store, settings: Settings
) -> None:
    pq.write_table(
        pa.table({"type": ["team", "team", "team"], "id": ["a", None, "c"]}),
        tmp_path / "teams.parquet",
    )
    with pytest.raises(InputError) as refused:
        ingest_files(duck_store, [str(tmp_path / "teams.parquet")], settings)
    assert [str(p) for p in refused.value.problems] == [
        "teams.parquet record 2: team.id is missing: required"
    ]


def test_parquet_column_of_another_type_must_be_empty(
    tmp_path: Path, duck_store: Store, settings: Settings
) -> None:
    """One Parquet file can hold several types (the union of their columns), as `generate`
    writes; a value in a column its type does not have is an error."""
    pq.write_table(
        pa.table({"type": ["team", "service"], "id": ["a", "s"], "parent": [None, "a"]}),
        tmp_path / "org.parquet",
    )
    with pytest.raises(InputError) as refused:
        ingest_files(duck_store, [str(tmp_path / "org.parquet")], settings)
    assert [str(p) for p in refused.value.problems] == [
        "org.parquet record 2: service.parent: unknown field "
        "(service has id, name, team, created_at, tier, repo, attributes)"
    ]


def test_stdin_is_sniffed(
    monkeypatch: pytest.MonkeyPatch, store: Store, settings: Settings
) -> None:
    data = "".join(json.dumps(r) + "\n" for r in USAGE + DEPLOYMENTS).encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    ingest_files(store, ["-"], settings)
    assert _stored(store) == (EXPECTED_USAGE, EXPECTED_DEPLOYMENTS)
    assert {source for (source,) in stored(store, "usage", "source")} == {"file:stdin"}


def test_unknown_suffix_is_refused(tmp_path: Path, duck_store: Store, settings: Settings) -> None:
    (tmp_path / "events.txt").write_text("{}", encoding="utf-8")
    with pytest.raises(InputError, match=r"cannot tell the format from the suffix '.txt'"):
        ingest_files(duck_store, [str(tmp_path / "events.txt")], settings)


def test_missing_file_is_refused(duck_store: Store, settings: Settings) -> None:
    with pytest.raises(InputError, match=r"nope.ndjson: no such file"):
        ingest_files(duck_store, ["nope.ndjson"], settings)


@pytest.mark.parametrize(
    ("written", "tz", "utc"),
    [
        ("2026-03-02T10:15:00Z", "UTC", datetime(2026, 3, 2, 10, 15, tzinfo=UTC)),
        ("2026-03-02T10:15:00.250+01:00", "UTC", datetime(2026, 3, 2, 9, 15, 0, 250000, UTC)),
        ("2026-03-02T10:15:00-0500", "UTC", datetime(2026, 3, 2, 15, 15, tzinfo=UTC)),
        ("2026-03-02 10:15", "UTC", datetime(2026, 3, 2, 10, 15, tzinfo=UTC)),
        ("2026-03-02", "UTC", datetime(2026, 3, 2, tzinfo=UTC)),
        # without an offset: the configured zone, daylight saving included
        ("2026-03-02T10:15:00", "Europe/Berlin", datetime(2026, 3, 2, 9, 15, tzinfo=UTC)),
        ("2026-07-02T10:15:00", "Europe/Berlin", datetime(2026, 7, 2, 8, 15, tzinfo=UTC)),
        ("2026-03-02", "America/New_York", datetime(2026, 3, 2, 5, 0, tzinfo=UTC)),
        # an explicit offset wins over the configured zone
        ("2026-03-02T10:15:00Z", "Europe/Berlin", datetime(2026, 3, 2, 10, 15, tzinfo=UTC)),
        # Sunday 23:30 in Berlin is Monday... no: it is Sunday 22:30 UTC, still the old week
        ("2026-03-01T23:30:00", "Europe/Berlin", datetime(2026, 3, 1, 22, 30, tzinfo=UTC)),
    ],
)
def test_timestamps_are_normalised_to_utc(
    written: str, tz: str, utc: datetime, duck_store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "e.ndjson"
    path.write_text(
        json.dumps({"type": "incident", "id": "i", "opened_at": written}) + "\n", encoding="utf-8"
    )
    ingest_files(duck_store, [str(path)], load_settings(environ={}, overrides={"timezone": tz}))
    assert stored(duck_store, "incident", "opened_at") == [(utc,)]
