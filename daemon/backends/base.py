"""The mailbox and transport seams.

A backend hands out :class:`RawMail` (opaque ``ref`` + the exact bytes) and is
told afterwards, with :meth:`MailboxBackend.ack`, what became of each mail. The
runner acks only after the ticket's transaction committed, so a crash between
fetch and ack means the mail is fetched again and the ledger recognises it.
"""

from __future__ import annotations

import email.utils
import socket
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from email.parser import BytesHeaderParser
from enum import StrEnum
from typing import Protocol

from config.errors import ServiceError


class AckOutcome(StrEnum):
    """What the runner did with a fetched mail."""

    PROCESSED = "processed"  # a ticket, comment or deliberate drop was committed
    QUARANTINED = "quarantined"  # poison mail: moved aside with its reason


@dataclass(frozen=True, slots=True)
class RawMail:
    """One fetched mail: ``ref`` identifies it in its mailbox (stable across restarts)."""

    ref: str
    raw: bytes
    received_at: datetime | None = None


@dataclass(slots=True)
class FetchResult:
    """A batch of new mail and the cursor to save once it is all acknowledged."""

    mails: list[RawMail]
    cursor: str | None = None
    more: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OutgoingMail:
    """A complete RFC 5322 message ready to send; ``message_id`` fixed when the outbox row was written."""

    message_id: str
    sender: str
    recipients: tuple[str, ...]
    raw: bytes


class BackendError(ServiceError):
    """The mailbox or transport is unavailable (network, auth): back off and retry."""


class PermanentSendError(BackendError):
    """The server refused this message for good (e.g. 550): do not retry."""


class RateCapped(BackendError):
    """The transport's send rate cap is reached: the message waits, uncharged.

    ``wait`` is how many seconds until the cap lets the next message go.
    """

    def __init__(self, message: str, wait: float) -> None:
        super().__init__(message)
        self.wait = wait


DEFAULT_BATCH_BYTES = 16 * 1024 * 1024  # guards.max_batch_bytes


class MailboxBackend(Protocol):
    """Reads the support mailbox."""

    name: str

    def fetch_new(
        self, cursor: str | None, limit: int, max_bytes: int = DEFAULT_BATCH_BYTES
    ) -> FetchResult:
        """Return up to ``limit`` mails not yet acknowledged, of at most ``max_bytes`` in all.

        The first mail is returned whatever its size (alone, when it exceeds
        ``max_bytes``), so a batch always progresses.
        """
        ...

    def ack(self, ref: str, outcome: AckOutcome) -> None:
        """Mark ``ref`` done (move to processed/quarantine folder); idempotent."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def ack_all(backend: MailboxBackend, refs: list[str], outcome: AckOutcome) -> None:
    """Ack ``refs`` in as few calls as the backend allows (``ack_many`` when it has one)."""
    many = getattr(backend, "ack_many", None)
    if many is not None:
        many(refs, outcome)
        return
    for ref in refs:
        backend.ack(ref, outcome)


class WaitingBackend(MailboxBackend, Protocol):
    """A backend that can block until new mail arrives (IMAP IDLE, delta polling)."""

    def wait_for_new(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True when new mail may be waiting."""
        ...


class Transport(Protocol):
    """Sends outgoing mail."""

    name: str

    def send(self, mail: OutgoingMail) -> None:
        """Send ``mail``; raise BackendError (retry later) or PermanentSendError (give up)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class Checkable(Protocol):
    """Backends and transports offer ``check()`` for ``mailtriage check-config --connect``."""

    def check(self) -> str:
        """Connect, authenticate and look at the folder; return a one-line summary.

        Raise :class:`BackendError` whose message says in plain words what failed
        (authentication, TLS, folder missing, permission).
        """
        ...


class _TlsSettings(Protocol):
    ssl: bool
    starttls: bool


def tls_context(verify: bool) -> ssl.SSLContext:
    """Default TLS context; ``verify=False`` (a lab server's self-signed cert) skips checks."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def security_label(settings: _TlsSettings) -> str:
    """How a connection is protected, in the words the logs and check-config use."""
    return "TLS" if settings.ssl else "STARTTLS" if settings.starttls else "plain"


def describe_connection_error(exc: BaseException, host: str, port: int, lost: str) -> str:
    """Say in plain words why a connection to ``host:port`` failed (TLS, refused, DNS, ...).

    ``lost`` is the text for anything else, e.g. ``"connection to h:p lost: ..."``.
    """
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS handshake failed: {exc.verify_message or exc} ({where})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc} ({where})"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused to {where}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host {host!r}: {exc.strerror}"
    if isinstance(exc, TimeoutError):
        return f"connection to {where} timed out"
    if isinstance(exc, OSError):
        return f"connection to {where} failed: {exc.strerror or exc}"
    return lost


def add_missing_bcc(raw: bytes, recipients: tuple[str, ...]) -> bytes:
    """Return ``raw`` with a ``Bcc:`` header for envelope recipients its headers do not name.

    MIME sends (Graph, EWS) take recipients from To/Cc/Bcc only; Exchange strips
    Bcc before delivery. ``raw`` is returned unchanged when nothing is missing.
    """
    headers = BytesHeaderParser().parsebytes(raw)
    named = {
        addr.lower()
        for header in ("To", "Cc", "Bcc")
        for _, addr in email.utils.getaddresses(headers.get_all(header, []))
    }
    missing = [r for r in recipients if r.lower() not in named]
    if not missing:
        return raw
    eol = b"\r\n" if raw.split(b"\n", 1)[0].endswith(b"\r") else b"\n"
    return b"Bcc: " + ", ".join(missing).encode() + eol + raw
