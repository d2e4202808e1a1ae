"""Is this reply allowed to command? The reply token it carries, and the sender's screening.

The token is the random part of the Message-ID of a mail we sent one agent about
one ticket (``notify.Composer.compose_for_agents``); an ordinary reply brings it
back in In-Reply-To/References. It counts only when it is live and bound to the
sender and the ticket, so a forged From on a guessed ticket id does nothing.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.schema import Settings
from daemon.guards import Verdict
from daemon.notify import hash_reply_token
from daemon.parse import InboundMessage
from daemon.store.models import ReplyToken, Ticket
from routing.reply_screen import ReplyFacts, ScreenPolicy, screen

_OUR_ID = re.compile(r"^<(TKT-\d{8}-[A-Z0-9]{6})\.([0-9a-f]{32})@")
# The guards' rules that do not make a mail automatic (a person may still be behind it).
_NOT_AUTOMATIC = ("no-sender", "suppress-auto-response")


def screening(msg: InboundMessage, verdict: Verdict, policy: ScreenPolicy) -> str | None:
    """Why this mail may not command (the approvals' checks), or None when it may."""
    automatic = tuple(h for h in verdict.hits if h not in _NOT_AUTOMATIC)
    facts = ReplyFacts(msg.subject, msg.headers, msg.sender, msg.sender_header, automatic)
    result = screen(facts, policy)
    return f"{result.rule}: {result.reason}" if result.refused else None


def token_refusal(
    session: Session, msg: InboundMessage, ticket: Ticket, now: datetime
) -> str | None:
    """Why the reply's token does not allow commands, or None when it does."""
    offered = [m[2] for m in map(_OUR_ID.match, (*msg.in_reply_to, *msg.references)) if m]
    if not offered:
        return "no reply token: answer a mail mailtriage sent you about this ticket"
    rows = session.scalars(
        select(ReplyToken).where(ReplyToken.token_hash.in_([hash_reply_token(t) for t in offered]))
    ).all()
    agent = (msg.sender or "").lower()
    if not any(r.ticket_id == ticket.id and r.agent == agent for r in rows):
        return "the reply token was not issued to you for this ticket"
    if all(r.expires_at <= now for r in rows if r.ticket_id == ticket.id and r.agent == agent):
        return "the reply token has expired: answer a newer mail about this ticket"
    return None


def screen_policy(settings: Settings, trusts_results: bool) -> ScreenPolicy:
    """The approvals' policy: delegates, and whether Authentication-Results are trusted."""
    a = settings.approval
    return ScreenPolicy(a.allow_delegates, trusts_results, a.authserv_id)
