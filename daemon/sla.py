"""The SLA at work: start the clocks, stop first response, warn, breach, climb the ladder.

The arithmetic (business calendars, targets, rungs) is pure and lives in
``routing.sla``; pauses are kept by ``daemon.tickets.change_status``. Here the
ticket is changed, its history written and the mail composed, inside the
caller's transaction; the periodic job is ``daemon.scheduler.check_sla``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from config.schema import PRIORITIES, Settings
from daemon.channels import announce
from daemon.notify import Composer, Threading
from daemon.store.models import Ticket
from daemon.store.queries import iso
from daemon.tickets import CLOSED_STATUSES, SYSTEM_ACTOR, add_event, who_is_told
from routing.sla import SlaPolicy, raised

__all__ = [
    "SlaDesk",
    "record_explanation",
    "record_first_response",
    "running_tickets",
    "start_clocks",
]


def start_clocks(ticket: Ticket, settings: Settings, start: datetime) -> None:
    """Set every due time of ``ticket`` for clocks starting at ``start``."""
    dues = SlaPolicy(settings).dues(ticket.priority, ticket.category, start)
    ticket.sla_due_at = dues.resolution
    ticket.first_response_due = dues.first_response
    ticket.next_update_due = dues.next_update


def record_first_response(
    session: Session, ticket: Ticket, actor: str, at: datetime, settings: Settings
) -> None:
    """An agent answered the requester: stop the first-response clock, renew next update.

    Called for every agent answer; only the first one sets ``first_response_at``.
    """
    if ticket.first_response_at is None:
        ticket.first_response_at = at
        due = ticket.first_response_due
        met = due is None or at <= due
        add_event(session, ticket.id, actor, "first_response", at, due=iso(due), met=met)
        ticket.sla_reminded = False  # the next warning is about the next target
    minutes = SlaPolicy(settings).targets(ticket.priority, ticket.category).next_update
    if minutes is not None:
        calendar = SlaPolicy(settings).calendar(ticket.priority)
        ticket.next_update_due = calendar.add(at, minutes)


def record_explanation(
    session: Session, ticket: Ticket, actor: str, text: str, at: datetime
) -> bool:
    """Record why a breached ticket breached (the ``#reason TEXT`` command).

    False, and nothing recorded, when the ticket has not breached. A second
    explanation replaces the first; both stay in the history.
    """
    if ticket.breached_at is None:
        return False
    ticket.breach_explained_at = at
    ticket.breach_explanation = text.strip()
    add_event(session, ticket.id, actor, "breach_explained", at, text=ticket.breach_explanation)
    return True


@dataclass(frozen=True)
class OpenTarget:
    """The earliest target of a ticket that is still to be met."""

    name: str  # "first_response" | "next_update" | "resolution"
    due: datetime


def open_target(ticket: Ticket) -> OpenTarget | None:
    """The target that falls due first; first response only while nobody answered."""
    found = [
        OpenTarget("first_response", ticket.first_response_due)
        if ticket.first_response_at is None and ticket.first_response_due
        else None,
        OpenTarget("next_update", ticket.next_update_due) if ticket.next_update_due else None,
        OpenTarget("resolution", ticket.sla_due_at) if ticket.sla_due_at else None,
    ]
    return min((t for t in found if t), key=lambda t: t.due, default=None)


class SlaDesk:
    """One SLA check: warns, breaches and escalates the tickets it is shown."""

    def __init__(self, settings: Settings, composer: Composer, now: datetime) -> None:
        self.settings = settings
        self.policy = SlaPolicy(settings)
        self.composer = composer
        self.now = now

    def check(self, session: Session, ticket: Ticket) -> bool:
        """Act on one running ticket; True when something happened."""
        if ticket.breached_at is not None:
            return self._climb(session, ticket)
        target = open_target(ticket)
        if target is None:
            return False
        if self.now >= target.due:
            self._breach(session, ticket, target)
            self._climb(session, ticket)
            return True
        return self._maybe_warn(session, ticket, target)

    # -- warning --------------------------------------------------------------------------------
    def _maybe_warn(self, session: Session, ticket: Ticket, target: OpenTarget) -> bool:
        if ticket.sla_reminded:
            return False
        left = self.policy.calendar(ticket.priority).between(self.now, target.due)
        if left > self.policy.warn_within(self._target_minutes(ticket, target)):
            return False
        ticket.sla_reminded = True
        add_event(
            session,
            ticket.id,
            SYSTEM_ACTOR,
            "sla_reminder",
            self.now,
            target=target.name,
            due=iso(target.due),
        )
        to = who_is_told(self.settings, ticket, with_team=False)
        self._mail(session, "sla_reminder", ticket, to, due=target.due, target=target.name)
        return True

    def _target_minutes(self, ticket: Ticket, target: OpenTarget) -> float:
        targets = self.policy.targets(ticket.priority, ticket.category)
        return getattr(targets, target.name) or targets.resolution

    # -- breach ---------------------------------------------------------------------------------
    def _breach(self, session: Session, ticket: Ticket, target: OpenTarget) -> None:
        """Level 1: the assignee and the team (and ``always_cc``) hear of it."""
        # The breach is when the target fell due, so the ladder's delays count from then.
        ticket.breached_at = target.due
        ticket.escalated = True
        ticket.escalation_level = 1
        add_event(
            session,
            ticket.id,
            SYSTEM_ACTOR,
            "sla_breached",
            self.now,
            target=target.name,
            due=iso(target.due),
        )
        to = who_is_told(self.settings, ticket, with_team=True)
        self._escalate(session, ticket, 1, to, target)
        self._raise_priority(session, ticket)
        self._ask_why(session, ticket)

    def _escalate(
        self, session: Session, ticket: Ticket, level: int, to: list[str], target: OpenTarget
    ) -> None:
        to = list(dict.fromkeys([*to, *self.settings.sla.always_cc]))
        ticket.escalation_level = level
        add_event(
            session,
            ticket.id,
            SYSTEM_ACTOR,
            "escalated",
            self.now,
            reason="SLA breached",
            level=level,
            to=to,
            target=target.name,
            due=iso(target.due),
        )
        self._mail(session, "sla_escalation", ticket, to, due=target.due, level=level)
        text = f"{ticket.id} breached its SLA ({target.name}); escalation level {level}"
        announce(session, self.settings, "escalated", ticket, text, self.now)

    def _raise_priority(self, session: Session, ticket: Ticket) -> None:
        if not self.settings.sla.raise_priority_on_breach:
            return
        new = raised(ticket.priority, PRIORITIES)
        if new != ticket.priority:
            add_event(
                session,
                ticket.id,
                SYSTEM_ACTOR,
                "priority_changed",
                self.now,
                old=ticket.priority,
                new=new,
                reason="SLA breached",
            )
            ticket.priority = new

    def _ask_why(self, session: Session, ticket: Ticket) -> None:
        """The compulsory explanation: the assignee (else the team) is asked for a reason."""
        to = who_is_told(self.settings, ticket, with_team=False)
        if not self.settings.sla.ask_explanation or not to:
            return
        add_event(session, ticket.id, SYSTEM_ACTOR, "explanation_requested", self.now, to=to)
        self._mail(session, "sla_explain", ticket, to, due=ticket.breached_at)

    # -- the ladder -----------------------------------------------------------------------------
    def _climb(self, session: Session, ticket: Ticket) -> bool:
        """Tell every rung the breach has reached since the last check (each its own event)."""
        in_breach = self.policy.calendar(ticket.priority).between(ticket.breached_at, self.now)
        reached = self.policy.escalation_level(in_breach)
        target = OpenTarget("breached", ticket.breached_at)
        climbed = False
        for level in range(ticket.escalation_level + 1, reached + 1):
            self._escalate(session, ticket, level, self.policy.rung_recipients(level), target)
            climbed = True
        return climbed

    def _mail(self, session: Session, kind: str, ticket: Ticket, to: list[str], **ctx) -> None:
        # Agents each get their own copy with a reply token, so they can answer with
        # commands (#reason, #status ...); everyone else (management) shares one.
        agents = [a for a in to if self.settings.is_agent(a)]
        others = [a for a in to if a not in agents]
        self.composer.compose_for_agents(session, kind, ticket, agents, **ctx)
        if others:
            self.composer.compose(
                session, kind, ticket, others, Threading(), "auto-generated", **ctx
            )


def running_tickets(settings: Settings):
    """The tickets whose SLA clocks run: open, not paused, with a due time or a ladder to climb."""
    top = 1 + len(settings.sla.escalation)
    return select(Ticket).where(
        Ticket.status.not_in(CLOSED_STATUSES),
        Ticket.paused_since.is_(None),
        Ticket.escalation_level < top,
        or_(
            Ticket.sla_due_at.is_not(None),
            Ticket.first_response_due.is_not(None),
            Ticket.next_update_due.is_not(None),
        ),
    )
