"""Replies that do not count: recorded in the ticket's history, answered once when useful.

Every refusal is an ``approval_refused`` event with its rule and reason; a reply
without a decision is ``approval_ignored``. A short help answer is written at most
once per approver and ticket an hour (see ``ApprovalMailer.may_answer``).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from daemon.approvals.claims import Reply
from daemon.approvals.mail import ApprovalMailer
from daemon.approvals.store import redact_tokens
from daemon.store.models import Approval, Ticket
from daemon.tickets import add_event

AWAITING = "awaiting approval"  # the state the help mail names


class ReplyAnswers:
    """Records a reply that does not count and, where it helps, answers its sender."""

    def __init__(self, mailer: ApprovalMailer) -> None:
        self.mailer = mailer

    def refuse(
        self,
        session: Session,
        ticket: Ticket,
        reply: Reply,
        rule: str,
        reason: str,
        **details,
    ) -> str:
        """Record a reply that does not count: nothing changes."""
        add_event(
            session,
            ticket.id,
            reply.actor,
            "approval_refused",
            reply.now,
            rule=rule,
            reason=reason,
            subject=redact_tokens(reply.msg.subject),
            message_id=reply.msg.message_id,
            **details,
        )
        return f"refused ({rule}): {reason}"

    def already_decided(self, session: Session, ticket: Ticket, reply: Reply) -> str:
        """A reply after the decision: recorded; a decision in it is answered (rate-limited)."""
        sent = False
        if reply.decision.decision is not None:
            state = ticket.status.replace("_", " ")
            sent = self._answer(session, ticket, reply, "already-decided", None, state=state)
        return self.refuse(session, ticket, reply, "decided", "already decided", help_sent=sent)

    def no_token(self, session: Session, ticket: Ticket, reply: Reply, live: Approval) -> str:
        """An approver of the current step replied without a usable token: say how to answer."""
        why = "unknown or used approval token" if reply.token else "no approval token in the reply"
        sent = self._answer(session, ticket, reply, "no-token", live, state=AWAITING)
        return self.refuse(session, ticket, reply, "token", why, help_sent=sent)

    def help(self, session: Session, ticket: Ticket, row: Approval, reply: Reply) -> str:
        """No decision in the reply: one short, rate-limited answer saying how to answer."""
        sent = self._answer(session, ticket, reply, "no-decision", row, state=AWAITING)
        add_event(
            session,
            ticket.id,
            reply.actor,
            "approval_ignored",
            reply.now,
            reason="no decision: the first word is not APPROVE or REJECT",
            help_sent=sent,
            subject=redact_tokens(reply.msg.subject),
            message_id=reply.msg.message_id,
        )
        return f"ignored (no-decision); help {'sent' if sent else 'rate-limited'}"

    def _answer(
        self,
        session: Session,
        ticket: Ticket,
        reply: Reply,
        reason: str,
        row: Approval | None,
        state: str,
    ) -> bool:
        """One short, rate-limited answer to the reply's sender; True if it was written."""
        if not reply.verdict.may_answer:
            return False  # the sender asked for no automatic answers
        return self.mailer.help(
            session, ticket, reply.msg, reply.token, row, reply.now, reason=reason, state=state
        )
