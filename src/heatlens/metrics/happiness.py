"""Happiness metrics (DESIGN §4) from survey responses and invitations, and anonymity.

A response belongs to its survey wave, counted in the period containing the survey's `opens_at`
(no survey record or no `opens_at`: its first response), never split across periods. Anonymity is
enforced by `suppress`, which the engine applies to every happiness row before any output sees it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

import ibis
import pyarrow as pa

from heatlens.metrics.catalog import Metric
from heatlens.metrics.context import MetricContext, SegmentKey, Stat, Stats
from heatlens.metrics.frame import UTC_TS, memtable
from heatlens.metrics.intervals import nps_ci, proportion_ci
from heatlens.metrics.quantiles import grouped_quantiles

KEYS = ("survey", "question", "team", "group", "capability")
KINDS = {
    "happiness.csat": "csat",
    "happiness.nps": "nps",
    "happiness.likert_mean": "likert",
    "happiness.likert_median": "likert",
}
DEFAULT_K = 5


def waves(ctx: MetricContext) -> dict[str, datetime | None]:
    """Survey id → the instant its wave is counted at."""
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
    )
    out: dict[str, datetime | None] = {}
    for sid in ids:
        opens = f.surveys[sid]["opens_at"] if sid in f.surveys else None
        out[sid] = opens if opens is not None else first.get(sid)
    return out


def _wave_table(ctx: MetricContext, wave_ts: dict[str, datetime | None]) -> Any:
    f = ctx.frame
    sids = [s for s, ts in wave_ts.items() if ts is not None]

    def is_open(sid: str) -> bool:
        closes = f.surveys[sid]["closes_at"] if sid in f.surveys else None
        return closes is not None and closes > ctx.now

    return memtable(
        {
            "w_survey": sids,
            "w_ts": [wave_ts[s] for s in sids],
            "w_k": [int(f.surveys[s]["k"]) if s in f.surveys else DEFAULT_K for s in sids],
            "w_open": [int(is_open(s)) for s in sids],
        },
        {"w_survey": pa.string(), "w_ts": UTC_TS, "w_k": pa.int64(), "w_open": pa.int64()},
    )


def responses(ctx: MetricContext, wave_ts: dict[str, datetime | None]) -> Any:
    """Responses with their wave's period, k, capability (own, else the question's) and group."""
    return ctx.memo("responses", lambda: _responses(ctx, wave_ts))


def _responses(ctx: MetricContext, wave_ts: dict[str, datetime | None]) -> Any:
    f = ctx.frame
    r = f.table("survey_response")
    w = _wave_table(ctx, wave_ts)
    r = r.join(w, r.survey == w.w_survey)
    qc = f.question_capabilities()
    r = r.left_join(qc, (r.survey == qc.q_survey) & (r.question == qc.q_question))
    r = r.mutate(capability=ibis.coalesce(r.capability, r.q_capability)).drop(
        "q_survey", "q_question", "q_capability"
    )
    r = f.with_group(r)
    return ctx.bucketed(r, "w_ts")


def happiness_stats(
    ctx: MetricContext, metrics: list[Metric], wave_ts: dict[str, datetime | None]
) -> dict[str, Stats]:
    """Stats of the happiness metrics requested (not yet suppressed)."""
    r = responses(ctx, wave_ts)
    keys = [k for k in ctx.by if k in KEYS]
    groups = [r.period, *(r[k] for k in keys)]
    out: dict[str, Stats] = {}
    for m in metrics:
        kind = KINDS.get(m.id)
        t = r if kind is None else r.filter((r.kind == kind) & r.score.notnull())
        who_t = t.survey.concat(ibis.literal("\x1f"), t.respondent)
        aggs: dict[str, Any] = {
            "resp": who_t.nunique(),
            "k": t.w_k.max(),
            "answers": t.count(),
            "open": t.w_open.max(),
        }
        if m.id == "happiness.csat":
            aggs["x"] = t.count(where=t.score >= 4)
        elif m.id == "happiness.nps":
            aggs["promoters"] = t.count(where=t.score >= 9)
            aggs["detractors"] = t.count(where=t.score <= 6)
        elif m.id == "happiness.likert_mean":
            aggs["mean"] = t.score.cast("float64").mean()
        if m.id == "happiness.response_rate":
            out[m.id] = _response_rate(ctx, t, keys, wave_ts)
            continue
        rows = {
            (row["period"], ctx.cell(row)): row
            for row in t.group_by([t[g.get_name()] for g in groups])
            .aggregate(**aggs)
            .to_pyarrow()
            .to_pylist()
        }
        medians = (
            grouped_quantiles(ctx, t, keys, "score")[0.5]
            if m.id == "happiness.likert_median"
            else {}
        )
        stats: Stats = {}
        for key, row in rows.items():
            resp, k, answers = int(row["resp"]), int(row["k"]), int(row["answers"])
            if m.id == "happiness.respondents":
                stats[key] = Stat(resp, resp)
            elif m.id == "happiness.csat":
                x = int(row["x"])
                stats[key] = Stat(x / answers, resp, proportion_ci(x, answers), x, answers)
            elif m.id == "happiness.nps":
                p, d = int(row["promoters"]), int(row["detractors"])
                stats[key] = Stat(100 * (p - d) / answers, resp, nps_ci(p, d, answers))
            elif m.id == "happiness.likert_mean":
                stats[key] = Stat(float(row["mean"]), resp)
            else:
                stats[key] = Stat(medians[key].value, resp)
            stats[key].respondents, stats[key].k = resp, k
            stats[key].open = bool(row["open"])
        out[m.id] = stats
    return out


def _response_rate(
    ctx: MetricContext, r: Any, keys: list[str], wave_ts: dict[str, datetime | None]
) -> Stats:
    """Distinct respondents ÷ summed invitations of the waves in the period and segment."""
    f = ctx.frame
    inv = f.table("survey_invitation")
    w = _wave_table(ctx, wave_ts)
    inv = inv.join(w, inv.survey == w.w_survey)
    inv = ctx.bucketed(f.with_group(inv), "w_ts")
    inv_keys = [k for k in keys if k in ("survey", "team", "group")]
    invited = {
        (row["period"], ctx.cell(row)): row
        for row in inv.group_by([inv.period, *(inv[k] for k in inv_keys)])
        .aggregate(invited=inv.invited.sum(), k=inv.w_k.max(), open=inv.w_open.max())
        .to_pyarrow()
        .to_pylist()
    }
    who = r.survey.concat(ibis.literal("\x1f"), r.respondent)
    answered = {
        (row["period"], ctx.cell(row)): row
        for row in r.group_by([r.period, *(r[k] for k in inv_keys)])
        .aggregate(resp=who.nunique(), k=r.w_k.max(), open=r.w_open.max())
        .to_pyarrow()
        .to_pylist()
    }
    stats: Stats = {}
    for key in set(invited) | set(answered):
        total = int(invited[key]["invited"]) if key in invited else 0
        if total == 0:
            continue
        resp = int(answered[key]["resp"]) if key in answered else 0
        k = max(int(row["k"]) for row in (invited.get(key), answered.get(key)) if row)
        ci = proportion_ci(resp, total) if resp <= total else None
        is_open = any(bool(row["open"]) for row in (invited.get(key), answered.get(key)) if row)
        stats[key] = Stat(resp / total, resp, ci, resp, total, respondents=resp, k=k, open=is_open)
    return stats


def suppress(cells: dict[SegmentKey, Stat], nkeys: int) -> set[SegmentKey]:
    """Anonymity (DESIGN §4): the cells to suppress among one metric's cells of one period.

    A segment with fewer respondents than its k is suppressed. Then, within each one-key margin,
    while exactly one segment is suppressed or the suppressed ones together have fewer than k
    respondents, the visible segment with the fewest respondents (ties: lowest value, None
    lowest) is suppressed too, so no value can be recovered by subtraction from a total.
    """
    hidden = {c for c, s in cells.items() if 0 < s.respondents < s.k}
    if nkeys == 0:
        return hidden
    changed = True
    while changed:
        changed = False
        for i in range(nkeys):
            margins: dict[SegmentKey, list[SegmentKey]] = defaultdict(list)
            for cell, s in cells.items():
                if s.respondents > 0:
                    margins[cell[:i] + cell[i + 1 :]].append(cell)
            for rest in sorted(margins, key=_cell_order):
                members = margins[rest]
                k = max(cells[m].k for m in members)
                while True:
                    sup = [m for m in members if m in hidden]
                    visible = [m for m in members if m not in hidden]
                    total = sum(cells[m].respondents for m in sup)
                    if not sup or not visible or not (len(sup) == 1 or total < k):
                        break
                    pick = min(visible, key=lambda m: (cells[m].respondents, _value_order(m[i])))
                    hidden.add(pick)
                    changed = True
    return hidden


def _value_order(v: Any) -> tuple[bool, str]:
    return (v is not None, "" if v is None else str(v))


def _cell_order(cell: SegmentKey) -> tuple[tuple[bool, str], ...]:
    return tuple(_value_order(v) for v in cell)
