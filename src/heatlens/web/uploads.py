"""Files uploaded for `heatlens --server URL ingest`, waiting to be ingested.

They live in one directory per server, removed at shutdown (the app's lifespan, which a SIGTERM
or Ctrl+C runs); an upload is removed as soon as it is ingested, when its client goes away
mid-upload, or `EXPIRY` after it arrived if nobody ingests it. Together they may take at most
`server.max_upload_bytes` of disk, so a client cannot fill it with uploads it never ingests.
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path

from heatlens.web.errors import ApiError

# an upload nobody ingested within this many seconds is removed
EXPIRY = 3600.0
NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")
_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


class Uploads:
    """The server's pending uploads and the disk they may take."""

    def __init__(self, quota: int) -> None:
        self.quota = quota
        self._root: Path | None = None
        self._sizes: dict[str, int] = {}
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="heatlens-uploads-"))
        return self._root

    def new(self, name: str) -> tuple[str, Path]:
        """A fresh upload id and the path its file goes to; a bad name is a 400."""
        if not NAME.fullmatch(name) or name.startswith("."):
            raise ApiError(400, "bad_request", f"file name {name!r}: use letters, digits, . _ -")
        self._expire()
        upload = secrets.token_urlsafe(18)
        folder = self.root / upload
        folder.mkdir()
        with self._lock:
            self._sizes[upload] = 0
            self._started[upload] = time.monotonic()
        return upload, folder / name

    def grow(self, upload: str, size: int, name: str) -> None:
        """Account `size` more bytes to `upload`; 413 (and the upload removed) past the quota."""
        with self._lock:
            self._sizes[upload] = self._sizes.get(upload, 0) + size
            total = sum(self._sizes.values())
        if total > self.quota:
            self.discard(upload)
            raise ApiError(
                413,
                "request_too_large",
                f"{name} does not fit: pending uploads may take at most "
                f"server.max_upload_bytes ({self.quota:,} bytes); ingest or wait for earlier "
                "uploads first",
            )

    def path(self, upload: str) -> Path:
        """The file of an upload, or 404."""
        folder = self.root / upload if _ID.fullmatch(upload) else None
        files = list(folder.iterdir()) if folder is not None and folder.is_dir() else []
        if len(files) != 1:
            raise ApiError(404, "not_found", f"no upload {upload!r}: upload the file first")
        return files[0]

    def discard(self, upload: str) -> None:
        """Remove an upload and forget its bytes."""
        if _ID.fullmatch(upload):
            with self._lock:
                self._sizes.pop(upload, None)
                self._started.pop(upload, None)
            if self._root is not None:
                shutil.rmtree(self._root / upload, ignore_errors=True)

    def discard_all(self) -> None:
        """Remove every upload and the directory (at shutdown)."""
        with self._lock:
            self._sizes.clear()
            self._started.clear()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def _expire(self) -> None:
        cutoff = time.monotonic() - EXPIRY
        with self._lock:
            old = [u for u, at in self._started.items() if at < cutoff]
        for upload in old:
            self.discard(upload)
