"""Outgoing mail: compose outbox rows inside the ticket's transaction, send them after.

Every message we send carries the ticket tag in its subject, a Message-ID fixed
when the outbox row is written (so a resend after a crash is recognisable),
``Auto-Submitted``, ``X-Auto-Response-Suppress``, ``Precedence: bulk`` and a
loop header that our own guards recognise when the mail comes back.
"""

from __future__ import annotations

import email.policy
import hashlib
import logging
import re
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from config.schema import Settings
from daemon.backends.base import (
    BackendError,
    OutgoingMail,
    PermanentSendError,
    RateCapped,
    Transport,
)
from daemon.clock import Clock
from daemon.mime import alternative
from daemon.parse import sanitize_header
from daemon.store.models import OutboxEntry, ReplyToken, Ticket
from templates import TemplateRenderer

log = logging.getLogger(__name__)

LOOP_HEADER = "X-Mailtriage-Loop"
BACKOFF_CAP = timedelta(hours=1)
CHUNK = 100  # outbox rows claimed and marked at once when the transport is idempotent
# Python 3.11 loses the space between RFC 2047 encoded words when it folds a
# non-ASCII subject at 78 columns; folding only at RFC 5322's hard limit keeps
# subjects intact (and every header we build is far shorter than 998).
# cte_type 7bit: non-ASCII bodies go out quoted-printable or base64, never raw 8-bit
# to a server that may not offer 8BITMIME.
POLICY = email.policy.default.clone(max_line_length=998, linesep="\r\n", cte_type="7bit")
# Control characters a request may carry (NUL, ESC, form feed ...) have no place in a
# text body; tab, CR and LF stay.
_BODY_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_body(text: str) -> str:
    """``text`` without the control characters RFC 5322 bodies must not carry."""
    # Lone surrogates (bytes no charset decoded) cannot be encoded: replace them.
    return _BODY_CONTROL.sub("", text).encode("utf-8", "replace").decode("utf-8")


@dataclass(frozen=True)
class Threading:
    """Where a message hangs in the conversation."""

    in_reply_to: str | None = None
    references: tuple[str, ...] = ()


class Composer:
    """Builds complete RFC 5322 messages from templates and writes outbox rows."""

    def __init__(self, settings: Settings, renderer: TemplateRenderer, clock: Clock) -> None:
        self.settings = settings
        self.renderer = renderer
        self.clock = clock
        out = settings.outbound
        self.sender = out.from_address
        self.domain = out.from_address.rpartition("@")[2] or "mailtriage.invalid"
        self.loop_marker = f"mailtriage; {self.domain}"

    def compose(
        self,
        session: Session,
        kind: str,
        ticket: Ticket,
        to: Sequence[str],
        thread: Threading = Threading(),
        auto: str = "auto-replied",
        files: Sequence[tuple[str, str, bytes]] = (),
        **context,
    ) -> OutboxEntry:
        """Render ``kind`` for ``ticket`` to ``to`` and add the outbox row to ``session``.

        ``files`` (name, content type, bytes) are attached to the message.
        """
        token = context.pop("reply_token", None) or secrets.token_hex(8)
        rendered = self.renderer.render(
            kind, ticket=ticket, org_name=self.settings.outbound.from_name, **context
        )
        subject = sanitize_header(rendered.subject)
        if f"[{ticket.id}]" not in subject:
            subject = f"[{ticket.id}] {subject}"
        message_id = f"<{ticket.id}.{token}@{self.domain}>"
        headers = self._headers(ticket, to, subject, message_id, thread, auto)
        text, html = clean_body(rendered.text), clean_body(rendered.html)
        raw = _slow_message(headers, text, html, files) if _needs_slow(headers, files) else None
        raw = raw or alternative(headers, text, html)
        now = self.clock.now()
        row = OutboxEntry(
            message_id=message_id,
            ticket_id=ticket.id,
            kind=kind,
            sender=self.sender,
            recipients=list(to),
            subject=subject,
            raw=raw,
            status="pending",
            attempts=0,
            last_error="",
            created_at=now,
            next_attempt_at=now,
        )
        session.add(row)
        return row

    def _headers(self, ticket, to, subject: str, message_id: str, thread: Threading, auto: str):
        """Every header of an outgoing message, in order, values one line each."""
        out = self.settings.outbound
        headers = [
            ("From", formataddr((sanitize_header(out.from_name), self.sender))),
            ("To", ", ".join(sanitize_header(a) for a in to)),
        ]
        if out.reply_to:
            headers.append(("Reply-To", out.reply_to))
        headers += [
            ("Subject", subject),
            ("Date", format_datetime(self.clock.now().replace(tzinfo=UTC))),
            ("Message-ID", message_id),
        ]
        if thread.in_reply_to:
            headers.append(("In-Reply-To", thread.in_reply_to))
        refs = [r for r in thread.references if r] or (
            [thread.in_reply_to] if thread.in_reply_to else []
        )
        if refs:
            headers.append(("References", " ".join(refs[-20:])))
        return [
            *headers,
            ("Auto-Submitted", auto),
            ("X-Auto-Response-Suppress", "All"),
            ("Precedence", "bulk"),
            (LOOP_HEADER, self.loop_marker),
            ("X-Mailtriage-Ticket", ticket.id),
        ]

    def compose_for_agents(
        self,
        session: Session,
        kind: str,
        ticket: Ticket,
        agents: Sequence[str],
        thread: Threading = Threading(),
        **context,
    ) -> list[OutboxEntry]:
        """One message per agent, each carrying a reply token bound to that agent and ticket.

        The token is the random part of the Message-ID, so an ordinary reply brings
        it back in In-Reply-To/References; only its hash is stored.
        """
        rows = []
        for agent in dict.fromkeys(agents):  # once each, in order
            token = new_reply_token()
            session.add(_token_row(token, ticket.id, agent, self.clock.now(), self.token_ttl))
            context["reply_token"] = token
            rows.append(
                self.compose(session, kind, ticket, [agent], thread, "auto-generated", **context)
            )
        return rows

    @property
    def token_ttl(self) -> timedelta:
        """How long a reply token accepts commands."""
        return timedelta(days=self.settings.tickets.token_ttl_days)


def new_reply_token() -> str:
    """A 128-bit random token, lower-case hex (safe inside a Message-ID)."""
    return secrets.token_hex(16)


def hash_reply_token(token: str) -> str:
    """What is stored of a reply token."""
    return hashlib.sha256(token.lower().encode()).hexdigest()


def _token_row(token: str, ticket_id: str, agent: str, now: datetime, ttl: timedelta):
    return ReplyToken(
        token_hash=hash_reply_token(token),
        ticket_id=ticket_id,
        agent=agent.lower(),
        issued_at=now,
        expires_at=now + ttl,
    )


# Address headers the bytes-out writer may not encode as a whole (an address is
# never an encoded word): a non-ASCII one takes the EmailMessage path.
_ADDRESS_HEADERS = frozenset({"From", "To", "Reply-To"})


def _needs_slow(headers: list[tuple[str, str]], files) -> bool:
    return bool(files) or any(
        name in _ADDRESS_HEADERS and not value.isascii() for name, value in headers
    )


def _slow_message(headers, text: str, html: str, files) -> bytes:
    """The same message through ``EmailMessage`` (attachments, non-ASCII addresses)."""
    msg = EmailMessage(policy=POLICY)
    for name, value in headers:
        msg[name] = value
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    attach_files(msg, files)
    return bytes(msg)


def attach_files(msg: EmailMessage, files: Sequence[tuple[str, str, bytes]]) -> None:
    """Attach ``files`` (names already sanitised); the message becomes multipart/mixed."""
    for name, content_type, data in files:
        maintype, _, subtype = content_type.partition("/")
        if maintype == "text" or not subtype:  # bytes of unknown charset: send as they are
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)


# What sending a row reads (locked against other workers) and writes, as plain
# statements: the ORM's per-row cost was most of sending's CPU.
_CLAIM = select(
    OutboxEntry.message_id,
    OutboxEntry.sender,
    OutboxEntry.recipients,
    OutboxEntry.raw,
    OutboxEntry.status,
    OutboxEntry.kind,
    OutboxEntry.id,
).with_for_update(skip_locked=True)
_SENT = update(OutboxEntry).values(
    status="sent", sent_at=bindparam("at"), attempts=OutboxEntry.attempts + 1
)


class OutboxSender:
    """Drains the outbox: sends due rows, retries transient failures with backoff."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        transport: Transport,
        clock: Clock,
        max_attempts: int = 8,
        crash=None,
        channels=None,
    ) -> None:
        self.factory = factory
        # Webhook/Teams/Slack/Twilio rows drain wherever mail does (daemon.channels).
        self.channels = channels
        self.transport = transport
        self.clock = clock
        self.max_attempts = max_attempts
        self._crash = crash or (lambda point: None)
        self._lock = threading.Lock()
        # When the transport's rate cap lets the next message go (None: not capped).
        self.capped_until: datetime | None = None

    def _due_ids(self, session: Session, limit: int) -> list[int]:
        stmt = (
            select(OutboxEntry.id)
            .where(OutboxEntry.status == "pending", OutboxEntry.next_attempt_at <= self.clock.now())
            .order_by(OutboxEntry.id)
            .limit(limit)
        )
        with session.begin():
            return list(session.scalars(stmt))

    def send_due(self, limit: int = 500) -> int:
        """Send every due outbox row over one session and one transport connection.

        The runner and the scheduler thread both drain the outbox; the lock
        keeps them from sending one row twice where the database cannot
        (SQLite has no ``SKIP LOCKED``). Across processes on PostgreSQL the
        row lock does that job. Each row is marked sent in its own short
        transaction right after the transport took it, so a crash resends at
        most the one message in flight (and its Message-ID is the same).
        """
        sent = 0
        with self._lock, self.factory() as session:
            if self.capped_until and self.capped_until > self.clock.now():
                return self._channels(limit)
            self.capped_until = None
            ids = self._due_ids(session, limit)
            if getattr(self.transport, "idempotent", False):
                return self._send_chunks(session, ids) + self._channels(limit)
            for row_id in ids:
                try:
                    sent += self._send_one(session, row_id)
                except RateCapped as exc:  # the rest waits for the cap, nobody is charged
                    self.capped_until = self.clock.now() + timedelta(seconds=exc.wait)
                    log.info("%s; the rest waits until %s", exc, self.capped_until)
                    break
        return sent + self._channels(limit)

    def _send_chunks(self, session: Session, ids: list[int]) -> int:
        """An idempotent transport: each chunk of rows is claimed and marked sent at once."""
        sent = 0
        for at in range(0, len(ids), CHUNK):
            with session.begin():
                rows = session.execute(_CLAIM.where(OutboxEntry.id.in_(ids[at : at + CHUNK])))
                done = [row.id for row in rows.all() if self._sent_in_chunk(session, row)]
                if done:
                    stmt = _SENT.where(OutboxEntry.id.in_(done))
                    session.execute(stmt, {"at": self.clock.now()})
            sent += len(done)
        return sent

    def _sent_in_chunk(self, session: Session, row) -> bool:
        if row.status != "pending":
            return False
        try:
            self.transport.send(OutgoingMail(*row[:4]))
        except BackendError as exc:
            self._not_sent(session.get(OutboxEntry, row.id), exc)
            return False
        self._crash("after_send")
        log.info("sent %s %s to %s", row.kind, row.message_id, ", ".join(row.recipients))
        return True

    def _channels(self, limit: int) -> int:
        return self.channels.send_due(limit) if self.channels else 0

    def drain(self, batch: int = 500) -> int:
        """Send until nothing is due (rows that failed wait for their retry time)."""
        total = 0
        while sent := self.send_due(batch):
            total += sent
        return total

    def _send_one(self, session: Session, row_id: int) -> int:
        with session.begin():
            row = session.execute(_CLAIM.where(OutboxEntry.id == row_id)).first()
            if row is None or row.status != "pending":
                return 0
            try:
                self.transport.send(OutgoingMail(*row[:4]))
            except RateCapped:
                raise
            except BackendError as exc:
                self._not_sent(session.get(OutboxEntry, row_id), exc)
                return 0
            self._crash("after_send")
            session.execute(_SENT.where(OutboxEntry.id == row_id), {"at": self.clock.now()})
        log.info("sent %s %s to %s", row.kind, row.message_id, ", ".join(row.recipients))
        return 1

    def _not_sent(self, row: OutboxEntry, exc: BackendError) -> None:
        if isinstance(exc, PermanentSendError):
            self._fail(row, f"refused: {exc}")
        else:
            self._retry(row, str(exc))

    def _retry(self, row: OutboxEntry, error: str) -> None:
        row.attempts += 1
        row.last_error = error[:2000]
        if row.attempts >= self.max_attempts:
            self._fail(row, f"gave up after {row.attempts} attempts: {error}")
            return
        delay = min(timedelta(seconds=30 * 2 ** (row.attempts - 1)), BACKOFF_CAP)
        row.next_attempt_at = self.clock.now() + delay
        log.warning("send of %s failed (%s); retry in %s", row.message_id, error, delay)

    def _fail(self, row: OutboxEntry, error: str) -> None:
        row.status = "failed"
        row.last_error = error[:2000]
        log.error("outgoing %s to %s failed for good: %s", row.message_id, row.recipients, error)


def pending_count(session: Session, now: datetime) -> int:
    """Return how many outbox rows are due now."""
    stmt = select(func.count(OutboxEntry.id)).where(
        OutboxEntry.status == "pending", OutboxEntry.next_attempt_at <= now
    )
    return int(session.scalar(stmt) or 0)
