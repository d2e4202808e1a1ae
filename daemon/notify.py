"""Outgoing mail: compose outbox rows inside the ticket's transaction (sent by daemon.outbox).

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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from sqlalchemy.orm import Session

from config.schema import Settings
from daemon.clock import Clock
from daemon.mime import alternative
from daemon.parse import sanitize_header
from daemon.store.models import OutboxEntry, ReplyToken, Ticket
from templates import TemplateRenderer

log = logging.getLogger(__name__)

LOOP_HEADER = "X-Mailtriage-Loop"
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
