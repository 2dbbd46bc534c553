"""How the application reaches its store: every read and every write goes through a `StoreAccess`.

A command-line process owns its store alone (`DirectAccess`: reads and writes in the caller's
thread). A server shares one store between many requests: its access (heatlens.web.service) runs
reads on a pool of connections side by side and every write on its one writer thread. The
application's operations are written once against this interface and behave the same in both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from heatlens.store import Store

__all__ = ["DirectAccess", "StoreAccess"]

T = TypeVar("T")


class StoreAccess(Protocol):
    """Runs functions of a store: `read` must not write, `write` may."""

    url: str

    def read(self, fn: Callable[[Store], T]) -> T:
        """Call `fn(store)` for a read; it sees committed data only."""
        ...

    def write(self, fn: Callable[[Store], T]) -> T:
        """Call `fn(store)` as the store's one writer; returns after it committed."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


class DirectAccess:
    """The store at `url`, opened on first use, in this thread.

    Reads open it read-only (so they never create or lock a store for writing, and a missing
    store is an EmptyStoreError); the first write reopens it for writing. `memory_limit`: see
    `Store.open`.
    """

    def __init__(self, url: str, *, memory_limit: int | None = None) -> None:
        self.url = url
        self.memory_limit = memory_limit
        self._store: Store | None = None

    def read(self, fn: Callable[[Store], T]) -> T:
        if self._store is None:
            self._store = Store.open(self.url, read_only=True, memory_limit=self.memory_limit)
        return fn(self._store)

    def write(self, fn: Callable[[Store], T]) -> T:
        if self._store is not None and self._store.read_only:
            self.close()
        if self._store is None:
            self._store = Store.open(self.url, memory_limit=self.memory_limit)
        return fn(self._store)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
