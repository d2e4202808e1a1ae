"""Is an inbound mail an approval reply, and what does it say?

A mail is claimed by its token (in the subject, a plus address or the body), or
because its sender is a pending approver of the ticket its thread names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.approvals.store import approval_rows, names_token
from daemon.guards import Verdict
from daemon.parse import InboundMessage
from daemon.store.models import Approval, Ticket
from daemon.threads import ThreadMatch
from daemon.tickets import AWAITING_APPROVAL
from routing.replies import ReplyDecision, extract_new_text, parse_decision
from routing.tokens import find_token


@dataclass(frozen=True, slots=True)
class Claim:
    """A mail that is an approval reply: its ticket, its token and the row the token names."""

    ticket_id: str | None
    token: str | None = None
    row_id: int | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """The reply being judged, with what it says and when it is judged."""

    msg: InboundMessage
    verdict: Verdict
    decision: ReplyDecision
    token: str | None
    now: datetime

    @property
    def actor(self) -> str:
        """Who the history names: the bare From address, else the From header as written."""
        return (self.msg.sender or self.msg.from_header or "unknown")[:320]


def read_reply(msg: InboundMessage, verdict: Verdict, claim: Claim, now: datetime) -> Reply:
    """The claimed mail with the decision its new text (else its subject) states."""
    new_text = extract_new_text(msg.text, msg.html)
    return Reply(msg, verdict, parse_decision(new_text, msg.subject), claim.token, now)


def claim(session: Session, msg: InboundMessage, match: ThreadMatch | None) -> Claim | None:
    """Is ``msg`` an approval reply? By its token, or a pending approver in the thread."""
    token = _token_in(msg)
    ticket = match.ticket if match is not None else None
    rows = approval_rows(session, ticket.id) if ticket is not None else []
    if token is not None:
        return _by_token(session, token, ticket, bool(rows))
    awaiting = ticket is not None and ticket.status == AWAITING_APPROVAL
    if awaiting and msg.sender and any(r.approver == msg.sender for r in rows):
        return Claim(ticket.id)
    return None


def _token_in(msg: InboundMessage) -> str | None:
    """The token in the subject or a (plus-addressed) recipient, else in the body."""
    addresses = " ".join(
        (
            *msg.to,
            *msg.cc,
            *msg.headers.get("delivered-to", ()),
            *msg.headers.get("x-original-to", ()),
        )
    )
    return find_token(msg.subject, addresses) or find_token("", f"{msg.text}\n{msg.html}")


def _by_token(
    session: Session, token: str, ticket: Ticket | None, has_approval: bool
) -> Claim | None:
    """The row the token names; a token nobody issued claims only approval threads."""
    row = session.scalars(select(Approval).where(names_token(token))).first()
    if row is not None:
        return Claim(row.ticket_id, token, row.id)
    if ticket is None or has_approval:
        return Claim(ticket.id if ticket is not None else None, token)
    return None
