"""`heatlens impact` end to end: records in, adoption found, the panel pulled through the engine,
the verdict out — locally, through a running server, and on the demo organisation.

The hand-made organisation (months January–June 2026), with every answer known by hand:

- every team owns one service and deploys it once a month (the 10th, noon), shipping one change;
- the change was committed 10 hours before, or 4 hours once the team uses `cd`;
- a1, a2 start using `cd` in March, a3 in April, a4 and a5 in May (all use `ci` from January);
- n1, n2 never use `cd`;
- x1's first usage ever is of `cd`, in March: it may have adopted before its history, excluded;
- x2 uses `cd` from January, the panel's first month: no "before", excluded.

So every post-adoption group-time effect is (4 − 10) − (10 − 10) = −6 h, every pre-adoption one 0,
and with no noise every resample gives the same: the interval is exactly −6 h to −6 h.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.serve_process import serving

MONTHS = [date(2026, m, 1) for m in range(1, 7)]
ADOPT = {"a1": 3, "a2": 3, "a3": 4, "a4": 5, "a5": 5, "x1": 3, "x2": 1}
TEAMS = ["a1", "a2", "a3", "a4", "a5", "n1", "n2", "x1", "x2"]
RANGE = ("--from", "2026-01-01", "--to", "2026-07-01", "--grain", "month")


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _records() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for team in TEAMS:
        out.append({"type": "team", "id": team})
        out.append({"type": "service", "id": f"s-{team}", "team": team})
        adopted = ADOPT.get(team, 99)
        for month in MONTHS:
            m = month.month
            if team != "x1" or m >= 3:
                out.append(_use(f"ci-{team}-{m}", month, team, "ci"))
            if m >= adopted:
                out.append(_use(f"cd-{team}-{m}", month, team, "cd"))
            deployed = datetime(2026, m, 10, 12, tzinfo=UTC)
            lead = 4 if m >= adopted else 10
            sha = f"c-{team}-{m}"
            out.append(
                {
                    "type": "change",
                    "id": sha,
                    "service": f"s-{team}",
                    "committed_at": _iso(deployed - timedelta(hours=lead)),
                }
            )
            out.append(
                {
                    "type": "deployment",
                    "id": f"d-{team}-{m}",
                    "service": f"s-{team}",
                    "environment": "production",
                    "result": "success",
                    "finished_at": _iso(deployed),
                    "commit_sha": sha,
                    "commits": [sha],
                }
            )
    return out


def _use(rid: str, month: date, team: str, capability: str) -> dict[str, Any]:
    return {
        "type": "usage",
        "id": rid,
        "ts": f"{month.isoformat()}T09:00:00Z",
        "capability": capability,
        "team": team,
        "outcome": "success",
    }


@pytest.fixture
def org_store(run: Cli, tmp_path: Path) -> str:
    data = tmp_path / "org.ndjson"
    data.write_text("".join(json.dumps(r) + "\n" for r in _records()), encoding="utf-8")
    store = f"duckdb:///{tmp_path / 'store.duckdb'}"
    result = run("--store", store, "ingest", str(data))
    assert result.exit_code == 0, result.stderr
    return store


def _assert_known_answers(doc: dict[str, Any]) -> None:
    assert doc["schema"] == "heatlens.impact/v1"
    assert (doc["capability"], doc["metric"], doc["grain"]) == ("cd", "dora.lead_time_p50", "month")
    assert (doc["adopters"], doc["never_adopters"], doc["excluded"]) == (5, 2, 2)
    assert doc["estimate"] == pytest.approx(-6.0)
    assert doc["ci"] == pytest.approx([-6.0, -6.0])
    assert doc["verdict"] == (
        "lead time fell by about 6.0 h (95 % interval 6.0 h–6.0 h) after teams adopted cd — better"
    )
    assert doc["pre_trend"]["estimate"] == pytest.approx(0.0)
    assert doc["pre_trend"]["warning"] is None
    # March, April, May are periods 2, 3, 4 of 0–5: pre-trend cells t = 1 … g − 1 (k from
    # 1 − 4 = −3 for May), post cells t = g … 5 (k up to 5 − 2 = 3 for March)
    curve = {p["k"]: p["estimate"] for p in doc["by_period_since_adoption"]}
    assert curve == pytest.approx({-3: 0.0, -2: 0.0, -1: 0.0, 0: -6.0, 1: -6.0, 2: -6.0, 3: -6.0})
    # naive: adopters after 4 h, before 10 h, never adopters 10 h
    assert doc["naive"]["before_after"]["estimate"] == pytest.approx(-6.0)
    assert doc["naive"]["adopters_vs_not"]["estimate"] == pytest.approx(-6.0)


def test_impact_finds_the_planted_effect_and_counts_the_excluded(run: Cli, org_store: str) -> None:
    result = run(
        "--store",
        org_store,
        "impact",
        "--capability",
        "cd",
        "--metric",
        "dora.lead_time_p50",
        *RANGE,
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    _assert_known_answers(json.loads(result.stdout))


def test_the_table_says_the_verdict_beside_the_naive_contrasts(run: Cli, org_store: str) -> None:
    result = run(
        "--store",
        org_store,
        "impact",
        "--capability",
        "cd",
        "--metric",
        "dora.lead_time_p50",
        *RANGE,
    )
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "lead time fell by about 6.0 h (95 % interval 6.0 h–6.0 h)" in text
    assert "naive: adopters after vs before" in text and "5 adopting, 2 not adopting" in text
    assert "●" in text  # the event-study chart


def test_repeated_metrics_give_an_array(run: Cli, org_store: str) -> None:
    result = run(
        "--store",
        org_store,
        "impact",
        "--capability",
        "cd",
        "--metric",
        "dora.lead_time_p50",
        "--metric",
        "dora.deployments",
        *RANGE,
        "--format",
        "json",
    )
    docs = json.loads(result.stdout)
    # in catalog order
    assert [d["metric"] for d in docs] == ["dora.deployments", "dora.lead_time_p50"]
    # one deployment a month everywhere: deployments never moved
    assert docs[0]["estimate"] == pytest.approx(0.0)
    assert docs[0]["verdict"] == (
        "no detectable effect of adopting cd on deployments (95 % interval 0 to 0)"
    )


def test_too_few_adopters_is_not_enough_data(run: Cli, org_store: str) -> None:
    # up to May only: a4 and a5 adopt after the range and count as not adopting
    result = run(
        "--store",
        org_store,
        "impact",
        "--capability",
        "cd",
        "--metric",
        "dora.lead_time_p50",
        "--from",
        "2026-01-01",
        "--to",
        "2026-05-01",
        "--grain",
        "month",
        "--format",
        "json",
    )
    doc = json.loads(result.stdout)
    assert (doc["adopters"], doc["never_adopters"]) == (3, 4)
    assert doc["verdict"] == "not enough data: 3 adopting teams (at least 5 needed)"


def test_mistakes_are_one_line(run: Cli, org_store: str) -> None:
    result = run("--store", org_store, "impact", "--capability", "nope", *RANGE)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --capability 'nope': no usage of it is stored (capabilities with usage: cd, ci)"
    )
    result = run("--store", org_store, "impact", "--capability", "cd", "--metric", "happiness")
    assert result.exit_code == 2 and "impact needs a metric computed per team" in result.stderr


def test_impact_through_the_server(run: Cli, org_store: str, tmp_path: Path) -> None:
    with serving(org_store, tmp_path) as server:
        result = run(
            "--server",
            server.url,
            "impact",
            "--capability",
            "cd",
            "--metric",
            "dora.lead_time_p50",
            *RANGE,
            "--format",
            "json",
        )
    assert result.exit_code == 0, result.stderr
    _assert_known_answers(json.loads(result.stdout))


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from heatlens.application import LocalApplication
    from heatlens.demo import OrgSpec, generate
    from heatlens.ingest import ingest_arrow
    from heatlens.settings import Settings

    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    settings = Settings(store=str(path))
    app = LocalApplication(settings, clock=lambda: datetime(2026, 12, 6, tzinfo=UTC))
    tables = generate(OrgSpec(end=date(2026, 12, 1), seed=7))
    app.access.write(lambda store: ingest_arrow(store, tables, settings, source="demo"))
    yield app
    app.close()


def _planted_lead_time_effect(app: Any, doc: dict[str, Any]) -> float:
    """The demo's planted effect in hours, computed from its own numbers: `cd` multiplies a
    team's median lead time by CD_EFFECT (0.3), so in a month fully after adoption the lead time
    without `cd` would have been observed ÷ 0.3, and the effect there is observed × (1 − 1/0.3).
    Averaged over adopting teams' months after their adoption month, from the report by team."""
    from heatlens.demo.delivery import CD_EFFECT
    from heatlens.metrics import Request

    def adoption(store: Any) -> dict[str, date]:
        usage = store.table("usage")
        cd = usage.filter(usage.capability == "cd").group_by("team").aggregate(at=usage.ts.min())
        got = cd.to_pyarrow()
        return {
            t: date(at.year, at.month, 1)
            for t, at in zip(
                got.column("team").to_pylist(), got.column("at").to_pylist(), strict=True
            )
        }

    first = app.read(adoption)
    report = app.report(
        Request(
            "month",
            date.fromisoformat(doc["from"]),
            date.fromisoformat(doc["to"]),
            ("team",),
            ("dora.lead_time_p50",),
        )
    ).report
    after = [
        r.value
        for r in report.rows
        if r.value is not None
        and r.complete
        and r.segment["team"] in first
        and r.period > first[r.segment["team"]]
    ]
    return sum(v * (1 - 1 / CD_EFFECT[1]) for v in after) / len(after)


def test_the_demo_planted_cd_effect_is_found_and_the_trend_not_mistaken_for_it(
    demo_app: Any,
) -> None:
    lead, cfr = demo_app.impact(
        "cd", ("dora.lead_time_p50", "dora.change_failure_rate"), grain="month"
    )
    truth = _planted_lead_time_effect(demo_app, lead)
    assert truth < -20  # a clear planted effect, in hours
    assert lead["ci"][1] < 0 and lead["verdict"].startswith("lead time fell by about")
    # the effect from one month after adoption on (the adoption month is only partly adopted)
    later = [p["estimate"] for p in lead["by_period_since_adoption"] if p["k"] >= 1]
    assert sum(later) / len(later) == pytest.approx(truth, rel=0.25)
    # the naive before/after also takes the organisation's own improvement for the effect
    assert lead["naive"]["before_after"]["estimate"] < lead["estimate"]
    assert cfr["ci"][1] < 0 and cfr["verdict"].startswith("change failure rate fell")
    assert cfr["naive"]["before_after"]["estimate"] < cfr["estimate"]


def test_the_demo_trend_alone_is_no_effect(demo_app: Any) -> None:
    # preview environments do nothing to lead time in the demo, but teams adopted them while
    # the whole organisation improved: the naive before/after sees an effect, the estimate none
    [doc] = demo_app.impact("preview-envs", ("dora.lead_time_p50",), grain="month")
    assert doc["adopters"] >= 5
    assert doc["ci"][0] <= 0 <= doc["ci"][1]
    assert doc["verdict"].startswith("no detectable effect of adopting preview-envs")
    before_after = doc["naive"]["before_after"]
    assert before_after["ci"][1] < 0


def test_the_dashboard_page_judges_every_capability_and_dora_key(org_store: str) -> None:
    import html
    import re

    import altair as alt
    import jsonschema
    from fastapi.testclient import TestClient

    from heatlens.settings import load_settings
    from heatlens.web import create_app

    with TestClient(create_app(load_settings(config=None, environ={}), org_store)) as client:
        page = client.get("/impact?grain=month&from=2026-01-01&to=2026-07-01")
        overview = client.get("/?grain=month&to=2026-07-01")
    assert page.status_code == 200
    assert 'href="/impact"' in overview.text  # linked from the navigation
    text = " ".join(
        html.unescape(re.sub(r"<script.*?</script>|<[^>]+>", " ", page.text, flags=re.S)).split()
    )
    assert "Is the platform helping?" in text
    # ci: every team but x1 used it from January, and x1 is excluded: nobody to judge
    assert re.search(r"ci not enough data 0 adopting", text)
    # cd on lead time: −6 h, better; cd is shown in detail (the first with an effect)
    assert "−6.0 h better −6.0 h to −6.0 h" in text
    assert "cd in detail" in text
    assert (
        "lead time fell by about 6.0 h (95 % interval 6.0 h–6.0 h) after teams adopted cd" in text
    )
    assert "Parallel trends" in text and "No anticipation" in text
    specs = {
        cid: json.loads(body)
        for cid, body in re.findall(
            r'<script type="application/json" id="([^"]+)">(.*?)</script>', page.text, re.S
        )
    }
    chart = specs["chart-impact-impact-dora-lead_time_p50"]
    schema = alt.vegalite.v6.schema.core.load_schema()
    jsonschema.validators.validator_for(schema)(schema).validate(chart)
    rows = [v for layer in chart["layer"] for v in layer.get("data", {}).get("values", [])]
    rows += [v for values in chart.get("datasets", {}).values() for v in values]
    drawn = {(v["k"], v["value"]) for v in rows if "k" in v}
    assert drawn == {(-3, 0.0), (-2, 0.0), (-1, 0.0), (0, -6.0), (1, -6.0), (2, -6.0), (3, -6.0)}


def test_min_uses_sets_what_counts_as_adopting(run: Cli, org_store: str) -> None:
    # every team uses cd once a month: asking for two uses in a month, nobody ever adopts
    result = run(
        "--store", org_store, "impact", "--capability", "cd", "--metric", "dora.lead_time_p50",
        *RANGE, "--min-uses", "2", "--format", "json",
    )  # fmt: skip
    doc = json.loads(result.stdout)
    assert (doc["adopters"], doc["never_adopters"], doc["excluded"]) == (0, 9, 0)
    assert doc["verdict"] == "not enough data: 0 adopting teams (at least 5 needed)"
