"""Approval requests: ask a step's approvers, remind them, and end the approval.

Used by the replies (a vote completes a step) and the scheduled jobs (reminders,
expiry), inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from config.schema import Settings
from daemon.approvals.mail import ApprovalMailer, Ending
from daemon.approvals.store import (
    approval_rows,
    bare_address,
    clear_tokens,
    is_pending,
    request_message_id,
)
from daemon.notify import Composer, Threading
from daemon.sla import start_clocks
from daemon.store.models import Approval, Ticket
from daemon.store.queries import iso
from daemon.tickets import (
    REJECTED,
    SYSTEM_ACTOR,
    add_event,
    change_status,
    pause_clock,
    routed_status,
    weighted_load,
    who_is_told,
)
from routing.approval import VoteState, expires_at
from routing.facts import ApprovalStep
from routing.route import Draft, assign
from routing.tokens import hash_token, new_token


class ApprovalRequests:
    """Asks approvers for their decision, and routes or closes the ticket when it is made."""

    def __init__(self, settings: Settings, composer: Composer, mailer: ApprovalMailer) -> None:
        self.settings = settings
        self.composer = composer
        self.mailer = mailer

    # -- asking ---------------------------------------------------------------------------------
    def open(
        self, session: Session, ticket: Ticket, steps: Sequence[ApprovalStep], now: datetime
    ) -> None:
        """Create the approval rows of every step and ask the first step's approvers."""
        for step in steps:
            self._add_rows(session, ticket, step)
        # The SLA clock starts at assignment: nobody may work on the ticket before. The
        # approval's time is kept as a pause, ended by the status change at grant or reject.
        ticket.sla_due_at = ticket.first_response_due = ticket.next_update_due = None
        pause_clock(session, ticket, now, ticket.status)
        session.flush()
        self.ask(session, ticket, steps[0].index, now)

    def _add_rows(self, session: Session, ticket: Ticket, step: ApprovalStep) -> None:
        mode = self._mode(ticket.category, step)
        for approver in dict.fromkeys(bare_address(a) for a in step.approvers):
            session.add(
                Approval(
                    ticket_id=ticket.id,
                    step=step.index,
                    mode=mode,
                    approver=approver,
                    decision=VoteState.PENDING.value,
                    comment="",
                )
            )

    def _mode(self, category: str, step: ApprovalStep) -> str:
        """The rule stored with a step's rows: the category's flat policy, else the step's own."""
        cat = self.settings.category(category)
        if cat is not None and cat.approvers:
            return cat.approval
        return step.mode

    def ask(self, session: Session, ticket: Ticket, step: int, now: datetime) -> None:
        """Issue tokens to ``step``'s approvers (only now: it is their turn) and mail them."""
        every = approval_rows(session, ticket.id)
        count = max(r.step for r in every)
        rows = [r for r in every if r.step == step and is_pending(r)]
        expiry = expires_at(now, self.settings.approval)
        for row in rows:
            token = _new_request(row, now, expiry)
            self.mailer.request(session, ticket, row, token, "approval_request", count)
        add_event(
            session,
            ticket.id,
            SYSTEM_ACTOR,
            "approval_requested",
            now,
            step=step,
            of=count,
            approvers=[r.approver for r in rows],
            mode=rows[0].mode if rows else "",
            expires_at=iso(expiry),
        )

    def remind(
        self, session: Session, ticket: Ticket, row: Approval, count: int, now: datetime
    ) -> None:
        """Remind ``row``'s approver, in the request's thread."""
        # The reminder carries a fresh token; the request's stays valid until the same expiry.
        token = new_token()
        row.reminder_token_hash = hash_token(token)
        row.reminded_at = now
        request = request_message_id(session, ticket.id, row.approver)
        thread = Threading(request, (request,)) if request else Threading()
        self.mailer.request(session, ticket, row, token, "approval_reminder", count, thread)
        add_event(
            session,
            ticket.id,
            SYSTEM_ACTOR,
            "approval_reminded",
            now,
            step=row.step,
            to=row.approver,
        )

    # -- the ticket's approval is over ----------------------------------------------------------
    def grant(
        self, session: Session, ticket: Ticket, now: datetime, ending: Ending, why: str
    ) -> None:
        """Approved (or escalated on expiry): route to the team as a new ticket would be."""
        clear_tokens(session, ticket.id)
        draft = self._assign(session, ticket, now)
        outcome = ending.outcome
        action = "escalated" if outcome == "escalated" else "approval_completed"
        add_event(session, ticket.id, SYSTEM_ACTOR, action, now, outcome=outcome, reason=why)
        if ticket.assignee:
            add_event(session, ticket.id, SYSTEM_ACTOR, "assigned", now, assignee=ticket.assignee)
        self._tell_assignee(session, ticket, [why, *draft.reasons])
        self.mailer.tell_requester(session, ticket, now, ending)

    def _assign(self, session: Session, ticket: Ticket, now: datetime) -> Draft:
        """The team's least-loaded member gets the ticket; its SLA clocks start now."""
        draft = Draft(team=ticket.team, priority=ticket.priority)
        ticket.assignee = assign(ticket.team, self.settings, weighted_load(session), draft)
        status = routed_status(ticket.assignee)
        change_status(session, ticket, status, SYSTEM_ACTOR, now, settings=self.settings)
        start_clocks(ticket, self.settings, now)
        return draft

    def _tell_assignee(self, session: Session, ticket: Ticket, reasons: list[str]) -> None:
        to = who_is_told(self.settings, ticket, with_team=False)
        self.composer.compose_for_agents(session, "assigned", ticket, to, reasons=reasons)

    def reject(self, session: Session, ticket: Ticket, now: datetime, ending: Ending) -> None:
        """Rejected (or expired with on_expiry = reject): the ticket is closed as rejected."""
        clear_tokens(session, ticket.id)
        change_status(session, ticket, REJECTED, SYSTEM_ACTOR, now, settings=self.settings)
        add_event(
            session, ticket.id, SYSTEM_ACTOR, "approval_completed", now, outcome=ending.outcome
        )
        self.mailer.tell_requester(session, ticket, now, ending)


def _new_request(row: Approval, now: datetime, expiry: datetime) -> str:
    """Make ``row`` a fresh request sent ``now`` (no reminder yet); return its token."""
    token = new_token()
    row.token_hash = hash_token(token)
    row.reminder_token_hash = None
    row.requested_at = now
    row.reminded_at = None
    row.token_expires_at = expiry
    return token
