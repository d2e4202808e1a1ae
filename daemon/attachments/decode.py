"""Decode one attachment's body range in pieces: never a whole decoded copy in memory."""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator

# Encoded bytes read at once: small pieces (as daemon.store.raw feeds zlib) keep the
# transient copies of a 23 MB attachment to a few hundred KiB (tests/e2e/test_memory.py).
PIECE = 256 * 1024
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")


def pieces(raw: bytes, start: int, end: int, encoding: str) -> Iterator[bytes]:
    """The decoded bytes of ``raw[start:end]`` in pieces of about :data:`PIECE`."""
    if encoding == "base64":
        return _base64(raw, start, end)
    if encoding == "quoted-printable":
        return _quoted_printable(raw, start, end)
    return _plain(raw, start, end)  # 7bit, 8bit, binary, or an encoding we do not know


def _plain(raw: bytes, start: int, end: int) -> Iterator[bytes]:
    view = memoryview(raw)
    for at in range(start, end, PIECE):
        yield bytes(view[at : min(at + PIECE, end)])


def _base64(raw: bytes, start: int, end: int) -> Iterator[bytes]:
    """Base64 across piece edges: a group of four is never split between two decodes."""
    carry = b""
    for at in range(start, end, PIECE):
        data = _NOT_BASE64.sub(b"", raw[at : min(at + PIECE, end)])
        data = carry + data if carry else data
        cut = len(data) - len(data) % 4
        carry = data[cut:]
        if cut:
            yield _a2b(data[:cut])
    if carry:  # a truncated tail: decode what it holds, as mail clients do
        yield _a2b(carry + b"=" * (-len(carry) % 4))


def _a2b(data: bytes) -> bytes:
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:  # padding in the middle or a lone sextet: the rest is noise
        return b""


def _quoted_printable(raw: bytes, start: int, end: int) -> Iterator[bytes]:
    """Quoted-printable cut at line ends, so a soft break ``=\\r\\n`` stays whole."""
    at = start
    while at < end:
        stop = min(at + PIECE, end)
        if stop < end:
            line_end = raw.rfind(b"\n", at, stop)
            stop = line_end + 1 if line_end >= at else stop
        yield binascii.a2b_qp(raw[at:stop])
        at = stop
