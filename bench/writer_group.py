"""The server's writer alone: CPU, wall time and statements per group of single events, no HTTP.

    python bench/writer_group.py [--kind webhooks|records] [--groups 300] [--size 32]
                                 [--busy-neighbour]

Builds a `heatlens.web.writer.Writer` on a fresh DuckDB store the way `heatlens serve` does (its
connection keeps the stored ids), maps `--groups` × `--size` signed GitHub `workflow_run`
deliveries (the fixture of bench/ingest_http.py, each a new delivery and run) or one-record
requests up front, then hands the writer one group at a time — all of a group's requests queued
while it is held back, so each group is exactly `--size` requests — and waits for every answer.
Prints the process's CPU and the wall time per group, and the statements the store's connection
ran per group, each with its time: the part of the HTTP bench's cycle that is the writer's
(docs/performance.md, "Sixth round"). The first 5 groups warm up and are not counted.

`--busy-neighbour` runs a thread beside the writer that parses a webhook payload without pause:
the writer then shares the interpreter lock as it does with the server's event loop under load,
which is what makes a group take longer in the server than alone (docs/performance.md, "Ninth
round"). Its group times vary less from run to run than the HTTP bench's rates.
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
from heatlens.web.body import parse_json
from heatlens.web.server import SWITCH_INTERVAL
from heatlens.web.writer import Writer

WARM_UP = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=("webhooks", "records"), default="webhooks")
    parser.add_argument("--groups", type=int, default=300)
    parser.add_argument("--size", type=int, default=32, help="requests per group")
    parser.add_argument(
        "--busy-neighbour",
        action="store_true",
        help="run a thread beside the writer that is always busy in Python (as the server's "
        "event loop under load): how much the writer slows when it shares the interpreter lock",
    )
    args = parser.parse_args()
    sys.setswitchinterval(SWITCH_INTERVAL)  # as `heatlens serve`

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
                entry = statements[sql]
                entry[0] += 1
                entry[1] += time.perf_counter() - start

        setattr(backend, name, timed)

    writer = Writer(threading.Lock(), lambda: store, settings)
    writer.start()
    neighbour = _Neighbour() if args.busy_neighbour else None
    try:
        for jobs in groups[:WARM_UP]:
            _write(writer, jobs)
        counting[0] = True
        if neighbour is not None:
            neighbour.start()
        cpu, wall = time.process_time(), time.perf_counter()
        for jobs in groups[WARM_UP:]:
            _write(writer, jobs)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        if neighbour is not None:
            neighbour.stop()
        writer.stop()
        store.close()
    n = len(groups) - WARM_UP
    print(
        f"{args.kind}, {n} groups of {args.size}: CPU {1000 * cpu / n:.1f} ms per group, "
        f"wall {1000 * wall / n:.1f} ms per group ({args.size * n / wall:,.0f} requests/s)"
    )
    if neighbour is not None:
        print(
            f"beside a thread always busy in Python ({neighbour.rate(wall):,.0f} parses/s of "
            f"a 22 kB webhook payload; CPU above includes it)"
        )
    print(f"statements per group: {sum(c for c, _ in statements.values()) / n:.1f}")
    for sql, (count, seconds) in sorted(statements.items(), key=lambda kv: -kv[1][1]):
        print(
            f"  {count / n:4.1f} × {1000 * seconds / count:5.2f} ms  {' '.join(sql.split())[:100]}"
        )


class _Neighbour:
    """A thread parsing a webhook payload again and again: Python work that holds the
    interpreter lock most of the time, as the server's event loop does under load."""

    def __init__(self) -> None:
        _path, _headers, body, _count = ingest_http.webhooks(1)(0)
        self._body = body
        self._stopping = threading.Event()
        self._parses = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stopping.is_set():
            parse_json(self._body)
            self._parses += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def rate(self, seconds: float) -> float:
        return self._parses / seconds


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
