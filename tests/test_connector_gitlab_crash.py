"""`heatlens sync gitlab` and `heatlens sync pagerduty` as real processes against fakes on
127.0.0.1, SIGKILLed at random points and run again: the store must end as a clean sync leaves it,
and whenever the kill left it, the records stored are exactly those the committed state says were
read.

The fake GitLab serves the docs' deployment (tests/fixtures/rest/gitlab) repeated with new ids,
shas and times, oldest update first, over pages linked by `X-Next-Page`, each compared with the one
before; the fake PagerDuty serves the recorded incidents (tests/fixtures/rest/pagerduty) repeated,
over `offset`/`more` pages. The kill comes from the server itself, a random few milliseconds after
answering a random request, so it lands wherever the sync then is.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from heatlens.model import RECORD_TYPES
from heatlens.store import Store

FIXTURES = Path(__file__).parent / "fixtures"
PID, PATH = 3, "acme/shop"
PAGES, PER_PAGE = 6, 3
PD_PAGES, PD_PER_PAGE = 5, 3
# the sync reads windows of 179 days from its cursor up to its clock: the synced process's clock
# is pinned here (`_command`), and the incidents' first day is 400 days before it, so the number
# of windows is the same whatever today's date is
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PD_FIRST = NOW.replace(hour=0) - timedelta(days=400)
# `python -m heatlens`, with the connectors' wall clock at NOW (waits stay real)
PINNED = (
    "import sys; from heatlens.connectors import http; "
    f"http.SystemClock.now = lambda self: {NOW.timestamp()}; "
    "from heatlens.cli import main; sys.argv[0] = 'heatlens'; main()"
)


def _deployments() -> list[dict[str, Any]]:
    rest = FIXTURES / "rest" / "gitlab" / "deployments_list-project-deployments.json"
    base = json.loads(rest.read_text())[0]
    deps = []
    for i in range(PAGES * PER_PAGE):
        dep = copy.deepcopy(base)
        at = f"2016-08-{1 + i:02d}T07:36:39.851Z"
        dep.update(id=100 + i, status="success", sha=f"{i + 1:040x}", updated_at=at)
        dep["deployable"]["finished_at"] = at
        deps.append(dep)
    return deps


def _incidents() -> list[dict[str, Any]]:
    rest = FIXTURES / "rest" / "pagerduty" / "assembled_list-incidents-page.json"
    base = json.loads(rest.read_text())["incidents"][2]  # resolved
    out = []
    for i in range(PD_PAGES * PD_PER_PAGE):
        one = copy.deepcopy(base)
        day = (PD_FIRST + timedelta(days=i)).date().isoformat()
        one.update(id=f"Q{i:05d}", created_at=f"{day}T06:45:36Z")
        one["last_status_change_at"] = f"{day}T07:00:00Z"
        out.append(one)
    return out


def _utc(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class Fake(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server_address[1]}"
        self.deployments, self.incidents = _deployments(), _incidents()
        commits = FIXTURES / "rest" / "gitlab" / "commits_list-repository-commits.json"
        self.commit = json.loads(commits.read_text())[0]
        self.count = 0
        self.lock = threading.Lock()
        self.kill: tuple[int, int, float] | None = None  # (pid, at request n, after seconds)

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[Any, dict[str, str]]:
        page = int(query.get("page", ["1"])[0])
        if path == "/api/v4/projects/acme%2Fshop":
            return {"id": PID, "path_with_namespace": PATH}, {}
        if path == f"/api/v4/projects/{PID}/deployments":
            items = self.deployments[(page - 1) * PER_PAGE : page * PER_PAGE]
            return items, {"x-next-page": str(page + 1) if page < PAGES else ""}
        if path == f"/api/v4/projects/{PID}/repository/compare":  # one commit: the head
            return {"commits": [{**self.commit, "id": query["to"][0]}]}, {}
        if path.startswith(f"/api/v4/projects/{PID}/"):
            return [], {"x-next-page": ""}
        if path == "/services/PIKL83L":
            return {"service": {"id": "PIKL83L"}}, {}
        if path == "/incidents":
            offset = int(query.get("offset", ["0"])[0])
            found = self.incidents
            if "since" in query:  # created in [since, until), ISO strings of one format
                since, until = (_utc(query[k][0]) for k in ("since", "until"))
                found = [i for i in found if since <= _utc(i["created_at"]) < until]
            items = found[offset : offset + PD_PER_PAGE]
            more = offset + PD_PER_PAGE < len(found)
            return {"incidents": items, "offset": offset, "limit": 100, "more": more}, {}
        raise KeyError(path)


class Handler(http.server.BaseHTTPRequestHandler):
    server: Fake

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        with self.server.lock:
            self.server.count += 1
            n = self.server.count
        if self.headers.get("private-token") == "glpat-revoked":
            self._send(401, {"message": "401 Unauthorized"}, {})
            return
        try:
            body, headers = self.server.answer(url.path, parse_qs(url.query))
        except KeyError:
            self._send(404, {"message": "404 Not Found"}, {})
            return
        self._send(200, body, headers)
        kill = self.server.kill
        if kill is not None and n == kill[1]:
            pid, _, after = kill
            threading.Timer(after, os.kill, (pid, signal.SIGKILL)).start()

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake() -> Iterator[Fake]:
    server = Fake()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _command(fake: Fake, store: Path, vendor: str) -> list[str]:
    command = [sys.executable, "-c", PINNED, "--store", str(store), "sync", vendor]
    if vendor == "gitlab":
        return [*command, "--project", PATH, "--base-url", f"{fake.base}/api/v4"]
    return [*command, "--service", "PIKL83L", "--base-url", fake.base]


def _sync(
    fake: Fake, store: Path, vendor: str, kill_at: int | None = None, after: float = 0.0
) -> int:
    env = {**os.environ, "GITLAB_TOKEN": "glpat-test", "PAGERDUTY_TOKEN": "pd-test"}
    env = {k: v for k, v in env.items() if not k.startswith("HEATLENS_")}
    fake.count = 0
    proc = subprocess.Popen(
        _command(fake, store, vendor), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
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


def _covered(fake: Fake, contents: dict[str, Any], vendor: str) -> None:
    """What is stored is exactly what the stream's state says was read: whole pages."""
    host = urlsplit(fake.base).netloc
    if vendor == "gitlab":
        name, kind, per_page = f"gitlab:{host}:{PATH}:deployments", "deployment", PER_PAGE
        total = PAGES * PER_PAGE
    else:
        name, kind, per_page = f"pagerduty:{host}:PIKL83L:incidents", "incident", PD_PER_PAGE
        total = PD_PAGES * PD_PER_PAGE
    state = contents["states"].get(name)
    stored = len(contents["records"][kind])
    if state is None:
        assert stored == 0
    elif state.get("resume"):
        query = parse_qs(urlsplit(state["resume"]["url"]).query)
        if vendor == "gitlab":
            assert stored == (int(query["page"][0]) - 1) * per_page
        else:
            assert stored == int(query["offset"][0])
    else:
        assert stored == total


@pytest.mark.slow
@pytest.mark.parametrize("vendor", ["gitlab", "pagerduty"])
def test_a_killed_sync_resumed_equals_a_clean_one(fake: Fake, tmp_path: Path, vendor: str) -> None:
    clean = tmp_path / "clean.duckdb"
    _sync(fake, clean, vendor)
    total = fake.count
    expected = _contents(clean)
    if vendor == "gitlab":
        # project + environments + 6 deployment pages + 4 empty streams + 17 compares
        assert total == 2 + PAGES + 4 + PAGES * PER_PAGE - 1
        assert len(expected["records"]["deployment"]) == PAGES * PER_PAGE
        assert len(expected["records"]["change"]) == PAGES * PER_PAGE - 1
    else:
        # the service, 5 pages; then one request per empty window of 179 days from the newest
        # incident (PD_FIRST + 14 d 06:45:36: 385.7–386.7 days before the sync) up to now:
        # ceil(386 d / 179 d) − 1 = 2 empty windows
        assert total == 1 + PD_PAGES + 2
        assert len(expected["records"]["incident"]) == PD_PAGES * PD_PER_PAGE
    rng = random.Random(17)
    killed = 0
    for i in range(3):
        store = tmp_path / f"killed-{i}.duckdb"
        for _ in range(2):  # killed up to twice, then run to the end
            code = _sync(fake, store, vendor, rng.randrange(2, total), rng.uniform(0.0, 0.03))
            if code != -signal.SIGKILL:
                assert code == 0
                break
            killed += 1
            if store.exists():
                _covered(fake, _contents(store), vendor)
        _sync(fake, store, vendor)
        # nothing twice, nothing missing: the store a clean sync leaves
        assert _contents(store)["records"] == expected["records"]
        assert _contents(store)["states"] == expected["states"]
    assert killed >= 2


def test_cli_errors_are_one_line_without_the_token(fake: Fake, tmp_path: Path) -> None:
    from tests.conftest import Cli

    run = Cli(tmp_path)
    store = str(tmp_path / "s.duckdb")
    args = ["--store", store, "sync", "gitlab", "--project", PATH]
    done = run(*args, "--base-url", f"{fake.base}/api/v4", "--token", "glpat-ok")
    assert done.exit_code == 0, done.output
    assert "sync:gitlab: 1 project: 18 deployments" in done.output
    refused = run(*args, "--base-url", f"{fake.base}/api/v4", "--token", "glpat-revoked")
    assert refused.exit_code == 2
    assert (
        "GitLab rejected the token (401 Unauthorized) while reading project acme/shop: check "
        "--token or GITLAB_TOKEN"
    ) in refused.output
    assert "glpat-revoked" not in refused.output
    pd = ["--store", store, "sync", "pagerduty", "--service", "PIKL83L", "--base-url", fake.base]
    done = run(*pd, "--token", "pd-ok")
    assert done.exit_code == 0, done.output
    assert "sync:pagerduty: 1 service: 15 incidents (" in done.output


def test_sync_entries_run_against_the_fakes_holding_the_store_only_to_write(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collections.abc import Callable

    from heatlens.connectors.schedule import Scheduler, parse_sync_jobs
    from heatlens.settings import load_settings

    entries = [
        {"kind": "gitlab", "project": PATH, "base_url": f"{fake.base}/api/v4", "every": "1h"},
        {"kind": "pagerduty", "service": ["PIKL83L"], "base_url": fake.base, "every": "1h"},
    ]
    settings = load_settings(config=None, environ={}, overrides={"sync": entries})
    jobs = parse_sync_jobs(settings)
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-test")
    monkeypatch.setenv("PAGERDUTY_TOKEN", "pd-test")
    with Store.open(str(tmp_path / "s.duckdb")) as store:
        held: list[int] = []

        def with_store(fn: Callable[[Store], Any]) -> Any:
            # the server's writer: no request to a vendor while a sync holds it
            before = fake.count
            try:
                return fn(store)
            finally:
                held.append(fake.count - before)

        statuses = Scheduler(jobs, with_store).run_due(datetime(2023, 1, 1, tzinfo=UTC))
        assert [s.ok for s in statuses] == [True, True], [s.summary for s in statuses]
        assert len(store.rows("deployment")) == PAGES * PER_PAGE
        assert len(store.rows("incident")) == PD_PAGES * PD_PER_PAGE
        assert len(held) > PAGES + PD_PAGES and set(held) == {0}
        assert store.sync_state(f"schedule:gitlab:{PATH}") is not None
        assert store.sync_state("schedule:pagerduty:PIKL83L") is not None
