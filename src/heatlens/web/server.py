"""Running the app under uvicorn: what `heatlens serve` and `heatlens demo` start.

Uvicorn is configured from the settings (docs/security.md): forwarded headers are believed only
from `server.trusted_proxies`, at most `server.max_connections` connections are served at once,
and a client has `server.header_timeout` seconds to send a request's headers — uvicorn by itself
waits for ever, so a client sending a byte a second would hold its connection open
indefinitely.

Requests are parsed by httptools (llhttp, in C): at 64 concurrent clients posting one event each,
h11's pure-Python parser cost about as much as the route (docs/performance.md). The h11 protocol
below stays for a Python without httptools.
"""

from __future__ import annotations

import asyncio
import logging.config
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from heatlens.errors import ConfigError
from heatlens.settings import Settings

# the interpreter lock's switch interval while serving (Python's default: 5 ms). The writer
# thread gives the lock up in every DuckDB call and takes it back several times a call; while the
# event loop parses requests, each retake may wait the whole interval. At 0.5 ms single events
# went ~8–10 % faster in interleaved runs (docs/performance.md, "Eighth round").
SWITCH_INTERVAL = 0.0005

__all__ = ["check_port", "run_server"]


def check_port(host: str, port: int) -> None:
    """A port already taken is one clear line, before any work is done."""
    if not port:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}): "
                "is another server running there? pass --port"
            ) from None


class HeaderDeadline(H11Protocol):
    """Uvicorn's HTTP/1.1 protocol, closing a connection whose request headers have not all
    arrived `header_timeout` seconds after the connection opened or the request's first byte
    came. (Uvicorn's keep-alive timeout stops at the first byte of a request, so by itself
    nothing bounds how slowly the headers may follow.)"""

    header_timeout = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        # h11 stays IDLE until a request's headers are complete
        if self.conn.their_state is h11.IDLE:
            if self._deadline is None:
                self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection whose request headers took too long")
            self.transport.close()


class FastHeaderDeadline(HttpToolsProtocol):
    """Uvicorn's httptools protocol with the same deadline as `HeaderDeadline`: armed when the
    connection opens and again once a response is complete (waiting for the next request),
    disarmed when a request's headers are complete."""

    header_timeout = 10.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._deadline is None:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection whose request headers took too long")
            self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn settings that follow from heatlens's."""
    timeout = {"header_timeout": settings.server_header_timeout}
    base: type = FastHeaderDeadline if _httptools() else HeaderDeadline
    protocol = type("HeaderDeadlineProtocol", (base,), timeout)
    trusted = settings.server_trusted_proxies
    return {
        "http": protocol,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": list(trusted),
        "limit_concurrency": settings.server_max_connections,
        "timeout_keep_alive": 5,
        "access_log": settings.server_access_log,
    }


def _httptools() -> bool:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True


def run_server(
    settings: Settings, host: str, port: int, *, announce: Callable[[str], object] = print
) -> None:
    """Serve `settings.store` on host:port until Ctrl+C."""
    import uvicorn

    from heatlens.web.app import create_app

    check_port(host, port)
    sys.setswitchinterval(SWITCH_INTERVAL)  # this process serves: its threads are ours
    app = create_app(settings, settings.store, host=host, announce=announce)
    # the fronts share the listening socket by inheriting it: POSIX only
    if not settings.server_front_processes or os.name != "posix":
        where = f"http://{host}:{port}" if port else f"a free port of {host} (see below)"
        announce(f"serving {settings.store} on {where} (Ctrl+C stops)")
        uvicorn.run(app, host=host, port=port, log_level="info", **uvicorn_options(settings))
        return
    from heatlens.web.fronts import listen, serve_with_fronts
    from heatlens.web.refusals import activity

    sock = listen(host, port)
    fronts = settings.server_front_processes
    announce(
        f"serving {settings.store} on http://{host}:{sock.getsockname()[1]} with {fronts} "
        f"HTTP front process{'es' if fronts > 1 else ''} (Ctrl+C stops)"
    )
    logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)
    try:
        serve_with_fronts(app, settings, sock, host, lambda: activity(app))
    finally:
        sock.close()
