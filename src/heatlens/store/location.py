"""Store URLs: which engine a store lives in, and where."""

from __future__ import annotations

from dataclasses import dataclass

from heatlens.errors import StoreError

__all__ = ["StoreLocation", "parse_store_url"]


@dataclass(frozen=True)
class StoreLocation:
    """A parsed store URL."""

    dialect: str
    target: str  # a file path, ":memory:", or a Postgres URL


def parse_store_url(url: str) -> StoreLocation:
    """`duckdb:///rel.duckdb`, `duckdb:////abs.duckdb`, a plain path, or `postgres(ql)://…`."""
    if url.startswith(("postgres://", "postgresql://")):
        return StoreLocation("postgres", url)
    if url.startswith("duckdb://"):
        rest = url.removeprefix("duckdb://")
        path = rest[1:] if rest.startswith("/") else rest
        return StoreLocation("duckdb", path or ":memory:")
    if "://" in url:
        raise StoreError(
            f"unsupported store URL {url!r}: use duckdb:///path.duckdb or postgres://…"
        )
    return StoreLocation("duckdb", url)
