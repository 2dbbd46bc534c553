"""The bare ASGI app `bench/ingest_http.py` compares heatlens with: it reads each request's body
and answers 202 without storing anything, served by uvicorn with the very options `heatlens
serve` uses (heatlens.web.server.uvicorn_options). Its rate is the ceiling the HTTP stack and
the client leave on this machine.

    python bench/bare_app.py   # binds 127.0.0.1 on a free port, logs "Uvicorn running on …"
"""

from __future__ import annotations

from typing import Any

import uvicorn

from heatlens.settings import Settings
from heatlens.web.server import uvicorn_options

_ANSWER = b'{"status":"accepted"}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"21")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 202, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _ANSWER})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=0, log_level="info", **uvicorn_options(Settings()))
