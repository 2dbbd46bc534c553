"""GitLab: webhook payloads (and, later, the sync connector) → canonical records."""

from heatlens.connectors.gitlab.mapping import GitLabOptions, Mapped, map_event, parse_time

__all__ = ["GitLabOptions", "Mapped", "map_event", "parse_time"]
