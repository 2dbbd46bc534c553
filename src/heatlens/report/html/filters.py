"""The dashboard's filters — range, grain, team, capability — read from and written to the URL, so a
page a person sends is the page the other person sees."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from urllib.parse import urlencode

from heatlens.errors import ConfigError
from heatlens.metrics.catalog import GRAINS
from heatlens.metrics.periods import MAX_PERIODS, parse_day, too_many_periods


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


def parse_filters(params: Mapping[str, str], default_grain: str) -> Filters:
    """Filters from query parameters; a bad value is a ConfigError naming the parameter."""
    grain = params.get("grain") or default_grain
    if grain not in GRAINS:
        raise ConfigError(f"grain {grain!r}: expected one of {', '.join(GRAINS)}")
    start = parse_day(params.get("from") or None, "from")
    end = parse_day(params.get("to") or None, "to")
    if start and end and start >= end:
        raise ConfigError(f"from {start} must be before to {end}")
    if start and too_many_periods(grain, start, end or date.today()):
        raise ConfigError(
            f"from {start} to {end or 'now'} is more than {MAX_PERIODS:,} periods of a "
            f"{grain}: choose a later from, an earlier to or a longer grain"
        )
    return Filters(
        grain,
        start,
        end,
        params.get("team") or None,
        params.get("capability") or None,
    )
