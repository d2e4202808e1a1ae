"""Priority from clear cues, with the reason for each step up or down.

Public ticket sets show that priority from text alone is weak (the best model
we know of reaches about 0.5 macro-F1), so priority here is explicit rules a
person can read and argue with. Each rule that fires is recorded on the ticket;
the highest priority any rule gives wins. Business rules per category (e.g.
``security`` at least ``high``) live in the routing config (``min_priority``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

PRIORITIES = ("critical", "high", "medium", "low")  # most urgent first
DEFAULT_PRIORITY = "medium"


@dataclass(frozen=True, slots=True)
class Cue:
    """A named pattern that sets a priority, and the words shown as the reason."""

    name: str
    priority: str
    pattern: re.Pattern[str]


def _cue(name: str, priority: str, *phrases: str) -> Cue:
    joined = "|".join(phrases)
    return Cue(name, priority, re.compile(rf"\b(?:{joined})\b", re.IGNORECASE))


# Order does not matter: the most urgent match wins, every match is a reason.
CUES: tuple[Cue, ...] = (
    _cue(
        "outage",
        "critical",
        r"outage",
        r"(?:is|are|went|goes|gone)\s+(?:completely\s+)?down",
        r"down\s+for\s+(?:everyone|everybody|all|the\s+whole)",
        r"production\s+(?:is\s+)?down",
        r"nobody\s+can\s+(?:work|log\s*in|connect|access)",
        r"no\s+one\s+can\s+(?:work|log\s*in|connect|access)",
        r"(?:entire|whole)\s+(?:company|site|building|organi[sz]ation)",
    ),
    _cue(
        "security incident",
        "critical",
        r"ransomware",
        r"data\s+(?:breach|leak)",
        r"(?:files|drive)s?\s+(?:are\s+|got\s+|have\s+been\s+)?encrypted",
        r"account\s+(?:was\s+|has\s+been\s+)?(?:compromised|hacked)",
        r"security\s+(?:incident|breach)",
    ),
    _cue(
        "many users affected",
        "high",
        r"(?:many|several|multiple|all)\s+(?:users|people|colleagues|staff|employees)",
        r"(?:whole|entire)\s+(?:office|team|floor|department)",
        r"everyone\s+(?:in|on|at)",
        r"(?:all|none)\s+of\s+us",
    ),
    _cue(
        "cannot work",
        "high",
        r"can(?:not|'t|\s+not)\s+work",
        r"unable\s+to\s+work",
        r"blocked\s+completely",
        r"completely\s+blocked",
        r"work\s+(?:has\s+)?stopped",
    ),
    _cue(
        "suspected attack",
        "high",
        r"phishing",
        r"malware",
        r"virus",
        r"clicked\s+(?:on\s+)?(?:a|the|this)\s+(?:link|attachment)",
        r"suspicious\s+(?:login|sign-?in|activity)",
    ),
    _cue(
        "urgent or deadline",
        "high",
        r"(?<!not\s)(?<!isn't\s)urgent(?:ly)?",
        r"asap",
        r"as\s+soon\s+as\s+possible",
        r"emergency",
        r"deadline",
        r"(?:by|before)\s+(?:end\s+of\s+(?:day|today)|eod|noon|tomorrow|today)",
        r"in\s+(?:an|one|two|\d+)\s+hours?",
        r"immediately",
    ),
    _cue(
        "no rush",
        "low",
        r"no\s+rush",
        r"not\s+urgent",
        r"whenever\s+(?:you\s+(?:have|get)\s+(?:a\s+)?(?:time|chance|moment)|convenient)",
        r"when\s+you\s+(?:have|get)\s+(?:a\s+)?(?:time|chance|moment)",
        r"low\s+priority",
        r"nice\s+to\s+have",
        r"just\s+(?:a\s+)?(?:quick\s+)?question",
        r"out\s+of\s+curiosity",
    ),
)


@dataclass(frozen=True, slots=True)
class PriorityResult:
    """The priority and why."""

    priority: str
    reasons: tuple[str, ...]


class PriorityRules:
    """Explicit cue rules plus VIP senders from config."""

    def __init__(self, vip_senders: Iterable[str] = (), cues: tuple[Cue, ...] = CUES) -> None:
        self.vip = {v.strip().lower() for v in vip_senders if v.strip()}
        self.vip_domains = {v[1:] for v in self.vip if v.startswith("@")}
        self.cues = cues

    def assess(self, subject: str, body: str, sender: str = "") -> PriorityResult:
        """Return the priority of a mail and the reasons (empty: the default)."""
        text = f"{subject}\n{body}"
        hits: list[tuple[str, str]] = []
        for cue in self.cues:
            found = cue.pattern.search(text)
            if found:
                words = " ".join(found.group(0).split())
                hits.append((cue.priority, f"{cue.name}: '{words}' -> {cue.priority}"))
        if self._is_vip(sender):
            hits.append(("high", f"VIP sender {sender.lower()} -> at least high"))
        if not hits:
            return PriorityResult(DEFAULT_PRIORITY, (f"no priority cue -> {DEFAULT_PRIORITY}",))
        urgent = [h for h in hits if h[0] != "low"]
        if urgent:  # any urgency cue overrides "no rush"
            best = min(urgent, key=lambda h: PRIORITIES.index(h[0]))[0]
            return PriorityResult(best, tuple(r for _, r in urgent))
        return PriorityResult("low", tuple(r for _, r in hits))

    def _is_vip(self, sender: str) -> bool:
        address = sender.strip().lower()
        if not address:
            return False
        return address in self.vip or address.rpartition("@")[2] in self.vip_domains
