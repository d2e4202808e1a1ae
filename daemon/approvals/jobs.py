"""Scheduled jobs of reply-to-approve: reminders and expiry, on the injected clock.

Each job is a function of ``(app, now)`` (see ``daemon.scheduler``): candidates
are read first, then every ticket is handled in its own transaction with the
ticket row locked (``SKIP LOCKED``: a ticket another worker holds is left for
the next run) and checked again under the lock.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from config.schema import Settings
from daemon.approvals.mail import Ending
from daemon.approvals.requests import ApprovalRequests
from daemon.approvals.store import approval_rows, is_live, lock_ticket, progress_of
from daemon.store.models import Approval, Ticket
from daemon.tickets import AWAITING_APPROVAL, SYSTEM_ACTOR, add_event
from routing.approval import VoteState, expire, remind_at

log = logging.getLogger(__name__)

ESCALATED_WHY = "approval expired without a decision: the team decides"


class ApprovalJobs:
    """Reminders and expiry of the approvals that ``requests`` asked for."""

    def __init__(
        self, settings: Settings, factory: sessionmaker[Session], requests: ApprovalRequests
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.requests = requests

    def jobs(self) -> list:
        """The periodic jobs: (name, function of (app, now), interval seconds)."""
        every = self.settings.approval.check_interval_seconds
        return [
            ("approval_reminders", self.send_reminders, every),
            ("approval_expiry", self.expire_requests, every),
        ]

    # -- reminders ------------------------------------------------------------------------------
    def send_reminders(self, app: object, now: datetime) -> int:
        """Remind pending approvers of the current step once per ``remind_after_hours``."""
        since = now - timedelta(hours=self.settings.approval.remind_after_hours)
        last = func.coalesce(Approval.reminded_at, Approval.requested_at)
        due = self._candidates(last <= since, Approval.token_expires_at > now)
        sent = sum(self._remind_ticket(ticket_id, now) for ticket_id in due)
        if sent:
            log.info("approval reminders: %d sent", sent)
        return sent

    def _remind_ticket(self, ticket_id: str, now: datetime) -> int:
        """Remind the ticket's approvers whose time has come; return how many."""
        with self.factory() as session, session.begin():
            ticket = _locked_awaiting(session, ticket_id)
            if ticket is None:
                return 0
            rows = approval_rows(session, ticket_id)
            count = max(r.step for r in rows)
            due = [r for r in rows if self._reminder_due(r, now)]
            for row in due:
                self.requests.remind(session, ticket, row, count, now)
            return len(due)

    def _reminder_due(self, row: Approval, now: datetime) -> bool:
        last = row.reminded_at or row.requested_at
        return is_live(row, now) and remind_at(last, self.settings.approval) <= now

    # -- expiry ---------------------------------------------------------------------------------
    def expire_requests(self, app: object, now: datetime) -> int:
        """End approvals whose current requests ran out of time: reject or escalate."""
        due = self._candidates(Approval.token_expires_at <= now)
        done = sum(self._expire_ticket(ticket_id, now) for ticket_id in due)
        if done:
            log.info("approval expiry: %d ticket(s) %s", done, self.settings.approval.on_expiry)
        return done

    def _expire_ticket(self, ticket_id: str, now: datetime) -> bool:
        """Reject or escalate the ticket if its current request expired; True if it did."""
        on_expiry = self.settings.approval.on_expiry
        with self.factory() as session, session.begin():
            ticket = _locked_awaiting(session, ticket_id)
            if ticket is None:
                return False
            rows = approval_rows(session, ticket_id)
            if all(is_live(r, now) or not r.token_hash for r in rows):
                return False
            transition = expire(progress_of(rows), now, on_expiry)
            if not transition.accepted:
                return False
            add_event(
                session,
                ticket.id,
                SYSTEM_ACTOR,
                "approval_expired",
                now,
                waiting_on=list(transition.moot),
                on_expiry=on_expiry,
            )
            self._end(session, ticket, now, transition.outcome)
            return True

    def _end(self, session: Session, ticket: Ticket, now: datetime, outcome: str | None) -> None:
        if outcome == "escalated":
            self.requests.grant(session, ticket, now, Ending("escalated"), ESCALATED_WHY)
        else:
            self.requests.reject(session, ticket, now, Ending("expired"))

    def _candidates(self, *conditions) -> list[str]:
        """Tickets awaiting approval with a live token meeting ``conditions`` (checked again later)."""
        stmt = (
            select(Approval.ticket_id)
            .join(Ticket, Ticket.id == Approval.ticket_id)
            .where(
                Ticket.status == AWAITING_APPROVAL,
                Approval.decision == VoteState.PENDING.value,
                Approval.token_hash.is_not(None),
                *conditions,
            )
            .distinct()
        )
        with self.factory() as session:
            return sorted(session.scalars(stmt))


def _locked_awaiting(session: Session, ticket_id: str) -> Ticket | None:
    """The ticket, locked, if it still awaits approval (None if so, or if another worker has it)."""
    ticket = lock_ticket(session, ticket_id, skip_locked=True)
    return ticket if ticket is not None and ticket.status == AWAITING_APPROVAL else None
