"""The one error tree of heatlens. Every error a user can cause or fix is a HeatlensError."""

from __future__ import annotations


class HeatlensError(Exception):
    """Base of every error heatlens reports to a user: one line, what is wrong and what to do."""

    exit_code = 2


class ConfigError(HeatlensError):
    """A setting, config file or command-line option is wrong."""


class InputError(HeatlensError):
    """Records or files given to heatlens are invalid; nothing was stored."""

    def __init__(self, message: str, problems: list[object] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class StoreError(HeatlensError):
    """The store cannot be opened, read or written."""


class StoreLockedError(StoreError):
    """Another process holds the store (usually a running `heatlens serve`)."""


class EmptyStoreError(StoreError):
    """The store holds no records yet."""


class ConnectorError(HeatlensError):
    """A source system (GitHub, GitLab, git, Backstage, …) could not be read."""
