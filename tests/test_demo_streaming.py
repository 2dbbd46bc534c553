"""The streamed demo usage (bench/ at 100 M records): the same records as the in-memory path."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from heatlens.demo import OrgSpec, generate, write
from heatlens.demo.generator import usage_chunks, write_streaming
from heatlens.demo.organisation import build_org, streams

# 12 teams over 90 days: ~17,000 usage records, some CI retries and bot runs among them
SPEC = OrgSpec(teams=12, days=90, end=date(2026, 3, 2), seed=11, usage_scale=3.0)


def frozen(value: Any) -> Any:
    return tuple(frozen(v) for v in value) if isinstance(value, list) else value


def rows(data: pa.Table) -> Counter[tuple[Any, ...]]:
    """The rows of a table as a multiset of tuples (order-free comparison)."""
    return Counter(tuple(frozen(v) for v in r.values()) for r in data.to_pylist())


@pytest.fixture(scope="module")
def whole() -> dict[str, pa.Table]:
    return generate(SPEC)


@pytest.mark.parametrize("chunk_rows", [1, 700, 5_000, 10_000_000])
def test_usage_chunks_hold_the_same_records_as_generate(
    whole: dict[str, pa.Table], chunk_rows: int
) -> None:
    org_rng, usage_rng, _, _ = streams(SPEC.seed)
    org = build_org(SPEC, org_rng)
    parts = list(usage_chunks(org, SPEC.usage_scale, usage_rng, chunk_rows))
    usage = whole["usage"]
    # chunks are whole days: about one a day at chunk_rows=1, one in all above the record count
    if chunk_rows == 1:
        assert len(parts) >= SPEC.days // 2
    if chunk_rows == 10_000_000:
        assert len(parts) == 1
    streamed = pa.concat_tables(parts)
    assert streamed.schema == usage.schema
    assert usage.num_rows > 10_000
    assert streamed.num_rows == usage.num_rows
    assert rows(streamed) == rows(usage)
    # the workload exercises the retry and bot paths the chunks rebuild
    attempts = Counter(streamed.column("attempt").to_pylist())
    assert attempts[2] > 0 and attempts[1] > attempts[2]
    assert "renovate[bot]" in set(streamed.column("actor").to_pylist())


def test_write_streaming_writes_the_same_file_content_as_write(
    whole: dict[str, pa.Table], tmp_path: Path
) -> None:
    ours, theirs = tmp_path / "streamed.parquet", tmp_path / "whole.parquet"
    counts = write_streaming(SPEC, ours, chunk_rows=4_000)
    assert counts == {name: data.num_rows for name, data in whole.items()}
    write(whole, theirs)
    a, b = pq.read_table(ours), pq.read_table(theirs)
    assert a.schema == b.schema
    assert rows(a) == rows(b)


def test_write_streaming_only_usage_has_the_type_column_and_usage_fields(
    whole: dict[str, pa.Table], tmp_path: Path
) -> None:
    path = tmp_path / "usage.parquet"
    assert write_streaming(SPEC, path, types=["usage"], chunk_rows=4_000) == {
        "usage": whole["usage"].num_rows
    }
    back = pq.read_table(path)
    assert back.column_names == ["type", *whole["usage"].column_names]
    assert set(back.column("type").to_pylist()) == {"usage"}
    assert rows(back.drop_columns(["type"])) == rows(whole["usage"])


def test_write_streaming_refuses_other_formats_and_unknown_types(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.parquet"):
        write_streaming(SPEC, tmp_path / "x.ndjson")
    with pytest.raises(ValueError, match="unknown record type"):
        write_streaming(SPEC, tmp_path / "x.parquet", types=["usage", "nope"])
