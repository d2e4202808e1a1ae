"""What the daemon sends must be clean, whatever it received.

:func:`problems` reads raw outgoing messages and lists every way one breaks the
contract of ``daemon.notify.Composer``: a header name the Composer never sets
(an injected ``Bcc:``), a header that still holds CR or LF once unfolded, a
message the stdlib cannot parse, a recipient that must never be written to, or
a part declared 7bit that carries NUL, control or 8-bit bytes (known defect 7).
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterable
from email.message import Message
from pathlib import Path

# Exactly the headers Composer.compose sets, and MIME headers set_content adds.
ALLOWED_HEADERS = frozenset(
    h.lower()
    for h in (
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "In-Reply-To",
        "References",
        "Auto-Submitted",
        "X-Auto-Response-Suppress",
        "Precedence",
        "X-Mailtriage-Loop",
        "X-Mailtriage-Ticket",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Reply-To",
    )
)
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
_FIELD = re.compile(rb"^([!-9;-~]+):(.*)$", re.DOTALL)
# In a 7bit part only printable ASCII, TAB, CR and LF may appear (RFC 2045 section 2.7).
_NOT_7BIT = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\xff]")


def sent_files(site: Path) -> list[Path]:
    """The raw files the maildir transport wrote for ``site``."""
    folder = site / "var/mail/sent/new"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _header_block(raw: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        if sep in raw:
            return raw.split(sep, 1)[0]
    return raw


def header_problems(raw: bytes, label: str = "") -> list[str]:
    """Header names outside the Composer's set, CR/LF left after unfolding, bad field lines."""
    found = []
    unfolded = _FOLD.sub(b"", _header_block(raw))
    for line in unfolded.split(b"\r\n"):
        field = _FIELD.match(line)
        if field is None:
            found.append(f"{label}: not a header field line: {line[:120]!r}")
            continue
        name, value = field.group(1).decode("ascii").lower(), field.group(2)
        if name not in ALLOWED_HEADERS:
            found.append(f"{label}: header {name!r} is not one the Composer sets")
        if b"\r" in value or b"\n" in value:
            found.append(f"{label}: header {name!r} holds CR/LF after unfolding: {value[:120]!r}")
    return found


def _decoded_problems(msg: Message, label: str) -> list[str]:
    """Decoded header values (encoded words undone) must not hold CR, LF or NUL either."""
    found = []
    for name, value in msg.items():
        text = str(value)
        if any(ch in text for ch in "\r\n\x00"):
            found.append(f"{label}: decoded {name} holds CR/LF/NUL: {text[:120]!r}")
    return found


def seven_bit_problems(msg: Message, label: str) -> list[str]:
    """Parts declared (or defaulting to) 7bit that carry NUL, control or 8-bit bytes."""
    found = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        if cte != "7bit":
            continue
        payload = part.get_payload(decode=False)
        data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
        bad = _NOT_7BIT.search(data)
        if bad:
            start = max(bad.start() - 20, 0)
            found.append(
                f"{label}: {part.get_content_type()} part declared 7bit holds "
                f"{bad.group()!r}: ...{data[start : bad.end() + 20]!r}..."
            )
    return found


def recipient_problems(msg: Message, never_to: Iterable[str], label: str) -> list[str]:
    """Recipients that must never get mail (an ambiguous From, an injected Bcc target)."""
    to = ",".join(str(v) for v in msg.get_all("To", [])).lower()
    return [f"{label}: mail sent to {addr}" for addr in never_to if addr.lower() in to]


def problems(raws: Iterable[tuple[str, bytes]], never_to: Iterable[str] = ()) -> list[str]:
    """Every contract problem of the outgoing messages ``(label, raw bytes)``."""
    never = tuple(never_to)
    found: list[str] = []
    for label, raw in raws:
        found += header_problems(raw, label)
        try:
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            found += _decoded_problems(msg, label)
        except Exception as exc:  # the point is to report it, whatever it is
            found.append(f"{label}: does not parse: {exc!r}")
            continue
        found += seven_bit_problems(msg, label)
        found += recipient_problems(msg, never, label)
    return found


def site_problems(site: Path, never_to: Iterable[str] = ()) -> list[str]:
    """:func:`problems` for everything the site's maildir transport wrote."""
    return problems(((p.name, p.read_bytes()) for p in sent_files(site)), never_to)


def assert_clean(found: list[str]) -> None:
    """Fail listing every problem (not only the first)."""
    assert not found, f"{len(found)} problem(s) in outgoing mail:\n" + "\n".join(found[:50])
