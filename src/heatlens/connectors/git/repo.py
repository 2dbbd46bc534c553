"""A local git repository, read through the `git` command line (no library: git is everywhere).

Only plumbing-stable output is parsed: `git log` and `git for-each-ref` with explicit formats whose
fields are separated by control characters no commit or tag name can contain.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NoReturn

from heatlens.connectors.git.times import Oddities, Unreadable
from heatlens.errors import ConnectorError

_FS = "\x1f"  # field separator in git's output: no sha, ref name or date holds it
TITLE_LENGTH = 300  # longest title kept (an SVN-era message may be one line of kilobytes)


@dataclass(frozen=True)
class Commit:
    """One commit: enough to map it to a change and to walk the history."""

    sha: str
    parents: tuple[str, ...]
    committed_at: datetime | None  # None: git holds no readable time (the commit is no change)
    authored_at: datetime | None
    author: str
    title: str  # the first line of the message


@dataclass(frozen=True)
class Tag:
    """A tag naming a commit, at its tag time (tagger date, or the commit's date if lightweight)."""

    name: str
    commit: str
    at: datetime
    annotated: bool


def title(message: str) -> str:
    """The first line of a commit message, stripped (at most TITLE_LENGTH characters)."""
    line = message.lstrip().split("\n", 1)[0].strip()
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


class UnknownRevision(ConnectorError):
    """A revision remembered from an earlier sync is gone (history rewritten or pruned)."""


def _env() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat"}


def _not_installed() -> ConnectorError:
    return ConnectorError("git is not installed: install it (e.g. apt-get install git)")


class GitRepo:
    """A repository at `path` (a work tree or a bare repository)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.oddities = Oddities()  # odd times met while reading, for the sync's warnings
        self.untimed_tags: list[str] = []  # annotated tags without a tagger date
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
        try:
            return subprocess.run(
                ["git", "-C", str(self.path), *args],
                input=input,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=_env(),
                check=False,
            )
        except FileNotFoundError:
            raise _not_installed() from None

    def _git(self, *args: str, input: str | None = None, check: bool = True) -> str:
        done = self._run(*args, input=input)
        if check and done.returncode != 0:
            self._failed(args[0], done.returncode, done.stderr)
        return done.stdout

    def _failed(self, command: str, status: int, stderr: str) -> NoReturn:
        message = stderr.strip().splitlines()
        first = message[0] if message else f"exit status {status}"
        if "bad revision" in first or "bad object" in first or "unknown revision" in first:
            raise UnknownRevision(f"{self.path}: {first}")
        raise ConnectorError(f"git {command} failed in {self.path}: {first}")

    def _records(self, *args: str, input: str) -> Iterator[str]:
        """The NUL-ended records of a git command's output as git writes them (a long history
        is parsed while git still walks it, and never held whole)."""
        with tempfile.TemporaryFile() as errors:
            try:
                proc = subprocess.Popen(
                    ["git", "-C", str(self.path), *args],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=errors,
                    env=_env(),
                )
            except FileNotFoundError:
                raise _not_installed() from None
            assert proc.stdin is not None and proc.stdout is not None
            with proc:
                # git reads all of --stdin before it writes anything: no deadlock
                proc.stdin.write(input.encode())
                proc.stdin.close()
                rest = b""
                while chunk := proc.stdout.read(1 << 20):
                    *done, rest = (rest + chunk).split(b"\0")
                    for rec in done:
                        yield rec.decode("utf-8", errors="replace")
                if rest.strip():
                    yield rest.decode("utf-8", errors="replace")
            if proc.returncode != 0:
                errors.seek(0)
                self._failed(args[0], proc.returncode, errors.read().decode(errors="replace"))

    def shallow(self) -> bool:
        """Whether this is a shallow clone (its history stops short of the first commit)."""
        return self._git("rev-parse", "--is-shallow-repository", check=False).strip() == "true"

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

    def commits(
        self,
        tips: Sequence[str],
        exclude: Sequence[str] = (),
        progress: Callable[[int], None] | None = None,
    ) -> list[Commit]:
        """Commits reachable from `tips` and from none of `exclude`, newest first (`progress`
        is told how many were read, every few thousand)."""
        if not tips:
            return []
        # -z ends each commit with NUL, which no message holds; the message comes last, so a
        # separator character inside it cannot shift the fields before it
        fmt = _FS.join(["%H", "%P", "%cd", "%ad", "%ae", "%B"])
        revs = "".join(f"{t}\n" for t in tips) + "".join(f"^{x}\n" for x in exclude)
        log = self._records("log", "--stdin", "-z", "--date=raw", f"--format={fmt}", input=revs)
        commits: list[Commit] = []
        for rec in log:
            if progress and len(commits) % 5000 == 0:
                progress(len(commits))
            rec = rec.lstrip("\n")
            if not rec:
                continue
            try:
                commits.append(self._commit(rec))
            except ValueError:  # fewer fields than asked: nothing in it can be trusted
                self.oddities.skip(rec[:40], "an unreadable log entry")
        return commits

    def _commit(self, rec: str) -> Commit:
        sha, parents, committed, authored, author, message = rec.split(_FS, 5)
        odd = self.oddities
        try:
            committed_at: datetime | None = odd.read(sha, committed)
        except Unreadable:
            odd.skip(sha, self.stored_date(sha, "committer"))
            committed_at = None
        try:
            authored_at: datetime | None = odd.read(sha, authored)
        except Unreadable:
            if committed_at is not None:
                odd.no_author_time.setdefault(sha, self.stored_date(sha, "author"))
            authored_at = None
        return Commit(
            sha,
            tuple(parents.split()),
            committed_at,
            authored_at,
            author.strip().lower(),
            title(message),
        )

    def first_parent(self, tip: str, since: str | None = None) -> list[tuple[str, datetime]]:
        """(sha, committer date) of the first-parent chain of `tip`, oldest first, after `since`
        (a commit with no readable date is left out and noted)."""
        args = ["log", "--first-parent", "--reverse", "--date=raw", f"--format=%H{_FS}%cd", tip]
        if since:
            args.append(f"^{since}")
        out = self._git(*args)
        chain = []
        for line in out.splitlines():
            if line:
                sha, at = line.split(_FS)
                try:
                    chain.append((sha, self.oddities.read(sha, at)))
                except Unreadable:
                    self.oddities.skip(sha, self.stored_date(sha, "committer"))
        return chain

    def tags(self) -> tuple[list[Tag], list[str]]:
        """Every tag that names a commit, and the names of tags that name something else.

        A tag with no readable time is left out and noted; an annotated tag without a tagger
        (early git wrote none) takes its commit's time, as a lightweight tag does."""
        fields = [
            "%(refname:strip=2)",
            "%(objecttype)",
            "%(objectname)",
            "%(*objecttype)",
            "%(*objectname)",
            "%(taggerdate:raw)",
            "%(committerdate:raw)",
            "%(*committerdate:raw)",
        ]
        out = self._git("for-each-ref", "--format=" + "%1f".join(fields), "refs/tags")
        tags, skipped = [], []
        for line in out.splitlines():
            if not line:
                continue
            name, otype, obj, peeled_type, peeled, tagger, committer, peeled_committer = line.split(
                _FS
            )
            if otype == "commit":
                tags_commit, raw, annotated = obj, committer, False
            else:
                target = peeled if peeled_type == "commit" else self.resolve(f"refs/tags/{name}")
                if otype != "tag" or target is None:
                    skipped.append(name)
                    continue
                tags_commit, raw, annotated = target, tagger, True
                if not tagger.strip():
                    self.untimed_tags.append(name)
                    raw = peeled_committer or self._git(
                        "log", "-1", "--date=raw", "--format=%cd", target
                    )
            try:
                tags.append(Tag(name, tags_commit, self.oddities.read(name, raw), annotated))
            except Unreadable:
                where = f"refs/tags/{name}"
                self.oddities.skip(
                    name, self.stored_date(where, "tagger" if annotated else "committer")
                )
        return tags, skipped

    def stored_date(self, obj: str, header: str) -> str:
        """The date of the `committer`, `author` or `tagger` header of `obj` as the object stores
        it (git prints an unreadable one as nothing or 0: a warning should show what is there)."""
        text = self._git("cat-file", "-p", obj, check=False)
        for line in text.split("\n\n", 1)[0].splitlines():
            if line.startswith(header + " "):
                return line.rpartition(">")[2].strip()
        return ""

    def branch(self, name: str) -> str:
        """The commit a branch (local, else any ref of that name) points at."""
        for rev in (f"refs/heads/{name}", name):
            sha = self.resolve(rev)
            if sha:
                return sha
        heads = self._git("for-each-ref", "--format=%(refname:strip=2)", "refs/heads").split()
        known = ", ".join(heads[:10]) or "none"
        raise ConnectorError(f"{self.path}: no branch {name!r} (branches: {known})")
