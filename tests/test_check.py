"""`heatlens check`: targets judged on the last complete period, tensions, exit codes — locally and
through a running server. The organisation is built so every answer is known by hand:

20 teams. September 2026: teams t00–t09 use `ci`, every run succeeds. October 2026: all 20 teams
use `ci`, every run fails. So on 2026-11-01 the last complete month is October: team adoption rate
20/20 = 1.0 (September 10/20 = 0.5), task success 0/40 = 0.0 (September 20/20 = 1.0) — adoption
significantly better while task success is significantly worse: a tension.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import Cli
from tests.serve_process import serving

TEAMS = [f"t{i:02d}" for i in range(20)]
TARGETS = """
[[targets]]
metric = "adoption.team_adoption_rate"
segment = { capability = "ci" }
op = ">="
value = 0.8

[[targets]]
metric = "task.success_rate"
segment = { capability = "ci" }
op = ">="
value = 0.9

[[targets]]
metric = "task.success_rate"
segment = { capability = "ci" }
op = ">="
value = 0.9
due = 2027-01-01

[[targets]]
metric = "happiness.csat"
segment = { capability = "ci" }
op = ">="
value = 0.5
"""


def _records() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"type": "team", "id": t, "name": t} for t in TEAMS]
    for i, team in enumerate(TEAMS):
        for run in range(2):
            if i < 10:
                out.append(
                    _use(f"sep-{team}-{run}", f"2026-09-{10 + run:02d}T10:00:00Z", team, True)
                )
            out.append(_use(f"oct-{team}-{run}", f"2026-10-{10 + run:02d}T10:00:00Z", team, False))
    return out


def _use(rid: str, ts: str, team: str, ok: bool) -> dict[str, Any]:
    outcome = "success" if ok else "failure"
    return {
        "type": "usage",
        "id": rid,
        "ts": ts,
        "capability": "ci",
        "team": team,
        "outcome": outcome,
    }


def _setup(run: Cli, tmp_path: Path) -> str:
    (tmp_path / "heatlens.toml").write_text(TARGETS, encoding="utf-8")
    data = tmp_path / "org.ndjson"
    data.write_text("".join(json.dumps(r) + "\n" for r in _records()), encoding="utf-8")
    store = f"duckdb:///{tmp_path / 'store.duckdb'}"
    assert run("--store", store, "ingest", str(data)).exit_code == 0
    return store


def _assert_known_answers(doc: dict[str, Any]) -> None:
    assert doc["schema"] == "heatlens.check/v1" and doc["as_of"] == "2026-11-01"
    got = [(t["metric"], t["period"], t["actual"], t["status"]) for t in doc["targets"]]
    assert got == [
        ("adoption.team_adoption_rate", "2026-10-01", 1.0, "met"),
        ("task.success_rate", "2026-10-01", 0.0, "missed"),
        ("task.success_rate", "2026-10-01", 0.0, "not_due"),
        ("happiness.csat", "2026-10-01", None, "no_data"),
    ]
    # ci is the only capability, so the organisation as a whole shows the same tension
    assert doc["tensions"] == [
        {
            "capability": None,
            "scope": "organisation",
            "period": "2026-10-01",
            "previous": "2026-09-01",
            "better": ["adoption.team_adoption_rate"],
            "worse": ["task.success_rate"],
        },
        {
            "capability": "ci",
            "scope": "capability",
            "period": "2026-10-01",
            "previous": "2026-09-01",
            "better": ["adoption.team_adoption_rate"],
            "worse": ["task.success_rate"],
        },
    ]


def test_check_judges_targets_and_finds_the_tension(run: Cli, tmp_path: Path) -> None:
    store = _setup(run, tmp_path)
    result = run("--store", store, "check", "--as-of", "2026-11-01", "--format", "json")
    assert result.exit_code == 1, result.stderr  # a target is missed
    _assert_known_answers(json.loads(result.stdout))

    table = run("--store", store, "check", "--as-of", "2026-11-01")
    assert table.exit_code == 1
    assert "missed" in table.stdout and "not_due" in table.stdout
    assert "tension ci" in table.stdout


def test_a_complete_period_is_one_that_has_ended(run: Cli, tmp_path: Path) -> None:
    store = _setup(run, tmp_path)
    # on 2026-10-31 October has not ended: September is judged (adoption 0.5 misses 0.8)
    doc = json.loads(
        run("--store", store, "check", "--as-of", "2026-10-31", "--format", "json").stdout
    )
    first = doc["targets"][0]
    assert (first["period"], first["actual"], first["status"]) == ("2026-09-01", 0.5, "missed")


def test_only_met_targets_exit_zero(run: Cli, tmp_path: Path) -> None:
    store = _setup(run, tmp_path)
    (tmp_path / "heatlens.toml").write_text(
        TARGETS.split("[[targets]]")[1].join(["[[targets]]", ""])
    )
    result = run("--store", store, "check", "--as-of", "2026-11-01", "--format", "json")
    assert result.exit_code == 0, result.stdout
    assert [t["status"] for t in json.loads(result.stdout)["targets"]] == ["met"]


def test_a_wrong_target_is_one_line_naming_it(run: Cli, tmp_path: Path) -> None:
    store = _setup(run, tmp_path)
    (tmp_path / "heatlens.toml").write_text(
        TARGETS.replace('op = ">="\nvalue = 0.5', 'op = "=="\nvalue = 0.5')
    )
    result = run("--store", store, "check", "--as-of", "2026-11-01")
    assert result.exit_code == 2
    assert "targets[3].op '==': expected one of >=, >, <=, <" in result.stderr
    (tmp_path / "heatlens.toml").write_text(
        '[[targets]]\nmetric = "dora.lead_time_p50"\nsegment = { capability = "ci" }\n'
        'op = "<"\nvalue = 24\n'
    )
    result = run("--store", store, "check")
    assert result.exit_code == 2 and "targets[0].segment.capability" in result.stderr


def test_check_through_the_server_uses_the_servers_targets(run: Cli, tmp_path: Path) -> None:
    store = _setup(run, tmp_path)
    with serving(store, tmp_path) as server:
        result = run("--server", server.url, "check", "--as-of", "2026-11-01", "--format", "json")
    assert result.exit_code == 1, result.stderr
    _assert_known_answers(json.loads(result.stdout))
