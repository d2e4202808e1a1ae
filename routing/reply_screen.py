"""Who may decide: small named rules that refuse an approval reply before its words are read.

Pure (headers in, a refusal out), so each rule is tested on a five-line mail.
The rules are read top to bottom (:data:`RULES`); the first that matches refuses
the reply and is recorded in the ticket's history with its description. The
checks that need the store (is the token pending? is the sender the approver it
was issued to?) come after these, in ``daemon.approvals``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "RULES",
    "ReplyFacts",
    "ScreenPolicy",
    "Screening",
    "authentication_results",
    "is_forward",
    "screen",
]

# Forward prefixes: English FW/Fwd, German WG, French TR, Spanish RV, Portuguese ENC,
# Swedish VB, Finnish VL, Dutch Doorst. Only the leading run of prefixes and tags counts.
_FORWARD = re.compile(r"^(?:fwd?|wg|tr|rv|enc|vb|vl|doorst)$", re.IGNORECASE)
_PREFIX_RUN = re.compile(
    r"\s*(?:(?P<word>[^\W\d_]{1,8})\s*(?:\[\d+\]|\(\d+\))?\s*[:\uff1a]|\[[^\]]{0,80}\])",
)
_COMMENT = re.compile(r"\([^()]*\)")
_RESULT = re.compile(r"^\s*([a-z0-9_.-]+)\s*=\s*([a-z0-9_.-]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ReplyFacts:
    """What the rules may look at: the reply's headers and the guards' verdict."""

    subject: str
    headers: Mapping[str, tuple[str, ...]]  # lower-case name -> decoded values, top first
    author: str | None  # bare address of a From naming exactly one mailbox (read from raw bytes)
    on_behalf_of: str | None = None  # bare address of the Sender header, when it parses
    automatic: tuple[str, ...] = ()  # guard rules that did not accept the mail as a person's


@dataclass(frozen=True, slots=True)
class ScreenPolicy:
    """The ``[approval]`` settings the rules follow."""

    allow_delegates: bool = False
    trust_authentication_results: bool = False
    authserv_id: str | None = None


@dataclass(frozen=True, slots=True)
class Screening:
    """The rule that refused the reply (``rule`` and ``reason``), or an accepted reply."""

    rule: str | None = None
    reason: str = ""

    @property
    def refused(self) -> bool:
        """True when a rule refused the reply."""
        return self.rule is not None


def is_forward(subject: str, headers: Mapping[str, tuple[str, ...]]) -> bool:
    """True for a forwarded mail: a ``FW:``-style subject prefix or any ``Resent-*`` header."""
    if any(name.startswith("resent-") for name in headers):
        return True
    pos = 0
    while match := _PREFIX_RUN.match(subject, pos):
        if match["word"] and _FORWARD.match(match["word"]):
            return True
        pos = match.end()
    return False


def authentication_results(value: str) -> tuple[str | None, dict[str, str]]:
    """Parse one Authentication-Results value into (authserv-id, {method: result}).

    Exchange Online writes no authserv-id (``spf=pass ...; dmarc=pass ...``): then the
    id is None. Comments are dropped; the first result of each method counts.
    """
    text = value
    while _COMMENT.search(text):
        text = _COMMENT.sub(" ", text)
    parts = [p.strip() for p in text.split(";")]
    first = parts[0].split() if parts else []
    if first and "=" not in first[0]:
        authserv, results = first[0].lower(), parts[1:]
    else:
        authserv, results = None, parts
    methods: dict[str, str] = {}
    for part in results:
        match = _RESULT.match(part)
        if match:
            methods.setdefault(match[1].lower(), match[2].lower())
    return authserv, methods


def trusted_results(
    headers: Mapping[str, tuple[str, ...]], authserv_id: str | None
) -> dict[str, str] | None:
    """The results of the one Authentication-Results header we trust, or None.

    With ``authserv_id``: the topmost header of that server (ours, added last; the
    border must strip forged ones, RFC 8601 section 5). Without it: the topmost header,
    which Exchange Online adds on delivery.
    """
    for value in headers.get("authentication-results", ()):
        authserv, methods = authentication_results(value)
        if authserv_id is None or authserv == authserv_id.strip().lower():
            return methods
    return None


class Automatic:
    name = "automatic"
    description = "automatic mail (auto-reply, bounce, receipt, list or machine mail) never decides"

    def matches(self, facts: ReplyFacts, policy: ScreenPolicy) -> bool:
        return bool(facts.automatic)


class Forward:
    name = "forward"
    description = "a forwarded mail (FW:/Fwd:/WG: or Resent-* headers) never decides"

    def matches(self, facts: ReplyFacts, policy: ScreenPolicy) -> bool:
        return is_forward(facts.subject, facts.headers)


class OneFrom:
    name = "from"
    description = "the From header must name exactly one mailbox"

    def matches(self, facts: ReplyFacts, policy: ScreenPolicy) -> bool:
        return len(facts.headers.get("from", ())) != 1 or facts.author is None


class Delegate:
    name = "delegate"
    description = (
        "sent on behalf of the approver (Sender differs from From); delegates may not decide"
    )

    def matches(self, facts: ReplyFacts, policy: ScreenPolicy) -> bool:
        if policy.allow_delegates or "sender" not in facts.headers:
            return False
        if len(facts.headers["sender"]) != 1 or facts.on_behalf_of is None:
            return True  # an unreadable Sender is not evidence of the approver
        return (facts.author or "").lower() != facts.on_behalf_of.lower()


class FailedAuthentication:
    name = "authentication"
    description = "the trusted Authentication-Results say dmarc=fail or compauth=fail"

    def matches(self, facts: ReplyFacts, policy: ScreenPolicy) -> bool:
        if not policy.trust_authentication_results:
            return False
        results = trusted_results(facts.headers, policy.authserv_id) or {}
        return results.get("dmarc") == "fail" or results.get("compauth") == "fail"


# The order is the policy: the first matching rule refuses the reply.
RULES = (Automatic(), Forward(), OneFrom(), Delegate(), FailedAuthentication())


def screen(facts: ReplyFacts, policy: ScreenPolicy, rules=RULES) -> Screening:
    """Run the rules; the first match refuses the reply."""
    for rule in rules:
        if rule.matches(facts, policy):
            return Screening(rule.name, rule.description)
    return Screening()
