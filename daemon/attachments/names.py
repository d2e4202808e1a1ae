"""Attachment names a person can read and no program can misuse, and dangerous types.

A name comes from the sender: RFC 2231 and RFC 2047 encodings are decoded, path
components, control and bidirectional-override characters are removed, and the
result is never used as a file path (bytes are stored by SHA-256).
"""

from __future__ import annotations

import mimetypes
import re
from email.message import Message
from pathlib import PurePosixPath

from daemon.parse import decode_value

MAX_NAME = 200
# Control characters, Windows-reserved characters and the bidi controls that make
# "invoice\u202efdp.exe" read as "invoiceexe.pdf".
_UNSAFE = re.compile('[\x00-\x1f\x7f<>:"|?*\u200e\u200f\u202a-\u202e\u2066-\u2069]')
_SPACES = re.compile(r"\s+")
# Types that run code on the reader's machine whatever the name says.
DANGEROUS_TYPES = frozenset(
    {
        "application/x-msdownload",
        "application/x-msdos-program",
        "application/x-ms-installer",
        "application/x-msi",
        "application/java-archive",
        "application/javascript",
        "application/x-javascript",
        "text/javascript",
        "application/hta",
        "application/x-sh",
        "text/html",
    }
)


def raw_name(head: Message) -> str:
    """The name the sender gave (RFC 2231 parameters, RFC 2047 words decoded), '' if none."""
    try:
        name = head.get_filename() or head.get_param("name") or ""
    except (ValueError, LookupError):  # an RFC 2231 charset name like "x\0"
        name = head.get_param("filename", "", header="content-disposition") or ""
    if isinstance(name, tuple):  # an RFC 2231 name= parameter the stdlib left encoded
        name = name[2]
    return decode_value(str(name))


def safe_name(name: str, content_type: str, index: int) -> str:
    """``name`` reduced to a plain file name; ``attachment-N.ext`` when nothing is left."""
    base = re.split(r"[\\/]", name)[-1]  # path components: "../../etc/passwd" -> "passwd"
    base = _SPACES.sub(" ", _UNSAFE.sub("", base)).strip().strip(".").strip()
    if not base:
        base = f"attachment-{index}{mimetypes.guess_extension(content_type) or '.bin'}"
    return _shorten(base)


def _shorten(name: str) -> str:
    """At most :data:`MAX_NAME` characters, keeping the extension (it decides danger)."""
    if len(name) <= MAX_NAME:
        return name
    suffix = PurePosixPath(name).suffix[:20]
    return name[: MAX_NAME - len(suffix)] + suffix


def is_dangerous(name: str, content_type: str, extensions: list[str]) -> bool:
    """True for a name ending in a listed extension or a type that runs code when opened."""
    lower = name.lower().rstrip(". ")
    listed = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    return lower.endswith(listed) or content_type.lower() in DANGEROUS_TYPES
