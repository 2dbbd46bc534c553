"""Bulk ingest of generated usage records against DuckDB's own load of the same Parquet file.

    python bench/ingest_bulk.py [--rows 10000000] [--keep] [--work DIR] [--no-replay]

Generates the usage records of a synthetic organisation (heatlens.demo, streamed a few million
records at a time by `write_streaming`, so `--rows 100000000` fits in memory) into one Parquet
file, then times, each as a whole fresh process on an empty store file:
  baseline  DuckDB's own `CREATE TABLE usage AS SELECT * FROM read_parquet(file)`
  heatlens  `heatlens ingest file` (read, validate every rule, stage, upsert)
  replay    `heatlens ingest file` again on that store (every record compared, all unchanged)
and prints seconds, CPU seconds (user + system: steadier than wall time on a shared machine),
peak memory and the ratio to the baseline (target, DESIGN §6 v2: heatlens ≤ 1.5×; at 100 M
records: within 24 GiB).
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # `bench.report`, run as a script from anywhere

from bench.report import MEMORY_SETTING, duckdb_memory_limit  # noqa: E402

# DuckDB's own load, with the memory limit heatlens gets (bench.report.duckdb_memory_limit)
BASELINE = (
    "import duckdb, os, sys; c = duckdb.connect(sys.argv[1]); "
    "c.execute(\"SET memory_limit = '\" + os.environ['BENCH_DUCKDB_MEMORY_BYTES'] + \" bytes'\"); "
    'c.execute("CREATE TABLE usage AS SELECT * FROM read_parquet(\'" + sys.argv[2] + "\')"); '
    "c.close()"
)


# Writes about argv[1] generated usage records (200 teams, 365 days, with a `type` column) to the
# Parquet file argv[2] — the records of `generate`, built and written a chunk at a time.
GENERATE = """
import sys
from heatlens.demo import OrgSpec, usage_scale_for
from heatlens.demo.generator import write_streaming
rows, path, teams, days = int(sys.argv[1]), sys.argv[2], 200, 365
spec = OrgSpec(teams=teams, days=days, usage_scale=usage_scale_for(rows, teams, days))
print(write_streaming(spec, path, types=["usage"], compression="snappy")["usage"])
"""


def make_file(rows: int, path: Path) -> tuple[int, float, float]:
    """Write about `rows` generated usage records to Parquet in a child process; the number
    written, seconds and the process's peak RSS (GiB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", GENERATE, str(rows), str(path)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    written = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"generating {rows:,} usage records failed ({status})")
    return int(written), time.perf_counter() - started, usage.ru_maxrss / 1024 / 1024


TARGET_RATIO = 1.5


def timed(cmd: list[str]) -> tuple[float, float, float]:
    """Seconds, CPU seconds (user + system: steadier than wall time on a shared machine) and
    peak RSS (GiB) of a whole process."""
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
    parser.add_argument("--work", type=Path, help="directory for the files (default: a temp dir)")
    parser.add_argument("--no-replay", action="store_true", help="skip the second ingest")
    parser.add_argument(
        "--duckdb-memory-limit",
        metavar="SIZE",
        help="DuckDB's memory_limit in each measured run, heatlens's setting duckdb.memory_limit "
        "(e.g. 8GB or 40%%; default: HEATLENS_DUCKDB_MEMORY_LIMIT, else the setting's default)",
    )
    args = parser.parse_args()
    limit = duckdb_memory_limit(args.duckdb_memory_limit)
    print(
        f"DuckDB memory_limit {os.environ[MEMORY_SETTING]} ({limit / 1024**3:.1f} GiB) in each "
        f"run, {os.cpu_count()} cores",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="heatlens-bench-", dir=args.work))
    try:
        data = work / "usage.parquet"
        n, seconds, peak = make_file(args.rows, data)
        print(
            f"generated {n:,} usage records ({data.stat().st_size / 1e6:.0f} MB Parquet) "
            f"in {seconds:.1f} s (peak {peak:.2f} GiB)",
            flush=True,
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
        runs: dict[str, tuple[float, float]] = {}
        steps = [
            (
                "baseline: DuckDB CREATE TABLE AS read_parquet",
                [sys.executable, "-c", BASELINE, str(work / "b.duckdb"), str(data)],
                work / "b.duckdb",
            ),
            ("heatlens ingest (empty store)", heatlens, work / "h.duckdb"),
        ]
        if not args.no_replay:
            steps.append(("heatlens ingest again (all unchanged)", heatlens, work / "h.duckdb"))
        for name, cmd, store in steps:
            runs[name] = timed(cmd)
            size = store.stat().st_size / 1e9
            print(
                f"  {name}: {runs[name][0]:.1f} s, peak {runs[name][2]:.2f} GiB, store "
                f"{size:.1f} GB, {time.strftime('%H:%M:%S', time.gmtime())} UTC",
                flush=True,
            )
            if store.name == "b.duckdb":
                store.unlink()  # disk: at 100 M each store is a few GB
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
