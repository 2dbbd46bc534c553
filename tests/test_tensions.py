"""The organisation-wide row of tensions: every capability pooled, judged like one capability —
in `check`, on the overview and in the HTML report (which holds the overview).

The organisation is built so that no capability has a tension but the organisation does:

20 teams. September 2026: teams t00–t09 use `ci` twice, every run succeeds. October 2026: all 20
teams use `docs` twice, every run fails. Per capability: `ci` adoption falls 10/20 → 0/20 (only
worse) and `docs` has no September to compare with — no tension. The organisation as a whole:
team adoption rate 10/20 = 0.5 → 20/20 = 1.0 (better), task success 20/20 = 1.0 → 0/40 = 0.0
(worse) — a tension.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from heatlens.settings import load_settings
from heatlens.web import create_app
from tests.conftest import Cli

TEAMS = [f"t{i:02d}" for i in range(20)]


def _records() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"type": "team", "id": t} for t in TEAMS]
    for i, team in enumerate(TEAMS):
        for run in range(2):
            if i < 10:
                out.append(_use(f"s-{team}-{run}", f"2026-09-{10 + run}", team, "ci", "success"))
            out.append(_use(f"o-{team}-{run}", f"2026-10-{10 + run}", team, "docs", "failure"))
    return out


def _use(rid: str, day: str, team: str, capability: str, outcome: str) -> dict[str, Any]:
    return {
        "type": "usage",
        "id": rid,
        "ts": f"{day}T10:00:00Z",
        "capability": capability,
        "team": team,
        "outcome": outcome,
    }


def _store(run: Cli, tmp_path: Path) -> str:
    data = tmp_path / "org.ndjson"
    data.write_text("".join(json.dumps(r) + "\n" for r in _records()), encoding="utf-8")
    store = f"duckdb:///{tmp_path / 'store.duckdb'}"
    assert run("--store", store, "ingest", str(data)).exit_code == 0
    return store


def test_the_organisation_has_a_tension_no_capability_has(run: Cli, tmp_path: Path) -> None:
    store = _store(run, tmp_path)
    result = run("--store", store, "check", "--as-of", "2026-11-01", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["tensions"] == [
        {
            "capability": None,
            "scope": "organisation",
            "period": "2026-10-01",
            "previous": "2026-09-01",
            "better": ["adoption.team_adoption_rate"],
            "worse": ["task.success_rate"],
        }
    ]
    table = run("--store", store, "check", "--as-of", "2026-11-01")
    assert "tension overall (all capabilities) (2026-10-01 vs 2026-09-01)" in table.stdout

    with TestClient(create_app(load_settings(config=None, environ={}), store)) as client:
        overview = client.get("/?grain=month&to=2026-11-01").text
        report = client.get("/api/v1/report.html?grain=month&to=2026-11-01").text
    for page in (overview, report):
        text = " ".join(
            html.unescape(re.sub(r"<script.*?</script>|<[^>]+>", " ", page, flags=re.S)).split()
        )
        assert (
            "the organisation as a whole (every capability pooled): better adoption (team "
            "adoption rate); worse task success (success rate)."
        ) in text
        assert "ci:" not in text and "docs:" not in text
