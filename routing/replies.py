"""Approval replies: the new (unquoted) text of a reply, and the decision in it.

The grammar is CONTRACT.md's: the first word of the first non-empty line of the
new text decides, case-insensitive, punctuation ignored; with no new text, the
first word of the subject after ``Re:``-style prefixes and our tags. Anything
else is no decision.

Quote stripping reads the text top to bottom and stops at the first *boundary*
(see :data:`BOUNDARY_RULES`: order as data, each rule a small named predicate).
Two conservative choices, because a decision taken from quoted text (our own
request says "approve" and "reject") would be worse than no decision:

* a quoted header that is not followed by ``>`` lines (Outlook, Gmail's web
  client without quoting) ends the new text: everything below it is old mail;
* text below a ``>`` block counts only when nothing was written above it
  (bottom-posting, e.g. Thunderbird); a top-posted reply ends at its quote.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from routing.html_text import html_to_text

__all__ = [
    "APPROVE_WORDS",
    "BOUNDARY_RULES",
    "REJECT_WORDS",
    "BoundaryRule",
    "ReplyDecision",
    "extract_new_text",
    "parse_decision",
]

APPROVE_WORDS = frozenset({"approve", "approved"})
REJECT_WORDS = frozenset({"reject", "rejected", "deny", "denied", "decline", "declined"})

_MAX_HEADER_CHARS = 400  # attribution lines are short; long lines are never tested (ReDoS)

# --- attribution lines: "On <date>, <name> <addr> wrote:" and its translations ---
_OPENER = re.compile(
    r"^[\s>*_-]*(?:(?:on|am|den|op|le|el|il|em|dnia|w\s+dniu)\b|\d|[^\W\d_]{2,4}\.?,?\s+\d)",
    re.IGNORECASE,
)
_WROTE = re.compile(
    r"(?:wrote|writes|schrieb|skrev|schreef|napisał|napisała|napisal|pisze|написал|написала"
    r"|пишет|a\s+écrit|escribió|ha\s+scritto|escreveu|kirjoitti|napsal|yazd\u0131|書きました|写道)"
    r"\s*(?:\(\w{1,2}\))?\s*[:\uff1a]$",
    re.IGNORECASE,
)
_ADDRESS_COLON = re.compile(r"@[^\s<>@]{1,200}>\s*[:\uff1a]$")  # "... <bob@example.com>:"
_TIME_OR_AT = re.compile(r"@|\d{1,2}[:.]\d{2}")

# --- header blocks: "From: ... Sent: ... To: ... Subject:" in several languages ---
_FROM_KEYS = (
    "from|von|fra|van|od|från|de|da|di|от|差出人|发件人|寄件者|lähettäjä|afzender|"
    "expéditeur|remitente|mittente"
)
_OTHER_KEYS = (
    "sent|date|to|subject|cc|bcc|reply-to|gesendet|datum|an|betreff|sendt|til|emne|dato|"
    "verzonden|verstuurd|aan|onderwerp|wysłano|do|temat|dw|data|skickat|till|ämne|kopia|"
    "envoyé|objet|à|enviado|para|asunto|fecha|inviato|oggetto|a|отправлено|кому|тема|дата|"
    "送信日時|宛先|件名|日付|发送时间|收件人|主题|lähetetty|vastaanottaja|aihe"
)
_HEADER_LINE = re.compile(
    rf"^\s*[*_]{{0,2}}\s*(?:(?P<from>{_FROM_KEYS})|{_OTHER_KEYS})\s*[*_]{{0,2}}\s*[:\uff1a]",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(
    r"^\s*(?:[-=_*]{2,}\s*)?(?:original\s+message|forwarded\s+message|begin\s+forwarded\s+message"
    r"|ursprüngliche\s+nachricht|original-nachricht|weitergeleitete\s+nachricht"
    r"|oprindelig\s+meddelelse|ursprungligt\s+meddelande|opprinnelig\s+melding"
    r"|oorspronkelijk\s+bericht|doorgestuurd\s+bericht|wiadomość\s+oryginalna"
    r"|message\s+d'origine|mensaje\s+original|messaggio\s+originale|původní\s+zpráva"
    r"|исходное\s+сообщение|пересылаемое\s+сообщение)\s*:?\s*(?:[-=_*]{2,})?\s*$",
    re.IGNORECASE,
)
_RULE_LINE = re.compile(r"^\s*_{10,}\s*$")
_SIGNATURE_DELIMITER = re.compile(r"^(?:--|—|__) ?$")
_MOBILE_SIGNATURE = re.compile(
    r"^\s*(?:sent\s+from\s+my\s+[\w.-]+(?:\s+[\w.-]+){0,3}"
    r"|sent\s+from\s+(?:outlook|mail|yahoo\s+mail|samsung\s+mobile)\b.{0,60}"
    r"|sent\s+with\s+sparrow\b.{0,80}"
    r"|get\s+outlook\s+for\s+(?:ios|android)\b.{0,80}"
    r"|von\s+meinem\s+.{1,40}\s+gesendet"
    r"|envoyé\s+de\s+mon\s+.{1,40}"
    r"|verzonden\s+(?:vanaf|met)\s+(?:mijn\s+)?.{1,40}"
    r"|skickat\s+från\s+min\s+.{1,40}"
    r"|sendt\s+fra\s+min\s+.{1,40}"
    r"|enviado\s+desde\s+mi\s+.{1,40}"
    r"|inviato\s+da(?:l\s+mio)?\s+.{1,40}"
    r"|wysłane\s+z\s+.{1,40})\s*$",
    re.IGNORECASE,
)
_BANNER = re.compile(
    r"^\W{0,3}(?:caution|warning|attention|notice|external(?:\s+(?:email|sender|message))?)\b"
    r".{0,400}\b(?:outside|external)\b"
    r"|^\W{0,3}(?:external|ext)(?:\s+(?:email|sender|message))?\W{0,3}$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ReplyDecision:
    """What an approver's reply says: the decision, their comment, and where it was read."""

    decision: Literal["approve", "reject"] | None
    comment: str
    source: Literal["body", "subject", "none"]


@dataclass(frozen=True, slots=True)
class BoundaryRule:
    """A marker below which everything is old mail. ``matches(lines, i)``."""

    name: str
    description: str
    matches: Callable[[Sequence[str], int], bool]


def extract_new_text(text: str | None, html: str | None) -> str:
    """Return only the new (unquoted) text of a reply; prefers ``text``, else ``html``."""
    if text and text.strip():
        return _new_text(text)
    if html and html.strip():
        return _new_text(html_to_text(html))
    return ""


def parse_decision(new_text: str, subject: str) -> ReplyDecision:
    """Read the approver's decision from the new text, or from the subject if there is none."""
    alnum = _ALNUM.search(new_text)
    if alnum:
        # The first word: the whitespace-separated token holding the first letter or digit.
        start = max(new_text.rfind(c, 0, alnum.start()) for c in " \t\n\r\f\v") + 1
        end = _SPACE.search(new_text, alnum.start())
        stop = end.start() if end else len(new_text)
        decision = _decision_of(new_text[start:stop])
        if decision is None:
            return ReplyDecision(None, "", "none")
        return ReplyDecision(decision, _tidy_comment(new_text[stop:]), "body")
    words = _strip_subject_prefixes(subject).split(maxsplit=1)
    decision = _decision_of(words[0]) if words else None
    return ReplyDecision(decision, "", "subject" if decision else "none")


# --- the boundary rules, in the order they are tried ---------------------------------------


def _is_signature_delimiter(lines: Sequence[str], i: int) -> bool:
    return bool(_SIGNATURE_DELIMITER.match(lines[i]))


def _is_mobile_signature(lines: Sequence[str], i: int) -> bool:
    return len(lines[i]) <= 120 and bool(_MOBILE_SIGNATURE.match(lines[i]))


def _is_separator(lines: Sequence[str], i: int) -> bool:
    line = lines[i]
    return len(line) <= 120 and bool(_SEPARATOR.match(line) or _RULE_LINE.match(line))


def _is_header_block(lines: Sequence[str], i: int) -> bool:
    """A From/Sent/To/Subject block (any order, any of the languages) starts at line ``i``."""
    if not _HEADER_LINE.match(lines[i][:_MAX_HEADER_CHARS]):
        return False
    keys: set[str] = set()
    for line in lines[i : i + 8]:
        match = _HEADER_LINE.match(line[:_MAX_HEADER_CHARS])
        if not line.strip():
            break
        if match:
            keys.add("from" if match["from"] else match[0].strip(" *_:\uff1a").lower())
    return "from" in keys and len(keys) >= 2


BOUNDARY_RULES: tuple[BoundaryRule, ...] = (
    BoundaryRule("signature", 'a "-- " signature delimiter line', _is_signature_delimiter),
    BoundaryRule("mobile-signature", '"Sent from my iPhone" and the like', _is_mobile_signature),
    BoundaryRule("separator", '"-----Original Message-----", "____" rules', _is_separator),
    BoundaryRule("header-block", "a quoted From:/Sent:/To:/Subject: block", _is_header_block),
)


# --- the walk -------------------------------------------------------------------------------


def _new_text(text: str) -> str:
    lines = _drop_banner(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    kept: list[str] = []
    i = 0
    while i < len(lines):
        if _is_quoted(lines[i]):
            _drop_attribution(kept)
            if _has_content(kept):
                break  # top-posted: the quote ends the new text
            i = _after_quote(lines, i)
            continue
        span = _attribution_span(lines, i)
        if span:
            following = _next_nonblank(lines, i + span)
            if _has_content(kept) or following is None or not _is_quoted(lines[following]):
                break
            i = following
            continue
        if any(rule.matches(lines, i) for rule in BOUNDARY_RULES):
            break
        kept.append(lines[i])
        i += 1
    return _tidy(kept)


def _attribution_span(lines: Sequence[str], i: int) -> int:
    """How many lines (1-3) an "On ... wrote:" header starting at ``i`` spans, or 0."""
    first = lines[i]
    if len(first) > _MAX_HEADER_CHARS or not _OPENER.match(first):
        return 0
    window: list[str] = []
    for line in lines[i : i + 3]:
        if not line.strip() or len(line) > _MAX_HEADER_CHARS:
            return 0
        window.append(line.strip())
        joined = " ".join(window)
        if len(window) > 1 and not re.search(r"\d", first):
            return 0  # a wrapped header has its date on the first line
        if _WROTE.search(joined) and _TIME_OR_AT.search(joined):
            return len(window)
        if _ADDRESS_COLON.search(joined) and re.search(r"\d", joined):
            return len(window)
    return 0


def _drop_attribution(kept: list[str]) -> None:
    """Remove an unrecognised attribution line(s) ending in ':' just above a quote."""
    while kept and not kept[-1].strip():
        kept.pop()
    if not kept or not kept[-1].rstrip().endswith((":", "\uff1a")):
        return
    tail = kept[-2:] if len(kept) >= 2 and kept[-2].strip() else kept[-1:]
    joined = " ".join(line.strip() for line in tail)[:_MAX_HEADER_CHARS]
    if _TIME_OR_AT.search(joined) or _WROTE.search(joined):
        del kept[-len(tail) :]


def _drop_banner(lines: list[str]) -> list[str]:
    """Drop an "external sender" warning that a gateway put on top.

    The banner ends at a blank line or after a line ending a sentence (HTML bodies often
    have no blank line between the banner and the reply), at most 6 lines.
    """
    start = _next_nonblank(lines, 0)
    if start is None or not _BANNER.match(lines[start][:600]):
        return lines
    end = start + 1
    is_tag = len(lines[start].split()) <= 3  # "[EXTERNAL]" alone on its line
    while not is_tag and end < min(len(lines), start + 6) and lines[end].strip():
        if lines[end - 1].rstrip().endswith((".", "!")):
            break
        end += 1
    return lines[end:]


def _after_quote(lines: Sequence[str], i: int) -> int:
    while i < len(lines) and (_is_quoted(lines[i]) or not lines[i].strip()):
        i += 1
    return i


def _next_nonblank(lines: Sequence[str], i: int) -> int | None:
    return next((j for j in range(i, len(lines)) if lines[j].strip()), None)


def _is_quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _has_content(lines: Sequence[str]) -> bool:
    return any(line.strip() for line in lines)


def _tidy(lines: list[str]) -> str:
    """Trim trailing blanks and leftover separator lines ("-----", "____")."""
    lines = [line.replace("\xa0", " ").rstrip() for line in lines]
    while lines and not _has_word(lines[-1]):
        lines.pop()
    return "\n".join(lines).strip("\n")


# --- the grammar ----------------------------------------------------------------------------

_ALNUM = re.compile(r"[^\W_]")
_SPACE = re.compile(r"\s")
_SUBJECT_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|sv|vs|antw|antwort|odp|tr|ref|rif|res|fwd?|wg|fw)\s*(?:\[\d+\]|\(\d+\))?"
    r"\s*[:\uff1a]|\[(?:tkt|apr)-[^\]\s]{1,64}\]|\[ext(?:ernal)?\])",
    re.IGNORECASE,
)


def _strip_subject_prefixes(subject: str) -> str:
    rest = subject
    while match := _SUBJECT_PREFIX.match(rest):
        rest = rest[match.end() :]
    return rest.strip()


def _decision_of(word: str) -> Literal["approve", "reject"] | None:
    bare = "".join(ch for ch in word if not unicodedata.category(ch).startswith(("P", "S")))
    bare = bare.casefold()
    if bare in APPROVE_WORDS:
        return "approve"
    if bare in REJECT_WORDS:
        return "reject"
    return None


def _has_word(line: str) -> bool:
    return any(ch.isalnum() for ch in line)


def _tidy_comment(rest: str) -> str:
    """The approver's comment: the rest after the decision word, leading punctuation trimmed."""
    return rest.strip().lstrip("-\u2013\u2014:;,.!?)]*_ \t").strip()
