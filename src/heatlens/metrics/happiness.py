"""Happiness metrics (DESIGN §4) from survey responses and invitations, and anonymity.

A response belongs to its survey wave, counted in the period containing the survey's `opens_at`
(no survey record or no `opens_at`: its first response), never split across periods. A
`continuous` survey (micro-surveys) has one wave per calendar month of answer time, counted in
the period holding the month's first day, so at grain month or coarser only. Values are never
pooled across waves: the engine computes happiness as if `survey` were always a `--by` key.

Anonymity across queries (DESIGN §4 v2, docs/anonymity.md): `lattices` decides per wave, on its
atomic cells, which cells are hidden (metrics/anonymity.py); `hidden_cells` maps each output cell
of a query onto its wave's lattice cell. The engine applies it to every happiness row before any
output sees it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import ibis
import pyarrow as pa

from heatlens.errors import ConfigError
from heatlens.metrics.anonymity import (
    ALL,
    Lattice,
    decide,
    group_answers,
    question_node,
    team_node,
)
from heatlens.metrics.batch import Batch, Query, Rows
from heatlens.metrics.catalog import Metric
from heatlens.metrics.context import MetricContext, SegmentKey, Stat, Stats
from heatlens.metrics.frame import UTC_TS, memtable
from heatlens.metrics.intervals import nps_ci, proportion_ci
from heatlens.metrics.periods import (
    Period,
    bucket,
    calendar_next,
    calendar_start,
    midnight,
    periods,
)
from heatlens.metrics.quantiles import add_quantiles

KEYS = ("survey", "question", "team", "group", "capability")
KINDS = {
    "happiness.csat": "csat",
    "happiness.nps": "nps",
    "happiness.likert_mean": "likert",
    "happiness.likert_median": "likert",
}
DEFAULT_K = 5
# grains at which a continuous survey's monthly waves can be shown whole
MONTHLY = ("month", "quarter", "all")


def continuous(ctx: MetricContext) -> set[str]:
    """Ids of the continuous surveys (micro-surveys, one wave per month of answers)."""
    return {sid for sid, s in ctx.frame.surveys.items() if s.get("continuous")}


def waves(ctx: MetricContext) -> dict[str, datetime | None]:
    """Survey id → the instant its wave is counted at (continuous surveys have a wave per month
    and are not listed)."""
    f = ctx.frame
    r = f.table("survey_response")
    first = {
        row["survey"]: row["first"]
        for row in r.group_by("survey").aggregate(first=r.ts.min()).to_pyarrow().to_pylist()
    }
    inv = f.table("survey_invitation")
    ids = (
        set(f.surveys)
        | set(first)
        | set(inv.select("survey").distinct().to_pyarrow().column("survey").to_pylist())
    ) - continuous(ctx)
    out: dict[str, datetime | None] = {}
    for sid in ids:
        opens = f.surveys[sid]["opens_at"] if sid in f.surveys else None
        out[sid] = opens if opens is not None else first.get(sid)
    return out


def check_grain(ctx: MetricContext, only_happiness: bool) -> None:
    """A continuous survey is shown at grain month or coarser only (DESIGN §4 v2): at day or
    week its answers are left out with a warning, or refused when only happiness is asked for."""
    if ctx.grain in MONTHLY or not continuous(ctx):
        return
    r = ctx.frame.table("survey_response")
    r = r.filter(r.survey.isin(sorted(continuous(ctx))) & ctx.in_range(r.ts))
    count = int(r.count().to_pyarrow().as_py())
    if count and only_happiness:
        names = ", ".join(sorted(continuous(ctx)))
        raise ConfigError(
            f"continuous survey {names} is shown by month only (a week of micro-survey answers "
            "can single people out): use --grain month, quarter or all"
        )
    ctx.warn(
        "continuous_survey_grain",
        "answers of surveys with `continuous` set are shown at --grain month or coarser only",
        count,
    )


def _wave_table(ctx: MetricContext, wave_ts: dict[str, datetime | None]) -> Any:
    f = ctx.frame
    sids = [s for s, ts in wave_ts.items() if ts is not None]
    monthly = sorted(continuous(ctx)) if ctx.grain in MONTHLY else []

    def is_open(sid: str) -> bool:
        closes = f.surveys[sid]["closes_at"] if sid in f.surveys else None
        return closes is not None and closes > ctx.now

    return memtable(
        {
            "w_survey": sids + monthly,
            "w_ts": [wave_ts[s] for s in sids] + [None] * len(monthly),
            "w_k": [int(f.surveys[s]["k"]) if s in f.surveys else DEFAULT_K for s in sids]
            + [int(f.surveys[s]["k"]) for s in monthly],
            # a continuous survey's month is final when its period is
            "w_open": [int(is_open(s)) for s in sids] + [0] * len(monthly),
            "w_cont": [0] * len(sids) + [1] * len(monthly),
        },
        {
            "w_survey": pa.string(),
            "w_ts": UTC_TS,
            "w_k": pa.int64(),
            "w_open": pa.int64(),
            "w_cont": pa.int64(),
        },
    )


def _months(ctx: MetricContext) -> list[Period]:
    """The whole calendar months around the report's range (continuous surveys' waves)."""
    lo = calendar_start(ctx.spans[0].start, "month")
    hi = calendar_next(calendar_start(ctx.spans[-1].end - timedelta(days=1), "month"), "month")
    return periods("month", lo, hi, ctx.frame.tz)


def responses(ctx: MetricContext, wave_ts: dict[str, datetime | None]) -> Any:
    """Responses with their wave's instant, period, month (continuous surveys; else null), k,
    capability (own, else the question's) and group."""
    return ctx.memo("responses", lambda: _responses(ctx, wave_ts))


def _responses(ctx: MetricContext, wave_ts: dict[str, datetime | None]) -> Any:
    f = ctx.frame
    r = f.table("survey_response")
    w = _wave_table(ctx, wave_ts)
    r = r.join(w, r.survey == w.w_survey)
    months = _months(ctx)
    m = memtable(
        {"m_label": [p.start for p in months], "m_ts": [p.start_utc for p in months]},
        {"m_label": pa.date32(), "m_ts": UTC_TS},
    )
    r = r.mutate(w_month=ibis.ifelse(r.w_cont == 1, bucket(r.ts, months), ibis.null("date")))
    r = r.left_join(m, r.w_month == m.m_label)
    r = r.mutate(w_ts=ibis.coalesce(r.w_ts, r.m_ts)).drop("m_label", "m_ts")
    r = r.filter(r.w_ts.notnull())
    qc = f.question_capabilities()
    r = r.left_join(qc, (r.survey == qc.q_survey) & (r.question == qc.q_question))
    r = r.mutate(capability=ibis.coalesce(r.capability, r.q_capability)).drop(
        "q_survey", "q_question", "q_capability"
    )
    r = f.with_group(r)
    return ctx.bucketed(r, "w_ts")


def happiness_stats(
    ctx: MetricContext,
    metrics: list[Metric],
    wave_ts: dict[str, datetime | None],
    query: Query | None = None,
) -> dict[str, Stats]:
    """Stats of the happiness metrics requested (not yet suppressed): every metric's part built
    as an Ibis expression first, then run as one query (`Batch`; given a shared `query`, the
    stats are filled when its owner runs it)."""
    # read once (one metric, e.g. the latest waves' CSAT): a query of its own, not worth
    # materialising first; read by several queries: materialised once for the report
    reads = len(metrics) + sum(m.id == "happiness.likert_median" for m in metrics)
    r = responses(ctx, wave_ts) if reads > 1 else _responses(ctx, wave_ts)
    keys = [k for k in ctx.by if k in KEYS]
    batch = Batch(ctx, keys, query)
    out: dict[str, Stats] = {}
    for m in metrics:
        kind = KINDS.get(m.id)
        t = r if kind is None else r.filter((r.kind == kind) & r.score.notnull())
        if m.id == "happiness.response_rate":
            _response_rate(batch, t, keys, wave_ts, out)
        else:
            _answers(batch, m.id, t, keys, out)
    batch.run()
    return out


def _answers(batch: Batch, metric: str, t: Any, keys: list[str], out: dict[str, Stats]) -> None:
    """One happiness metric of the answers `t` per period and segment (and its median)."""
    ctx = batch.ctx
    who_t = t.survey.concat(ibis.literal("\x1f"), t.respondent)
    aggs: dict[str, Any] = {
        "resp": who_t.nunique(),
        "k": t.w_k.max(),
        "answers": t.count(),
        "open": t.w_open.max(),
    }
    if metric == "happiness.csat":
        aggs["x"] = t.count(where=t.score >= 4)
    elif metric == "happiness.nps":
        aggs["promoters"] = t.count(where=t.score >= 9)
        aggs["detractors"] = t.count(where=t.score <= 6)
    elif metric == "happiness.likert_mean":
        aggs["mean"] = t.score.cast("float64").mean()
    medians: dict[float, Stats] = {}
    if metric == "happiness.likert_median":
        # added first: its rows are in `medians` when the counts' rows are handled
        add_quantiles(batch, t, keys, "score", (0.5,), medians.update)

    def stats(found: Rows) -> None:
        values: Stats = {}
        for row in found:
            key = (row["period"], ctx.cell(row))
            resp, k, answers = int(row["resp"]), int(row["k"]), int(row["answers"])
            if metric == "happiness.respondents":
                values[key] = Stat(resp, resp)
            elif metric == "happiness.csat":
                x = int(row["x"])
                values[key] = Stat(x / answers, resp, proportion_ci(x, answers), x, answers)
            elif metric == "happiness.nps":
                p, d = int(row["promoters"]), int(row["detractors"])
                values[key] = Stat(100 * (p - d) / answers, resp, nps_ci(p, d, answers))
            elif metric == "happiness.likert_mean":
                values[key] = Stat(float(row["mean"]), resp)
            else:
                values[key] = Stat(medians[0.5][key].value, resp)
            values[key].respondents, values[key].k = resp, k
            values[key].open = bool(row["open"])
        out[metric] = values

    rows = t.group_by(["period", *keys]).aggregate(**aggs)
    batch.add(rows, list(aggs), stats)


def _response_rate(
    batch: Batch,
    r: Any,
    keys: list[str],
    wave_ts: dict[str, datetime | None],
    out: dict[str, Stats],
) -> None:
    """Distinct respondents ÷ summed invitations of the waves in the period and segment."""
    ctx = batch.ctx
    f = ctx.frame
    inv = f.table("survey_invitation")
    w = _wave_table(ctx, wave_ts)
    inv = inv.join(w, inv.survey == w.w_survey)
    inv = ctx.bucketed(f.with_group(inv), "w_ts")
    inv_keys = [k for k in keys if k in ("survey", "team", "group")]
    invited: dict[Any, dict[str, Any]] = {}

    def keep(found: Rows) -> None:
        invited.update({(row["period"], ctx.cell(row)): row for row in found})

    batch.add(
        inv.group_by([inv.period, *(inv[k] for k in inv_keys)]).aggregate(
            invited=inv.invited.sum(), k=inv.w_k.max(), open=inv.w_open.max()
        ),
        ("invited", "k", "open"),
        keep,
    )
    who = r.survey.concat(ibis.literal("\x1f"), r.respondent)

    def rates(found: Rows) -> None:
        answered = {(row["period"], ctx.cell(row)): row for row in found}
        stats: Stats = {}
        for key in set(invited) | set(answered):
            total = int(invited[key]["invited"]) if key in invited else 0
            if total == 0:
                continue
            resp = int(answered[key]["resp"]) if key in answered else 0
            rows = [row for row in (invited.get(key), answered.get(key)) if row]
            k = max(int(row["k"]) for row in rows)
            ci = proportion_ci(resp, total) if resp <= total else None
            is_open = any(bool(row["open"]) for row in rows)
            stats[key] = Stat(
                resp / total, resp, ci, resp, total, respondents=resp, k=k, open=is_open
            )
        out["happiness.response_rate"] = stats

    # handled after `keep` (parts are handled in the order they were added)
    batch.add(
        r.group_by([r.period, *(r[k] for k in inv_keys)]).aggregate(
            resp=who.nunique(), k=r.w_k.max(), open=r.w_open.max()
        ),
        ("resp", "k", "open"),
        rates,
    )


Wave = tuple[str, date | None]  # (survey, None) or a continuous survey's (survey, month)
Decided = dict[tuple[str, str, date | None], Lattice]  # (answer family, survey, month)


def lattices(ctx: MetricContext) -> Decided:
    """(answer family, survey, month) → the decided lattice of that wave, for every wave in the
    store. Families: `any` (respondents, response rate) and each scored kind (csat, nps,
    likert). Decided once per version of the responses, surveys and teams (the model, shared by
    every report of the process; the report time zone is part of its settings), so every query
    — whatever its keys, grain, range or scope — reads the same hidden cells."""
    types = ("survey_response", "survey", "team")
    return ctx.remember(
        "lattices", lambda: ctx.frame.shared("lattices", types, lambda: _decide_all(ctx))
    )


def _decide_all(ctx: MetricContext) -> Decided:
    f = ctx.frame
    r = f.table("survey_response")
    qc = f.question_capabilities()
    r = r.left_join(qc, (r.survey == qc.q_survey) & (r.question == qc.q_question))
    r = r.mutate(capability=ibis.coalesce(r.capability, r.q_capability))
    monthly = sorted(continuous(ctx))
    # only a continuous survey's answers need their time (their month is their wave)
    at = (
        ibis.ifelse(r.survey.isin(monthly), r.ts, ibis.null("timestamp('UTC')"))
        if monthly
        else None
    )
    columns = ["survey", "team", "question", "capability", "kind", "respondent"]
    t = r.select(
        *columns,
        scored=r.score.notnull(),
        at=at if at is not None else ibis.null("timestamp('UTC')"),
    )
    rows = t.distinct().to_pyarrow().to_pylist()
    tz = f.tz

    def group_of(team: Any) -> Any:
        return None if team is None else f.group_of(team)

    families: dict[str, list[tuple[Wave, tuple[Any, Any, Any], Any]]] = defaultdict(list)
    for row in rows:
        month = None
        if row["at"] is not None:
            ts = row["at"] if row["at"].tzinfo else row["at"].replace(tzinfo=UTC)
            month = ts.astimezone(tz).date().replace(day=1)
        entry = (
            (row["survey"], month),
            (row["team"], row["question"], row["capability"]),
            row["respondent"],
        )
        families["any"].append(entry)
        if row["scored"] and row["kind"] in ("csat", "nps", "likert"):
            families[row["kind"]].append(entry)
    out: Decided = {}
    for family, entries in families.items():
        for (survey, month), answers in group_answers(entries).items():
            k = int(f.surveys[survey]["k"]) if survey in f.surveys else DEFAULT_K
            out[(family, survey, month)] = decide(answers, k, group_of)
    return out


def hidden_cells(
    ctx: MetricContext,
    metric: str,
    p: Period,
    cells: dict[SegmentKey, Stat],
) -> set[SegmentKey]:
    """The output cells of `metric` in period p that anonymity hides: those whose lattice cell
    is hidden in a wave of the row (for a continuous survey over several months: in any
    month — a coarser period is shown only when each of its months is shown or empty)."""
    decided = lattices(ctx)
    family = KINDS.get(metric, "any")
    monthly = ctx.remember("monthly_waves", lambda: _monthly_waves(ctx, decided))
    out = set()
    for cell in cells:
        segment = dict(zip(ctx.by, cell, strict=True))
        survey = segment["survey"]
        tn = team_node(segment)
        qn = ALL if metric == "happiness.response_rate" else question_node(segment)
        if (family, survey) in monthly:
            waves = [w for at, w in monthly[(family, survey)] if p.start_utc <= at < p.end_utc]
        else:
            waves = [w for w in (decided.get((family, survey, None)),) if w is not None]
        if any(w.hidden(tn, qn) for w in waves):
            out.add(cell)
    return out


def _monthly_waves(
    ctx: MetricContext, decided: Decided
) -> dict[tuple[str, str], list[tuple[datetime, Lattice]]]:
    """(family, continuous survey) → each month's first instant and lattice."""
    out: dict[tuple[str, str], list[tuple[datetime, Lattice]]] = defaultdict(list)
    for (family, survey, month), lattice in decided.items():
        if month is not None:
            out[(family, survey)].append((midnight(month, ctx.frame.tz), lattice))
    return out
