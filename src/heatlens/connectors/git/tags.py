"""Deploy tags that look like something else: pre-releases (`2.0.0rc1`, `v2.40.0-rc1`, `0.18a1`,
`REL_16_BETA1`) and maintenance lines named like branches (`1.0.x`).

A glob such as `v*` matches them all, and each would count as a production deployment. They are
only warned about — some teams do deploy release candidates — with the `--exclude-tags` globs that
leave them out.
"""

from __future__ import annotations

import re


def odd_tags_warning(names: list[str], glob: str) -> str | None:
    """A warning naming the deploy tags that look like pre-releases or branches, with the
    --exclude-tags that leaves them out; None when every tag looks like a release."""
    found = [(name, *tag_kind(name)) for name in names]
    found = [f for f in found if f[1]]
    if not found:
        return None
    looks = " or ".join(
        f"like {'a ' + kind if len(these) == 1 else kind + plural} ({some(these)})"
        for kind, plural in (("pre-release", "s"), ("branch", "es"))
        if (these := [name for name, k, _ in found if k == kind])
    )
    globs = ",".join(dict.fromkeys(pattern for _, _, pattern in found))
    tags = "1 tag" if len(found) == 1 else f"{len(found):,} tags"
    return (
        f"{tags} matching {glob!r} {'looks' if len(found) == 1 else 'look'} {looks}: each counts "
        f"as a deployment; if they are not, sync with --exclude-tags '{globs}'"
    )


# a pre-release word after a digit or a separator, ending the name or followed by a number or a
# separator: 2.0.0rc1, v2.40.0-rc1, REL_16_BETA1, 1.0.dev0, 0.18a1 (a, b, c only before a digit,
# so OpenSSL-style 1.0.2k releases are not taken for one)
_PRE = re.compile(
    r"(?i)(?P<sep>[._-]|(?<=\d))"
    r"(?P<word>alpha|beta|rc|pre|preview|dev|snapshot|nightly|canary|(?:a|b|c)(?=\d))"
    r"(?=\d|[._+-]|$)"
)
_BRANCH = re.compile(r"(?i)(?P<sep>[._-])(?P<word>x)$")  # 1.0.x, 2.x: a maintenance line


def tag_kind(name: str) -> tuple[str | None, str]:
    """("pre-release" | "branch" | None, a glob matching such tags) for a tag name."""
    for kind, pattern in (("branch", _BRANCH), ("pre-release", _PRE)):
        match = pattern.search(name)
        if match:
            before = match["sep"] or "[0-9]"
            word = match["word"]
            after = "" if kind == "branch" else "[0-9]*" if len(word) == 1 else "*"
            return kind, f"*{before}{word}{after}"
    return None, ""


def some(names: list[str], shown: int = 4) -> str:
    """The first names of a list, and how many more there are."""
    return ", ".join(names[:shown]) + (
        f" and {len(names) - shown:,} more" if len(names) > shown else ""
    )
