"""The CDEvents connector: CDEvents v0.5 (CloudEvents structured or binary mode) → deployments,
changes, incidents and CI usage."""

from heatlens.connectors.cdevents.mapping import CdeventsOptions, Mapped, map_event

__all__ = ["CdeventsOptions", "Mapped", "map_event"]
