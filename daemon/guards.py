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
service-notice     no      no   SES events, list-server notices: a machine talking
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


# Non-delivery subjects of the MTAs in the sisimai corpus, and what Exchange, Gmail and the
# big providers say in other languages. Anchored: "Re: Undeliverable ..." is a person replying.
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(undeliver(able|ed)|returned mail|failure notice|non[- ]?delivery"
    r"|(mail )?delivery (status|notification|report|fail|has failed|delayed|problem)"
    r"|mail delivery (failed|failure|status|error|problem)|message delivery has failed"
    r"|(mail|message|your message) could not be delivered|sorry, your message could not"
    r"|delayed mail|warning: (could not send|message .* delayed)|postmaster notify"
    r"|mail system error|there was an error sending your mail|notice: mail delivery"
    r"|unzustellbar|nicht zustellbar|zustellung fehlgeschlagen|non remis|non distribuable"
    r"|[ée]chec de (la )?(remise|distribution)|no se (pudo|puede) entregar|no entregado"
    r"|non recapitabile|mancato recapito|onbestelbaar|niet bezorgd|n[ãa]o (foi )?entregue"
    r"|falha na entrega|niedostarczaln|kan (inte|ikke) leveres|olevererbar"
    r"|не доставлено|недоставлен|ошибка доставки"
    r"|配信(不能|エラー|失敗)|メール(送信|配信)?エラー|不達|(系统)?退信|邮件投递失败|无法投递)",
    re.IGNORECASE,
)
# RFC 5321 role mailboxes that MTAs send from; MAILER-DAEMON often has no domain at all.
_DAEMON_SENDER = re.compile(
    r"^(mailer[-_.]?daemon|mail[-_.]?daemon|post[-_]?master)(\+[^@]*)?(@|$)", re.IGNORECASE
)
# "noreply" as a word of the local part: noreply@, no-reply+x@, gmail-noreply@, alerts.donotreply@.
_NO_REPLY_SENDER = re.compile(
    r"(^|[-_.+])(no[-_.]?reply|do[-_.]?not[-_.]?reply)([-_.+][^@]*)?@", re.IGNORECASE
)
_ANGLE_ADDRESS = re.compile(r"<([^<>]*)>\s*$")
# The returned original (or its headers) rides along in a bounce, not in an auto-reply.
_RETURNED_ORIGINAL = ("message/rfc822", "text/rfc822-headers", "message/global")
# SES event JSON, bare or wrapped (escaped) in an SNS envelope.
_SES_NOTICE = re.compile(r'\\?"(?:notificationType|eventType)\\?"\s*:\s*\\?"(\w+)')


def _from_address(msg: InboundMessage) -> str:
    """The From address even when it is not a valid single address (``<MAILER-DAEMON>``)."""
    if msg.sender:
        return msg.sender
    found = _ANGLE_ADDRESS.search(msg.from_header)
    return (found.group(1) if found else msg.from_header).strip().lower()


def _ses_notice(msg: InboundMessage) -> str:
    """The type of an Amazon SES notification sent by SNS ('' when it is none)."""
    if not (msg.sender or "").endswith(("@sns.amazonaws.com", ".amazonses.com")):
        return ""
    found = _SES_NOTICE.search(msg.text[:2000])
    return found.group(1).lower() if found else ""


def _has_null_return_path(msg: InboundMessage) -> bool:
    return msg.header("return-path").replace(" ", "") == "<>"


def _is_dsn(msg: InboundMessage) -> bool:
    """A delivery status notification by its MIME structure (RFC 3464)."""
    if msg.report_type.lower() == "delivery-status":
        return True
    if msg.content_type == "multipart/report" and not msg.report_type:
        return True
    return "message/delivery-status" in msg.part_types


def _is_machine_sent(msg: InboundMessage) -> bool:
    """Evidence that no person sent this: what a bounce subject needs besides itself."""
    sender = _from_address(msg)
    return (
        _has_null_return_path(msg)
        or not sender
        or sender == "<>"
        or bool(_NO_REPLY_SENDER.search(sender))
        or msg.header("auto-submitted").lower() not in ("", "no")
        or any(t in msg.part_types for t in _RETURNED_ORIGINAL)
    )


class Bounce:
    name = "bounce"
    description = "Delivery status notifications and non-delivery reports."
    action = Action.DROP

    def matches(self, msg: InboundMessage, ctx: GuardContext) -> bool:
        if _is_dsn(msg) or msg.has_header("x-failed-recipients"):
            return True
        if _DAEMON_SENDER.search(_from_address(msg)) or _ses_notice(msg) == "bounce":
            return True
        if _has_null_return_path(msg) and any(t in msg.part_types for t in _RETURNED_ORIGINAL):
            return True
        # A subject alone could be a person writing about a bounce: "Undeliverable mail to X".
        return bool(_BOUNCE_SUBJECT.search(msg.subject)) and _is_machine_sent(msg)


_REPORT_PARTS = ("message/disposition-notification", "message/feedback-report")
# Outlook.com/Hotmail JMRP complaints are plain multipart/mixed with this subject.
_COMPLAINT_SUBJECT = re.compile(r"^\s*complaint about message from \S+$", re.IGNORECASE)


class Report:
    name = "report"
    description = "Read receipts (MDN) and abuse feedback reports (ARF)."
    action = Action.DROP

    def matches(self, msg: InboundMessage, ctx: GuardContext) -> bool:
        if msg.report_type.lower() in ("disposition-notification", "feedback-report"):
            return True
        if any(t in msg.part_types for t in _REPORT_PARTS):
            return True
        return bool(_COMPLAINT_SUBJECT.search(msg.subject)) or _ses_notice(msg) == "complaint"


# The administrative address of a list server: fml's ``neko-admin``, ``owner-neko``,
# Mailman's ``-owner``/``-bounces``/``-request``.
_LIST_ADMIN_SENDER = re.compile(
    r"(^owner-|-(admin|owner|bounces?|request)(\+[^@]*)?@)", re.IGNORECASE
)


class ServiceNotice:
    name = "service-notice"
    description = (
        "Notices of mail services and list servers: Amazon SES delivery/bounce/complaint "
        "events, Mailman administrivia, fml loop alerts and 'not member' replies."
    )
    action = Action.DROP

    def matches(self, msg: InboundMessage, ctx: GuardContext) -> bool:
        if _ses_notice(msg) or msg.header("x-list-administrivia").lower() == "yes":
            return True
        # A list server writing from its admin address is the server, not a member posting.
        return msg.has_header("x-mlserver") and bool(_LIST_ADMIN_SENDER.search(_from_address(msg)))


# Outlook/Exchange put "<phrase>: " before the original subject, by language; others send the
# bare phrase. Followed by anything else ("Out of office not working") it is a person writing.
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto[- ]?reply|auto[- ]?response|out of (the )?office( auto ?reply)?"
    r"|abwesenheitsnotiz|automatische antwort|r[ée]ponse automatique|risposta automatica"
    r"|respuesta autom[áa]tica|resposta autom[áa]tica|automatisch antwoord|autosvar"
    r"|automaattinen vastaus|odpowied[źz] automatyczna|автоматический ответ"
    r"|自動応答|自動返信|自动回复)\s*([:\uff1a]|$)",
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
    description = "Machine-generated mail (Auto-Submitted other than 'no', or a no-reply sender)."
    action = Action.SILENT

    def matches(self, msg: InboundMessage, ctx: GuardContext) -> bool:
        auto = msg.header("auto-submitted").lower()
        return (bool(auto) and auto != "no") or bool(_NO_REPLY_SENDER.search(msg.sender or ""))


# RFC 2369/2919 headers, plus ezmlm's Mailing-List and fml's X-MLServer.
_LIST_HEADERS = ("list-id", "list-unsubscribe", "list-post", "mailing-list", "x-mlserver")


class ListMail:
    name = "list-mail"
    description = "Mailing-list and bulk mail (List-* headers, Precedence)."
    action = Action.SILENT

    def matches(self, msg: InboundMessage, ctx: GuardContext) -> bool:
        if any(msg.has_header(h) for h in _LIST_HEADERS):
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
    ServiceNotice(),
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
