"""HTTP ingest: records/s and request latency of `POST /api/v1/events` on loopback (DESIGN §6).

    python bench/ingest_http.py [--clients 8] [--records 100000] [--no-write]

Starts a real `heatlens serve` on a fresh DuckDB store (127.0.0.1, a free port), then for batches
of 1, 100 and 1,000 usage records (unique ids, so every record is inserted) runs `--clients`
concurrent client threads that post pre-encoded batches back to back, each waiting for its answer
(a 2xx means committed). Prints records/s, requests/s and p50/p99 latency per batch size, and
writes the table into docs/performance.md (unless --no-write). Server and clients share this
machine's cores; the client threads' share of the CPU is printed too. Target: ≥ 20,000 records/s
with batches of 1,000 on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the one way tests and benchmarks start a server
from tests.serve_process import ServeProcess  # noqa: E402

DOC = ROOT / "docs" / "performance.md"
START, END = "<!-- ingest_http:start -->", "<!-- ingest_http:end -->"
TARGET = 20_000


def bodies(batch: int, records: int, tag: str) -> list[bytes]:
    """Pre-encoded JSON bodies of `batch` usage records each, `records` in all, unique ids."""
    out = []
    for b in range(max(1, records // batch)):
        items = [
            f'{{"type":"usage","id":"{tag}-{b}-{i}","ts":"2026-03-{1 + i % 28:02d}T'
            f'{i % 24:02d}:{i % 60:02d}:00Z","capability":"ci","action":"build",'
            f'"actor":"dev{i % 500}","team":"team{i % 40}","outcome":"success",'
            f'"duration_s":{30 + i % 300}}}'
            for i in range(batch)
        ]
        out.append(("[" + ",".join(items) + "]").encode())
    return out


def run(url: str, work: list[bytes], clients: int) -> tuple[float, list[float]]:
    """Post every body from `clients` threads; (seconds, latencies)."""
    todo: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    for body in work:
        todo.put(body)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        headers = {"Content-Type": "application/json"}
        with httpx.Client(base_url=url, timeout=120) as http:
            while True:
                try:
                    body = todo.get_nowait()
                except queue.Empty:
                    return
                t = time.perf_counter()
                response = http.post("/api/v1/events", content=body, headers=headers)
                elapsed = time.perf_counter() - t
                with lock:
                    if response.status_code in (200, 201):
                        latencies.append(elapsed)
                    else:
                        failures.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} request(s) failed, e.g. {failures[0]}")
    return seconds, latencies


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--records", type=int, default=100_000, help="per batch size of 100+")
    parser.add_argument("--no-write", action="store_true", help="do not update the docs")
    parser.add_argument("--only", type=int, action="append", help="only this batch size")
    args = parser.parse_args()
    plan = {1: min(args.records, 5_000), 100: args.records, 1_000: args.records}
    if args.only:
        plan = {b: n for b, n in plan.items() if b in args.only}
    work_dir = Path(tempfile.mkdtemp(prefix="heatlens-bench-http-"))
    # the per-client rate limit would refuse a benchmark's request rate
    server = ServeProcess(
        f"duckdb:///{work_dir / 's.duckdb'}",
        cwd=work_dir,
        env={"HEATLENS_SERVER_RATE_LIMIT_PER_MINUTE": "100000000"},
    )
    url = server.start()
    rows = []
    try:
        # warm up: the first requests load code paths and create the tables' first rows
        run(url, bodies(100, 2_000, "warm"), args.clients)
        for batch, records in plan.items():
            work = bodies(batch, records, f"b{batch}")
            cpu = resource.getrusage(resource.RUSAGE_SELF)
            seconds, latencies = run(url, work, args.clients)
            used = resource.getrusage(resource.RUSAGE_SELF)
            client_cpu = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
            sent = batch * len(work)
            row = {
                "batch": batch,
                "requests": len(work),
                "records": sent,
                "records_s": sent / seconds,
                "requests_s": len(work) / seconds,
                "p50_ms": quantile(latencies, 0.50) * 1000,
                "p99_ms": quantile(latencies, 0.99) * 1000,
                "client_cpu": client_cpu / seconds,
            }
            rows.append(row)
            print(
                f"batch {batch:>5}: {row['records_s']:>9,.0f} records/s  "
                f"{row['requests_s']:>7,.0f} requests/s  p50 {row['p50_ms']:7.1f} ms  "
                f"p99 {row['p99_ms']:7.1f} ms  ({sent:,} records, {len(work):,} requests; "
                f"clients used {row['client_cpu']:.2f} cores)"
            )
    finally:
        server.stop(timeout=60)
        shutil.rmtree(work_dir, ignore_errors=True)
    for row in rows:
        if row["batch"] == 1_000:  # the size the target is for
            best = row["records_s"]
            print(
                f"batches of 1,000: {best:,.0f} records/s = {best / TARGET:.2f}× "
                f"the target of {TARGET:,}"
            )
    if not args.no_write:
        write_doc(rows, args.clients)
        print(f"wrote {DOC.relative_to(ROOT)}")


def write_doc(rows: list[dict[str, float]], clients: int) -> None:
    load = os.getloadavg()[0]
    table = [
        START,
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node() or 'this machine'}: "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, load average {load:.1f} "
        "when the run ended (other work was running). Server and clients shared the machine.",
        "",
        f"`python bench/ingest_http.py --clients {clients}`: a real `heatlens serve` on a fresh "
        "DuckDB store; "
        f"{clients} client threads post pre-encoded JSON arrays of usage records (unique ids: "
        "every record is inserted) back to back over loopback, each waiting for its 2xx.",
        "",
        "| batch | requests | records | records/s | requests/s | p50 ms | p99 ms | client CPU |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r['batch']:,} | {r['requests']:,} | {r['records']:,} | {r['records_s']:,.0f} | "
            f"{r['requests_s']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['client_cpu']:.2f} cores |"
            for r in rows
        ),
        END,
    ]
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + "\n".join(table) + rest.split(END, 1)[1]
    else:
        text = (text or "# Performance\n") + "\n## HTTP ingest\n\n" + "\n".join(table) + "\n"
    DOC.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
