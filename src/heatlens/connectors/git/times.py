"""Git's recorded times, read as git stores them: a Unix time and, apart, the clock's offset.

Git keeps whatever the committer's tools wrote, and real histories hold offsets no clock ever had —
psf/requests has a 2011 commit at `+51800` — or no readable time at all. Git prints them anyway,
but not as ISO 8601 that parses. The Unix time alone places a commit in time; the offset only says
which clock read it, so an impossible offset is dropped (the time is read as UTC) and a commit or
tag with no readable time is left out. Either is counted and named in the sync's warnings, and
nothing else stops: one odd object never costs the rest of the history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import cache

_OFFSET = re.compile(r"([+-])(\d\d)(\d\d)")
# the offsets clocks use: UTC-12:00 (Baker Island) to UTC+14:00 (Line Islands)
_WEST, _EAST = timedelta(hours=-12), timedelta(hours=14)
_SHOWN = 5  # names quoted per warning
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class Unreadable(ValueError):
    """No readable time: none at all, 0 (git's "unparsable"), or one past the year 9999."""


def parse_raw(text: str) -> tuple[datetime, bool]:
    """Git's raw date (`--date=raw`, `%(…date:raw)`), `1313584730 +0200`, → (the time, whether its
    offset was possible). An impossible or missing offset gives the time in UTC."""
    seconds, _, offset = text.strip().partition(" ")
    zone = _zone(offset)
    try:
        # 0 is what git prints for a date it cannot parse (`yesterday`): no time, not 1970
        if int(seconds) > 0:
            return datetime.fromtimestamp(int(seconds), zone or UTC), zone is not None
    except (ValueError, OverflowError, OSError):
        pass
    raise Unreadable(text.strip() or "no date")


@cache
def _zone(offset: str) -> timezone | None:
    """The time zone of a `+HHMM` offset, or None when no clock has it (few distinct: cached)."""
    match = _OFFSET.fullmatch(offset)
    if match is None or int(match[3]) >= 60:
        return None
    sign = -1 if match[1] == "-" else 1
    delta = sign * timedelta(hours=int(match[2]), minutes=int(match[3]))
    return timezone(delta) if _WEST <= delta <= _EAST else None


@dataclass
class Oddities:
    """What a sync met that git accepts but no clock could have written, for its warnings."""

    # commit sha or tag name → the raw date it carried
    offsets: dict[str, str] = field(default_factory=dict)  # impossible offset: read as UTC
    skipped: dict[str, str] = field(default_factory=dict)  # no readable time: left out
    no_author_time: dict[str, str] = field(default_factory=dict)  # author time left empty

    def read(self, name: str, raw: str) -> datetime:
        """The time of `raw` for the commit or tag `name`, noting an impossible offset; raises
        Unreadable (see `skip`)."""
        at, possible = parse_raw(raw)
        if not possible:
            self.offsets.setdefault(name, raw.strip())
        return at

    def skip(self, name: str, stored: str) -> None:
        """Note that the commit or tag `name` has no readable time (`stored`: what it holds)."""
        self.skipped.setdefault(name, stored)

    def warnings(self) -> list[str]:
        """One warning per kind of oddity, each naming the commits or tags it concerns."""
        out = []
        if self.offsets:
            out.append(
                f"{_count(self.offsets)} an impossible time-zone offset: "
                f"{_named(self.offsets)}; read as UTC (git's Unix time is exact, only the offset "
                "is dropped)"
            )
        if self.skipped:
            out.append(
                f"{_count(self.skipped)} no readable time: {_named(self.skipped)}; left out, "
                "the rest is synced"
            )
        if self.no_author_time:
            out.append(
                f"{_count(self.no_author_time)} no readable author time: "
                f"{_named(self.no_author_time)}; `authored_at` is left empty"
            )
        return out


def _count(found: dict[str, str]) -> str:
    """`1 commit has`, `3 tags have`, `2 commits or tags have`."""
    shas = sum(1 for name in found if _SHA.fullmatch(name))
    noun = "commit" if shas == len(found) else "tag" if shas == 0 else "commit or tag"
    if len(found) == 1:
        return f"1 {noun} has"
    return f"{len(found):,} {noun.replace('commit', 'commits').replace('tag', 'tags')} have"


def _named(found: dict[str, str]) -> str:
    shown = [f"{_short(name)} ({raw or 'no date'})" for name, raw in list(found.items())[:_SHOWN]]
    more = len(found) - _SHOWN
    return ", ".join(shown) + (f" and {more:,} more" if more > 0 else "")


def _short(name: str) -> str:
    """A sha shortened as git shows it; a tag name as it is."""
    return name[:12] if _SHA.fullmatch(name) else name
