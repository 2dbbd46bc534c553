"""The scorecard and its bootstrap over teams: known answers on small hand-made stores, the
engine's values carried through unchanged, anonymity kept, and the demo organisation end to end."""

from __future__ import annotations

import gc
import io
import random
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console

from heatlens.analysis import (
    Change,
    Scorecard,
    complete_periods,
    quantile_change,
    ratio_change,
    scorecard,
    team_ratios,
)
from heatlens.analysis.scorecard import _durations
from heatlens.demo import OrgSpec, generate
from heatlens.errors import ConfigError
from heatlens.ingest import ingest_arrow, ingest_records
from heatlens.metrics import Request, compute
from heatlens.metrics.periods import periods
from heatlens.report import render_scorecard
from heatlens.settings import Settings, load_settings
from heatlens.store import Store

# March 2026 is the last complete month on 1 April; February is the one before.
AS_OF = datetime(2026, 4, 1, tzinfo=UTC)
FEB, MAR = date(2026, 2, 1), date(2026, 3, 1)
HEAT = (
    "adoption.team_adoption_rate",
    "task.success_rate",
    "efficiency.task_duration_p50",
    "happiness.csat",
)

Records = list[dict[str, Any]]


@pytest.fixture
def settings() -> Settings:
    return load_settings(environ={})


@pytest.fixture
def make_store(tmp_path: Path, settings: Settings) -> Iterator[Callable[[Records], Store]]:
    """Opens a fresh DuckDB store holding `records` (every record must be accepted)."""
    opened: list[Store] = []

    def make(records: Records) -> Store:
        store = Store.open(str(tmp_path / f"s{len(opened)}.duckdb"))
        opened.append(store)
        result = ingest_records(store, records, settings, source="test")
        assert result.rejected == 0, result.problems
        return store

    yield make
    for store in opened:
        store.close()


def runs(
    team: str,
    month: date,
    successes: int,
    failures: int,
    *,
    capability: str = "ci",
    durations: list[float] | None = None,
) -> Records:
    """Usage records of one team in one month: successes (with durations) then failures."""
    out: Records = []
    for i in range(successes + failures):
        success = i < successes
        rec: dict[str, Any] = {
            "type": "usage",
            "id": f"{capability}-{team}-{month:%m}-{i}",
            "ts": f"{month:%Y-%m}-{1 + i % 27:02d}T10:00:00Z",
            "capability": capability,
            "team": team,
            "outcome": "success" if success else "failure",
        }
        if success:
            rec["duration_s"] = durations[i % len(durations)] if durations else 30.0
        out.append(rec)
    return out


def survey(sid: str, opens: str, answers: list[tuple[str, str, int]], k: int = 5) -> Records:
    """A CSAT survey about `ci` and its answers as (respondent, team, score)."""
    question = {"id": "ci-csat", "kind": "csat", "text": "CI?", "capability": "ci"}
    out: Records = [
        {"type": "survey", "id": sid, "opens_at": opens, "k": k, "questions": [question]}
    ]
    for i, (who, team, score) in enumerate(answers):
        out.append(
            {
                "type": "survey_response",
                "id": f"{sid}-{i}",
                "survey": sid,
                "question": "ci-csat",
                "kind": "csat",
                "respondent": who,
                "ts": opens,
                "score": score,
                "team": team,
            }
        )
    return out


def text_of(card: Scorecard) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(render_scorecard(card))
    return console.file.getvalue()  # type: ignore[attr-defined]


def only(card: Scorecard, capability: str = "ci") -> Any:
    return next(c for c in card.capabilities if c.capability == capability)


# -- known answers --------------------------------------------------------------------------------


def known_answers() -> Records:
    """One capability per case, so that one scorecard answers them all."""
    teams = [f"t{i:02d}" for i in range(20)]
    records: Records = []
    # a clear improvement in every team: 50 % → 90 %
    for t in teams:
        records += runs(t, FEB, 5, 5, capability="better") + runs(t, MAR, 9, 1, capability="better")
    # identical per-team numbers in both months, different between teams
    for i, t in enumerate(teams[:12]):
        for month in (FEB, MAR):
            durations = [10.0 * (i + 1), 7.0 + i]
            records += runs(t, month, 3 + i % 6, 4, capability="same", durations=durations)
    # one team from 0 % to 100 %, nineteen unchanged at 80 %
    records += runs("t00", FEB, 0, 10, capability="one") + runs("t00", MAR, 10, 0, capability="one")
    for t in teams[1:]:
        records += runs(t, FEB, 8, 2, capability="one") + runs(t, MAR, 8, 2, capability="one")
    # every team about twice as fast
    for i, t in enumerate(teams[:15]):
        before, after = [600.0 + i, 650.0 + i, 700.0], [300.0 + i, 320.0, 350.0 + i]
        records += runs(t, FEB, 5, 0, capability="faster", durations=before)
        records += runs(t, MAR, 5, 0, capability="faster", durations=after)
    return records


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scorecard]:
    settings = load_settings(environ={})
    with Store.open(str(tmp_path_factory.mktemp("known") / "s.duckdb")) as store:
        result = ingest_records(store, known_answers(), settings, source="test")
        assert result.rejected == 0, result.problems
        yield scorecard(store, settings, as_of=AS_OF)


def test_a_clear_improvement_in_every_team_is_significant(known: Scorecard) -> None:
    assert (known.grain, known.period, known.previous) == ("month", MAR, FEB)
    task = only(known, "better").task_success
    # by hand: 100 of 200 attempts before, 180 of 200 after
    assert (task.value, task.previous, task.n) == (0.9, 0.5, 200)
    assert task.change.delta == pytest.approx(0.4, abs=1e-12)
    assert task.change.ci[0] > 0 and task.change.significant
    # every team used it in both months: adoption 100 % → 100 %, no change
    adoption = only(known, "better").adoption
    assert (adoption.value, adoption.n, adoption.change.delta) == (1.0, 20, 0.0)
    assert not adoption.change.significant


def test_ratio_change_on_per_team_numbers() -> None:
    before = {f"t{i}": (5.0, 10.0) for i in range(20)}
    after = {f"t{i}": (9.0, 10.0) for i in range(20)}
    change = ratio_change(before, after)
    assert isinstance(change, Change)
    assert change.delta == pytest.approx(0.4, abs=1e-12) and change.significant
    # one team: no interval
    alone = ratio_change({"t0": (5.0, 10.0)}, {"t0": (9.0, 10.0)})
    assert alone is not None and alone.delta == pytest.approx(0.4)
    assert (alone.ci, alone.significant) == (None, False)
    # no denominator in one period: the change is undefined
    assert ratio_change({}, after) is None


def test_no_change_is_not_significant(known: Scorecard) -> None:
    same = only(known, "same")
    for cell in (same.task_success, same.efficiency, same.adoption):
        assert cell.value == cell.previous
        # the same teams are drawn in both periods, so every resampled difference is 0
        assert cell.change == Change(0.0, (0.0, 0.0), False)


def test_one_team_changing_among_many_unchanged(known: Scorecard) -> None:
    change = only(known, "one").task_success.change
    # by hand: (19 × 8 + 0) / 200 before, (19 × 8 + 10) / 200 after
    assert change.delta == pytest.approx(162 / 200 - 152 / 200, abs=1e-12)
    low, high = change.ci
    assert low <= change.delta <= high
    assert change.significant == (low > 0 or high < 0)
    # over a third of resamples leave t00 out, a difference of exactly 0, so the lower bound is 0
    assert low == 0.0 and not change.significant


def test_quantile_change_known_answers() -> None:
    before = {f"t{i}": [100.0, 200.0, 300.0] for i in range(20)}
    after = {f"t{i}": [50.0, 100.0, 150.0] for i in range(20)}
    # every resample has the median 200 before and 100 after
    assert quantile_change(before, after) == Change(-100.0, (-100.0, -100.0), True)
    assert quantile_change({"a": [1, 2, 3, 4]}, {"a": [1, 2, 3, 5, 6]}) == Change(0.5, None, False)
    lower = quantile_change({"a": [1, 2, 3, 4]}, {"a": [1, 2, 3, 5, 6]}, method="lower")
    assert lower == Change(1.0, None, False)
    assert quantile_change({"a": []}, after) is None


def test_durations_resampled_by_team(known: Scorecard) -> None:
    efficiency = only(known, "faster").efficiency
    assert efficiency.change.delta == pytest.approx(efficiency.value - efficiency.previous)
    assert efficiency.change.ci[1] < 0 and efficiency.change.significant


# -- the engine's numbers, anonymity, determinism -------------------------------------------------


def organisation(seed: int) -> Records:
    """A small organisation over two months: registry, three capabilities, surveys."""
    rng = random.Random(seed)
    teams = [f"t{i}" for i in range(8)]
    records: Records = [{"type": "team", "id": t} for t in teams]
    records.append({"type": "capability", "id": "ci", "launched_at": "2025-06-01"})
    records.append({"type": "capability", "id": "docs", "eligible": teams[:5]})
    for cap in ("ci", "docs", "flags"):
        for t in teams:
            for month in (FEB, MAR):
                if rng.random() < 0.8:
                    durations = [round(rng.lognormvariate(4, 1), 2) for _ in range(5)]
                    records += runs(
                        t,
                        month,
                        rng.randint(1, 9),
                        rng.randint(0, 4),
                        capability=cap,
                        durations=durations,
                    )
    for sid, opens in (("feb", "2026-02-10T09:00:00Z"), ("mar", "2026-03-10T09:00:00Z")):
        answers = [(f"{sid}-{t}-{j}", t, rng.randint(2, 5)) for t in teams for j in range(6)]
        records += survey(sid, opens, answers)
    return records


@pytest.fixture(scope="module")
def org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Scorecard]]:
    settings = load_settings(environ={})
    with Store.open(str(tmp_path_factory.mktemp("org") / "s.duckdb")) as store:
        result = ingest_records(store, organisation(3), settings, source="test")
        assert result.rejected == 0, result.problems
        yield store, scorecard(store, settings, as_of=AS_OF, seed=11)


def test_values_are_the_engines_capability_rows(
    org: tuple[Store, Scorecard], settings: Settings
) -> None:
    store, card = org
    report = compute(
        store, Request("month", FEB, date(2026, 4, 1), ("capability",), HEAT), settings
    )
    rows = {(r.metric, r.period, r.segment["capability"]): r for r in report.rows}

    assert [c.capability for c in card.capabilities] == ["ci", "docs", "flags"]
    checked = 0
    for score in card.capabilities:
        for cell in score.cells:
            now = rows.get((cell.metric, MAR, score.capability))
            before = rows.get((cell.metric, FEB, score.capability))
            assert (cell.value, cell.n) == ((now.value, now.n) if now else (None, None))
            assert cell.suppressed == bool(now and now.suppressed)
            assert cell.previous == (before.value if before else None)
            if cell.change is not None:
                assert cell.value is not None and cell.previous is not None
                assert cell.change.delta == pytest.approx(cell.value - cell.previous, abs=1e-12)
                checked += 1
    assert checked == 10  # 3 capabilities × 3 usage metrics + CSAT of ci


def test_happiness_interval_uses_visible_teams_only(make_store: Any, settings: Settings) -> None:
    def answers(sid: str, shift: int) -> list[tuple[str, str, int]]:
        six = [
            (f"{sid}-t{i}-{j}", f"t{i}", 5 if (i + j + shift) % 3 else 2)
            for i in range(6)
            for j in range(5)
        ]
        # two respondents, below k = 5: this team's row is suppressed, and one more with it
        return six + [(f"{sid}-small-{j}", "small", 5) for j in range(2)]

    records = survey("feb", "2026-02-10T09:00:00Z", answers("feb", 0))
    records += survey("mar", "2026-03-10T09:00:00Z", answers("mar", 1))
    store = make_store(records)
    happiness = only(scorecard(store, settings, as_of=AS_OF)).happiness

    by_team = compute(
        store,
        Request("month", FEB, date(2026, 4, 1), ("capability", "team"), ("happiness.csat",)),
        settings,
    )
    hidden = {r.segment["team"] for r in by_team.rows if r.suppressed}
    assert "small" in hidden
    visible = {p: team_ratios(r for r in by_team.rows if r.period == p) for p in (FEB, MAR)}
    assert not hidden & set(visible[MAR])
    assert happiness.n == 32 and not happiness.suppressed
    assert happiness.change.delta == pytest.approx(happiness.value - happiness.previous)
    expected = ratio_change(visible[FEB], visible[MAR])
    assert expected is not None and happiness.change.ci == expected.ci


def test_suppressed_happiness_shows_no_number(make_store: Any, settings: Settings) -> None:
    feb = [(f"f{j}", f"t{j}", 4) for j in range(6)]
    mar = [(f"m{j}", f"t{j}", 5) for j in range(3)]  # three respondents, k = 5
    records = survey("feb", "2026-02-10T09:00:00Z", feb) + survey(
        "mar", "2026-03-10T09:00:00Z", mar
    )
    records += runs("t0", MAR, 3, 1)
    card = scorecard(make_store(records), settings, as_of=AS_OF)

    happiness = only(card).happiness
    assert happiness.suppressed
    # not even the previous value or a change: delta and either value would give the other away
    assert (happiness.value, happiness.n, happiness.previous, happiness.change) == (
        None,
        None,
        None,
        None,
    )
    row = next(line.split() for line in text_of(card).splitlines() if line.startswith("ci "))
    assert row[-1] == "suppressed"  # the happiness column, last


def test_same_seed_same_scorecard(org: tuple[Store, Scorecard], settings: Settings) -> None:
    store, card = org
    assert scorecard(store, settings, as_of=AS_OF, seed=11) == card
    before = {f"t{i}": (float(i), 10.0) for i in range(10)}
    after = {f"t{i}": (float(i % 7 + 2), 10.0) for i in range(10)}
    first = ratio_change(before, after, seed=11)
    assert ratio_change(before, after, seed=11) == first
    assert ratio_change(before, after, seed=12) != first


def test_last_complete_period(settings: Settings) -> None:
    utc, berlin = ZoneInfo("UTC"), ZoneInfo("Europe/Berlin")
    assert complete_periods("month", utc, AS_OF) == (FEB, MAR, date(2026, 4, 1))
    late_march = datetime(2026, 3, 31, 23, 0, tzinfo=UTC)
    assert complete_periods("month", utc, late_march)[1] == FEB
    # already 1 April in Berlin
    assert complete_periods("month", berlin, late_march)[1] == MAR
    assert complete_periods("quarter", utc, AS_OF) == (
        date(2025, 10, 1),
        date(2026, 1, 1),
        date(2026, 4, 1),
    )
    with Store.open(":memory:") as store, pytest.raises(ConfigError, match="grain 'all'"):
        scorecard(store, settings, grain="all")


# -- the demo organisation ------------------------------------------------------------------------


def test_demo_organisation_scorecard(tmp_path: Path, settings: Settings) -> None:
    tables = generate(OrgSpec(teams=36, days=365, seed=7, end=date(2026, 11, 20)))
    with Store.open(str(tmp_path / "demo.duckdb")) as store:
        ingest_arrow(store, tables, settings, source="demo")
        card = scorecard(store, settings, as_of=datetime(2026, 11, 20, tzinfo=UTC))
        # the engine caches tables on large stores; they must be dropped while the store is open
        gc.collect()

    assert (card.period, card.previous) == (date(2026, 10, 1), date(2026, 9, 1))
    assert len(card.capabilities) >= 8
    for score in card.capabilities:
        assert score.adoption.value is not None and 0 <= score.adoption.value <= 1
        for cell in score.cells:
            if cell.change and cell.change.ci:
                assert cell.change.significant == (cell.change.ci[0] > 0 or cell.change.ci[1] < 0)
    assert [r.metric for r in card.dora] == [
        "dora.deployment_frequency",
        "dora.lead_time_p50",
        "dora.change_failure_rate",
        "dora.recovery_time_p50",
    ]
    assert all(r.segment == {} and r.period == card.period for r in card.dora)
    text = text_of(card)
    for score in card.capabilities:
        assert score.capability in text
    assert "DORA · org-wide" in text and "deployment frequency" in text


def test_duration_pools_per_capability_and_pooled(make_store: Any, settings: Settings) -> None:
    """The efficiency bootstrap's observations: each (capability, month)'s successful durations
    sorted, each with its team; and every capability pooled per month (None: no team)."""
    records = [
        *runs("a", FEB, 2, 1, capability="ci", durations=[50.0, 10.0]),
        *runs("b", FEB, 1, 0, capability="ci", durations=[30.0]),
        *runs("a", MAR, 1, 0, capability="ci", durations=[20.0]),
        *runs("b", MAR, 2, 0, capability="docs", durations=[40.0, 5.0]),
        {
            "type": "usage",
            "id": "teamless",
            "ts": "2026-03-05T10:00:00Z",
            "capability": "docs",
            "actor": "nobody",
            "outcome": "success",
            "duration_s": 7.0,
        },
    ]
    store = make_store(records)
    spans = periods("month", FEB, date(2026, 4, 1), ZoneInfo(settings.timezone))
    per_capability, pooled = _durations(store, settings, spans)

    def shown(pool: Any) -> list[tuple[float, Any]]:
        return [(float(v), pool.teams[o]) for v, o in zip(pool.values, pool.owner, strict=True)]

    assert {k: shown(p) for k, p in per_capability.items()} == {
        ("ci", FEB): [(10.0, "a"), (30.0, "b"), (50.0, "a")],
        ("ci", MAR): [(20.0, "a")],
        ("docs", MAR): [(5.0, "b"), (7.0, None), (40.0, "b")],
    }
    assert {k: shown(p) for k, p in pooled.items()} == {
        (None, FEB): [(10.0, "a"), (30.0, "b"), (50.0, "a")],
        (None, MAR): [(5.0, "b"), (7.0, None), (20.0, "a"), (40.0, "b")],
    }
