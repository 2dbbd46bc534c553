"""HTTP front processes: `server.front_processes` processes take the server's HTTP requests in
front of the one process that holds the store (docs/performance.md, "HTTP fronts").

Why: a DuckDB file is opened by one process, so that process runs every write; in one process
the HTTP work of a busy stream of webhooks (parsing requests, reading and checking bodies,
mapping payloads, sending answers) and the writer's transactions take turns on one interpreter
lock, and the writer waits for it far longer than it writes (docs/performance.md, "One process:
the serial group cycle"). A front process has an interpreter of its own.

How:
- The store's process binds the listening socket and starts the fronts; each accepts
  connections on that same socket under uvicorn (`server.*` settings as for one process) and
  talks to the store's process over one Unix socket (the hub), private to the server.
- A lean ingest route (heatlens.web.lean: the events API and the webhooks) is read in the front:
  its body read, its signature checked, its payload parsed and mapped (`LeanRoute.read`). What
  that gives goes to the store's process, which runs the route's credential check and write
  exactly as for a request of its own (`HeatlensApp.answer_lean`), and its answer comes back
  whole. The lean requests a front reads in one turn of its event loop travel as ONE frame, and
  the answers the store's process has in one turn as one frame back: under a stream of webhooks
  the store's process then spends about half the Python per request it did with a frame and an
  ASGI exchange each — and its writer thread waits less for the interpreter lock
  (docs/performance.md, "Seventh round"). A refusal of `read` (a bad signature, bad JSON) is
  answered by the front and noted in the store's process (the Data page).
- Every other request is handed over whole: the store's process runs the app on it and streams
  the answer back.

So every answer still means committed: the front answers only what the store's process sent.
The client address and scheme the front's uvicorn decided (`server.trusted_proxies`) travel
with each request. A front exits when the store's process goes away (its link closes; on Linux
the kernel also signals it); the store's process stops the fronts before it stops.

Frames on the hub are pickles (both ends are this code, on a socket only this user can open),
each prefixed with its length.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from heatlens.errors import HeatlensError
from heatlens.settings import Settings
from heatlens.web.errors import error_for, error_response
from heatlens.web.lean import HeatlensApp, lean_route, with_security_headers

log = logging.getLogger("heatlens.web")

_LENGTH = struct.Struct("!I")
# the parts of a request's ASGI scope the store's process needs to answer it
_SCOPE_KEYS = (
    "type",
    "asgi",
    "http_version",
    "method",
    "scheme",
    "path",
    "raw_path",
    "query_string",
    "root_path",
    "headers",
    "client",
    "server",
)


def _portable(scope: Scope) -> dict[str, Any]:
    """What of `scope` goes to the store's process (it pickles)."""
    return {key: scope[key] for key in _SCOPE_KEYS if key in scope}


# -- frames ---------------------------------------------------------------------------------------


class _Framed(asyncio.Protocol):
    """A stream of length-prefixed pickles, in both directions. Frames written in one turn of the
    event loop leave in one write."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._out: list[bytes] = []
        self._items: dict[str, list[Any]] = {}  # `add`: items leaving as one frame per kind
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is no subclass)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.lost()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        at = 0
        while len(buffer) - at >= 4:
            (size,) = _LENGTH.unpack_from(buffer, at)
            if len(buffer) - at - 4 < size:
                break
            frame = pickle.loads(memoryview(buffer)[at + 4 : at + 4 + size])
            at += 4 + size
            self.received(frame)
        del buffer[:at]

    def send(self, frame: object) -> None:
        data = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
        self._flush_soon()
        self._out += (_LENGTH.pack(len(data)), data)

    def add(self, kind: str, item: object) -> None:
        """Send `item` in the frame `(kind, [items…])` that leaves with this turn's other
        frames: one pickle for the many small messages of a busy turn (their order relative
        to other frames is not kept: each is a request or answer of its own)."""
        self._flush_soon()
        self._items.setdefault(kind, []).append(item)

    def _flush_soon(self) -> None:
        """At the end of this turn, once for all it sends."""
        if not self._out and not self._items:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        items, self._items = self._items, {}
        for frame in items.items():
            data = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
            self._out += (_LENGTH.pack(len(data)), data)
        out, self._out = self._out, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(out)

    def received(self, frame: Any) -> None:
        raise NotImplementedError

    def lost(self) -> None:
        """The other end went away."""


# -- the store's process: the hub ------------------------------------------------------------------


class Hub:
    """The store's process's end: runs the app on the requests the fronts hand over."""

    def __init__(self, app: HeatlensApp, activity: Callable[[], Any]) -> None:
        self.app = app
        self._activity = activity
        self._tasks: set[asyncio.Task[None]] = set()  # requests being answered (kept alive)

    def connection(self) -> _HubConnection:
        return _HubConnection(self)

    async def answer(
        self, link: _HubConnection, rid: int, scope: Scope, body: bytes | None
    ) -> None:
        """Run the app on one request; its messages go back to the front as they come. A body
        the front read (`body`) is given at once; otherwise the app's reads pull it from the
        front a chunk at a time, so a body the app refuses unread is never copied here."""
        chunks: asyncio.Queue[Message] = asyncio.Queue()
        link.requests[rid] = chunks
        given = body  # the body the front read, given at the first read
        more = body is None  # else: pulled from the front

        async def receive() -> Message:
            nonlocal given, more
            if given is not None:
                message: Message = {"type": "http.request", "body": given, "more_body": False}
                given = None
                return message
            if more:
                link.send(("pull", rid))
                message = await chunks.get()
                more = message["type"] == "http.request" and bool(message.get("more_body"))
                return message
            await asyncio.shield(link.closed)  # the front went away
            return {"type": "http.disconnect"}

        started = False

        async def send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            link.send((rid, message))

        scope = {**scope, "state": {}}
        try:
            await self.app(scope, receive, send)
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await error_response(
                    500, "internal_error", "internal server error; see the server log"
                )(scope, receive, send)
        finally:
            del link.requests[rid]

    async def lean(self, link: _HubConnection, rid: int, scope: Scope, read: Any) -> None:
        """Answer a lean route's request whose body the front read (`read`, what the route's
        `read` gave): its answer goes back whole, in the turn's one `answers` frame."""
        scope = {**scope, "state": {}, "app": self.app}
        response: Response
        try:
            route = lean_route(scope)
            assert route is not None
            response = await self.app.answer_lean(Request(scope), route, read)
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            response = error_response(
                500, "internal_error", "internal server error; see the server log"
            )
        link.add("answers", (rid, (response.status_code, response.raw_headers, response.body)))

    def start(self, answering: Coroutine[Any, Any, None]) -> None:
        """Answer a request in a task of its own, kept until it is done."""
        task = asyncio.ensure_future(answering)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def note(self, method: str, args: tuple[Any, ...]) -> None:
        """A front's webhook activity (a refusal, an answer), kept in this process."""
        if method in ("refused", "answered"):
            getattr(self._activity(), method)(*args)


class _HubConnection(_Framed):
    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub
        self.requests: dict[int, asyncio.Queue[Message]] = {}  # the body chunks pulled

    def received(self, frame: Any) -> None:
        kind = frame[0]
        if kind == "lean":
            for rid, scope, read in frame[1]:
                self.hub.start(self.hub.lean(self, rid, scope, read))
        elif kind == "request":
            _, rid, scope, body = frame
            self.hub.start(self.hub.answer(self, rid, scope, body))
        elif kind == "body":
            waiting = self.requests.get(frame[1])
            if waiting is not None:
                waiting.put_nowait(frame[2])
        elif kind == "note":
            self.hub.note(frame[1], frame[2])


# -- a front process -------------------------------------------------------------------------------


_PULL = "pull"  # the store's process asks for the next chunk of a request's body


class LinkLost(ConnectionError):
    """The store's process went away."""


class _Link(_Framed):
    """A front's end of the hub."""

    def __init__(self, on_lost: Callable[[], None]) -> None:
        super().__init__()
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Queue[Any]] = {}
        self._answers: dict[int, asyncio.Future[Any]] = {}  # lean requests sent (`lean`)
        self._on_lost = on_lost

    def received(self, frame: Any) -> None:
        if frame[0] == "answers":
            for rid, answer in frame[1]:
                future = self._answers.pop(rid, None)
                if future is not None and not future.done():
                    future.set_result(answer)
            return
        rid, message = (frame[1], _PULL) if frame[0] == "pull" else frame
        waiting = self._waiting.get(rid)
        if waiting is not None:
            waiting.put_nowait(message)

    def lost(self) -> None:
        for waiting in self._waiting.values():
            waiting.put_nowait(None)
        for future in self._answers.values():
            if not future.done():
                future.set_exception(LinkLost())
        self._answers.clear()
        self._on_lost()

    async def lean(self, scope: Scope, read: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Have the store's process write what a lean route's `read` gave (heatlens.web.lean);
        its answer: status, headers, body. The requests of a turn leave in one `lean` frame."""
        if self.closed.done():
            raise LinkLost()
        rid = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._answers[rid] = future
        self.add("lean", (rid, _portable(scope), read))
        try:
            return cast(tuple[int, list[tuple[bytes, bytes]], bytes], await future)
        finally:
            self._answers.pop(rid, None)

    async def forward(self, scope: Scope, body: bytes | None, receive: Receive, send: Send) -> None:
        """Have the store's process answer a request; relay its answer. Without `body`, the
        request's body is read from `receive` as the store's process asks for it."""
        if self.closed.done():
            raise LinkLost()
        rid = next(self._ids)
        waiting: asyncio.Queue[Any] = asyncio.Queue()
        self._waiting[rid] = waiting
        try:
            self.send(("request", rid, _portable(scope), body))
            while True:
                message = await waiting.get()
                if message is None:
                    raise LinkLost()
                if message == _PULL:
                    self.send(("body", rid, await receive()))
                    continue
                await send(message)
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    return
        finally:
            del self._waiting[rid]


class RemoteActivity:
    """A front's webhook activity: noted in the store's process (heatlens.web.refusals)."""

    def __init__(self, link: Callable[[], _Link | None]) -> None:
        self._link = link

    def refused(
        self, source: str, status: int, code: str, client: str, reason: str, event: str = ""
    ) -> None:
        self._note("refused", (source, status, code, client, reason, event))

    def answered(self) -> None:
        self._note("answered", ())

    def _note(self, method: str, args: tuple[Any, ...]) -> None:
        link = self._link()
        if link is not None:
            link.send(("note", method, args))


class FrontApp:
    """The ASGI app of a front process (see the module)."""

    def __init__(self, settings: Settings, hub: str) -> None:
        self.state = State()
        self.state.settings = settings
        self.state.webhook_activity = RemoteActivity(lambda: self._link)
        self._hub = hub
        self._link: _Link | None = None
        self.lost: Callable[[], None] = lambda: None  # told when the store's process is gone

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # heatlens serves no websockets
            return
        scope["app"] = self
        request = Request(scope, receive)
        route = lean_route(scope)
        try:
            assert self._link is not None
            if route is None:
                await self._link.forward(scope, None, receive, send)
                return
            read = await route.read(request)
            status, headers, body = await self._link.lean(scope, read)
            send = with_security_headers(send)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except LinkLost:
            response = error_response(
                503, "unavailable", "the server is stopping: nothing was stored; send it again"
            )
            await response(scope, receive, with_security_headers(send))
        except Exception as exc:
            response = await error_for(request, exc)
            await response(scope, receive, with_security_headers(send))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    _, self._link = await loop.create_unix_connection(
                        lambda: _Link(self.lost), self._hub
                    )
                except OSError as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._link is not None and self._link.transport is not None:
                    self._link.transport.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def run_front(settings: Settings, fd: int, hub: str, host: str, port: int) -> None:
    """A front process: serve the listening socket `fd` until told to stop or the store's
    process goes away."""
    import uvicorn

    from heatlens.web.server import uvicorn_options

    _die_with_parent()
    listening = socket.socket(fileno=fd)
    app = FrontApp(settings, hub)
    options = uvicorn_options(settings)
    options["limit_concurrency"] = max(
        1, settings.server_max_connections // settings.server_front_processes
    )
    config = uvicorn.Config(app, host=host, port=port, log_level="info", **options)

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:  # what uvicorn says of a socket it binds itself
                where = f"[{host}]" if ":" in host else host
                logging.getLogger("uvicorn.error").info(
                    "Uvicorn running on http://%s:%d (Press CTRL+C to quit)", where, port
                )

    server = Server(config)

    def lost() -> None:
        server.should_exit = server.force_exit = True

    app.lost = lost
    server.run(sockets=[listening])


def _die_with_parent() -> None:
    """On Linux, have the kernel send SIGTERM to this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before the call
        os.kill(os.getpid(), signal.SIGTERM)


# -- the store's process: starting and stopping ----------------------------------------------------


def listen(host: str, port: int) -> socket.socket:
    """The listening socket the fronts share (bound here, so port 0 gets its port once)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve_with_fronts(
    app: Any, settings: Settings, sock: socket.socket, host: str, activity: Callable[[], Any]
) -> None:
    """Run the app's lifespan and the hub in this process, and `server.front_processes` front
    processes on `sock`, until SIGINT or SIGTERM."""
    runner = _loop_factory()
    with asyncio.Runner(loop_factory=runner) as loop_runner:
        loop_runner.run(_serve(app, settings, sock, host, activity))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve(
    app: Any, settings: Settings, sock: socket.socket, host: str, activity: Callable[[], Any]
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="heatlens-hub-") as private:
        os.chmod(private, 0o700)
        path = str(Path(private) / "hub.sock")
        async with app.router.lifespan_context(app):
            hub = Hub(app, activity)
            server = await loop.create_unix_server(hub.connection, path)
            fronts = _Fronts(lambda: _start_front(settings, sock, path, host, port))
            try:
                await fronts.run(settings.server_front_processes, stop)
            finally:
                server.close()


class _Fronts:
    """The front processes: started, restarted when one exits unbidden (a crash), stopped."""

    RESTARTS = 5  # exits within WINDOW seconds that stop the server instead (a crash loop)
    WINDOW = 60.0

    def __init__(self, start: Callable[[], subprocess.Popen[bytes]]) -> None:
        self._start = start
        self.running: list[subprocess.Popen[bytes]] = []

    async def run(self, count: int, stop: asyncio.Event) -> None:
        """Keep `count` fronts running until `stop` is set; then stop them."""
        loop = asyncio.get_running_loop()
        exits: list[float] = []
        watchers: dict[asyncio.Future[Any], subprocess.Popen[bytes]] = {}

        def start() -> None:
            front = self._start()
            self.running.append(front)
            watchers[asyncio.ensure_future(_exited(front))] = front

        for _ in range(count):
            start()
        stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        try:
            while True:
                done, _ = await asyncio.wait(
                    [stopped, *watchers], return_when=asyncio.FIRST_COMPLETED
                )
                if stop.is_set():  # (Ctrl+C reaches the fronts too: their exit is no crash)
                    return
                for watcher in done:
                    front = watchers.pop(watcher)
                    self.running.remove(front)
                    now = loop.time()
                    exits[:] = [t for t in exits if now - t < self.WINDOW] + [now]
                    if len(exits) > self.RESTARTS:
                        raise HeatlensError(
                            f"the HTTP front processes exited {len(exits)} times within "
                            f"{self.WINDOW:.0f} s (last code {front.returncode}): the server "
                            "stopped; see the log above"
                        )
                    log.error(
                        "an HTTP front process exited (code %s): starting another",
                        front.returncode,
                    )
                    start()
        finally:
            stopped.cancel()
            await self._stop(list(watchers))

    async def _stop(self, watchers: list[asyncio.Future[Any]]) -> None:
        for front in self.running:
            if front.poll() is None:
                front.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.gather(*watchers), timeout=30)
        except TimeoutError:
            for front in self.running:
                front.kill()


async def _exited(front: subprocess.Popen[bytes]) -> int:
    return await asyncio.get_running_loop().run_in_executor(None, front.wait)


def _start_front(
    settings: Settings, sock: socket.socket, hub: str, host: str, port: int
) -> subprocess.Popen[bytes]:
    code = (
        "import pickle, sys; from heatlens.web.fronts import run_front; "
        "run_front(*pickle.load(sys.stdin.buffer))"
    )
    front = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        pass_fds=[sock.fileno()],
    )
    assert front.stdin is not None
    front.stdin.write(pickle.dumps((settings, sock.fileno(), hub, host, port)))
    front.stdin.close()
    return front
