"""Running the app under uvicorn: what `heatlens serve` and `heatlens demo` start.

Uvicorn is configured from the settings (docs/security.md): forwarded headers are believed only
from `server.trusted_proxies`, at most `server.max_connections` connections are served at once,
and a client has `server.header_timeout` seconds to send its request's headers — uvicorn by itself
waits for ever for the first request of a connection, so a client sending a byte a second
would hold its connection open indefinitely.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from heatlens.errors import ConfigError
from heatlens.settings import Settings

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
    """Uvicorn's HTTP/1.1 protocol, closing a connection whose first request's headers have not
    all arrived `header_timeout` seconds after it opened. (Later requests of a kept-alive
    connection are bounded by uvicorn's keep-alive timeout, which runs until their headers
    are complete.)"""

    header_timeout = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = self.loop.call_later(
            self.header_timeout, self._too_slow
        )

    def _too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection that sent no complete request in time")
            self.transport.close()

    def _cancel_deadline(self) -> None:
        deadline = getattr(self, "_header_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._header_deadline = None

    def _unset_keepalive_if_required(self) -> None:
        # called by uvicorn as each request's headers are complete
        super()._unset_keepalive_if_required()
        self._cancel_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn settings that follow from heatlens's."""
    timeout = {"header_timeout": settings.server_header_timeout}
    protocol = type("HeaderDeadlineProtocol", (HeaderDeadline,), timeout)
    trusted = settings.server_trusted_proxies
    return {
        "http": protocol,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": list(trusted),
        "limit_concurrency": settings.server_max_connections,
        "timeout_keep_alive": 5,
    }


def run_server(
    settings: Settings, host: str, port: int, *, announce: Callable[[str], object] = print
) -> None:
    """Serve `settings.store` on host:port until Ctrl+C."""
    import uvicorn

    from heatlens.web.app import create_app

    check_port(host, port)
    app = create_app(settings, settings.store, host=host, announce=announce)
    where = f"http://{host}:{port}" if port else f"a free port of {host} (see below)"
    announce(f"serving {settings.store} on {where} (Ctrl+C stops)")
    uvicorn.run(app, host=host, port=port, log_level="info", **uvicorn_options(settings))
