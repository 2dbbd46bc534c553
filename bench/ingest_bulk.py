"""Bulk ingest of generated usage records against DuckDB's own load of the same Parquet file.

    python bench/ingest_bulk.py [--rows 10000000] [--keep]

Generates the usage records of a synthetic organisation (heatlens.demo) into one Parquet file, then
times, each as a whole fresh process on an empty store file:
  baseline  DuckDB's own `CREATE TABLE usage AS SELECT * FROM read_parquet(file)`
  heatlens  `heatlens ingest file` (read, validate every rule, stage, upsert)
  replay    `heatlens ingest file` again on that store (every record compared, all unchanged)
and prints seconds, CPU seconds (user + system: steadier than wall time on a shared machine),
peak memory and the ratio to the baseline (target, DESIGN §6 v2: heatlens ≤ 1.5×).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from heatlens.demo import OrgSpec, generate, usage_scale_for

HERE = Path(__file__).resolve().parent
BASELINE = (
    "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
    'c.execute("CREATE TABLE usage AS SELECT * FROM read_parquet(\'" + sys.argv[2] + "\')"); '
    "c.close()"
)


def make_file(rows: int, path: Path) -> int:
    """Write about `rows` generated usage records (with a `type` column) to Parquet."""
    teams, days = 200, 365
    tables = generate(
        OrgSpec(teams=teams, days=days, usage_scale=usage_scale_for(rows, teams, days))
    )
    usage = tables["usage"]
    usage = usage.add_column(0, "type", pa.array(["usage"] * usage.num_rows, pa.string()))
    pq.write_table(usage, path)
    return int(usage.num_rows)


TARGET_RATIO = 1.5


def timed(cmd: list[str]) -> tuple[float, float, float]:
    """Seconds, CPU seconds and peak RSS (GiB) of a whole process."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="heatlens-bench-"))
    try:
        data = work / "usage.parquet"
        started = time.perf_counter()
        n = make_file(args.rows, data)
        print(
            f"generated {n:,} usage records ({data.stat().st_size / 1e6:.0f} MB Parquet) "
            f"in {time.perf_counter() - started:.1f} s"
        )
        heatlens = [
            sys.executable,
            "-m",
            "heatlens",
            "--store",
            str(work / "h.duckdb"),
            "ingest",
            str(data),
        ]
        runs = {
            "baseline: DuckDB CREATE TABLE AS read_parquet": timed(
                [sys.executable, "-c", BASELINE, str(work / "b.duckdb"), str(data)]
            ),
            "heatlens ingest (empty store)": timed(heatlens),
            "heatlens ingest again (all unchanged)": timed(heatlens),
        }
        base = next(iter(runs.values()))[0]
        print(f"{'run':<45} {'seconds':>8} {'ratio':>6} {'CPU s':>6} {'peak GiB':>9}")
        for name, (seconds, cpu, peak) in runs.items():
            print(f"{name:<45} {seconds:8.1f} {seconds / base:5.2f}× {cpu:6.1f} {peak:9.2f}")
        loaded = runs["heatlens ingest (empty store)"][0]
        print(f"records/s (heatlens, empty store): {n / loaded:,.0f}")
        ratio = loaded / base
        verdict = "met" if ratio <= TARGET_RATIO else "missed"
        print(f"heatlens ingest {ratio:.2f}× DuckDB's load (target ≤ {TARGET_RATIO}×: {verdict})")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
