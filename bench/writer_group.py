"""The server's writer alone: CPU, wall time and statements per group of single events, no HTTP.

    python bench/writer_group.py [--kind webhooks|records] [--groups 300] [--size 32]

Builds a `heatlens.web.writer.Writer` on a fresh DuckDB store the way `heatlens serve` does (its
connection keeps the stored ids), maps `--groups` × `--size` signed GitHub `workflow_run`
deliveries (the fixture of bench/ingest_http.py, each a new delivery and run) or one-record
requests up front, then hands the writer one group at a time — all of a group's requests queued
while it is held back, so each group is exactly `--size` requests — and waits for every answer.
Prints the process's CPU and the wall time per group, and the statements the store's connection
ran per group, each with its time: the part of the HTTP bench's cycle that is the writer's
(docs/performance.md, "Sixth round"). The first 5 groups warm up and are not counted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import ingest_http

from heatlens.connectors.github.mapping import GithubOptions, map_event
from heatlens.settings import load_settings
from heatlens.store import Store
from heatlens.store.backends import DuckDBBackend
from heatlens.web import webhooks
from heatlens.web.writer import Writer

WARM_UP = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=("webhooks", "records"), default="webhooks")
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--size", type=int, default=32, help="requests per group")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="heatlens-writer-"))
    url = f"duckdb:///{work / 'store.duckdb'}"
    settings = load_settings(
        None, overrides={"store": url, "webhooks_github_secret": ingest_http.SECRET}
    )
    store = Store.open(url)
    store.keep_ids = True  # as the server's writer connection
    groups = [_jobs(args.kind, g, args.size, settings) for g in range(args.groups)]

    statements: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    backend = store._backend
    assert isinstance(backend, DuckDBBackend)
    counting = [False]
    for name in ("execute", "fetchall"):
        real = getattr(backend, name)

        def timed(sql: str, params: Any = (), _real: Any = real) -> Any:
            if not counting[0]:
                return _real(sql, params)
            start = time.perf_counter()
            try:
                return _real(sql, params)
            finally:
                entry = statements[" ".join(sql.split())[:100]]
                entry[0] += 1
                entry[1] += time.perf_counter() - start

        setattr(backend, name, timed)

    writer = Writer(threading.Lock(), lambda: store, settings)
    writer.start()
    try:
        for jobs in groups[:WARM_UP]:
            _write(writer, jobs)
        counting[0] = True
        cpu, wall = time.process_time(), time.perf_counter()
        for jobs in groups[WARM_UP:]:
            _write(writer, jobs)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        writer.stop()
        store.close()
    n = len(groups) - WARM_UP
    print(
        f"{args.kind}, {n} groups of {args.size}: CPU {1000 * cpu / n:.1f} ms per group, "
        f"wall {1000 * wall / n:.1f} ms per group ({args.size * n / wall:,.0f} requests/s)"
    )
    print(f"statements per group: {sum(c for c, _ in statements.values()) / n:.1f}")
    for sql, (count, seconds) in sorted(statements.items(), key=lambda kv: -kv[1][1]):
        print(f"  {count / n:4.1f} × {1000 * seconds / count:5.2f} ms  {sql}")


def _jobs(kind: str, group: int, size: int, settings: Any) -> list[tuple[Any, Any]]:
    """One group's requests as the lean routes submit them: (records, hook)."""
    make = ingest_http.webhooks(1) if kind == "webhooks" else ingest_http.records("w", 1)
    jobs = []
    for i in range(group * size, (group + 1) * size):
        _path, headers, body, _count = make(i)
        payload = json.loads(body)
        if kind == "records":
            jobs.append((payload, None))
            continue
        mapped = map_event("workflow_run", payload, GithubOptions.of(settings))
        delivery = webhooks.Delivery(
            "github", "workflow_run", headers["X-GitHub-Delivery"], mapped.records, mapped.reason
        )
        jobs.append((delivery.records, webhooks.hook(delivery)))
    return jobs


def _write(writer: Writer, jobs: list[tuple[Any, Any]]) -> None:
    with writer.paused():  # the whole group queued before the writer takes it
        futures = [writer.submit(records, hook) for records, hook in jobs]
    for future in futures:
        future.result()


if __name__ == "__main__":
    main()
