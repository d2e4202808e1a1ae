"""Serving the status page: werkzeug's threaded WSGI server, no extra dependency.

``serve`` binds and returns the server without blocking, so the daemon can run
``serve_forever`` in a thread and call ``shutdown()`` on SIGTERM;
``start_in_thread`` does both steps.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from config.schema import Settings
from web_status import create_app

log = logging.getLogger(__name__)


def serve(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    *,
    session_factory: Any = None,
    clock: Any = None,
) -> BaseWSGIServer:
    """Bind the status page to ``host:port`` (default ``[web]``) and return the server.

    Port 0 picks a free port; read it back from ``server.server_port``.
    """
    app = create_app(settings, session_factory=session_factory, clock=clock)
    host = settings.web.host if host is None else host
    port = settings.web.port if port is None else port
    server = make_server(host, port, app, threaded=True)
    log.info("status page on http://%s:%s/", host, server.server_port)
    return server


def start_in_thread(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    *,
    session_factory: Any = None,
    clock: Any = None,
) -> tuple[BaseWSGIServer, threading.Thread]:
    """Serve the status page from a daemon thread; stop it with ``server.shutdown()``."""
    server = serve(settings, host, port, session_factory=session_factory, clock=clock)
    thread = threading.Thread(target=server.serve_forever, name="web-status", daemon=True)
    thread.start()
    return server, thread
