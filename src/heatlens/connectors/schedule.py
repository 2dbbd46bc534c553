"""Scheduled syncs (`[[sync]]` in the config), run by `heatlens serve` so a server keeps itself
fresh without a cron job fighting it for the store.

The scheduler never opens the store: it is given `with_store`, which runs a function on the
server's one writer thread (where every write of requests runs), so a sync is one more writer in
line. Each job's
last run — when, whether it worked, what it did or the error — is kept in the store's sync state, so
a restarted server runs only the jobs that are due, and the Data page can show the last sync of each
source. A failing sync is logged and recorded; the server and the other jobs carry on, and it is
tried again after its interval.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from heatlens.connectors import SyncResult
from heatlens.errors import ConfigError, HeatlensError
from heatlens.settings import Settings
from heatlens.store import Store

__all__ = ["JobStatus", "Scheduler", "SyncJob", "parse_sync_jobs", "sync_status"]

log = logging.getLogger("heatlens.sync")
T = TypeVar("T")
WithStore = Callable[[Callable[[Store], T]], T]
STATE_PREFIX = "schedule:"

_EVERY = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_KEYS: dict[str, tuple[set[str], set[str]]] = {  # kind → (required, optional) keys besides these
    "git": (
        {"path", "service"},
        {"deploy_tags", "exclude_tags", "deploy_branch", "skip_first", "environment", "repo"},
    ),
    "backstage": ({"catalog"}, {"pattern"}),
    "github": (
        set(),
        {"token_env", "base_url", "since", "deploy_workflows", "deploy_releases", "environment"}
        | {"teams", "repo", "org", "rerun_days"},
    ),
    "gitlab": (set(), {"project", "group", "token_env", "base_url", "since"}),
    "pagerduty": ({"service"}, {"token_env", "base_url", "since"}),
}
_COMMON = {"kind", "every", "name"}
_LISTS = ("project", "group", "service")  # gitlab's and pagerduty's: one string or a list


@dataclass(frozen=True)
class SyncJob:
    """One `[[sync]]` entry: what to sync, how often, and the function that does it."""

    name: str  # unique; the key of its last-run state
    kind: str
    every: timedelta
    run: Callable[[Store], SyncResult]
    # a sync that waits on the network: given `with_store`, it holds the writer only to write
    run_outside: Callable[[WithStore[Any]], SyncResult] | None = None


@dataclass(frozen=True)
class JobStatus:
    """The last run of a job."""

    name: str
    kind: str
    at: datetime
    ok: bool
    summary: str  # what it did, or the error
    seconds: float
    warnings: list[str]
    source: str = ""  # the `source` of the records it wrote (matches Store.counts_by_source)


def parse_every(value: Any, where: str) -> timedelta:
    """`30s`, `15m`, `6h`, `1d` → a positive interval."""
    match = _EVERY.fullmatch(str(value).strip()) if isinstance(value, str) else None
    if match is None or int(match[1]) == 0:
        raise ConfigError(
            f"{where}.every: {value!r} is not an interval such as '15m', '6h' or '1d'"
        )
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def parse_sync_jobs(settings: Settings) -> list[SyncJob]:
    """The jobs of `settings.sync`, each checked; a bad entry is one ConfigError naming it."""
    jobs: list[SyncJob] = []
    for i, entry in enumerate(settings.sync):
        where = f"sync[{i}]"
        job = _job(entry, where, settings)
        if any(j.name == job.name for j in jobs):
            raise ConfigError(f"{where}: the same sync as an earlier entry ({job.name})")
        jobs.append(job)
    return jobs


def _job(entry: Any, where: str, settings: Settings) -> SyncJob:
    if not isinstance(entry, dict):
        raise ConfigError(f'{where}: expected a table such as [[sync]] kind = "git" …')
    kind = entry.get("kind")
    if kind not in _KEYS:
        raise ConfigError(
            f"{where}.kind: {kind!r} is not a sync kind "
            "(git, backstage, github, gitlab or pagerduty)"
        )
    required, optional = _KEYS[kind]
    missing = sorted(required - set(entry))
    if missing:
        needs = ", ".join(sorted(required))
        raise ConfigError(f"{where}.{missing[0]}: missing (a {kind} sync needs {needs})")
    unknown = sorted(set(entry) - required - optional - _COMMON)
    if unknown:
        known = ", ".join(sorted(required | optional | _COMMON))
        raise ConfigError(f"{where}.{unknown[0]}: unknown key for a {kind} sync (known: {known})")
    for key, value in entry.items():
        expected: type = bool if key in ("skip_first", "deploy_releases", "teams") else str
        expected = int if key == "rerun_days" else expected
        # a list of globs, repositories or workflows, or one string
        if key in ("exclude_tags", "repo", "org", "deploy_workflows", *_LISTS) and isinstance(
            value, list
        ):
            value = next((v for v in value if not isinstance(v, str)), "")
        if not isinstance(value, expected):
            name = {"int": "an int"}.get(expected.__name__, f"a {expected.__name__}")
            raise ConfigError(f"{where}.{key}: expected {name}, got {value!r}")
    every = parse_every(entry.get("every", "15m"), where)
    if kind == "git":
        from heatlens.connectors.git import GitSource, split_globs, sync_git

        try:
            source = GitSource(
                Path(entry["path"]),
                entry["service"],
                entry.get("deploy_tags"),
                entry.get("deploy_branch"),
                entry.get("skip_first", False),
                entry.get("environment", "production"),
                entry.get("repo"),
                exclude_tags=split_globs(entry.get("exclude_tags", ())),
            )
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        name = entry.get("name") or f"git:{source.service}:{Path(entry['path']).expanduser()}"

        def run_git(store: Store) -> SyncResult:
            return sync_git(store, settings, source)

        return SyncJob(name, kind, every, run_git)
    if kind == "github":
        return _github_job(entry, where, settings, every)
    if kind == "gitlab":
        return _gitlab_job(entry, where, settings, every)
    if kind == "pagerduty":
        return _pagerduty_job(entry, where, settings, every)
    from heatlens.connectors.backstage import sync_backstage

    catalog, pattern = entry["catalog"], entry.get("pattern", "catalog-info.yaml")

    def run_backstage(store: Store) -> SyncResult:
        return sync_backstage(store, settings, catalog, pattern=pattern)

    return SyncJob(entry.get("name") or f"backstage:{catalog}", kind, every, run_backstage)


def _github_job(entry: dict[str, Any], where: str, settings: Settings, every: timedelta) -> SyncJob:
    """`repo` and/or `org` (each one or a list), the token from the environment variable
    `token_env` (default GITHUB_TOKEN: a config file holds no secret), `base_url`, `since`, and
    where deployments come from: `deploy_workflows` (one or a list) or `deploy_releases`, to
    `environment`; `teams`."""
    import os

    from heatlens.connectors.github.sync import DEFAULT_BASE_URL, GithubSource, sync_github

    repos, orgs = (
        [v] if isinstance(v, str) else v for v in (entry.get(k, []) for k in ("repo", "org"))
    )
    workflows = entry.get("deploy_workflows", [])
    token_env = entry.get("token_env", "GITHUB_TOKEN")
    try:
        source = GithubSource(
            tuple(repos),
            None,
            entry.get("base_url", DEFAULT_BASE_URL),
            entry.get("since"),
            deploy_workflows=tuple([workflows] if isinstance(workflows, str) else workflows),
            deploy_releases=entry.get("deploy_releases"),  # absent: the setting decides
            environment=entry.get("environment", "production"),
            teams=entry.get("teams", False),
            orgs=tuple(orgs),
            rerun_days=entry.get("rerun_days", 7),
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None

    def run_github(store: Store | WithStore[Any]) -> SyncResult:
        # read when it runs: a token rotated in the environment of a running server is not seen
        token = os.environ.get(token_env) or None
        return sync_github(store, settings, replace(source, token=token))

    name = entry.get("name") or f"github:{','.join([*repos, *orgs])}"
    return SyncJob(name, "github", every, run_github, run_outside=run_github)


def _listed(entry: dict[str, Any], key: str) -> tuple[str, ...]:
    value = entry.get(key, [])
    return (value,) if isinstance(value, str) else tuple(value)


def _gitlab_job(entry: dict[str, Any], where: str, settings: Settings, every: timedelta) -> SyncJob:
    """`project` and/or `group` (each one or a list), the token from the environment variable
    `token_env` (default GITLAB_TOKEN), `base_url` (self-managed), `since`."""
    import os

    from heatlens.connectors.gitlab.sync import DEFAULT_BASE_URL, GitlabSource, sync_gitlab

    projects, groups = _listed(entry, "project"), _listed(entry, "group")
    token_env = entry.get("token_env", "GITLAB_TOKEN")
    try:
        source = GitlabSource(
            projects, None, entry.get("base_url", DEFAULT_BASE_URL), entry.get("since"), groups
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None

    def run_gitlab(store: Store | WithStore[Any]) -> SyncResult:
        token = os.environ.get(token_env) or None  # read when it runs (a rotated token)
        return sync_gitlab(store, settings, replace(source, token=token))

    name = entry.get("name") or f"gitlab:{','.join([*projects, *groups])}"
    return SyncJob(name, "gitlab", every, run_gitlab, run_outside=run_gitlab)


def _pagerduty_job(
    entry: dict[str, Any], where: str, settings: Settings, every: timedelta
) -> SyncJob:
    """`service` (one id or a list), the token from `token_env` (default PAGERDUTY_TOKEN),
    `base_url`, `since`."""
    import os

    from heatlens.connectors.pagerduty.sync import (
        DEFAULT_BASE_URL,
        PagerDutySource,
        sync_pagerduty,
    )

    services = _listed(entry, "service")
    token_env = entry.get("token_env", "PAGERDUTY_TOKEN")
    try:
        source = PagerDutySource(
            services, None, entry.get("base_url", DEFAULT_BASE_URL), entry.get("since")
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None

    def run_pagerduty(store: Store | WithStore[Any]) -> SyncResult:
        token = os.environ.get(token_env) or None
        return sync_pagerduty(store, settings, replace(source, token=token))

    name = entry.get("name") or f"pagerduty:{','.join(services)}"
    return SyncJob(name, "pagerduty", every, run_pagerduty, run_outside=run_pagerduty)


class Scheduler:
    """Runs due jobs in one background thread (or when told, with `run_due`)."""

    def __init__(
        self,
        jobs: list[SyncJob],
        with_store: WithStore[Any],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        poll_seconds: float = 30.0,
    ) -> None:
        self.jobs = jobs
        self.with_store = with_store
        self.clock = clock
        self.poll_seconds = poll_seconds
        self._last: dict[str, datetime] | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0  # rounds of the background thread so far (each looks for due jobs)
        self._round = threading.Condition()

    @classmethod
    def from_settings(cls, settings: Settings, with_store: WithStore[Any]) -> Scheduler:
        """A scheduler for the config's `[[sync]]` entries (raises ConfigError on a bad one)."""
        return cls(parse_sync_jobs(settings), with_store)

    def _last_runs(self) -> dict[str, datetime]:
        if self._last is None:

            def read(store: Store) -> dict[str, datetime]:
                return {
                    name.removeprefix(STATE_PREFIX): datetime.fromisoformat(state["at"])
                    for name, state, _ in store.sync_states(STATE_PREFIX)
                }

            self._last = self.with_store(read)
        return self._last

    def due(self, now: datetime) -> list[SyncJob]:
        """The jobs whose interval has passed since their last run (or that never ran)."""
        last = self._last_runs()
        return [j for j in self.jobs if j.name not in last or now - last[j.name] >= j.every]

    def run_due(self, now: datetime | None = None) -> list[JobStatus]:
        """Run every due job, one after another; return how each went."""
        now = now or self.clock()
        found = [self._run_alone(job, now) for job in self.due(now)]
        return [status for status in found if status is not None]

    def _run_alone(self, job: SyncJob, now: datetime) -> JobStatus | None:
        """Run a due job holding its lock (several servers on one Postgres: the first to take
        it runs the job, the others skip it), once the store says it is still due: another
        server may have run it since this one last looked. None when it did not run here."""
        lock = STATE_PREFIX + job.name
        if not self.with_store(lambda store: store.try_lock(lock)):
            self._last_runs()[job.name] = now  # running elsewhere: look again after `every`
            return None
        try:
            state = self.with_store(lambda store: last_run(store, job.name))
            if state is not None:
                at = datetime.fromisoformat(state["at"])
                if now - at < job.every:
                    self._last_runs()[job.name] = at  # another server ran it
                    return None
            return self._run(job, now)
        finally:
            self.with_store(lambda store: store.unlock(lock))

    def _run(self, job: SyncJob, now: datetime) -> JobStatus:
        def attempt(run: Callable[[], SyncResult]) -> JobStatus:
            started = time.perf_counter()
            try:
                result = run()
                status = JobStatus(
                    job.name,
                    job.kind,
                    now,
                    True,
                    result.summary,
                    0.0,
                    result.warnings,
                    result.source,
                )
            except HeatlensError as exc:
                log.warning("sync %s failed: %s", job.name, exc)
                status = JobStatus(job.name, job.kind, now, False, str(exc), 0.0, [])
            except Exception as exc:  # a bug in one sync must not stop the server
                log.exception("sync %s failed", job.name)
                status = JobStatus(
                    job.name, job.kind, now, False, f"{type(exc).__name__}: {exc}", 0.0, []
                )
            return replace(status, seconds=round(time.perf_counter() - started, 3))

        def run(store: Store) -> JobStatus:
            status = attempt(lambda: job.run(store))
            store.save_sync_state(STATE_PREFIX + job.name, _state(status))
            return status

        try:
            if job.run_outside is not None:
                # a network sync takes the writer only for each of its writes
                status = attempt(lambda: job.run_outside(self.with_store))  # type: ignore[misc]
                self.with_store(
                    lambda store: store.save_sync_state(STATE_PREFIX + job.name, _state(status))
                )
            else:
                status = self.with_store(run)
        except Exception as exc:  # e.g. the store could not be written
            log.exception("sync %s could not run", job.name)
            status = JobStatus(job.name, job.kind, now, False, str(exc), 0.0, [])
        self._last_runs()[job.name] = now
        if status.ok:
            log.info("sync %s: %s", job.name, status.summary)
        return status

    def start(self) -> None:
        """Run due jobs now and then whenever one falls due, in a background thread."""
        if self._thread is not None or not self.jobs:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="heatlens-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 60.0) -> None:
        """Stop the thread (a sync that is running finishes first)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        """Have the thread look for due jobs now rather than at its next planned round (when
        the clock has moved, say)."""
        self._wake.set()

    def wait_rounds(self, rounds: int, timeout: float | None = None) -> bool:
        """Wait until the thread has done `rounds` rounds in all (False: `timeout` came first)."""
        with self._round:
            return self._round.wait_for(lambda: self.rounds >= rounds, timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # a wake() from now on brings on the next round
            try:
                self.run_due(self.clock())
            except Exception:  # keep the thread alive for the next round
                log.exception("scheduled syncs failed")
            with self._round:
                self.rounds += 1
                self._round.notify_all()
            self._wake.wait(self._seconds_to_next(self.clock()))

    def _seconds_to_next(self, now: datetime) -> float:
        last = self._last_runs()
        waits = [
            (last[j.name] + j.every - now).total_seconds() if j.name in last else 0.0
            for j in self.jobs
        ]
        # wake at least every poll_seconds, so a clock that jumps is noticed
        return max(0.5, min([self.poll_seconds, *waits]))


def _state(status: JobStatus) -> dict[str, Any]:
    return {
        "kind": status.kind,
        "at": status.at.isoformat(),
        "ok": status.ok,
        "summary": status.summary,
        "seconds": status.seconds,
        "warnings": status.warnings[:20],
        "source": status.source,
    }


def sync_status(store: Store) -> list[JobStatus]:
    """The last run of every scheduled sync (for the Data page and `heatlens status`)."""
    return [
        JobStatus(
            name.removeprefix(STATE_PREFIX),
            str(state.get("kind", "")),
            datetime.fromisoformat(state["at"]),
            bool(state.get("ok")),
            str(state.get("summary", "")),
            float(state.get("seconds", 0.0)),
            list(state.get("warnings", [])),
            str(state.get("source", "")),
        )
        for name, state, _ in store.sync_states(STATE_PREFIX)
    ]


def last_run(store: Store, name: str) -> dict[str, Any] | None:
    """The saved last run of the job called `name`."""
    return store.sync_state(STATE_PREFIX + name)
