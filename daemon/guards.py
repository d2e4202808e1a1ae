"""Loop and flood guards: small named rules, read top to bottom (Mailman ``rules/``).

Each rule has a ``name``, a ``description`` and ``matches(msg, ctx)``. The first
matching rule decides the :class:`Action`; every rule that matched is recorded.

What becomes of guarded mail (documented in the README):

=================  ======  ===  ====================================================
rule               ticket  ack  why
=================  ======  ===  ====================================================
own-mail           no      no   our own mail coming back would loop
bounce             no      no   a DSN/NDR is not a request; noted on the ticket it names
report             no      no   read receipts and abuse reports (ARF) are not requests
auto-reply         no      no   out-of-office and vacation replies are not requests
sender-rate        hold    no   over the per-sender limit: held in quarantine, not lost
auto-generated     yes     no   monitoring alerts are real work, but must not be answered
list-mail          yes     no   list/bulk mail may matter; answering it would spam a list
no-sender          yes     no   no single trustworthy From address to answer
=================  ======  ===  ====================================================
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from daemon.parse import InboundMessage


class Action(StrEnum):
    """What a guard decides about a mail."""

    ACCEPT = "accept"  # ticket (or comment) and acknowledgement
    SILENT = "silent"  # ticket (or comment), no acknowledgement
    DROP = "drop"  # no ticket; recorded in the ledger
    HOLD = "hold"  # quarantined with the reason


@dataclass(frozen=True)
class GuardContext:
    """What the rules may consult besides the mail."""

    own_addresses: frozenset[str]
    own_marker: str
    recent_from_sender: Callable[[str], int]
    sender_limit: int


@dataclass(frozen=True)
class Verdict:
    """The guards' decision and every rule that matched."""

    action: Action
    hits: tuple[str, ...]
    reason: str = ""

    @property
    def makes_ticket(self) -> bool:
        """True when the mail may become a ticket or comment."""
        return self.action in (Action.ACCEPT, Action.SILENT)

    @property
    def may_answer(self) -> bool:
        """True when the sender may get mail from us about it."""
        return self.action is Action.ACCEPT


class OwnMail:
    name = "own-mail"
    description = "Mail we sent ourselves, coming back (loop header or our From address)."
    action = Action.DROP

    def matches(self, msg: InboundMessage, ctx: GuardContext) -> bool:
        return msg.has_header("x-mailtriage-loop") or (msg.sender or "") in ctx.own_addresses


_BOUNCE_SUBJECT = re.compile(
    r"^(undeliverable|undelivered mail|delivery status notification|mail delivery (failed|failure)"
    r"|returned mail|delivery failure|failure notice|non[- ]delivery)",
    re.IGNORECASE,
)
_BOUNCE_SENDER = re.compile(r"^(mailer-daemon|postmaster|mail-daemon)@", re.IGNORECASE)


class Bounce:
    name = "bounce"
    description = "Delivery status notifications and non-delivery reports."
    action = Action.DROP

    def matches(self, msg: InboundMessage, ctx: GuardContext) -> bool:
        if msg.report_type.lower() == "delivery-status":
            return True
        if msg.has_header("x-failed-recipients"):
            return True
        sender = msg.sender or msg.from_header.lower()
        return bool(_BOUNCE_SENDER.search(sender.strip("<> "))) or bool(
            _BOUNCE_SUBJECT.search(msg.subject) and not msg.in_reply_to
        )


class Report:
    name = "report"
    description = "Read receipts (MDN) and abuse feedback reports (ARF)."
    action = Action.DROP

    def matches(self, msg: InboundMessage, ctx: GuardContext) -> bool:
        return msg.report_type.lower() in ("disposition-notification", "feedback-report")


_AUTO_REPLY_SUBJECT = re.compile(
    r"^(automatic reply|auto[- ]?reply|out of (the )?office|autoresponse|abwesenheitsnotiz"
    r"|r[ée]ponse automatique|vacation)\b",
    re.IGNORECASE,
)


class AutoReply:
    name = "auto-reply"
    description = "Out-of-office and vacation replies (RFC 3834 and common vendor headers)."
    action = Action.DROP

    def matches(self, msg: InboundMessage, ctx: GuardContext) -> bool:
        auto = msg.header("auto-submitted").lower()
        if auto.startswith("auto-replied"):
            return True
        if msg.has_header("x-autoreply") or msg.has_header("x-autorespond"):
            return True
        if msg.header("precedence").lower() == "auto_reply":
            return True
        return bool(_AUTO_REPLY_SUBJECT.search(msg.subject))


class SenderRate:
    name = "sender-rate"
    description = "A sender over the configured number of mails per window (a loop or a flood)."
    action = Action.HOLD

    def matches(self, msg: InboundMessage, ctx: GuardContext) -> bool:
        return bool(msg.sender) and ctx.recent_from_sender(msg.sender or "") >= ctx.sender_limit


class AutoGenerated:
    name = "auto-generated"
    description = "Machine-generated mail (Auto-Submitted other than 'no')."
    action = Action.SILENT

    def matches(self, msg: InboundMessage, ctx: GuardContext) -> bool:
        auto = msg.header("auto-submitted").lower()
        return bool(auto) and auto != "no"


class ListMail:
    name = "list-mail"
    description = "Mailing-list and bulk mail (List-Id, List-Unsubscribe, Precedence)."
    action = Action.SILENT

    def matches(self, msg: InboundMessage, ctx: GuardContext) -> bool:
        if msg.has_header("list-id") or msg.has_header("list-unsubscribe"):
            return True
        return msg.header("precedence").lower() in ("bulk", "list", "junk")


class NoSender:
    name = "no-sender"
    description = "No single, well-formed From address to answer."
    action = Action.SILENT

    def matches(self, msg: InboundMessage, ctx: GuardContext) -> bool:
        return not msg.sender


class SuppressAutoResponse:
    name = "suppress-auto-response"
    description = "The sender asked for no automatic responses (X-Auto-Response-Suppress)."
    action = Action.SILENT

    def matches(self, msg: InboundMessage, ctx: GuardContext) -> bool:
        value = msg.header("x-auto-response-suppress").lower()
        return any(w in value for w in ("all", "autoreply", "oof"))


# The order is the policy: the first matching rule decides.
RULES = (
    OwnMail(),
    Bounce(),
    Report(),
    AutoReply(),
    SenderRate(),
    AutoGenerated(),
    ListMail(),
    SuppressAutoResponse(),
    NoSender(),
)


def check(msg: InboundMessage, ctx: GuardContext, rules=RULES) -> Verdict:
    """Run every rule; the first match decides, all matches are recorded."""
    hits = tuple(r.name for r in rules if r.matches(msg, ctx))
    if not hits:
        return Verdict(Action.ACCEPT, ())
    first = next(r for r in rules if r.name == hits[0])
    return Verdict(first.action, hits, first.description)
