"""`heatlens sync github` as a real process against a fake GitHub on 127.0.0.1, SIGKILLed at
random points and run again: the store must end as a clean sync leaves it, and whenever the kill
left it, the records stored are exactly those the committed state says were read.

The fake serves the recorded workflow runs of tests/fixtures/github/rest (one run, repeated with
new ids and times, newest first) over 12 pages and the example deployment over 4 pages with its
statuses; the kill comes from the server itself, a random few milliseconds after answering a random
request, so it lands wherever the sync then is: reading, mapping, or committing.
"""

from __future__ import annotations

import copy
import http.server
import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from heatlens.model import RECORD_TYPES
from heatlens.store import Store

pytestmark = pytest.mark.slow

REST = Path(__file__).parent / "fixtures" / "github" / "rest"
REPO = "octocat/example"
RUN_PAGES, RUNS_PER_PAGE = 12, 5
DEPLOYMENT_PAGES, DEPLOYMENTS_PER_PAGE = 4, 3


def _runs() -> list[dict[str, Any]]:
    base = json.loads((REST / "devlake_raw_workflow_runs_sample.json").read_text())[0]
    runs = []
    for i in range(RUN_PAGES * RUNS_PER_PAGE):  # newest first: one an hour back from 2022-09-03
        run = copy.deepcopy(base)
        hour = 23 - i % 24
        day = 3 - i // 24
        at = f"2022-09-{day:02d}T{hour:02d}:00:00Z"
        run.update(id=1000 - i, created_at=at, run_started_at=at, updated_at=at)
        runs.append(run)
    return runs


def _deployments() -> list[dict[str, Any]]:
    base = json.loads((REST / "repos_list-deployments.json").read_text())[0]
    deps = []
    for i in range(DEPLOYMENT_PAGES * DEPLOYMENTS_PER_PAGE):
        dep = copy.deepcopy(base)
        dep.update(id=100 - i, created_at=f"2012-07-{20 - i:02d}T01:19:13Z", sha=f"{i:040x}")
        deps.append(dep)
    return deps


class FakeGithub(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server_address[1]}"
        self.runs, self.deployments = _runs(), _deployments()
        self.statuses = json.loads((REST / "repos_list-deployment-statuses.json").read_text())
        compare = json.loads((REST / "repos_compare-commits.json").read_text())
        self.commit = compare["commits"][0]
        self.count = 0
        self.lock = threading.Lock()
        self.kill: tuple[int, int, float] | None = None  # (pid, at request n, after seconds)

    def answer(self, path: str, page: int) -> tuple[Any, int | None]:
        """The body and the number of pages of `path`."""
        if path == f"/repos/{REPO}":
            return {"full_name": REPO, "name": "example"}, None
        if path == f"/repos/{REPO}/actions/runs":
            items = self.runs[(page - 1) * RUNS_PER_PAGE : page * RUNS_PER_PAGE]
            return {"total_count": len(self.runs), "workflow_runs": items}, RUN_PAGES
        if path == f"/repos/{REPO}/deployments":
            size = DEPLOYMENTS_PER_PAGE
            return self.deployments[(page - 1) * size : page * size], DEPLOYMENT_PAGES
        if path in (f"/repos/{REPO}/issues", f"/repos/{REPO}/pulls"):
            return [], None
        if path.startswith(f"/repos/{REPO}/compare/"):  # one commit: the head
            head = path.rsplit("...", 1)[1]
            return {"commits": [{**self.commit, "sha": head}]}, None
        if path.startswith(f"/repos/{REPO}/deployments/") and path.endswith("/statuses"):
            return self.statuses, None
        raise KeyError(path)


class Handler(http.server.BaseHTTPRequestHandler):
    server: FakeGithub

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if self.headers.get("authorization") == "Bearer ghp_revoked":
            data = json.dumps({"message": "Bad credentials"}).encode()
            self.send_response(401)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        page = int(parse_qs(url.query).get("page", ["1"])[0])
        with self.server.lock:  # counted as it arrives
            self.server.count += 1
            n = self.server.count
        try:
            body, pages = self.server.answer(url.path, page)
        except KeyError:
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-ratelimit-limit", "5000")
        self.send_header("x-ratelimit-remaining", "4000")
        if pages and page < pages:
            link = f"{self.server.base}{url.path}?per_page=100&page={page + 1}"
            self.send_header("link", f'<{link}>; rel="next"')
        self.end_headers()
        self.wfile.write(data)
        kill = self.server.kill
        if kill is not None and n == kill[1]:
            pid, _, after = kill
            threading.Timer(after, os.kill, (pid, signal.SIGKILL)).start()


@pytest.fixture
def fake() -> Iterator[FakeGithub]:
    server = FakeGithub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _sync(fake: FakeGithub, store: Path, kill_at: int | None = None, after: float = 0.0) -> int:
    command = [sys.executable, "-m", "heatlens", "--store", str(store), "sync", "github"]
    command += ["--repo", REPO, "--base-url", fake.base]
    env = {**os.environ, "GITHUB_TOKEN": "ghp_test"}
    env = {k: v for k, v in env.items() if not k.startswith("HEATLENS_")}
    fake.count = 0
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    fake.kill = (proc.pid, kill_at, after) if kill_at is not None else None
    _, stderr = proc.communicate(timeout=300)
    fake.kill = None
    if kill_at is None:
        assert proc.returncode == 0, stderr.decode()
    return proc.returncode


def _contents(path: Path) -> dict[str, Any]:
    with Store.open(str(path), read_only=True) as store:
        records = {
            t.name: sorted(
                ({k: v for k, v in r.items() if k != "ingested_at"} for r in store.rows(t.name)),
                key=lambda r: str(r["id"]),
            )
            for t in RECORD_TYPES
        }
        states = {name: state for name, state, _ in store.sync_states()}
    return {"records": records, "states": states}


def _covered(fake: FakeGithub, contents: dict[str, Any]) -> None:
    """The usage stored is exactly what the runs' state says was read: whole pages."""
    state = contents["states"].get(f"github:{urlsplit(fake.base).netloc}:{REPO}:workflow_runs")
    usage = len(contents["records"]["usage"])
    if state is None:
        assert usage == 0
    elif state.get("resume"):
        page = int(parse_qs(urlsplit(state["resume"]["url"]).query)["page"][0])
        assert usage == (page - 1) * RUNS_PER_PAGE
    else:
        assert usage == RUN_PAGES * RUNS_PER_PAGE


def _comparable(states: dict[str, Any]) -> dict[str, Any]:
    """States without what depends on when a sync ran: ETags, the re-runs' pass time, and the
    shipped deployments' write time and last batch (which differ after a resume)."""
    times = ("etag", "checked", "pass", "after", "done")
    return {k: {**v, **dict.fromkeys(times)} for k, v in states.items()}


def test_a_killed_github_sync_resumed_equals_a_clean_one(fake: FakeGithub, tmp_path: Path) -> None:
    clean = tmp_path / "clean.duckdb"
    _sync(fake, clean)
    # 1 repository + 12 run pages + 4 deployment pages + 12 statuses + issues + pulls + 11 compares
    # + 12 run pages again (the look-back for re-runs)
    total = fake.count
    deployments = DEPLOYMENT_PAGES * DEPLOYMENTS_PER_PAGE
    assert total == 3 + 2 * RUN_PAGES + DEPLOYMENT_PAGES + deployments + deployments - 1
    expected = _contents(clean)
    assert len(expected["records"]["usage"]) == RUN_PAGES * RUNS_PER_PAGE
    assert len(expected["records"]["deployment"]) == deployments
    assert len(expected["records"]["change"]) == deployments - 1
    rng = random.Random(16)
    killed = 0
    for i in range(4):
        store = tmp_path / f"killed-{i}.duckdb"
        for _ in range(3):  # killed up to three times, then run to the end
            code = _sync(fake, store, rng.randrange(2, total), rng.uniform(0.0, 0.03))
            if code != -signal.SIGKILL:
                assert code == 0
                break
            killed += 1
            if store.exists():
                _covered(fake, _contents(store))
        _sync(fake, store)
        # nothing twice, nothing missing: the store a clean sync leaves
        assert _contents(store)["records"] == expected["records"]
        states = _contents(store)["states"]
        assert _comparable(states) == _comparable(expected["states"])
    assert killed >= 4
