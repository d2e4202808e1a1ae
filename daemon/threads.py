"""Which ticket does a mail belong to? Subject tag first, then In-Reply-To/References.

A reply names our messages (outbox Message-IDs) or the requester's earlier
ones (ledger Message-IDs); either threads it into that ticket.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.parse import InboundMessage
from daemon.store.models import LedgerEntry, OutboxEntry, Ticket

TICKET_TAG = re.compile(r"\[(TKT-\d{8}-[A-Z0-9]{6})\]")
_ALPHABET = string.ascii_uppercase + string.digits


def new_ticket_id(now: datetime) -> str:
    """Return a fresh ``TKT-YYYYMMDD-XXXXXX`` id."""
    return f"TKT-{now:%Y%m%d}-" + "".join(secrets.choice(_ALPHABET) for _ in range(6))


@dataclass(frozen=True)
class ThreadMatch:
    """The ticket a mail belongs to and how that was found."""

    ticket: Ticket
    via: str  # "subject-tag" | "in-reply-to" | "references"


def _by_message_ids(session: Session, ids: tuple[str, ...]) -> Ticket | None:
    if not ids:
        return None
    out = select(OutboxEntry.ticket_id).where(OutboxEntry.message_id.in_(ids))
    led = select(LedgerEntry.ticket_id).where(
        LedgerEntry.message_id.in_(ids), LedgerEntry.ticket_id.is_not(None)
    )
    ticket_id = session.scalars(out.union(led).limit(1)).first()
    return session.get(Ticket, ticket_id) if ticket_id else None


def find_ticket(session: Session, msg: InboundMessage) -> ThreadMatch | None:
    """Return the ticket ``msg`` replies to, or None for a new request."""
    for ticket_id in TICKET_TAG.findall(msg.subject):
        ticket = session.get(Ticket, ticket_id)
        if ticket is not None:
            return ThreadMatch(ticket, "subject-tag")
    ticket = _by_message_ids(session, msg.in_reply_to)
    if ticket is not None:
        return ThreadMatch(ticket, "in-reply-to")
    ticket = _by_message_ids(session, msg.references)
    return ThreadMatch(ticket, "references") if ticket is not None else None


def answers_ticket(session: Session, msg: InboundMessage, ticket: Ticket) -> bool:
    """True when ``msg`` is a reply (In-Reply-To/References) to a mail of ``ticket``.

    A ``[TKT-...]`` tag alone is not enough: anyone can type it in a fresh subject.
    """
    found = _by_message_ids(session, (*msg.in_reply_to, *msg.references))
    return found is not None and found.id == ticket.id
