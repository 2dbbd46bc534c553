"""A real `heatlens serve` in a subprocess on 127.0.0.1, for tests that need a running server.

The server binds port 0 and the port it got is read from uvicorn's startup line, so there is no
race for a free port; that line (logged once the app has started and the socket listens) is the
readiness signal, and /healthz is asked once to confirm it.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

_RUNNING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


class ServeProcess:
    """One `heatlens --store URL serve` subprocess and what it logged."""

    def __init__(
        self,
        store_url: str,
        *,
        cwd: Path,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.store_url = store_url
        self.cwd = cwd
        self.extra_args = list(extra_args)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HEATLENS_")}
        # the rate limit counts store time, which grows with the machine's load: a test that is
        # not about the limit must not meet it on a busy CI machine (those that are set their own)
        self.env["HEATLENS_SERVER_RATE_LIMIT_PER_MINUTE"] = "1000000"
        self.env.update(env or {})
        self.log: list[str] = []
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None
        self._pump: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> str:
        """Start the server and return its base URL once /healthz answers (a new port each
        time it is started)."""
        self.url = ""
        cmd = [sys.executable, "-m", "heatlens", "--store", self.store_url]
        cmd += [*self.extra_args, "serve", "--port", "0"]
        self._proc = subprocess.Popen(
            cmd,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert self._proc is not None and self._proc.stdout is not None
            for line in self._proc.stdout:
                self.log.append(line)
                lines.put(line)
            lines.put(None)

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        deadline = time.monotonic() + timeout
        while not self.url:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise AssertionError("heatlens serve did not start:\n" + "".join(self.log))
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("heatlens serve exited:\n" + "".join(self.log))
            found = _RUNNING.search(line)
            if found:
                self.url = found.group(1)
        # uvicorn logs that line once its lifespan has started and its socket listens
        status: int | str
        try:
            left = max(1.0, deadline - time.monotonic())
            status = httpx.get(self.url + "/healthz", timeout=left).status_code
        except httpx.TransportError as exc:
            status = f"{type(exc).__name__}: {exc}"
        if status != 200:
            self.kill()
            raise AssertionError(f"/healthz answered {status}:\n" + "".join(self.log))
        return self.url

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (its front processes are its children)."""
        return self._proc.pid if self._proc is not None else None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop as Ctrl+C does (SIGINT) and wait for the store to be released."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._release()

    def _release(self) -> None:
        """Let the log pump reach the end of the output, then close the pipe."""
        if self._pump is not None:
            self._pump.join(timeout=10)
            self._pump = None
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as in a crash."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._release()


@contextmanager
def serving(store_url: str, cwd: Path, **kwargs: object) -> Iterator[ServeProcess]:
    server = ServeProcess(store_url, cwd=cwd, **kwargs)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()
