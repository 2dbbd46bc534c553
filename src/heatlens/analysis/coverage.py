"""Where the data is: which records a report's metrics read, whether its range holds any, and, when
it does not, the range that would (DESIGN §5: an empty range says where the data is and the command
that shows it; `demo` is suggested only to an empty store)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from heatlens.metrics.catalog import Metric
from heatlens.metrics.periods import calendar_start, midnight


class Span(Protocol):
    """The records of one type in time (the store's `Span`)."""

    records: int
    first: datetime
    last: datetime


class Records(Protocol):
    """What coverage asks of a store (analysis imports no driver: the store is handed in)."""

    def spans(self) -> dict[str, Any]: ...

    def count_between(self, type_name: str, start: datetime, end: datetime) -> int: ...


# plural names of record types, as a sentence names them
PLURAL = {
    "usage": "usage records",
    "deployment": "deployments",
    "change": "changes",
    "incident": "incidents",
    "survey": "survey waves",
    "survey_response": "survey responses",
}
EMPTY_STORE_HINT = (
    "the store holds no records yet: send some with `heatlens ingest FILE` or POST "
    "/api/v1/events, connect a source with `heatlens sync`, or try `heatlens demo`"
)


@dataclass
class StoredSpan:
    """A `Span` read back from JSON."""

    records: int
    first: datetime
    last: datetime


@dataclass(frozen=True)
class Coverage:
    """The records a report's metrics read (`needed`, in catalog order), every timed type's span
    in the store, and which needed types have records inside the report's range."""

    start: date
    end: date
    tz: str
    needed: tuple[str, ...]
    spans: dict[str, Span]
    in_range: frozenset[str]

    @property
    def store_empty(self) -> bool:
        return not self.spans

    @property
    def empty(self) -> bool:
        """True when no record any metric reads falls in the range."""
        return not self.in_range

    def covers(self, metric: Metric) -> bool:
        """Whether the range holds the records this metric reads."""
        return metric.records in self.in_range

    def suggestion(self) -> tuple[str, date] | None:
        """(grain, --from) of a range holding the needed records, or None when none are stored."""
        stored = [self.spans[t] for t in self.needed if t in self.spans]
        if not stored:
            return None
        tz = ZoneInfo(self.tz)
        first = min(s.first for s in stored).astimezone(tz).date()
        last = max(s.last for s in stored).astimezone(tz).date()
        days = (max(last, self.end) - first).days
        grain = "week" if days <= 120 else "month" if days <= 2 * 366 else "quarter"
        return grain, calendar_start(first, grain)

    def hint(self, command: str = "heatlens report") -> str:
        """One paragraph for a person: what the range lacks, where the records are, what to run."""
        if self.store_empty:
            return EMPTY_STORE_HINT
        tz = ZoneInfo(self.tz)
        lacking = either([PLURAL.get(t, t) for t in self.needed]) or "records"
        head = f"no {lacking} from {self.start} to {self.end - timedelta(days=1)}"
        spans = [
            f"{PLURAL.get(t, t)} span {_day(s.first, tz)} … {_day(s.last, tz)}"
            for t, s in self.spans.items()
            if t in self.needed
        ]
        found = self.suggestion()
        if found is None:
            held = ", ".join(f"{s.records:,} {PLURAL.get(t, t)}" for t, s in self.spans.items())
            return f"{head}: the store holds none of them (it holds {held})"
        grain, start = found
        return (
            f"{head}; {'; '.join(spans)}: try `{command} --grain {grain} --from {start}` "
            f"(or `--grain all` for all history)"
        )

    @property
    def missing(self) -> tuple[str, ...]:
        """The needed record types the range does not hold, in `needed` order."""
        return tuple(t for t in self.needed if t not in self.in_range)

    def where(self, type_name: str) -> str:
        """Where one record type's records are, for a sentence: "deployments span 2011-06-08 …
        2024-04-16", or "no incidents are stored"."""
        name = PLURAL.get(type_name, type_name)
        span = self.spans.get(type_name)
        if span is None:
            return f"no {name} are stored"
        tz = ZoneInfo(self.tz)
        return f"{name} span {_day(span.first, tz)} … {_day(span.last, tz)}"

    @classmethod
    def from_json(cls, doc: dict[str, Any], start: date, end: date, tz: str) -> Coverage:
        """`to_json` read back, with the report's range and time zone (e.g. from a server)."""
        spans: dict[str, Span] = {
            t: StoredSpan(int(s["records"]), _instant(s["first"]), _instant(s["last"]))
            for t, s in doc.get("spans", {}).items()
        }
        return cls(start, end, tz, tuple(doc["needed"]), spans, frozenset(doc.get("in_range", ())))

    def to_json(self) -> dict[str, Any]:
        """The coverage in the report JSON's `coverage` member."""
        found = self.suggestion()
        return {
            "needed": list(self.needed),
            "in_range": [t for t in self.needed if t in self.in_range],
            "spans": {
                t: {"records": s.records, "first": _iso(s.first), "last": _iso(s.last)}
                for t, s in self.spans.items()
            },
            "suggestion": None if found is None else {"grain": found[0], "from": str(found[1])},
        }


def coverage(
    store: Records, metrics: Iterable[Metric], start: date, end: date, tz: str
) -> Coverage:
    """The coverage of [start, end) (dates in `tz`) for `metrics`."""
    zone = ZoneInfo(tz)
    needed = tuple(dict.fromkeys(m.records for m in metrics))
    spans = store.spans()
    since, until = midnight(start, zone), midnight(end, zone)
    in_range = frozenset(
        t
        for t in needed
        if t in spans
        and spans[t].first < until
        and spans[t].last >= since
        and store.count_between(t, since, until) > 0
    )
    return Coverage(start, end, tz, needed, spans, in_range)


def either(names: list[str]) -> str:
    """`a`, `a or b`, `a, b or c`."""
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def _day(moment: datetime, tz: ZoneInfo) -> str:
    return str(moment.astimezone(tz).date())


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
