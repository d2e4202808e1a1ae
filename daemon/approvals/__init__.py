"""Reply-to-approve: requests, replies, reminders and expiry, as a pipeline extension.

:class:`ApprovalDesk` plugs into the pipeline (``on_new_ticket``, ``handle``) and
the scheduler (``jobs``). The pure half decides: ``routing.replies`` reads the
reply, ``routing.reply_screen`` refuses mail that may never decide,
``routing.approval`` is the state machine. This package stores the result inside
the pipeline's one transaction:

- ``claims``: is a mail an approval reply (its token, its thread), what it says;
- ``replies``: screen a reply, check its token, count its vote or refuse it;
- ``answers``: record a reply that does not count, answer it once when useful;
- ``requests``: ask a step's approvers, remind them, grant or reject the ticket;
- ``jobs``: the scheduled reminders and expiry;
- ``mail``: the approval mail (outbox rows); ``store``: locks, rows, tokens.

Concurrency: a decision locks the ticket row (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite has one writer), rebuilds the progress from the rows and
stores the vote with a conditional ``UPDATE ... WHERE decision = 'pending' AND
token = :hash``, so the first valid decision wins; the later one is answered
"already decided". Tokens are stored only hashed and cleared on use, when their
request becomes moot, and on completion or expiry.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from config.schema import Settings
from daemon.approvals.answers import ReplyAnswers
from daemon.approvals.claims import claim, read_reply
from daemon.approvals.jobs import ApprovalJobs
from daemon.approvals.mail import ApprovalMailer
from daemon.approvals.replies import ApprovalReplies, trusts_authentication_results
from daemon.approvals.requests import ApprovalRequests
from daemon.approvals.store import lock_ticket
from daemon.clock import Clock
from daemon.guards import Verdict
from daemon.ledger import Outcome
from daemon.notify import Composer
from daemon.parse import InboundMessage
from daemon.store.models import Ticket
from daemon.threads import ThreadMatch
from routing.facts import RoutingDecision

__all__ = ["KIND", "ApprovalDesk", "trusts_authentication_results"]

log = logging.getLogger(__name__)

KIND = "approval"  # the ledger outcome of an approval reply


class ApprovalDesk:
    """The approval extension: see the package docstring."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        composer: Composer,
        clock: Clock,
    ) -> None:
        self.clock = clock
        mailer = ApprovalMailer(settings, composer)
        self.requests = ApprovalRequests(settings, composer, mailer)
        self.replies = ApprovalReplies(settings, self.requests, ReplyAnswers(mailer))
        self.scheduled = ApprovalJobs(settings, factory, self.requests)

    def on_new_ticket(self, session: Session, ticket: Ticket, decision: RoutingDecision) -> None:
        """Create the approval rows of every step and ask the first step's approvers."""
        if decision.approval_steps:
            self.requests.open(session, ticket, decision.approval_steps, self.clock.now())

    def handle(
        self,
        session: Session,
        msg: InboundMessage,
        match: ThreadMatch | None,
        verdict: Verdict,
        mail: object,
    ) -> Outcome | None:
        """Judge ``msg`` if it is an approval reply; None lets the pipeline go on."""
        found = claim(session, msg, match)
        if found is None:
            return None
        hits = (*verdict.hits, "approval-reply")
        if found.ticket_id is None:
            log.info("approval reply %s: unknown token, no ticket", msg.message_id or "?")
            return Outcome(KIND, None, "unknown approval token", hits)
        ticket = lock_ticket(session, found.ticket_id)
        assert ticket is not None  # found a moment ago; tickets are never deleted
        reply = read_reply(msg, verdict, found, self.clock.now())
        reason = self.replies.judge(session, ticket, found, reply)
        log.info(
            "approval reply %s from %s on %s: %s", msg.message_id, reply.actor, ticket.id, reason
        )
        return Outcome(KIND, ticket.id, reason, hits)

    def jobs(self) -> list:
        """The periodic jobs (reminders, expiry): see ``daemon.approvals.jobs``."""
        return self.scheduled.jobs()
