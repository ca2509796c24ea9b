"""The live view (DESIGN.md "Live view"): event publishing, the HTTP server and `meterbench replay`.

Importing this package needs only the standard library (FastAPI and uvicorn, the [web] extra, are
imported when a server is created), so the bench may hold a publisher without the web server."""

from meterbench.web.publisher import EventPublisher, Publisher, Subscription
from meterbench.web.replay import replay_session, session_timeline
from meterbench.web.server import LiveServer, create_app, parse_bind, start_server

__all__ = [
    "EventPublisher",
    "LiveServer",
    "Publisher",
    "Subscription",
    "create_app",
    "parse_bind",
    "replay_session",
    "session_timeline",
    "start_server",
]
