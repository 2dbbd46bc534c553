"""The application (DESIGN §2): settings, a store and every operation on it, in one object.

`LocalApplication` works on a store (a file or Postgres, or a server's shared store);
`RemoteApplication` sends the same operations to a running `heatlens serve`. The CLI, the server's
routes and notebooks all call these methods; none of them holds policy of its own.
"""

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
