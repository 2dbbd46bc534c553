"""Exact quantiles per segment, in the backend: linear interpolation (`quantile_cont`), or the
`lower` rule sorted[floor((n−1)·q)] (DevLake-compatible) computed with a window, so both are exact on
every backend (approximate quantiles differ per backend: ENGINE_NOTES)."""

from __future__ import annotations

from typing import Any

import ibis

from heatlens.metrics.context import Context, Stat, Stats


def grouped_quantiles(ctx: Context, t: Any, keys: list[str], value: Any, q: float) -> Stats:
    """Quantile `q` of `value` per (period, keys) of `t` (rows with a null value excluded)."""
    t = t.mutate(hl_v=value.cast("float64"))
    t = t.filter(t.hl_v.notnull())
    groups = [t.period, *(t[k] for k in keys)]
    if ctx.settings.quantile == "lower":
        w = ibis.window(group_by=groups, order_by=t.hl_v)
        ranked = t.mutate(hl_rank=ibis.row_number().over(w), hl_n=t.hl_v.count().over(
            ibis.window(group_by=groups)))
        pick = ranked.filter(ranked.hl_rank == ((ranked.hl_n - 1) * q).floor())
        rows = pick.select(*(pick[c.get_name()] for c in groups), value=pick.hl_v, n=pick.hl_n)
    else:
        rows = t.group_by(groups).aggregate(value=t.hl_v.quantile(q), n=t.hl_v.count())
    out: Stats = {}
    for r in rows.to_pyarrow().to_pylist():
        out[(r["period"], ctx.cell(r))] = Stat(float(r["value"]), int(r["n"]))
    return out
