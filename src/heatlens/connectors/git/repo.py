"""A local git repository, read through the `git` command line (no library: git is everywhere).

Only plumbing-stable output is parsed: `git log` and `git for-each-ref` with explicit formats whose
fields are separated by control characters no commit or tag name can contain.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from heatlens.errors import ConnectorError

_FS, _RS = "\x1f", "\x1e"  # field and record separators in git's output


@dataclass(frozen=True)
class Commit:
    """One commit: enough to map it to a change and to walk the history."""

    sha: str
    parents: tuple[str, ...]
    committed_at: datetime
    authored_at: datetime
    author: str


@dataclass(frozen=True)
class Tag:
    """A tag naming a commit, at its tag time (tagger date, or the commit's date if lightweight)."""

    name: str
    commit: str
    at: datetime
    annotated: bool


class UnknownRevision(ConnectorError):
    """A revision remembered from an earlier sync is gone (history rewritten or pruned)."""


class GitRepo:
    """A repository at `path` (a work tree or a bare repository)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_dir():
            raise ConnectorError(f"{path}: no such directory (expected a git repository)")
        found = self._run("rev-parse", "--absolute-git-dir")
        if found.returncode != 0:
            if "dubious ownership" in found.stderr:
                raise ConnectorError(
                    f"{path}: git refuses a repository owned by another user; trust it with "
                    f"`git config --global --add safe.directory {path}`"
                )
            raise ConnectorError(
                f"{path} is not a git repository (pass the directory of a clone, or a bare "
                "repository)"
            )
        git_dir = found.stdout.strip()
        top = self._git("rev-parse", "--show-toplevel", check=False).strip()
        # a bare repository has no work tree: it is its own top level
        self.root = Path(top) if top else Path(git_dir)

    def _run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat"}
        try:
            return subprocess.run(
                ["git", "-C", str(self.path), *args],
                input=input,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=env,
                check=False,
            )
        except FileNotFoundError:
            raise ConnectorError(
                "git is not installed: install it (e.g. apt-get install git)"
            ) from None

    def _git(self, *args: str, input: str | None = None, check: bool = True) -> str:
        done = self._run(*args, input=input)
        if check and done.returncode != 0:
            message = done.stderr.strip().splitlines()
            first = message[0] if message else f"exit status {done.returncode}"
            if "bad revision" in first or "bad object" in first or "unknown revision" in first:
                raise UnknownRevision(f"{self.path}: {first}")
            raise ConnectorError(f"git {args[0]} failed in {self.path}: {first}")
        return done.stdout

    def resolve(self, rev: str) -> str | None:
        """The commit sha `rev` names, or None."""
        out = self._git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
        return out.strip() or None

    def existing(self, shas: Sequence[str]) -> set[str]:
        """The commits of `shas` this repository still has (one git call for all of them)."""
        if not shas:
            return set()
        out = self._git("cat-file", "--batch-check", input="".join(f"{s}\n" for s in shas))
        return {parts[0] for parts in map(str.split, out.splitlines()) if parts[1:2] == ["commit"]}

    def commits(self, tips: Sequence[str], exclude: Sequence[str] = ()) -> list[Commit]:
        """Commits reachable from `tips` and from none of `exclude`, newest first."""
        if not tips:
            return []
        fmt = _FS.join(["%H", "%P", "%cI", "%aI", "%ae"]) + _RS
        revs = "".join(f"{t}\n" for t in tips) + "".join(f"^{x}\n" for x in exclude)
        out = self._git("log", "--stdin", f"--format={fmt}", input=revs)
        commits = []
        for rec in out.split(_RS):
            rec = rec.strip("\n")
            if not rec:
                continue
            sha, parents, committed, authored, author = rec.split(_FS)
            commits.append(
                Commit(
                    sha,
                    tuple(parents.split()),
                    datetime.fromisoformat(committed),
                    datetime.fromisoformat(authored),
                    author.strip().lower(),
                )
            )
        return commits

    def first_parent(self, tip: str, since: str | None = None) -> list[tuple[str, datetime]]:
        """(sha, committer date) of the first-parent chain of `tip`, oldest first, after `since`."""
        args = ["log", "--first-parent", "--reverse", f"--format=%H{_FS}%cI", tip]
        if since:
            args.append(f"^{since}")
        out = self._git(*args)
        chain = []
        for line in out.splitlines():
            if line:
                sha, at = line.split(_FS)
                chain.append((sha, datetime.fromisoformat(at)))
        return chain

    def tags(self) -> tuple[list[Tag], list[str]]:
        """Every tag that names a commit, and the names of tags that name something else."""
        fields = [
            "%(refname:strip=2)",
            "%(objecttype)",
            "%(objectname)",
            "%(*objecttype)",
            "%(*objectname)",
            "%(taggerdate:iso-strict)",
            "%(committerdate:iso-strict)",
        ]
        out = self._git("for-each-ref", "--format=" + "%1f".join(fields), "refs/tags")
        tags, skipped = [], []
        for line in out.splitlines():
            if not line:
                continue
            name, otype, obj, peeled_type, peeled, tagger, committer = line.split(_FS)
            if otype == "commit":
                tags.append(Tag(name, obj, datetime.fromisoformat(committer), annotated=False))
                continue
            commit = peeled if peeled_type == "commit" else self.resolve(f"refs/tags/{name}")
            if otype != "tag" or commit is None or not tagger:
                skipped.append(name)
                continue
            tags.append(Tag(name, commit, datetime.fromisoformat(tagger), annotated=True))
        return tags, skipped

    def branch(self, name: str) -> str:
        """The commit a branch (local, else any ref of that name) points at."""
        for rev in (f"refs/heads/{name}", name):
            sha = self.resolve(rev)
            if sha:
                return sha
        heads = self._git("for-each-ref", "--format=%(refname:strip=2)", "refs/heads").split()
        known = ", ".join(heads[:10]) or "none"
        raise ConnectorError(f"{self.path}: no branch {name!r} (branches: {known})")
