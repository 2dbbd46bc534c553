"""`heatlens survey`: define surveys as code, invite with single-use links, import a form tool's
export, follow the response rate, read the results (docs/surveys.md)."""

from __future__ import annotations

import csv
import json
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from heatlens.cli.context import CliContext, command, err, out, pass_ctx, print_counts, say
from heatlens.errors import ConfigError, InputError

FORMATS = ("table", "json", "csv", "markdown")


@click.group()
def survey() -> None:
    """Run surveys: define them (TOML), invite people with single-use links answered at
    /s/<link> on `heatlens serve`, import a form tool's CSV export, see status and results."""


@survey.command()
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--id", "survey_id", help="Survey id (overrides the file's; needed for the default).")
@click.option("--title", help="Title shown on the form (overrides the file's).")
@click.option("--opens", metavar="DATE", help="When the survey opens (YYYY-MM-DD or date-time).")
@click.option("--closes", metavar="DATE", help="When it closes: no answers are taken after.")
@pass_ctx
@command
def define(
    ctx: CliContext,
    file: Path | None,
    survey_id: str | None,
    title: str | None,
    opens: str | None,
    closes: str | None,
) -> None:
    """Store the `[[survey]]` definitions of FILE.toml (without FILE: heatlens's default platform
    survey, one CSAT question per capability of the store, platform NPS, DORA's "clear feedback"
    item and "what slows you down"). All or nothing; a survey's k cannot change once it opened.
    """
    text = None
    name = "platform_survey.toml"
    if file is not None:
        if not file.is_file():
            raise InputError(f"{file}: no such file")
        text, name = file.read_text(encoding="utf-8"), file.name
    elif survey_id is None:
        raise ConfigError(
            "the default platform survey needs --id (e.g. --id platform-2026-q2 "
            "--opens 2026-04-06 --closes 2026-04-20)"
        )
    overrides = {"id": survey_id, "title": title, "opens_at": opens, "closes_at": closes}
    started = time.perf_counter()
    with ctx.application() as app:
        doc = app.define_surveys(text, name, {k: v for k, v in overrides.items() if v})
    print_counts(doc["counts"], time.perf_counter() - started)
    for s in doc["surveys"]:
        say(f"survey {s['id']}: {len(s['questions'])} questions ({', '.join(s['questions'])})")


@survey.command()
def template() -> None:
    """Print the default platform survey's TOML, to copy and edit."""
    from heatlens.ingest.survey_definitions import default_survey_text

    sys.stdout.write(default_survey_text())


@survey.command("list")
@pass_ctx
@command
def list_(ctx: CliContext) -> None:
    """The stored surveys."""
    with ctx.application() as app:
        surveys = app.list_surveys()["surveys"]
    if not surveys:
        out.print("no surveys: `heatlens survey define FILE.toml` stores one")
        return
    table = Table("id", "title", "opens", "closes", "k", "questions", box=None)
    for s in surveys:
        table.add_row(
            s["id"],
            s["title"] or "—",
            (s["opens_at"] or "—")[:16],
            (s["closes_at"] or "—")[:16],
            str(s["k"]),
            str(len(s["questions"])),
        )
    out.print(table)


@survey.command()
@click.argument("survey_id", metavar="SURVEY")
@click.option("--team", required=True, help="The team whose people get these links.")
@click.option("--count", required=True, type=click.IntRange(1, 10_000), help="Links to issue.")
@click.option(
    "--out",
    "out_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the links to this CSV file (team, link) instead of standard output.",
)
@click.option(
    "--base-url",
    metavar="URL",
    help="Where `heatlens serve` is reached by respondents [default: --server, else "
    "http://127.0.0.1:8000].",
)
@click.option("--batch", help="Name of this invitation batch (default: the current UTC time).")
@pass_ctx
@command
def invite(
    ctx: CliContext,
    survey_id: str,
    team: str,
    count: int,
    out_file: Path | None,
    base_url: str | None,
    batch: str | None,
) -> None:
    """Issue --count single-use anonymous links for people of --team and record the invitation
    (the response rate's denominator). Hand each person one link; nothing ties a link to them.
    """
    base = (base_url or ctx.server or "http://127.0.0.1:8000").rstrip("/")
    with ctx.application() as app:
        doc = app.invite(survey_id, team, count, batch=batch)
    urls = [f"{base}/s/{secret}" for secret in doc["links"]]
    if out_file is not None:
        with out_file.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["team", "link"])
            w.writerows([team, u] for u in urls)
        say(f"{count} links for team {team} written to {out_file} (batch {doc['batch']})")
    else:
        sys.stdout.write("".join(u + "\n" for u in urls))
        say(f"{count} links for team {team} (batch {doc['batch']}); they are not shown again")


@survey.command()
@click.argument("survey_id", metavar="SURVEY")
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table")
@pass_ctx
@command
def status(ctx: CliContext, survey_id: str, fmt: str) -> None:
    """Links issued and used, respondents and response rate per team (counts only; a team with
    fewer respondents than k shows none)."""
    with ctx.application() as app:
        doc = app.survey_status(survey_id)
    if fmt == "json":
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    s = doc["survey"]
    rate = doc["response_rate"]
    out.print(
        f"survey {s['id']} ({doc['state']}): {doc['links_used']} of {doc['links_issued']} "
        f"links used; response rate {_rate(rate) if rate else '—'}"
    )
    table = Table("team", "invited", "respondents", "response rate", box=None)
    for t in doc["teams"]:
        table.add_row(
            t["team"] or "(no team)",
            str(t["invited"]),
            "hidden" if t["suppressed"] else str(t["n"] or 0),
            _rate(t),
        )
    out.print(table)


def _rate(cell: dict[str, Any]) -> str:
    from heatlens.report.units import format_value

    if cell.get("suppressed"):
        return "hidden (fewer than k)"
    return format_value(cell.get("value"), "ratio") if cell.get("value") is not None else "—"


@survey.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--survey", "survey_id", required=True, help="The survey the answers belong to.")
@click.option(
    "--map",
    "pairs",
    multiple=True,
    required=True,
    metavar="QUESTION=COLUMN",
    help="The CSV column holding a question's answers (repeat; `team=COLUMN` for a team column).",
)
@click.option("--team", help="The team of every answer in the file.")
@click.option(
    "--timestamp",
    metavar="COLUMN",
    help="The timestamp column [default: Timestamp, Completion time, Submit Date (UTC), …].",
)
@click.option(
    "--labels",
    type=click.Path(path_type=Path, dir_okay=False),
    help='TOML of answer labels per kind, e.g. [csat] "Très satisfait" = 5.',
)
@pass_ctx
@command
def import_(
    ctx: CliContext,
    file: Path,
    survey_id: str,
    pairs: tuple[str, ...],
    team: str | None,
    timestamp: str | None,
    labels: Path | None,
) -> None:
    """Import a form tool's CSV export (Google Forms, Microsoft Forms, Typeform: a timestamp
    column and one column per question) as the answers of --survey. Labels such as "Very
    satisfied" or "10 - Extremely likely" become scores. All or nothing: any bad answer stores
    nothing and is named by line and column."""
    from heatlens.ingest.survey_csv import parse_mapping

    if not file.is_file():
        raise InputError(f"{file}: no such file")
    scales: dict[str, dict[str, int]] = {}
    if labels is not None:
        try:
            raw = tomllib.loads(labels.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InputError(f"--labels {labels}: {exc}") from None
        for kind, table in raw.items():
            if kind not in ("csat", "nps", "likert") or not isinstance(table, dict):
                raise InputError(f"--labels {labels}: [{kind}]: expected [csat], [nps] or [likert]")
            for label, score in table.items():
                if not isinstance(score, int) or isinstance(score, bool):
                    raise InputError(f"--labels {labels}: [{kind}] {label!r}: expected a number")
            scales[kind] = dict(table)
    mapping = parse_mapping(pairs)
    text = file.read_text(encoding="utf-8-sig")
    started = time.perf_counter()
    with ctx.application() as app:
        doc = app.import_answers(
            text, file.name, survey_id, mapping, team=team, timestamp=timestamp, labels=scales
        )
    print_counts(doc["counts"], time.perf_counter() - started)
    say(f"{doc['respondents']} respondents imported into survey {survey_id}")


@survey.command()
@click.argument("survey_id", metavar="SURVEY")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--out", "out_file", type=click.Path(path_type=Path, dir_okay=False))
@pass_ctx
@command
def results(ctx: CliContext, survey_id: str, fmt: str, out_file: Path | None) -> None:
    """Per question CSAT, NPS or Likert with 95 % intervals and answer distributions, response
    rate per team, and comments of questions with at least comment_k respondents — every
    number through the engine, so groups under k stay hidden."""
    from heatlens.report import survey_results as render

    with ctx.application() as app:
        doc = app.survey_results(survey_id)
    if fmt == "table" and out_file is None:
        for title, header, rows in render.lines(doc):
            table = Table(*header, title=title, title_justify="left", box=None)
            for row in rows:
                table.add_row(*row)
            out.print(table)
        for where, texts in render.comments(doc):
            out.print(f"comments · {where}")
            for t in texts:
                out.print(f"  - {t}", markup=False)
        if not doc["periods"]:
            err.print(f"survey {survey_id} has no answers yet")
        return
    text = {
        "json": lambda: json.dumps(doc, indent=2) + "\n",
        "csv": lambda: render.to_csv(doc),
        "markdown": lambda: render.to_markdown(doc),
        "table": lambda: render.to_markdown(doc),
    }[fmt]()
    if out_file is not None:
        out_file.write_text(text, encoding="utf-8")
        say(f"wrote {out_file}")
    else:
        sys.stdout.write(text)
