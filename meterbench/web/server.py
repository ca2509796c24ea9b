"""The live view's HTTP side (DESIGN.md "Live view"): FastAPI app and a uvicorn server in a thread.

Routes: ``/`` the technician's page, ``/display`` the customer's display (read-only: the app has
no route that changes anything), ``/events`` server-sent events (``text/event-stream``, one
``data:`` JSON line per event, see docs/live-view.md) and ``/api/state`` (the publisher's snapshot).
Each ``/events`` client reads its own bounded, drop-oldest :class:`Subscription`, so a slow browser
never delays the publisher.
"""

# No `from __future__ import annotations`: FastAPI resolves the route annotations (Request) at definition.
import asyncio
import ipaddress
import json
import sys
import threading
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from meterbench.errors import ConfigError
from meterbench.web.publisher import EventPublisher

__all__ = ["LiveServer", "create_app", "parse_bind", "start_server"]

HEARTBEAT_S = 1.0
"""An SSE comment line is sent after this many seconds without an event (keeps proxies and clients awake)."""
POLL_S = 0.02
"""How often (s) an idle ``/events`` stream looks for a new event: the most it adds to an event's delay."""


def _page(name: str) -> str:
    return resources.files("meterbench.web").joinpath("static", name).read_text(encoding="utf-8")


def create_app(publisher: EventPublisher, stopping: threading.Event | None = None) -> Any:
    """The FastAPI app serving ``publisher``'s events and state; ``/events`` streams end once ``stopping`` is set."""
    stopping = stopping or threading.Event()
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

    from meterbench.verify.report import clean_for_json  # NaN/inf -> null, floats rounded as in report.json

    app = FastAPI(title="meterbench live view", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def technician() -> str:
        return _page("technician.html")

    @app.get("/display", response_class=HTMLResponse)
    def display() -> str:
        return _page("display.html")

    @app.get("/static/live.js")
    def live_js() -> Response:
        return Response(_page("live.js"), media_type="text/javascript")

    @app.get("/api/state")
    def state() -> JSONResponse:
        return JSONResponse(clean_for_json(publisher.snapshot()))

    @app.get("/events")
    async def events(request: Request) -> StreamingResponse:
        subscription = publisher.subscribe()

        async def stream() -> AsyncIterator[str]:
            # Polled without blocking (no worker thread per client: the default pool is small on a
            # 2-core PC, and a blocked get would outlive the server's shutdown).
            quiet_since = time.monotonic()
            try:
                while not stopping.is_set() and not await request.is_disconnected():
                    event = subscription.get(timeout_s=0)
                    if event is not None:
                        quiet_since = time.monotonic()
                        yield f"data: {json.dumps(clean_for_json(event), allow_nan=False, default=str)}\n\n"
                        continue
                    if time.monotonic() - quiet_since >= HEARTBEAT_S:
                        quiet_since = time.monotonic()
                        yield ": keep-alive\n\n"
                    await asyncio.sleep(POLL_S)
            finally:
                publisher.unsubscribe(subscription)

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    return app


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); ConfigError naming what was expected."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--serve: expected HOST:PORT (e.g. 127.0.0.1:8080), got {text!r}")
    return host.strip("[]"), int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LiveServer:
    """A running uvicorn server (in a daemon thread); :attr:`url` once started, :meth:`stop` to end it."""

    def __init__(self, server: Any, thread: threading.Thread, host: str, stopping: threading.Event) -> None:
        self._server = server
        self._stopping = stopping
        self._thread = thread
        self.host = host

    @property
    def port(self) -> int:
        """The bound port (the real one when 0 was asked for)."""
        return self._server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the event streams and ask uvicorn to exit; waits up to ``timeout_s`` seconds."""
        self._stopping.set()
        self._server.should_exit = True
        self._thread.join(timeout_s)


def start_server(
    publisher: EventPublisher, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 10.0
) -> LiveServer:
    """Serve ``publisher`` on ``host:port`` (0: a free port) in a background thread; returns once listening.

    A bind address that is not loopback prints a warning on stderr: the pages are then reachable
    from the network (they are read-only, but show the test as it runs)."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise ConfigError(f"--serve: the live view needs the [web] extra (pip install -e '.[web]'): {exc}") from None
    if not _is_loopback(host):
        print(
            f"meterbench: warning: the live view listens on {host}:{port}, reachable from the network "
            "(default 127.0.0.1)",
            file=sys.stderr,
        )
    stopping = threading.Event()
    app = create_app(publisher, stopping)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="meterbench-live-view", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise ConfigError(f"--serve: could not listen on {host}:{port}")
        time.sleep(0.02)
    return LiveServer(server, thread, host, stopping)
