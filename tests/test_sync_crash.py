"""A sync's state commits with the records it covers: `heatlens sync git`, SIGKILLed at several
points of a large sync and then run again, leaves the store a clean uninterrupted sync leaves.

The repository (20,000 commits, a tag every 10) is built with `git fast-import`. Each run starts
the sync as a real process on a DuckDB store and kills it when the store's files show it has got
that far: the schema just written, the records' commit part-way into the write-ahead log, the
checkpoint under way. Killed, the store must hold what it held before the sync or all of it,
records and state alike (never one without the other). Then the same command runs to the end, and
every record of every type (all but `ingested_at`) and the sync state (all but `synced_at`) must
equal those of the clean sync.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from heatlens.model import RECORD_TYPES
from heatlens.store import Store
from tests.conftest import need

pytestmark = pytest.mark.slow

COMMITS = 20_000
TAG_EVERY = 10
EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z


def _fast_import(repo: Path, start: int, count: int) -> None:
    """Commits start…start+count-1 on main, ten minutes apart, a lightweight tag every 10."""
    chunks = []
    for i in range(start, start + count):
        message = f"change {i}"
        who = f"Dev{i % 13} <dev{i % 13}@example.com>"
        chunks.append(
            f"commit refs/heads/main\nmark :{i + 1}\n"
            f"committer {who} {EPOCH + i * 600} +0000\ndata {len(message)}\n{message}\n"
        )
        if i == start and start:
            chunks.append("from refs/heads/main^0\n")
        chunks.append(f"M 644 inline f{i % 50}.txt\ndata {len(str(i))}\n{i}\n\n")
        if (i + 1) % TAG_EVERY == 0:
            chunks.append(f"reset refs/tags/v{(i + 1) // TAG_EVERY:05d}\nfrom :{i + 1}\n\n")
    subprocess.run(
        ["git", "fast-import", "--quiet"], cwd=repo, input="".join(chunks).encode(), check=True
    )


@dataclass
class Sizes:
    """Sizes the store's files reached during one sync: the store's when the write-ahead log
    first appeared, and the largest of each."""

    store_then: int = -1
    store: int = -1
    wal: int = -1


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def _sync(store: Path, repo: Path, kill_when: Callable[[int, int], bool] | None = None) -> Sizes:
    """Run `heatlens sync git` on `store`; with `kill_when(store size, WAL size)`, SIGKILL it
    the moment that holds (failing if it finished first). The sizes seen, polled throughout."""
    command = [sys.executable, "-m", "heatlens", "--store", str(store), "sync", "git"]
    command += [str(repo), "--service", "shop", "--deploy-tags", "v*"]
    wal = store.with_name(store.name + ".wal")
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = Sizes()
    try:
        while proc.poll() is None:
            size, wal_size = _size(store), _size(wal)
            if seen.store_then < 0 and wal_size >= 0:
                seen.store_then = size
            seen.store, seen.wal = max(seen.store, size), max(seen.wal, wal_size)
            if kill_when is not None and kill_when(size, wal_size):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.0005)  # polls the files; the condition, not the time, decides
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if kill_when is None:
        assert proc.returncode == 0, stderr.decode()
    else:
        assert proc.returncode == -signal.SIGKILL, f"the sync ended before the kill: {stderr!r}"
    return seen


def _contents(path: Path) -> dict[str, Any]:
    with Store.open(str(path), read_only=True) as store:
        records = {
            t.name: sorted(
                ({k: v for k, v in r.items() if k != "ingested_at"} for r in store.rows(t.name)),
                key=lambda r: str(r["id"]),
            )
            for t in RECORD_TYPES
        }
        states = {
            name: {k: v for k, v in state.items() if k != "synced_at"}
            for name, state, _ in store.sync_states()
        }
    return {"records": records, "states": states}


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The repository; a store synced when it had half its commits; the clean final stores."""
    need("git", shutil.which("git") is not None)
    root = tmp_path_factory.mktemp("sync-crash")
    repo = root / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    _fast_import(repo, 0, COMMITS // 2)
    half = root / "half.duckdb"
    _sync(half, repo)
    _fast_import(repo, COMMITS // 2, COMMITS // 2)
    clean = root / "clean.duckdb"
    from_empty = _sync(clean, repo)
    resumed = root / "clean-resumed.duckdb"
    shutil.copy(half, resumed)
    from_half = _sync(resumed, repo)
    expected = _contents(clean)
    assert len(expected["records"]["change"]) == COMMITS
    assert len(expected["records"]["deployment"]) == COMMITS // TAG_EVERY
    # syncing the rest on top of the half gives what one sync of everything gives
    assert _contents(resumed) == expected
    return {
        "root": root,
        "repo": repo,
        "half": half,
        "before": _contents(half),
        "expected": expected,
        "from_empty": from_empty,
        "from_half": from_half,
    }


# (start from: "empty" or "half", kill when(store size, WAL size, clean run's sizes))
KILLS: dict[str, tuple[str, Callable[[int, int, Sizes], bool]]] = {
    "schema written, history being read": ("empty", lambda s, w, c: w > 0),
    "records a third into the log": ("empty", lambda s, w, c: w >= c.wal // 3),
    "records' commit nearly logged": ("empty", lambda s, w, c: w >= c.wal * 9 // 10),
    "checkpoint under way": ("empty", lambda s, w, c: w > 0 and s > c.store_then),
    "incremental: records' commit begun": ("half", lambda s, w, c: w >= 0),
    "incremental: records half logged": ("half", lambda s, w, c: w >= c.wal // 2),
}


@pytest.mark.parametrize("point", list(KILLS))
def test_a_killed_git_sync_resumed_equals_a_clean_one(point: str, repos: dict[str, Any]) -> None:
    start, when = KILLS[point]
    store = repos["root"] / f"killed-{list(KILLS).index(point)}.duckdb"
    clean_sizes: Sizes = repos["from_empty"] if start == "empty" else repos["from_half"]
    if start == "half":
        shutil.copy(repos["half"], store)
    _sync(store, repos["repo"], kill_when=lambda s, w: when(s, w, clean_sizes))
    # records and state moved together: the store holds what it held before, or all of it
    killed = _contents(store)
    if start == "empty":
        assert killed == repos["expected"] or (
            not any(killed["records"].values()) and killed["states"] == {}
        )
    else:
        assert killed in (repos["before"], repos["expected"])
    _sync(store, repos["repo"])
    assert _contents(store) == repos["expected"]
    os.remove(store)
