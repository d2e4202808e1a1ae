"""One mail's path: parse -> guards -> thread -> correct -> classify -> route -> store + outbox.

Everything a mail changes (ledger row, ticket, events, comments, approvals,
outbox rows) is written in ONE transaction. The runner acks the mail only
after that commit; the outbox is sent after it too.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from classifier.base import Classification, Classifier, Correction, Corrector, classify_all
from config.schema import Settings
from daemon.attachments import Carrier, keep_attachments, notice_context
from daemon.backends.base import RawMail
from daemon.channels import announce
from daemon.clock import Clock
from daemon.guards import RULES, Action, GuardContext, Verdict, check
from daemon.ledger import (
    AlreadyReleased,
    Hold,
    Outcome,
    Release,
    arrival_time,
    content_keys,
    dup_key,
    duplicate_outcome,
)
from daemon.notify import Composer, Threading
from daemon.parse import InboundMessage, Limits, parse_message
from daemon.store.models import Comment, LedgerEntry, QuarantineEntry, Ticket
from daemon.store.raw import store_raw
from daemon.threads import ThreadMatch, find_ticket, new_ticket_id
from daemon.tickets import (
    AWAITING_APPROVAL,
    REOPENABLE,
    SYSTEM_ACTOR,
    add_event,
    change_status,
    routed_status,
    weighted_load,
    who_is_told,
)
from routing.commands import parse_commands
from routing.facts import TicketFacts
from routing.route import route

log = logging.getLogger(__name__)

NO_FILES: dict = {"attachments": [], "files": []}


def _closes(text: str) -> bool:
    """True when a reply's commands close the ticket (it must not reopen it too)."""
    return any(c.name == "close" for c in parse_commands(text).commands)


@dataclass
class StageTimer:
    """Accumulates wall time per pipeline stage (for bench/ and /metrics)."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, stage: str, started: float, minus: float = 0.0) -> float:
        """Add the time since ``started`` (less ``minus``, timed as other stages) to ``stage``."""
        now = time.perf_counter()
        self.seconds[stage] += now - started - minus
        return now

    def total(self) -> float:
        """Seconds counted so far, all stages."""
        return sum(self.seconds.values())


class Pipeline:
    """Turns one fetched mail into committed state."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        corrector: Corrector,
        classifier: Classifier,
        composer: Composer,
        clock: Clock,
        crash: Callable[[str], None] | None = None,
        extensions: tuple = (),
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.corrector = corrector
        self.classifier = classifier
        self.composer = composer
        self.clock = clock
        self.crash = crash or (lambda point: None)
        self.extensions = extensions
        self.timer = StageTimer()
        # Answers of :meth:`understand_all` for the batch being decided, by message.
        self._understood: dict[int, tuple] = {}
        g = settings.guards
        self.limits = Limits(g.max_message_bytes, g.max_parts, g.max_depth)
        self.own = frozenset(
            a.lower() for a in (settings.mailbox.support_address, settings.outbound.from_address)
        )

    def process(self, mail: RawMail, release: Release | None = None) -> Outcome:
        """Process ``mail``; raise UnparseableMail or Hold for the runner to quarantine.

        ``release`` re-processes a quarantined mail for an admin: the rules it
        names are skipped and the quarantine row is marked released in the same
        transaction, so a mail is released exactly once.
        """
        msg = self.parse(mail)
        with self.factory() as session, session.begin():
            outcome = self.decide(session, mail, msg, release)
            self._commit_point()
        return outcome

    def parse(self, mail: RawMail) -> InboundMessage:
        """Parse ``mail`` within the limits; raise UnparseableMail."""
        t = time.perf_counter()
        msg = parse_message(mail.raw, self.limits)
        self.timer.add("parse", t)
        return msg

    def decide(
        self, session: Session, mail: RawMail, msg: InboundMessage, release: Release | None = None
    ) -> Outcome:
        """Add everything ``mail`` changes to ``session`` (the caller commits); raise Hold.

        The batch runner calls this for many mails in one transaction: every
        query autoflushes what earlier mails added, so ticket ids, threading,
        rate limits and least-loaded assignment come out as one by one.
        """
        received = arrival_time(mail, msg, self.clock.now())
        outcome = self._decide(session, mail, msg, received, release, time.perf_counter())
        if release is not None:
            self._mark_released(session, release, outcome)
        log.info(
            "mail %s from %s: %s %s (%s)",
            msg.message_id or mail.ref,
            msg.sender or "?",
            outcome.kind,
            outcome.ticket_id or "",
            ",".join(outcome.hits) or "no rule",
        )
        return outcome

    def _decide(self, session, mail, msg, received, release, t) -> Outcome:
        """Everything one mail changes, added to ``session``; returns what became of it."""
        keys = content_keys(msg, mail.raw)
        original = self._original(session, keys)
        if original is not None:
            outcome = duplicate_outcome(original)
            self._ledger(session, mail, msg, dup_key(mail.ref), received, outcome, original.id)
            return outcome
        rules = release.rules if release else RULES
        verdict = check(msg, self._guard_context(session, received), rules)
        t = self.timer.add("guards", t)
        if verdict.action is Action.HOLD:
            raise Hold(f"{verdict.hits[0]}: {verdict.reason}", verdict.hits[0], received)
        match, earlier = self._live_thread(find_ticket(session, msg), msg)
        t = self.timer.add("thread", t)
        inner = self.timer.total()
        outcome = self._handled_by_extension(session, msg, match, verdict, mail)
        if outcome is None:
            outcome = self._route_mail(session, msg, match, verdict, received, earlier)
        self._ledger(session, mail, msg, keys[0], received, outcome)
        self.timer.add("store", t, minus=self.timer.total() - inner)
        return outcome

    def _handled_by_extension(self, session, msg, match, verdict, mail) -> Outcome | None:
        for ext in self.extensions:
            handled = ext.handle(session, msg, match, verdict, mail)
            if handled is not None:
                return handled
        return None

    def _route_mail(self, session, msg, match, verdict, received, earlier=None) -> Outcome:
        if not verdict.makes_ticket:
            return self._ignore(session, msg, match, verdict)
        if match is not None:
            return self._comment(session, msg, match, verdict)
        return self._new_ticket(session, msg, verdict, received, earlier)

    def _live_thread(
        self, match: ThreadMatch | None, msg: InboundMessage
    ) -> tuple[ThreadMatch | None, Ticket | None]:
        """A requester's reply to a ticket resolved longer ago than ``reopen_days`` opens
        a new ticket, linked to the old one: (no match, the old ticket)."""
        if match is None or match.ticket.status not in REOPENABLE:
            return match, None
        ticket, window = match.ticket, timedelta(days=self.settings.tickets.reopen_days)
        if (msg.sender or "") != ticket.requester or ticket.resolved_at is None:
            return match, None
        return (match, None) if self.clock.now() - ticket.resolved_at <= window else (None, ticket)

    def _commit_point(self) -> None:
        # Crash-safety tests kill the process here: inside the transaction.
        self.crash("in_transaction")

    @staticmethod
    def _original(session: Session, keys: tuple[str, ...]) -> LedgerEntry | None:
        """The ledger row of the mail these keys identify, if it was seen before."""
        stmt = select(LedgerEntry).where(LedgerEntry.content_key.in_(keys)).limit(1)
        return session.scalars(stmt).first()

    def _guard_context(self, session: Session, arrived: datetime) -> GuardContext:
        g = self.settings.guards
        since = arrived - timedelta(minutes=g.sender_rate_window_minutes)

        def recent(sender: str) -> int:
            # By arrival: the window ends when this mail arrived, not when it is processed.
            stmt = select(func.count(LedgerEntry.id)).where(
                LedgerEntry.sender == sender,
                LedgerEntry.received_at > since,
                LedgerEntry.received_at <= arrived,
                LedgerEntry.outcome != "duplicate",
            )
            return int(session.scalar(stmt) or 0)

        return GuardContext(self.own, self.composer.loop_marker, recent, g.sender_rate_limit)

    def _ledger(
        self,
        session: Session,
        mail: RawMail,
        msg: InboundMessage,
        key: str,
        received: datetime,
        outcome: Outcome,
        duplicate_of: int | None = None,
    ) -> None:
        session.add(
            LedgerEntry(
                ref=mail.ref,
                content_key=key,
                message_id=msg.message_id,
                sender=msg.sender or "",
                subject=msg.subject,
                outcome=outcome.kind,
                reason=outcome.reason,
                rule_hits=list(outcome.hits),
                ticket_id=outcome.ticket_id,
                raw_sha256=store_raw(session, mail.raw, self.clock.now()),
                received_at=received,
                processed_at=self.clock.now(),
                duplicate_of=duplicate_of,
            )
        )

    def _mark_released(self, session: Session, release: Release, outcome: Outcome) -> None:
        """Mark the quarantine row released, once: a second release finds it taken."""
        now = self.clock.now()
        summary = f"{outcome.kind} {outcome.ticket_id or ''}".strip()
        done = session.execute(
            update(QuarantineEntry)
            .where(QuarantineEntry.id == release.entry_id, QuarantineEntry.released_at.is_(None))
            .values(released_at=now, released_by=release.actor, release_outcome=summary)
        )
        if done.rowcount != 1:
            raise AlreadyReleased(f"quarantined mail #{release.entry_id} was already released")
        if outcome.ticket_id:
            self.event(
                session,
                outcome.ticket_id,
                release.actor,
                "released_from_quarantine",
                quarantine_id=release.entry_id,
                reason=release.reason,
                outcome=outcome.kind,
            )

    def event(self, session: Session, ticket_id: str, actor: str, action: str, **details) -> None:
        """Append one line to a ticket's history, now."""
        add_event(session, ticket_id, actor, action, self.clock.now(), **details)

    def _ignore(
        self, session: Session, msg: InboundMessage, match: ThreadMatch | None, verdict: Verdict
    ) -> Outcome:
        ticket_id = match.ticket.id if match else None
        if ticket_id:
            self.event(
                session,
                ticket_id,
                msg.sender or msg.from_header,
                "mail_ignored",
                rule=verdict.hits[0],
                reason=verdict.reason,
                subject=msg.subject,
            )
        return Outcome("ignored", ticket_id, verdict.reason, verdict.hits)

    def _comment(
        self, session: Session, msg: InboundMessage, match: ThreadMatch, verdict: Verdict
    ) -> Outcome:
        ticket = match.ticket
        author = msg.sender or msg.from_header
        text = self.new_text(msg)
        now = self.clock.now()
        session.add(
            Comment(
                ticket_id=ticket.id, at=now, author=author, text=text, message_id=msg.message_id
            )
        )
        self.event(
            session, ticket.id, author, "comment_added", via=match.via, rules=list(verdict.hits)
        )
        self.keep_attachments(session, ticket.id, msg, from_reply=True)
        if author == ticket.requester and not _closes(text):
            self._requester_answered(session, ticket, author, now)
        ticket.updated_at = now
        watchers = [a for a in (ticket.assignee,) if a and a != author]
        if watchers:
            self.composer.compose_for_agents(
                session, "comment", ticket, watchers, self._thread(msg), author=author, text=text
            )
        return Outcome("comment", ticket.id, f"reply via {match.via}", verdict.hits)

    def _requester_answered(self, session: Session, ticket: Ticket, author: str, now) -> None:
        """Waiting on the requester: back in progress. Resolved (recently): open again."""
        s = self.settings
        if ticket.status == "waiting":
            change_status(
                session, ticket, "in_progress", author, now, "requester_answered", settings=s
            )
        elif ticket.status in REOPENABLE:
            new = routed_status(ticket.assignee)
            change_status(
                session,
                ticket,
                new,
                author,
                now,
                "reopened",
                reason="requester replied",
                settings=s,
            )

    def new_text(self, msg: InboundMessage) -> str:
        """The text a reply adds (quoted history removed)."""
        from routing.replies import extract_new_text

        return extract_new_text(msg.text, msg.html) or msg.body

    @staticmethod
    def _thread(msg: InboundMessage) -> Threading:
        refs = (*msg.references, msg.message_id) if msg.message_id else msg.references
        return Threading(msg.message_id or None, tuple(refs))

    def understand_all(self, msgs: list[InboundMessage]) -> None:
        """Correct and classify a batch's mails at once, ahead of deciding them.

        One vectorised classifier call instead of one per mail; a mail that turns
        out to be a reply or a duplicate costs a wasted row, far cheaper than the
        per-call overhead saved. Replaces the previous batch's answers.
        """
        self._understood = {}
        try:
            corrections, answers = self._understand_many(msgs)
        except Exception:  # one mail breaks the model: each is understood on its own instead
            log.warning("understanding a batch at once failed; one mail at a time", exc_info=True)
            return
        self._understood = {
            id(m): (m, c, a) for m, c, a in zip(msgs, corrections, answers, strict=True)
        }

    def _understand_many(self, msgs: list[InboundMessage]) -> tuple[list, list]:
        t = time.perf_counter()
        corrections = [self.corrector.correct(msg.body) for msg in msgs]
        t = self.timer.add("correct", t)
        items = [
            (m.subject, c.text, m.sender or "") for m, c in zip(msgs, corrections, strict=True)
        ]
        answers = classify_all(self.classifier, items)
        self.timer.add("classify", t)
        return corrections, answers

    def _understand(self, msg: InboundMessage) -> tuple[Correction, Classification]:
        known = self._understood.pop(id(msg), None)
        if known is not None and known[0] is msg:
            return known[1], known[2]
        t = time.perf_counter()
        correction = self.corrector.correct(msg.body)
        t = self.timer.add("correct", t)
        classification = self.classifier.classify(msg.subject, correction.text, msg.sender or "")
        self.timer.add("classify", t)
        return correction, classification

    def _new_ticket(
        self,
        session: Session,
        msg: InboundMessage,
        verdict: Verdict,
        received: datetime,
        earlier: Ticket | None = None,
    ) -> Outcome:
        correction, cls = self._understand(msg)
        t = time.perf_counter()
        requester = msg.sender or msg.from_header or "unknown"
        facts = TicketFacts(
            requester=requester,
            subject=msg.subject,
            text=correction.text,
            category=cls.category,
            priority=cls.priority,
            confidence=cls.confidence,
            received_at=received,
            classification_source=cls.source,
        )
        steps = self.approval_steps(facts)
        decision = route(facts, self.settings, weighted_load(session), steps)
        t = self.timer.add("route", t)
        ticket = self._insert_ticket(session, msg, correction, cls, decision)
        kept = self.keep_attachments(session, ticket.id, msg)
        self._record_creation(session, ticket, msg, verdict, correction, cls, decision)
        if earlier is not None:
            self._link(session, earlier, ticket)
        for hook in self.extensions:
            if hasattr(hook, "on_new_ticket"):
                hook.on_new_ticket(session, ticket, decision)
        self._notify_new(session, ticket, msg, verdict, decision, bool(kept))
        announce(session, self.settings, "created", ticket, ticket.subject, self.clock.now())
        self.timer.add("notify", t)
        return Outcome("ticket", ticket.id, "new request", verdict.hits + decision.rule_hits)

    def _link(self, session: Session, earlier: Ticket, ticket: Ticket) -> None:
        """A late reply to a resolved ticket: both histories name the other."""
        self.event(session, ticket.id, SYSTEM_ACTOR, "linked", earlier=earlier.id)
        self.event(session, earlier.id, SYSTEM_ACTOR, "linked", later=ticket.id)

    def approval_steps(self, facts: TicketFacts) -> tuple:
        """Approval steps the ticket's category requires (none by default)."""
        cat = self.settings.category(facts.category)
        if cat is None or not cat.needs_approval:
            return ()
        from routing.approval import steps_for

        return steps_for(cat)

    def _insert_ticket(self, session, msg, correction, cls, decision) -> Ticket:
        now = self.clock.now()
        ticket_id = new_ticket_id(now)
        while session.get(Ticket, ticket_id) is not None:
            ticket_id = new_ticket_id(now)
        routed = routed_status(decision.assignee)
        status = AWAITING_APPROVAL if decision.needs_approval else routed
        ticket = Ticket(
            id=ticket_id,
            subject=msg.subject or "(no subject)",
            requester=msg.sender or msg.from_header or "unknown",
            status=status,
            category=cls.category,
            priority=decision.priority,
            team=decision.team,
            assignee=decision.assignee,
            original_text=correction.original,
            corrected_text=correction.text,
            confidence=cls.confidence,
            classification_source=cls.source,
            created_at=now,
            updated_at=now,
            sla_due_at=decision.sla_due_at,
            first_response_due=decision.first_response_due,
            next_update_due=decision.next_update_due,
            escalated=False,
            source_message_id=msg.message_id,
        )
        session.add(ticket)
        session.flush()
        return ticket

    def _record_creation(self, session, ticket, msg, verdict, correction, cls, decision) -> None:
        self.event(
            session,
            ticket.id,
            ticket.requester,
            "created",
            message_id=msg.message_id,
            guard_hits=list(verdict.hits),
        )
        self.event(
            session,
            ticket.id,
            SYSTEM_ACTOR,
            "classified",
            category=cls.category,
            priority=cls.priority,
            confidence=round(cls.confidence, 3),
            source=cls.source,
            model_version=cls.model_version,
            reasons=list(cls.reasons),
            spelling_edits=[[e.original, e.corrected] for e in correction.edits],
        )
        self.event(
            session,
            ticket.id,
            SYSTEM_ACTOR,
            "routed",
            team=decision.team,
            priority=decision.priority,
            rule_hits=list(decision.rule_hits),
            reasons=list(decision.reasons),
        )
        if decision.assignee:
            self.event(session, ticket.id, SYSTEM_ACTOR, "assigned", assignee=decision.assignee)

    def _notify_new(self, session, ticket, msg, verdict, decision, has_files=True) -> None:
        if verdict.may_answer:
            self.composer.compose(session, "ack", ticket, [ticket.requester], self._thread(msg))
            self.event(session, ticket.id, SYSTEM_ACTOR, "acknowledged", to=ticket.requester)
        else:
            self.event(
                session, ticket.id, SYSTEM_ACTOR, "not_acknowledged", rules=list(verdict.hits)
            )
        if decision.needs_approval:
            return
        to = who_is_told(self.settings, ticket, with_team=False)
        self.composer.compose_for_agents(
            session,
            "assigned",
            ticket,
            to,
            reasons=list(decision.reasons),
            # A new ticket's files are this mail's: none kept, nothing to look up.
            **(notice_context(session, self.settings, ticket) if has_files else NO_FILES),
        )

    def keep_attachments(self, session, ticket_id: str, msg: InboundMessage, from_reply=False):
        """Store the mail's attachments for ``ticket_id`` in this transaction."""
        carrier = Carrier(ticket_id, msg.message_id, from_reply)
        return keep_attachments(session, self.settings, carrier, msg.raw, self.clock.now())
