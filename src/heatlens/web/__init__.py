"""The HTTP service (DESIGN §5): an app factory, the JSON API, tokens checked per request."""

from heatlens.web.app import create_app
from heatlens.web.server import check_port, run_server

__all__ = ["check_port", "create_app", "run_server"]
