"""Every store command through a running server (`--server URL`), against a real `heatlens serve`
subprocess that owns the DuckDB store — and the same answers as the local command once the server
has stopped."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import Cli
from tests.serve_process import serving

MONDAY = date(2026, 3, 2)


def _ndjson(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _organisation() -> list[dict[str, Any]]:
    """Three teams; two use `ci` in the week of MONDAY (one of them twice), one never does."""
    teams = [{"type": "team", "id": t, "name": t.title()} for t in ("apps", "data", "web")]
    ts = datetime.combine(MONDAY, datetime.min.time(), UTC) + timedelta(hours=10)
    usage = [
        {"type": "usage", "id": "u1", "ts": ts.isoformat(), "capability": "ci", "team": "apps"},
        {
            "type": "usage",
            "id": "u2",
            "ts": (ts + timedelta(days=1)).isoformat(),
            "capability": "ci",
            "team": "apps",
        },
        {
            "type": "usage",
            "id": "u3",
            "ts": (ts + timedelta(days=2)).isoformat(),
            "capability": "ci",
            "team": "data",
        },
    ]
    return teams + usage


def _active_teams(report: dict[str, Any], period: date) -> Any:
    return next(
        r["value"]
        for r in report["rows"]
        if r["metric"] == "adoption.active_teams"
        and r["period"] == period.isoformat()
        and r["segment"] == {"capability": "ci"}
    )


REPORT_ARGS = [
    "report",
    "--grain",
    "week",
    "--from",
    MONDAY.isoformat(),
    "--to",
    (MONDAY + timedelta(days=14)).isoformat(),
    "--by",
    "capability",
    "--metric",
    "adoption",
]


def test_store_commands_round_trip_through_the_server(
    run: Cli, tmp_path: Path, store_url: str
) -> None:
    store = store_url
    data = _ndjson(tmp_path / "org.ndjson", _organisation())
    bad = _ndjson(
        tmp_path / "bad.ndjson",
        [
            {"type": "usage", "id": "b1", "ts": "2026-03-03T10:00:00Z", "capability": "ci"},
            {"type": "usage", "id": "b2", "ts": "2026-02-30T10:00:00Z", "capability": "ci"},
        ],
    )
    # what the local command says about the bad file, on a scratch store
    local_bad = run("--store", str(tmp_path / "scratch.duckdb"), "ingest", str(bad))
    assert local_bad.exit_code == 2

    with serving(store, tmp_path) as server:
        srv = ["--server", server.url]

        if store.startswith("duckdb"):
            # the server owns a DuckDB file: a local command says so and how to proceed
            locked = run("--store", store, "status")
            assert locked.exit_code == 2 and "--server" in locked.stderr

        empty = run(*srv, "status")
        assert empty.exit_code == 2 and "holds no records yet" in empty.stderr

        first = run(*srv, "ingest", str(data))
        assert first.exit_code == 0, first.stderr
        assert "6 records" in first.stdout and "6 inserted" in first.stdout
        again = run(*srv, "ingest", str(data))
        assert again.exit_code == 0 and "6 unchanged" in again.stdout

        # a bad file: the same problems, with file and line, as locally; nothing stored
        refused = run(*srv, "ingest", str(bad))
        assert refused.exit_code == 2
        problem = 'bad.ndjson line 2: usage.ts = "2026-02-30T10:00:00Z"'
        assert problem in local_bad.stderr and problem in refused.stderr
        # --skip-invalid keeps the good record and writes the bad one to a local rejects file
        rejects = tmp_path / "rejects.ndjson"
        skipped = run(*srv, "ingest", str(bad), "--skip-invalid", "--rejects", str(rejects))
        assert skipped.exit_code == 0, skipped.stderr
        assert "1 inserted" in skipped.stdout
        rejected = [json.loads(line) for line in rejects.read_text().splitlines()]
        assert [r["record"]["id"] for r in rejected] == ["b2"]

        # CSV of one type, given --type
        csv = tmp_path / "more.csv"
        csv.write_text("id,ts,capability,team\nu4,2026-03-04T09:00:00Z,ci,web\n")
        assert run(*srv, "ingest", str(csv), "--type", "usage").exit_code == 0

        status = run(*srv, "status")
        assert status.exit_code == 0
        assert "file:org.ndjson" in status.stdout and "file:more.csv" in status.stdout

        # report: apps, data, web (from the CSV) and the team-less b1 resolve to 3 teams
        served = run(*srv, *REPORT_ARGS, "--format", "json")
        assert served.exit_code == 0, served.stderr
        assert _active_teams(json.loads(served.stdout), MONDAY) == 3

        explained = run(
            *srv,
            "explain",
            "adoption.active_teams",
            "--period",
            MONDAY.isoformat(),
            "--segment",
            "capability=ci",
            "--format",
            "json",
        )
        assert explained.exit_code == 0, explained.stderr
        doc = json.loads(explained.stdout)
        assert doc["row"]["value"] == 3
        assert {r["id"] for r in doc["records"]} == {"u1", "u2", "u3", "u4", "b1"}

        deleted = run(*srv, "delete", "--type", "usage", "--id", "u4")
        assert deleted.exit_code == 0 and "deleted 1 usage record(s)" in deleted.stdout
        after = run(*srv, *REPORT_ARGS, "--format", "json")
        assert _active_teams(json.loads(after.stdout), MONDAY) == 2
        outputs = {
            fmt: run(*srv, *REPORT_ARGS, "--format", fmt).stdout
            for fmt in ("json", "csv", "markdown")
        }
        table = run(*srv, *REPORT_ARGS)
        assert table.exit_code == 0 and "Adoption" in table.stdout

        # the self-contained HTML report, rendered by the server
        html_args = ["report", "--format", "html", "--grain", "week", "--to", "2026-03-16"]
        served_html = run(*srv, *html_args, "--out", str(tmp_path / "served.html"))
        assert served_html.exit_code == 0, served_html.stderr

    # the server has stopped and released the store: local commands give the same answers
    for fmt, text in outputs.items():
        local = run("--store", store, *REPORT_ARGS, "--format", fmt)
        assert local.exit_code == 0 and local.stdout == text, fmt
    assert run("--store", store, *REPORT_ARGS).stdout == table.stdout
    local_html = run("--store", store, *html_args, "--out", str(tmp_path / "local.html"))
    assert local_html.exit_code == 0, local_html.stderr
    for name in ("served.html", "local.html"):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert text.lower().startswith("<!doctype html") and "Capability ci" in text
        assert 'src="http' not in text and 'href="http' not in text  # nothing fetched


def test_tokens_through_the_server(run: Cli, tmp_path: Path) -> None:
    store = f"duckdb:///{tmp_path / 'served.duckdb'}"
    data = _ndjson(tmp_path / "org.ndjson", _organisation())
    with serving(store, tmp_path) as server:
        srv = ["--server", server.url]
        # no token yet: the loopback server is open, so the first admin token can be made
        made = run(*srv, "token", "create", "--scope", "admin", "--name", "ops")
        assert made.exit_code == 0, made.stderr
        admin = made.stdout.strip()
        assert admin.startswith("hl_")

        refused = run(*srv, "status")
        assert refused.exit_code == 2 and "requires a token" in refused.stderr
        assert run(*srv, "--token", admin, "ingest", str(data)).exit_code == 0

        reader = run(*srv, "--token", admin, "token", "create", "--scope", "read")
        read_secret = reader.stdout.strip()
        forbidden = run(*srv, "--token", read_secret, "status")
        assert forbidden.exit_code == 2 and "this needs 'admin'" in forbidden.stderr
        readable = run(*srv, "--token", read_secret, *REPORT_ARGS, "--format", "json")
        assert readable.exit_code == 0
        assert _active_teams(json.loads(readable.stdout), MONDAY) == 2

        listed = run(*srv, "--token", admin, "token", "list")
        assert listed.exit_code == 0 and "ops" in listed.stdout and "read" in listed.stdout
        read_id = read_secret.removeprefix("hl_").split("_", 1)[0]
        revoked = run(*srv, "--token", admin, "token", "revoke", read_id)
        assert revoked.exit_code == 0 and f"revoked token {read_id}" in revoked.stdout
        gone = run(*srv, "--token", read_secret, *REPORT_ARGS, "--format", "json")
        assert gone.exit_code == 2 and "unknown or revoked" in gone.stderr
