"""The ticket vocabulary (daemon/tickets.py): statuses, history lines, load, who is told."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from config.schema import Settings, TeamSettings
from daemon.store.db import make_engine, migrate, session_factory
from daemon.store.models import Event, Ticket
from daemon.tickets import (
    CLOSED_STATUSES,
    OPEN_STATUSES,
    STATUSES,
    SYSTEM_ACTOR,
    add_event,
    change_status,
    routed_status,
    weighted_load,
    who_is_told,
)

NOW = datetime(2026, 1, 5, 9, 0)
TEAM = TeamSettings(name="Net", members=["a@x.com", "b@x.com"])


@pytest.fixture
def session(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 't.db'}")
    migrate(engine)
    with session_factory(engine)() as s:
        yield s
    engine.dispose()


def _ticket(n: int, status="assigned", priority="medium", assignee="a@x.com", team="Net"):
    return Ticket(
        id=f"TKT-{n}",
        subject="s",
        requester="r@x.com",
        status=status,
        category="network",
        priority=priority,
        team=team,
        assignee=assignee,
        original_text="t",
        corrected_text="t",
        created_at=NOW,
        updated_at=NOW,
    )


def test_statuses_are_split_into_open_and_closed() -> None:
    assert set(OPEN_STATUSES) | set(CLOSED_STATUSES) == set(STATUSES)
    assert not set(OPEN_STATUSES) & set(CLOSED_STATUSES)
    assert "awaiting_approval" in OPEN_STATUSES and "rejected" in CLOSED_STATUSES
    assert routed_status("a@x.com") == "assigned" and routed_status(None) == "new"


def test_add_event_appends_one_history_line(session: Session) -> None:
    session.add(_ticket(1))
    add_event(session, "TKT-1", SYSTEM_ACTOR, "escalated", NOW, reason="SLA breached")
    session.flush()
    [event] = session.scalars(select(Event)).all()
    assert (event.ticket_id, event.actor, event.action, event.at) == (
        "TKT-1",
        "mailtriage",
        "escalated",
        NOW,
    )
    assert event.details == {"reason": "SLA breached"}


def test_weighted_load_counts_open_tickets_by_priority(session: Session) -> None:
    session.add_all(
        [
            _ticket(1, priority="critical", assignee="A@x.com"),
            _ticket(2, priority="low", assignee="a@x.com"),
            _ticket(3, priority="high", assignee="b@x.com", status="awaiting_approval"),
            _ticket(4, priority="critical", assignee="b@x.com", status="resolved"),
            _ticket(5, priority="high", assignee=None, status="new"),
        ]
    )
    session.flush()
    assert weighted_load(session) == {"a@x.com": 4 + 1, "b@x.com": 3}


def test_who_is_told_the_assignee_and_the_team_when_asked() -> None:
    settings = Settings(teams=[TEAM])
    assigned = _ticket(1, assignee="b@x.com")
    assert who_is_told(settings, assigned, with_team=False) == ["b@x.com"]
    assert who_is_told(settings, assigned, with_team=True) == ["b@x.com", "a@x.com"]


def test_who_is_told_the_team_when_nobody_is_assigned() -> None:
    settings = Settings(teams=[TEAM])
    unassigned = _ticket(1, assignee=None)
    assert who_is_told(settings, unassigned, with_team=False) == ["a@x.com", "b@x.com"]
    assert who_is_told(settings, _ticket(2, assignee=None, team=None), with_team=True) == []
    assert who_is_told(settings, _ticket(3, assignee=None, team="Gone"), with_team=False) == []


def test_change_status_records_the_move_and_keeps_resolved_at_right(session) -> None:
    ticket = _ticket(1)
    session.add(ticket)
    later = datetime(2026, 1, 5, 10, 0)
    assert change_status(session, ticket, "resolved", "a@x.com", later, note="fixed")
    assert ticket.resolved_at == later and ticket.updated_at == later
    assert change_status(session, ticket, "closed", SYSTEM_ACTOR, later) and ticket.resolved_at
    assert not change_status(session, ticket, "closed", SYSTEM_ACTOR, later)
    assert change_status(session, ticket, "assigned", "r@x.com", later, "reopened")
    assert ticket.resolved_at is None
    session.flush()
    moves = [
        (e.action, e.details["old"], e.details["new"])
        for e in session.scalars(select(Event).order_by(Event.id))
    ]
    assert moves == [
        ("status_changed", "assigned", "resolved"),
        ("status_changed", "resolved", "closed"),
        ("reopened", "closed", "assigned"),
    ]
