"""Presentation helpers for the status page: pure functions, no Flask, no database.

Everything here returns plain strings or tuples; the templates escape them
(autoescape is on), so untrusted mail text is never marked safe.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from email.header import decode_header, make_header
from typing import Any

#: Headers summarised at the top of a quarantined mail, in this order.
SUMMARY_HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")


def when(value: datetime | str | None) -> str:
    """Format a naive-UTC datetime (or contract ISO string) as ``YYYY-MM-DD HH:MM``."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.removesuffix("Z"))
        except ValueError:
            return value
    return value.strftime("%Y-%m-%d %H:%M")


def duration(seconds: float | None) -> str:
    """Format a number of seconds as a short human duration (``3 min``, ``2 h 5 min``)."""
    if seconds is None:
        return "—"
    s = int(abs(seconds))
    if s < 60:
        text = f"{s} s"
    elif s < 3600:
        text = f"{s // 60} min"
    elif s < 86400:
        text = f"{s // 3600} h {s % 3600 // 60} min"
    else:
        text = f"{s // 86400} d {s % 86400 // 3600} h"
    return f"-{text}" if seconds < 0 else text


def detail_items(details: Any) -> list[tuple[str, str]]:
    """Flatten an event's ``details`` into (key, text) pairs for display."""
    if not isinstance(details, dict):
        return [] if details in (None, "") else [("", _as_text(details))]
    return [(str(k), _as_text(v)) for k, v in details.items()]


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


@dataclass(frozen=True)
class DiffSegment:
    """A run of text that is unchanged (``equal``), removed or inserted."""

    op: str
    text: str


def word_diff(original: str, corrected: str) -> list[DiffSegment]:
    """Return the word-level difference from ``original`` to ``corrected``."""
    a, b = _TOKENS.findall(original or ""), _TOKENS.findall(corrected or "")
    segments: list[DiffSegment] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            segments.append(DiffSegment("equal", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            segments.append(DiffSegment("removed", "".join(a[i1:i2])))
        if j2 > j1:
            segments.append(DiffSegment("inserted", "".join(b[j1:j2])))
    return segments


@dataclass(frozen=True)
class MailPreview:
    """A quarantined mail cut for display: decoded summary, raw header block, body start."""

    summary: list[tuple[str, str]]
    headers: str
    body: str
    truncated: bool


def preview_mail(raw_head: bytes, total_size: int, max_body_chars: int = 20000) -> MailPreview:
    """Split the start of a raw mail into a header summary, the header block and the body.

    Works on the first bytes of the mail only and never raises on broken
    mail: undecodable bytes are replaced, unparsable headers shown as-is.
    """
    match = _HEADER_END.search(raw_head)
    header_bytes = raw_head[: match.start()] if match else raw_head
    body_bytes = raw_head[match.end() :] if match else b""
    headers = header_bytes.decode("utf-8", errors="replace")
    body = body_bytes.decode("utf-8", errors="replace")
    truncated = len(raw_head) < total_size or len(body) > max_body_chars
    return MailPreview(_summary(headers), headers, body[:max_body_chars], truncated)


def _summary(header_block: str) -> list[tuple[str, str]]:
    unfolded = re.sub(r"\r?\n[ \t]+", " ", header_block)
    found: dict[str, str] = {}
    for line in unfolded.splitlines():
        name, sep, value = line.partition(":")
        key = name.strip().lower()
        if sep and key not in found:
            found[key] = value.strip()
    return [(h, _decode(found[h.lower()])) for h in SUMMARY_HEADERS if h.lower() in found]


def _decode(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value
