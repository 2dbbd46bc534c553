"""Exact quantiles per segment, in the backend: linear interpolation (`quantile_cont`), or the
`lower` rule sorted[floor((n−1)·q)] (DevLake-compatible) computed with a window, so both are exact
on every backend (approximate quantiles differ per backend: ENGINE_NOTES)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ibis

from heatlens.metrics.batch import Batch
from heatlens.metrics.context import Stat, Stats


def add_quantiles(
    batch: Batch,
    t: Any,
    keys: list[str],
    column: str,
    qs: tuple[float, ...],
    handle: Callable[[dict[float, Stats]], None],
) -> None:
    """Add to `batch` the quantiles `qs` of `column` per (period, keys) of `t` (null values
    excluded); `handle` gets them, per q, when the batch runs."""
    ctx = batch.ctx
    t = t.mutate(hl_v=t[column].cast("float64"))
    t = t.filter(t.hl_v.notnull())
    names = ["period", *keys]
    aggs = {f"q{i}": t.hl_v.quantile(q) for i, q in enumerate(qs)}
    if ctx.settings.quantile == "lower":
        w = ibis.window(group_by=[t[c] for c in names], order_by=t.hl_v)
        t = t.mutate(
            hl_rank=ibis.row_number().over(w),
            hl_n=t.hl_v.count().over(ibis.window(group_by=[t[c] for c in names])),
        )
        aggs = {
            f"q{i}": t.hl_v.max(where=t.hl_rank == ((t.hl_n - 1) * q).floor())
            for i, q in enumerate(qs)
        }
    rows = t.group_by(names).aggregate(n=t.hl_v.count(), **aggs)

    def stats(found: list[dict[str, Any]]) -> None:
        out: dict[float, Stats] = {q: {} for q in qs}
        for r in found:
            for i, q in enumerate(qs):
                out[q][(r["period"], ctx.cell(r))] = Stat(float(r[f"q{i}"]), int(r["n"]))
        handle(out)

    batch.add(rows, ["n", *aggs], stats)
