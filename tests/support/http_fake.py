"""The plumbing every loopback HTTP fake shares: a threaded server, optional TLS, stop.

A fake (Graph, EWS, the Entra token endpoint) subclasses :class:`LoopbackHTTPFake`,
names its request handler in ``handler`` and keeps only the wire format it
speaks. Its handler subclasses :class:`FakeHandler`, which reaches the fake as
``self.fake`` and writes replies with a Content-Length.
"""

from __future__ import annotations

import http.server
import json
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, ClassVar, Self

from tests.support.tls import server_context, write_self_signed


class FakeHandler(http.server.BaseHTTPRequestHandler):
    """A quiet HTTP/1.1 handler that knows the fake it serves."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    @property
    def fake(self) -> Any:
        """The :class:`LoopbackHTTPFake` this request came to."""
        return self.server.fake  # type: ignore[attr-defined]

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        """Send ``status`` with ``headers`` and ``body`` (Content-Length set)."""
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reply_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        """Send ``obj`` as ``application/json``."""
        content = {"Content-Type": "application/json", **(headers or {})}
        self.reply(status, json.dumps(obj).encode(), content)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output clean: no access log on stderr."""


class LoopbackHTTPFake:
    """A ``ThreadingHTTPServer`` on a free 127.0.0.1 port, served from a daemon thread.

    ``start()``/``stop()`` or ``with``; ``base`` is ``http(s)://127.0.0.1:port``.
    With ``tls=True`` it serves a throw-away self-signed certificate whose path is
    ``ca_file`` (clients that insist on https, like msal, trust it through it).
    """

    handler: ClassVar[type[FakeHandler]]

    def __init__(self, *, tls: bool = False) -> None:
        self.tls = tls
        self.ca_file: str | None = None
        self._server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> Self:
        """Serve on a free loopback port in a daemon thread."""
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self.handler)
        self._server.fake = self  # type: ignore[attr-defined]
        if self.tls:
            self._wrap_tls(self._server)
        # A short poll interval keeps stop() quick.
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Shut the server down and remove the certificate."""
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        if self.ca_file:
            shutil.rmtree(Path(self.ca_file).parent, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base(self) -> str:
        """``http(s)://127.0.0.1:port``."""
        assert self._server, "start() the fake first"
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._server.server_port}"

    def _wrap_tls(self, server: http.server.ThreadingHTTPServer) -> None:
        folder = Path(tempfile.mkdtemp(prefix=f"{type(self).__name__.lower()}-"))
        cert, key = write_self_signed(folder)
        server.socket = server_context(cert, key).wrap_socket(server.socket, server_side=True)
        self.ca_file = str(cert)
