"""A real SMTP server on loopback (aiosmtpd) that captures what mailtriage sends.

The ``smtp_server`` fixture runs an aiosmtpd ``Controller`` on 127.0.0.1 with
STARTTLS offered (a throw-away certificate, ``ca_file``), AUTH PLAIN/LOGIN for
one user (allowed without TLS, as on a lab relay) and AUTH XOAUTH2 that
accepts the tokens in ``tokens`` (and answers a refused token the way
Exchange and Gmail do: a 334 JSON challenge, then 535). A second controller
speaks implicit TLS on ``ssl_port``. :meth:`SmtpServer.fail_next` makes the
next messages fail with 421/451/550... at MAIL, RCPT or DATA.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from config.schema import OutboundSettings
from tests.support.ports import free_port
from tests.support.tls import server_context, write_self_signed

USER, PASSWORD, TOKEN = "mailer", "smtp-pw-123", "smtp-token-abc"
DEFAULT_TEXT = {
    421: "4.3.2 Service not available, closing transmission channel",
    451: "4.3.0 Temporary failure, please try again later",
    452: "4.3.1 Insufficient system storage",
    550: "5.1.1 Mailbox unavailable",
    552: "5.3.4 Message size exceeds fixed maximum message size",
    554: "5.7.1 Message rejected as spam",
}


@dataclass
class Received:
    """One accepted message: envelope, exact bytes (as sent), parsed message, who logged in."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    login: str | None


@dataclass
class SmtpServer:
    """Handler and facts about the running servers; ``received`` fills as mail arrives."""

    host: str = "127.0.0.1"
    port: int = 0
    ssl_port: int = 0
    user: str = USER
    password: str = PASSWORD
    ca_file: str = ""
    tokens: set[str] = field(default_factory=lambda: {TOKEN})
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, str, bool]] = field(default_factory=list)  # (mech, user, ok)
    _failures: deque[tuple[str, int, str]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- what tests call ------------------------------------------------------------------
    def fail_next(
        self, code: int, n: int = 1, *, stage: str = "DATA", text: str | None = None
    ) -> None:
        """Answer ``code`` to the next ``n`` messages at ``stage`` (MAIL, RCPT or DATA)."""
        reply = f"{code} {text or DEFAULT_TEXT.get(code, 'Fault injected by the test')}"
        with self._lock:
            self._failures.extend([(stage.upper(), code, reply)] * n)

    def clear_failures(self) -> None:
        """Forget the faults :meth:`fail_next` queued and not yet used."""
        with self._lock:
            self._failures.clear()

    def settings(self, **overrides: object) -> OutboundSettings:
        """Plain-SMTP :class:`OutboundSettings` with this server's password user."""
        values: dict[str, object] = {
            "transport": "smtp",
            "host": self.host,
            "port": self.port,
            "ssl": False,
            "starttls": False,
            "username": self.user,
            "password": self.password,
            "timeout_seconds": 10,
        }
        return OutboundSettings(**(values | overrides))

    # -- aiosmtpd hooks -----------------------------------------------------------------------
    def _fault(self, stage: str) -> str | None:
        with self._lock:
            if self._failures and self._failures[0][0] == stage:
                return self._failures.popleft()[2]
        return None

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        fault = self._fault("MAIL")
        if fault:
            return fault
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        fault = self._fault("RCPT")
        if fault:
            return fault
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self._fault("DATA")
        if fault:
            return fault
        raw = bytes(envelope.original_content or b"")
        message = message_from_bytes(raw, policy=policy.default)
        login = getattr(session, "auth_data", None)
        received = Received(
            str(envelope.mail_from),
            list(envelope.rcpt_tos),
            raw,
            message,  # type: ignore[arg-type]
            login.login.decode() if isinstance(login, LoginPassword) else login,
        )
        with self._lock:
            self.received.append(received)
        return "250 2.0.0 OK queued"

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """SASL XOAUTH2: ``user=...^Aauth=Bearer <token>^A^A``, base64."""
        blob: Any = base64.b64decode(args[1]) if len(args) > 1 else await server.challenge_auth("")
        fields = dict(
            part.split("=", 1)
            for part in bytes(blob).decode(errors="replace").split("\x01")
            if "=" in part
        )
        user, token = fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")
        ok = token in self.tokens
        with self._lock:
            self.logins.append(("XOAUTH2", user, ok))
        if ok:
            return AuthResult(success=True, auth_data=user)
        error = {
            "status": "401",
            "schemes": "bearer",
            "scope": "https://outlook.office365.com/.default",
        }
        await server.challenge_auth(json.dumps(error))  # the client answers with an empty line
        return AuthResult(
            success=False, handled=False, message="535 5.7.3 Authentication unsuccessful"
        )

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """PLAIN/LOGIN against the one user."""
        ok = isinstance(data, LoginPassword) and (
            data.login.decode(),
            data.password.decode(),
        ) == (self.user, self.password)
        login = data.login.decode() if isinstance(data, LoginPassword) else ""
        with self._lock:
            self.logins.append((mechanism, login, ok))
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


def _controller(server: SmtpServer, port: int, tls: ssl.SSLContext, implicit: bool) -> Controller:
    kwargs: dict[str, Any] = {
        "hostname": "127.0.0.1",
        "port": port,
        "authenticator": server.authenticate,
        "auth_require_tls": False,
        "server_hostname": "smtp.test",
    }
    if implicit:
        kwargs["ssl_context"] = tls
    else:
        kwargs["tls_context"] = tls
    return Controller(server, **kwargs)


@contextmanager
def running_smtp_server() -> Iterator[SmtpServer]:
    """Run the capturing servers (plain + STARTTLS on ``port``, TLS on ``ssl_port``); usable outside pytest."""
    folder = Path(tempfile.mkdtemp(prefix="mt-smtpd-"))
    cert, key = write_self_signed(folder)
    tls = server_context(cert, key)
    server = SmtpServer(port=free_port(), ssl_port=free_port(), ca_file=str(cert))
    controllers = [
        _controller(server, server.port, tls, implicit=False),
        _controller(server, server.ssl_port, tls, implicit=True),
    ]
    started: list[Controller] = []
    try:
        for c in controllers:
            c.start()
            started.append(c)
        yield server
    finally:
        for c in started:
            c.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A capturing aiosmtpd server on 127.0.0.1 (see :func:`running_smtp_server`)."""
    with running_smtp_server() as server:
        yield server
