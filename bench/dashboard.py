"""Server time of the dashboard's pages on a large store, first load and after.

    python bench/dashboard.py [--rows 10000000] [--teams 300] [--days 365] [--repeat 5] [--keep]
    python bench/dashboard.py --store STORE.duckdb   # reuse a store (bench/report.py --keep)

DESIGN §6: "dashboard pages on that store [10 M usage + DORA records]: ≤ 500 ms server time after
the first load". Pages are cached by the store's data version, so the first load pays for the
engine and later loads are served from memory until a write changes the data.

1. `heatlens generate` writes an organisation (`--rows` usage records) to Parquet and `heatlens
   ingest` loads it into a fresh DuckDB store (skipped with `--store`).
2. `heatlens serve` runs on the store (a subprocess on 127.0.0.1); `/healthz` is polled until it
   answers.
3. Each page is loaded once (the first load: the engine computes it), then `--repeat` more times.
   Server time is the page's `Server-Timing: page;dur=…` header (measured inside the app, from the
   request reaching the route to the response); wall time on loopback is shown beside it.
4. Prints, per page, the first load and the median and worst of the later loads, and PASS when the
   worst later load is ≤ 500 ms.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.serve_process import ServeProcess

HEATLENS = [sys.executable, "-m", "heatlens"]
TARGET_MS = 500.0
PAGES = (
    "/",
    "/capabilities/ci",
    "/capabilities/ci?grain=month",
    "/dora",
    "/data",
)


def _run(*args: str) -> None:
    started = time.perf_counter()
    subprocess.run([*HEATLENS, *args], check=True, stdout=subprocess.DEVNULL)
    print(f"  heatlens {' '.join(args[:3])}… {time.perf_counter() - started:.1f} s", flush=True)


def build_store(root: Path, rows: int, teams: int, days: int) -> Path:
    org, store = root / "org.parquet", root / "store.duckdb"
    _run("generate", "--teams", str(teams), "--days", str(days), "--usage-rows", str(rows),
         "--out", str(org))  # fmt: skip
    _run("--store", str(store), "ingest", str(org))
    return store


def _server_ms(response: httpx.Response) -> float:
    match = re.search(r"dur=([0-9.]+)", response.headers.get("server-timing", ""))
    if not match:
        status = response.status_code
        raise SystemExit(f"{response.request.url}: no Server-Timing header ({status})")
    return float(match.group(1))


def measure(store: Path, repeat: int, pages: list[str]) -> list[tuple[str, float, list[float]]]:
    server = ServeProcess(f"duckdb:///{store}", cwd=store.parent)
    base = server.start(timeout=120)
    try:
        results = []
        with httpx.Client(base_url=base, timeout=3600) as client:
            for page in pages:
                t0 = time.perf_counter()
                first = client.get(page)
                wall = (time.perf_counter() - t0) * 1000
                first.raise_for_status()
                print(f"  {page}: first load {_server_ms(first):,.0f} ms (wall {wall:,.0f})",
                      flush=True)  # fmt: skip
                later = [_server_ms(client.get(page)) for _ in range(repeat)]
                results.append((page, _server_ms(first), later))
        return results
    finally:
        server.stop(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--teams", type=int, default=300)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--store", type=Path, help="reuse this DuckDB store")
    parser.add_argument("--keep", action="store_true", help="keep the generated store")
    parser.add_argument("--page", action="append", help="page path to load (repeatable)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="heatlens-bench-dashboard-"))
    try:
        if args.store:
            store = args.store
        else:
            print(f"building a store with {args.rows:,} usage records in {root}", flush=True)
            store = build_store(root, args.rows, args.teams, args.days)
        print(f"store {store} ({store.stat().st_size / 2**20:,.0f} MiB); cores: {os.cpu_count()}")
        results = measure(store, args.repeat, args.page or list(PAGES))
        print()
        print(f"{'page':34} {'first':>10} {'later median':>13} {'later worst':>12}  target")
        for page, first, later in results:
            worst = max(later)
            verdict = "PASS" if worst <= TARGET_MS else "FAIL"
            print(
                f"{page:34} {first:>8,.0f} ms {statistics.median(later):>10,.1f} ms "
                f"{worst:>9,.1f} ms  {verdict} (≤ {TARGET_MS:.0f} ms after the first load; "
                f"first/later ratio {first / max(statistics.median(later), 0.001):,.0f}×)"
            )
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
