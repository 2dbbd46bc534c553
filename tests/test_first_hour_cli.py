"""The first hour with real data, on the command line (issue 13): a store whose records lie far
from today's range says where they are and the command that shows them — one line that pastes,
locally and through a server; `--grain all` is all history; units everywhere a person reads;
clear messages for a directory given as the store, a bad config value, a bad config entry.

The store holds what `sync git` gives a small library: two releases, 2011-06-08 and 2024-04-16,
each shipping one commit (lead times 168 h and 24 h), and nothing else — no usage, no survey, no
incident. Every range asked for is explicit, so no answer depends on today.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from heatlens.settings import Settings
from heatlens.web import create_app
from tests.conftest import Cli
from tests.serve_process import serving

RECORDS: list[dict[str, Any]] = [
    {"type": "change", "id": "c1", "committed_at": "2011-06-01T10:00:00Z"},
    {"type": "change", "id": "c2", "committed_at": "2024-04-15T10:00:00Z"},
    {
        "type": "deployment",
        "id": "d1",
        "service": "web",
        "finished_at": "2011-06-08T10:00:00Z",
        "commit_sha": "c1",
    },
    {
        "type": "deployment",
        "id": "d2",
        "service": "web",
        "finished_at": "2024-04-16T10:00:00Z",
        "commits": ["c2"],
    },
]
# a range of 2026 that holds none of them
EMPTY_RANGE = ["--grain", "week", "--from", "2026-01-05", "--to", "2026-03-30"]


def _store(run: Cli) -> str:
    data = run.cwd / "history.ndjson"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    store = str(run.cwd / "history.duckdb")
    assert run("--store", store, "ingest", str(data)).exit_code == 0
    return store


def _suggested(text: str) -> list[str]:
    """The arguments of the command a hint suggests (between backticks, after `heatlens`)."""
    found = re.search(r"try `heatlens ([^`]+)`", text)
    assert found, text
    return shlex.split(found[1])


def test_an_empty_range_says_where_the_records_are_in_one_line_that_pastes(run: Cli) -> None:
    store = _store(run)
    result = run("--store", store, "report", *EMPTY_RANGE, "--metric", "dora.lead_time")
    assert result.exit_code == 0, result.stderr  # not an error: the range is just empty
    hint = (
        "no deployments from 2026-01-05 to 2026-03-29; deployments span "
        f"2011-06-08 … 2024-04-16: try `heatlens --store {store} report --metric dora.lead_time "
        "--grain quarter --from 2011-04-01` (or `--grain all` for all history)"
    )
    # one line though longer than the terminal's 80 columns, no zeros, no sparkline, no `demo`
    assert result.stdout.splitlines() == [
        "heatlens report · grain week · 2026-01-05 to 2026-03-30 · UTC",
        hint,
        "Warnings",
        "  ⚠ unknown_services (1): `service` ids named by records with no `service` record "
        "(ingest one to give an owner)",
    ]
    # the suggested command shows both lead times: 168 h in Q2 2011 and 24 h in Q2 2024
    shown = run(*_suggested(result.stdout), "--format", "json")
    assert shown.exit_code == 0, shown.stderr
    rows = json.loads(shown.stdout)["rows"]
    got = {(r["period"], r["value"]) for r in rows if r["metric"] == "dora.lead_time_p50"}
    assert got == {("2011-04-01", 168.0), ("2024-04-01", 24.0)}


def test_every_metric_asked_on_an_empty_range_names_every_record_type(run: Cli) -> None:
    store = _store(run)
    result = run("--store", store, "report", *EMPTY_RANGE, "--by", "service")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[1].startswith(
        "no usage records, deployments, survey responses or incidents from 2026-01-05 to "
        "2026-03-29; deployments span 2011-06-08 … 2024-04-16: try `heatlens "
        f"--store {store} report --by service --grain quarter --from 2011-04-01`"
    )
    assert "0" not in "".join(lines[2:3]) and "▄" not in result.stdout
    for section in ("Adoption", "Task success", "Efficiency", "Happiness", "DORA"):
        assert section not in lines
    markdown = run("--store", store, "report", *EMPTY_RANGE, "--format", "markdown")
    assert "## DORA" not in markdown.stdout
    assert (
        f"try `heatlens --store {store} report --format markdown --grain quarter --from "
        "2011-04-01`" in markdown.stdout
    )


def test_json_keeps_its_rows_adds_coverage_and_says_the_hint_on_stderr(run: Cli) -> None:
    store = _store(run)
    result = run("--store", store, "report", *EMPTY_RANGE, "--metric", "dora", "--format", "json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["schema"] == "heatlens.report/v1"
    assert {r["value"] for r in doc["rows"] if r["metric"] == "dora.deployments"} == {0}
    assert doc["coverage"] == {
        "needed": ["deployment", "incident"],
        "in_range": [],
        "spans": {
            "deployment": {
                "records": 2,
                "first": "2011-06-08T10:00:00Z",
                "last": "2024-04-16T10:00:00Z",
            },
            "change": {
                "records": 2,
                "first": "2011-06-01T10:00:00Z",
                "last": "2024-04-15T10:00:00Z",
            },
        },
        "suggestion": {"grain": "quarter", "from": "2011-04-01"},
    }
    assert "try `heatlens --store" in result.stderr and "--format json" in result.stderr


def test_dimensions_without_records_in_the_range_are_left_out_in_one_line(run: Cli) -> None:
    store = _store(run)
    args = ["report", "--grain", "quarter", "--from", "2024-04-01", "--to", "2024-07-01"]
    result = run("--store", store, *args)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "DORA" in lines and "Efficiency" in lines  # lead times are under both
    assert re.search(r"dora\.deployments\s+│\s+1 │", result.stdout)
    assert re.search(r"dora\.lead_time_p50\s+│\s+24\.0 h │", result.stdout)
    for section in ("Adoption", "Task success", "Happiness"):
        assert section not in lines
    assert (
        "not shown, for want of records from 2024-04-01 to 2024-06-30: Adoption, "
        "Task success, Happiness, dora.open_incidents (no usage records, survey responses or "
        "incidents are stored)"
    ) in lines


def test_grain_all_without_from_is_all_history_on_the_cli_and_the_api(
    run: Cli, settings: Settings
) -> None:
    store = _store(run)
    result = run(
        "--store",
        store,
        "report",
        "--grain",
        "all",
        "--metric",
        "dora.deployments",
        "--format",
        "json",
    )
    doc = json.loads(result.stdout)
    # from the day of the earliest stored record (a commit), both deployments in the one period
    assert doc["from"] == "2011-06-01" and doc["to"] > "2024-04-16"
    assert [(r["period"], r["value"]) for r in doc["rows"]] == [("2011-06-01", 2)]
    with TestClient(create_app(settings, f"duckdb:///{store}")) as client:
        answer = client.get(
            "/api/v1/metrics", params={"grain": "all", "metric": "dora.deployments"}
        )
        assert answer.status_code == 200
        api = answer.json()
        assert (api["from"], api["to"]) == (doc["from"], doc["to"])
        assert [(r["period"], r["value"]) for r in api["rows"]] == [("2011-06-01", 2)]
        assert api["coverage"]["in_range"] == ["deployment"]
        # an explicit --from still wins: only the 2024 deployment
        later = client.get(
            "/api/v1/metrics",
            params={"grain": "all", "from": "2020-01-01", "metric": "dora.deployments"},
        ).json()
        assert [(r["period"], r["value"]) for r in later["rows"]] == [("2020-01-01", 1)]


def test_the_same_hint_comes_through_a_server(run: Cli) -> None:
    store = _store(run)
    args = ["report", *EMPTY_RANGE, "--metric", "dora.lead_time"]
    local = run("--store", store, *args)
    with serving(f"duckdb:///{store}", run.cwd) as server:
        remote = run("--server", server.url, *args)
    assert remote.exit_code == 0, remote.stderr
    # the same lines, the command naming the server instead of the store
    assert remote.stdout == local.stdout.replace(f"--store {store}", f"--server {server.url}")
    assert f"try `heatlens --server {server.url} report --metric dora.lead_time --grain" in (
        remote.stdout
    )


def test_a_directory_given_as_the_store_gets_our_message(run: Cli) -> None:
    (run.cwd / "data").mkdir()
    for command in (["status"], ["report"], ["ingest", "-"]):
        result = run("--store", str(run.cwd / "data"), *command, input="")
        assert result.exit_code == 2, command
        # one line, no blank line before it, and not DuckDB's "IO Error"
        assert result.stderr == (
            f"error: store {run.cwd / 'data'} is a directory, not a DuckDB file: give a file "
            f"path such as --store {run.cwd / 'data' / 'heatlens.duckdb'}\n"
        )
    missing = run("--store", str(run.cwd / "nowhere" / "s.duckdb"), "ingest", "-", input="")
    assert missing.stderr == (
        f"error: store {run.cwd / 'nowhere' / 's.duckdb'}: its directory {run.cwd / 'nowhere'} "
        "does not exist (create it, or give another --store)\n"
    )


def test_errors_after_a_progress_bar_have_no_blank_line_before_them(run: Cli) -> None:
    bad = run.cwd / "bad.ndjson"
    bad.write_text('{"type": "usage", "id": "u1"}\n', encoding="utf-8")
    result = run("--store", str(run.cwd / "s.duckdb"), "ingest", str(bad))
    assert result.exit_code == 2
    assert result.stderr.startswith("  ") and "\n\n" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: ")


def test_a_bad_sync_or_target_entry_is_numbered_from_zero(run: Cli) -> None:
    store = _store(run)
    (run.cwd / "heatlens.toml").write_text(
        '[[targets]]\nmetric = "dora.deployments"\nop = ">="\nvalue = 1\n\n'
        '[[targets]]\nmetric = "dora.nothing"\nop = ">="\nvalue = 1\n',
        encoding="utf-8",
    )
    result = run("--store", store, "check")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: targets[1].metric 'dora.nothing': not a metric")


def test_check_prints_targets_and_actuals_in_human_units(run: Cli, tmp_path: Path) -> None:
    from tests.test_check import _setup

    store = _setup(run, tmp_path)
    (tmp_path / "heatlens.toml").write_text(
        '[[targets]]\nmetric = "adoption.team_adoption_rate"\nsegment = { capability = "ci" }\n'
        'op = ">="\nvalue = 0.8\n\n'
        '[[targets]]\nmetric = "dora.lead_time_p50"\nop = "<"\nvalue = 72\n',
        encoding="utf-8",
    )
    result = run("--store", store, "check", "--as-of", "2026-11-01")
    # October: 20 of 20 teams adopted ci; no deployment, so no lead time
    assert re.search(r"capability=ci +>= 80\.0% +month +2026-10-01 +100\.0% +met", result.stdout)
    assert re.search(r" +all +< 3\.0 d +month +2026-10-01 +— +no_data", result.stdout)
    # a markup-looking hint is printed as written
    (tmp_path / "heatlens.toml").write_text("", encoding="utf-8")
    empty = run("--store", store, "check", "--as-of", "2026-11-01")
    assert "add [[targets]] tables to heatlens.toml" in empty.stdout


@pytest.mark.parametrize("name", ["a store in a rather long directory name"])
def test_the_demos_suggested_commands_are_one_line_each(run: Cli, name: str) -> None:
    folder = run.cwd / name
    folder.mkdir()
    path = folder / "demo.duckdb"
    result = run("--store", str(path), "demo", "--no-serve", "--teams", "2", "--days", "7")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    start = lines.index("Use it with any command, e.g.:") + 1
    suggested = lines[start : start + 4]
    assert all(len(line) > 80 for line in suggested)  # longer than the terminal, still whole
    for line, command in zip(
        suggested,
        ["report", "report", "explain", "status"],
        strict=True,
    ):
        words = shlex.split(line)
        assert words[:4] == ["heatlens", "--store", str(path), command]
    status = run(*shlex.split(suggested[-1])[1:])
    assert status.exit_code == 0 and re.search(r"deployment +demo", status.stdout)


def test_a_command_line_mistake_is_one_line_naming_the_help_to_read(run: Cli) -> None:
    result = run("report", "--grain", "year")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: Invalid value for '--grain': 'year' is not one of 'day', 'week', 'month', "
        "'quarter', 'all' (see `heatlens report --help`)\n"
    )
    nested = run("sync", "backstge")
    assert nested.exit_code == 2
    assert nested.stderr == (
        "error: No such command 'backstge'. Did you mean 'backstage'? "
        "(see `heatlens sync --help`)\n"
    )
    bare = run("sync")  # no arguments: the group's help, not a mistake
    assert bare.exit_code == 2 and "sync [OPTIONS] COMMAND [ARGS]" in bare.output
    assert "error:" not in bare.output
