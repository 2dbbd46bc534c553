"""The HTTP service (DESIGN §5): an app factory, the JSON API, tokens checked per request."""

from heatlens.web.app import create_app

__all__ = ["create_app"]
