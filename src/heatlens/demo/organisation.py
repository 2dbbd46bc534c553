"""The demo organisation: teams, people, services, capabilities, their adoption and usage.

Everything is drawn with NumPy over whole arrays (team × capability × day grids, then one row per
record), so ten million usage records take seconds. Delivery (DORA) and surveys build on the `Org`
registry made here; `generate` assembles every record type as an Arrow table and `write` puts them
all in one Parquet or NDJSON file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from heatlens.model import BY_NAME, Kind

US = 1_000_000
HOUR = 3600 * US
DAY = 24 * HOUR
# a day index meaning "never": beyond any window, yet safe to convert to µs
NEVER = 1 << 20
OPEN_FROM, OPEN_TO = np.iinfo(np.int64).min, np.iinfo(np.int64).max
TIMESTAMP = pa.timestamp("us", tz="UTC")
ROW_GROUP = 1 << 20
# relative activity per hour of the day (UTC): people work roughly 08–19
HOURS = np.array(
    [1, 1, 1, 1, 1, 2, 4, 12, 40, 70, 80, 78, 55, 66, 78, 76, 66, 45, 25, 14, 8, 5, 3, 2]
)
HOURS_P = HOURS / HOURS.sum()


@dataclass(frozen=True)
class OrgSpec:
    """What to generate: the size of the organisation, its history and the random seed."""

    teams: int = 36  # stream-aligned teams (plus a few groups on top)
    days: int = 365  # history length, ending at `end`
    end: date | None = None  # default: today (UTC)
    seed: int = 7
    usage_scale: float = 1.0  # multiplies usage volume; generate() picks it to reach a row count


@dataclass(frozen=True)
class Capability:
    """How one platform capability is launched, adopted, used and liked in the demo."""

    id: str
    name: str
    description: str
    launch: float  # launch date as a fraction of the window after its start (negative: before)
    ceiling: float  # share of (eligible) teams that ever adopt it
    midpoint: float  # days from launch until half of its adopters have adopted
    spread: float  # logistic scale of adoption delays, in days
    rate: float  # uses per team-weekday once fully adopted, at usage scale 1
    # (action, weight, median seconds of a success, share of records without an outcome)
    actions: tuple[tuple[str, float, float, float], ...]
    outcomes: tuple[float, float, float, float]  # success, failure, error, abandoned
    sigma: float = 1.1  # log-normal spread of durations: p90/p50 = exp(1.28 sigma)
    service_share: float = 0.9  # records that name a service
    mandated: bool = False
    eligible_share: float | None = None  # offered only to this share of teams
    churn: float = 0.0  # share of adopters that stop using it
    matures: bool = True  # platform errors fall and tasks get faster over its first year
    attributes: tuple[str, ...] = ()
    csat: tuple[float, float] | None = None  # survey: base latent score, gain once mature


# fmt: off
CAPABILITIES: tuple[Capability, ...] = (
    Capability("ci", "CI pipelines", "Shared build and test pipelines", -0.1, 0.97, 120, 30, 22,
               (("build", 0.55, 420, 0.01), ("test", 0.45, 540, 0.01)), (0.84, 0.11, 0.035, 0.015),
               sigma=1.05, service_share=0.95, csat=(3.2, 0.9), attributes=(
                   '{"runner":"linux"}', '{"runner":"linux"}', '{"runner":"arm64"}',
                   '{"runner":"macos"}')),
    Capability("cd", "Continuous delivery", "Automated deployments to every environment", 0.05,
               0.8, 130, 35, 6, (("deploy", 0.85, 300, 0.01), ("promote", 0.1, 180, 0.01),
                                 ("rollback", 0.05, 120, 0.01)), (0.92, 0.04, 0.025, 0.015),
               sigma=1.05, service_share=0.97, csat=(3.0, 1.1),
               attributes=('{"strategy":"rolling"}', '{"strategy":"canary"}')),
    Capability("secrets", "Secrets manager", "Managed secrets with rotation", 0.22, 1.0, 25, 7, 3,
               (("read", 0.8, 2, 0.02), ("rotate", 0.2, 40, 0.0)), (0.97, 0.02, 0.008, 0.002),
               sigma=1.1, service_share=0.6, mandated=True, csat=(3.7, 0.4)),
    Capability("k8s-runtime", "Kubernetes runtime", "Managed clusters for container workloads",
               -0.15, 0.95, 150, 35, 4, (("apply", 0.6, 50, 0.0), ("scale", 0.25, 20, 0.0),
                                         ("rollout-restart", 0.15, 90, 0.0)),
               (0.9, 0.06, 0.03, 0.01), eligible_share=0.6),
    Capability("observability", "Observability", "Metrics, logs, traces and alerting", 0.12, 0.98,
               35, 10, 8, (("query", 0.6, 4, 0.0), ("dashboard", 0.3, 15, 0.0),
                           ("alert-edit", 0.1, 60, 0.0)), (0.95, 0.02, 0.02, 0.01),
               sigma=1.2, mandated=True, csat=(3.3, 0.7)),
    Capability("scaffolder", "Service scaffolder", "Golden-path templates for new services", 0.3,
               0.75, 70, 20, 0.25, (("create-service", 0.3, 900, 0.0),
                                    ("add-component", 0.7, 300, 0.0)),
               (0.87, 0.05, 0.05, 0.03), service_share=0.7, churn=0.08),
    # the quality problem: well adopted, but a fifth of its tasks fail on the platform's side
    Capability("preview-envs", "Preview environments", "An environment per pull request", 0.4,
               0.7, 100, 25, 3, (("create", 0.6, 480, 0.0), ("destroy", 0.4, 60, 0.0)),
               (0.62, 0.1, 0.18, 0.1), sigma=1.1, churn=0.12, matures=False, csat=(2.6, 0.1),
               attributes=('{"size":"small"}', '{"size":"small"}', '{"size":"large"}')),
    # the awareness problem: reliable and liked, yet few teams know about it
    Capability("feature-flags", "Feature flags", "Runtime feature toggles", 0.35, 0.22, 110, 25, 2,
               (("toggle", 0.7, 15, 0.0), ("create-flag", 0.3, 60, 0.0)),
               (0.96, 0.02, 0.01, 0.01), service_share=0.8, churn=0.05, csat=(4.1, 0.2)),
    Capability("docs-portal", "Developer portal", "Docs, service catalog and search", -0.9, 0.95,
               60, 30, 5, (("search", 0.6, 40, 0.02), ("view", 0.4, 120, 0.6)),
               (0.9, 0.0, 0.01, 0.09), sigma=1.2, service_share=0.0, churn=0.06, matures=False),
)
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("commerce", "Commerce", ("payments", "checkout", "catalog", "pricing", "orders", "cart",
                              "promotions", "invoicing", "subscriptions", "tax")),
    ("data", "Data", ("data-platform", "analytics", "ml-serving", "search", "recommendations",
                      "experimentation", "reporting", "ingestion", "forecasting", "data-quality")),
    ("core-infra", "Core infrastructure", ("networking", "identity", "storage", "messaging",
                                           "edge", "databases", "compute", "sre", "dns",
                                           "build-cache")),
    ("growth", "Growth", ("onboarding", "notifications", "marketing-site", "referrals",
                          "lifecycle", "seo", "ads", "loyalty", "email", "landing-pages")),
    ("mobile", "Mobile", ("ios", "android", "mobile-api", "app-shell", "push", "mobile-web",
                          "wallet-app", "offline-sync", "app-releases", "widgets")),
    ("customer", "Customer", ("support-tools", "crm", "help-center", "accounts", "trust-safety",
                              "fraud", "billing-ops", "chat", "feedback", "community")),
)
# fmt: on
SERVICE_SUFFIXES = ("api", "web", "worker", "events", "gateway", "scheduler", "admin", "sync")
ACRONYMS = {"ml": "ML", "sre": "SRE", "ios": "iOS", "seo": "SEO", "crm": "CRM", "api": "API"}


@dataclass
class Org:
    """The registry every domain draws from: times in µs since the epoch, teams as indices."""

    start: int  # window start (µs, midnight UTC)
    days: int
    team_ids: list[str]  # stream-aligned teams; groups are not in here
    team_group: np.ndarray
    group_ids: list[str]
    team_created: np.ndarray  # µs; OPEN_FROM when the team existed before the window
    team_activity: np.ndarray  # how busy each team is, relative to a team of eight
    actors: list[str]
    mem_actor: np.ndarray  # memberships, sorted by team
    mem_team: np.ndarray
    mem_from: np.ndarray  # µs; OPEN_FROM when unbounded
    mem_to: np.ndarray  # µs; OPEN_TO when unbounded
    svc_ids: list[str]
    svc_team: np.ndarray  # services, sorted by team; a team's first exists when the team starts
    svc_created: np.ndarray  # µs
    svc_repo: list[str]
    svc_tier: list[str]
    launch: np.ndarray  # day index of each capability's launch (negative: before the window)
    eligible: list[list[str] | None]
    adopt: np.ndarray  # (team, capability) day index of adoption; NEVER when it does not adopt
    stop: np.ndarray  # (team, capability) day index of churn; NEVER when it keeps using it
    team_archived: np.ndarray  # µs; OPEN_TO while the team exists
    caps: tuple[Capability, ...] = CAPABILITIES
    stay_idx: np.ndarray = field(init=False, repr=False)
    _ranges: dict[str, tuple[np.ndarray, np.ndarray]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # memberships that span their team's whole life: always a valid pick
        self.stay_idx = np.flatnonzero(
            (self.mem_from <= self.team_created[self.mem_team]) & (self.mem_to == OPEN_TO)
        )
        self._ranges = {
            "members": _team_ranges(self.mem_team, len(self.team_ids)),
            "stayers": _team_ranges(self.mem_team[self.stay_idx], len(self.team_ids)),
            "services": _team_ranges(self.svc_team, len(self.team_ids)),
        }

    @property
    def end(self) -> int:
        return self.start + self.days * DAY

    def cap(self, cap_id: str) -> int:
        """Index of a capability by id."""
        return next(i for i, c in enumerate(self.caps) if c.id == cap_id)

    def day_start(self, day: np.ndarray) -> np.ndarray:
        """µs of the start of each day index."""
        return self.start + np.asarray(day, dtype=np.int64) * DAY

    def day_factor(self, weekend: float) -> np.ndarray:
        """Relative activity of each day: weekends and the year-end holidays are quiet."""
        dates = (self.start // DAY + np.arange(self.days)).astype("datetime64[D]")
        months = dates.astype("datetime64[M]")
        month = months.astype(np.int64) % 12 + 1
        dom = (dates - months.astype("datetime64[D]")).astype(np.int64) + 1
        holiday = ((month == 12) & (dom >= 24)) | ((month == 1) & (dom == 1))
        weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        return np.where(weekday >= 5, weekend, 1.0) * np.where(holiday, 0.3, 1.0)

    def members(self, team: np.ndarray, ts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Actor index of a random member of each `team` at each `ts`."""
        k = _pick(self._ranges["members"], team, rng)
        away = (ts < self.mem_from[k]) | (ts >= self.mem_to[k])
        k[away] = self.stay_idx[_pick(self._ranges["stayers"], team[away], rng)]
        return self.mem_actor[k]

    def services(self, team: np.ndarray, ts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Index of a random service of each `team` that exists at each `ts`."""
        first, _ = self._ranges["services"]
        k = _pick(self._ranges["services"], team, rng)
        return np.where(self.svc_created[k] <= ts, k, first[team])


def _team_ranges(sorted_team: np.ndarray, n_teams: int) -> tuple[np.ndarray, np.ndarray]:
    count = np.bincount(sorted_team, minlength=n_teams)
    return np.cumsum(count) - count, count


def _pick(
    ranges: tuple[np.ndarray, np.ndarray], team: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    first, count = ranges
    return first[team] + (rng.random(team.size, dtype=np.float32) * count[team]).astype(np.int64)


def window_start(spec: OrgSpec) -> int:
    """µs of midnight UTC `spec.days` before the end date."""
    end = spec.end or datetime.now(UTC).date()
    return int(datetime.combine(end, time(), UTC).timestamp()) * US - spec.days * DAY


def build_org(spec: OrgSpec, rng: np.random.Generator) -> Org:
    """Draw teams, people, services, capabilities and each team's adoption dates."""
    if spec.teams < 1 or spec.days < 1:
        raise ValueError(f"a demo organisation needs a team and a day, not {spec}")
    n_teams, days, start = spec.teams, spec.days, window_start(spec)
    n_groups = min(len(GROUPS), n_teams, max(4, round(n_teams / 7)))
    team_group = np.arange(n_teams) % n_groups
    team_ids = []
    for i, g in enumerate(team_group):
        pool, j = GROUPS[g][2], i // n_groups
        team_ids.append(pool[j % len(pool)] + (f"-{j // len(pool) + 1}" if j >= len(pool) else ""))
    team_created = np.full(n_teams, OPEN_FROM)
    if n_teams >= 12:  # one team forms during the window, so the eligible teams change
        team_created[-1] = start + int(0.35 * days) * DAY
    formed = team_created > OPEN_FROM

    # people: 6–10 per team; about a third of the older teams lose someone to another team
    size = rng.integers(6, 11, n_teams)
    mem_team = np.repeat(np.arange(n_teams), size)
    mem_actor = np.arange(mem_team.size)
    mem_from = team_created[mem_team]
    mem_to = np.full(mem_team.size, OPEN_TO)
    n_old = max(int((~formed).sum()), 1)
    leaves = (size >= 7) & ~formed & (rng.random(n_teams) < 0.35) & (n_old > 1)
    movers = (np.cumsum(size) - size)[leaves]
    dest = (mem_team[movers] + rng.integers(1, max(n_old, 2), movers.size)) % n_old
    moved = start + rng.integers(int(0.2 * days), int(0.8 * days) + 1, movers.size) * DAY
    mem_to[movers] = moved
    order = np.argsort(np.concatenate([mem_team, dest]), kind="stable")
    mem_team = np.concatenate([mem_team, dest])[order]
    mem_actor = np.concatenate([mem_actor, mem_actor[movers]])[order]
    mem_from = np.concatenate([mem_from, moved])[order]
    mem_to = np.concatenate([mem_to, np.full(movers.size, OPEN_TO)])[order]

    # services: 2–4 per team, about a fifth of them created during the window
    n_svc = rng.choice([2, 3, 3, 4], n_teams)
    svc_team = np.repeat(np.arange(n_teams), n_svc)
    rank = np.arange(svc_team.size) - np.repeat(np.cumsum(n_svc) - n_svc, n_svc)
    old = start - rng.integers(100, 1500, svc_team.size) * DAY
    new = start + rng.integers(int(0.05 * days), int(0.8 * days) + 1, svc_team.size) * DAY
    svc_created = np.where((rng.random(svc_team.size) < 0.2) & (rank > 0), new, old)
    in_formed = team_created[svc_team] + (1 + 9 * rank) * DAY
    svc_created = np.where(formed[svc_team], in_formed, svc_created)
    suffixes = [rng.permutation(len(SERVICE_SUFFIXES)) for _ in range(n_teams)]
    svc_ids = [
        f"{team_ids[t]}-{SERVICE_SUFFIXES[suffixes[t][k]]}"
        for t, k in zip(svc_team, rank, strict=True)
    ]
    # one group keeps all its code in one repository
    monorepo = [GROUPS[team_group[t]][0] == "data" for t in svc_team]
    svc_repo = [
        "acme/data-monorepo" if mono else f"acme/{s}"
        for s, mono in zip(svc_ids, monorepo, strict=True)
    ]
    tiers = rng.choice(["tier-1", "tier-2", "tier-2", "tier-3"], svc_team.size)

    # one older team is disbanded three quarters into the window: archiving is not churn
    team_archived = np.full(n_teams, OPEN_TO)
    if n_teams >= 12:
        team_archived[-2] = start + int(0.75 * days) * DAY

    team_day = np.where(formed, (team_created - start) // DAY + 7, -NEVER)
    launch, eligible, adopt, stop = _adoption(team_ids, team_day, days, rng)
    return Org(
        start=start,
        days=days,
        team_ids=team_ids,
        team_group=team_group,
        group_ids=[g[0] for g in GROUPS[:n_groups]],
        team_created=team_created,
        team_activity=size / 8 * rng.lognormal(0, 0.25, n_teams),
        actors=[f"u{i:04d}" for i in range(int(size.sum()))],
        mem_actor=mem_actor,
        mem_team=mem_team,
        mem_from=mem_from,
        mem_to=mem_to,
        svc_ids=svc_ids,
        svc_team=svc_team,
        svc_created=svc_created,
        svc_repo=svc_repo,
        svc_tier=[str(t) for t in tiers],
        launch=launch,
        eligible=eligible,
        adopt=adopt,
        stop=stop,
        team_archived=team_archived,
    )


def _adoption(
    team_ids: list[str], team_day: np.ndarray, days: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[list[str] | None], np.ndarray, np.ndarray]:
    """Launch days, eligible lists, and per team × capability adoption and churn days.

    Adoption delays after launch are logistic, so the share of teams that adopted follows an
    S-curve; mandated capabilities have short delays and near-universal ceilings.
    """
    n_teams = len(team_ids)
    launch = np.array([round(c.launch * days) for c in CAPABILITIES])
    adopt = np.full((n_teams, len(CAPABILITIES)), NEVER, dtype=np.int64)
    stop = np.full_like(adopt, NEVER)
    eligible: list[list[str] | None] = []
    for j, c in enumerate(CAPABILITIES):
        u = rng.uniform(0.002, 0.998, n_teams)
        delay = np.maximum(c.midpoint + c.spread * np.log(u / (1 - u)), rng.integers(1, 8, n_teams))
        day = np.maximum(launch[j] + np.round(delay).astype(np.int64), team_day)
        adopts = rng.random(n_teams) < c.ceiling
        if c.eligible_share is None:
            eligible.append(None)
        else:
            offered = rng.random(n_teams) < c.eligible_share
            # visible in the data: eligible teams that never use it, and one user not offered it
            idle = rng.choice(np.flatnonzero(offered), min(2, int(offered.sum())), replace=False)
            adopts &= offered
            adopts[idle] = False
            adopts[np.flatnonzero(~offered)[:1]] = True
            eligible.append([team_ids[i] for i in np.flatnonzero(offered)])
        adopt[:, j] = np.where(adopts, day, NEVER)
        churns = adopts & (rng.random(n_teams) < c.churn)
        stop[:, j] = np.where(churns, np.maximum(day, 0) + rng.integers(30, 150, n_teams), NEVER)
    ci, cd = (next(i for i, c in enumerate(CAPABILITIES) if c.id == x) for x in ("ci", "cd"))
    # continuous delivery builds on CI: a team adopts it some weeks after CI, or not at all
    later = np.maximum(adopt[:, cd], adopt[:, ci] + 14)
    adopt[:, cd] = np.where((adopt[:, ci] >= NEVER) | (adopt[:, cd] >= NEVER), NEVER, later)
    return launch, eligible, adopt, stop


def usage_rates(org: Org) -> np.ndarray:
    """Expected usage records per team × capability × day at usage scale 1."""
    day = np.arange(org.days)
    rate = np.array([c.rate for c in org.caps])
    busy = org.day_factor(weekend=0.06) * (1 + 0.15 * day / org.days)
    age = day[None, None, :] - org.adopt[:, :, None]
    active = (age >= 0) & (day[None, None, :] < org.stop[:, :, None])
    # a disbanded team uses nothing from the day it is archived
    archived_day = np.where(
        org.team_archived < OPEN_TO, (org.team_archived - org.start) // DAY, NEVER
    )
    active &= day[None, None, :] < archived_day[:, None, None]
    # a new adopter starts small and reaches its full use in about a month
    ramp = np.clip(0.3 + 0.7 * age / 30, 0, 1) * active
    return ramp * (org.team_activity[:, None, None] * rate[None, :, None] * busy[None, None, :])


def usage_scale_for(
    rows: int, teams: int, days: int, *, seed: int = OrgSpec.seed, end: date | None = None
) -> float:
    """The `usage_scale` with which `generate` makes about `rows` usage records (exactly in
    expectation for the same seed and end; other seeds differ by a few per cent)."""
    spec = OrgSpec(teams=teams, days=days, end=end, seed=seed)
    expected = float(usage_rates(build_org(spec, streams(spec.seed)[0])).sum())
    return rows / expected if expected > 0 else 1.0


def action_tables(org: Org) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The capabilities' actions as arrays indexed [capability, action] (`width` actions per
    capability, padded): cumulative weights, median duration, share with no outcome; and the
    action names, capability × action flattened."""
    n_caps = len(org.caps)
    width = max(len(c.actions) for c in org.caps)
    cum, median, bare = np.ones((3, n_caps, width), dtype=np.float32)
    names: list[str] = []
    for j, c in enumerate(org.caps):
        weight = np.array([a[1] for a in c.actions])
        cum[j, : len(c.actions) - 1] = np.cumsum(weight / weight.sum())[:-1]
        median[j, : len(c.actions)] = [a[2] for a in c.actions]
        bare[j, : len(c.actions)] = [max(a[3], 0.01) for a in c.actions]
        names += [a[0] for a in c.actions] + [""] * (width - len(c.actions))
    return width, cum, median, bare, names


def usage_table(org: Org, scale: float, rng: np.random.Generator) -> pa.Table:
    """One usage record per use, drawn from the adoption-driven rates of `usage_rates`."""
    n_teams, n_caps, days = len(org.team_ids), len(org.caps), org.days
    # cells in day order and ascending times within each day: the records need no sort
    counts = rng.poisson(usage_rates(org).transpose(2, 0, 1) * scale).ravel()
    cell = np.repeat(np.arange(counts.size), counts)
    per_day = counts.reshape(days, -1).sum(1)
    bounds = np.concatenate([[0], np.cumsum(per_day)])
    for d in range(days):
        rng.shuffle(cell[bounds[d] : bounds[d + 1]])
    day = np.repeat(np.arange(days), per_day)
    ts = org.day_start(day) + _times_of_day(per_day, bounds, day, rng)
    team = (cell // n_caps % n_teams).astype(np.int32)
    cap = (cell % n_caps).astype(np.int32)
    n = ts.size
    del cell, day

    # action: a categorical per capability; `action` indexes capability × action
    width, cum, median, bare, names = action_tables(org)
    u = rng.random(n, dtype=np.float32)
    action = cap * width
    for k in range(width - 1):
        action += u >= cum[:, k][cap]

    # outcome: on a maturing capability, platform errors halve over its first year
    years = ((ts - org.day_start(org.launch)[cap]) / (365 * DAY)).astype(np.float32)
    maturity = np.clip(years, 0, 1) * np.array([c.matures for c in org.caps], np.float32)[cap]
    p = np.array([c.outcomes for c in org.caps], np.float32)
    success = p[:, 0][cap] + 0.5 * maturity * p[:, 2][cap]
    u = rng.random(n, dtype=np.float32)
    outcome = (u >= success).astype(np.int32) + (u >= success + p[:, 1][cap])
    outcome += u >= 1 - p[:, 3][cap]
    has_outcome = rng.random(n, dtype=np.float32) >= bare.ravel()[action]

    # duration: log-normal around the action's median; maturing capabilities get faster
    speed = (1 - 0.3 * maturity) * np.array([1.0, 0.6, 0.8, 0.5], np.float32)[outcome]
    sigma = np.array([c.sigma for c in org.caps], np.float32)[cap]
    noise = np.exp(sigma * rng.standard_normal(n, dtype=np.float32))
    duration = np.round((median.ravel()[action] * speed * noise).astype(np.float64), 1)
    has_duration = has_outcome & ((outcome != 3) | (rng.random(n, dtype=np.float32) < 0.5))
    del u, years, maturity, success, speed, sigma, noise

    # who: the team, one of its services, a member; each sometimes left for the store to resolve
    actor = org.members(team, ts, rng)
    service = org.services(team, ts, rng)
    share = np.array([c.service_share for c in org.caps], np.float32)
    has_service = rng.random(n, dtype=np.float32) < share[cap]
    has_team = rng.random(n, dtype=np.float32) < 0.4
    has_actor = ~(has_team | has_service) | (rng.random(n, dtype=np.float32) >= 0.04)

    attrs = [a for c in org.caps for a in c.attributes] or [""]
    n_attrs = np.array([len(c.attributes) for c in org.caps])
    first_attr = np.cumsum(n_attrs) - n_attrs
    attr = first_attr[cap] + (rng.random(n, dtype=np.float32) * n_attrs[cap]).astype(np.int32)
    columns = {
        "id": numbered("use-", n, 8),
        "ts": timestamps(ts),
        "capability": strings([c.id for c in org.caps], cap),
        "action": strings(names, action),
        "actor": strings(org.actors, actor, has_actor),
        "team": strings(org.team_ids, team, has_team),
        "service": strings(org.svc_ids, service, has_service),
        "outcome": strings(["success", "failure", "error", "abandoned"], outcome, has_outcome),
        "duration_s": pa.array(duration, mask=~has_duration),
        "attributes": strings(attrs, np.minimum(attr, len(attrs) - 1), n_attrs[cap] > 0),
    }
    return _with_retries(org, table("usage", columns), team, cap, outcome, has_outcome, rng)


BOT = "renovate[bot]"


def _with_retries(
    org: Org,
    usage: pa.Table,
    team: np.ndarray,
    cap: np.ndarray,
    outcome: np.ndarray,
    has_outcome: np.ndarray,
    rng: np.random.Generator,
) -> pa.Table:
    """CI as it really looks: a dependency bot triggers some pipelines, and a third of the failed
    or errored runs are retried (the retry, attempt 2, a few minutes later, mostly succeeds)."""
    n = usage.num_rows
    ci = cap == org.cap("ci")
    bot = ci & (rng.random(n, dtype=np.float32) < 0.03)
    actor = pc.if_else(pa.array(bot), pa.scalar(BOT), usage.column("actor"))
    # the bot belongs to no team: its records name the team whose repository it updates
    own = pc.if_else(pa.array(bot), strings(org.team_ids, team), usage.column("team"))
    retried = ci & has_outcome & (outcome > 0) & (outcome < 3)
    retried &= rng.random(n, dtype=np.float32) < 0.35
    ids = usage.column("id")
    run = pc.if_else(pa.array(ci & has_outcome), ids, None)
    attempt = pa.array(np.where(ci & has_outcome, 1, 0), pa.int64(), mask=~(ci & has_outcome))
    first = usage.set_column(usage.schema.get_field_index("actor"), "actor", actor)
    first = first.set_column(first.schema.get_field_index("team"), "team", own)
    first = first.set_column(first.schema.get_field_index("run"), "run", run)
    first = first.set_column(first.schema.get_field_index("attempt"), "attempt", attempt)
    again = first.filter(pa.array(retried))
    k = again.num_rows
    later = again.column("ts").cast(pa.int64()).to_numpy() + rng.integers(2, 20, k) * 60 * US
    ok = rng.random(k) < 0.8
    again = again.set_column(
        again.schema.get_field_index("id"),
        "id",
        pc.binary_join_element_wise(again.column("id"), "/2", ""),
    )
    again = again.set_column(again.schema.get_field_index("ts"), "ts", timestamps(later))
    again = again.set_column(
        again.schema.get_field_index("outcome"),
        "outcome",
        strings(["success", "error"], np.where(ok, 0, 1)),
    )
    again = again.set_column(
        again.schema.get_field_index("attempt"), "attempt", pa.array(np.full(k, 2), pa.int64())
    )
    return pa.concat_tables([first, again])


def _times_of_day(
    per_day: np.ndarray, bounds: np.ndarray, day: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """µs after midnight for records grouped by day, ascending within each day and following the
    working-hours profile: normalised running sums of exponential gaps are sorted uniforms, and
    the inverse of the hourly distribution keeps their order."""
    gaps = np.cumsum(rng.exponential(1.0, day.size + per_day.size))
    first = bounds[:-1] + np.arange(per_day.size)  # the gap before each day's first record
    before = np.where(first > 0, gaps[np.maximum(first - 1, 0)], 0.0)
    total = gaps[first + per_day] - before
    u = (gaps[np.arange(day.size) + day] - before[day]) / total[day]
    cdf = np.concatenate([[0.0], np.cumsum(HOURS_P)])
    return np.interp(u, cdf, np.arange(25) * 3600.0).astype(np.int64) * US


def timestamps(us: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """µs since the epoch as UTC timestamps, truncated to the second; null where not `valid`."""
    seconds = np.asarray(us).astype(np.int64) // US * US
    return pa.array(seconds, type=TIMESTAMP, mask=None if valid is None else ~valid)


def strings(values: Sequence[str], index: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """`values[index]` as an Arrow string array; null where not `valid`."""
    mask = None if valid is None else ~np.asarray(valid, dtype=bool)
    codes = pa.array(np.asarray(index, dtype=np.int32), mask=mask)
    return pa.DictionaryArray.from_arrays(codes, pa.array(values, pa.string())).dictionary_decode()


# entry i holds the four ASCII digits of i, read as one little-endian word
_DIGITS = np.frombuffer("".join(f"{i:04d}" for i in range(10_000)).encode(), dtype="<u4")


def numbered(prefix: str, n: int, digits: int = 6) -> pa.Array:
    """Strings `prefix` + 1…n, zero-padded to a multiple of four digits (at least `digits`)."""
    return numbered_range(prefix, 0, n, number_groups(n, digits))


def number_groups(n: int, digits: int = 6) -> int:
    """How many four-digit groups `numbered(…, n, digits)` pads its numbers to."""
    return max(-(-digits // 4), -(-len(str(n)) // 4))


def numbered_range(prefix: str, start: int, stop: int, groups: int) -> pa.Array:
    """Strings `prefix` + start+1 … stop, zero-padded to `groups` four-digit groups (a slice of
    `numbered`'s strings, for records built a chunk at a time)."""
    n = stop - start
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    words = np.empty((n, groups), dtype="<u4")
    x = np.arange(start + 1, stop + 1, dtype=np.int64)
    for k in range(groups):
        words[:, -1 - k] = _DIGITS[x % 10_000]
        x //= 10_000
    chars = np.empty((n, head.size + 4 * groups), dtype=np.uint8)
    chars[:, : head.size] = head
    chars[:, head.size :] = words.view(np.uint8).reshape(n, 4 * groups)
    offsets = np.arange(0, chars.size + 1, chars.shape[1], dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(chars)])


ARROW_TYPES: dict[Kind, pa.DataType] = {
    Kind.STRING: pa.string(),
    Kind.ENUM: pa.string(),
    Kind.TIMESTAMP: TIMESTAMP,
    Kind.NUMBER: pa.float64(),
    Kind.INTEGER: pa.int64(),
    Kind.BOOLEAN: pa.bool_(),
    Kind.STRING_LIST: pa.list_(pa.string()),
    Kind.OBJECT: pa.string(),  # JSON text
    Kind.QUESTIONS: pa.string(),  # JSON text
}


def table(type_name: str, columns: Mapping[str, Any]) -> pa.Table:
    """A table with exactly the fields of `type_name` (derived ids left out); missing ones null."""
    record = BY_NAME[type_name]
    unknown = set(columns) - set(record.field_names)
    if unknown:
        raise ValueError(f"{type_name} has no field(s) {sorted(unknown)}")
    n = len(next(iter(columns.values())))
    fields = [f for f in record.fields if not (f.name == "id" and record.id_from)]
    arrays = []
    for f in fields:
        kind, value = ARROW_TYPES[f.kind], columns.get(f.name)
        if value is None:
            arrays.append(pa.nulls(n, kind))
        elif isinstance(value, pa.Array):
            arrays.append(value if value.type == kind else value.cast(kind))
        else:
            arrays.append(pa.array(value, kind))
    return pa.Table.from_arrays(arrays, names=[f.name for f in fields])


def streams(seed: int) -> list[np.random.Generator]:
    """Independent generators for the registry, usage, delivery and surveys."""
    return np.random.default_rng(seed).spawn(4)


def registry_tables(org: Org) -> dict[str, pa.Table]:
    """The team, membership, service and capability records of `org`."""
    groups = [(g, name) for g, name, _ in GROUPS if g in org.group_ids]
    n = len(groups) + len(org.team_ids)
    # older teams were formed some years back, and a third of them never recorded when
    created = np.concatenate([np.full(len(groups), OPEN_FROM), org.team_created])
    long_ago = org.start - (np.arange(n) * 7919 % 1400 + 200) * DAY
    known = (created > OPEN_FROM) | (np.arange(n) % 3 != 0)
    teams = {
        "id": [g for g, _ in groups] + org.team_ids,
        "name": [name for _, name in groups] + [_title(t) for t in org.team_ids],
        "parent": [None] * len(groups) + [org.group_ids[g] for g in org.team_group],
        "created_at": timestamps(np.where(created > OPEN_FROM, created, long_ago), known),
        "archived_at": timestamps(
            np.concatenate([np.full(len(groups), OPEN_TO), org.team_archived]),
            np.concatenate([np.zeros(len(groups), bool), org.team_archived < OPEN_TO]),
        ),
    }
    memberships = {
        "actor": strings(org.actors, org.mem_actor),
        "team": strings(org.team_ids, org.mem_team),
        "from": timestamps(np.maximum(org.mem_from, 0), org.mem_from > OPEN_FROM),
        "to": timestamps(np.minimum(org.mem_to, org.end), org.mem_to < OPEN_TO),
    }
    services = {
        "id": org.svc_ids,
        "name": [_title(s) for s in org.svc_ids],
        "team": strings(org.team_ids, org.svc_team),
        "created_at": timestamps(org.svc_created),
        "tier": org.svc_tier,
        "repo": org.svc_repo,
    }
    capabilities = {
        "id": [c.id for c in org.caps],
        "name": [c.name for c in org.caps],
        "launched_at": timestamps(org.day_start(org.launch)),
        "mandated": [c.mandated for c in org.caps],
        "eligible": org.eligible,
        "description": [c.description for c in org.caps],
    }
    return {
        "team": table("team", teams),
        "membership": table("membership", memberships),
        "service": table("service", services),
        "capability": table("capability", capabilities),
    }


def _title(slug: str) -> str:
    return " ".join(ACRONYMS.get(w, w.capitalize()) for w in slug.split("-"))
