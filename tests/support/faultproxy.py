"""A TCP proxy on 127.0.0.1 that breaks connections on demand.

Clients connect to ``proxy.port``; every connection is forwarded to the target.
Faults: :meth:`FaultProxy.drop_after` cuts a connection once the server has
sent N more bytes (a FETCH cut mid-literal), :meth:`FaultProxy.refuse` closes
the listening socket so connects are refused (for a while, or until
:meth:`FaultProxy.allow`), :meth:`FaultProxy.cut_all` drops every open
connection (a server restart or NAT timeout as the client sees it).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

import pytest


class FaultProxy:
    """Forward 127.0.0.1:``port`` to ``target_host:target_port``, with faults on demand."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.accepted = 0  # connections accepted so far
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._budget: int | None = None  # server->client bytes left before the cut
        self._timer: threading.Timer | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> FaultProxy:
        """Listen on a free port (kept across :meth:`refuse`/:meth:`allow`)."""
        self._listen()
        return self

    def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._timer:
            self._timer.cancel()
        self._close_listener()
        self.cut_all()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------------------
    def drop_after(self, n_bytes: int) -> None:
        """Cut the connection that carries the server's next ``n_bytes`` bytes (once)."""
        with self._lock:
            self._budget = n_bytes

    def refuse(self, seconds: float | None = None) -> None:
        """Refuse new connections (for ``seconds``, or until :meth:`allow`)."""
        self._close_listener()
        if seconds is not None:
            self._timer = threading.Timer(seconds, self.allow)
            self._timer.daemon = True
            self._timer.start()

    def allow(self) -> None:
        """Accept connections again, on the same port."""
        with self._lock:
            listening = self._listener is not None
        if not listening:
            self._listen()

    def cut_all(self) -> None:
        """Drop every open connection."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            _close(*pair)

    # -- plumbing -------------------------------------------------------------------------
    def _listen(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _close_listener(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # listener closed
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self.accepted += 1
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                _close(src, dst)
                return
            cut = False
            if from_server:
                with self._lock:
                    if self._budget is not None:
                        if len(data) >= self._budget:
                            data, cut, self._budget = data[: self._budget], True, None
                        else:
                            self._budget -= len(data)
            try:
                dst.sendall(data)
            except OSError:
                cut = True
            if cut:
                _close(src, dst)
                return


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()


@pytest.fixture
def fault_proxy() -> Iterator[Callable[..., FaultProxy]]:
    """Factory: ``fault_proxy(target_port)`` starts a :class:`FaultProxy`; all stop at teardown."""
    proxies: list[FaultProxy] = []

    def make(target_port: int, target_host: str = "127.0.0.1") -> FaultProxy:
        proxy = FaultProxy(target_port, target_host).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()
