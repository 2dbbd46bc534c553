"""The GitHub connector: webhook payloads (`mapping`) and REST sync (`sync`, `heatlens sync github`)
→ changes, deployments, usage, incidents."""

from heatlens.connectors.github.mapping import GithubOptions, Mapped, map_event

__all__ = ["GithubOptions", "Mapped", "map_event"]
