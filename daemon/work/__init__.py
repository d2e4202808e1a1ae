"""Working a ticket by e-mail: agents' commands and answers, requesters' commands.

:class:`WorkDesk` plugs into the pipeline (``handle``) and the scheduler (``jobs``):

- an agent (a member of a configured team) replying about a ticket: the mail is
  screened as approval replies are (one From mailbox, not automatic, not a
  forward, no delegate, trusted Authentication-Results) and must carry a live
  reply token bound to the agent and the ticket; then its commands are applied
  (``actions``), the rest of its new text is relayed to the requester
  (``relay``) and the agent gets one short confirmation;
- a requester: ``#close`` for their own ticket, in a reply; the text itself
  goes on the ticket as any reply does (the pipeline's comment path);
- anyone else: commands are refused and recorded.

Everything refused is a history event with its reason. The grammar is pure:
``routing.commands``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.schema import Settings
from daemon.approvals import trusts_authentication_results
from daemon.clock import Clock
from daemon.guards import Verdict
from daemon.ledger import Outcome
from daemon.notify import Composer
from daemon.parse import InboundMessage
from daemon.store.models import Ticket
from daemon.threads import ThreadMatch, answers_ticket
from daemon.tickets import SYSTEM_ACTOR, add_event, change_status
from daemon.work.actions import CommandRunner, Report
from daemon.work.relay import confirm, relay
from daemon.work.tokens import screen_policy, screening, token_refusal
from routing.commands import REQUESTER_COMMANDS, Parsed, parse_commands
from routing.replies import extract_new_text

__all__ = ["CommandRunner", "WorkDesk"]


class WorkDesk:
    """The agents' and requesters' e-mail commands: see the package docstring."""

    def __init__(self, settings: Settings, composer: Composer, clock: Clock) -> None:
        self.settings = settings
        self.composer = composer
        self.clock = clock
        self.runner = CommandRunner(settings, composer)
        self.policy = screen_policy(settings, trusts_authentication_results(settings))

    def handle(
        self,
        session: Session,
        msg: InboundMessage,
        match: ThreadMatch | None,
        verdict: Verdict,
        mail,
    ) -> Outcome | None:
        """Take an agent's reply whole; a requester's or anyone's commands; else None."""
        if match is None:
            return None
        ticket, sender = match.ticket, (msg.sender or "").lower()
        parsed = parse_commands(extract_new_text(msg.text, msg.html) or msg.body)
        if self.settings.is_agent(sender) and sender != ticket.requester.lower():
            return self._agent(session, ticket, msg, verdict, parsed)
        if parsed.commands:
            self._others(session, ticket, msg, match, verdict, parsed)
        return None

    # -- agents -------------------------------------------------------------------
    def _agent(self, session, ticket: Ticket, msg, verdict: Verdict, parsed: Parsed):
        now, agent = self.clock.now(), (msg.sender or "").lower()
        if not verdict.makes_ticket and not parsed.commands:
            return None  # an agent's out-of-office: the pipeline records it as ignored
        why = screening(msg, verdict, self.policy) or token_refusal(session, msg, ticket, now)
        if why is not None:
            return self._refused(session, ticket, agent, parsed, why, now)
        report = self.runner.apply(session, ticket, parsed.commands, agent, now)
        if parsed.rest:
            relay(session, self.composer, ticket, agent, parsed.rest, now, msg.message_id)
        if parsed.commands:
            confirm(session, self.composer, self.settings, ticket, agent, report, now)
        return Outcome("comment", ticket.id, _summary(report, bool(parsed.rest)), ("agent",))

    def _refused(self, session, ticket, agent: str, parsed: Parsed, why: str, now) -> Outcome:
        self.runner.refuse_all(session, ticket, parsed.commands, agent, now, why)
        if parsed.rest:
            add_event(session, ticket.id, agent, "answer_refused", now, reason=why)
        return Outcome("ignored", ticket.id, f"agent mail refused: {why}", ("agent",))

    # -- requesters and others ------------------------------------------------------
    def _others(self, session, ticket, msg, match, verdict, parsed: Parsed) -> Report:
        now, sender = self.clock.now(), (msg.sender or msg.from_header).lower()
        is_reply = answers_ticket(session, msg, ticket)
        if not self._requester_may_command(ticket, msg, is_reply, verdict):
            why = self._why_not(ticket, sender, is_reply, verdict)
            return self.runner.refuse_all(session, ticket, parsed.commands, sender, now, why)
        report = Report()
        for command in parsed.commands:
            if command.name in REQUESTER_COMMANDS:
                report.results += self.runner.apply(session, ticket, [command], sender, now).results
            else:
                why = f"a requester may only use #{', #'.join(sorted(REQUESTER_COMMANDS))}"
                report.results += self.runner.refuse_all(
                    session, ticket, [command], sender, now, why
                ).results
        return report

    def _requester_may_command(self, ticket, msg, is_reply: bool, verdict: Verdict) -> bool:
        sender = (msg.sender or "").lower()
        return (
            sender == ticket.requester.lower()
            and verdict.makes_ticket
            and is_reply
            and screening(msg, verdict, self.policy) is None
        )

    def _why_not(self, ticket, sender: str, is_reply: bool, verdict: Verdict) -> str:
        if sender != ticket.requester.lower():
            return "not an agent: only team members may command"
        if not verdict.makes_ticket:
            return f"automatic mail ({', '.join(verdict.hits)})"
        if not is_reply:
            return "not a reply: answer a mail about the ticket to use #close"
        return "the mail may not command (see the screening rules)"

    # -- scheduled ------------------------------------------------------------------
    def jobs(self) -> list:
        """Auto-close: (name, function of (app, now), interval seconds)."""
        return [("auto-close", self.auto_close, self.settings.tickets.check_interval_seconds)]

    def auto_close(self, app, now: datetime) -> int:
        """Resolved tickets nobody answered for ``auto_close_days`` become closed."""
        days = self.settings.tickets.auto_close_days
        if not days:
            return 0
        with app.factory() as session, session.begin():
            stmt = select(Ticket).where(
                Ticket.status == "resolved", Ticket.resolved_at <= now - timedelta(days=days)
            )
            tickets = list(session.scalars(stmt.with_for_update(skip_locked=True)))
            for ticket in tickets:
                change_status(
                    session,
                    ticket,
                    "closed",
                    SYSTEM_ACTOR,
                    now,
                    reason="auto-close",
                    settings=self.settings,
                )
        return len(tickets)


def _summary(report: Report, relayed: bool) -> str:
    parts = [f"{len(report.applied)} command(s) applied", f"{len(report.refused)} refused"]
    return "agent reply: " + ", ".join(parts) + ("; answer relayed" if relayed else "")
