"""HTTP ingest: requests/s and records/s of heatlens's write paths on loopback, side by side with a
bare ASGI app on the same server stack, in the same run (DESIGN §6, issue 15).

    python bench/ingest_http.py [--seconds 8] [--clients 64] [--batch-clients 8] [--no-write]
                                [--prefill 10000000] [--rounds 3]

Starts a real `heatlens serve` on a fresh DuckDB store (or, with `--prefill N`, one already holding
N usage records, loaded with `heatlens ingest`: a server of a year's data) with a GitHub webhook
secret, and the bare
app of bench/bare_app.py (reads the body, answers 202, stores nothing) with the same uvicorn
options. An aiohttp client in this process (a separate process from both servers) then runs, for
`--seconds` each after a warm-up:

- singles: `--clients` concurrent connections each posting one request after another —
  signed GitHub `workflow_run` deliveries (the fixture, with a new delivery id and run id each:
  every delivery stores one usage record), then one-record `POST /api/v1/events` requests, then
  the same bodies to the bare app;
- batches: `--batch-clients` connections posting arrays of 1,000 usage records (unique ids), then
  the same bodies to the bare app.

Every heatlens answer must be a 2xx, which the server sends only after the request's group
committed. Prints requests/s, records/s, p50/p99 latency, the client's CPU and the server's (its
processes, fronts included, from /proc: per request, the figure to set beside the bare app's),
and the ratio to the bare app, and
writes the table into docs/performance.md (unless --no-write). Targets: ≥ 2,000 single requests/s
and ≥ 1/3 of the bare app; ≥ 50,000 records/s with batches of 1,000. This machine's run-to-run
spread is wide (the bare app alone moves by a third within an hour): `--rounds N` measures every
workload N times, heatlens and the bare app in turn, and calls a ratio met only when it is met in
every round.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import duckdb
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the one way tests and benchmarks start a server
from bench.dashboard import model_built  # noqa: E402
from tests.serve_process import ServeProcess  # noqa: E402

from heatlens.settings import Settings  # noqa: E402

DOC = ROOT / "docs" / "performance.md"
START, END = "<!-- ingest_http:start -->", "<!-- ingest_http:end -->"
FIXTURE = ROOT / "tests" / "fixtures" / "github" / "workflow_run.completed.json"
SECRET = "bench-secret"
SINGLES_TARGET = 2_000
RATIO_TARGET = 1 / 3
BATCH_TARGET = 50_000
BATCH = 1_000
HOOKS, ONE, BATCHES = "webhook (GitHub workflow_run)", "one record per request", "batches of 1,000"
_RUNNING = re.compile(rb"Uvicorn running on (http://127\.0\.0\.1:\d+)")

# a request: (path, headers, body, records it holds)
Request = tuple[str, dict[str, str], bytes, int]


@dataclass
class Row:
    workload: str
    target: str  # "heatlens" or "bare"
    requests: int
    records: int
    seconds: float
    latencies: list[float]
    client_cpu: float
    server_cpu: float = float("nan")  # cores the server's processes used (from /proc)
    round: int = 1  # which round of `--rounds`

    @property
    def requests_s(self) -> float:
        return self.requests / self.seconds

    @property
    def records_s(self) -> float:
        return self.records / self.seconds

    @property
    def server_us(self) -> float:
        """The server's CPU per request, in microseconds."""
        return self.server_cpu * self.seconds / self.requests * 1e6 if self.requests else 0.0

    def quantile(self, q: float) -> float:
        cut = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return cut[int(q * 100) - 1] * 1000


def webhooks(tag: int) -> Callable[[int], Request]:
    """Signed GitHub workflow_run deliveries: the fixture with a new run id and delivery id."""
    text = FIXTURE.read_text(encoding="utf-8")
    run_id = str(json.loads(text)["workflow_run"]["id"])
    head, tail = text.split(run_id, 1)

    def make(n: int) -> Request:
        # every occurrence of the run id changes: the usage id is `{run_id}/{attempt}`
        new = str(tag * 10**9 + n)
        body = (head + new + tail.replace(run_id, new)).encode()
        sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "workflow_run",
            "X-GitHub-Delivery": f"bench-{tag}-{n}",
            "X-Hub-Signature-256": sig,
        }
        return "/webhooks/github", headers, body, 1

    return make


def _usage(tag: str, n: int) -> str:
    return (
        f'{{"type":"usage","id":"{tag}-{n}","ts":"2026-03-{1 + n % 28:02d}T'
        f'{n % 24:02d}:{n % 60:02d}:00Z","capability":"ci","action":"build",'
        f'"actor":"dev{n % 500}","team":"team{n % 40}","outcome":"success",'
        f'"duration_s":{30 + n % 300}}}'
    )


def records(tag: str, batch: int) -> Callable[[int], Request]:
    """`POST /api/v1/events` bodies of `batch` usage records each (unique ids)."""
    headers = {"Content-Type": "application/json"}

    def make(n: int) -> Request:
        items = ",".join(_usage(tag, n * batch + i) for i in range(batch))
        return "/api/v1/events", headers, f"[{items}]".encode(), batch

    return make


async def _load(
    url: str,
    make: Callable[[int], Request],
    clients: int,
    seconds: float,
    counter: Iterator[int],
) -> Row:
    """`clients` connections posting back to back for `seconds`; every answer must be a 2xx.
    `counter` numbers the requests: every request of a workload (its warm-up included) is a new
    event — a replayed one would be a duplicate (a webhook's delivery id) or an unchanged record,
    which the server answers by another path."""
    latencies: list[float] = []
    failures: list[str] = []
    sent = [0, 0]  # requests, records
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    # bodies are made before the clock starts so the client spends its time sending
    prepared = [make(next(counter)) for _ in range(clients * 4)]
    stop_at = 0.0

    async def client(http: aiohttp.ClientSession) -> None:
        while time.perf_counter() < stop_at:
            path, headers, body, n = prepared.pop() if prepared else make(next(counter))
            t = time.perf_counter()
            async with http.post(url + path, data=body, headers=headers) as response:
                await response.read()
                status = response.status
            if 200 <= status < 300:
                latencies.append(time.perf_counter() - t)
                sent[0] += 1
                sent[1] += n
            else:
                failures.append(f"{status} {(await response.text())[:200]}")
                return

    cpu = resource.getrusage(resource.RUSAGE_SELF)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    used = resource.getrusage(resource.RUSAGE_SELF)
    if failures:
        raise SystemExit(f"{len(failures)} request(s) failed, e.g. {failures[0]}")
    client_cpu = (used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime) / elapsed
    return Row("", "", sent[0], sent[1], elapsed, latencies, client_cpu)


def tree_cpu(pid: int | None) -> float:
    """CPU seconds (user and system) used so far by process `pid` and the processes it started
    that still run (a server's HTTP front processes), read from /proc; NaN where there is none."""
    if pid is None or not Path("/proc").is_dir():
        return float("nan")
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        at = todo.pop()
        try:
            fields = Path(f"/proc/{at}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{at}/task/{at}/children").read_text().split()
        except OSError:  # (gone meanwhile)
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
        todo += [int(child) for child in children]
    return total


def measure(
    workload: str,
    target: str,
    url: str,
    make: Callable[[int], Request],
    clients: int,
    s: float,
    pid: int | None = None,
) -> Row:
    """Warm up, then load the server at `url` for `s` seconds; `pid`: its process, whose CPU
    (with its children's) is read before and after."""
    counter = itertools.count()
    # warm up: code paths, first rows
    asyncio.run(_load(url, make, clients, min(1.5, s / 4), counter))
    before = tree_cpu(pid)
    row = asyncio.run(_load(url, make, clients, s, counter))
    row.server_cpu = (tree_cpu(pid) - before) / row.seconds
    row.workload, row.target = workload, target
    print(
        f"{workload:<28} {target:<8} {row.requests_s:>8,.0f} requests/s {row.records_s:>9,.0f} "
        f"records/s  p50 {row.quantile(0.5):6.1f} ms  p99 {row.quantile(0.99):6.1f} ms  "
        f"client {row.client_cpu:.2f} cores  server {row.server_cpu:.2f} cores "
        f"({row.server_us:,.0f} µs a request)",
        flush=True,
    )
    return row


def prefill(store: Path, rows: int) -> None:
    """Store `rows` usage records (a year of timestamps) through `heatlens ingest`. Their ids are
    random and spread so that every row group's smallest and largest id enclose the bench's own
    (`r-…`, run ids of digits): no row group can be skipped by its min/max when the server looks
    for a posted id, as with a real store's mix of ids."""
    data = store.parent / "prefill.parquet"
    duckdb.connect().execute(
        f"""COPY (SELECT 'usage' AS type,
                  CASE WHEN i % 2 = 0 THEN '' ELSE 'z' END || md5(i::VARCHAR) AS id,
                  TIMESTAMPTZ '2025-03-01 00:00:00+00' + to_seconds(i * 31536000 // {rows})
                      AS ts,
                  'ci-' || (i % 30)::VARCHAR AS capability, 'build' AS action,
                  'dev' || (i % 20000)::VARCHAR AS actor, 'team' || (i % 500)::VARCHAR AS team,
                  'success' AS outcome, (30 + i % 300)::DOUBLE AS duration_s
                FROM range({rows}) t(i)) TO '{data}' (FORMAT parquet)"""
    )
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "heatlens", "--store", f"duckdb:///{store}", "ingest", str(data)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    print(f"prefilled {rows:,} usage records in {time.perf_counter() - started:.1f} s")
    data.unlink()


class Bare:
    """bench/bare_app.py in a subprocess."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "bare_app.py")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            found = _RUNNING.search(line)
            if found:
                # keep reading its log (access lines, as heatlens serve logs): a full pipe blocks
                threading.Thread(target=self.proc.stdout.read, daemon=True).start()
                return found.group(1).decode()
        raise SystemExit("the bare app did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--clients", type=int, default=64, help="connections posting singles")
    parser.add_argument("--batch-clients", type=int, default=8, help="connections posting batches")
    parser.add_argument("--no-write", action="store_true", help="do not update the docs")
    parser.add_argument("--only", choices=["singles", "batches"], help="one workload only")
    parser.add_argument("--prefill", type=int, default=0, help="usage records stored before")
    parser.add_argument(
        "--fronts", type=int, help="server.front_processes (default: the setting's default)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every workload this many times, heatlens and bare in turn: a ratio is met "
        "only when it is met in every round",
    )
    args = parser.parse_args()
    work_dir = Path(tempfile.mkdtemp(prefix="heatlens-bench-http-"))
    if args.prefill:
        prefill(work_dir / "s.duckdb", args.prefill)
    server = ServeProcess(
        f"duckdb:///{work_dir / 's.duckdb'}",
        cwd=work_dir,
        # the per-client rate limit would refuse a benchmark's request rate
        env={
            "HEATLENS_SERVER_RATE_LIMIT_PER_MINUTE": "100000000",
            "HEATLENS_WEBHOOKS_GITHUB_SECRET": SECRET,
            "HEATLENS_SERVER_MAX_CONNECTIONS": "1000",
            **(
                {"HEATLENS_SERVER_FRONT_PROCESSES": str(args.fronts)}
                if args.fronts is not None
                else {}
            ),
        },
    )
    bare = Bare()
    url, bare_url = server.start(timeout=300), bare.start()
    if args.prefill:  # the server builds the model of what is stored once it listens: not timed
        with httpx.Client(base_url=url, timeout=60) as client:
            took = model_built(client, 1, time.perf_counter())
        print(f"the server's model of the stored records was built in {took or 0:.1f} s")
    rows: list[Row] = []
    s, c, bc = args.seconds, args.clients, args.batch_clients
    mine, theirs = server.pid, bare.proc.pid if bare.proc is not None else None
    try:
        for k in range(1, args.rounds + 1):  # new ids every round: nothing is a duplicate
            found: list[Row] = []
            if args.only != "batches":
                found.append(measure(HOOKS, "heatlens", url, webhooks(10 * k + 1), c, s, mine))
                found.append(measure(HOOKS, "bare", bare_url, webhooks(10 * k + 2), c, s, theirs))
                found.append(measure(ONE, "heatlens", url, records(f"r{k}", 1), c, s, mine))
                found.append(measure(ONE, "bare", bare_url, records(f"y{k}", 1), c, s, theirs))
            if args.only != "singles":
                batches, theirs_too = records(f"b{k}", BATCH), records(f"z{k}", BATCH)
                found.append(measure(BATCHES, "heatlens", url, batches, bc, s, mine))
                found.append(measure(BATCHES, "bare", bare_url, theirs_too, bc, s, theirs))
            for row in found:
                row.round = k
            rows += found
    finally:
        server.stop(timeout=60)
        bare.stop()
        shutil.rmtree(work_dir, ignore_errors=True)
    load = os.getloadavg()
    verdicts = summary(rows)
    for line in verdicts:
        print(line)
    print(f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)")
    if not args.no_write:
        write_doc(rows, verdicts, args, load)
        print(f"wrote {DOC.relative_to(ROOT)}")


def _pairs(rows: list[Row]) -> list[tuple[Row, Row | None]]:
    bare = {(r.workload, r.round): r for r in rows if r.target == "bare"}
    return [(r, bare.get((r.workload, r.round))) for r in rows if r.target == "heatlens"]


def summary(rows: list[Row]) -> list[str]:
    """One verdict per workload: over every round, each round's heatlens run against the bare
    app's of the same round; a ratio counts as met only when met in every round."""
    by_workload: dict[str, list[tuple[Row, float]]] = {}
    for mine, bare in _pairs(rows):
        ratio = mine.requests_s / bare.requests_s if bare else float("nan")
        by_workload.setdefault(mine.workload, []).append((mine, ratio))
    out = []
    for workload, found in by_workload.items():
        ratios = [ratio for _, ratio in found]
        batches = workload.startswith("batches")
        rates = [row.records_s if batches else row.requests_s for row, _ in found]
        unit = "records/s" if batches else "requests/s"
        if len(found) == 1:
            said = f"{rates[0]:,.0f} {unit}, {ratios[0]:.2f}× bare"
        else:
            said = (
                f"{statistics.median(rates):,.0f} {unit} median of {len(found)} rounds "
                f"({min(rates):,.0f}–{max(rates):,.0f}), {statistics.median(ratios):.2f}× bare "
                f"({min(ratios):.2f}–{max(ratios):.2f})"
            )
        if batches:
            goal = f"target {BATCH_TARGET:,} records/s: {min(rates) / BATCH_TARGET:.2f}× at least"
        else:
            met = sum(ratio >= RATIO_TARGET for ratio in ratios)
            verdict = "met" if met == len(ratios) else "not met"
            if len(ratios) > 1:
                verdict += f" (in {met} of {len(ratios)} rounds)"
            goal = (
                f"target {SINGLES_TARGET:,}/s: {min(rates) / SINGLES_TARGET:.2f}× at least, "
                f"and ≥ {RATIO_TARGET:.2f}× bare: {verdict}"
            )
        out.append(f"{workload}: {said}; {goal}")
    return out


def write_doc(
    rows: list[Row], verdicts: list[str], args: argparse.Namespace, load: tuple[float, ...]
) -> None:
    fronts = Settings().server_front_processes if args.fronts is None else args.fronts
    lines = [
        START,
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node() or 'this machine'}: "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) when the run ended. "
        "Servers and client shared the machine.",
        "",
        f"`python bench/ingest_http.py --seconds {args.seconds:g} --clients {args.clients} "
        f"--batch-clients {args.batch_clients}"
        + (f" --prefill {args.prefill}" if args.prefill else "")
        + (f" --fronts {args.fronts}" if args.fronts is not None else "")
        + (f" --rounds {args.rounds}" if args.rounds > 1 else "")
        + "`: a real `heatlens serve` on a "
        + (
            f"DuckDB store holding {args.prefill:,} usage records "
            if args.prefill
            else "fresh DuckDB store "
        )
        + f"with {fronts} HTTP front process{'' if fronts == 1 else 'es'} "
        "(`server.front_processes`), and the bare app (`bench/bare_app.py`: reads the body, "
        "answers 202, stores nothing; one process, the same uvicorn options); an aiohttp "
        "client in a separate process posts back to back over "
        f"loopback for {args.seconds:g} s per line, each request waiting for its answer (a "
        "heatlens 2xx means committed). Server CPU: what the server's processes (its fronts "
        "included) used during the line, read from /proc."
        + (
            f" Every workload was measured {args.rounds} times, heatlens and the bare app in "
            "turn, on the same two servers: a ratio is met only when met in every round."
            if args.rounds > 1
            else ""
        ),
        "",
        "| round | workload | server | clients | requests/s | records/s | × bare | p50 ms "
        "| p99 ms | client CPU | server CPU | server CPU a request |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    bare = {(r.workload, r.round): r for r in rows if r.target == "bare"}
    for r in rows:
        clients = args.batch_clients if r.workload.startswith("batches") else args.clients
        other = bare.get((r.workload, r.round))
        ratio = f"{r.requests_s / other.requests_s:.2f}" if other and r.target != "bare" else ""
        lines.append(
            f"| {r.round} | {r.workload} | {r.target} | {clients} | {r.requests_s:,.0f} | "
            f"{r.records_s:,.0f} | {ratio} | {r.quantile(0.5):.1f} | {r.quantile(0.99):.1f} | "
            f"{r.client_cpu:.2f} cores | {r.server_cpu:.2f} cores | {r.server_us:,.0f} µs |"
        )
    lines += ["", *(f"- {v}" for v in verdicts), END]
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + "\n".join(lines) + rest.split(END, 1)[1]
    else:
        text = (text or "# Performance\n") + "\n## HTTP ingest\n\n" + "\n".join(lines) + "\n"
    DOC.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
