"""The `heatlens` command line. It parses options, builds settings and a store, and calls the
library; it computes nothing itself. Errors are one line and a non-zero exit (a traceback only with
--debug).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from heatlens import __version__, operations
from heatlens.client import ServerClient
from heatlens.errors import ConfigError, EmptyStoreError, HeatlensError, InputError
from heatlens.model import TYPE_NAMES
from heatlens.settings import Settings, load_settings
from heatlens.store import Store

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
F = TypeVar("F", bound=Callable[..., Any])
DEMO_STORE = Path("heatlens-demo.duckdb")
MAX_PROBLEMS_SHOWN = 20


class Context:
    """What global options give every command."""

    def __init__(
        self,
        config: Path | None,
        store: str | None,
        server: str | None,
        debug: bool,
        token: str | None = None,
    ) -> None:
        self.config = config
        self.store_url = store
        self.server = server
        self.debug = debug
        self.token = token

    @functools.cached_property
    def settings(self) -> Settings:
        return load_settings(self.config, overrides={"store": self.store_url})

    def local_only(self) -> None:
        """Refuse --server for commands that must own a store themselves (serve, demo)."""
        if self.server:
            name = click.get_current_context().command_path
            raise ConfigError(
                f"`{name}` works on a store, not through --server {self.server}: "
                "drop --server (and HEATLENS_SERVER)"
            )

    def open_store(self, *, read_only: bool = False, url: str | None = None) -> Store:
        self.local_only()
        return Store.open(url or self.settings.store, read_only=read_only)

    def client(self) -> ServerClient:
        """The running server named by --server, which owns the store."""
        assert self.server is not None
        return ServerClient(self.server, self.token)


def command(fn: F) -> F:
    """Turn HeatlensErrors into one red line and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context().find_object(Context)
        try:
            return fn(*args, **kwargs)
        except HeatlensError as exc:
            if ctx is not None and ctx.debug:
                raise
            if isinstance(exc, InputError):
                problems = exc.problems
                for p in problems[:MAX_PROBLEMS_SHOWN]:
                    err.print(f"  {p}", markup=False, soft_wrap=True)
                if len(problems) > MAX_PROBLEMS_SHOWN:
                    err.print(f"  … and {len(problems) - MAX_PROBLEMS_SHOWN} more")
            err.print(f"[bold red]error:[/] {exc}", markup=True, soft_wrap=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default ./heatlens.toml when it exists).",
)
@click.option(
    "--store",
    envvar="HEATLENS_STORE",
    metavar="URL",
    help="Store URL: duckdb:///path.duckdb, a path, or postgres://… "
    "[env HEATLENS_STORE; default duckdb:///heatlens.duckdb]",
)
@click.option(
    "--server",
    envvar="HEATLENS_SERVER",
    metavar="URL",
    help="Send commands through a running `heatlens serve` that owns the store "
    "[env HEATLENS_SERVER].",
)
@click.option(
    "--token",
    envvar="HEATLENS_TOKEN",
    metavar="SECRET",
    help="API token for --server when it requires one [env HEATLENS_TOKEN; prefer the env var].",
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(__version__, prog_name="heatlens")
@click.pass_context
def cli(
    ctx: click.Context,
    config: Path | None,
    store: str | None,
    server: str | None,
    token: str | None,
    debug: bool,
) -> None:
    """heatlens measures your internal platform as a product: HEAT (Happiness, Efficiency,
    Adoption, Task success) beside DORA.

    Start with `heatlens demo`, or load your records with `heatlens ingest FILE`.
    """
    ctx.obj = Context(config, store, server, debug, token)


pass_ctx = click.make_pass_decorator(Context)


# -- ingest ----------------------------------------------------------------------------------


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ndjson", "json", "csv", "parquet"]),
    help="Input format (default: from the file suffix; sniffed for stdin).",
)
@click.option(
    "--type",
    "default_type",
    type=click.Choice(TYPE_NAMES),
    metavar="TYPE",
    help="Record type of rows without a `type` (CSV files of one type).",
)
@click.option("--source", help="Source recorded on every row (default file:<name>).")
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Store the valid records and write the invalid ones to --rejects.",
)
@click.option(
    "--rejects",
    type=click.Path(path_type=Path, dir_okay=False),
    help="NDJSON file for invalid records and their problems (with --skip-invalid).",
)
@pass_ctx
@command
def ingest(
    ctx: Context,
    files: tuple[str, ...],
    fmt: str | None,
    default_type: str | None,
    source: str | None,
    skip_invalid: bool,
    rejects: Path | None,
) -> None:
    """Load canonical records from FILES (NDJSON, JSON array, CSV, Parquet; `-` is stdin).

    Records replace stored records with the same type and id, so loading a file twice changes
    nothing. A file with any invalid record stores nothing unless --skip-invalid.
    """
    if skip_invalid and rejects is None:
        raise InputError("--skip-invalid needs --rejects FILE to keep the invalid records")
    started = time.perf_counter()
    if ctx.server:
        with ctx.client() as client, err.status(f"sending to {ctx.server}…"):
            doc = client.ingest(
                files,
                fmt=fmt,
                default_type=default_type,
                source=source,
                skip_invalid=skip_invalid,
            )
        if rejects is not None and "rejects" in doc:
            rejects.write_text(doc["rejects"], encoding="utf-8")
    else:
        with ctx.open_store() as store, _progress() as progress:
            task = progress.add_task("reading", total=None)

            def advance(n: int) -> None:
                progress.update(task, advance=n, description="reading records")

            doc = operations.ingest_doc(
                store,
                files,
                ctx.settings,
                fmt=fmt,
                default_type=default_type,
                skip_invalid=skip_invalid,
                rejects=rejects,
                source=source,
                progress=advance,
            )
            progress.update(task, description="stored", completed=doc["read"], total=doc["read"])
    _print_counts(doc["counts"], time.perf_counter() - started)
    if doc["rejected"]:
        err.print(f"[yellow]{doc['rejected']} invalid record(s) skipped; see {rejects}[/]")


@contextmanager
def _progress() -> Iterator[Progress]:
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,} records"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
    with progress:
        yield progress


def _print_counts(counts: dict[str, dict[str, int]], seconds: float) -> None:
    """Per-type write counts (operations.counts_doc) and their total."""
    table = Table("type", "inserted", "updated", "unchanged", title=None, box=None)
    total = {"inserted": 0, "updated": 0, "unchanged": 0}
    for name, c in counts.items():
        for key in total:
            total[key] += c[key]
        table.add_row(name, f"{c['inserted']:,}", f"{c['updated']:,}", f"{c['unchanged']:,}")
    out.print(table)
    out.print(
        f"{sum(total.values()):,} records in {seconds:.1f} s: "
        f"{total['inserted']:,} inserted, {total['updated']:,} updated, "
        f"{total['unchanged']:,} unchanged"
    )


# -- report and explain ----------------------------------------------------------------------


def _date(value: str | None, option: str) -> date | None:
    from heatlens.metrics.periods import parse_day

    return parse_day(value, option)


def _nonempty(store: Store) -> None:
    if store.is_empty():
        raise EmptyStoreError(operations.empty_store_message(store.url))


GRAIN = click.option(
    "--grain",
    type=click.Choice(["day", "week", "month", "quarter", "all"]),
    default="week",
    show_default=True,
    help="Period length.",
)


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", "markdown", "html"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write to this file instead of the terminal.",
)
@GRAIN
@click.option(
    "--from",
    "start",
    metavar="DATE",
    help="First day (inclusive; default: 12 periods before --to).",
)
@click.option(
    "--to",
    "end",
    metavar="DATE",
    help="Day after the last (exclusive; default: start of the current period).",
)
@click.option(
    "--by",
    multiple=True,
    metavar="KEY",
    type=click.Choice(
        ["capability", "team", "group", "service", "action", "environment", "survey", "question"]
    ),
    help="Segment by capability, team, group, service, action, environment, survey or "
    "question (repeatable).",
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="ID",
    help="Metric id or prefix, e.g. dora or adoption.team_adoption_rate (repeatable; "
    "default: all).",
)
@pass_ctx
@command
def report(
    ctx: Context,
    fmt: str,
    out_path: Path | None,
    grain: str,
    start: str | None,
    end: str | None,
    by: tuple[str, ...],
    metrics: tuple[str, ...],
) -> None:
    """HEAT and DORA metrics per period (and segment), with warnings.

    The table is grouped by HEAT dimension then DORA: the latest value, its change against the
    previous period, a trend, n and DORA tiers. json is heatlens.report/v1 (docs/metrics.md).
    """
    from heatlens.analysis import report_changes
    from heatlens.metrics import Report, Request, compute
    from heatlens.report import render, terminal_table

    request = Request(grain, _date(start, "--from"), _date(end, "--to"), by, metrics)
    if fmt == "html":
        _report_html(ctx, request, out_path)
        return
    if ctx.server:
        with ctx.client() as client, err.status(f"computing metrics on {ctx.server}…"):
            doc = client.report(
                grain, request.start, request.end, by, metrics, changes=fmt == "table"
            )
        result = Report.from_json(doc["report"], by=request.by)
        changes = operations.changes_from_doc(doc["changes"])
    else:
        with ctx.open_store(read_only=True) as store:
            _nonempty(store)
            with err.status("computing metrics…"):
                result = compute(store, request, ctx.settings)
                changes = report_changes(store, result, ctx.settings) if fmt == "table" else {}
    if out_path is not None:
        out_path.write_text(render(result, fmt, changes), encoding="utf-8")
        err.print(f"wrote {len(result.rows):,} rows to {out_path}")
    elif fmt == "table":
        out.print(terminal_table(result, changes))
    else:
        sys.stdout.write(render(result, fmt))


def _report_html(ctx: Context, request: Any, out_path: Path | None) -> None:
    """The dashboard's views in one self-contained HTML file (the sections are fixed: --by and
    --metric do not apply)."""
    from heatlens.web.dashboard.export import render_html

    if request.by or request.metrics:
        raise ConfigError(
            "--format html has the dashboard's fixed sections: drop --by and --metric"
        )
    if ctx.server:
        with ctx.client() as client, err.status(f"rendering the report on {ctx.server}…"):
            text = client.report_html(request.grain, request.start, request.end)
    else:
        with ctx.open_store(read_only=True) as store:
            _nonempty(store)
            with err.status("rendering the report…"):
                text = render_html(store, ctx.settings, request)
    if out_path is None:
        sys.stdout.write(text)
        return
    out_path.write_text(text, encoding="utf-8")
    err.print(f"wrote {out_path} ({len(text.encode()) / 1024:,.0f} KiB): open it in any browser")


@cli.command()
@click.argument("metric")
@click.option(
    "--period",
    required=True,
    metavar="DATE",
    help="A day of the period to explain (the period of --grain containing it).",
)
@GRAIN
@click.option(
    "--segment",
    "segments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Segment, e.g. team=payments (repeatable; `KEY=` for a null value).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 100_000),
    default=50,
    show_default=True,
    help="Records to list.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@pass_ctx
@command
def explain(
    ctx: Context,
    metric: str,
    period: str,
    grain: str,
    segments: tuple[str, ...],
    limit: int,
    fmt: str,
) -> None:
    """List the records behind one number: what was counted, how incidents were linked, what
    was dropped and why."""
    import json

    from heatlens.metrics.explain import explain as build
    from heatlens.report.explain import explanation_json

    segment: dict[str, str | None] = {}
    for item in segments:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--segment {item!r}: expected KEY=VALUE, e.g. team=payments")
        segment[key] = value or None
    day = _date(period, "--period")
    assert day is not None
    if ctx.server:
        with ctx.client() as client:
            doc = client.explain(metric, day, grain, segment, limit)
    else:
        with ctx.open_store(read_only=True) as store:
            _nonempty(store)
            result = build(store, metric, day, segment, ctx.settings, grain=grain, limit=limit)
        # the JSON the API sends, so both paths print the same thing
        doc = json.loads(json.dumps(explanation_json(result), default=str))
    if fmt == "json":
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    row = doc["row"]
    value = (
        "no value (no observations)"
        if row is None
        else ("suppressed" if row["suppressed"] else f"{row['value']} (n = {row['n']})")
    )
    out.print(
        f"[bold]{metric}[/] · {grain} of {doc['period']} · {doc['segment'] or 'all'}: {value}"
    )
    columns = doc["columns"]
    if doc["records"]:
        table = Table(*columns, box=None)
        for rec in doc["records"]:
            table.add_row(*(_cell(rec.get(c)) for c in columns))
        out.print(table)
        shown = len(doc["records"])
        if doc["total"] > shown:
            out.print(f"… {doc['total'] - shown:,} more (--limit)")
    if doc["dropped"]:
        out.print("[bold]dropped[/]")
        table = Table(*columns, "reason", box=None)
        for rec in doc["dropped"]:
            table.add_row(*(_cell(rec.get(c)) for c in [*columns, "reason"]))
        out.print(table)
    for note in doc["notes"]:
        out.print(f"• {note}", markup=False)


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] in " T":
        try:
            return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M")
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


# -- check -----------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--as-of",
    metavar="DATE",
    help="Judge the periods complete by this day (default: today).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@pass_ctx
@command
def check(ctx: Context, as_of: str | None, fmt: str) -> None:
    """Evaluate the config's [[targets]] on the last complete period of each target's grain,
    and list tensions (a HEAT dimension bought at another's expense).

    Exit 1 when a target is missed, 2 on an error, else 0. Through --server, the server's
    config gives the targets.
    """
    import json

    from heatlens.analysis.targets import check as evaluate

    day = _date(as_of, "--as-of") or date.today()
    if ctx.server:
        with ctx.client() as client, err.status(f"checking on {ctx.server}…"):
            doc = client.check(day)
    else:
        with ctx.open_store(read_only=True) as store:
            _nonempty(store)
            with err.status("checking targets…"):
                doc = evaluate(store, ctx.settings, day).to_json()
    if fmt == "json":
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        _print_check(doc)
    if any(t["status"] == "missed" for t in doc["targets"]):
        sys.exit(1)


_STATUS_STYLE = {"met": "green", "missed": "bold red", "no_data": "yellow", "not_due": "cyan"}


def _print_check(doc: dict[str, Any]) -> None:
    if not doc["targets"]:
        out.print("no targets: add [[targets]] tables to heatlens.toml (see `heatlens check -h`)")
    else:
        table = Table(
            "metric", "segment", "target", "grain", "period", "actual", "status", box=None
        )
        for t in doc["targets"]:
            segment = ", ".join(f"{k}={v}" for k, v in t["segment"].items()) or "all"
            status = Text(t["status"], style=_STATUS_STYLE.get(t["status"], ""))
            table.add_row(
                t["metric"],
                segment,
                f"{t['op']} {t['value']:g}",
                t["grain"],
                t["period"],
                "—" if t["actual"] is None else f"{t['actual']:.4g}",
                status,
            )
        out.print(table)
    for tension in doc["tensions"]:
        out.print(
            f"[yellow]tension[/] {tension['capability']} ({tension['period']} vs "
            f"{tension['previous']}): better {', '.join(tension['better'])}; "
            f"worse {', '.join(tension['worse'])}",
            markup=True,
        )
    if not doc["tensions"]:
        out.print("no tensions: no capability gained one HEAT dimension at another's expense")


# -- delete ----------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--type",
    "type_name",
    type=click.Choice(TYPE_NAMES),
    metavar="TYPE",
    help="Record type to delete from.",
)
@click.option("--id", "ids", multiple=True, help="Id of a record to delete (repeatable).")
@click.option("--source", help="Delete every record of TYPE from this source.")
@click.option(
    "--ingested-between",
    nargs=2,
    metavar="FROM TO",
    help="Delete records of TYPE ingested in [FROM, TO) (ISO 8601, UTC if no offset).",
)
@click.option(
    "--actor",
    "actors",
    multiple=True,
    help="Erase a person everywhere (repeatable): memberships and survey answers "
    "deleted, their id removed from usage and changes.",
)
@pass_ctx
@command
def delete(
    ctx: Context,
    type_name: str | None,
    ids: tuple[str, ...],
    source: str | None,
    ingested_between: tuple[str, str] | None,
    actors: tuple[str, ...],
) -> None:
    """Delete records by type and id, source or ingestion time, or erase a person (logged)."""
    selection: dict[str, Any] = {
        "type_name": type_name,
        "ids": list(ids),
        "source": source,
        "ingested_between": list(ingested_between) if ingested_between else None,
        "actors": list(actors),
    }
    if ctx.server:
        with ctx.client() as client:
            doc = client.delete(**selection)
    else:
        with ctx.open_store() as store:
            doc = operations.delete_doc(store, ctx.settings, **selection)
    if "erased" in doc:
        out.print("erased: " + ", ".join(f"{n:,} {t}" for t, n in doc["erased"].items()))
    for name, n in doc.get("deleted", {}).items():
        out.print(f"deleted {n:,} {name} record(s)")


# -- status ----------------------------------------------------------------------------------


@cli.command()
@pass_ctx
@command
def status(ctx: Context) -> None:
    """What the store holds: records per type and source, versions."""
    if ctx.server:
        with ctx.client() as client:
            doc = client.status()
    else:
        with ctx.open_store(read_only=True) as store:
            doc = operations.status_doc(store)
    if not doc["sources"]:
        raise EmptyStoreError(operations.empty_store_message(doc["store"]))
    table = Table("type", "source", "records", box=None)
    for row in doc["sources"]:
        table.add_row(row["type"], row["source"], f"{row['records']:,}")
    out.print(table)
    for job in doc.get("syncs", []):
        state = "[green]ok[/]" if job["ok"] else "[bold red]failed[/]"
        summary = escape(job["summary"])
        out.print(
            f"sync {escape(job['name'])} ({job['kind']}): {state} at {job['at']}: {summary}",
            soft_wrap=True,
        )
    out.print(f"store {doc['store']}: schema {doc['schema']}, data version {doc['data_version']}")


# -- generate and demo -----------------------------------------------------------------------


@cli.command()
@click.option(
    "--teams",
    type=click.IntRange(2, 100_000),
    default=36,
    show_default=True,
    help="Stream-aligned teams.",
)
@click.option(
    "--days",
    type=click.IntRange(7, 3650),
    default=365,
    show_default=True,
    help="Days of history, ending today.",
)
@click.option(
    "--usage-rows",
    type=click.IntRange(min=0),
    default=None,
    help="Aim for about this many usage records (default: what the teams produce).",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed.")
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Output file: .parquet, .ndjson or .jsonl.",
)
@command
def generate(teams: int, days: int, usage_rows: int | None, seed: int, out_path: Path) -> None:
    """Write a generated organisation's records to a file (for trying things and benchmarks)."""
    from heatlens.demo import OrgSpec, usage_scale_for, write
    from heatlens.demo import generate as build

    if out_path.suffix.lower() not in (".parquet", ".ndjson", ".jsonl"):
        raise ConfigError(f"--out {out_path}: use a .parquet, .ndjson or .jsonl file")
    scale = usage_scale_for(usage_rows, teams, days) if usage_rows else 1.0
    started = time.perf_counter()
    with err.status("generating records…"):
        tables = build(OrgSpec(teams=teams, days=days, seed=seed, usage_scale=scale))
    with err.status(f"writing {out_path}…"):
        n = write(tables, out_path)
    out.print(f"wrote {n:,} records to {out_path} in {time.perf_counter() - started:.1f} s")


@cli.command()
@click.option("--no-serve", is_flag=True, help="Only build the demo store.")
@click.option("--teams", type=click.IntRange(2, 2000), default=36, show_default=True)
@click.option("--days", type=click.IntRange(30, 3650), default=365, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8000,
    show_default=True,
    help="Port of the dashboard on 127.0.0.1.",
)
@pass_ctx
@command
def demo(ctx: Context, no_serve: bool, teams: int, days: int, seed: int, port: int) -> None:
    """Build a realistic sample organisation into ./heatlens-demo.duckdb and summarise it."""
    from heatlens.analysis import scorecard
    from heatlens.demo import OrgSpec
    from heatlens.demo import generate as build
    from heatlens.ingest import ingest_arrow
    from heatlens.report import render_scorecard

    ctx.local_only()
    if not no_serve:
        _check_port("127.0.0.1", port)
    path = Path(ctx.store_url or DEMO_STORE)
    if ctx.store_url and "://" in ctx.store_url:
        raise ConfigError("demo builds a DuckDB file: pass --store as a path")
    started = time.perf_counter()
    with err.status("generating the sample organisation…"):
        tables = build(OrgSpec(teams=teams, days=days, seed=seed, end=date.today()))
    # the demo store is rebuilt from scratch each time; open it first so a lock is reported
    # before anything is removed
    with Store.open(str(path)):
        pass
    path.unlink()
    with Store.open(str(path)) as store:
        with err.status("loading it into the store…"):
            result = ingest_arrow(store, tables, ctx.settings, source="demo")
        seconds = time.perf_counter() - started
        out.print(f"[bold]heatlens demo[/]: a sample organisation in {path} ({seconds:.1f} s)")
        _print_counts(operations.counts_doc(result.counts), seconds)
        with err.status("computing the scorecard…"):
            card = scorecard(store, ctx.settings, grain="month")
    out.print()
    out.print(render_scorecard(card))
    out.print()
    out.print("Use it with any command, e.g.:")
    for example in (
        "report --grain month --by capability",
        "report --metric dora --by team",
        f"explain dora.change_failure_rate --period {card.period.isoformat()} --grain month",
        "status",
    ):
        out.print(f"  heatlens --store {path} {example}", markup=False)
    if not no_serve:
        out.print()
        out.print(
            f"Serving the dashboard at http://127.0.0.1:{port}/ (Ctrl+C stops; "
            "`heatlens demo --no-serve` only builds the store)",
            markup=False,
        )
        _serve(ctx.settings, str(path), "127.0.0.1", port)


# -- serve and tokens ------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve anywhere: treat it as exposed


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port."
)
@pass_ctx
@command
def serve(ctx: Context, host: str, port: int) -> None:
    """Serve the dashboard and the JSON API on the store, and run the config's [[sync]]
    entries on their schedule (it holds a DuckDB store until stopped: other commands then
    work through it with --server).

    Binds 127.0.0.1 by default; binding another address needs at least one token
    (`heatlens token create`), because without tokens the API is open.
    """
    from heatlens.store.tokens import has_tokens

    ctx.local_only()

    if not _is_loopback(host):
        with ctx.open_store() as store:
            if not has_tokens(store):
                raise ConfigError(
                    f"--host {host}: refusing to serve an open API beyond this machine; "
                    "create a token first (`heatlens token create --scope admin`) or bind 127.0.0.1"
                )
    _serve(ctx.settings, ctx.settings.store, host, port)


def _check_port(host: str, port: int) -> None:
    """A port already taken is one clear line, before any work is done."""
    import socket

    if not port:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}): "
                "is another server running there? pass --port"
            ) from None


def _serve(settings: Settings, store_url: str, host: str, port: int) -> None:
    """Run the app under uvicorn until Ctrl+C."""
    import uvicorn

    from heatlens.web import create_app

    _check_port(host, port)
    app = create_app(settings, store_url)
    where = f"http://{host}:{port}" if port else f"a free port of {host} (see below)"
    err.print(f"serving {store_url} on {where} (Ctrl+C stops)")
    uvicorn.run(app, host=host, port=port, log_level="info")


@cli.group()
def token() -> None:
    """Create, list and revoke API tokens (the secret is shown once, at creation)."""


@token.command("create")
@click.option(
    "--scope",
    type=click.Choice(["ingest", "read", "admin"]),
    required=True,
    help="ingest: post records; read: metrics and explain; admin: everything.",
)
@click.option("--name", help="A label to recognise the token by.")
@click.option("--team", "teams", multiple=True, help="Limit a read token to a team (repeatable).")
@pass_ctx
@command
def token_create(ctx: Context, scope: str, name: str | None, teams: tuple[str, ...]) -> None:
    """Create a token and print its secret (only this once)."""
    from heatlens.store.tokens import create_token

    if ctx.server:
        with ctx.client() as client:
            doc = client.token_create(scope, name, teams)
        tid, secret = doc["token"]["id"], doc["secret"]
    else:
        with ctx.open_store() as store:
            tok, secret = create_token(store, scope, name=name, teams=teams)
        tid = tok.id
    err.print(f"created token {tid} ({scope}); store the secret now, it is not shown again:")
    sys.stdout.write(secret + "\n")


@token.command("list")
@pass_ctx
@command
def token_list(ctx: Context) -> None:
    """List tokens (never their secrets)."""
    from heatlens.store.tokens import list_tokens

    if ctx.server:
        with ctx.client() as client:
            tokens = client.token_list()["tokens"]
    else:
        with ctx.open_store() as store:
            tokens = operations.tokens_doc(list_tokens(store))["tokens"]
    if not tokens:
        out.print("no tokens: the API is open on 127.0.0.1 (`heatlens token create` adds one)")
        return
    table = Table("id", "name", "scope", "teams", "created", "revoked", box=None)
    for t in tokens:
        table.add_row(
            t["id"],
            t["name"] or "—",
            t["scope"],
            ", ".join(t["teams"]) or "all",
            _cell(t["created_at"]),
            _cell(t["revoked_at"]),
        )
    out.print(table)


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@pass_ctx
@command
def token_revoke(ctx: Context, token_id: str) -> None:
    """Revoke a token by id: requests with it are refused from now on."""
    from heatlens.store.tokens import revoke_token

    if ctx.server:
        with ctx.client() as client:
            tok = client.token_revoke(token_id)["token"]
    else:
        with ctx.open_store() as store:
            tok = operations.token_doc(revoke_token(store, token_id))
    out.print(f"revoked token {tok['id']} ({tok['scope']})")


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="heatlens")


from heatlens.sync_cli import sync  # noqa: E402

cli.add_command(sync)
