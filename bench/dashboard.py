"""Dashboard pages on the W52 store: first and later loads against the hand-written SQL script.

    python bench/dashboard.py [--repeat 5] [--keep]     # generate W52 like bench/report.py
    python bench/dashboard.py --store STORE.duckdb     # reuse a store (bench/report.py --keep)

DESIGN §6 (v2) and issue 18: on the W52 store (10 M usage records over 52 weeks, 30 capabilities,
500 teams, 20,000 actors, ~1 M DORA records) the first load of the overview, of a capability page
and of the DORA page each ≤ 0.5× the time of the hand-written W52 SQL script
(bench/report_baseline.sql, by capability) in the same run; later loads ≤ 100 ms.

1. Builds W52 as bench/report.py does (`prepare`), unless `--store` is given.
2. Times the SQL script by capability (a whole `python -c` process, as bench/report.py does).
3. `heatlens serve` runs on the store (tests/serve_process.py: 127.0.0.1, port 0). The server
   builds the data version's model in the background once it listens (heatlens.web.warm); the
   bench polls `GET /api/v1/admin/status` until it is built (the time is printed: a page asked
   sooner would wait for it). Each page is then loaded once (the first load: the engine computes
   it on the built model), then `--repeat` more times. Server time is the page's `Server-Timing:
   page;dur=…` header, measured inside the app.
4. Then one usage record is posted (a write: the data version moves) and each page is asked
   again: the answer must come at once from the previous version, marked stale
   (`Heatlens-Stale`); the pages are then polled until they show the new version, and the time
   the refresh took is printed.
5. The SQL script is timed again; its median is the baseline of the ratios.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.report import (
    BASELINE,
    MEMORY_SETTING,
    SQL,
    duckdb_memory_limit,
    prepare,
    report_range,
    timed,
)
from tests.serve_process import ServeProcess

from heatlens.store import Store

FIRST_RATIO, LATER_MS = 0.5, 100.0


def _server_ms(response: httpx.Response) -> float:
    match = re.search(r"dur=([0-9.]+)", response.headers.get("server-timing", ""))
    if not match:
        status = response.status_code
        raise SystemExit(f"{response.request.url}: no Server-Timing header ({status})")
    return float(match.group(1))


def script_seconds(store: Path, work: Path) -> float:
    start, end = report_range(store)
    cmd = [sys.executable, "-c", BASELINE, str(store), str(SQL), "capability"]
    cmd += [str(start), str(end), str(work / "sql-capability.json")]
    seconds, _ = timed(cmd)
    print(f"  SQL script by capability: {seconds:.2f} s", flush=True)
    return seconds


def capability_of(store: Path) -> str:
    with Store.open(str(store), read_only=True) as opened:
        return sorted(opened.capability_ids())[0]


USAGE = (
    '{"type": "usage", "id": "bench-dashboard-%d", "ts": "%s", "capability": "%s", '
    '"actor": "bench-actor", "team": null, "outcome": "success"}'
)


def model_built(client: httpx.Client, version: int, since: float) -> float | None:
    """Poll admin status until the server's model is built at `version` (heatlens.web.warm);
    the seconds since `since`, or None when the server does not say."""
    while True:
        r = client.get("/api/v1/admin/status")
        model = r.json().get("model") if r.status_code == 200 else None
        if not model or not model.get("ahead"):
            return None
        if model.get("error"):
            raise SystemExit(f"the server's model build failed: {model['error']}")
        if (model.get("built_version") or 0) >= version and not model.get("building"):
            return time.perf_counter() - since
        # admin status counts the records per type and source (a scan each): asked back to back
        # it would compete with the build it waits for; ±0.5 s is precise enough here
        time.sleep(0.5)


def measure(store: Path, repeat: int, pages: list[str], capability: str) -> dict[str, object]:
    server = ServeProcess(
        f"duckdb:///{store}",
        cwd=store.parent,
        env={MEMORY_SETTING: os.environ[MEMORY_SETTING]},
    )
    base = server.start(timeout=300)
    ready = time.perf_counter()
    out: dict[str, object] = {}
    try:
        with httpx.Client(base_url=base, timeout=3600) as client:
            version = client.get("/healthz").json()["data_version"]
            ahead = model_built(client, version, ready)
            out["model_at_start"] = ahead
            if ahead is not None:
                print(f"  model built ahead {ahead:.1f} s after the server was ready", flush=True)
            for page in pages:
                first = client.get(page)
                first.raise_for_status()
                later = [_server_ms(client.get(page)) for _ in range(repeat)]
                out[page] = (_server_ms(first), later)
                print(f"  {page}: first {_server_ms(first):,.0f} ms, later median "
                      f"{statistics.median(later):.1f} ms", flush=True)  # fmt: skip
            # a write: one usage record, then every page at once (stale) and polled until fresh
            span_end = client.get("/healthz").json()["data_version"]
            record = USAGE % (time.time_ns(), "2026-11-20T12:00:00Z", capability)
            posted = client.post(
                "/api/v1/events",
                content=record,
                headers={"content-type": "application/x-ndjson"},
            )
            posted.raise_for_status()
            written = time.perf_counter()
            new_version = posted.json()["data_version"]
            print(f"  wrote one usage record: data version {span_end} → {new_version}")
            stale = {}
            for page in pages:
                r = client.get(page)
                stale[page] = (_server_ms(r), r.headers.get("heatlens-stale"))
            out["model_after_write"] = model_built(client, new_version, written)
            fresh = {}
            for page in pages:
                if stale[page][1] is None and "heatlens-data-version" not in r.headers:
                    # a server without stale pages recomputed in that GET
                    fresh[page] = time.perf_counter() - written
                    continue
                while True:  # poll: the server refreshes in the background
                    r = client.get(page)
                    if r.headers.get("heatlens-data-version") == str(new_version) and not (
                        r.headers.get("heatlens-stale")
                    ):
                        fresh[page] = time.perf_counter() - written
                        break
            out["after_write"] = (stale, fresh)
        return out
    finally:
        server.stop(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="usage records")
    parser.add_argument("--teams", type=int, default=500)
    parser.add_argument("--days", type=int, default=7 * 52 + 14)
    parser.add_argument("--repeat", type=int, default=5, help="later loads per page")
    parser.add_argument("--store", type=Path, help="reuse this W52 store (it gets one record)")
    parser.add_argument("--keep", action="store_true", help="keep the generated store")
    args = parser.parse_args()
    duckdb_memory_limit(None)  # the same DuckDB memory limit for the server and the script
    work = Path(tempfile.mkdtemp(prefix="heatlens-bench-dashboard-"))
    try:
        store = args.store or prepare(work, args.rows, args.teams, args.days)
        capability = capability_of(store)
        pages = ["/", f"/capabilities/{capability}", "/dora"]
        print(f"store {store} ({store.stat().st_size / 2**20:,.0f} MiB); {os.cpu_count()} cores")
        scripts = [script_seconds(store, work)]
        results = measure(store, args.repeat, pages, capability)
        scripts.append(script_seconds(store, work))
        script = statistics.median(scripts)
        load = os.getloadavg()
        print(f"\nSQL script (median of {len(scripts)}): {script:.2f} s; load average "
              f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")  # fmt: skip
        print(f"{'page':32} {'first':>10} {'× script':>9} {'later median':>13} {'worst':>9}")
        for page in pages:
            first, later = results[page]  # type: ignore[misc]
            ratio = first / 1000 / script
            worst = max(later)
            verdict = "met" if ratio <= FIRST_RATIO and worst <= LATER_MS else "missed"
            median = statistics.median(later)
            print(
                f"{page:32} {first / 1000:8.2f} s {ratio:8.2f}× {median:10.1f} ms "
                f"{worst:6.1f} ms  {verdict} (≤ {FIRST_RATIO}×, ≤ {LATER_MS:.0f} ms)"
            )
        for what in ("model_at_start", "model_after_write"):
            if results.get(what) is not None:
                when = "the server was ready" if what == "model_at_start" else "the write"
                print(f"model built ahead (no page asked): {results[what]:.1f} s after {when}")
        if "after_write" in results:
            stale, fresh = results["after_write"]  # type: ignore[misc]
            for page in pages:
                ms, marked = stale[page]
                if marked is None:
                    print(f"after a write {page:20} recomputed in that request: {ms:,.1f} ms")
                    continue
                print(f"after a write {page:20} served in {ms:.1f} ms (stale: {marked}); "
                      f"new version shown {fresh[page]:.2f} s after the write")  # fmt: skip
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
