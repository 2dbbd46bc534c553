"""The app's own ingest rate, without HTTP: how close the single-event target can come before any
HTTP work (issue 15, docs/performance.md, "Tenth round").

    python bench/ingest_app.py [--requests 20000] [--concurrency 64] [--rounds 2]

Builds the app `heatlens serve` runs (heatlens.web.app.create_app) on a fresh DuckDB store with a
GitHub webhook secret, runs its lifespan (the writer thread, the model warmer), and calls it as
an ASGI app in this process — no socket, no HTTP parser — with `--concurrency` tasks each sending
one request after another, as `bench/ingest_http.py`'s clients do: signed GitHub `workflow_run`
deliveries (the same fixture and bodies), then one-record `POST /api/v1/events` requests. Every
answer must be a 2xx, sent once the request's group committed.

Each workload runs twice per round: with the real writer, and with a writer that answers every
request at once and stores nothing (`--no-store` runs only that). Prints requests/s and the CPU
per request of the event loop's thread and of the whole process. The bodies are made before
the clock starts.

What it tells: the HTTP bench compares heatlens with a bare app over HTTP; this is heatlens'
rate with none of the HTTP work, an upper bound on what `heatlens serve` can reach.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import ingest_http

from heatlens.ingest import IngestResult
from heatlens.settings import load_settings
from heatlens.web import writer
from heatlens.web.app import create_app
from heatlens.web.server import SWITCH_INTERVAL

WARM_UP = 2_000  # requests sent before the clock starts (code paths, first rows)


def _scope(path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The scope uvicorn would give the request (header names lowercase)."""
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw += [(b"content-length", str(len(body)).encode()), (b"host", b"127.0.0.1")]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _one(app: Any, request: ingest_http.Request) -> None:
    path, headers, body, _ = request
    given = False
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays: no disconnect
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(_scope(path, headers, body), receive, send)
    if not statuses or not 200 <= statuses[0] < 300:
        raise SystemExit(f"{path} answered {statuses}: every answer must be a 2xx")


async def _load(app: Any, requests: list[ingest_http.Request], concurrency: int) -> None:
    pending: Iterator[ingest_http.Request] = iter(requests)

    async def client() -> None:
        for request in pending:
            await _one(app, request)

    await asyncio.gather(*(client() for _ in range(concurrency)))


def _free_group(self: writer.Writer, jobs: list[Any]) -> None:
    """A writer group that answers every request at once and stores nothing."""
    for job in jobs:
        job.future.set_result(writer.Outcome(IngestResult(), 1, len(jobs)))


def measure(
    name: str, make: Callable[[int], ingest_http.Request], args: argparse.Namespace, store: bool
) -> None:
    sys.setswitchinterval(SWITCH_INTERVAL)  # as `heatlens serve` sets it
    real = writer.Writer._run_group
    if not store:
        writer.Writer._run_group = _free_group  # type: ignore[method-assign]
    try:
        work = Path(tempfile.mkdtemp(prefix="heatlens-bench-app-"))
        url = f"duckdb:///{work / 's.duckdb'}"
        settings = load_settings(
            None,
            overrides={
                "store": url,
                "webhooks_github_secret": ingest_http.SECRET,
                "server_rate_limit_per_minute": 100_000_000,
            },
        )
        app = create_app(settings, url)
        requests = [make(n) for n in range(WARM_UP + args.requests)]

        async def run() -> tuple[float, float, float]:
            async with app.router.lifespan_context(app):
                await _load(app, requests[:WARM_UP], args.concurrency)
                wall, thread, process = time.perf_counter(), time.thread_time(), time.process_time()
                await _load(app, requests[WARM_UP:], args.concurrency)
                return (
                    time.perf_counter() - wall,
                    time.thread_time() - thread,
                    time.process_time() - process,
                )

        wall, thread, process = asyncio.run(run())
    finally:
        writer.Writer._run_group = real  # type: ignore[method-assign]
    n = args.requests
    print(
        f"{name:<30} {'stored' if store else 'not stored':<11} {n / wall:>8,.0f} requests/s  "
        f"event loop {thread / n * 1e6:5.0f} µs a request, process {process / n * 1e6:5.0f} µs",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="per measurement")
    parser.add_argument("--concurrency", type=int, default=64, help="tasks posting at once")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-store", action="store_true", help="only the writer storing nothing")
    args = parser.parse_args()
    workloads = [
        (ingest_http.HOOKS, lambda round_: ingest_http.webhooks(round_)),
        (ingest_http.ONE, lambda round_: ingest_http.records(f"app{round_}", 1)),
    ]
    for round_ in range(1, args.rounds + 1):
        for name, make in workloads:
            for store in [False] if args.no_store else [True, False]:
                measure(name, make(round_), args, store)


if __name__ == "__main__":
    main()
