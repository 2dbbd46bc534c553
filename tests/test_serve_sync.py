"""Scheduled syncs inside a real `heatlens serve`: the server keeps itself fresh from the config's
[[sync]] entries, and a bad entry stops it before it listens."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import need
from tests.serve_process import serving
from tests.test_connector_git import Repo, t


def _deployments(url: str) -> int:
    status = httpx.get(url + "/api/v1/admin/status", timeout=30).json()
    return sum(s["records"] for s in status["sources"] if s["type"] == "deployment")


def _wait_for(url: str, deployments: int, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while _deployments(url) != deployments:
        assert time.monotonic() < deadline, f"never saw {deployments} deployment(s)"
        time.sleep(0.2)  # polling a condition with a deadline


def test_serve_runs_the_configured_sync_and_picks_up_a_new_tag(tmp_path: Path) -> None:
    need("git", shutil.which("git") is not None)
    repo = Repo(tmp_path / "shop")
    repo.commit(t(1))
    repo.tag("v1", t(2))
    (tmp_path / "heatlens.toml").write_text(
        f'[[sync]]\nkind = "git"\npath = "{repo.path}"\nservice = "shop"\n'
        'deploy_tags = "v*"\nevery = "1s"\n',
        encoding="utf-8",
    )
    with serving(f"duckdb:///{tmp_path / 's.duckdb'}", tmp_path) as server:
        _wait_for(server.url, 1)
        repo.commit(t(3))
        repo.tag("v2", t(4))
        _wait_for(server.url, 2)
        # later runs find nothing new and double nothing
        status = httpx.get(server.url + "/api/v1/admin/status", timeout=30).json()
        runs = [s for s in status["syncs"] if s["kind"] == "git"]
        assert len(runs) == 1 and runs[0]["ok"] and runs[0]["source"] == "sync:git:shop"
        assert _deployments(server.url) == 2


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
