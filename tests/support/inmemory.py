"""The daemon's per-mail path without a database: parse -> guards -> composed replies.

Fast enough for thousands of fuzz examples a second or so each: no SQLite, no
Maildir, no classifier. It follows ``daemon.pipeline`` where it matters for
robustness: the same ``parse_message`` limits, the same guard rules, the same
``Composer`` and threading of replies, an acknowledgement only when the guards
allow an answer, and the assignee's notice carrying the request text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from config.schema import Settings
from daemon.clock import ManualClock
from daemon.guards import GuardContext, Verdict, check
from daemon.notify import Composer
from daemon.parse import InboundMessage, Limits, UnparseableMail, parse_message
from daemon.pipeline import Pipeline
from daemon.store.models import Ticket
from templates import TemplateRenderer

AGENT = "agent@example.com"


@dataclass
class _Rows:
    """Stands in for a Session: Composer only ever calls ``add``."""

    added: list = field(default_factory=list)

    def add(self, row) -> None:
        self.added.append(row)


@dataclass(frozen=True)
class Result:
    """What became of one raw mail in memory."""

    kind: str  # "unparseable" or the guard action ("accept", "silent", "drop", "hold")
    reason: str
    outgoing: tuple[tuple[str, bytes], ...]  # (label, raw) of every composed message


class InMemoryDaemon:
    """Parse, guard and compose like the pipeline does, with defaults for everything."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.clock = ManualClock()
        self.composer = Composer(self.settings, TemplateRenderer(), self.clock)
        g = self.settings.guards
        self.limits = Limits(g.max_message_bytes, g.max_parts, g.max_depth)
        own = {self.settings.mailbox.support_address, self.settings.outbound.from_address}
        self.context = GuardContext(
            frozenset(a.lower() for a in own),
            self.composer.loop_marker,
            lambda sender: 0,
            g.sender_rate_limit,
        )

    def ticket(self, msg: InboundMessage) -> Ticket:
        """The ticket the pipeline would open (fixed routing: the text is what matters)."""
        now = self.clock.now()
        return Ticket(
            id="TKT-20260105-FUZZ00",
            subject=msg.subject or "(no subject)",
            requester=msg.sender or msg.from_header or "unknown",
            status="assigned",
            category="general",
            priority="medium",
            team="Service Desk",
            assignee=AGENT,
            original_text=msg.body,
            corrected_text=msg.body,
            confidence=0.5,
            classification_source="fuzz",
            created_at=now,
            updated_at=now,
            sla_due_at=now + timedelta(hours=8),
            source_message_id=msg.message_id,
        )

    def compose(self, msg: InboundMessage, verdict: Verdict) -> tuple[tuple[str, bytes], ...]:
        """The acknowledgement (when the guards allow one) and the assignee's notice."""
        rows = _Rows()
        ticket = self.ticket(msg)
        thread = Pipeline._thread(msg)
        if verdict.may_answer:
            self.composer.compose(rows, "ack", ticket, [ticket.requester], thread)
        self.composer.compose(
            rows, "assigned", ticket, [AGENT], auto="auto-generated", reasons=["fuzz"]
        )
        return tuple((f"{row.kind} of fuzz mail", row.raw) for row in rows.added)

    def run(self, raw: bytes) -> Result:
        """One mail. Raises anything but UnparseableMail: that is what the tests catch."""
        try:
            msg = parse_message(raw, self.limits)
        except UnparseableMail as exc:
            return Result("unparseable", str(exc), ())
        verdict = check(msg, self.context)
        outgoing = self.compose(msg, verdict) if verdict.makes_ticket else ()
        return Result(str(verdict.action), verdict.reason, outgoing)
