"""The git connector: a local repository's commits → changes, its tags or branch → deployments."""

from heatlens.connectors.git.sync import GitSource, split_globs, sync_git

__all__ = ["GitSource", "split_globs", "sync_git"]
