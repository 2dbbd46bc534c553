"""What the engine returns: report rows and warnings, as `heatlens.report/v1` (DESIGN §5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

SCHEMA = "heatlens.report/v1"


@dataclass
class Row:
    """One metric value for one period and segment.

    `x` and `d` are a proportion's numerator and denominator (None otherwise) and `k` the
    anonymity threshold of a happiness row; they are not part of the JSON output but let the
    analysis layer pool segments and the renderers say why a value is suppressed. The engine
    gives the rows of one segment the same `segment` dict: read it, never change it.
    """

    metric: str
    period: date
    segment: dict[str, Any]
    value: float | int | None
    n: int | None
    ci: tuple[float, float] | None = None
    suppressed: bool = False
    tier: str | None = None
    complete: bool = True
    x: float | None = None
    d: float | None = None
    k: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "period": self.period.isoformat(),
            "segment": self.segment,
            "value": self.value,
            "n": self.n,
            "ci": list(self.ci) if self.ci is not None else None,
            "suppressed": self.suppressed,
            "tier": self.tier,
            "complete": self.complete,
        }


@dataclass
class ReportWarning:
    """Something the user should know about the numbers: dropped values, unlinked incidents…"""

    code: str
    message: str
    count: int

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "count": self.count}


@dataclass
class Report:
    """A computed report: rows in catalog order, then period, then segment."""

    grain: str
    start: date
    end: date
    timezone: str
    by: tuple[str, ...]
    rows: list[Row] = field(default_factory=list)
    warnings: list[ReportWarning] = field(default_factory=list)
    generated_at: datetime | None = None
    # where the records the report's metrics read lie (heatlens.analysis.coverage's JSON), set by
    # the application; an optional member of the JSON, so v1 readers that ignore it are unchanged
    coverage: dict[str, Any] | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        """The segment keys to show: `by`, then keys rows carry beyond it (happiness rows always
        name their survey wave, DESIGN §4 v2)."""
        extra = {k: None for r in self.rows for k in r.segment if k not in self.by}
        return (*self.by, *extra)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "schema": SCHEMA,
            "grain": self.grain,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "timezone": self.timezone,
            "warnings": [w.to_json() for w in self.warnings],
            "rows": _rows_json(self.rows),
        }
        if self.coverage is not None:
            doc["coverage"] = self.coverage
        return doc

    def to_arrow(self) -> Any:
        """The rows as a pyarrow Table: metric, period, one column per segment key of the report
        (`columns`), value, n, ci_low, ci_high, suppressed, tier, complete."""
        import pyarrow as pa

        columns: dict[str, list[Any]] = {"metric": [], "period": []}
        columns |= {key: [] for key in self.columns}
        for name in ("value", "n", "ci_low", "ci_high", "suppressed", "tier", "complete"):
            columns[name] = []
        for row in self.rows:
            columns["metric"].append(row.metric)
            columns["period"].append(row.period)
            for key in self.columns:
                columns[key].append(row.segment.get(key))
            columns["value"].append(None if row.value is None else float(row.value))
            columns["n"].append(row.n)
            columns["ci_low"].append(row.ci[0] if row.ci else None)
            columns["ci_high"].append(row.ci[1] if row.ci else None)
            columns["suppressed"].append(row.suppressed)
            columns["tier"].append(row.tier)
            columns["complete"].append(row.complete)
        types = {"metric": pa.string(), "period": pa.date32(), "value": pa.float64()}
        types |= {"n": pa.int64(), "ci_low": pa.float64(), "ci_high": pa.float64()}
        types |= {"suppressed": pa.bool_(), "tier": pa.string(), "complete": pa.bool_()}
        return pa.table(
            {
                name: pa.array(values, types.get(name, pa.string()))
                for name, values in columns.items()
            }
        )

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (the columns of `to_arrow`)."""
        return self.to_arrow().to_pandas()

    @classmethod
    def from_json(cls, doc: dict[str, Any], by: tuple[str, ...] = ()) -> Report:
        """A report read back from its JSON (e.g. from a server's `GET /api/v1/metrics`); `by`
        is the request's segmentation, which the JSON leaves to its rows."""
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} document: schema {doc.get('schema')!r}")
        rows = [
            Row(
                metric=r["metric"],
                period=date.fromisoformat(r["period"]),
                segment=dict(r["segment"]),
                value=r["value"],
                n=r["n"],
                ci=(r["ci"][0], r["ci"][1]) if r.get("ci") else None,
                suppressed=bool(r["suppressed"]),
                tier=r["tier"],
                complete=bool(r["complete"]),
            )
            for r in doc["rows"]
        ]
        return cls(
            grain=doc["grain"],
            start=date.fromisoformat(doc["from"]),
            end=date.fromisoformat(doc["to"]),
            timezone=doc["timezone"],
            by=by,
            rows=rows,
            warnings=[
                ReportWarning(w["code"], w["message"], int(w["count"])) for w in doc["warnings"]
            ],
            coverage=doc.get("coverage"),
        )


def _rows_json(rows: list[Row]) -> list[dict[str, Any]]:
    """`[r.to_json() for r in rows]`, in a third less time: a report has up to ~500,000 rows
    over a few dozen periods, each written out once."""
    days: dict[date, str] = {}
    out: list[dict[str, Any]] = []
    append = out.append
    for r in rows:
        period = days.get(r.period)
        if period is None:
            period = days[r.period] = r.period.isoformat()
        ci = r.ci
        append(
            {
                "metric": r.metric,
                "period": period,
                "segment": r.segment,
                "value": r.value,
                "n": r.n,
                "ci": None if ci is None else list(ci),
                "suppressed": r.suppressed,
                "tier": r.tier,
                "complete": r.complete,
            }
        )
    return out
