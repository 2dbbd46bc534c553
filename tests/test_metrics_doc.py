"""docs/metrics.md is generated from the catalog, current, and complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from heatlens.docs import GENERATED
from heatlens.metrics.catalog import DIMENSION_TITLES, DIMENSIONS, KEYS, METRICS, Metric
from heatlens.report.metrics_doc import metrics_page

PAGE = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


def test_committed_page_is_current() -> None:
    assert PAGE.read_text(encoding="utf-8") == metrics_page(), (
        "docs/metrics.md is stale: run `python -m heatlens.docs`"
    )


def test_page_says_it_is_generated() -> None:
    assert metrics_page().splitlines()[:3] == ["# Metrics", "", GENERATED]


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.id)
def test_every_catalog_metric_has_its_row(metric: Metric) -> None:
    better = {"up": "higher", "down": "lower"}.get(metric.direction, "—")
    keys = ", ".join(f"`{k}`" for k in KEYS if k in metric.keys)
    row = f"| `{metric.id}` | {metric.unit} | {better} | {keys} | {metric.description} |"
    assert row in metrics_page().splitlines()


def test_dimensions_appear_in_catalog_order_with_lead_time_under_efficiency() -> None:
    page = metrics_page()
    positions = [page.index(f"\n## {DIMENSION_TITLES[d]}\n") for d in DIMENSIONS]
    assert positions == sorted(positions)
    efficiency = page.split("\n## Efficiency\n")[1].split("\n## Happiness\n")[0]
    assert "`dora.lead_time_p50` and `dora.lead_time_p90` (under DORA) are also shown here." in (
        efficiency
    )


def test_tier_tables_match_the_design() -> None:
    lines = metrics_page().splitlines()
    y2023, y2021 = (
        lines.index("**2023** (default):"),
        lines.index("**2021** (DevLake's monotone reading of the report):"),
    )
    assert lines[y2023 + 5 : y2023 + 9] == [
        "| lead time | < 24 h | < 7 d | < 30 d | otherwise |",
        "| change failure rate | ≤ 5 % | ≤ 10 % | ≤ 15 % | otherwise |",
        "| recovery time | < 1 h | < 24 h | < 7 d | otherwise |",
        "",
    ]
    assert lines[y2021 + 5 : y2021 + 8] == [
        "| lead time | < 1 h | < 7 d | < 182 d | otherwise |",
        "| change failure rate | ≤ 15 % | ≤ 20 % | ≤ 30 % | otherwise |",
        "| time to restore | < 1 h | < 24 h | < 7 d | otherwise |",
    ]
    assert "≥ 1/30 per day (monthly) | ≥ 1/182 per day |" in lines[y2021 + 4]


def test_peers_section_names_the_settings_that_reproduce_them() -> None:
    peers = metrics_page().split("## How the peers define these")[1]
    four_keys, rest = peers.split("### Apache DevLake")
    devlake, middleware = rest.split("### Middleware")
    assert "`root cause: <sha>`" in four_keys and "BigQuery" in four_keys
    assert "Daily" in four_keys and "Weekly" in four_keys
    assert '**In heatlens:** `definitions = "devlake"`.' in devlake
    assert '**In heatlens:** `definitions = "fourkeys"`' in four_keys
    assert "`sorted[floor((n−1)q)]`" in devlake
    assert "DORA only" in middleware and 'incident_link_window = "unbounded"' in middleware


def test_presets_table_shows_what_each_preset_sets() -> None:
    presets = metrics_page().split("## Presets: `definitions`")[1]
    assert "| setting | `heatlens` | `devlake` | `fourkeys` |" in presets
    assert '| `incident_link_window` | `"7d"` | `"unbounded"` | `"0m"` |' in presets
    assert "| `failure_from_remediation` | `true` | `false` | `false` |" in presets
    assert '| `quantile` | `"linear"` | `"lower"` | `"linear"` |' in presets


def test_incident_link_rules_are_stated_in_order() -> None:
    page = metrics_page()
    link = page.split("## Incident → deployment link")[1].split("## DORA tiers")[0]
    assert link.index("1. `deployment_id`") < link.index("2. `root_cause_sha`") < link.index("3. ")
    assert '(default `7d`; `"unbounded"` is\n   DevLake\'s rule)' in link
