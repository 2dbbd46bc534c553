"""The Backstage connector: a software catalog's Groups, Users and Components → teams,
memberships and services."""

from heatlens.connectors.backstage.sync import sync_backstage

__all__ = ["sync_backstage"]
