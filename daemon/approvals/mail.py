"""The mail of reply-to-approve: requests, reminders, help answers and results.

Everything is an outbox row written by the composer inside the caller's
transaction; nothing is sent here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.schema import Settings
from daemon.approvals.store import holds_token
from daemon.notify import Composer, Threading
from daemon.parse import InboundMessage, sanitize_header
from daemon.store.models import Approval, Event, OutboxEntry, Ticket
from daemon.tickets import SYSTEM_ACTOR, add_event

HELP_WINDOW = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Ending:
    """How an approval ended: approved, rejected, expired or escalated; by whom, and why."""

    outcome: str
    approver: str | None = None  # None when it expired
    comment: str = ""


class ApprovalMailer:
    """Writes the approval mail of one ticket into the outbox."""

    def __init__(self, settings: Settings, composer: Composer) -> None:
        self.settings = settings
        self.composer = composer

    def request(
        self,
        session: Session,
        ticket: Ticket,
        row: Approval,
        token: str,
        kind: str,
        step_count: int,
        thread: Threading = Threading(),
    ) -> None:
        """Mail ``row``'s approver a request (or reminder, by ``kind``) carrying ``token``."""
        out = self.composer.compose(
            session,
            kind,
            ticket,
            [row.approver],
            thread,
            "auto-generated",
            step=row.step,
            step_count=step_count,
            mode=row.mode,
            requested_at=row.requested_at,
            **self.answer_context(ticket, row.approver, token, row.token_expires_at),
        )
        if self.settings.approval.plus_address:
            set_reply_to(out, self.reply_address(token))

    def answer_context(
        self, ticket: Ticket, approver: str, token: str | None, expiry: datetime | None
    ) -> dict:
        """What approval_answer.*.j2 needs: where to answer, the buttons, the expiry."""
        address = self.reply_address(token)
        return {
            "token": token,
            "approver": approver,
            "reply_address": address,
            "approve_link": mailto_link(address, "APPROVE", ticket.id, token) if token else "",
            "reject_link": mailto_link(address, "REJECT", ticket.id, token) if token else "",
            "expires_at": expiry,
        }

    def reply_address(self, token: str | None) -> str:
        """Where answers go: plus-addressed with the token when configured."""
        base = self.settings.outbound.reply_to or self.settings.mailbox.support_address
        if not (token and self.settings.approval.plus_address):
            return base
        local, _, domain = self.settings.mailbox.support_address.partition("@")
        return f"{local}+{token}@{domain}"

    def tell_requester(
        self, session: Session, ticket: Ticket, now: datetime, ending: Ending
    ) -> None:
        """Tell the requester how the approval ended (with the approver's comment)."""
        # Only a requester who was acknowledged may get mail (no answers to lists or robots).
        acked = select(Event.id).where(Event.ticket_id == ticket.id, Event.action == "acknowledged")
        if session.scalars(acked.limit(1)).first() is None:
            return
        source = ticket.source_message_id or None
        thread = Threading(source, (source,) if source else ())
        self.composer.compose(
            session,
            "approval_result",
            ticket,
            [ticket.requester],
            thread,
            "auto-replied",
            outcome=ending.outcome,
            approver=ending.approver,
            comment=ending.comment,
        )
        add_event(session, ticket.id, SYSTEM_ACTOR, "requester_told", now, outcome=ending.outcome)

    def help(
        self,
        session: Session,
        ticket: Ticket,
        msg: InboundMessage,
        token: str | None,
        row: Approval | None,
        now: datetime,
        **context: str,
    ) -> bool:
        """Send a short approval_help mail to the sender, unless rate-limited; True if sent."""
        to = msg.sender
        if not to or not self.may_answer(session, to, ticket.id, now):
            return False
        # Repeat the token only to the approver it was issued to, for a request still open.
        token = token if row is not None and holds_token(row, token) else None
        expiry = row.token_expires_at if row is not None and token else None
        context |= self.answer_context(ticket, to, token, expiry)
        thread = Threading(msg.message_id or None, (*msg.references, msg.message_id))
        self.composer.compose(session, "approval_help", ticket, [to], thread, **context)
        return True

    def may_answer(self, session: Session, to: str, ticket_id: str, now: datetime) -> bool:
        """At most one short answer per approver and ticket an hour, and the guards' hourly cap."""
        stmt = select(OutboxEntry.recipients, OutboxEntry.ticket_id).where(
            OutboxEntry.kind == "approval_help", OutboxEntry.created_at > now - HELP_WINDOW
        )
        mine = [
            t for recipients, t in session.execute(stmt) if to in (r.lower() for r in recipients)
        ]
        if ticket_id in mine:
            return False
        return len(mine) < self.settings.guards.polite_reply_per_hour


def mailto_link(address: str, word: str, ticket_id: str, token: str) -> str:
    """A mailto: link whose subject and first line carry the decision (RFC 6068 encoding)."""
    subject = quote(f"{word} [{ticket_id}] [{token}]", safe="")
    body = quote(f"{word}\r\n\r\n", safe="")
    return f"mailto:{address}?subject={subject}&body={body}"


def set_reply_to(out: OutboxEntry, address: str) -> None:
    """Replace the Reply-To of a composed mail, leaving every other byte as rendered."""
    # The composer knows one Reply-To for all mail; a plus-addressed one is per request.
    eol = b"\r\n" if out.raw.find(b"\r\n") == out.raw.find(b"\n") - 1 else b"\n"
    head, sep, body = out.raw.partition(eol + eol)
    kept: list[bytes] = []
    skipping = False
    for line in head.split(eol):
        if line[:1] in (b" ", b"\t") and skipping:
            continue  # a folded continuation of the Reply-To we drop
        skipping = line.lower().startswith(b"reply-to:")
        if not skipping:
            kept.append(line)
    kept.append(b"Reply-To: " + sanitize_header(address).encode("ascii", "replace"))
    out.raw = eol.join(kept) + sep + body
