"""Answers relayed to the requester, and the short confirmation an agent gets.

A relayed answer goes from the support address, threaded to the requester's
last mail (In-Reply-To/References), so it lands in the requester's conversation
as a reply; the first one records the ticket's first response.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.schema import Settings
from daemon.notify import Composer, Threading
from daemon.sla import record_first_response
from daemon.store.models import Comment, OutboxEntry, Ticket
from daemon.tickets import SYSTEM_ACTOR, add_event
from daemon.work.actions import Report


def requester_thread(session: Session, ticket: Ticket) -> Threading:
    """In-Reply-To the requester's last mail about the ticket; References the whole thread."""
    stmt = (
        select(Comment.message_id)
        .where(Comment.ticket_id == ticket.id, Comment.author == ticket.requester)
        .where(Comment.message_id.is_not(None), Comment.message_id != "")
        .order_by(Comment.id)
    )
    ids = [i for i in (ticket.source_message_id, *session.scalars(stmt)) if i]
    return Threading(ids[-1] if ids else None, tuple(ids[-20:]))


def relay(
    session: Session,
    composer: Composer,
    ticket: Ticket,
    agent: str,
    text: str,
    at: datetime,
    message_id: str | None = None,
) -> None:
    """Record ``agent``'s answer as a public comment and send it to the requester."""
    session.add(Comment(ticket_id=ticket.id, at=at, author=agent, text=text, message_id=message_id))
    to = [ticket.requester, *(ticket.watchers or [])]
    thread = requester_thread(session, ticket)
    composer.compose(
        session, "answer", ticket, to, thread, "auto-generated", author=agent, text=text
    )
    add_event(session, ticket.id, agent, "answered", at, to=to)
    record_first_response(session, ticket, agent, at, composer.settings)
    ticket.updated_at = at


def confirm(
    session: Session,
    composer: Composer,
    settings: Settings,
    ticket: Ticket,
    agent: str,
    report: Report,
    at: datetime,
) -> bool:
    """Tell ``agent`` what was applied and refused, at most N times an hour per ticket."""
    if (
        _recent_confirmations(session, ticket.id, agent, at)
        >= settings.tickets.confirmations_per_hour
    ):
        add_event(session, ticket.id, SYSTEM_ACTOR, "confirmation_suppressed", at, to=agent)
        return False
    applied = [{"line": r.line} for r in report.applied]
    refused = [{"line": r.line, "reason": r.reason} for r in report.refused]
    composer.compose_for_agents(
        session, "work_confirmation", ticket, [agent], applied=applied, refused=refused
    )
    return True


def _recent_confirmations(session: Session, ticket_id: str, agent: str, at: datetime) -> int:
    # Recipients are a JSON list: count this agent's among the ticket's last hour (a handful).
    recent = session.scalars(
        select(OutboxEntry.recipients).where(
            OutboxEntry.ticket_id == ticket_id,
            OutboxEntry.kind == "work_confirmation",
            OutboxEntry.created_at >= at - timedelta(hours=1),
        )
    )
    return sum(1 for r in recent if agent in (r or []))
