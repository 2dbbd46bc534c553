"""Running the app under uvicorn: what `heatlens serve` and `heatlens demo` start."""

from __future__ import annotations

import socket
from collections.abc import Callable

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


def run_server(
    settings: Settings, host: str, port: int, *, announce: Callable[[str], object] = print
) -> None:
    """Serve `settings.store` on host:port until Ctrl+C."""
    import uvicorn

    from heatlens.web.app import create_app

    check_port(host, port)
    app = create_app(settings, settings.store, host=host)
    where = f"http://{host}:{port}" if port else f"a free port of {host} (see below)"
    announce(f"serving {settings.store} on {where} (Ctrl+C stops)")
    uvicorn.run(app, host=host, port=port, log_level="info")
