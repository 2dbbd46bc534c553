"""The metric engine: from a store's tables and a request to a `Report` (DESIGN §4).

Each dimension module computes its metrics' values per (period, segment) as Ibis expressions run on
the store's backend; this module then applies the common rules once, for every metric: zero-fill
of counts where a segment exists, no rows before a capability's launch, anonymity of happiness
segments, DORA tiers, `complete`. Every output (CLI, API, dashboard, scorecard) goes through
`compute`, so none can bypass anonymity.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from heatlens.errors import ConfigError
from heatlens.metrics import catalog
from heatlens.metrics.batch import Query
from heatlens.metrics.catalog import GRAINS, KEYS, Metric
from heatlens.metrics.context import MetricContext, SegmentKey, Stat, Stats
from heatlens.metrics.delivery import delivery_stats
from heatlens.metrics.frame import Frame, Tables
from heatlens.metrics.happiness import check_grain, happiness_stats, hidden_cells, waves
from heatlens.metrics.model import ModelStore
from heatlens.metrics.periods import (
    MAX_PERIODS,
    check_day,
    default_range,
    periods,
    too_many_periods,
)
from heatlens.metrics.result import Report, ReportWarning, Row
from heatlens.metrics.tiers import tier_of
from heatlens.metrics.usage import usage_stats
from heatlens.model import RECORD_TYPES
from heatlens.settings import Settings

WARNING_ORDER = (
    "negative_lead_time",
    "negative_recovery_time",
    "negative_time_to_restore",
    "negative_time_to_first_deploy",
    "deployment_without_commits",
    "unlinked_incidents",
    "cross_service_links",
    "root_cause_not_yet_deployed",
    "no_failure_signal",
    "excluded_environments",
    "repeated_deployments",
    "unknown_changes",
    "history_start",
    "created_before_history",
    "ineligible_active_teams",
    "suppressed_segments",
    "continuous_survey_grain",
    "unknown_services",
)

# DORA rows whose tier needs `tier_min_n` observations, and rows incidents still link to until
# the link window (7 days when unbounded) has passed after the period (DESIGN §4 v2)
TIER_NEEDS_N = frozenset(
    {
        "dora.change_failure_rate",
        "dora.lead_time_p50",
        "dora.recovery_time_p50",
        "dora.time_to_restore_p50",
    }
)
LINKED = frozenset({"dora.change_failure_rate", "dora.recovery_time_p50"})
UNBOUNDED_SETTLE = timedelta(days=7)


@dataclass(frozen=True)
class Request:
    """What to compute: grain, range (dates in the report time zone; `end` exclusive), segment
    keys and metric ids or prefixes (none: all). Missing dates default per DESIGN §4.
    `warnings` false: the caller reads the rows only, so the report's warnings (some cost a
    query each) are neither computed nor returned; the rows are the same."""

    grain: str = "week"
    start: date | None = None
    end: date | None = None
    by: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    now: datetime | None = None
    warnings: bool = True


def history_start(tables: Tables, tz: ZoneInfo) -> date | None:
    """The day (in `tz`) of the earliest stored record placed in time, or None with none
    (one scan per type, kept per version of those types when the store keeps versions)."""
    timed = [t for t in RECORD_TYPES if t.at is not None]

    def build() -> list[Any]:
        return [tables.table(t.table)[t.at].min().to_pyarrow().as_py() for t in timed]

    if not isinstance(tables, ModelStore):
        return _first_day(build(), tz)
    versions = tables.type_versions()
    key = (tables.model_scope(), tuple(versions[t.name] for t in timed))
    with _FIRSTS_LOCK:
        found = _FIRSTS.get(key)
    if found is None:
        found = build()
        with _FIRSTS_LOCK:
            _FIRSTS[key] = found
            while len(_FIRSTS) > 16:
                _FIRSTS.pop(next(iter(_FIRSTS)))
    return _first_day(found, tz)


# (model scope, versions of the timed types) → their earliest instants
_FIRSTS: dict[Any, list[Any]] = {}
_FIRSTS_LOCK = threading.Lock()


def _first_day(found: list[Any], tz: ZoneInfo) -> date | None:
    known = [v if v.tzinfo else v.replace(tzinfo=UTC) for v in found if v is not None]
    return min(known).astimezone(tz).date() if known else None


def resolve(
    request: Request, settings: Settings, tables: Tables | None = None
) -> tuple[list[Metric], date, date, datetime]:
    """Check a request; give its metrics, range and clock, or a ConfigError saying what's wrong.

    With grain `all` and no `--from`, the range is all history (DESIGN §4 v2): from the day of the
    earliest stored record in `tables` to today; without `tables`, the default range."""
    if request.grain not in GRAINS:
        raise ConfigError(f"unknown grain {request.grain!r}: expected one of {', '.join(GRAINS)}")
    bad = [k for k in request.by if k not in KEYS]
    if bad:
        raise ConfigError(f"unknown --by {bad[0]!r}: expected one of {', '.join(KEYS)}")
    if len(set(request.by)) != len(request.by):
        raise ConfigError("each --by key may be given once")
    try:
        metrics = catalog.select(request.metrics)
    except KeyError as exc:
        raise ConfigError(
            f"unknown metric {exc.args[0]!r}: see `heatlens report --help` or "
            "docs/metrics.md for the catalog"
        ) from None
    for name, day in (("--from", request.start), ("--to", request.end)):
        if day is not None:
            check_day(day, name)
    now = request.now or datetime.now(UTC)
    tz = ZoneInfo(settings.timezone)
    start, end = default_range(request.grain, tz, now)
    if request.end is not None:
        end = request.end
        start = default_range(request.grain, tz, datetime.combine(end, time(0), tzinfo=tz))[0]
    if request.grain == "all" and request.start is None and tables is not None:
        if request.end is None:
            end = max(now.astimezone(tz).date(), start + timedelta(days=1))
        first = history_start(tables, tz)
        start = min(first, end - timedelta(days=1)) if first is not None else start
    start = request.start or start
    if start >= end:
        raise ConfigError(f"--from {start} must be before --to {end}")
    if too_many_periods(request.grain, start, end):
        raise ConfigError(
            f"--from {start} --to {end} is more than {MAX_PERIODS:,} periods of a "
            f"{request.grain}: use a coarser --grain or a shorter range"
        )
    return metrics, start, end, now


def compute(tables: Tables, request: Request, settings: Settings) -> Report:
    """The report for `request` over the store's records."""
    return compute_all(tables, [request], settings)[0]


def compute_all(tables: Tables, requests: Sequence[Request], settings: Settings) -> list[Report]:
    """The reports for `requests` (a page's overall and per-segment views, say): every metric
    family of all of them runs in ONE query (heatlens.metrics.batch.Query)."""
    query = Query()
    pending: list[_Pending] = []
    try:
        for request in requests:
            metrics, start, end, now = resolve(request, settings, tables)
            frame = Frame.load(tables, settings)
            spans = periods(request.grain, start, end, frame.tz)
            ctx = MetricContext(
                frame, spans, request.grain, request.by, now, quiet=not request.warnings
            )
            pending.append(_Pending(ctx, request, metrics, start, end))
            _families(pending[-1], query)
        query.run()
        return [_report(p, settings) for p in pending]
    finally:
        for p in pending:
            p.release()


@dataclass
class _Pending:
    """A report whose families' parts are in a query not yet run."""

    ctx: MetricContext
    request: Request
    metrics: list[Metric]
    start: date
    end: date
    wanted: list[Metric] = field(default_factory=list)
    # the families' stats, keyed by metric id: filled when the query runs
    found: list[dict[str, Stats]] = field(default_factory=list)
    happy: MetricContext | None = None  # the happiness context, segmented by survey too
    wave_ts: dict[str, datetime | None] = field(default_factory=dict)

    def release(self) -> None:
        if self.happy is not None and self.happy is not self.ctx:
            self.happy.release()
        self.ctx.release()


def warm(tables: Tables, settings: Settings, now: datetime | None = None) -> int | None:
    """Build the model of `tables`'s store for `settings` now, before any report asks for it
    (a server does this at start and after each burst of writes): every metric of the default
    monthly range, unsegmented, so each part of the model (registries, resolved usage of all
    history, deployments and their links, lead-time pairs, the survey waves' suppression
    decisions, the rules' facts) is built or found current. Returns the data version the model
    was built at — a write landing meanwhile may make it older than the store's — or None when
    the store keeps no model tables (nothing to build ahead: each report builds its own)."""
    if not isinstance(tables, ModelStore) or tables.dialect != "duckdb":
        return None
    version = tables.type_versions()[""]
    compute(tables, Request(grain="month", now=now), settings)
    return version


def _families(p: _Pending, query: Query) -> None:
    """Add the parts of every family `p` asks for to `query` (each family's stats are filled
    when it runs)."""
    ctx, request = p.ctx, p.request
    p.wanted = [m for m in p.metrics if set(request.by) <= m.keys]
    family: dict[str, list[Metric]] = {"usage": [], "delivery": [], "happiness": []}
    for m in p.wanted:
        family[m.family].append(m)
    if family["usage"]:
        p.found.append(usage_stats(ctx, family["usage"], query))
    if family["delivery"]:
        p.found.append(delivery_stats(ctx, family["delivery"], query))
    p.wave_ts = waves(ctx) if (family["happiness"] or "survey" in request.by) else {}
    # Happiness is never pooled across waves (DESIGN §4 v2): it is computed as if `survey` were
    # always a `--by` key, so every happiness row names its wave in its segment.
    if family["happiness"]:
        p.happy = _happiness_context(ctx)
        # refused outright only when the request names nothing but happiness metrics
        only = bool(request.metrics) and all(m.family == "happiness" for m in p.metrics)
        check_grain(p.happy, only)
        p.found.append(happiness_stats(p.happy, family["happiness"], p.wave_ts, query))


def _report(p: _Pending, settings: Settings) -> Report:
    """The report of `p` once its query ran: the common rules, rows and warnings."""
    ctx, request = p.ctx, p.request
    frame, now = ctx.frame, ctx.now
    stats: dict[str, Stats] = {}
    for found in p.found:
        stats.update(found)
    happy = p.happy or ctx
    rows: list[Row] = []
    for m in p.wanted:
        rows += _rows(
            happy if m.dimension == "happiness" else ctx, m, stats.get(m.id, {}), p.wave_ts
        )
    ctx.warn(
        "suppressed_segments",
        "happiness segments with fewer respondents than the survey's `k` were suppressed",
        sum(r.suppressed for r in rows),
    )
    ctx.warn(
        "unknown_services",
        "`service` ids named by records with no `service` record (ingest one to give an owner)",
        lambda: _unknown_services(frame),
    )
    warnings = [
        ReportWarning(code, *ctx.warnings[code]) for code in WARNING_ORDER if code in ctx.warnings
    ]
    return Report(
        request.grain,
        p.start,
        p.end,
        settings.timezone,
        request.by,
        rows,
        warnings,
        generated_at=now,
    )


def _happiness_context(ctx: MetricContext) -> MetricContext:
    """`ctx` segmented by `survey` too (its own memo; warnings shared with the report's)."""
    if "survey" in ctx.by:
        return ctx
    return replace(ctx, by=(*ctx.by, "survey"), _seen=None, _memo={}, omissions={})


def _rows(
    ctx: MetricContext, m: Metric, stats: Stats, wave_ts: dict[str, datetime | None]
) -> list[Row]:
    """The common rules, per period: zero-fill, launch, anonymity, tiers, completeness."""
    out: list[Row] = []
    tiered = ctx.grain in ("month", "quarter", "all") and bool({"team", "service"} & set(ctx.by))
    min_n = ctx.settings.tier_min_n if m.id in TIER_NEEDS_N else 0
    # rows that incidents may still link to are not final until the link window has passed
    window = ctx.settings.link_window
    settle = timedelta(0)
    if m.id in LINKED:
        settle = UNBOUNDED_SETTLE if window is None else window
    delivering = m.dimension == "dora" and "team" in ctx.by
    team_at = ctx.by.index("team") if delivering else 0
    omitted = 0
    # the stats of each period, sorted out once (not a scan of all stats per period)
    by_period: dict[date, dict[SegmentKey, Stat]] = {}
    for (d, c), s in stats.items():
        by_period.setdefault(d, {})[c] = s
    # a cell's sort key and segment are the same in every period and metric: made once per
    # report (a W52 report by team has ~500,000 rows of ~500 cells)
    orders: dict[SegmentKey, tuple[tuple[bool, str], ...]] = ctx.remember("cell_orders", dict)
    segments: dict[SegmentKey, dict[str, Any]] = ctx.remember("cell_segments", dict)

    def order(cell: SegmentKey) -> tuple[tuple[bool, str], ...]:
        key = orders.get(cell)
        if key is None:
            key = orders[cell] = _cell_order(cell)
        return key

    def segment(cell: SegmentKey) -> dict[str, Any]:
        found = segments.get(cell)
        if found is None:
            found = segments[cell] = dict(zip(ctx.by, cell, strict=True))
        return found

    for p in ctx.spans:
        cells: dict[SegmentKey, Stat] = dict(by_period.get(p.start, {}))
        if m.zero_filled:
            for cell in ctx.domain_cells(p, wave_ts, delivery=m.dimension == "dora"):
                cells.setdefault(cell, Stat(0, 0))
        complete = not p.end_utc + settle > ctx.now
        cells = {c: s for c, s in cells.items() if ctx.launched(p, c)}
        if m.id in ctx.omissions:
            rule, code, message = ctx.omissions[m.id]
            kept = {c: s for c, s in cells.items() if not rule(p, c)}
            omitted += len(cells) - len(kept)
            cells = kept
        if delivering:
            # teams that own no service and appear on no deployment get no DORA rows at all
            teams = ctx.delivery_teams()
            cells = {c: s for c, s in cells.items() if c[team_at] is None or c[team_at] in teams}
        hidden = set()
        if m.dimension == "happiness":
            # decided once per wave on its atomic cells, the same in every query (anonymity.py)
            hidden = hidden_cells(ctx, m.id, p, cells)
        for cell in sorted(cells, key=order):
            s = cells[cell]
            if cell in hidden:
                out.append(
                    Row(
                        m.id,
                        p.start,
                        segment(cell),
                        None,
                        None,
                        suppressed=True,
                        complete=complete and not s.open,
                        k=s.k,
                    )
                )
                continue
            tier = None
            if tiered and (s.n or 0) >= min_n:
                tier = tier_of(m.id, s.value, ctx.settings.tier_year)
            out.append(
                Row(
                    m.id,
                    p.start,
                    segment(cell),
                    s.value,
                    s.n,
                    s.ci,
                    tier=tier,
                    complete=complete and not s.open,
                    x=s.x,
                    d=s.d,
                    k=s.k or None,
                )
            )
    if m.id in ctx.omissions:
        _, code, message = ctx.omissions[m.id]
        ctx.warn(code, message, omitted)
    return out


def _cell_order(cell: SegmentKey) -> tuple[tuple[bool, str], ...]:
    return tuple((v is not None, "" if v is None else str(v)) for v in cell)


def _unknown_services(frame: Frame) -> int:
    def build() -> int:
        named: set[Any] = set()
        for table in ("usage", "deployment", "change", "incident"):
            t = frame.table(table)
            named |= set(t.select(s=t.service).distinct().to_pyarrow().column("s").to_pylist())
        return len(named - {None} - set(frame.services))

    types = ("usage", "deployment", "change", "incident", "service")
    return int(frame.shared("unknown_services", types, build))
