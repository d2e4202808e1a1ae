"""Outgoing messages written straight to bytes: text + HTML alternative, 7-bit clean.

``email.message.EmailMessage`` costs about 4 ms a message, half of it in
``email.policy.default``'s header registry parsing every header we set and
folding it again. Our messages are always the same shape, so they are written
directly: headers as lines, one ``multipart/alternative`` with a text and an
HTML part, each 7bit when it is ASCII with short lines and quoted-printable
otherwise, CRLF line ends. A header value that is not plain ASCII is written as
RFC 2047 encoded words by ``email.header.Header``.

The guarantees of the old path stay: no header value may hold CR, LF or NUL
(they are refused here, after ``sanitize_header`` removed them upstream), every
line is at most 998 octets, and the result parses back to the same headers and
text. Messages with attachments still go through ``EmailMessage``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from email import quoprimime
from email.header import Header

from config.errors import MailError

CRLF = "\r\n"
MAX_LINE = 998
_FORBIDDEN = ("\r", "\n", "\x00")


class HeaderInjection(MailError):
    """A header value taken from a mail holds CR, LF or NUL: refused, never written.

    ``sanitize_header`` removes them upstream; meeting one here means a path
    forgot to, and the mail that carried it fails (and is quarantined) instead.
    """


def header_line(name: str, value: str) -> str:
    """``Name: value`` as one (possibly folded) header; encoded words when not ASCII."""
    if any(c in value for c in _FORBIDDEN):
        raise HeaderInjection(f"{name} header value holds a line break or NUL")
    line = f"{name}: {value}"
    if value.isascii() and len(line) <= MAX_LINE:
        return line
    charset = "us-ascii" if value.isascii() else "utf-8"
    encoded = Header(value, charset, maxlinelen=MAX_LINE, header_name=name)
    return f"{name}: {encoded.encode(linesep=CRLF, maxlinelen=MAX_LINE)}"


def text_part(subtype: str, text: str) -> str:
    """One ``text/<subtype>`` part, 7bit when possible, else quoted-printable."""
    lines = text.splitlines()
    if text.isascii() and all(len(line) <= MAX_LINE for line in lines):
        cte, body = "7bit", CRLF.join(lines)
    else:
        latin = text.encode("utf-8", "replace").decode("latin-1")
        cte, body = "quoted-printable", quoprimime.body_encode(latin, eol=CRLF)
    head = f'Content-Type: text/{subtype}; charset="utf-8"{CRLF}Content-Transfer-Encoding: {cte}'
    return f"{head}{CRLF}{CRLF}{body}{CRLF}"


def alternative(headers: Sequence[tuple[str, str]], text: str, html: str) -> bytes:
    """A complete message: ``headers`` then a text/plain + text/html alternative."""
    parts = [text_part("plain", text), text_part("html", html)]
    boundary = _boundary(parts)
    lines = [header_line(name, value) for name, value in headers]
    lines += ["MIME-Version: 1.0", f'Content-Type: multipart/alternative; boundary="{boundary}"']
    body = "".join(f"--{boundary}{CRLF}{part}" for part in parts)
    return f"{CRLF.join(lines)}{CRLF}{CRLF}{body}--{boundary}--{CRLF}".encode("ascii")


def _boundary(parts: list[str]) -> str:
    while True:
        boundary = "=_mt_" + secrets.token_hex(12)
        if not any(boundary in part for part in parts):
            return boundary
