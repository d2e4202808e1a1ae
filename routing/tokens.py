"""Approval tokens and sender matching.

A token (``APR-`` + 16 base32 characters, 80 random bits) is sent in the request's
subject as ``[APR-...]`` and, where configured, in a plus-addressed Reply-To
(``support+APR-...@example.com``). Only :func:`hash_token` of it is stored; the
daemon binds the hash to (ticket, step, approver), an expiry and single use.

:func:`sender_matches` accepts only a From naming exactly one mailbox.
Python's ``email.utils.parseaddr`` before 3.11.10/3.12.6 (CVE-2023-27043) can
read ``"a@corp.com" <b@evil.com>``-style values as the wrong address, so the
From value is checked here by a strict parser of our own, and also by
``getaddresses(..., strict=True)`` where this Python has it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import re
import secrets
from email.utils import getaddresses

__all__ = [
    "find_token",
    "hash_token",
    "new_token",
    "sender_matches",
    "single_address",
    "token_matches",
    "tokens_equal",
]

_PREFIX = "APR-"
_RANDOM_BYTES = 10  # 80 bits: 16 base32 characters, no padding
_TOKEN = re.compile(r"(?<![A-Za-z0-9])APR-([A-Za-z2-7]{16})(?![A-Za-z0-9])", re.IGNORECASE)
_ADDR_SPEC = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_HAS_STRICT = "strict" in inspect.signature(getaddresses).parameters


def new_token() -> str:
    """A new random approval token, e.g. ``APR-K3Q7ZP2M4XW6N5TB``."""
    return _PREFIX + base64.b32encode(secrets.token_bytes(_RANDOM_BYTES)).decode("ascii")


def hash_token(token: str) -> str:
    """The SHA-256 hex digest of ``token`` (case-insensitive), the only form that is stored."""
    return hashlib.sha256(token.strip().upper().encode("utf-8")).hexdigest()


def find_token(subject: str, text: str = "") -> str | None:
    """The first ``APR-...`` token in ``subject``, else in ``text`` (body, To/Reply-To address).

    Returned upper-case; None if there is none.
    """
    for source in (subject, text):
        match = _TOKEN.search(source or "")
        if match:
            return _PREFIX + match[1].upper()
    return None


def tokens_equal(a: str, b: str) -> bool:
    """Compare two tokens or hashes in constant time."""
    return hmac.compare_digest(a.strip().upper().encode("utf-8"), b.strip().upper().encode("utf-8"))


def token_matches(token: str, stored_hash: str) -> bool:
    """True if ``token`` hashes to ``stored_hash`` (constant-time compare)."""
    return hmac.compare_digest(hash_token(token), stored_hash.strip().lower())


def sender_matches(from_header: str, approver: str) -> bool:
    """True if ``from_header`` names exactly one mailbox and its bare address is ``approver``.

    Case and the display name do not matter; anything ambiguous is refused.
    """
    address = single_address(from_header)
    return address is not None and address.lower() == approver.strip().lower()


def single_address(from_header: str) -> str | None:
    """The bare address of a From value that names exactly one mailbox, else None.

    Refused: more than one address, groups, unbalanced quotes, comments or angle
    brackets, text after ``<...>``, a quoted or otherwise unusual address, and an
    ``@`` in the display name (or a comment) unless it is the address itself.
    """
    value = re.sub(r"\r?\n[ \t]", " ", from_header or "")
    if any(ch in value for ch in "\r\n\0"):
        return None
    split = _split_mailbox(value)
    if split is None:
        return None
    display, comments, address = split
    if not _ADDR_SPEC.fullmatch(address) or "@" in comments:
        return None
    if "@" in display and display.strip().lower() != address.lower():
        return None
    if _HAS_STRICT and not _stdlib_agrees(value, address):
        return None
    return address


def _split_mailbox(value: str) -> tuple[str, str, str] | None:
    """Split into (display name, comments, address); None when the syntax is not strict."""
    tokens = _tokens(value)
    if tokens is None:
        return None
    comments = "".join(text for kind, text in tokens if kind == "comment")
    angles = [n for n, (kind, _text) in enumerate(tokens) if kind == "angle"]
    if len(angles) > 1:
        return None
    if angles:
        at = angles[0]
        if any(kind != "comment" and not text.isspace() for kind, text in tokens[at + 1 :]):
            return None  # nothing but comments may follow "<...>"
        display = "".join(text for kind, text in tokens[:at] if kind != "comment")
        return display, comments, tokens[at][1]
    bare = "".join(text for kind, text in tokens if kind == "text").strip()
    if any(kind == "quoted" for kind, _text in tokens) or any(c.isspace() for c in bare):
        return None  # a bare address is one dot-atom: no quoted local part, no name
    return "", comments, bare


def _tokens(value: str) -> list[tuple[str, str]] | None:
    """Quoted strings, comments, ``<...>`` and single characters; None if unbalanced."""
    tokens: list[tuple[str, str]] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch in ">,;:\\[]":
            return None  # several addresses, groups, source routes, stray brackets
        if ch not in '"(<':
            tokens.append(("text", ch))
            i += 1
            continue
        if ch == '"':
            kind, end = "quoted", _end_of_quoted(value, i)
        elif ch == "(":
            kind, end = "comment", _end_of_comment(value, i)
        else:
            kind, end = "angle", value.find(">", i)
        if end is None or end < 0:
            return None
        tokens.append((kind, value[i + 1 : end]))
        i = end + 1
    return tokens


def _end_of_quoted(value: str, start: int) -> int | None:
    i = start + 1
    while i < len(value):
        if value[i] == "\\":
            i += 2
            continue
        if value[i] == '"':
            return i
        i += 1
    return None


def _end_of_comment(value: str, start: int) -> int | None:
    depth, i = 0, start
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            i += 2
            continue
        depth += (ch == "(") - (ch == ")")
        if depth == 0:
            return i
        i += 1
    return None


def _stdlib_agrees(value: str, address: str) -> bool:
    """Cross-check with the fixed stdlib parser (Python >= 3.11.10 / 3.12.6)."""
    pairs = getaddresses([value], strict=True)  # type: ignore[call-arg]
    return len(pairs) == 1 and pairs[0][1].lower() == address.lower()
