"""What every metric reads: the store's tables, the registries, and the resolution rules
(DESIGN §3).

Registries (teams, services, capabilities, surveys, memberships) are small, so they are read once
into Python and given back to the engine as small tables: each team's top-level group, membership
intervals without overlaps (so one interval join resolves an actor's team at a time), each survey
question's capability. The large tables (usage, deployments, changes, incidents, responses) stay
in the backend and are only ever expressions.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import ibis
import ibis.expr.datatypes as dt
import pyarrow as pa

from heatlens.metrics.globs import matches_expr
from heatlens.metrics.model import REGISTRIES, USAGE, ModelView
from heatlens.metrics.model import view as model_view
from heatlens.settings import Settings

NEVER = datetime(1970, 1, 1, tzinfo=UTC)
FOREVER = datetime(2200, 1, 1, tzinfo=UTC)


class Tables(Protocol):
    """Anything giving the store's tables as Ibis tables (a Store does)."""

    def table(self, name: str) -> Any: ...


def memtable(columns: dict[str, list[Any]], types: dict[str, pa.DataType]) -> Any:
    """A small table for the engine, typed even when empty."""
    return ibis.memtable(pa.table({k: pa.array(v, types[k]) for k, v in columns.items()}))


UTC_TS = pa.timestamp("us", tz="UTC")
# the columns of resolved usage the usage metrics read (and `bot`)
RESOLVED_USAGE = (
    "ts",
    "capability",
    "action",
    "actor",
    "team",
    "group",
    "service",
    "outcome",
    "duration_s",
)
LARGE = 200_000


def _rows(table: Any, columns: list[str]) -> list[dict[str, Any]]:
    return table.select(*columns).to_pyarrow().to_pylist()


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass
class Frame:
    """The inputs of one report: tables, settings, registries and the derived lookup tables."""

    tables: Tables
    settings: Settings
    teams: dict[str, dict[str, Any]] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    capabilities: dict[str, dict[str, Any]] = field(default_factory=dict)
    surveys: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)  # team → top-level group
    group_ids: set[str] = field(default_factory=set)  # teams that are some team's parent
    large: bool = False  # enough usage that intermediate tables are worth materialising
    # the store's model for these settings (heatlens.metrics.model), when the store keeps one
    model: ModelView | None = None

    @classmethod
    def load(cls, tables: Tables, settings: Settings) -> Frame:
        """Read the registries once per data version (from the model when the store keeps
        one; a frame's registries are shared: never change them)."""
        model = model_view(tables, settings)
        if model is None:
            return cls._read(tables, settings)
        frame = model.value(
            "registries", (*REGISTRIES, "usage"), lambda: cls._read(tables, settings)
        )
        return replace(frame, tables=tables, model=model)

    def shared(self, name: str, types: tuple[str, ...], build: Callable[[], Any]) -> Any:
        """A Python value built from the record types `types`: once per their versions when the
        store keeps a model, else every time."""
        return build() if self.model is None else self.model.value(name, types, build)

    def shared_table(self, name: str, types: tuple[str, ...], build: Callable[[], Any]) -> Any:
        """A table built from `types`, kept by the model (None when the store keeps none)."""
        return None if self.model is None else self.model.table(name, types, build)

    @classmethod
    def _read(cls, tables: Tables, settings: Settings) -> Frame:
        frame = cls(tables, settings)
        t = tables.table
        for r in _rows(t("team"), ["id", "parent", "created_at", "archived_at"]):
            frame.teams[r["id"]] = {
                **r,
                "created_at": _utc(r["created_at"]),
                "archived_at": _utc(r["archived_at"]),
            }
        for r in _rows(t("service"), ["id", "team", "created_at"]):
            frame.services[r["id"]] = {**r, "created_at": _utc(r["created_at"])}
        for r in _rows(t("capability"), ["id", "launched_at", "eligible"]):
            frame.capabilities[r["id"]] = {**r, "launched_at": _utc(r["launched_at"])}
        for r in _rows(
            t("survey"), ["id", "opens_at", "closes_at", "k", "questions", "continuous"]
        ):
            frame.surveys[r["id"]] = {
                **r,
                "opens_at": _utc(r["opens_at"]),
                "closes_at": _utc(r["closes_at"]),
                "questions": json.loads(r["questions"] or "[]"),
            }
        frame.group_ids = {tm["parent"] for tm in frame.teams.values() if tm["parent"]}
        # an engine that re-plans each query from its sources (Spark) asks for materialising
        frame.large = bool(getattr(tables, "materialise", False)) or (
            int(t("usage").count().to_pyarrow().as_py()) > LARGE
        )
        frame.groups = {tid: frame.group_of(tid) for tid in frame.teams}
        return frame

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.settings.timezone)

    def table(self, name: str) -> Any:
        return self.tables.table(name)

    def group_of(self, team: str) -> str:
        """Top-level ancestor; a team without parent, or unknown, is its own group."""
        seen, cur = {team}, team
        while True:
            parent = (self.teams.get(cur) or {}).get("parent")
            if parent is None or parent in seen:
                return cur
            seen.add(parent)
            cur = parent

    # -- lookup tables for the engine ---------------------------------------------------------

    def group_table(self) -> Any:
        return memtable(
            {"g_team": list(self.groups), "g_group": list(self.groups.values())},
            {"g_team": pa.string(), "g_group": pa.string()},
        )

    def owner_table(self) -> Any:
        svc = self.table("service")
        return svc.select(o_service=svc.id, o_team=svc.team)

    def with_group(self, t: Any) -> Any:
        """Add `group` for column `team`: its top-level group, else the team itself."""
        g = self.group_table()
        joined = t.left_join(g, t.team == g.g_team)
        return joined.mutate(group=ibis.coalesce(joined.g_group, joined.team)).drop(
            "g_team", "g_group"
        )

    def membership_intervals(self) -> Any:
        """(actor, start, end, team) with no overlaps per actor: where memberships overlap, the
        one with the latest `from` wins (ties: lowest team id); `to` is exclusive."""
        kept = self.shared_table("memberships", ("membership",), self._membership_intervals)
        return self._membership_intervals() if kept is None else kept

    def _membership_intervals(self) -> Any:
        rows = _rows(self.table("membership"), ["actor", "team", "from", "to"])
        by_actor: dict[str, list[tuple[datetime, datetime, str]]] = defaultdict(list)
        for r in rows:
            start = _utc(r["from"]) or NEVER
            end = _utc(r["to"]) or FOREVER
            if start < end:
                by_actor[r["actor"]].append((start, end, r["team"]))
        out: dict[str, list[Any]] = {"m_actor": [], "m_start": [], "m_end": [], "m_team": []}
        for actor, spans in by_actor.items():
            cuts = sorted({t for s, e, _ in spans for t in (s, e)})
            for lo, hi in itertools.pairwise(cuts):
                active = [(s, team) for s, e, team in spans if s <= lo and hi <= e]
                if not active:
                    continue
                # latest start wins; among equal starts the lowest team id
                team = min(active, key=lambda a: (-a[0].timestamp(), a[1]))[1]
                if (
                    out["m_actor"]
                    and out["m_actor"][-1] == actor
                    and out["m_team"][-1] == team
                    and out["m_end"][-1] == lo
                ):
                    out["m_end"][-1] = hi
                    continue
                for key, value in zip(out, (actor, lo, hi, team), strict=True):
                    out[key].append(value)
        return memtable(
            out, {"m_actor": pa.string(), "m_start": UTC_TS, "m_end": UTC_TS, "m_team": pa.string()}
        )

    def question_capabilities(self) -> Any:
        """(survey, question) → capability, from the surveys' question lists."""
        rows: dict[str, list[Any]] = {"q_survey": [], "q_question": [], "q_capability": []}
        for sid, s in self.surveys.items():
            for q in s["questions"]:
                rows["q_survey"].append(sid)
                rows["q_question"].append(q.get("id"))
                rows["q_capability"].append(q.get("capability"))
        return memtable(
            rows, {"q_survey": pa.string(), "q_question": pa.string(), "q_capability": pa.string()}
        )

    # -- resolved record tables ---------------------------------------------------------------

    def usage(self, since: datetime | None = None, until: datetime | None = None) -> Any:
        """Usage with `team` resolved (own → service owner → actor's membership) and `group`,
        optionally only records with `ts` in [since, until) (filtered before the joins)."""
        u = self.table("usage")
        if since is not None:
            u = u.filter(u.ts >= self.literal_ts(since))
        if until is not None:
            u = u.filter(u.ts < self.literal_ts(until))
        owners = self.owner_table()
        u = u.left_join(owners, u.service == owners.o_service)
        u = u.mutate(team=ibis.coalesce(u.team, u.o_team)).drop("o_service", "o_team")
        m = self.membership_intervals()
        # An equality on actor only (no `team IS NULL` here): DuckDB then hash-joins instead of
        # comparing every row with every interval; intervals never overlap per actor, so at most
        # one matches, and coalesce keeps a record's own team.
        u = u.left_join(m, (u.actor == m.m_actor) & (u.ts >= m.m_start) & (u.ts < m.m_end))
        u = u.mutate(team=ibis.coalesce(u.team, u.m_team)).drop(
            "m_actor", "m_start", "m_end", "m_team"
        )
        return self.with_group(u)

    def kept_usage(self) -> Any | None:
        """All usage resolved (`usage()`) with `bot`, only the columns the usage metrics read:
        the model's table, built once per version of the tables it reads; None when the store
        keeps no model tables."""

        def build() -> Any:
            u = self.usage().select(*RESOLVED_USAGE)
            return u.mutate(bot=matches_expr(u.actor, self.settings.bot_actors))

        return self.shared_table("usage_resolved", USAGE, build)

    def production(self, environment: Any) -> Any:
        """Ibis condition: the environment matches a `production_environments` glob."""
        return matches_expr(environment, self.settings.production_environments)

    def dora_deployments(self) -> Any:
        """Successful production deployments, with `environment` lower-cased, `team` (own, else
        owner) and `group`."""
        d = self.table("deployment")
        d = d.filter((d.result == "success") & self.production(d.environment))
        d = d.mutate(environment=d.environment.lower())
        owners = self.owner_table()
        d = d.left_join(owners, d.service == owners.o_service)
        d = d.mutate(team=ibis.coalesce(d.team, d.o_team)).drop("o_service", "o_team")
        return self.with_group(d)

    def excluded_deployments(self) -> Any:
        """Successful deployments to environments that are not production (DESIGN §4 v2)."""
        d = self.table("deployment")
        return d.filter((d.result == "success") & ~self.production(d.environment))

    def incidents(self) -> Any:
        """Incidents that count (of a `failure_severities` severity, or without one) with `team`
        (own, else the owner of their service) and `group`."""
        i = self.table("incident")
        if self.settings.failure_severities:
            i = i.filter(
                i.severity.isnull() | i.severity.lower().isin(self.settings.failure_severities)
            )
        owners = self.owner_table()
        i = i.left_join(owners, i.service == owners.o_service)
        i = i.mutate(team=ibis.coalesce(i.team, i.o_team)).drop("o_service", "o_team")
        return self.with_group(i)

    # -- time-dependent registry facts ----------------------------------------------------------

    def team_exists(self, team: dict[str, Any], start: datetime, end: datetime) -> bool:
        created, archived = team.get("created_at"), team.get("archived_at")
        return (created is None or created < end) and (archived is None or archived > start)

    def literal_ts(self, value: datetime) -> Any:
        return ibis.literal(value, type=dt.Timestamp(timezone="UTC"))
