"""Judge an approval reply: screen it, check its token, then count or refuse it.

A reply is judged in this order (the first failing check is recorded in the
ticket's history as ``approval_refused`` with its reason, and changes nothing):
the screening rules of ``routing.reply_screen`` (automatic mail, forwards, one
From, delegates, Authentication-Results), a replay of the deciding message, a
token that is known, bound to this sender and not expired, a ticket still
awaiting approval. Then the decision is read; none -> ``approval_ignored`` and
one short help reply. A counted vote goes through ``routing.approval``'s state
machine and a conditional update; a completed step asks the next one or ends the
approval (``daemon.approvals.requests``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from config.schema import Settings
from daemon.approvals.answers import ReplyAnswers
from daemon.approvals.claims import Claim, Reply
from daemon.approvals.mail import Ending
from daemon.approvals.requests import ApprovalRequests
from daemon.approvals.store import (
    approval_rows,
    clear_tokens,
    holds_token,
    names_token,
    progress_of,
)
from daemon.guards import Verdict
from daemon.store.models import Approval, Ticket
from daemon.tickets import AWAITING_APPROVAL, SYSTEM_ACTOR, add_event
from routing.approval import Transition, VoteState, decide
from routing.reply_screen import ReplyFacts, ScreenPolicy, screen

_NOT_AUTOMATIC = ("no-sender", "suppress-auto-response")
_MICROSOFT_365_HOSTS = ("outlook.office365.com", "outlook.office.com")


class ApprovalReplies:
    """Counts a valid reply's vote, refuses every other one."""

    def __init__(
        self, settings: Settings, requests: ApprovalRequests, answers: ReplyAnswers
    ) -> None:
        self.requests = requests
        self.answers = answers
        a = settings.approval
        self.policy = ScreenPolicy(
            a.allow_delegates, trusts_authentication_results(settings), a.authserv_id
        )

    def judge(self, session: Session, ticket: Ticket, claim: Claim, reply: Reply) -> str:
        """Check, then count or refuse the reply; return the reason for the ledger."""
        refused = self._screen(session, ticket, reply)
        if refused is not None:
            return refused
        rows = approval_rows(session, ticket.id)  # read again under the ticket lock
        message_id = reply.msg.message_id
        if message_id and any(r.decision_message_id == message_id for r in rows):
            why = "this message was already counted"
            return self.answers.refuse(session, ticket, reply, "replay", why)
        row = next((r for r in rows if r.id == claim.row_id), None)
        if row is None:
            return self._without_token(session, ticket, rows, reply)
        return self._with_token(session, ticket, rows, row, reply)

    def _screen(self, session: Session, ticket: Ticket, reply: Reply) -> str | None:
        """None if the reply may decide, else the recorded refusal."""
        msg = reply.msg
        automatic = _automatic(reply.verdict)
        facts = ReplyFacts(msg.subject, msg.headers, msg.sender, msg.sender_header, automatic)
        screening = screen(facts, self.policy)
        if not screening.refused:
            return None
        reason = screening.reason
        if screening.rule == "automatic":
            reason += f" ({', '.join(reply.verdict.hits)})"
        return self.answers.refuse(session, ticket, reply, screening.rule or "", reason)

    def _with_token(
        self, session: Session, ticket: Ticket, rows: list[Approval], row: Approval, reply: Reply
    ) -> str:
        """A reply whose token names ``row``: its sender, the token, then the decision."""
        if row.approver != reply.msg.sender:
            mine = any(r.approver == reply.msg.sender for r in rows)
            why = "the token was issued to another approver" if mine else "not an approver"
            return self.answers.refuse(session, ticket, reply, "sender", f"{why} of this step")
        if not holds_token(row, reply.token) or ticket.status != AWAITING_APPROVAL:
            return self.answers.already_decided(session, ticket, reply)
        if row.token_expires_at is not None and row.token_expires_at <= reply.now:
            why = "the approval token expired"
            return self.answers.refuse(session, ticket, reply, "expired", why)
        if reply.decision.decision is None:
            return self.answers.help(session, ticket, row, reply)
        return self._count(session, ticket, rows, row, reply)

    def _without_token(
        self, session: Session, ticket: Ticket, rows: list[Approval], reply: Reply
    ) -> str:
        """A reply whose token is unknown, used, cleared, or missing."""
        mine = [r for r in rows if r.approver == reply.msg.sender]
        if not mine:
            rule, why = ("token", "unknown approval token") if reply.token else ("sender", "")
            return self.answers.refuse(session, ticket, reply, rule, why or "not an approver")
        if ticket.status != AWAITING_APPROVAL or _decided(rows, mine):
            return self.answers.already_decided(session, ticket, reply)
        live = next((r for r in mine if r.token_hash), None)
        if live is None:
            why = "this approver's step is not current"
            return self.answers.refuse(session, ticket, reply, "turn", why)
        return self.answers.no_token(session, ticket, reply, live)

    def _count(
        self, session: Session, ticket: Ticket, rows: list[Approval], row: Approval, reply: Reply
    ) -> str:
        """Apply a valid decision: the state machine, then the conditional update."""
        word = reply.decision.decision
        assert word is not None and reply.token is not None
        transition = decide(progress_of(rows), row.step, row.approver, word, reply.now)
        if not transition.accepted or not _store_vote(session, row, reply):
            return self.answers.already_decided(session, ticket, reply)
        action = "approval_approved" if word == "approve" else "approval_rejected"
        _record_vote(session, ticket, row, reply, action)
        self._advance(session, ticket, row, transition, reply)
        ticket.updated_at = reply.now
        return f"{action.removeprefix('approval_')} step {row.step}"

    def _advance(
        self, session: Session, ticket: Ticket, row: Approval, transition: Transition, reply: Reply
    ) -> None:
        """What an accepted vote does: withdraw moot requests, ask the next step, or finish."""
        if transition.moot:
            clear_tokens(session, ticket.id, step=row.step, approvers=transition.moot)
        if not transition.step_completed:
            return
        now = reply.now
        add_event(session, ticket.id, SYSTEM_ACTOR, "approval_step_completed", now, step=row.step)
        if transition.ask is not None:
            self.requests.ask(session, ticket, transition.ask.index, now)
        elif transition.outcome in ("approved", "rejected"):
            ending = Ending(transition.outcome, row.approver, reply.decision.comment)
            self._end(session, ticket, now, ending)

    def _end(self, session: Session, ticket: Ticket, now: datetime, ending: Ending) -> None:
        if ending.outcome == "approved":
            why = f"approved by {ending.approver}"
            self.requests.grant(session, ticket, now, ending, why)
        else:
            self.requests.reject(session, ticket, now, ending)


def _decided(rows: list[Approval], mine: list[Approval]) -> bool:
    """True if one of the sender's rows, or its step, is no longer pending."""
    progress = progress_of(rows)
    return any(
        r.decision != VoteState.PENDING or progress.step_outcome(r.step) != VoteState.PENDING
        for r in mine
    )


def _store_vote(session: Session, row: Approval, reply: Reply) -> bool:
    """The conditional update: only a pending row whose token still holds changes."""
    vote = VoteState.APPROVED if reply.decision.decision == "approve" else VoteState.REJECTED
    stmt = (
        update(Approval)
        .where(
            Approval.id == row.id,
            Approval.decision == VoteState.PENDING.value,
            names_token(reply.token or ""),
        )
        .values(
            decision=vote.value,
            decided_at=reply.now,
            comment=reply.decision.comment[:4000],
            token_hash=None,
            reminder_token_hash=None,
            decision_message_id=reply.msg.message_id or None,
        )
    )
    return session.execute(stmt).rowcount == 1


def _record_vote(
    session: Session, ticket: Ticket, row: Approval, reply: Reply, action: str
) -> None:
    add_event(
        session,
        ticket.id,
        row.approver,
        action,
        reply.now,
        step=row.step,
        comment=reply.decision.comment,
        read_from=reply.decision.source,
        message_id=reply.msg.message_id,
    )


def trusts_authentication_results(settings: Settings) -> bool:
    """``[approval] trust_authentication_results``; unset: on for a Microsoft 365 mailbox."""
    configured = settings.approval.trust_authentication_results
    if configured is not None:
        return configured
    box = settings.mailbox
    where = f"{box.host or ''} {box.ews_url or ''}".lower()
    return box.backend == "graph" or (
        box.backend in ("imap", "ews") and any(h in where for h in _MICROSOFT_365_HOSTS)
    )


def _automatic(verdict: Verdict) -> tuple[str, ...]:
    """The guard rules that make the mail automatic.

    A bad From is the "from" rule's to judge; ``X-Auto-Response-Suppress`` asks
    for no automatic answer (Outlook and CRMs set it on people's mail too): the
    reply may decide, it only gets no help mail.
    """
    if verdict.may_answer:
        return ()
    return tuple(hit for hit in verdict.hits if hit not in _NOT_AUTOMATIC)
