"""Raw bytes -> :class:`InboundMessage`: the one module that knows mail-parser.

The raw bytes are never modified (the ledger keeps them); everything taken
from headers is decoded and stripped of CR/LF and control characters, so no
value built from mail text can inject a header into mail we send.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses

import mailparser

from routing.html_text import html_to_text
from routing.tokens import single_address

log = logging.getLogger(__name__)
# mail-parser logs a warning for every multipart it does not flatten; that is noise here.
logging.getLogger("mailparser").setLevel(logging.ERROR)

_MSGID = re.compile(r"<[^<>\s]+>")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]+")
_SPACES = re.compile(r"[ \t]{2,}")


class UnparseableMail(Exception):
    """The mail is too large, too deeply nested or not a mail at all: quarantine it."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that protect the parser from hostile mail."""

    max_bytes: int = 25 * 1024 * 1024
    max_parts: int = 200
    max_depth: int = 10


@dataclass(frozen=True)
class InboundMessage:
    """What the pipeline needs from one inbound mail."""

    message_id: str
    subject: str
    from_header: str
    sender: str | None  # bare address of a single-address From, else None
    sender_header: str | None  # bare address of Sender:, when present
    to: tuple[str, ...]
    cc: tuple[str, ...]
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    text: str
    html: str
    headers: dict[str, tuple[str, ...]]  # lower-case name -> decoded, sanitised values
    attachments: tuple[str, ...] = ()
    defects: tuple[str, ...] = ()
    content_type: str = "text/plain"
    size: int = 0
    report_type: str = ""

    def header(self, name: str) -> str:
        """Return the first value of header ``name`` ('' when absent)."""
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    def has_header(self, name: str) -> bool:
        """True when header ``name`` is present."""
        return name.lower() in self.headers

    @property
    def body(self) -> str:
        """The plain text, or the HTML converted to text when there is no plain part."""
        return self.text or html_to_text(self.html)


def sanitize_header(value: str, limit: int = 998) -> str:
    """Make ``value`` safe to put in a header we send: one line, no control characters."""
    return _SPACES.sub(" ", _CONTROL.sub(" ", value)).strip()[:limit]


def decode_value(raw: str | None) -> str:
    """Decode RFC 2047 encoded words; never raises."""
    if not raw:
        return ""
    try:
        return str(make_header(decode_header(str(raw))))
    except (ValueError, LookupError, UnicodeError):
        return str(raw)


def message_ids(value: str) -> tuple[str, ...]:
    """Return the ``<...>`` message ids found in a header value, in order."""
    return tuple(_MSGID.findall(value or ""))


def _walk_limits(msg: Message, limits: Limits) -> None:
    parts = 0
    stack = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        parts += 1
        if depth > limits.max_depth:
            raise UnparseableMail(f"MIME nesting deeper than {limits.max_depth}")
        if parts > limits.max_parts:
            raise UnparseableMail(f"more than {limits.max_parts} MIME parts")
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend((p, depth + 1) for p in payload if isinstance(p, Message))


def _headers(msg: Message) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for name, value in msg.items():
        out.setdefault(name.lower(), []).append(sanitize_header(decode_value(value), 4000))
    return {k: tuple(v) for k, v in out.items()}


def _addresses(msg: Message, name: str) -> tuple[str, ...]:
    values = [str(v) for v in msg.get_all(name, [])]
    return tuple(a.lower() for _, a in getaddresses(values) if "@" in a)


def _bare(header: str) -> str | None:
    """Lower-cased bare address of a single-address header, else None."""
    addr = single_address(header)
    return addr.lower() if addr else None


def parse_message(raw: bytes, limits: Limits | None = None) -> InboundMessage:
    """Parse ``raw`` into an :class:`InboundMessage` or raise :class:`UnparseableMail`."""
    limits = limits or Limits()
    if len(raw) > limits.max_bytes:
        raise UnparseableMail(f"message of {len(raw)} bytes exceeds {limits.max_bytes}")
    if not raw.strip():
        raise UnparseableMail("empty message")
    try:
        mp = mailparser.parse_from_bytes(raw)
    except Exception as exc:  # mail-parser raises many types on garbage input
        raise UnparseableMail(f"cannot parse MIME: {exc}") from exc
    msg: Message = mp.message
    if not msg.keys():
        raise UnparseableMail("no headers: not an RFC 5322 message")
    _walk_limits(msg, limits)
    headers = _headers(msg)
    raw_from = str(msg.get("From", "") or "")
    raw_sender = msg.get("Sender")
    return InboundMessage(
        message_id=(message_ids(str(msg.get("Message-ID", ""))) or ("",))[0],
        subject=sanitize_header(decode_value(msg.get("Subject"))),
        from_header=sanitize_header(decode_value(raw_from)),
        sender=_bare(raw_from),
        sender_header=_bare(str(raw_sender)) if raw_sender else None,
        to=_addresses(msg, "To"),
        cc=_addresses(msg, "Cc"),
        in_reply_to=message_ids(str(msg.get("In-Reply-To", ""))),
        references=message_ids(" ".join(str(v) for v in msg.get_all("References", []))),
        text="\n".join(mp.text_plain).strip(),
        html="\n".join(mp.text_html).strip(),
        headers=headers,
        attachments=tuple(str(a.get("filename") or "") for a in mp.attachments),
        defects=tuple(str(d) for d in (mp.defects_categories or ())),
        content_type=msg.get_content_type(),
        size=len(raw),
        report_type=(msg.get_param("report-type") or "")
        if msg.get_content_maintype() == "multipart"
        else "",
    )
