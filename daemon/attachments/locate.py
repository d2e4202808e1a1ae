"""Where the attachments are in a raw mail: header and body byte ranges, nothing decoded.

The stdlib parser would hold a 23 MB mail several times over; this walks the
MIME structure by its boundary lines instead (as ``daemon.parse.skeleton``
does) and reads only each part's header block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from daemon.parse import MAX_HEAD, Limits, part_spans

_BLANK_LINE = re.compile(rb"\n\r?\n")


@dataclass(frozen=True, slots=True)
class Part:
    """One attachment: its headers (parsed) and where its body is in the raw mail."""

    head: Message
    start: int
    end: int

    @property
    def encoding(self) -> str:
        """The Content-Transfer-Encoding, lower case ('' when absent)."""
        return str(self.head.get("Content-Transfer-Encoding", "")).strip().lower()


def locate(raw: bytes, limits: Limits | None = None) -> list[Part]:
    """The attachments of ``raw``, in order; attached messages count as one file each."""
    found: list[Part] = []
    _walk(raw, 0, len(raw), 0, limits or Limits(), found)
    return found


def _split(raw: bytes, start: int, end: int) -> tuple[Message, int] | None:
    """The parsed header block of the entity at ``start`` and where its body begins."""
    if raw.startswith((b"\n", b"\r\n"), start):
        head_end = body = start + (1 if raw[start] == 0x0A else 2)
    else:
        found = _BLANK_LINE.search(raw, start, min(end, start + MAX_HEAD))
        if found is None:
            return None
        head_end, body = found.start() + 1, found.end()
    return BytesHeaderParser(policy=compat32).parsebytes(raw[start:head_end]), body


def _walk(raw: bytes, start: int, end: int, depth: int, limits: Limits, found: list) -> None:
    split = _split(raw, start, end) if depth <= limits.max_depth else None
    if split is None or len(found) > limits.max_parts:
        return
    head, body = split
    if head.get_content_maintype() == "multipart":
        for part_start, part_end in part_spans(raw, head, body, end, limits):
            _walk(raw, part_start, part_end, depth + 1, limits, found)
    elif depth > 0 and is_attachment(head):
        found.append(Part(head, body, _trim_eol(raw, body, end)))


def is_attachment(head: Message) -> bool:
    """A file the sender attached, not the text of the mail.

    Named parts and ``attachment`` dispositions are files; an inline text or
    HTML part without a name is the message itself, and an inline image without
    a name is part of the HTML (a logo): neither is listed.
    """
    disposition = head.get_content_disposition()
    named = bool(head.get_param("filename", header="content-disposition") or head.get_param("name"))
    if disposition == "attachment":
        return True
    if head.get_content_maintype() == "message":
        return named  # reports and forwarded mail are read by the guards, not listed
    return named


def _trim_eol(raw: bytes, start: int, end: int) -> int:
    """``end`` without the line break that belongs to the next boundary line (RFC 2046)."""
    if end - start >= 2 and raw[end - 2 : end] == b"\r\n":
        return end - 2
    if end > start and raw[end - 1] == 0x0A:
        return end - 1
    return end
