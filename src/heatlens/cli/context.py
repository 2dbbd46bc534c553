"""What every command shares: the global options, the application they build, one-line errors,
the consoles, progress bars and the few renderings several commands print."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from heatlens.errors import ConfigError, HeatlensError, InputError
from heatlens.metrics.catalog import GRAINS
from heatlens.settings import Settings, load_settings

if TYPE_CHECKING:
    # imported where used: a local command never loads the HTTP client, nor a remote one the store
    from heatlens.application import Application, LocalApplication

# soft_wrap: lines of text are never broken at the terminal's width, so a suggested command or a
# path pastes whole (tables still fit the width)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])
MAX_PROBLEMS_SHOWN = 20


class CliContext:
    """What the global options give every command."""

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

    def application(self) -> Application:
        """The application the command works on: the running server's with --server, else the
        store's own."""
        if self.server:
            from heatlens.application.remote import RemoteApplication

            return RemoteApplication(self.server, self.token)
        return self.local_application()

    def local_application(self) -> LocalApplication:
        """For commands that must own a store themselves (serve, demo): --server is refused."""
        if self.server:
            name = click.get_current_context().command_path
            raise ConfigError(
                f"`{name}` works on a store, not through --server {self.server}: "
                "drop --server (and HEATLENS_SERVER)"
            )
        from heatlens.application.local import LocalApplication

        return LocalApplication(self.settings)

    def command_line(self, name: str, options: list[str]) -> str:
        """`heatlens [--config C] [--store S | --server U] NAME OPTIONS…` as a person would type
        it again (quoted for a POSIX shell; never the token, which stays in HEATLENS_TOKEN)."""
        import shlex

        words = ["heatlens"]
        words += ["--config", str(self.config)] if self.config is not None else []
        if self.server:
            words += ["--server", self.server]
        elif self.store_url:
            words += ["--store", self.store_url]
        return shlex.join([*words, *name.split(), *options])

    def working(self, what: str) -> Any:
        """A spinner saying what is being done, and where."""
        where = f" on {self.server}" if self.server else ""
        return err.status(f"{what}{where}…")


pass_ctx = click.make_pass_decorator(CliContext)


class UsageMistake(click.ClickException):
    """A mistake in the command line, shown as one line like every heatlens error (click's own
    shows the usage, then a blank line, then the error)."""

    exit_code = 2

    def __init__(self, cause: click.UsageError, ctx: click.Context) -> None:
        super().__init__(cause.format_message().rstrip("."))
        # named as every message names it, whatever the program was called (`python -m`, tests)
        path = (cause.ctx or ctx).command_path.split(" ", 1)
        self.where = " ".join(["heatlens", *path[1:]])

    def show(self, file: Any = None) -> None:
        say(f"error: {self.message} (see `{self.where} --help`)")


class HeatlensGroup(click.Group):
    """The command group whose command-line mistakes are one line."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError:
            raise  # the help itself, not a mistake
        except click.UsageError as exc:
            raise UsageMistake(exc, click.Context(self, info_name="heatlens")) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise  # the help itself, not a mistake
        except click.UsageError as exc:
            raise UsageMistake(exc, ctx) from None


def command(fn: F) -> F:
    """Turn HeatlensErrors into one red line and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context().find_object(CliContext)
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


def say(text: str) -> None:
    """A plain line on stderr (no markup: it may hold paths and URLs)."""
    err.print(text, markup=False, soft_wrap=True)


def day_option(value: str | None, option: str) -> date | None:
    """A --from/--to/--period/--as-of value as a date (None when not given)."""
    from heatlens.metrics.periods import parse_day

    return parse_day(value, option)


GRAIN = click.option(
    "--grain",
    type=click.Choice(GRAINS),
    default="week",
    show_default=True,
    help="Period length.",
)


@contextmanager
def progress_bar() -> Iterator[Progress]:
    """A transient progress bar on stderr; none when stderr is not a terminal (a stopped bar
    leaves an empty line there, before the summary or the error)."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,} records"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    with progress:
        yield progress


def print_counts(counts: dict[str, dict[str, int]], seconds: float) -> None:
    """Per-type write counts (application.documents.counts_doc) and their total."""
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


def cell(value: object) -> str:
    """A value as a table cell: timestamps to the minute, lists joined, None as a dash."""
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
