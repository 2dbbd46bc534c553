"""Happiness where decisions are made (issue 14 item 7): the scorecard, the overview and `check`
use the latest survey wave closed by the end of the period judged, say which, and compare it with
the wave before — never a pool of waves, never a wave still open. Worked out by hand:

one team `a` answers CSAT about capability `ci` (k = 3):
- s1 opens 2026-01-10, closes 01-20: scores 5 4 2 1 3 → top-2-box 2/5 = 0.4
- s2 opens 2026-03-05, closes 03-15: scores 5 5 4 4 1 2 → 4/6 ≈ 0.667
- s3 opens 2026-04-25, closes 05-05: scores 5 5 5 → 3/3 = 1.0, still open on 2026-05-01
The scorecard of April 2026 (as of 2026-05-02) shows s2 (0.667, counted in March) against s1.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from heatlens.analysis.scorecard import scorecard
from heatlens.analysis.targets import check
from heatlens.ingest import ingest_records
from heatlens.settings import Settings, load_settings
from heatlens.store import Store
from tests.conftest import record

WAVES = {
    "s1": ("2026-01-10", "2026-01-20", [5, 4, 2, 1, 3]),
    "s2": ("2026-03-05", "2026-03-15", [5, 5, 4, 4, 1, 2]),
    "s3": ("2026-04-25", "2026-05-05", [5, 5, 5]),
}


def records() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [record("team", id="a"), record("capability", id="ci")]
    for sid, (opens, closes, scores) in WAVES.items():
        out.append(
            record(
                "survey",
                id=sid,
                opens_at=f"{opens}T00:00:00Z",
                closes_at=f"{closes}T00:00:00Z",
                k=3,
            )
        )
        for i, score in enumerate(scores):
            out.append(
                record(
                    "survey_response",
                    id=f"{sid}-{i}",
                    survey=sid,
                    question="ci-csat",
                    kind="csat",
                    respondent=f"{sid}-p{i}",
                    ts=f"{opens}T12:00:00Z",
                    score=score,
                    team="a",
                    capability="ci",
                )
            )
    return out


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store.open(str(tmp_path / "w.duckdb"))
    ingest_records(s, records(), Settings(), source="test")
    yield s
    s.close()


def test_the_scorecard_shows_the_latest_closed_wave_against_the_one_before(store: Store) -> None:
    card = scorecard(store, Settings(), grain="month", as_of=datetime(2026, 5, 2, tzinfo=UTC))
    assert card.period == date(2026, 4, 1)
    (ci,) = card.capabilities
    happy = ci.happiness
    assert happy.wave is not None and happy.wave.segment["survey"] == "s2"
    assert happy.wave.period == date(2026, 3, 1)
    assert happy.value == pytest.approx(4 / 6) and happy.n == 6
    assert happy.previous == pytest.approx(2 / 5)
    assert happy.change is not None and happy.change.delta == pytest.approx(4 / 6 - 2 / 5)


def test_once_the_open_wave_closes_it_is_the_one_shown(store: Store) -> None:
    card = scorecard(store, Settings(), grain="month", as_of=datetime(2026, 6, 2, tzinfo=UTC))
    (ci,) = card.capabilities
    assert ci.happiness.wave is not None and ci.happiness.wave.segment["survey"] == "s3"
    assert ci.happiness.value == pytest.approx(1.0)
    assert ci.happiness.previous == pytest.approx(4 / 6)


def test_check_judges_a_happiness_target_on_the_latest_closed_wave(store: Store) -> None:
    target = {
        "metric": "happiness.csat",
        "segment": {"capability": "ci"},
        "op": ">=",
        "value": 0.6,
        "grain": "month",
    }
    settings = load_settings(config=None, environ={}).model_copy(update={"targets": [target]})
    (judged,) = check(store, settings, date(2026, 5, 2)).targets
    assert (judged.survey, judged.period, judged.status) == ("s2", date(2026, 3, 1), "met")
    assert judged.actual == pytest.approx(4 / 6)
