"""The ticket vocabulary: statuses, the system actor, history lines, load, who is told.

A status change is also where the SLA clocks pause (``waiting``,
``awaiting_approval``) and resume, their due times moved by the paused business time.

The statuses are defined once in ``config.schema`` next to the priorities,
because the status page may import only ``config`` and
``daemon.store.queries``; the daemon reads them from here.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config.schema import CLOSED_STATUSES, OPEN_STATUSES, STATUSES, Settings
from daemon.store.models import Event, Ticket
from daemon.store.queries import iso
from routing.route import PRIORITY_WEIGHT
from routing.sla import calendar_for

__all__ = [
    "AWAITING_APPROVAL",
    "CLOSED_STATUSES",
    "DUE_FIELDS",
    "OPEN_STATUSES",
    "PAUSED_STATUSES",
    "REJECTED",
    "REOPENABLE",
    "STATUSES",
    "SYSTEM_ACTOR",
    "add_event",
    "change_status",
    "pause_clock",
    "routed_status",
    "weighted_load",
    "who_is_told",
]

#: Who the history names when the daemon itself acts.
SYSTEM_ACTOR = "mailtriage"
AWAITING_APPROVAL = "awaiting_approval"
REJECTED = "rejected"
#: A requester's reply reopens these (a rejected ticket stays rejected).
REOPENABLE = ("resolved", "closed")
#: The SLA clocks stand still in these: the desk is waiting on someone else.
PAUSED_STATUSES = ("waiting", AWAITING_APPROVAL)
#: The ticket's SLA due times, all moved on when a pause ends.
DUE_FIELDS = ("first_response_due", "next_update_due", "sla_due_at")


def routed_status(assignee: str | None) -> str:
    """The status of a ticket routed to its team: assigned if someone got it, else new."""
    return "assigned" if assignee else "new"


def add_event(
    session: Session, ticket_id: str, actor: str, action: str, at: datetime, **details
) -> None:
    """Append one line to the ticket's history."""
    session.add(Event(ticket_id=ticket_id, at=at, actor=actor, action=action, details=details))


def change_status(
    session: Session,
    ticket: Ticket,
    status: str,
    actor: str,
    at: datetime,
    action: str = "status_changed",
    *,
    settings: Settings | None = None,
    **details,
) -> bool:
    """Move ``ticket`` to ``status`` and say so in its history; False when it is there already.

    The one place a status changes, so what hangs on a change (``resolved_at``,
    and the SLA clock's pauses) is done once. ``settings`` gives the business
    calendar a pause is measured in; without it the pause counts round the clock.
    """
    old = ticket.status
    if old == status:
        return False
    ticket.status = status
    ticket.updated_at = at
    if status == "resolved":
        ticket.resolved_at = at
    elif status not in CLOSED_STATUSES:
        ticket.resolved_at = None
    add_event(session, ticket.id, actor, action, at, old=old, new=status, **details)
    if (old in PAUSED_STATUSES) != (status in PAUSED_STATUSES):
        if status in PAUSED_STATUSES:
            pause_clock(session, ticket, at, status)
        else:
            _resume_clock(session, ticket, at, settings or Settings())
    return True


def pause_clock(session: Session, ticket: Ticket, at: datetime, why: str) -> None:
    """Stop the ticket's SLA clocks at ``at`` (no-op when they stand already)."""
    if ticket.paused_since is None:
        ticket.paused_since = at
        add_event(session, ticket.id, SYSTEM_ACTOR, "sla_paused", at, status=why)


def _resume_clock(session: Session, ticket: Ticket, at: datetime, settings: Settings) -> None:
    """Restart the clocks; the dues move by the paused business time, so no instant breach."""
    since = ticket.paused_since
    if since is None:
        return
    calendar = calendar_for(settings.sla, ticket.priority)
    paused = calendar.between(since, at)
    ticket.paused_since = None
    ticket.paused_seconds = (ticket.paused_seconds or 0) + int(paused.total_seconds())
    for name in DUE_FIELDS:
        if getattr(ticket, name) is not None:
            setattr(ticket, name, calendar.add(getattr(ticket, name), _minutes(paused)))
    add_event(
        session,
        ticket.id,
        SYSTEM_ACTOR,
        "sla_resumed",
        at,
        paused_seconds=int(paused.total_seconds()),
        total_paused_seconds=ticket.paused_seconds,
        **{name: iso(getattr(ticket, name)) for name in DUE_FIELDS},
    )


def _minutes(span: timedelta) -> float:
    return span.total_seconds() / 60


def weighted_load(session: Session) -> dict[str, int]:
    """Open tickets per assignee (lower-case), weighted by priority (``PRIORITY_WEIGHT``)."""
    stmt = (
        select(Ticket.assignee, Ticket.priority, func.count())
        .where(Ticket.status.in_(OPEN_STATUSES), Ticket.assignee.is_not(None))
        .group_by(Ticket.assignee, Ticket.priority)
    )
    load: dict[str, int] = defaultdict(int)
    for assignee, priority, n in session.execute(stmt):
        load[str(assignee).lower()] += PRIORITY_WEIGHT.get(priority, 1) * int(n)
    return load


def who_is_told(settings: Settings, ticket: Ticket, with_team: bool) -> list[str]:
    """The assignee; the team's members too ``with_team``, or when nobody is assigned."""
    team = settings.team(ticket.team) if ticket.team else None
    people = [ticket.assignee] if ticket.assignee else []
    if with_team or not people:
        people += [m for m in (team.members if team else []) if m not in people]
    return people
