"""The dashboard's filters — range, grain, team, capability — read from and written to the URL, so a
page a person sends is the page the other person sees."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from urllib.parse import urlencode

from heatlens.errors import ConfigError
from heatlens.metrics.periods import GRAINS

# a page is one request: its dates stay in a sane span and its periods few enough to draw
EARLIEST, LATEST = date(1970, 1, 1), date(2100, 1, 1)
MAX_PERIODS = 1000
_DAYS = {"day": 1, "week": 7, "month": 28, "quarter": 90}


@dataclass(frozen=True)
class Filters:
    """What a page shows: `start`/`end` as in `heatlens report --from/--to` (None: the engine's
    default range), a grain, and optionally one team and one capability."""

    grain: str
    start: date | None = None
    end: date | None = None
    team: str | None = None
    capability: str | None = None

    def query(self, **changes: str | None) -> str:
        """This page's query string with `changes` applied (None drops a parameter)."""
        params = {
            "grain": self.grain,
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
            "team": self.team,
            "capability": self.capability,
        }
        params.update(changes)
        kept = {k: v for k, v in params.items() if v}
        return "?" + urlencode(kept) if kept else ""

    def with_team(self, team: str | None) -> Filters:
        """The same filters for another team."""
        return replace(self, team=team)


def parse_day(value: str | None, name: str) -> date | None:
    """A date parameter (None when absent), within the span a page may show."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{name} {value!r}: expected a date YYYY-MM-DD") from None
    if not EARLIEST <= day <= LATEST:
        raise ConfigError(f"{name} {value}: expected a date between {EARLIEST} and {LATEST}")
    return day


def parse_filters(params: Mapping[str, str], default_grain: str) -> Filters:
    """Filters from query parameters; a bad value is a ConfigError naming the parameter."""
    grain = params.get("grain") or default_grain
    if grain not in GRAINS:
        raise ConfigError(f"grain {grain!r}: expected one of {', '.join(GRAINS)}")
    start, end = parse_day(params.get("from"), "from"), parse_day(params.get("to"), "to")
    if start and end and start >= end:
        raise ConfigError(f"from {start} must be before to {end}")
    if start and grain in _DAYS:
        periods = ((end or date.today()) - start).days // _DAYS[grain]
        if periods > MAX_PERIODS:
            raise ConfigError(
                f"from {start} to {end or 'now'} is more than {MAX_PERIODS} periods of a "
                f"{grain}: choose a later from, an earlier to or a longer grain"
            )
    return Filters(
        grain,
        start,
        end,
        params.get("team") or None,
        params.get("capability") or None,
    )
