"""What a command imports: `heatlens ingest` stores records without loading the metric engine
(Ibis) or the HTTP client, whose imports alone cost about a second of a bulk load (DESIGN §6)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# runs the CLI in a fresh interpreter, then prints which of the heavy modules it had loaded
SCRIPT = """
import json, sys
from heatlens.cli import cli
try:
    cli(sys.argv[1:], prog_name="heatlens")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
watched = ("ibis", "sqlglot", "httpx", "heatlens.metrics.engine", "heatlens.analysis")
print(json.dumps({"code": code, "loaded": [m for m in watched if m in sys.modules]}))
"""


def _run(*args: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_ingest_of_a_small_file_does_not_import_ibis(tmp_path: Path) -> None:
    data = tmp_path / "usage.ndjson"
    data.write_text(
        '{"type": "usage", "id": "u1", "ts": "2026-03-02T09:00:00Z", "capability": "ci", '
        '"actor": "ana"}\n'
    )
    store = tmp_path / "s.duckdb"
    assert _run("--store", str(store), "ingest", str(data)) == {"code": 0, "loaded": []}
    # the record was stored: a second load finds it unchanged
    again = subprocess.run(
        [sys.executable, "-m", "heatlens", "--store", str(store), "ingest", str(data)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "0 inserted, 0 updated, 1 unchanged" in again.stdout


def test_the_help_does_not_import_ibis() -> None:
    assert _run("--help") == {"code": 0, "loaded": []}
