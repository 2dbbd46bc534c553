"""Dashboard pages and the HTML report in-process, on a small organisation whose numbers are
worked out by hand below: each page shows the engine's values, filters live in the URL, every
number links to its explanation, empty states say what to send, and a suppressed team's survey
answer appears nowhere."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import altair as alt
import jsonschema
import pytest
from fastapi.testclient import TestClient

from heatlens.ingest import ingest_records
from heatlens.metrics import Request
from heatlens.report.html.export import render_html, report_policy
from heatlens.report.html.pages import STATIC
from heatlens.settings import Settings, load_settings
from heatlens.store import Store
from heatlens.web import create_app
from heatlens.web.app import CONTENT_SECURITY_POLICY
from tests.conftest import record

RANGE = "from=2026-01-01&to=2026-04-01"
CSAT = {"alpha": [5, 5, 4, 4, 4, 2], "beta": [5, 4, 2, 2, 1], "tiny": [5, 1, 1, 2]}


def _usage(i: int, ts: str, team: str, outcome: str, action: str = "build") -> dict[str, Any]:
    return record(
        "usage",
        id=f"u{i}",
        ts=ts,
        capability="ci",
        team=team,
        outcome=outcome,
        action=action,
        duration_s=60.0 * (i + 1),
    )


def organisation() -> list[dict[str, Any]]:
    """Three teams; `ci` used by alpha in February, by alpha and beta in March.

    By hand, March (month): adoption 2 of 3 teams = 66.7 %; attempts 5, success 3 = 60.0 %,
    failure 1 = 20.0 %, error 1 = 20.0 %. February: adoption 1 of 3 = 33.3 %, success 100 %.
    Deployments of alpha's service in March: d1 (linked incident), d2 → CFR 1 of 2 = 50.0 %.
    CSAT (top-2-box) by team: alpha 5/6 = 83.3 %, beta 2/5 = 40 %, tiny 1/4 = 25 %; k = 5, so
    tiny (4 respondents) is suppressed, and beta with it (the smallest visible segment).
    """
    records = [record("team", id=t) for t in ("alpha", "beta", "tiny")]
    records += [
        record("capability", id="ci", launched_at="2026-01-01T00:00:00Z"),
        record("service", id="api", team="alpha"),
    ]
    usage = [
        ("2026-02-03T10:00:00Z", "alpha", "success", "build"),
        ("2026-02-10T10:00:00Z", "alpha", "success", "build"),
        ("2026-03-02T10:00:00Z", "alpha", "success", "build"),
        ("2026-03-09T10:00:00Z", "alpha", "success", "build"),
        ("2026-03-10T10:00:00Z", "alpha", "success", "test"),
        ("2026-03-16T10:00:00Z", "alpha", "failure", "test"),
        ("2026-03-17T10:00:00Z", "beta", "error", "deploy"),
    ]
    records += [_usage(i, *u) for i, u in enumerate(usage)]
    records += [
        record(
            "deployment",
            id="d1",
            service="api",
            finished_at="2026-03-05T12:00:00Z",
            commit_sha="c1",
        ),
        record(
            "deployment",
            id="d2",
            service="api",
            finished_at="2026-03-20T12:00:00Z",
            commit_sha="c2",
        ),
        record("change", id="c1", committed_at="2026-03-04T12:00:00Z", service="api"),
        record("change", id="c2", committed_at="2026-03-19T12:00:00Z", service="api"),
        record(
            "incident",
            id="i1",
            opened_at="2026-03-06T09:00:00Z",
            resolved_at="2026-03-06T11:00:00Z",
            deployment_id="d1",
            service="api",
        ),
        record(
            "survey",
            id="pulse",
            opens_at="2026-03-02T00:00:00Z",
            k=5,
            questions=[{"id": "q1", "kind": "csat", "text": "Happy with CI?", "capability": "ci"}],
        ),
    ]
    n = 0
    for team, scores in CSAT.items():
        for score in scores:
            n += 1
            records.append(
                record(
                    "survey_response",
                    id=f"r{n}",
                    survey="pulse",
                    question="q1",
                    kind="csat",
                    respondent=f"p{n}",
                    ts="2026-03-03T10:00:00Z",
                    score=score,
                    team=team,
                    capability="ci",
                )
            )
    return records


REPORT_REQUEST = Request("month", date(2026, 1, 1), date(2026, 4, 1))


@dataclass(frozen=True)
class Org:
    url: str
    copy: str  # the same store, for the report (the app holds the first file)


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Org:
    settings = load_settings(config=None, environ={})
    root = tmp_path_factory.mktemp("dash")
    with Store.open(str(root / "dash.duckdb")) as store:
        ingest_records(store, organisation(), settings, source="file:org.ndjson")
        refused = SimpleNamespace(
            location="line 3", type="usage", field="ts", value="soon", message="not a timestamp"
        )
        store.log_ingest_errors("file:bad.ndjson", [refused])
        store.save_sync_state("github:acme/api", {}, at=datetime(2026, 3, 30, 8, tzinfo=UTC))
    shutil.copy(root / "dash.duckdb", root / "copy.duckdb")
    return Org(f"duckdb:///{root / 'dash.duckdb'}", f"duckdb:///{root / 'copy.duckdb'}")


@pytest.fixture(scope="module")
def report(org: Org) -> str:
    """The HTML report of January to March."""
    with Store.open(org.copy) as store:
        return render_html(store, load_settings(config=None, environ={}), REPORT_REQUEST)


@pytest.fixture(scope="module")
def client(org: Org) -> Iterator[TestClient]:
    """One app for the read-only tests: pages asked twice come from its cache."""
    settings = load_settings(config=None, environ={})
    with TestClient(create_app(settings, org.url)) as c:
        yield c


def text_of(page: str) -> str:
    """What a person reads: the page without tags, scripts or chart data."""
    page = re.sub(r"<script.*?</script>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_overview_shows_the_scorecard_and_dora_of_the_period(client: TestClient) -> None:
    r = client.get("/?grain=month&to=2026-04-01")
    assert r.status_code == 200
    text = " ".join(text_of(r.text).split())
    assert "month starting 2026-03-01, against 2026-02-01" in text
    assert "66.7%" in text and "n=3" in text  # adoption: 2 of 3 teams
    assert "60.0%" in text and "n=5" in text  # task success: 3 of 5 attempts
    assert "▲ 33.3 pp" in text  # adoption 33.3 % → 66.7 %
    assert "50.0%" in text  # change failure rate: 1 of 2 deployments
    # the portfolio places ci at adoption 2/3 and CSAT 8/15 (alpha, beta, tiny pooled)
    spec = _specs(r.text)["chart-overview-portfolio"]
    dots = [v for v in _data(spec) if "capability" in v]
    assert dots[0]["adoption"] == pytest.approx(2 / 3)
    assert dots[0]["csat"] == pytest.approx(8 / 15)


def _specs(page: str) -> dict[str, Any]:
    blocks = re.findall(r'<script type="application/json" id="([^"]+)">(.*?)</script>', page, re.S)
    return {cid: json.loads(body) for cid, body in blocks}


def _data(spec: Any) -> list[dict[str, Any]]:
    """Every inline data row of a spec, wherever Altair put it."""
    if isinstance(spec, list):
        return [row for item in spec for row in _data(item)]
    if not isinstance(spec, dict):
        return []
    rows = list(spec["values"]) if isinstance(spec.get("values"), list) else []
    for key, value in spec.items():
        if key != "values":
            rows += _data(value)
    return rows


def test_filters_live_in_the_url_and_change_the_numbers(client: TestClient) -> None:
    month = text_of(client.get(f"/capabilities/ci?grain=month&{RANGE}").text)
    week = text_of(client.get(f"/capabilities/ci?grain=week&{RANGE}").text)
    # by month, March has 5 attempts; by week, no week has more than 2
    assert re.search(r"2026-03-01\s+2\s+66\.7%", month)
    assert "2026-03-09" in week and "2026-03-09" not in month
    team = client.get(f"/capabilities/ci?grain=month&{RANGE}&team=beta")
    # beta alone: one attempt in March, an error
    assert 'option value="beta" selected' in team.text
    assert re.search(r"2026-03-01\s+1\s+100\.0%\s+1\s+—\s+1\s+0\.0%", text_of(team.text))


def test_every_number_links_to_its_explanation(client: TestClient) -> None:
    page = client.get(f"/dora?grain=month&{RANGE}").text
    links = [html.unescape(h) for h in re.findall(r'href="(/explain\?[^"]+)"', page)]
    cfr = next(
        h
        for h in links
        if parse_qs(urlsplit(h).query)
        == {
            "metric": ["dora.change_failure_rate"],
            "period": ["2026-03-01"],
            "grain": ["month"],
            "segment": ["team=alpha"],
        }
    )
    r = client.get(cfr)
    assert r.status_code == 200
    text = text_of(r.text)
    assert "50.0%" in text
    # the deployments counted, d1 with its linked incident
    assert "d1" in text and "d2" in text and "i1" in text


def test_actions_that_fail_most_come_first(client: TestClient) -> None:
    text = " ".join(text_of(client.get(f"/capabilities/ci?grain=month&{RANGE}").text).split())
    section = text.split("Actions that fail most", 1)[1].split("Per period", 1)[0]
    # deploy: 1 attempt, 1 error (100 %); test: 2 attempts, 1 failure (50 %); build never fails
    assert section.index("deploy") < section.index("test")
    assert "build" not in section


def test_data_page_counts_records_per_source_and_type(client: TestClient) -> None:
    text = " ".join(text_of(client.get("/data").text).split())
    assert "usage file:org.ndjson 7" in text
    assert "survey_response file:org.ndjson 15" in text
    assert "github:acme/api 2026-03-30 08:00:00" in text  # the last sync
    assert "file:bad.ndjson line 3 usage ts soon not a timestamp" in text  # a refused record


def test_an_empty_store_says_what_to_send(tmp_path: Path, settings: Settings) -> None:
    with TestClient(create_app(settings, f"duckdb:///{tmp_path / 'empty.duckdb'}")) as c:
        for path in ("/", "/dora", "/data", "/capabilities/ci", "/teams/alpha"):
            r = c.get(path)
            assert r.status_code == 200, path
            assert "Nothing to show yet." in r.text, path
            # commands and field names read as code, never as markdown's literal backticks
            assert "`" not in text_of(r.text), path
        assert "heatlens ingest" in c.get("/").text


def test_a_suppressed_team_answer_appears_nowhere(client: TestClient) -> None:
    tiny = CSAT["tiny"]
    hidden = f"{sum(s >= 4 for s in tiny) / len(tiny) * 100:.1f}%"  # 25.0%
    beta = f"{sum(s >= 4 for s in CSAT['beta']) / len(CSAT['beta']) * 100:.1f}%"  # 40.0%
    pages = [
        "/?grain=month&to=2026-04-01",
        f"/capabilities/ci?grain=month&{RANGE}",
        f"/capabilities/ci?grain=week&{RANGE}",
        f"/teams/tiny?grain=month&{RANGE}",
        f"/teams/beta?grain=month&{RANGE}",
        f"/teams/alpha?grain=month&{RANGE}",
        f"/dora?grain=month&{RANGE}",
        "/data",
    ]
    team_page = text_of(client.get(f"/teams/tiny?grain=month&{RANGE}").text)
    assert "suppressed (< 5)" in team_page
    alpha = text_of(client.get(f"/teams/alpha?grain=month&{RANGE}").text)
    assert "83.3%" in alpha  # a team above the threshold is shown
    for path in pages:
        body = client.get(path).text
        assert hidden not in text_of(body), path
        assert beta not in text_of(body), path  # suppressed with it, against subtraction
        assert "0.25," not in body and "0.25}" not in body, path


def test_the_html_report_hides_the_suppressed_team_too(report: str) -> None:
    hidden = f"{sum(s >= 4 for s in CSAT['tiny']) / len(CSAT['tiny']) * 100:.1f}%"
    assert "53.3%" in text_of(report)  # ci's pooled CSAT, 8 of 15, is shown
    assert hidden not in text_of(report)


def test_html_report_is_self_contained(report: str) -> None:
    assert "<script src=" not in report and '<link rel="stylesheet"' not in report
    assert not re.search(r'(src|href)="(https?:)?//', report)
    assert "66.7%" in text_of(report)  # the overview's adoption of ci
    assert 'href="#capabilities-ci"' in report  # capability links are in-page anchors
    assert "/explain?" not in report  # explanations need the server
    assert {"chart-overview-portfolio", "chart-capabilities-ci-teams"} <= set(_specs(report))
    assert report.count("<script>") == 5  # vega, vega-lite, vega-embed, interpreter, ours


def test_chart_specs_are_valid_vega_lite(client: TestClient) -> None:
    schema = alt.vegalite.v6.schema.core.load_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    pages = ["/?grain=month&to=2026-04-01", f"/capabilities/ci?grain=week&{RANGE}"]
    pages.append(f"/teams/alpha?grain=month&{RANGE}")
    specs = {k: v for p in pages for k, v in _specs(client.get(p).text).items()}
    assert len(specs) >= 8
    for cid, spec in specs.items():
        assert spec["$schema"].endswith(f"/vega-lite/{alt.SCHEMA_VERSION}.json"), cid
        validator.validate(spec)


def test_pages_are_cached_until_the_data_version_changes(
    tmp_path: Path, settings: Settings
) -> None:
    url = f"duckdb:///{tmp_path / 'cache.duckdb'}"
    with Store.open(url) as store:
        ingest_records(store, organisation(), settings, source="file:org.ndjson")
    path = f"/capabilities/ci?grain=month&{RANGE}"
    with TestClient(create_app(settings, url)) as c:
        first = c.get(path).text
        assert c.get(path).text == first
        assert len(c.app.state.pages._pages) == 1  # type: ignore[attr-defined]
        more = [_usage(100, "2026-03-25T10:00:00Z", "tiny", "success")]
        posted = c.post("/api/v1/events", json=more)
        assert posted.status_code == 201
        version = posted.json()["data_version"]
        # the previous version's page at once, marked; the new one once built in the background
        stale = c.get(path)
        assert stale.headers["heatlens-stale"] == str(version)
        assert int(stale.headers["heatlens-data-version"]) < version
        assert f"Updating — showing data as of version {version - 1}" in stale.text
        assert re.search(r"2026-03-01\s+2\s+66\.7%", text_of(stale.text))
        for _ in range(100_000):
            fresh = c.get(path)
            if "heatlens-stale" not in fresh.headers:
                break
        assert fresh.headers["heatlens-data-version"] == str(version)
        after = text_of(fresh.text)
    # tiny now uses ci in March too: 3 of 3 teams
    assert re.search(r"2026-03-01\s+3\s+100\.0%", after)
    assert "Updating" not in after


def test_pages_send_a_strict_content_security_policy(client: TestClient) -> None:
    r = client.get("/data")
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert r.headers["x-frame-options"] == "DENY"
    assert "content-security-policy" not in client.get("/healthz").headers
    js = client.get("/static/vendor/vega.min.js")
    assert js.status_code == 200 and js.headers["cache-control"].startswith("public")


def test_vendored_chart_libraries_carry_their_licences() -> None:
    vendor = STATIC / "vendor"
    for lib in ("vega", "vega-lite", "vega-embed", "vega-interpreter"):
        assert "Copyright" in (vendor / f"LICENSE.{lib}").read_text(encoding="utf-8")
    assert f"{alt.SCHEMA_VERSION.lstrip('v')}" in (vendor / "README.md").read_text("utf-8")


def test_bad_filters_get_a_page_saying_what_is_wrong(client: TestClient) -> None:
    r = client.get("/dora?grain=fortnight")
    assert r.status_code == 400
    assert "grain 'fortnight': expected one of" in html.unescape(r.text)
    r = client.get("/explain?metric=dora.deployments&period=soon")
    assert r.status_code == 400 and "expected a date" in r.text
    r = client.get("/explain?metric=dora.deployments&period=0001-01-01")
    assert r.status_code == 400 and "expected a date from 1970-01-01 to 2100-01-01" in r.text
    r = client.get("/explain?metric=dora.deployments&period=2026-03-03&segment=payments")
    assert r.status_code == 400
    assert "segment 'payments': expected KEY=VALUE" in html.unescape(r.text)
    # one request cannot ask for thousands of periods
    r = client.get("/capabilities/ci?grain=day&from=2000-01-01&to=2026-01-01")
    assert r.status_code == 400 and "more than 5,000 periods of a day" in r.text
    assert client.get("/data?grain=day&from=2024-01-01&to=2026-01-01").status_code == 200


def test_targets_show_their_status_beside_the_scorecard(org: Org, client: TestClient) -> None:
    targets = [
        # March: adoption 66.7 % — missed against 80 %, met against 60 %
        {"metric": "adoption.team_adoption_rate", "segment": {"capability": "ci"},
         "op": ">=", "value": 0.8},
        {"metric": "task.success_rate", "segment": {"capability": "ci"}, "op": ">=", "value": 0.6},
    ]  # fmt: skip
    settings = load_settings(config=None, environ={}).model_copy(update={"targets": targets})
    with TestClient(create_app(settings, org.url)) as c:
        text = " ".join(text_of(c.get("/?grain=month&to=2026-04-01").text).split())
    assert "target >= 80.0%: missed" in text
    assert "target >= 60.0%: met" in text


def test_pages_render_on_every_backend(store_url: str, settings: Settings) -> None:
    with Store.open(store_url) as store:
        ingest_records(store, organisation(), settings, source="file:org.ndjson")
    with TestClient(create_app(settings, store_url)) as c:
        data = " ".join(text_of(c.get("/data").text).split())
        page = text_of(c.get(f"/capabilities/ci?grain=month&{RANGE}").text)
    assert "usage file:org.ndjson 7" in data
    assert re.search(r"2026-03-01\s+2\s+66\.7%", page)  # March: 2 of 3 teams


def test_the_report_served_over_http_allows_exactly_its_inline_blocks(report: str) -> None:
    policy = report_policy(report)
    scripts = re.findall(r"<script>(.*?)</script>", report, flags=re.S)
    assert len(scripts) == 5
    for block in [*scripts, *re.findall(r"<style>(.*?)</style>", report, flags=re.S)]:
        digest = base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert "unsafe" not in policy and "default-src 'none'" in policy


def test_the_served_report_carries_its_own_policy(client: TestClient) -> None:
    response = client.get(f"/api/v1/report.html?grain=month&{RANGE}")
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == report_policy(response.text)
