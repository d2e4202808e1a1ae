"""Scheduled jobs of reply-to-approve: reminders and expiry, on the injected clock.

Each job is a function of ``(app, now)`` (see ``daemon.scheduler``): candidates
are read first, then every ticket is handled in its own transaction with the
ticket row locked (``SKIP LOCKED``: a ticket another worker holds is left for
the next run) and checked again under the lock.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from daemon.approval_store import (
    AWAITING,
    add_event,
    approval_rows,
    is_live,
    lock_ticket,
    progress_of,
    request_message_id,
)
from daemon.notify import Threading
from daemon.pipeline import SYSTEM_ACTOR
from daemon.store.models import Approval, Ticket
from routing.approval import VoteState, expire, remind_at
from routing.tokens import hash_token, new_token

if TYPE_CHECKING:
    from daemon.approvals import ApprovalDesk

log = logging.getLogger(__name__)

ESCALATED_WHY = "approval expired without a decision: the team decides"


class ApprovalJobs:
    """Reminders and expiry for the approvals of one :class:`ApprovalDesk`."""

    def __init__(self, desk: ApprovalDesk) -> None:
        self.desk = desk
        self.settings = desk.settings
        self.factory = desk.factory

    def jobs(self) -> list:
        """The periodic jobs: (name, function of (app, now), interval seconds)."""
        every = self.settings.approval.check_interval_seconds
        return [
            ("approval_reminders", self.send_reminders, every),
            ("approval_expiry", self.expire_requests, every),
        ]

    def send_reminders(self, app: object, now: datetime) -> int:
        """Remind pending approvers of the current step once per ``remind_after_hours``."""
        cfg = self.settings.approval
        since = now - timedelta(hours=cfg.remind_after_hours)
        last = func.coalesce(Approval.reminded_at, Approval.requested_at)
        sent = 0
        for ticket_id in self._candidates(last <= since, Approval.token_expires_at > now):
            with self.factory() as session, session.begin():
                ticket = lock_ticket(session, ticket_id, skip_locked=True)
                if ticket is None or ticket.status != AWAITING:
                    continue
                rows = approval_rows(session, ticket_id)
                count = max(r.step for r in rows)
                for row in rows:
                    if (
                        is_live(row, now)
                        and remind_at(row.reminded_at or row.requested_at, cfg) <= now
                    ):
                        self._remind(session, ticket, row, count, now)
                        sent += 1
        if sent:
            log.info("approval reminders: %d sent", sent)
        return sent

    def _remind(
        self, session: Session, ticket: Ticket, row: Approval, count: int, now: datetime
    ) -> None:
        # The reminder carries a fresh token; the request's stays valid until the same expiry.
        token = new_token()
        row.reminder_token_hash = hash_token(token)
        row.reminded_at = now
        request = request_message_id(session, ticket.id, row.approver)
        thread = Threading(request, (request,)) if request else Threading()
        self.desk.mailer.request(session, ticket, row, token, "approval_reminder", count, thread)
        add_event(
            session,
            ticket.id,
            SYSTEM_ACTOR,
            "approval_reminded",
            now,
            step=row.step,
            to=row.approver,
        )

    def expire_requests(self, app: object, now: datetime) -> int:
        """End approvals whose current requests ran out of time: reject or escalate."""
        on_expiry = self.settings.approval.on_expiry
        done = 0
        for ticket_id in self._candidates(Approval.token_expires_at <= now):
            with self.factory() as session, session.begin():
                ticket = lock_ticket(session, ticket_id, skip_locked=True)
                if ticket is None or ticket.status != AWAITING:
                    continue
                rows = approval_rows(session, ticket_id)
                if all(is_live(r, now) or not r.token_hash for r in rows):
                    continue
                transition = expire(progress_of(rows), now, on_expiry)
                if not transition.accepted:
                    continue
                add_event(
                    session,
                    ticket.id,
                    SYSTEM_ACTOR,
                    "approval_expired",
                    now,
                    waiting_on=list(transition.moot),
                    on_expiry=on_expiry,
                )
                if transition.outcome == "escalated":
                    self.desk.grant(session, ticket, now, "escalated", None, "", ESCALATED_WHY)
                else:
                    self.desk.reject_ticket(session, ticket, now, "expired", None, "")
                done += 1
        if done:
            log.info("approval expiry: %d ticket(s) %s", done, on_expiry)
        return done

    def _candidates(self, *conditions) -> list[str]:
        """Tickets awaiting approval with a live token meeting ``conditions`` (checked again later)."""
        stmt = (
            select(Approval.ticket_id)
            .join(Ticket, Ticket.id == Approval.ticket_id)
            .where(
                Ticket.status == AWAITING,
                Approval.decision == VoteState.PENDING.value,
                Approval.token_hash.is_not(None),
                *conditions,
            )
            .distinct()
        )
        with self.factory() as session:
            return sorted(session.scalars(stmt))
