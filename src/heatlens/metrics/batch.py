"""One query per metric family (issue 18): the family's builders add *parts* — Ibis expressions
of result rows, not run — each with the function that turns its rows into stats; `Batch.run`
sends them all as one `UNION ALL` query and hands each part its rows. The engine gives every
family of a report — and of the reports a page asks for together (`compute_all`) — one shared
`Query`, so each report or page view set is one query.

Every part gives the report's label columns it has (`period` and segment keys; the others are
NULL in its rows) and up to a few numeric measures, carried as DOUBLE: counts stay exact (below
2^53) and handlers read them with `int()`. Warnings' counts are one-row parts of FILTERed counts
(`Batch.warn_each`), so warnings cost no query of their own; with `ctx.quiet` they are not added.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import pyarrow as pa
import pyarrow.compute as pc
import sqlglot.expressions as sge

from heatlens.metrics.context import MetricContext

Rows = list[dict[str, Any]]
Handle = Callable[[Rows], None]


@dataclass(frozen=True)
class _Part:
    expr: Any
    measures: tuple[str, ...]
    handle: Handle
    label: str | None = None  # a string column of its own (carried as `hl_label`)


class Query:
    """The parts of one or more batches — the families of one report, or of several reports
    that a page asks for together — run as one query by `run`."""

    def __init__(self) -> None:
        self.labels: list[str] = ["period"]
        self._parts: list[_Part] = []

    def add(self, labels: Sequence[str], part: _Part) -> None:
        self.labels += [label for label in labels if label not in self.labels]
        self._parts.append(part)

    def run(self) -> None:
        """Run every part as one query; each handler gets its part's rows, in the order the
        parts were added. The query is then empty."""
        parts, self._parts = self._parts, []
        if not parts:
            return
        width = max(len(p.measures) for p in parts)
        table = _run([self._select(i, p, width) for i, p in enumerate(parts)])
        which = table.column("hl_part")
        for i, part in enumerate(parts):
            mine = table.filter(pc.equal(which, i)) if len(parts) > 1 else table
            names = [c for c in self.labels if c in part.expr.columns]
            columns = [*names, *(f"hl_m{j}" for j in range(len(part.measures)))]
            renamed = [*names, *part.measures]
            if part.label is not None:
                columns.append("hl_label")
                renamed.append(part.label)
            picked = pa.Table.from_arrays([mine.column(c) for c in columns], names=renamed)
            part.handle(picked.to_pylist())

    def _select(self, i: int, part: _Part, width: int) -> Any:
        e = part.expr
        cols: dict[str, Any] = {"hl_part": ibis.literal(i, "int32")}
        for label in self.labels:
            kind = "date" if label == "period" else "string"
            cols[label] = e[label].cast(kind) if label in e.columns else ibis.null(kind)
        own = e[part.label].cast("string") if part.label is not None else ibis.null("string")
        cols["hl_label"] = own
        for j in range(width):
            m = part.measures[j] if j < len(part.measures) else None
            cols[f"hl_m{j}"] = e[m].cast("float64") if m is not None else ibis.null("float64")
        return e.select(**cols)


class Batch:
    """One family's parts for one report (its context and segment keys). They run with
    `run`, or — given a shared `query` — when its owner runs that query."""

    def __init__(self, ctx: MetricContext, keys: Sequence[str], query: Query | None = None):
        self.ctx = ctx
        # the label columns its parts may give: the period and the family's segment keys
        self.labels = ("period", *keys)
        self._own = query is None
        self._query = Query() if query is None else query

    def add(
        self, expr: Any, measures: Sequence[str], handle: Handle, label: str | None = None
    ) -> None:
        """A part: `expr`'s rows (label columns among `labels`, numeric `measures`, and the
        string column `label` if given) go to `handle` as dicts of those columns when the
        query runs."""
        self._query.add(self.labels, _Part(expr, tuple(measures), handle, label))

    def warn(self, code: str, message: str, rows: Any) -> None:
        """The report's warning `code` counts `rows` (nothing is added when `ctx.quiet`)."""
        self.warn_each(rows, [(code, message, None)])

    def warn_each(self, rows: Any, warnings: Sequence[tuple[str, str, Any]]) -> None:
        """Several warnings counting `rows` under their own conditions — (code, message, Ibis
        condition, None for every row) — as one aggregate of FILTERed counts (one scan of
        `rows`); nothing is added when `ctx.quiet`."""
        if self.ctx.quiet or not warnings:
            return
        counts = rows.aggregate(
            **{f"w{i}": rows.count(where=cond) for i, (_, _, cond) in enumerate(warnings)}
        )

        def warn(found: Rows) -> None:
            [row] = found  # an aggregate without groups: one row
            for i, (code, message, _) in enumerate(warnings):
                self.ctx.warn(code, message, int(row[f"w{i}"]))

        self.add(counts, [f"w{i}" for i in range(len(warnings))], warn)

    def run(self) -> None:
        """Run the parts now, unless they belong to a shared query (its owner runs it)."""
        if self._own:
            self._query.run()


def _run(selects: list[Any]) -> pa.Table:
    """The rows of the parts' `selects`, as one query.

    On DuckDB each part is compiled on its own and the SQL joined with UNION ALL: Ibis compiling
    the union as one expression looks for common parts across all of them, which cost more than
    the parts' compiles together (0.5 s more on the DORA page's first load). Each part's common
    parts are inlined where they are read (`NOT MATERIALIZED`): DuckDB would otherwise
    materialise one read by several branches — on W52 the 10 M rows of bucketed usage, +1.2 GiB
    and no quicker — where each branch scans the kept table at no extra cost. Postgres runs
    Ibis's union as it compiles it."""
    union = selects[0] if len(selects) == 1 else ibis.union(*selects, distinct=False)
    backend = union._find_backend()
    if backend.name != "duckdb":
        return union.to_pyarrow()
    backend._run_pre_execute_hooks(union)  # registers the parts' in-memory tables
    sql = " UNION ALL ".join(f"SELECT * FROM ({_inlined(backend, s)})" for s in selects)
    return backend.con.sql(sql).to_arrow_table()


def _inlined(backend: Any, expr: Any) -> str:
    """`expr` as DuckDB SQL whose common table expressions are NOT MATERIALIZED."""
    query = backend.compiler.to_sqlglot(expr)
    for cte in query.find_all(sge.CTE):
        cte.set("materialized", False)
    return str(query.sql(dialect=backend.dialect))
