"""The GitHub connector: webhook payloads (and, later, REST sync) → changes, deployments, usage,
incidents."""

from heatlens.connectors.github.mapping import GithubOptions, Mapped, map_event

__all__ = ["GithubOptions", "Mapped", "map_event"]
