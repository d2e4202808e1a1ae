"""Reply-to-approve: requests, replies, reminders and expiry, as a pipeline extension.

:class:`ApprovalDesk` plugs into the pipeline (``on_new_ticket``, ``handle``) and
the scheduler (``jobs``). The pure half decides: ``routing.replies`` reads the
reply, ``routing.reply_screen`` refuses mail that may never decide,
``routing.approval`` is the state machine. This module stores the result inside
the pipeline's one transaction; ``daemon.approval_mail`` writes the mail,
``daemon.approval_store`` holds the store helpers and ``daemon.approval_jobs``
the reminders and expiry.

A reply is judged in this order (the first failing check is recorded in the
ticket's history as ``approval_refused`` with its reason, and changes nothing):
the screening rules (automatic mail, forwards, one From, delegates,
Authentication-Results), a replay of the deciding message, a token that is
known, bound to this sender and not expired, a ticket still awaiting approval.
Then the decision is read; none -> ``approval_ignored`` and one short help reply.

Concurrency: a decision locks the ticket row (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite has one writer), rebuilds the progress from the rows and
stores the vote with a conditional ``UPDATE ... WHERE decision = 'pending' AND
token = :hash``, so the first valid decision wins; the later one is answered
"already decided". Tokens are stored only hashed and cleared on use, when their
request becomes moot, and on completion or expiry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from config.schema import Settings
from daemon.approval_jobs import ApprovalJobs
from daemon.approval_mail import ApprovalMailer
from daemon.approval_store import (
    AWAITING,
    add_event,
    approval_rows,
    bare_address,
    clear_tokens,
    holds_token,
    is_pending,
    iso_z,
    lock_ticket,
    progress_of,
    redact_tokens,
    weighted_load,
)
from daemon.clock import Clock
from daemon.guards import Verdict
from daemon.notify import Composer, Threading
from daemon.parse import InboundMessage
from daemon.pipeline import SYSTEM_ACTOR, Outcome
from daemon.store.models import Approval, Ticket
from daemon.threads import ThreadMatch
from routing.approval import Transition, VoteState, decide, expires_at
from routing.facts import ApprovalStep, RoutingDecision
from routing.replies import ReplyDecision, extract_new_text, parse_decision
from routing.reply_screen import ReplyFacts, ScreenPolicy, screen
from routing.route import Draft, assign
from routing.tokens import find_token, hash_token, new_token

log = logging.getLogger(__name__)

KIND = "approval"  # the ledger outcome of an approval reply
_NOT_AUTOMATIC = ("no-sender", "suppress-auto-response")
_MICROSOFT_365_HOSTS = ("outlook.office365.com", "outlook.office.com")


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


class ApprovalDesk:
    """The approval extension: see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        composer: Composer,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.composer = composer
        self.clock = clock
        self.mailer = ApprovalMailer(settings, composer)
        a = settings.approval
        self.policy = ScreenPolicy(
            a.allow_delegates, trusts_authentication_results(settings), a.authserv_id
        )

    # -- a new ticket that needs approval ---------------------------------------------------
    def on_new_ticket(self, session: Session, ticket: Ticket, decision: RoutingDecision) -> None:
        """Create the approval rows of every step and ask the first step's approvers."""
        steps = decision.approval_steps
        if not steps:
            return
        for step in steps:
            for approver in dict.fromkeys(bare_address(a) for a in step.approvers):
                session.add(
                    Approval(
                        ticket_id=ticket.id,
                        step=step.index,
                        mode=self._mode(ticket.category, step),
                        approver=approver,
                        decision=VoteState.PENDING.value,
                        comment="",
                    )
                )
        # The SLA clock starts at assignment: nobody may work on the ticket before.
        ticket.sla_due_at = None
        session.flush()
        self._ask(session, ticket, steps[0].index, self.clock.now())

    def _mode(self, category: str, step: ApprovalStep) -> str:
        """The rule stored with a step's rows: the category's flat policy, else the step's own."""
        cat = self.settings.category(category)
        if cat is not None and cat.approvers:
            return cat.approval
        return step.mode

    def _ask(self, session: Session, ticket: Ticket, step: int, now: datetime) -> None:
        """Issue tokens to ``step``'s approvers (only now: it is their turn) and mail them."""
        every = approval_rows(session, ticket.id)
        count = max(r.step for r in every)
        rows = [r for r in every if r.step == step and is_pending(r)]
        for row in rows:
            token = new_token()
            row.token_hash = hash_token(token)
            row.reminder_token_hash = None
            row.requested_at = now
            row.reminded_at = None
            row.token_expires_at = expires_at(now, self.settings.approval)
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
            expires_at=iso_z(expires_at(now, self.settings.approval)),
        )

    # -- an inbound mail ----------------------------------------------------------------------
    def handle(
        self,
        session: Session,
        msg: InboundMessage,
        match: ThreadMatch | None,
        verdict: Verdict,
        mail: object,
    ) -> Outcome | None:
        """Judge ``msg`` if it is an approval reply; None lets the pipeline go on."""
        claim = self._claim(session, msg, match)
        if claim is None:
            return None
        hits = (*verdict.hits, "approval-reply")
        if claim.ticket_id is None:
            log.info("approval reply %s: unknown token, no ticket", msg.message_id or "?")
            return Outcome(KIND, None, "unknown approval token", hits)
        ticket = lock_ticket(session, claim.ticket_id)
        assert ticket is not None  # found a moment ago; tickets are never deleted
        new_text = extract_new_text(msg.text, msg.html)
        reply = Reply(
            msg, verdict, parse_decision(new_text, msg.subject), claim.token, self.clock.now()
        )
        reason = self._judge(session, ticket, claim, reply)
        log.info(
            "approval reply %s from %s on %s: %s", msg.message_id, reply.actor, ticket.id, reason
        )
        return Outcome(KIND, ticket.id, reason, hits)

    def _claim(
        self, session: Session, msg: InboundMessage, match: ThreadMatch | None
    ) -> Claim | None:
        """Is ``msg`` an approval reply? By its token, or a pending approver in the thread."""
        addresses = " ".join(
            (
                *msg.to,
                *msg.cc,
                *msg.headers.get("delivered-to", ()),
                *msg.headers.get("x-original-to", ()),
            )
        )
        token = find_token(msg.subject, addresses) or find_token("", f"{msg.text}\n{msg.html}")
        ticket = match.ticket if match is not None else None
        rows = approval_rows(session, ticket.id) if ticket is not None else []
        if token is not None:
            digest = hash_token(token)
            stmt = select(Approval).where(
                or_(Approval.token_hash == digest, Approval.reminder_token_hash == digest)
            )
            row = session.scalars(stmt).first()
            if row is not None:
                return Claim(row.ticket_id, token, row.id)
            if ticket is None or rows:
                return Claim(ticket.id if ticket is not None else None, token)
            return None
        awaiting = ticket is not None and ticket.status == AWAITING
        if awaiting and msg.sender and any(r.approver == msg.sender for r in rows):
            return Claim(ticket.id)
        return None

    def _judge(self, session: Session, ticket: Ticket, claim: Claim, reply: Reply) -> str:
        """Check, then count or refuse the reply; return the reason for the ledger."""
        msg = reply.msg
        facts = ReplyFacts(
            msg.subject,
            msg.headers,
            msg.sender,
            msg.sender_header,
            _automatic(reply.verdict),
        )
        screening = screen(facts, self.policy)
        if screening.refused:
            reason = screening.reason
            if screening.rule == "automatic":
                reason += f" ({', '.join(reply.verdict.hits)})"
            return self._refuse(session, ticket, reply, screening.rule or "", reason)
        rows = approval_rows(session, ticket.id)  # read again under the ticket lock
        if msg.message_id and any(r.decision_message_id == msg.message_id for r in rows):
            return self._refuse(
                session, ticket, reply, "replay", "this message was already counted"
            )
        row = next((r for r in rows if r.id == claim.row_id), None)
        if row is None:
            return self._without_token(session, ticket, rows, reply)
        if row.approver != msg.sender:
            mine = any(r.approver == msg.sender for r in rows)
            why = "the token was issued to another approver" if mine else "not an approver"
            return self._refuse(session, ticket, reply, "sender", f"{why} of this step")
        if not holds_token(row, claim.token) or ticket.status != AWAITING:
            return self._already_decided(session, ticket, reply)
        if row.token_expires_at is not None and row.token_expires_at <= reply.now:
            return self._refuse(session, ticket, reply, "expired", "the approval token expired")
        if reply.decision.decision is None:
            return self._help(session, ticket, row, reply, "no-decision")
        return self._count(session, ticket, rows, row, reply)

    def _without_token(
        self, session: Session, ticket: Ticket, rows: list[Approval], reply: Reply
    ) -> str:
        """A reply whose token is unknown, used, cleared, or missing."""
        sender = reply.msg.sender
        mine = [r for r in rows if r.approver == sender]
        if not mine:
            rule, why = ("token", "unknown approval token") if reply.token else ("sender", "")
            return self._refuse(session, ticket, reply, rule, why or "not an approver")
        progress = progress_of(rows)
        if ticket.status != AWAITING or any(
            r.decision != VoteState.PENDING or progress.step_outcome(r.step) != VoteState.PENDING
            for r in mine
        ):
            return self._already_decided(session, ticket, reply)
        live = next((r for r in mine if r.token_hash), None)
        if live is None:
            return self._refuse(
                session, ticket, reply, "turn", "this approver's step is not current"
            )
        why = "unknown or used approval token" if reply.token else "no approval token in the reply"
        sent = self._answer(session, ticket, reply, "no-token", live, state="awaiting approval")
        return self._refuse(session, ticket, reply, "token", why, help_sent=sent)

    def _count(
        self,
        session: Session,
        ticket: Ticket,
        rows: list[Approval],
        row: Approval,
        reply: Reply,
    ) -> str:
        """Apply a valid decision: the state machine, then the conditional update."""
        word = reply.decision.decision
        assert word is not None and reply.token is not None
        transition = decide(progress_of(rows), row.step, row.approver, word, reply.now)
        if not transition.accepted or not self._store_vote(session, row, reply):
            return self._already_decided(session, ticket, reply)
        action = "approval_approved" if word == "approve" else "approval_rejected"
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
        self._advance(session, ticket, row, transition, reply)
        ticket.updated_at = reply.now
        return f"{action.removeprefix('approval_')} step {row.step}"

    def _store_vote(self, session: Session, row: Approval, reply: Reply) -> bool:
        """The conditional update: only a pending row whose token still holds changes."""
        digest = hash_token(reply.token or "")
        vote = VoteState.APPROVED if reply.decision.decision == "approve" else VoteState.REJECTED
        stmt = (
            update(Approval)
            .where(
                Approval.id == row.id,
                Approval.decision == VoteState.PENDING.value,
                or_(Approval.token_hash == digest, Approval.reminder_token_hash == digest),
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

    def _advance(
        self,
        session: Session,
        ticket: Ticket,
        row: Approval,
        transition: Transition,
        reply: Reply,
    ) -> None:
        """What an accepted vote does: withdraw moot requests, ask the next step, or finish."""
        if transition.moot:
            clear_tokens(session, ticket.id, step=row.step, approvers=transition.moot)
        if not transition.step_completed:
            return
        add_event(
            session, ticket.id, SYSTEM_ACTOR, "approval_step_completed", reply.now, step=row.step
        )
        comment = reply.decision.comment
        if transition.ask is not None:
            self._ask(session, ticket, transition.ask.index, reply.now)
        elif transition.outcome == "approved":
            why = f"approved by {row.approver}"
            self.grant(session, ticket, reply.now, "approved", row.approver, comment, why)
        elif transition.outcome == "rejected":
            self.reject_ticket(session, ticket, reply.now, "rejected", row.approver, comment)

    # -- the ticket's approval is over ----------------------------------------------------------
    def grant(
        self,
        session: Session,
        ticket: Ticket,
        now: datetime,
        outcome: str,
        approver: str | None,
        comment: str,
        why: str,
    ) -> None:
        """Approved (or escalated on expiry): route to the team as a new ticket would be."""
        clear_tokens(session, ticket.id)
        draft = Draft(team=ticket.team, priority=ticket.priority)
        ticket.assignee = assign(ticket.team, self.settings, weighted_load(session), draft)
        ticket.status = "assigned" if ticket.assignee else "new"
        ticket.sla_due_at = now + timedelta(hours=self.settings.sla.hours_for(ticket.priority))
        ticket.updated_at = now
        action = "escalated" if outcome == "escalated" else "approval_completed"
        add_event(session, ticket.id, SYSTEM_ACTOR, action, now, outcome=outcome, reason=why)
        if ticket.assignee:
            add_event(session, ticket.id, SYSTEM_ACTOR, "assigned", now, assignee=ticket.assignee)
        team = self.settings.team(ticket.team) if ticket.team else None
        to = [ticket.assignee] if ticket.assignee else (team.members if team else [])
        if to:
            reasons = [why, *draft.reasons]
            self.composer.compose(
                session, "assigned", ticket, to, Threading(), "auto-generated", reasons=reasons
            )
        self.mailer.tell_requester(session, ticket, now, outcome, approver, comment)

    def reject_ticket(
        self,
        session: Session,
        ticket: Ticket,
        now: datetime,
        outcome: str,
        approver: str | None,
        comment: str,
    ) -> None:
        """Rejected (or expired with on_expiry = reject): the ticket is closed as rejected."""
        clear_tokens(session, ticket.id)
        ticket.status = "rejected"
        ticket.updated_at = now
        add_event(session, ticket.id, SYSTEM_ACTOR, "approval_completed", now, outcome=outcome)
        self.mailer.tell_requester(session, ticket, now, outcome, approver, comment)

    # -- refusals and short answers ---------------------------------------------------------------
    def _refuse(
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

    def _already_decided(self, session: Session, ticket: Ticket, reply: Reply) -> str:
        """A reply after the decision: recorded; a decision in it is answered (rate-limited)."""
        sent = False
        if reply.decision.decision is not None:
            state = ticket.status.replace("_", " ")
            sent = self._answer(session, ticket, reply, "already-decided", None, state=state)
        return self._refuse(session, ticket, reply, "decided", "already decided", help_sent=sent)

    def _help(
        self,
        session: Session,
        ticket: Ticket,
        row: Approval,
        reply: Reply,
        reason: str,
    ) -> str:
        """No decision in the reply: one short, rate-limited answer saying how to answer."""
        sent = self._answer(session, ticket, reply, reason, row, state="awaiting approval")
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
        return f"ignored ({reason}); help {'sent' if sent else 'rate-limited'}"

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

    # -- scheduled jobs ---------------------------------------------------------------------
    def jobs(self) -> list:
        """The periodic jobs (reminders, expiry): see ``daemon.approval_jobs``."""
        return ApprovalJobs(self).jobs()


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
