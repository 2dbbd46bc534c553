"""The command line end to end: what a user types and sees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from heatlens.errors import InputError
from heatlens.store import Store
from heatlens.store.schema import SCHEMA_VERSION
from tests.conftest import Cli

EVENTS = [
    {"type": "team", "id": "payments"},
    {"type": "usage", "id": "u1", "ts": "2026-03-02T10:00:00Z", "capability": "ci", "actor": "ana"},
    {
        "type": "usage",
        "id": "u2",
        "ts": "2026-03-02T11:00:00Z",
        "capability": "ci",
        "actor": "bo",
        "team": "payments",
    },
]


def _write(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_ingest_then_again_changes_nothing(run: Cli) -> None:
    _write(run.cwd / "events.ndjson", EVENTS)
    first = run("ingest", "events.ndjson")
    assert first.exit_code == 0, first.output
    assert "3 records" in first.stdout and "3 inserted, 0 updated, 0 unchanged" in first.stdout
    second = run("ingest", "events.ndjson")
    assert "0 inserted, 0 updated, 3 unchanged" in second.stdout
    assert (run.cwd / "heatlens.duckdb").exists()  # the default store


def test_bad_record_is_refused_with_line_and_field(run: Cli) -> None:
    bad = {"type": "usage", "id": "u3", "ts": "2026-03-02T25:00:00Z", "capability": "ci"}
    _write(run.cwd / "events.ndjson", [EVENTS[0], bad, EVENTS[1]])
    result = run("--store", "s.duckdb", "ingest", "events.ndjson")
    assert result.exit_code == 2
    assert (
        'events.ndjson line 2: usage.ts = "2026-03-02T25:00:00Z": expected an ISO 8601 timestamp'
    ) in result.stderr
    assert "error: 1 invalid record(s) in events.ndjson; nothing was stored" in result.stderr
    assert "Traceback" not in result.output
    with Store.open(str(run.cwd / "s.duckdb"), read_only=True) as store:
        assert store.is_empty() and store.data_version() == 0


def test_debug_shows_the_traceback(run: Cli) -> None:
    _write(run.cwd / "events.ndjson", [{"type": "team"}])
    with pytest.raises(InputError):
        run("--debug", "ingest", "events.ndjson")


def test_csv_needs_a_type(run: Cli) -> None:
    (run.cwd / "deploys.csv").write_text(
        "id,service,finished_at\nd1,s,2026-03-02\n", encoding="utf-8"
    )
    refused = run("ingest", "deploys.csv")
    assert refused.exit_code == 2 and "pass --type" in refused.stderr
    ok = run("ingest", "deploys.csv", "--type", "deployment")
    assert ok.exit_code == 0 and "1 inserted" in ok.stdout


def test_stdin(run: Cli) -> None:
    data = "".join(json.dumps(r) + "\n" for r in EVENTS)
    result = run("ingest", "-", input=data)
    assert result.exit_code == 0, result.output
    status = run("status")
    assert "file:stdin" in status.stdout


def test_skip_invalid_writes_rejects(run: Cli) -> None:
    _write(run.cwd / "events.ndjson", [*EVENTS, {"type": "team", "id": 5}])
    result = run("ingest", "events.ndjson", "--skip-invalid", "--rejects", "rejects.ndjson")
    assert result.exit_code == 0
    assert "1 invalid record(s) skipped; see rejects.ndjson" in result.stderr
    rejected = json.loads((run.cwd / "rejects.ndjson").read_text(encoding="utf-8"))
    assert rejected["line"] == 4 and rejected["record"] == {"type": "team", "id": 5}


def test_status_on_a_missing_store_says_how_to_start(run: Cli) -> None:
    result = run("status")
    assert result.exit_code == 2
    assert "no store at heatlens.duckdb: run `heatlens demo`" in result.stderr


def test_status_shows_sources_and_versions(run: Cli) -> None:
    _write(run.cwd / "events.ndjson", EVENTS)
    run("ingest", "events.ndjson")
    result = run("status")
    assert result.exit_code == 0
    assert "usage" in result.stdout and "file:events.ndjson" in result.stdout
    assert f"schema {SCHEMA_VERSION}, data version 1" in result.stdout


def test_delete_commands(run: Cli) -> None:
    _write(run.cwd / "events.ndjson", EVENTS)
    run("ingest", "events.ndjson")
    assert "deleted 1 usage record(s)" in run("delete", "--type", "usage", "--id", "u1").stdout
    erased = run("delete", "--actor", "bo")
    assert erased.exit_code == 0 and "1 usage" in erased.stdout
    gone = run("delete", "--type", "team", "--source", "file:events.ndjson")
    assert "deleted 1 team record(s)" in gone.stdout
    between = run("delete", "--type", "usage", "--ingested-between", "2000-01-01", "2100-01-01")
    assert "deleted 1 usage record(s)" in between.stdout
    wrong = run("delete", "--type", "usage")
    assert wrong.exit_code == 2 and "exactly one of --id, --source" in wrong.stderr
    mixed = run("delete", "--actor", "bo", "--type", "usage")
    assert mixed.exit_code == 2 and "without --type" in mixed.stderr


def test_an_unreachable_server_is_one_clear_line(run: Cli) -> None:
    result = run("--server", "http://127.0.0.1:9", "status")
    assert result.exit_code == 2
    assert "cannot reach the server at http://127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_busy_port_is_one_clear_line(run: Cli) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for args in (["serve", "--port", port], ["demo", "--port", port]):
            result = run(*args)
            assert result.exit_code == 2, args
            assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert not (run.cwd / "heatlens-demo.duckdb").exists()  # refused before any work


def test_commands_that_need_the_store_itself_refuse_server(run: Cli) -> None:
    result = run("--server", "http://127.0.0.1:9", "serve")
    assert result.exit_code == 2 and "drop --server" in result.stderr


def test_bad_config_is_one_line(run: Cli) -> None:
    (run.cwd / "heatlens.toml").write_text('timezone = "Nowhere/Land"\n', encoding="utf-8")
    result = run("status")
    assert result.exit_code == 2
    # blamed on the file that holds it, not on HEATLENS_TIMEZONE (which is not set)
    assert result.stderr == (
        "error: config file heatlens.toml: timezone: unknown time zone 'Nowhere/Land' "
        "(expected an IANA name such as 'Europe/Berlin')\n"
    )


def test_python_dash_m_and_help_everywhere() -> None:
    top = subprocess.run(
        [sys.executable, "-m", "heatlens", "--help"], capture_output=True, text=True, check=True
    )
    assert "ingest" in top.stdout and "demo" in top.stdout
    for cmd in ("ingest", "delete", "status", "demo", "generate"):
        sub = subprocess.run(
            [sys.executable, "-m", "heatlens", cmd, "--help"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "Usage: heatlens " + cmd in sub.stdout


@pytest.mark.parametrize("suffix", [".parquet", ".ndjson"])
def test_generate_writes_records_that_ingest_cleanly(run: Cli, suffix: str) -> None:
    made = run("generate", "--teams", "4", "--days", "30", "--out", f"org{suffix}")
    assert made.exit_code == 0, made.output
    written = int(made.stdout.split()[1].replace(",", ""))
    loaded = run("ingest", f"org{suffix}")
    assert loaded.exit_code == 0, loaded.output
    assert f"{written:,} records" in loaded.stdout and f"{written:,} inserted" in loaded.stdout


def test_generate_refuses_an_unknown_suffix(run: Cli) -> None:
    result = run("generate", "--out", "org.txt")
    assert result.exit_code == 2 and "use a .parquet, .ndjson or .jsonl file" in result.stderr
