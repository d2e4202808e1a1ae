"""Reply-to-approve: requests, replies, reminders and expiry, as a pipeline extension.

:class:`ApprovalDesk` plugs into the pipeline (``on_new_ticket``, ``handle``) and
the scheduler (``jobs``). The pure half decides: ``routing.replies`` reads the
reply, ``routing.reply_screen`` refuses mail that may never decide,
``routing.approval`` is the state machine. This module stores the result and
writes the mail, inside the pipeline's one transaction.

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
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from config.schema import Settings
from daemon.clock import Clock
from daemon.guards import Verdict
from daemon.notify import Composer, Threading
from daemon.parse import InboundMessage, sanitize_header
from daemon.pipeline import OPEN_STATUSES, SYSTEM_ACTOR, Outcome
from daemon.store.models import Approval, Event, OutboxEntry, Ticket
from daemon.threads import ThreadMatch
from routing.approval import (
    ApprovalProgress,
    Transition,
    VoteState,
    decide,
    expire,
    expires_at,
    remind_at,
    steps_from_rows,
)
from routing.facts import ApprovalStep, RoutingDecision
from routing.replies import ReplyDecision, extract_new_text, parse_decision
from routing.reply_screen import ReplyFacts, ScreenPolicy, screen
from routing.route import PRIORITY_WEIGHT, Draft, assign
from routing.tokens import find_token, hash_token, new_token, single_address

log = logging.getLogger(__name__)

AWAITING = "awaiting_approval"
KIND = "approval"  # the ledger outcome of an approval reply
HELP_WINDOW = timedelta(hours=1)
_TOKEN = re.compile(r"APR-[A-Z2-7]{16}", re.IGNORECASE)
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
        policy = self._policy(ticket.category, steps)
        for step in steps:
            for approver in dict.fromkeys(_bare(a) for a in step.approvers):
                session.add(
                    Approval(
                        ticket_id=ticket.id,
                        step=step.index,
                        mode=policy,
                        approver=approver,
                        decision=VoteState.PENDING.value,
                        comment="",
                    )
                )
        # The SLA clock starts at assignment: nobody may work on the ticket before.
        ticket.sla_due_at = None
        session.flush()
        self._ask(session, ticket, steps[0].index, self.clock.now())

    def _policy(self, category: str, steps: Sequence[ApprovalStep]) -> str:
        cat = self.settings.category(category)
        if cat is not None and cat.approvers:
            return cat.approval
        return "sequential" if len(steps) > 1 else steps[0].mode

    def _ask(self, session: Session, ticket: Ticket, step: int, now: datetime) -> None:
        """Issue tokens to ``step``'s approvers (only now: it is their turn) and mail them."""
        every = _rows(session, ticket.id)
        count = max(r.step for r in every)
        rows = [r for r in every if r.step == step and _is_pending(r)]
        for row in rows:
            token = new_token()
            row.token_hash = hash_token(token)
            row.reminder_token_hash = None
            row.requested_at = now
            row.reminded_at = None
            row.token_expires_at = expires_at(now, self.settings.approval)
            self._mail_request(session, ticket, row, token, "approval_request", count)
        _event(
            session,
            ticket.id,
            SYSTEM_ACTOR,
            "approval_requested",
            now,
            step=step,
            of=count,
            approvers=[r.approver for r in rows],
            mode=rows[0].mode if rows else "",
            expires_at=_iso(expires_at(now, self.settings.approval)),
        )

    def _mail_request(
        self,
        session: Session,
        ticket: Ticket,
        row: Approval,
        token: str,
        kind: str,
        step_count: int,
        thread: Threading = Threading(),
    ) -> None:
        out = self.composer.compose(
            session,
            kind,
            ticket,
            [row.approver],
            thread,
            "auto-generated",
            step=row.step,
            step_count=step_count,
            mode=row.mode,
            requested_at=row.requested_at,
            **self._answer_context(ticket, row.approver, token, row.token_expires_at),
        )
        if self.settings.approval.plus_address:
            _set_reply_to(out, self._reply_address(token))

    def _answer_context(
        self, ticket: Ticket, approver: str, token: str | None, expiry: datetime | None
    ) -> dict:
        """What approval_answer.*.j2 needs: where to answer, the buttons, the expiry."""
        address = self._reply_address(token)
        return {
            "token": token,
            "approver": approver,
            "reply_address": address,
            "approve_link": _mailto(address, "APPROVE", ticket.id, token) if token else "",
            "reject_link": _mailto(address, "REJECT", ticket.id, token) if token else "",
            "expires_at": expiry,
        }

    def _reply_address(self, token: str | None) -> str:
        base = self.settings.outbound.reply_to or self.settings.mailbox.support_address
        if not (token and self.settings.approval.plus_address):
            return base
        local, _, domain = self.settings.mailbox.support_address.partition("@")
        return f"{local}+{token}@{domain}"

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
        ticket = _lock(session, claim.ticket_id)
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
        rows = _rows(session, ticket.id) if ticket is not None else []
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
        rows = _rows(session, ticket.id)  # read again under the ticket lock
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
        if not _holds(row, claim.token) or ticket.status != AWAITING:
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
        progress = _progress(rows)
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
        transition = decide(_progress(rows), row.step, row.approver, word, reply.now)
        if not transition.accepted or not self._store_vote(session, row, reply):
            return self._already_decided(session, ticket, reply)
        action = "approval_approved" if word == "approve" else "approval_rejected"
        _event(
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
            _clear_tokens(session, ticket.id, step=row.step, approvers=transition.moot)
        if not transition.step_completed:
            return
        _event(
            session, ticket.id, SYSTEM_ACTOR, "approval_step_completed", reply.now, step=row.step
        )
        comment = reply.decision.comment
        if transition.ask is not None:
            self._ask(session, ticket, transition.ask.index, reply.now)
        elif transition.outcome == "approved":
            why = f"approved by {row.approver}"
            self._grant(session, ticket, reply.now, "approved", row.approver, comment, why)
        elif transition.outcome == "rejected":
            self._close(session, ticket, reply.now, "rejected", row.approver, comment)

    # -- the ticket's approval is over ----------------------------------------------------------
    def _grant(
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
        _clear_tokens(session, ticket.id)
        draft = Draft(team=ticket.team, priority=ticket.priority)
        ticket.assignee = assign(ticket.team, self.settings, _load(session), draft)
        ticket.status = "assigned" if ticket.assignee else "new"
        ticket.sla_due_at = now + timedelta(hours=self.settings.sla.hours_for(ticket.priority))
        ticket.updated_at = now
        action = "escalated" if outcome == "escalated" else "approval_completed"
        _event(session, ticket.id, SYSTEM_ACTOR, action, now, outcome=outcome, reason=why)
        if ticket.assignee:
            _event(session, ticket.id, SYSTEM_ACTOR, "assigned", now, assignee=ticket.assignee)
        team = self.settings.team(ticket.team) if ticket.team else None
        to = [ticket.assignee] if ticket.assignee else (team.members if team else [])
        if to:
            reasons = [why, *draft.reasons]
            self.composer.compose(
                session, "assigned", ticket, to, Threading(), "auto-generated", reasons=reasons
            )
        self._tell_requester(session, ticket, now, outcome, approver, comment)

    def _close(
        self,
        session: Session,
        ticket: Ticket,
        now: datetime,
        outcome: str,
        approver: str | None,
        comment: str,
    ) -> None:
        """Rejected (or expired with on_expiry = reject): the ticket is closed as rejected."""
        _clear_tokens(session, ticket.id)
        ticket.status = "rejected"
        ticket.updated_at = now
        _event(session, ticket.id, SYSTEM_ACTOR, "approval_completed", now, outcome=outcome)
        self._tell_requester(session, ticket, now, outcome, approver, comment)

    def _tell_requester(
        self,
        session: Session,
        ticket: Ticket,
        now: datetime,
        outcome: str,
        approver: str | None,
        comment: str,
    ) -> None:
        # Only a requester who was acknowledged may get mail (no answers to lists or robots).
        acked = select(Event.id).where(Event.ticket_id == ticket.id, Event.action == "acknowledged")
        if session.scalars(acked.limit(1)).first() is None:
            return
        source = ticket.source_message_id or None
        thread = Threading(source, (source,) if source else ())
        self.composer.compose(
            session,
            "approval_result",
            ticket,
            [ticket.requester],
            thread,
            "auto-replied",
            outcome=outcome,
            approver=approver,
            comment=comment,
        )
        _event(session, ticket.id, SYSTEM_ACTOR, "requester_told", now, outcome=outcome)

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
        _event(
            session,
            ticket.id,
            reply.actor,
            "approval_refused",
            reply.now,
            rule=rule,
            reason=reason,
            subject=_redact(reply.msg.subject),
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
        _event(
            session,
            ticket.id,
            reply.actor,
            "approval_ignored",
            reply.now,
            reason="no decision: the first word is not APPROVE or REJECT",
            help_sent=sent,
            subject=_redact(reply.msg.subject),
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
        """Send a short approval_help mail to the sender, unless rate-limited; True if sent."""
        to = reply.msg.sender
        if not to or not self._may_answer(session, to, ticket.id, reply.now):
            return False
        # Repeat the token only to the approver it was issued to, for a request still open.
        token = reply.token if row is not None and _holds(row, reply.token) else None
        expiry = row.token_expires_at if row is not None and token else None
        context = self._answer_context(ticket, to, token, expiry)
        msg = reply.msg
        thread = Threading(msg.message_id or None, (*msg.references, msg.message_id))
        self.composer.compose(
            session, "approval_help", ticket, [to], thread, reason=reason, state=state, **context
        )
        return True

    def _may_answer(self, session: Session, to: str, ticket_id: str, now: datetime) -> bool:
        """At most one short answer per approver and ticket an hour, and the guards' hourly cap."""
        stmt = select(OutboxEntry.recipients, OutboxEntry.ticket_id).where(
            OutboxEntry.kind == "approval_help", OutboxEntry.created_at > now - HELP_WINDOW
        )
        mine = [
            t for recipients, t in session.execute(stmt) if to in (r.lower() for r in recipients)
        ]
        if ticket_id in mine:
            return False
        return len(mine) < self.settings.guards.polite_reply_per_hour

    # -- scheduled jobs -------------------------------------------------------------------------------
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
        for ticket_id in self._candidates(now, last <= since, Approval.token_expires_at > now):
            with self.factory() as session, session.begin():
                ticket = _lock(session, ticket_id, skip_locked=True)
                if ticket is None or ticket.status != AWAITING:
                    continue
                rows = _rows(session, ticket_id)
                count = max(r.step for r in rows)
                for row in rows:
                    if (
                        _is_live(row, now)
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
        request = _request_message_id(session, ticket.id, row.approver)
        thread = Threading(request, (request,)) if request else Threading()
        self._mail_request(session, ticket, row, token, "approval_reminder", count, thread)
        _event(
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
        for ticket_id in self._candidates(now, Approval.token_expires_at <= now):
            with self.factory() as session, session.begin():
                ticket = _lock(session, ticket_id, skip_locked=True)
                if ticket is None or ticket.status != AWAITING:
                    continue
                rows = _rows(session, ticket_id)
                if all(_is_live(r, now) or not r.token_hash for r in rows):
                    continue
                transition = expire(_progress(rows), now, on_expiry)
                if not transition.accepted:
                    continue
                _event(
                    session,
                    ticket.id,
                    SYSTEM_ACTOR,
                    "approval_expired",
                    now,
                    waiting_on=list(transition.moot),
                    on_expiry=on_expiry,
                )
                if transition.outcome == "escalated":
                    why = "approval expired without a decision: the team decides"
                    self._grant(session, ticket, now, "escalated", None, "", why)
                else:
                    self._close(session, ticket, now, "expired", None, "")
                done += 1
        if done:
            log.info("approval expiry: %d ticket(s) %s", done, on_expiry)
        return done

    def _candidates(self, now: datetime, *conditions) -> list[str]:
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


# -- store helpers ---------------------------------------------------------------------------------


def _lock(session: Session, ticket_id: str, skip_locked: bool = False) -> Ticket | None:
    """The ticket, locked for this transaction and read fresh (what another worker committed)."""
    stmt = (
        select(Ticket)
        .where(Ticket.id == ticket_id)
        .with_for_update(skip_locked=skip_locked)
        .execution_options(populate_existing=True)
    )
    return session.scalars(stmt).first()


def _rows(session: Session, ticket_id: str) -> list[Approval]:
    stmt = (
        select(Approval)
        .where(Approval.ticket_id == ticket_id)
        .order_by(Approval.step, Approval.id)
        .execution_options(populate_existing=True)
    )
    return list(session.scalars(stmt))


def _progress(rows: Sequence[Approval]) -> ApprovalProgress:
    data = [(r.step, r.approver, r.decision, r.decided_at) for r in rows]
    return ApprovalProgress.from_rows(steps_from_rows(data, rows[0].mode), data)


def _clear_tokens(
    session: Session, ticket_id: str, step: int | None = None, approvers: Sequence[str] = ()
) -> None:
    """Withdraw pending requests: their tokens stop working."""
    stmt = update(Approval).where(
        Approval.ticket_id == ticket_id, Approval.decision == VoteState.PENDING.value
    )
    if step is not None:
        stmt = stmt.where(Approval.step == step)
    if approvers:
        stmt = stmt.where(Approval.approver.in_([_bare(a) for a in approvers]))
    session.execute(stmt.values(token_hash=None, reminder_token_hash=None))


def _load(session: Session) -> dict[str, int]:
    """Weighted open tickets per assignee (as the pipeline computes it for new tickets)."""
    stmt = (
        select(Ticket.assignee, Ticket.priority, func.count())
        .where(Ticket.status.in_(OPEN_STATUSES), Ticket.assignee.is_not(None))
        .group_by(Ticket.assignee, Ticket.priority)
    )
    load: dict[str, int] = defaultdict(int)
    for assignee, priority, n in session.execute(stmt):
        load[str(assignee).lower()] += PRIORITY_WEIGHT.get(priority, 1) * int(n)
    return load


def _request_message_id(session: Session, ticket_id: str, approver: str) -> str | None:
    stmt = (
        select(OutboxEntry.message_id, OutboxEntry.recipients)
        .where(OutboxEntry.ticket_id == ticket_id, OutboxEntry.kind == "approval_request")
        .order_by(OutboxEntry.id.desc())
    )
    return next((m for m, to in session.execute(stmt) if approver in to), None)


def _event(
    session: Session, ticket_id: str, actor: str, action: str, at: datetime, **details
) -> None:
    session.add(Event(ticket_id=ticket_id, at=at, actor=actor, action=action, details=details))


# -- small predicates and formats ------------------------------------------------------------------


def _automatic(verdict: Verdict) -> tuple[str, ...]:
    """The guard rules that make the mail automatic; a bad From is the "from" rule's to judge."""
    if verdict.may_answer:
        return ()
    return tuple(hit for hit in verdict.hits if hit != "no-sender")


def _is_pending(row: Approval) -> bool:
    return row.decision == VoteState.PENDING.value


def _is_live(row: Approval, now: datetime) -> bool:
    """A pending request whose token still works."""
    expiry = row.token_expires_at
    return _is_pending(row) and bool(row.token_hash) and (expiry is None or expiry > now)


def _holds(row: Approval, token: str | None) -> bool:
    """True if ``token`` is one of the row's live tokens (request or reminder)."""
    if not token or not _is_pending(row):
        return False
    digest = hash_token(token)
    return digest in (row.token_hash, row.reminder_token_hash)


def _bare(address: str) -> str:
    return (single_address(address) or address).strip().lower()


def _redact(text: str) -> str:
    """History is shown on the status page: tokens are bearer secrets, keep them out."""
    return _TOKEN.sub("APR-[redacted]", text)


def _iso(value: datetime) -> str:
    return value.replace(microsecond=0).isoformat() + "Z"


def _mailto(address: str, word: str, ticket_id: str, token: str) -> str:
    """A mailto: link whose subject and first line carry the decision (RFC 6068 encoding)."""
    subject = quote(f"{word} [{ticket_id}] [{token}]", safe="")
    body = quote(f"{word}\r\n\r\n", safe="")
    return f"mailto:{address}?subject={subject}&body={body}"


def _set_reply_to(out: OutboxEntry, address: str) -> None:
    """Replace the Reply-To of a composed mail, leaving every other byte as rendered."""
    # The composer knows one Reply-To for all mail; a plus-addressed one is per request.
    eol = b"\r\n" if out.raw.find(b"\r\n") == out.raw.find(b"\n") - 1 else b"\n"
    head, sep, body = out.raw.partition(eol + eol)
    kept: list[bytes] = []
    skipping = False
    for line in head.split(eol):
        if line[:1] in (b" ", b"\t") and skipping:
            continue  # a folded continuation of the Reply-To we drop
        skipping = line.lower().startswith(b"reply-to:")
        if not skipping:
            kept.append(line)
    kept.append(b"Reply-To: " + sanitize_header(address).encode("ascii", "replace"))
    out.raw = eol.join(kept) + sep + body
