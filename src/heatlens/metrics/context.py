"""Per-report state shared by the metric families: periods, segment keys, warnings, and the
segment values that exist in each period (for zero-filling counts)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import product
from typing import Any

import ibis

from heatlens.metrics.frame import Frame
from heatlens.metrics.globs import matches
from heatlens.metrics.periods import Period, bucket

# one segment's values, in the order of the report's `by` keys
SegmentKey = tuple[Any, ...]


@dataclass
class Stat:
    """A computed value of one metric for one (period, segment), before the common rules apply.

    `respondents` and `k` are set for happiness metrics (anonymity); `x` and `d` are a
    proportion's numerator and denominator (for csat the answers, while `n` is respondents).
    """

    value: float | int | None
    n: int | None
    ci: tuple[float, float] | None = None
    x: float | None = None
    d: float | None = None
    respondents: int = 0
    k: int = 0
    open: bool = False  # a survey wave behind it is still open (closes_at > now): not final


Stats = dict[tuple[date, SegmentKey], Stat]


@dataclass
class MetricContext:
    """One report's request, resolved: frame, output periods, keys, clock and warnings."""

    frame: Frame
    spans: list[Period]
    grain: str
    by: tuple[str, ...]
    now: datetime
    warnings: dict[str, tuple[str, int]] = field(default_factory=dict)
    # the caller reads rows only (Request.warnings false): warning counts are not computed
    quiet: bool = False
    _seen: dict[str, set[Any]] | None = None
    _memo: dict[str, Any] = field(default_factory=dict)
    # metric id → (rows to omit after zero-fill, warning code, message), e.g. history_start
    omissions: dict[str, tuple[Callable[[Period, SegmentKey], bool], str, str]] = field(
        default_factory=dict
    )

    def release(self) -> None:
        """Drop the tables this report materialised (while the connection is still open)."""
        for value in self._memo.values():
            if hasattr(value, "release"):
                value.release()
        self._memo.clear()

    def remember(self, name: str, build: Callable[[], Any]) -> Any:
        """A Python value computed once per report."""
        if name not in self._memo:
            self._memo[name] = build()
        return self._memo[name]

    def memo(self, name: str, build: Callable[[], Any]) -> Any:
        """A table built once per report and kept in the backend (a temporary table), so the
        queries reading it are simple to compile and don't redo its joins."""
        if name not in self._memo:
            table = build()
            # materialising pays off on large stores only; small ones recompute faster
            self._memo[name] = table.cache() if self.frame.large else table
        return self._memo[name]

    def kept(self, name: str, types: tuple[str, ...], build: Callable[[], Any]) -> Any:
        """A table built from the record types `types`: the model's (built once per their
        versions, shared by every report) when the store keeps one, else built for this report
        (`memo`)."""
        table = self.frame.shared_table(name, types, build)
        return self.memo(name, build) if table is None else table

    @property
    def settings(self) -> Any:
        return self.frame.settings

    @property
    def range_start(self) -> datetime:
        return self.spans[0].start_utc

    @property
    def range_end(self) -> datetime:
        return self.spans[-1].end_utc

    def period_of(self, label: date) -> Period:
        return next(p for p in self.spans if p.start == label)

    def omit(
        self, metric: str, rule: Callable[[Period, SegmentKey], bool], code: str, message: str
    ) -> None:
        """Omit `metric`'s rows (zero-filled ones too) where `rule` holds; the engine counts
        them in the warning `code`."""
        self.omissions[metric] = (rule, code, message)

    def warn(self, code: str, message: str, count: int | Callable[[], int]) -> None:
        """Record a warning (only when something was affected). A count that costs a query is
        given as a function, called only when the report's warnings are wanted (not `quiet`)."""
        if self.quiet:
            return
        if callable(count):
            count = count()
        if count > 0:
            self.warnings[code] = (message, count)

    def in_range(self, ts: Any) -> Any:
        """Ibis condition: `ts` lies in [--from, --to)."""
        f = self.frame
        return (ts >= f.literal_ts(self.range_start)) & (ts < f.literal_ts(self.range_end))

    def bucketed(self, t: Any, column: str, spans: list[Period] | None = None) -> Any:
        """`t` with `period`: the label of the span holding its `column`; other rows dropped."""
        t = t.mutate(period=bucket(t[column], spans or self.spans))
        return t.filter(t.period.notnull())

    def cell(self, row: dict[str, Any], keys: Iterable[str] | None = None) -> SegmentKey:
        # a list, not a generator: tuple() of one is twice as quick (called per result row)
        return tuple([row.get(k) for k in (self.by if keys is None else keys)])

    def span_of(self, ts: datetime, spans: list[Period] | None = None) -> Period | None:
        """The span holding an instant (Python side, for small pulled tables)."""
        for p in spans or self.spans:
            if p.start_utc <= ts < p.end_utc:
                return p
        return None

    # -- which segment values exist in a period ------------------------------------------------

    def seen(self) -> dict[str, set[Any]]:
        """Segment values found in no registry, seen anywhere in the store (any time)."""
        if self._seen is None:
            f = self.frame
            # only the keys this report segments by (group needs teams): each is a scan, done
            # once per version of the tables it reads (the model)
            wanted = set(self.by) | ({"team"} if "group" in self.by else set())
            found: dict[str, frozenset[Any]] = {key: frozenset() for key in SEEN_SOURCES}
            for key, columns in SEEN_SOURCES.items():
                if key in wanted:
                    types = tuple(sorted({table for table, _ in columns}))
                    found[key] = f.shared(
                        f"seen:{key}", types, functools.partial(_seen, f, columns)
                    )
            teams, services = found["team"], found["service"]
            caps, questions = set(found["capability"]), set(found["question"])
            for s in f.surveys.values():
                caps |= {q.get("capability") for q in s["questions"]} - {None}
                questions |= {q.get("id") for q in s["questions"]} - {None}
            self._seen = {
                "team": set(teams - set(f.teams)),
                "service": set(services - set(f.services)),
                "capability": caps - set(f.capabilities),
                "action": set(found["action"]),
                "environment": set(found["environment"]),
                "question": questions,
            }
        return self._seen

    def delivery_teams(self) -> set[Any]:
        """Teams that own a service or appear on a deployment: only they get DORA rows (DESIGN
        §4 v2), so a team with nothing to deploy never counts as "low"."""

        def build() -> set[Any]:
            d = self.frame.table("deployment")
            named = d.filter(d.team.notnull()).select("team").distinct().to_pyarrow()
            owners = {s["team"] for s in self.frame.services.values() if s["team"] is not None}
            return owners | set(named.column("team").to_pylist())

        return self.frame.shared("delivery_teams", ("deployment", "service"), build)

    def domain(
        self, key: str, p: Period, waves: dict[str, datetime | None], delivery: bool = False
    ) -> set[Any]:
        """Values of `key` that exist in period p (DESIGN §4 zero-or-omitted); for DORA
        (`delivery`), teams with something to deploy and production environments only."""
        f = self.frame
        if key == "team":
            registry = {
                tid for tid, t in f.teams.items() if f.team_exists(t, p.start_utc, p.end_utc)
            }
            teams = registry | self.seen()["team"]
            return teams & self.delivery_teams() if delivery else teams
        if key == "group":
            return {f.group_of(t) for t in self.domain("team", p, waves, delivery)}
        if key == "environment":
            envs = {str(e).lower() for e in self.seen()["environment"]}
            return {e for e in envs if matches(e, f.settings.production_environments)}
        if key == "service":
            registry = {
                sid
                for sid, s in f.services.items()
                if s["created_at"] is None or s["created_at"] < p.end_utc
            }
            return registry | self.seen()["service"]
        if key == "capability":
            registry = {
                cid
                for cid, c in f.capabilities.items()
                if c["launched_at"] is None or c["launched_at"] <= p.end_utc
            }
            return registry | self.seen()["capability"]
        if key == "survey":
            return {
                s for s, ts in waves.items() if ts is not None and p.start_utc <= ts < p.end_utc
            }
        return set(self.seen()[key])

    def domain_cells(
        self, p: Period, waves: dict[str, datetime | None], delivery: bool = False
    ) -> set[SegmentKey]:
        """Every combination of the existing values of the report's keys in period p (a copy:
        callers add to it). Computed once per period; `waves` only matters for `survey`."""
        key = ("domain_cells", p.start, "survey" in self.by and bool(waves), delivery)
        cells = self.remember(
            str(key),
            lambda: set(product(*(self.domain(k, p, waves, delivery) for k in self.by))),
        )
        return set(cells)

    def launched(self, p: Period, cell: SegmentKey) -> bool:
        """No rows for a registry capability in periods that end before its launch."""
        if "capability" not in self.by:
            return True
        cap = self.frame.capabilities.get(cell[self.by.index("capability")])
        launched = cap["launched_at"] if cap else None
        return launched is None or not p.end_utc < launched


SEEN_SOURCES: dict[str, list[tuple[str, str]]] = {
    "team": [
        (t, "team")
        for t in (
            "membership",
            "service",
            "usage",
            "deployment",
            "change",
            "incident",
            "survey_response",
            "survey_invitation",
        )
    ]
    + [("team", "parent")],
    "service": [(t, "service") for t in ("usage", "deployment", "change", "incident")],
    "capability": [("usage", "capability"), ("survey_response", "capability")],
    "question": [("survey_response", "question")],
    "action": [("usage", "action")],
    "environment": [("deployment", "environment")],
}


def _seen(frame: Frame, columns: list[tuple[str, str]]) -> frozenset[Any]:
    """The values of one segment key found in the records' columns (one query)."""
    parts = []
    for table, column in columns:
        t = frame.table(table)
        parts.append(t.select(v=t[column].cast("string")).distinct())
    rows = ibis.union(*parts).to_pyarrow().column("v").to_pylist()
    return frozenset(v for v in rows if v is not None)
