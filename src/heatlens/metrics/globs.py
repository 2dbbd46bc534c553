"""Glob patterns of the settings (`production_environments`, `bot_actors`; DESIGN §4 v2).

A pattern matches case-insensitively; `*` is any run of characters and `?` any one character.
Everything else is literal — brackets too, so the default bot pattern `*[bot]` matches
`renovate[bot]` (in `fnmatch` it would be a character class).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import ibis


def _regex(pattern: str) -> str:
    parts = []
    for ch in pattern.lower():
        if ch == "*":
            parts.append(".*")
        elif ch == "?":
            parts.append(".")
        elif ch.isalnum() or ch in "_ ":
            parts.append(ch)
        else:
            parts.append("\\" + ch)
    return "^" + "".join(parts) + "$"


def matches(value: str | None, patterns: Iterable[str]) -> bool:
    """Whether `value` matches one of `patterns` (Python side)."""
    if value is None:
        return False
    low = value.lower()
    return any(re.fullmatch(_regex(p)[1:-1], low) for p in patterns)


def matches_expr(column: Any, patterns: Iterable[str]) -> Any:
    """Ibis condition: `column` matches one of `patterns` (null never does). Patterns without a
    wildcard compare by equality, so the common case stays a plain `IN`."""
    patterns = [p.lower() for p in patterns]
    plain = [p for p in patterns if "*" not in p and "?" not in p]
    wild = [p for p in patterns if p not in plain]
    low = column.lower()
    cond = low.isin(plain) if plain else ibis.literal(False)
    for p in wild:
        body = p[1:]
        if p.startswith("*") and "*" not in body and "?" not in body:
            cond |= low.endswith(body)  # the common `*[bot]`: no regex per row
        else:
            cond |= low.re_search(_regex(p))
    return cond.fill_null(False)
