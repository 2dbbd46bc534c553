"""Scheduled syncs in the server: the app keeps itself fresh from the config's [[sync]] entries,
and a bad entry stops a real `heatlens serve` before it listens."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from heatlens.connectors.schedule import Scheduler
from heatlens.settings import load_settings
from heatlens.web import create_app
from tests.conftest import need
from tests.test_connector_git import Repo, t

T0 = datetime(2026, 3, 20, 9, 0, tzinfo=UTC)


def _deployments(client: TestClient) -> int:
    status = client.get("/api/v1/admin/status").json()
    return sum(s["records"] for s in status["sources"] if s["type"] == "deployment")


def test_the_app_runs_the_configured_sync_and_picks_up_a_new_tag(tmp_path: Path) -> None:
    """The app `heatlens serve` runs, in-process, its scheduler on a clock the test moves: each
    round is waited for, never slept for."""
    need("git", shutil.which("git") is not None)
    repo = Repo(tmp_path / "shop")
    repo.commit(t(1))
    repo.tag("v1", t(2))
    config = tmp_path / "heatlens.toml"
    config.write_text(
        f'[[sync]]\nkind = "git"\npath = "{repo.path}"\nservice = "shop"\n'
        'deploy_tags = "v*"\nevery = "15m"\n',
        encoding="utf-8",
    )
    app = create_app(load_settings(config, environ={}), f"duckdb:///{tmp_path / 's.duckdb'}")
    scheduler: Scheduler = app.state.scheduler
    now = [T0]
    scheduler.clock = lambda: now[0]
    scheduler.poll_seconds = 3600  # no round but those the test asks for
    with TestClient(app) as client:
        assert scheduler.wait_rounds(1, timeout=60)  # the first round, as the server starts
        assert _deployments(client) == 1
        repo.commit(t(3))
        repo.tag("v2", t(4))
        now[0] = T0 + timedelta(minutes=14)
        scheduler.wake()
        assert scheduler.wait_rounds(2, timeout=60)
        assert _deployments(client) == 1  # not due yet
        now[0] = T0 + timedelta(minutes=15)
        scheduler.wake()
        assert scheduler.wait_rounds(3, timeout=60)
        assert _deployments(client) == 2
        # later runs find nothing new and double nothing
        now[0] = T0 + timedelta(minutes=30)
        scheduler.wake()
        assert scheduler.wait_rounds(4, timeout=60)
        status = client.get("/api/v1/admin/status").json()
        runs = [s for s in status["syncs"] if s["kind"] == "git"]
        assert len(runs) == 1 and runs[0]["ok"] and runs[0]["source"] == "sync:git:shop"
        assert runs[0]["at"] == (T0 + timedelta(minutes=30)).isoformat()
        assert _deployments(client) == 2
    assert scheduler._thread is None  # the app's shutdown stopped it


def test_a_bad_sync_entry_stops_serve_before_it_listens(tmp_path: Path) -> None:
    (tmp_path / "heatlens.toml").write_text(
        '[[sync]]\nkind = "git"\npath = "."\nservice = "x"\ndeploy_tags = "v*"\nevery = "often"\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "heatlens", "--store", str(tmp_path / "s.duckdb"), "serve"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "sync[0].every: 'often' is not an interval" in done.stderr
    assert "Uvicorn running" not in done.stderr
