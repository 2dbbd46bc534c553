"""Running surveys (DESIGN §3–§5): define them as code, invite with single-use links, take answers
on the form, import a form tool's export, show status and results.

`SurveyOperations` is part of `LocalApplication`; `RemoteSurveyOperations` of
`RemoteApplication`, which sends the same operations to a running server's admin routes
(heatlens.web.surveys). Every statistic comes from the engine (heatlens.metrics.survey_results),
so anonymity holds here as everywhere.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from heatlens.application.documents import counts_doc
from heatlens.errors import ConfigError, InputError
from heatlens.model import SCORE_RANGES
from heatlens.store import Store

if TYPE_CHECKING:
    from heatlens.application.access import StoreAccess
    from heatlens.settings import Settings

__all__ = ["FormOutcome", "RemoteSurveyOperations", "SurveyOperations"]

MAX_LINKS = 10_000
MAX_TEXT = 4_000  # characters of one free-text answer


@dataclass
class FormOutcome:
    """What the form at /s/<token> shows: `state` is `form` (with `errors` when a submission
    was refused), `thanks`, `used`, `closed`, `not_open` or `unknown`."""

    state: str
    survey: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    given: dict[str, str] = field(default_factory=dict)


def _survey_doc(row: dict[str, Any]) -> dict[str, Any]:
    import json

    questions = row.get("questions")
    return {
        "id": row["id"],
        "title": row.get("title"),
        "opens_at": row["opens_at"].isoformat() if row.get("opens_at") else None,
        "closes_at": row["closes_at"].isoformat() if row.get("closes_at") else None,
        "k": row.get("k") if row.get("k") is not None else 5,
        "comment_k": row.get("comment_k") if row.get("comment_k") is not None else 10,
        "continuous": bool(row.get("continuous")),
        "questions": json.loads(questions) if isinstance(questions, str) else questions or [],
    }


def _stored_survey(store: Store, survey_id: str) -> dict[str, Any]:
    rows = store.rows("survey", ids=[survey_id])
    if not rows:
        known = [r["id"] for r in store.rows("survey")]
        hint = f" (stored: {', '.join(known)})" if known else ""
        raise ConfigError(
            f"no survey {survey_id!r} in the store{hint}: define it with "
            "`heatlens survey define FILE.toml`"
        )
    return _survey_doc(rows[0])


class SurveyOperations:
    """The survey operations of `LocalApplication` (it provides settings, access and clock)."""

    settings: Settings
    access: StoreAccess
    clock: Callable[[], datetime]

    # -- definitions --------------------------------------------------------------------------

    def define_surveys(
        self, text: str | None, name: str, overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Store the `[[survey]]` definitions of a TOML text (None: the default platform
        survey), all or nothing. A survey's k is frozen once it has opened."""
        from heatlens.ingest import ingest_records
        from heatlens.ingest.survey_definitions import default_survey_text, parse_surveys

        source_text = default_survey_text() if text is None else text
        now = self.clock()

        def write(store: Store) -> dict[str, Any]:
            capabilities = {str(r["id"]): r.get("name") for r in store.rows("capability")}
            records = parse_surveys(
                source_text, name, capabilities=capabilities, overrides=overrides
            )
            _check_frozen(store, records, now, self.settings)
            result = ingest_records(store, records, self.settings, source=f"file:{name}")
            return {
                "surveys": [
                    {"id": r["id"], "questions": [q["id"] for q in r["questions"]]} for r in records
                ],
                "counts": counts_doc(result.counts),
                "data_version": store.data_version(),
            }

        return self.access.write(write)

    def list_surveys(self) -> dict[str, Any]:
        """Every stored survey, with its questions."""

        def build(store: Store) -> dict[str, Any]:
            return {"surveys": [_survey_doc(r) for r in store.rows("survey")]}

        return self.access.read(build)

    # -- invitations and the form -------------------------------------------------------------

    def invite(
        self, survey: str, team: str, count: int, *, batch: str | None = None
    ) -> dict[str, Any]:
        """Issue `count` single-use links for people of `team` and record the invitation batch;
        the secrets are in the answer, shown this once."""
        from heatlens.ingest import ingest_records
        from heatlens.store.survey_links import issue_links

        if not 1 <= count <= MAX_LINKS:
            raise ConfigError(f"--count {count}: expected 1 to {MAX_LINKS:,} links")
        now = self.clock()
        # a batch's invitation replaces one of the same id: two runs never share a default id
        batch = batch or now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)

        def write(store: Store) -> dict[str, Any]:
            s = _stored_survey(store, survey)
            closes = s["closes_at"]
            if closes and datetime.fromisoformat(closes) <= now:
                raise ConfigError(f"survey {survey!r} closed at {closes}: invite to a new wave")
            teams = {str(r["id"]) for r in store.rows("team")}
            if teams and team not in teams:
                raise ConfigError(
                    f"--team {team!r} is no team of the store: "
                    f"expected one of {', '.join(sorted(teams))}"
                )
            invitation = {
                "type": "survey_invitation",
                "survey": survey,
                "team": team,
                "invited": count,
                "batch": batch,
            }
            ingest_records(store, [invitation], self.settings, source="survey-invite")
            links = issue_links(store, survey, team, count, batch=batch, now=now)
            return {"survey": survey, "team": team, "batch": batch, "links": links}

        return self.access.write(write)

    def survey_form(self, secret: str) -> FormOutcome:
        """What the link's form shows now (nothing is written)."""
        from heatlens.store.survey_links import find_link

        now = self.clock()

        def read(store: Store) -> FormOutcome:
            link = find_link(store, secret)
            if link is None:
                return FormOutcome("unknown")
            s = _stored_survey(store, link.survey)
            state = _window_state(s, now) or ("used" if link.used else "form")
            return FormOutcome(state, s)

        return self.access.read(read)

    def submit_answers(self, secret: str, form: Mapping[str, str]) -> FormOutcome:
        """Store one person's answers given through a link, once: the link is marked used and
        the answers get a new random respondent id, linked to nothing."""
        from heatlens.ingest import ingest_records
        from heatlens.store.survey_links import claim_link, find_link, release_link

        now = self.clock()
        day = now.astimezone(ZoneInfo(self.settings.timezone)).date()

        def write(store: Store) -> FormOutcome:
            link = find_link(store, secret)
            if link is None:
                return FormOutcome("unknown")
            s = _stored_survey(store, link.survey)
            state = _window_state(s, now)
            if state is not None:
                return FormOutcome(state, s)
            if link.used:
                return FormOutcome("used", s)
            answers, errors = _answers(s, form)
            if errors:
                return FormOutcome("form", s, errors, dict(form))
            if not claim_link(store, secret):
                return FormOutcome("used", s)
            respondent = secrets.token_hex(12)
            records = []
            for q, score, comment in answers:
                record: dict[str, Any] = {
                    "type": "survey_response",
                    "id": f"{respondent}/{q['id']}",
                    "survey": s["id"],
                    "question": q["id"],
                    "kind": q["kind"],
                    "respondent": respondent,
                    # the day only: a finer time could be matched against when a link was opened
                    "ts": day.isoformat(),
                }
                for key, value in (
                    ("score", score),
                    ("comment", comment),
                    ("team", link.team),
                    ("capability", q.get("capability")),
                ):
                    if value is not None:
                        record[key] = value
                records.append(record)
            try:
                ingest_records(store, records, self.settings, source="survey-form")
            except BaseException:
                release_link(store, secret)
                raise
            return FormOutcome("thanks", s)

        return self.access.write(write)

    # -- status, import, results --------------------------------------------------------------

    def survey_status(self, survey: str) -> dict[str, Any]:
        """Invitations, links and response rate per team (counts only, through the engine)."""
        from heatlens.metrics.survey_results import survey_results
        from heatlens.store.survey_links import link_counts

        now = self.clock()

        def build(store: Store) -> dict[str, Any]:
            s = _stored_survey(store, survey)
            results = survey_results(store, self.settings, survey, now=now).to_json()
            links = link_counts(store, survey)
            last = results["periods"][-1] if results["periods"] else None
            return {
                "schema": "heatlens.survey-status/v1",
                "survey": {k: s[k] for k in ("id", "title", "opens_at", "closes_at", "k")},
                "state": _window_state(s, now) or "open",
                "links_issued": sum(n for n, _ in links.values()),
                "links_used": sum(u for _, u in links.values()),
                "respondents": last["respondents"] if last else None,
                "response_rate": last["response_rate"] if last else None,
                "teams": last["teams"] if last else [],
            }

        return self.access.read(build)

    def import_answers(
        self,
        text: str,
        name: str,
        survey: str,
        mapping: Mapping[str, str],
        *,
        team: str | None = None,
        timestamp: str | None = None,
        labels: Mapping[str, Mapping[str, int]] | None = None,
    ) -> dict[str, Any]:
        """A form tool's CSV export of `survey` → responses, all or nothing."""
        from heatlens.ingest import ingest_records
        from heatlens.ingest.survey_csv import read_answers

        def write(store: Store) -> dict[str, Any]:
            s = _stored_survey(store, survey)
            records = read_answers(
                text,
                name,
                s,
                mapping,
                tz=self.settings.read_timezone,
                team=team,
                timestamp=timestamp,
                labels=labels,
            )
            result = ingest_records(store, records, self.settings, source=f"file:{name}")
            return {
                "survey": survey,
                "respondents": len({r["respondent"] for r in records}),
                "counts": counts_doc(result.counts),
                "data_version": store.data_version(),
            }

        return self.access.write(write)

    def survey_results(self, survey: str) -> dict[str, Any]:
        """One survey's results (heatlens.survey-results/v1), every number through the engine."""
        from heatlens.metrics.survey_results import survey_results

        now = self.clock()
        return self.access.read(
            lambda store: survey_results(store, self.settings, survey, now=now).to_json()
        )


def _window_state(survey: Mapping[str, Any], now: datetime) -> str | None:
    """`closed` or `not_open` when `now` is outside the survey's dates, else None."""
    closes, opens = survey.get("closes_at"), survey.get("opens_at")
    if closes and datetime.fromisoformat(closes) <= now:
        return "closed"
    if opens and datetime.fromisoformat(opens) > now:
        return "not_open"
    return None


def field_name(index: int) -> str:
    """The form field of the survey's question at `index` (ids may hold any character)."""
    return f"q{index}"


def _answers(
    survey: Mapping[str, Any], form: Mapping[str, str]
) -> tuple[list[tuple[dict[str, Any], int | None, str | None]], list[str]]:
    """The answers a submitted form holds, or what is wrong with it."""
    answers: list[tuple[dict[str, Any], int | None, str | None]] = []
    errors: list[str] = []
    for i, q in enumerate(survey["questions"]):
        value = (form.get(field_name(i)) or "").strip()
        if not value:
            continue
        label = q.get("text") or q["id"]
        if q["kind"] == "text":
            if len(value) > MAX_TEXT:
                errors.append(f"“{label}”: please keep the answer under {MAX_TEXT:,} characters.")
            else:
                answers.append((q, None, value))
            continue
        low, high = SCORE_RANGES[q["kind"]]
        if not value.isdigit() or not low <= int(value) <= high:
            errors.append(f"“{label}”: choose one of the answers {low} to {high}.")
            continue
        answers.append((q, int(value), None))
    if not answers and not errors:
        errors.append("Please answer at least one question before sending.")
    return answers, errors


def _check_frozen(
    store: Store, records: Sequence[dict[str, Any]], now: datetime, settings: Settings
) -> None:
    """Refuse to change the k of a survey that has opened (its answers were given under it)."""
    from heatlens.ingest.survey_csv import naive_instant

    stored = {r["id"]: r for r in store.rows("survey", ids=[r["id"] for r in records])}
    for r in records:
        old = stored.get(r["id"])
        if old is None:
            continue
        old_k = old.get("k") if old.get("k") is not None else 5
        if old_k == r["k"]:
            continue
        opened = [old.get("opens_at")]
        if r.get("opens_at"):
            opened.append(naive_instant(r["opens_at"], settings.read_timezone))
        if any(o is not None and o <= now for o in opened):
            raise InputError(
                f"survey {r['id']!r} has opened: its k is frozen at {old_k} (answers were given "
                f"under it), so it cannot become {r['k']}; keep k = {old_k}, or define a new "
                "survey id for a new wave"
            )


class RemoteSurveyOperations:
    """The survey operations of `RemoteApplication`: the server's admin routes run them."""

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        raise NotImplementedError  # RemoteApplication provides it

    def define_surveys(
        self, text: str | None, name: str, overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        body = {"text": text, "name": name, "overrides": dict(overrides or {})}
        doc: dict[str, Any] = self._call("POST", "/api/v1/admin/surveys", json=body)
        return doc

    def list_surveys(self) -> dict[str, Any]:
        doc: dict[str, Any] = self._call("GET", "/api/v1/admin/surveys")
        return doc

    def invite(
        self, survey: str, team: str, count: int, *, batch: str | None = None
    ) -> dict[str, Any]:
        body = {"team": team, "count": count, "batch": batch}
        doc: dict[str, Any] = self._call(
            "POST", f"/api/v1/admin/surveys/{_path(survey)}/invitations", json=body
        )
        return doc

    def survey_status(self, survey: str) -> dict[str, Any]:
        doc: dict[str, Any] = self._call("GET", f"/api/v1/admin/surveys/{_path(survey)}/status")
        return doc

    def import_answers(
        self,
        text: str,
        name: str,
        survey: str,
        mapping: Mapping[str, str],
        *,
        team: str | None = None,
        timestamp: str | None = None,
        labels: Mapping[str, Mapping[str, int]] | None = None,
    ) -> dict[str, Any]:
        body = {
            "text": text,
            "name": name,
            "map": dict(mapping),
            "team": team,
            "timestamp": timestamp,
            "labels": {k: dict(v) for k, v in (labels or {}).items()},
        }
        doc: dict[str, Any] = self._call(
            "POST", f"/api/v1/admin/surveys/{_path(survey)}/import", json=body
        )
        return doc

    def survey_results(self, survey: str) -> dict[str, Any]:
        doc: dict[str, Any] = self._call("GET", f"/api/v1/surveys/{_path(survey)}/results")
        return doc


def _path(survey: str) -> str:
    from urllib.parse import quote

    return quote(survey, safe="")
