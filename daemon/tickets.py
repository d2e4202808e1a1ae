"""The ticket vocabulary: statuses, the system actor, history lines, load, who is told.

The statuses are defined once in ``config.schema`` next to the priorities,
because the status page may import only ``config`` and
``daemon.store.queries``; the daemon reads them from here.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config.schema import CLOSED_STATUSES, OPEN_STATUSES, STATUSES, Settings
from daemon.store.models import Event, Ticket
from routing.route import PRIORITY_WEIGHT

__all__ = [
    "AWAITING_APPROVAL",
    "CLOSED_STATUSES",
    "OPEN_STATUSES",
    "REJECTED",
    "REOPENABLE",
    "STATUSES",
    "SYSTEM_ACTOR",
    "add_event",
    "change_status",
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
    **details,
) -> bool:
    """Move ``ticket`` to ``status`` and say so in its history; False when it is there already.

    The one place a status changes, so what hangs on a change (``resolved_at``,
    and the SLA clock's pauses) is done once.
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
    return True


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
