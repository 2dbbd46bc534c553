"""The application (DESIGN §2): settings, a store and every operation on it, in one object.

`LocalApplication` works on a store (a file or Postgres, or a server's shared store);
`RemoteApplication` sends the same operations to a running `heatlens serve`. The CLI, the server's
routes and notebooks all call these methods; none of them holds policy of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heatlens.lazy import lazy_names

if TYPE_CHECKING:
    from heatlens.application.access import DirectAccess, StoreAccess
    from heatlens.application.local import LocalApplication, ReportResult, is_loopback
    from heatlens.application.remote import RemoteApplication, ServerError

    Application = LocalApplication | RemoteApplication

__all__ = [
    "Application",
    "DirectAccess",
    "LocalApplication",
    "RemoteApplication",
    "ReportResult",
    "ServerError",
    "StoreAccess",
    "is_loopback",
]

# loaded on first use: the remote application imports the HTTP client, which a command on a local
# store does not need (nor the other way round)
_load = lazy_names(
    "heatlens.application",
    {
        "DirectAccess": "access",
        "StoreAccess": "access",
        "LocalApplication": "local",
        "ReportResult": "local",
        "is_loopback": "local",
        "RemoteApplication": "remote",
        "ServerError": "remote",
    },
)


def __getattr__(name: str) -> Any:
    if name == "Application":
        return _load("LocalApplication") | _load("RemoteApplication")
    return _load(name)
