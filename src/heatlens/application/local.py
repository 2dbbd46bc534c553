"""The application: settings, a store and every operation on it (DESIGN §2, "one application").

`LocalApplication` runs the operations on a store it reaches through a `StoreAccess` — its own file
in a command-line process, the server's shared store (a pool of readers, one writer thread) inside
`heatlens serve`. `RemoteApplication` (heatlens.application.remote) has the same methods and sends
them to a running server, which runs them here. Each method returns a JSON document (or a value the
renderers take), so the CLI renders the same thing whichever of the two it was given.

Policy lives here too: what an empty store answers, when a server may listen beyond loopback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from heatlens.application.access import DirectAccess, StoreAccess
from heatlens.application.documents import (
    counts_doc,
    empty_store_message,
    parse_instant,
    sync_doc,
    token_doc,
    tokens_doc,
)
from heatlens.application.surveys import SurveyOperations
from heatlens.errors import ConfigError, EmptyStoreError, InputError
from heatlens.metrics.catalog import IMPACT_GRAIN
from heatlens.model import BY_NAME, TYPE_NAMES
from heatlens.settings import Settings
from heatlens.store import Store, deliveries

if TYPE_CHECKING:
    from heatlens.application.cost import Cost
    from heatlens.metrics import Report, Request

__all__ = ["LocalApplication", "ReportResult", "is_loopback"]

T = TypeVar("T")
Clock = Callable[[], datetime]


@dataclass
class ReportResult:
    """A report and, when asked for, the significance of its last period's changes."""

    report: Report
    changes: dict[tuple[str, Any], Any]


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (a host name may resolve anywhere)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LocalApplication(SurveyOperations):
    """Every heatlens operation on one store. Close it (or use `with`) when done."""

    def __init__(
        self,
        settings: Settings,
        access: StoreAccess | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.access = (
            access
            if access is not None
            else DirectAccess(settings.store, memory_limit=settings.duckdb_memory_bytes)
        )
        self.clock: Clock = clock or (lambda: datetime.now(UTC))

    def __enter__(self) -> LocalApplication:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the store."""
        self.access.close()

    @property
    def store_url(self) -> str:
        return self.access.url

    def read(self, fn: Callable[[Store], T]) -> T:
        """Run a read of the store (the dashboard's pages, authentication)."""
        return self.access.read(fn)

    def _read_nonempty(self, fn: Callable[[Store], T]) -> T:
        def guarded(store: Store) -> T:
            if store.is_empty():
                raise EmptyStoreError(empty_store_message(store.url))
            return fn(store)

        return self.access.read(guarded)

    def _clocked(self, request: Request) -> Request:
        """The request with the application's clock as its `now` (unless it has one)."""
        from dataclasses import replace

        return request if request.now is not None else replace(request, now=self.clock())

    # -- reads ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What the store holds: records per type and source, schema and data version, the
        last run of each scheduled sync and each webhook source's counters."""
        from heatlens.connectors.schedule import sync_status

        def build(store: Store) -> dict[str, Any]:
            return {
                "store": store.url,
                "schema": store.schema_version(),
                "data_version": store.data_version(),
                "sources": [
                    {"type": t, "source": s, "records": n} for t, s, n in store.counts_by_source()
                ],
                "syncs": [
                    {
                        "name": job.name,
                        "kind": job.kind,
                        "at": job.at.isoformat(),
                        "ok": job.ok,
                        "summary": job.summary,
                        "source": job.source,
                    }
                    for job in sync_status(store)
                ],
                # each webhook source's counters (heatlens.store.deliveries): deliveries taken,
                # ignored ones and the last reason, the last delivery's time and event
                "webhooks": deliveries.counters(store),
            }

        return self.access.read(build)

    def data_version(self) -> int:
        """The store's data version (bumped by every write that changed records)."""
        return self.access.read(Store.data_version)

    def report(self, request: Request, *, changes: bool = False) -> ReportResult:
        """HEAT and DORA metrics per period and segment (heatlens.report/v1), and with `changes`
        the significance test of the last period against the one before (DESIGN §4)."""
        from heatlens.analysis import report_changes

        request = self._clocked(request)

        def build(store: Store) -> ReportResult:
            result = self._computed(store, request)
            found = report_changes(store, result, self.settings) if changes else {}
            return ReportResult(result, found)

        return self._read_nonempty(build)

    def metrics(self, request: Request) -> Report:
        """The report alone (GET /api/v1/metrics): an empty store gives empty rows."""
        request = self._clocked(request)
        return self.access.read(lambda store: self._computed(store, request))

    def _computed(self, store: Store, request: Request) -> Report:
        """The report with its `coverage`: where the records its metrics read lie, so an empty
        range can say where the data is (heatlens.analysis.coverage)."""
        from heatlens.analysis.coverage import coverage
        from heatlens.metrics import compute
        from heatlens.metrics.engine import resolve

        result = compute(store, request, self.settings)
        metrics = resolve(request, self.settings, store)[0]
        found = coverage(store, metrics, result.start, result.end, result.timezone)
        result.coverage = found.to_json()
        return result

    def report_html(self, request: Request) -> str:
        """The dashboard's views in one self-contained HTML document (fixed sections: `by` and
        `metrics` do not apply)."""
        from heatlens.report.html.export import render_html

        if request.by or request.metrics:
            raise ConfigError(
                "--format html has the dashboard's fixed sections: drop --by and --metric"
            )
        request = self._clocked(request)
        return self._read_nonempty(lambda store: render_html(store, self.settings, request))

    def explain(
        self,
        metric: str,
        period: date,
        segment: dict[str, str | None],
        *,
        grain: str = "week",
        limit: int | None = 50,
        teams: Sequence[str] = (),
        offset: int = 0,
        failures_only: bool = False,
    ) -> dict[str, Any]:
        """The records behind one number (the `explain` JSON document): `limit` of them (None:
        all) from `offset`, only failures with `failures_only`; for a reader scoped to `teams`,
        without the organisation-wide warnings."""
        from heatlens.metrics.catalog import GRAINS
        from heatlens.metrics.explain import explain as build
        from heatlens.report.explain import plain, scope_to_teams

        if grain not in GRAINS:
            raise ConfigError(f"unknown grain {grain!r}: expected one of {', '.join(GRAINS)}")

        def run(store: Store) -> dict[str, Any]:
            result = build(
                store,
                metric,
                period,
                segment,
                self.settings,
                grain=grain,
                limit=limit,
                offset=offset,
                failures_only=failures_only,
            )
            if teams:
                scope_to_teams(result)
            return plain(result)

        return self._read_nonempty(run)

    def cost(self, request: Request, *, views: bool = False) -> Cost:
        """What `request` would cost (periods × segments) before any of it is computed;
        `views` for the dashboard's pages and the HTML report (heatlens.application.cost)."""
        from heatlens.application.cost import report_cost

        request = self._clocked(request)
        return self.access.read(
            lambda store: report_cost(store, request, self.settings, views=views)
        )

    def check(self, as_of: date | None = None) -> dict[str, Any]:
        """The configured targets on the last complete period of their grain as of `as_of`
        (default today), and tensions (heatlens.check/v1)."""
        from heatlens.analysis.targets import check

        day = as_of or self.clock().date()
        return self._read_nonempty(lambda store: check(store, self.settings, day).to_json())

    def impact(
        self,
        capability: str,
        metrics: Sequence[str] = (),
        *,
        grain: str = IMPACT_GRAIN,
        start: date | None = None,
        end: date | None = None,
        min_uses: int = 1,
    ) -> list[dict[str, Any]]:
        """Did adopting `capability` move each metric (default: the DORA keys)? One
        `heatlens.impact/v1` document per metric (DESIGN §4 Impact)."""
        from heatlens.analysis.impact import impact
        from heatlens.report.impact import impact_doc

        now = self.clock()

        def run(store: Store) -> list[dict[str, Any]]:
            found = impact(
                store,
                self.settings,
                capability,
                tuple(metrics),
                grain=grain,
                start=start,
                end=end,
                now=now,
                min_uses=min_uses,
            )
            return [impact_doc(i) for i in found]

        return self._read_nonempty(run)

    def list_tokens(self) -> dict[str, Any]:
        """Every token, never a secret."""
        from heatlens.store.tokens import list_tokens

        return tokens_doc(self.access.read(list_tokens))

    # -- writes -----------------------------------------------------------------------------

    def ingest(
        self,
        paths: Sequence[str],
        *,
        fmt: str | None = None,
        default_type: str | None = None,
        source: str | None = None,
        skip_invalid: bool = False,
        rejects: Path | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Ingest files all or nothing; with `skip_invalid` the invalid records go to `rejects`."""
        from heatlens.ingest import ingest_files

        if skip_invalid and rejects is None:
            raise InputError("--skip-invalid needs --rejects FILE to keep the invalid records")

        def write(store: Store) -> dict[str, Any]:
            result = ingest_files(
                store,
                paths,
                self.settings,
                fmt=fmt,
                default_type=default_type,
                skip_invalid=skip_invalid,
                rejects=rejects,
                source=source,
                progress=progress,
            )
            return {
                "read": result.read,
                "rejected": result.rejected,
                "counts": counts_doc(result.counts),
                "data_version": store.data_version(),
            }

        return self.access.write(write)

    def ingest_records(
        self, records: Iterable[dict[str, Any]], *, source: str = "python"
    ) -> dict[str, Any]:
        """Ingest records given as dicts (canonical JSON objects with a `type`), all or nothing,
        by the rules files pass."""
        from heatlens.ingest import ingest_records

        rows = list(records)

        def write(store: Store) -> dict[str, Any]:
            result = ingest_records(store, rows, self.settings, source=source)
            return {
                "read": result.read,
                "rejected": result.rejected,
                "counts": counts_doc(result.counts),
                "data_version": store.data_version(),
            }

        return self.access.write(write)

    def delete(
        self,
        *,
        type_name: str | None = None,
        ids: Sequence[str] = (),
        source: str | None = None,
        ingested_between: Sequence[str] | None = None,
        actors: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Delete records by type and one selector, or erase people everywhere (audit-logged)."""
        from heatlens.ingest import pseudonym

        selectors = sum(bool(x) for x in (ids, source, ingested_between))
        if actors:
            if type_name or selectors:
                raise ConfigError("--actor erases a person everywhere: use it without --type")
            people = list(actors)
            key = self.settings.pseudonymise_key
            if key is not None:
                people += [pseudonym(key.get_secret_value(), a) for a in actors]
            return {"erased": self.access.write(lambda store: store.erase_actor(people))}
        if not type_name or selectors != 1:
            raise ConfigError(
                "delete needs --type TYPE and exactly one of --id, --source, "
                "--ingested-between (or --actor)"
            )
        if type_name not in BY_NAME:
            raise ConfigError(
                f"unknown type {type_name!r}: expected one of {', '.join(TYPE_NAMES)}"
            )
        between = None
        if ingested_between:
            if len(ingested_between) != 2:
                raise ConfigError("--ingested-between needs two instants: FROM TO")
            between = (parse_instant(ingested_between[0]), parse_instant(ingested_between[1]))
        rtype = BY_NAME[type_name]
        n = self.access.write(
            lambda store: store.delete_records(
                rtype, ids=list(ids), source=source, ingested_between=between
            )
        )
        return {"deleted": {type_name: n}}

    def create_token(
        self, scope: str, name: str | None = None, teams: Sequence[str] = ()
    ) -> dict[str, Any]:
        """A new token and its secret (shown this once; only its hash is stored)."""
        from heatlens.store.tokens import create_token

        token, secret = self.access.write(
            lambda store: create_token(store, scope, name=name, teams=tuple(teams))
        )
        return {"token": token_doc(token), "secret": secret}

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        """Revoke a token: requests with it are refused from now on."""
        from heatlens.store.tokens import revoke_token

        return {"token": token_doc(self.access.write(lambda store: revoke_token(store, token_id)))}

    def sync_git(self, source: Any, *, full: bool = False, progress: Any = None) -> dict[str, Any]:
        """A local git repository's commits → changes, its tags or branch → deployments
        (`source` is a heatlens.connectors.git.GitSource)."""
        from heatlens.connectors import no_progress
        from heatlens.connectors.git import sync_git

        result = self.access.write(
            lambda store: sync_git(
                store, self.settings, source, full=full, progress=progress or no_progress
            )
        )
        return sync_doc(result)

    def sync_backstage(
        self, catalog: str, *, pattern: str = "catalog-info.yaml", progress: Any = None
    ) -> dict[str, Any]:
        """A Backstage catalog → teams, memberships and services."""
        from heatlens.connectors import no_progress
        from heatlens.connectors.backstage import sync_backstage

        result = self.access.write(
            lambda store: sync_backstage(
                store, self.settings, catalog, pattern=pattern, progress=progress or no_progress
            )
        )
        return sync_doc(result)

    def sync_github(self, source: Any, *, progress: Any = None, **test: Any) -> dict[str, Any]:
        """GitHub repositories' workflow runs → usage, deployments with their statuses →
        deployments (`source` is a heatlens.connectors.github.GithubSource; `test` may give a
        `transport` and a `clock`)."""
        from heatlens.connectors import no_progress
        from heatlens.connectors.github.sync import sync_github

        # the store is taken for each write, not while GitHub is asked
        result = sync_github(
            self.access.write, self.settings, source, progress=progress or no_progress, **test
        )
        return sync_doc(result)

    def sync_gitlab(self, source: Any, *, progress: Any = None, **test: Any) -> dict[str, Any]:
        """GitLab projects' deployments, merge requests, pipelines and incidents (`source` is a
        heatlens.connectors.gitlab.sync.GitlabSource; `test` may give a `transport`, a `clock`)."""
        from heatlens.connectors import no_progress
        from heatlens.connectors.gitlab.sync import sync_gitlab

        # the store is taken for each write, not while GitLab is asked
        result = sync_gitlab(
            self.access.write, self.settings, source, progress=progress or no_progress, **test
        )
        return sync_doc(result)

    def sync_pagerduty(self, source: Any, *, progress: Any = None, **test: Any) -> dict[str, Any]:
        """PagerDuty services' incidents (`source` is a
        heatlens.connectors.pagerduty.sync.PagerDutySource)."""
        from heatlens.connectors import no_progress
        from heatlens.connectors.pagerduty.sync import sync_pagerduty

        result = sync_pagerduty(
            self.access.write, self.settings, source, progress=progress or no_progress, **test
        )
        return sync_doc(result)

    # -- policy -----------------------------------------------------------------------------

    def ensure_servable(self, host: str) -> bool:
        """Decide, once at server start, whether its API is open: True only on a loopback
        address and for a store that never had a token (a revoked one counts). An open API
        beyond this machine is refused."""
        from heatlens.store.tokens import has_tokens

        if self.access.write(has_tokens):
            return False
        if not is_loopback(host):
            raise ConfigError(
                f"--host {host}: refusing to serve an open API beyond this machine; "
                "create a token first (`heatlens token create --scope admin`) or bind 127.0.0.1"
            )
        return True
