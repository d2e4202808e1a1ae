"""Strict e-mail address handling for decisions made on who sent a mail.

Python 3.11's ``email.utils.parseaddr``/``getaddresses`` can be fooled into
returning a different address than a mail client shows (CVE-2023-27043), so a
From header is trusted only when it is *one* plainly formed address, and only
its bare address is compared.
"""

from __future__ import annotations

import re
from email.utils import getaddresses

_ADDR_SPEC = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def single_address(header: str | None) -> str | None:
    """Return the lower-cased bare address of a single-address header, else None.

    None means: empty, several addresses, or a shape that parsers disagree on
    (stray ``@``/``<``/``,`` in the display name, unbalanced quotes or brackets).
    """
    if not header or _CONTROL.search(header):
        return None
    value = header.strip()
    if value.count("<") != value.count(">") or value.count('"') % 2:
        return None
    pairs = getaddresses([value])
    if len(pairs) != 1:
        return None
    _name, addr = pairs[0]
    if not _ADDR_SPEC.match(addr or ""):
        return None
    display = _display_part(value)
    if display is not None and ("@" in display or "," in display or "<" in display):
        return None
    if display is None and value.strip("<> ") != addr:
        return None
    return addr.lower()


def _display_part(value: str) -> str | None:
    """Return what stands before ``<addr>`` (unquoted), or None without brackets."""
    if "<" not in value:
        return None
    head = value.rsplit("<", 1)[0].strip()
    if head.startswith('"') and head.endswith('"'):
        head = head[1:-1]
    return head


def same_address(a: str | None, b: str | None) -> bool:
    """True when two bare addresses are equal, ignoring case."""
    return bool(a) and bool(b) and a.strip().lower() == b.strip().lower()
