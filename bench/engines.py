"""The W52 report by capability on DuckDB, Postgres and Spark local, side by side.

    python bench/engines.py [--rows 1000000] [--ten-million] [--teams 500] [--repeat 1]
                            [--postgres URL] [--engines duckdb,postgres,pyspark]

1. The W52 organisation of bench/report.py (`heatlens generate`, widened to 30 capabilities and
   ~20,000 actors), 1 M usage records by default (`--ten-million`: 10 M), ingested with
   `heatlens ingest` into a DuckDB store and into a Postgres database (a private cluster on
   127.0.0.1 from tests/postgres_server.py unless `--postgres URL`), and exported with
   `heatlens export --format parquet` for Spark.
2. The 52 weeks ending at the Monday on or before the last usage record; each engine runs
   `heatlens report --format json --grain week --by capability` with bench/report.py's metrics,
   as a whole process: DuckDB and Postgres on their store, PySpark (`--engine pyspark`,
   local[2], its session start included) on the export. Their rows must equal DuckDB's (counts
   and rates exactly, quantiles to 1e-9): PASS/FAIL.
3. Times (median of `--repeat`) and peak memory: the summed RSS of the process and its children
   (Spark's JVM is one), sampled every 0.1 s; for Postgres the server's processes too.
4. Throughput: usage records in the store / report seconds, beside what an organisation of
   2,000 teams produces (ORG_EVENTS_PER_TEAM_DAY, stated below). No extrapolation to a year of
   that organisation: at 1 M records fixed costs (process and session start, registries)
   dominate, so time does not scale linearly; measure 10 M with `--ten-million`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import report as w52  # noqa: E402 -- bench/report.py, beside this file

HEATLENS = [sys.executable, "-m", "heatlens"]
ENGINES = ("duckdb", "postgres", "pyspark")
ORG_TEAMS = 2_000
# Assumption: 8 people per team, ~25 recorded platform events each per working day (CLI runs, CI
# jobs, portal actions) averaged over 7 days ≈ 150, plus deployments, changes and incidents:
# 200 records per team per day.
ORG_EVENTS_PER_TEAM_DAY = 200
PEAK_FACTOR = 10  # a busy hour against the day's average


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _rss(pids: list[int]) -> int:
    """Bytes of resident memory of `pids` and all their descendants."""
    kids, total, todo, seen = _children(), 0, list(pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo += kids.get(pid, [])
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            pass
    return total


def timed(cmd: list[str], also: list[int]) -> tuple[float, float]:
    """Seconds and peak summed RSS (GiB) of a process, its children and the `also` processes
    (a server's) — minus what `also` held before the run."""
    base = _rss(also) if also else 0
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _rss([proc.pid]) + max(0, _rss(also) - base if also else 0))
            time.sleep(0.1)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.wait()
    watcher.join()
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.decode()[-2000:]}")
    return seconds, peak[0] / 2**30


def _rows(path: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    doc = json.loads(path.read_text())
    return {
        (r["metric"], r["period"], json.dumps(r["segment"], sort_keys=True)): r for r in doc["rows"]
    }


def same(want: Path, got: Path) -> str:
    """PASS when `got` has DuckDB's rows: counts and rates equal, quantiles within 1e-9."""
    w, g = _rows(want), _rows(got)
    if set(w) != set(g):
        return f"FAIL ({len(set(w) ^ set(g))} rows differ)"
    for key, row in w.items():
        a, b = row["value"], g[key]["value"]
        if row["n"] != g[key]["n"]:
            return f"FAIL {key} n {row['n']} ≠ {g[key]['n']}"
        if key[0].endswith(("_p50", "_p90")) and a is not None and b is not None:
            if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9):
                return f"FAIL {key} {a} ≠ {b}"
        elif a != b:
            return f"FAIL {key} {a} ≠ {b}"
    return "PASS"


def _postgres_pids(url: str) -> list[int]:
    """The postmaster and its children (the server's whole memory), from its data directory."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        data = con.execute("SHOW data_directory").fetchone()
    assert data is not None
    pid = int(Path(str(data[0]), "postmaster.pid").read_text().split()[0])
    return [pid]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="usage records")
    parser.add_argument("--ten-million", action="store_true", help="10 M usage records")
    parser.add_argument("--teams", type=int, default=w52.TEAMS)
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per engine (median)")
    parser.add_argument("--postgres", metavar="URL", help="an empty Postgres database")
    parser.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args()
    rows = 10_000_000 if args.ten_million else args.rows
    engines = [e for e in args.engines.split(",") if e]
    os.environ.setdefault("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64")
    with tempfile.TemporaryDirectory(prefix="heatlens-engines-") as tmp:
        work = Path(tmp)
        if "postgres" in engines and args.postgres is None:
            from tests.postgres_server import postgres_cluster

            with postgres_cluster() as url:
                run(work, rows, args.teams, args.repeat, engines, url)
        else:
            run(work, rows, args.teams, args.repeat, engines, args.postgres)


def run(work: Path, rows: int, teams: int, repeat: int, engines: list[str], pg: str | None) -> None:
    generated, data = work / "generated.parquet", work / "org.parquet"
    store, export = work / "store.duckdb", work / "export"
    rows_option = ["--usage-rows", str(rows), "--out", str(generated)]
    seconds, _ = timed(
        [*HEATLENS, "generate", "--teams", str(teams), "--days", str(w52.DAYS), *rows_option],
        [],
    )
    w52.widen(generated, data)
    generated.unlink()
    print(f"generated and widened {rows:,} usage records in {seconds:.1f} s")
    loads = {"duckdb": ["--store", str(store)]}
    if "postgres" in engines:
        assert pg is not None
        loads["postgres"] = ["--store", pg]
    for name, where in loads.items():
        seconds, peak = timed([*HEATLENS, *where, "ingest", str(data)], [])
        print(f"ingested into {name} in {seconds:.1f} s (peak {peak:.2f} GiB)")
    if "pyspark" in engines:
        seconds, _ = timed([*HEATLENS, "--store", str(store), "export", str(export)], [])
        size = sum(f.stat().st_size for f in export.rglob("*.parquet")) / 1e6
        print(f"exported to Parquet in {seconds:.1f} s ({size:.0f} MB)")
    start, end = w52.report_range(store)
    metrics = [a for m in w52.METRICS for a in ("--metric", m)]
    base = ["report", "--format", "json", "--grain", "week", "--by", "capability"]
    base += ["--from", str(start), "--to", str(end), *metrics]
    spark = ["--from-export", str(export), "--engine", "pyspark"]
    cmds = {
        "duckdb": [*HEATLENS, "--store", str(store), *base],
        "postgres": [*HEATLENS, "--store", str(pg), *base],
        "pyspark": [*HEATLENS, "--store", str(store), *base, *spark],
    }
    results: dict[str, tuple[float, float, str]] = {}
    for name in ["duckdb", *[e for e in engines if e != "duckdb"]]:
        out = work / f"{name}.json"
        also = _postgres_pids(str(pg)) if name == "postgres" else []
        runs = [timed([*cmds[name], "--out", str(out)], also) for _ in range(repeat)]
        check = "reference" if name == "duckdb" else same(work / "duckdb.json", out)
        results[name] = (statistics.median(s for s, _ in runs), max(g for _, g in runs), check)
    daily = ORG_TEAMS * ORG_EVENTS_PER_TEAM_DAY
    year = daily * 365
    print(f"\nW52 by capability, {rows:,} usage records, {start} – {end} ({w52.WEEKS} weeks)")
    print(
        f"organisation of {ORG_TEAMS:,} teams at {ORG_EVENTS_PER_TEAM_DAY} records/team/day: "
        f"{daily / 86400:.1f} records/s on average, {PEAK_FACTOR * daily / 86400:.0f}/s in a "
        f"busy hour; {year / 1e6:.0f} M records a year"
    )
    print("| engine | report (s) | peak memory (GiB) | records/s | rows |")
    print("|---|---|---|---|---|")
    for name, (secs, peak, check) in results.items():
        rate = rows / secs
        print(f"| {name} | {secs:.1f} | {peak:.2f} | {rate:,.0f} | {check} |")


if __name__ == "__main__":
    main()
