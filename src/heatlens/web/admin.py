"""Admin endpoints: what the CLI needs to work through a running server (`--server URL`)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/admin")
