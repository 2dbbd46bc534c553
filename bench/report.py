"""The W52 weekly report, by capability and by team, against a hand-written DuckDB SQL script.

    python bench/report.py [--rows 10000000] [--teams 500] [--repeat 3] [--keep] [--key capability]
    python bench/report.py --store STORE.duckdb      # reuse a store kept by --keep
    python bench/report.py --rows 100000000 --key capability --no-full --repeat 1 --keep --work DIR

DESIGN §6 (v2): "W52 = 10 M usage records over 52 weeks, 30 capabilities, 500 teams, 20,000
actors"; the report by capability and by team ≤ 1.2× a hand-written DuckDB SQL script whose rows
are first checked equal to heatlens's; ≤ 4 GiB peak.

1. The records of `heatlens generate --teams 500 --days 378` (`--rows` usage records; written by
   `heatlens.demo.generator.write_streaming`, which builds the usage records a chunk at a time so
   that 100 M fit in memory) go to Parquet; it has 9 capabilities and ~4,000 people, so the file
   is widened to W52 with DuckDB
   (`widen`): each capability becomes 3–4 (`ci` → `ci-0` … `ci-3`, 30 in all, registry records
   copied with the same launch and `eligible` list; a record's copy chosen by a hash of its run,
   else its id) and each person 5 (`u0001` → `u0001.0` … `u0001.4`, memberships copied; bots
   keep their name). `heatlens ingest` loads it into a fresh DuckDB store.
2. The range is the 52 weeks ending at the Monday on or before the last usage record.
3. For each key (capability, then team): `heatlens report --format json --grain week --by KEY`
   restricted with `--metric` to the metrics bench/report_baseline.sql computes, and the SQL script
   (a `python -c` process running it with duckdb on the same store); their rows must be equal
   (same periods, segments, n, values to 1e-9) — PASS/FAIL with the first differences.
4. Times each as a whole process (median of `--repeat` rounds, the three commands of a key
   interleaved), with peak RSS from `os.wait4`, and the full report (every metric) separately.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, timedelta
from pathlib import Path
from typing import Any

import duckdb

from heatlens.settings import Settings, memory_limit_bytes
from heatlens.store import Store

HERE = Path(__file__).resolve().parent
SQL = HERE / "report_baseline.sql"
KEYS = ("capability", "team")
WEEKS = 52
TEAMS, DAYS = 500, 7 * WEEKS + 14  # two weeks of history before the range (retention, new teams)
CAPABILITY_COPIES = 30  # capabilities after widening
ACTOR_COPIES = 5  # ~4,000 generated people → ~20,000 actors
TARGET_RATIO, TARGET_GIB = 1.2, 4.0

# The metrics the SQL script computes (DORA ones only exist by team: heatlens drops metrics that
# do not support the segment key, and so does the script).
METRICS = (
    "adoption.active_users",
    "adoption.active_teams",
    "adoption.eligible_teams",
    "adoption.team_adoption_rate",
    "adoption.new_teams",
    "adoption.team_retention",
    "task.attempts",
    "task.success_rate",
    "task.failure_rate",
    "task.error_rate",
    "task.abandon_rate",
    "efficiency.task_duration_p50",
    "efficiency.task_duration_p90",
    "dora.deployments",
    "dora.deployment_frequency",
    "dora.change_failure_rate",
    "dora.rework_rate",
    "dora.lead_time_p50",
    "dora.lead_time_p90",
)

# Runs the SQL script on the store (read-only), section by section, and writes its rows as JSON.
BASELINE = """
import duckdb, json, os, re, string, sys
store, script, key, start, end, out = sys.argv[1:]
text = string.Template(open(script).read()).substitute(key=key, start=start, end=end)
sections = dict(re.findall(r"^-- @section (\\w+)\\n(.*?)(?=^-- @section |\\Z)", text, re.M | re.S))
con = duckdb.connect(store, read_only=True)
if os.environ.get("BENCH_DUCKDB_MEMORY_BYTES"):
    con.execute("SET memory_limit = '" + os.environ["BENCH_DUCKDB_MEMORY_BYTES"] + " bytes'")
rows = []
for name in ("usage", "dora") if key == "team" else ("usage",):
    for metric, period, seg, value, n in con.execute(sections[name]).fetchall():
        rows.append({"metric": metric, "period": period.isoformat(), "segment": {key: seg},
                     "value": value, "n": n})
json.dump({"rows": rows}, open(out, "w"))
"""

MEMORY_SETTING = "HEATLENS_DUCKDB_MEMORY_LIMIT"  # heatlens's setting `duckdb.memory_limit`
MEMORY_BYTES = "BENCH_DUCKDB_MEMORY_BYTES"  # the same in bytes, for the plain DuckDB scripts


def duckdb_memory_limit(given: str | None) -> int:
    """DuckDB's memory limit (bytes) in every measured process, heatlens's and the script's
    alike: `given` (`--duckdb-memory-limit`), else `duckdb.memory_limit` from the environment,
    else that setting's default (50 % of RAM; DuckDB's own is 80 %). Set here in the
    environment that every child inherits: heatlens reads its setting, the scripts run
    `SET memory_limit` with the bytes."""
    default = str(Settings.model_fields["duckdb_memory_limit"].default)
    value = given or os.environ.get(MEMORY_SETTING) or default
    try:
        limit = memory_limit_bytes(value)
    except ValueError as exc:
        raise SystemExit(f"DuckDB memory limit: {exc}") from None
    os.environ[MEMORY_SETTING] = value
    os.environ[MEMORY_BYTES] = str(limit)
    return limit


def timed(cmd: list[str]) -> tuple[float, float]:
    """Seconds and peak RSS (GiB) of a whole process; its stdout is discarded."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{err.decode(errors='replace')}")
    return seconds, usage.ru_maxrss / 1024 / 1024


def interleaved(cmds: dict[str, list[str]], times: int) -> dict[str, tuple[float, float, str]]:
    """Per command: median seconds, largest peak RSS and the min–max spread, over `times` rounds
    that run every command once in turn (so a busy moment hits all of them alike)."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in cmds}
    for _ in range(times):
        for name, cmd in cmds.items():
            runs[name].append(timed(cmd))
            seconds, peak = runs[name][-1]
            print(f"  {name}: {seconds:.1f} s, peak {peak:.2f} GiB, {_now()}", flush=True)
    out = {}
    for name, rs in runs.items():
        secs = [s for s, _ in rs]
        out[name] = (
            statistics.median(secs),
            max(g for _, g in rs),
            f"{min(secs):.1f}–{max(secs):.1f}",
        )
    return out


# The records `heatlens generate --teams T --days D --usage-rows N --out F` writes (same seed, same
# end date: today), with the usage records built and written a chunk at a time, so 100 M fit.
GENERATE = """
import sys
from heatlens.demo import OrgSpec, usage_scale_for
from heatlens.demo.generator import write_streaming
teams, days, rows, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
spec = OrgSpec(teams=teams, days=days, usage_scale=usage_scale_for(rows, teams, days))
write_streaming(spec, out)
"""


def _now() -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime())


def prepare(work: Path, rows: int, teams: int, days: int) -> Path:
    """Generate the organisation and ingest it into a fresh store (printing both)."""
    generated, data, store = work / "generated.parquet", work / "org.parquet", work / "store.duckdb"
    seconds, peak = timed(
        [sys.executable, "-c", GENERATE, str(teams), str(days), str(rows), str(generated)]
    )
    print(f"generated in {seconds:.1f} s (peak {peak:.2f} GiB), {_now()}", flush=True)
    started = time.perf_counter()
    widen(generated, data)
    generated.unlink()
    print(
        f"widened to W52 in {time.perf_counter() - started:.1f} s (this process's peak "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024:.2f} GiB), {_now()}",
        flush=True,
    )
    con = duckdb.connect()
    counts = dict(
        con.execute(
            "SELECT type, count(*) FROM read_parquet(?) GROUP BY type ORDER BY type", [str(data)]
        ).fetchall()
    )
    dora = sum(counts.get(t, 0) for t in ("deployment", "change", "incident"))
    print(
        f"generated {sum(counts.values()):,} records ({data.stat().st_size / 1e6:.0f} MB) in "
        f"{seconds:.1f} s: {counts.get('usage', 0):,} usage, {dora:,} DORA "
        f"({counts.get('deployment', 0):,} deployments, {counts.get('change', 0):,} changes, "
        f"{counts.get('incident', 0):,} incidents)",
        flush=True,
    )
    ingest = [sys.executable, "-m", "heatlens", "--store", str(store), "ingest", str(data)]
    seconds, peak = timed(ingest)
    print(f"ingested in {seconds:.1f} s (peak {peak:.2f} GiB), {_now()}", flush=True)
    data.unlink()
    return store


def widen(source: Path, target: Path) -> None:
    """Copy `source` to `target` with W52's 30 capabilities and ~20,000 actors (see above)."""
    con = duckdb.connect()
    # the copy's row order does not matter; keeping it would hold more in memory at 100 M records
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"CREATE VIEW g AS SELECT * FROM read_parquet('{source}')")
    caps = [
        r[0]
        for r in con.execute("SELECT id FROM g WHERE type = 'capability' ORDER BY id").fetchall()
    ]
    # copies per capability: as even as possible, CAPABILITY_COPIES in all
    copies = {c: CAPABILITY_COPIES // len(caps) for c in caps}
    for c in caps[: CAPABILITY_COPIES - sum(copies.values())]:
        copies[c] += 1
    con.execute(
        "CREATE TABLE copies AS SELECT * FROM (VALUES "
        + ", ".join(f"('{c}', {n})" for c, n in copies.items())
        + ") v(cap, n)"
    )
    bot = "coalesce(suffix(actor, '[bot]'), false)"
    pick = "hash(coalesce(g.run, g.id))"
    con.execute(
        f"""
        COPY (
            SELECT * FROM g WHERE type NOT IN ('usage', 'capability', 'membership', 'survey',
                                               'survey_response')
            UNION ALL BY NAME
            SELECT g.* REPLACE (
                g.capability || '-' || ({pick} % c.n)::VARCHAR AS capability,
                CASE WHEN {bot} THEN actor
                     ELSE actor || '.' || ({pick} // 64 % {ACTOR_COPIES})::VARCHAR END AS actor)
            FROM g JOIN copies c ON g.capability = c.cap WHERE type = 'usage'
            UNION ALL BY NAME
            SELECT g.* REPLACE (g.id || '-' || r.cp::VARCHAR AS id,
                                g.name || ' ' || r.cp::VARCHAR AS name)
            FROM g JOIN copies c ON g.id = c.cap, range(c.n) r(cp) WHERE type = 'capability'
            UNION ALL BY NAME
            SELECT g.* REPLACE (actor || '.' || r.cp::VARCHAR AS actor)
            FROM g, range({ACTOR_COPIES}) r(cp) WHERE type = 'membership'
            UNION ALL BY NAME
            SELECT * REPLACE (g.capability || '-0' AS capability)
            FROM g WHERE type = 'survey_response'
            UNION ALL BY NAME
            SELECT * REPLACE (regexp_replace(questions, '"capability":"([^"]+)"',
                                             '"capability":"\\1-0"', 'g') AS questions)
            FROM g WHERE type = 'survey'
        ) TO '{target}' (FORMAT parquet, COMPRESSION zstd)
        """
    )
    con.close()


def report_range(store: Path) -> tuple[date, date]:
    """The WEEKS weeks ending at the Monday on or before the last usage record (UTC)."""
    with Store.open(str(store), read_only=True) as opened:
        span = opened.usage_span()
    if span is None:
        raise SystemExit(f"{store} holds no usage records")
    last = span[1].astimezone(UTC).date()
    end = last - timedelta(days=last.weekday())
    return end - timedelta(weeks=WEEKS), end


def _key(row: dict[str, Any]) -> tuple[str, str, str]:
    return row["metric"], row["period"], json.dumps(row["segment"], sort_keys=True)


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


def compare(heatlens: Path, baseline: Path, shown: int = 10) -> bool:
    """Print PASS or FAIL with the first differences between the two row sets."""
    ours = {_key(r): r for r in json.loads(heatlens.read_text())["rows"]}
    theirs = {_key(r): r for r in json.loads(baseline.read_text())["rows"]}
    problems = [f"only in heatlens: {k}" for k in sorted(ours.keys() - theirs.keys())]
    problems += [f"only in SQL: {k}" for k in sorted(theirs.keys() - ours.keys())]
    for k in sorted(ours.keys() & theirs.keys()):
        a, b = ours[k], theirs[k]
        if not (_same(a["value"], b["value"]) and _same(a["n"], b["n"])):
            problems.append(
                f"{k}: heatlens value={a['value']} n={a['n']}, SQL value={b['value']} n={b['n']}"
            )
    metrics = sorted({k[0] for k in ours})
    if problems:
        print(
            f"  FAIL: {len(problems)} differences in {len(ours):,} heatlens / "
            f"{len(theirs):,} SQL rows; first {min(shown, len(problems))}:"
        )
        for p in problems[:shown]:
            print(f"    {p}")
        return False
    print(f"  PASS: {len(ours):,} rows equal ({len(metrics)} metrics)")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="usage records")
    parser.add_argument("--teams", type=int, default=TEAMS)
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument(
        "--key", choices=KEYS, action="append", help="segment key(s) to run (default: both)"
    )
    parser.add_argument("--no-full", action="store_true", help="skip timing the full report")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per command (median)")
    parser.add_argument("--keep", action="store_true", help="keep the store and outputs")
    parser.add_argument("--store", type=Path, help="reuse this store (skip generate and ingest)")
    parser.add_argument("--work", type=Path, help="directory for the files (default: a temp dir)")
    parser.add_argument(
        "--duckdb-memory-limit",
        metavar="SIZE",
        help="DuckDB's memory_limit in each measured run, heatlens's setting duckdb.memory_limit "
        "(e.g. 8GB or 40%%; default: HEATLENS_DUCKDB_MEMORY_LIMIT, else the setting's default)",
    )
    args = parser.parse_args()
    limit = duckdb_memory_limit(args.duckdb_memory_limit)
    work = Path(tempfile.mkdtemp(prefix="heatlens-bench-report-", dir=args.work))
    try:
        if args.store is not None:
            store = args.store
        else:
            store = prepare(work, args.rows, args.teams, args.days)
        start, end = report_range(store)
        print(
            f"range --from {start} --to {end} (weekly), store {store.stat().st_size / 1e6:.0f} "
            f"MB, {os.cpu_count()} cores, DuckDB memory_limit {os.environ[MEMORY_SETTING]} "
            f"({limit / 1024**3:.1f} GiB)"
        )
        results: dict[str, tuple[float, float, str]] = {}
        passed = True
        keys = tuple(args.key or KEYS)
        for key in keys:
            ours, theirs = work / f"heatlens-{key}.json", work / f"sql-{key}.json"
            heatlens = [sys.executable, "-m", "heatlens"]
            report = [*heatlens, "--store", str(store), "report", "--format", "json"]
            report += ["--grain", "week", "--by", key, "--from", str(start), "--to", str(end)]
            subset = [*report, "--out", str(ours)]
            for metric in METRICS:
                subset += ["--metric", metric]
            sql = [sys.executable, "-c", BASELINE, str(store), str(SQL), key]
            sql += [str(start), str(end), str(theirs)]
            full = [*report, "--out", str(work / f"full-{key}.json")]
            cmds = {f"heatlens, SQL's metrics, by {key}": subset, f"SQL script, by {key}": sql}
            if not args.no_full:
                cmds[f"heatlens full report, by {key}"] = full
            results.update(interleaved(cmds, args.repeat))
            print(f"by {key}:")
            passed &= compare(ours, theirs)
        whos = ["heatlens, SQL's metrics", "SQL script"]
        whos += [] if args.no_full else ["heatlens full report"]
        for who in whos:
            runs = [results[f"{who}, by {key}"] for key in keys]
            results[f"{who}, both keys"] = (sum(r[0] for r in runs), max(r[1] for r in runs), "")
        print(f"\n{'run':<42} {'median s':>8} {'min–max':>13} {'vs SQL':>7} {'peak GiB':>9}")
        for name, (seconds, peak, spread) in results.items():
            base = results[f"SQL script, {name.rsplit(', ', 1)[1]}"][0]
            print(f"{name:<42} {seconds:8.2f} {spread:>13} {seconds / base:6.2f}× {peak:9.2f}")
        ratio = (
            results["heatlens, SQL's metrics, both keys"][0] / results["SQL script, both keys"][0]
        )
        peak = max(r[1] for name, r in results.items() if name.startswith("heatlens"))
        print(
            f"\nrows equal: {'PASS' if passed else 'FAIL'}; same metrics, {'+'.join(keys)}: "
            f"{ratio:.2f}× the SQL (target ≤ {TARGET_RATIO}×: "
            f"{'met' if ratio <= TARGET_RATIO else 'missed'}); heatlens peak {peak:.2f} GiB "
            f"(target ≤ {TARGET_GIB:.0f} GiB: {'met' if peak <= TARGET_GIB else 'missed'}); "
            f"{args.repeat} rounds, {os.cpu_count()} cores"
        )
        if not passed:
            raise SystemExit(1)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
