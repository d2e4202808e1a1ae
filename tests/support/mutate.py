"""Mutations of real mails for fuzzing, shared by ``tests/robustness/test_fuzz.py`` and
``bench/fuzz.py``.

Every mutation is a function ``(raw, rng, corpus) -> bytes`` drawing its choices from
``rng`` (a ``random.Random``: seeded in the bench, driven by Hypothesis in the tests,
so a failure shrinks and replays). :func:`mutate` stacks a few of them.

The mutations are what breaks mail readers in practice: headers dropped,
duplicated or reordered; encoded words with odd charsets and raw bytes in the
header positions readers decode; truncation; corrupted MIME boundaries and
transfer encodings; flipped bytes; bodies spliced between mails; and mails
nested as message/rfc822.
"""

from __future__ import annotations

import base64
import os
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EMAILS = REPO / "tests" / "data" / "emails"  # as tests/conftest.py names it (bench/ imports this)
# Charsets an encoded word may claim: real ones, unknown ones and poisoned ones.
CHARSETS = (
    "utf-8",
    "iso-8859-1",
    "windows-1252",
    "iso-2022-jp",
    "gb2312",
    "utf-16",
    "utf-7",
    "x-unknown",
    "",
    "x\x00",  # known defect 2
    "utf-8\r\n",
    "utf-8*en",
    "\xff",
)
# Header positions mail readers decode; encoded words go here more often than elsewhere.
DECODED_HEADERS = (
    b"Subject",
    b"From",
    b"To",
    b"Cc",
    b"Sender",
    b"Reply-To",
    b"Message-ID",
    b"In-Reply-To",
    b"References",
    b"Content-Type",
    b"Content-Disposition",
)
NASTY_BYTES = b"\x00\r\n\x1b\x7f\xff\x80\t \"'<>()@,;:\\=?"

Mutation = Callable[[bytes, random.Random, Sequence[bytes]], bytes]


# --- locating the fixture corpus ------------------------------------------------------


def fixtures_root() -> Path:
    """The e-mail fixture folder in the repository (``$MAILTRIAGE_EMAILS`` overrides it)."""
    return Path(os.environ.get("MAILTRIAGE_EMAILS") or EMAILS)


_HEADER_LINE = re.compile(rb"^[!-9;-~]+:[ \t]", re.MULTILINE)


def is_mail(path: Path) -> bool:
    """True when the file starts like an RFC 5322 message (the corpora also hold bare
    reply bodies and HTML snippets: no headers, nothing for header mutations to do)."""
    return _HEADER_LINE.match(path.read_bytes()[:1000]) is not None


def pick_fixtures(root: Path, per_corpus: int = 7, max_bytes: int = 48 * 1024) -> list[Path]:
    """A few varied real mails from each corpus: evenly spread over its sorted files.

    Spreading (not the first N) takes different MTAs and clients from a corpus;
    the size cap keeps a fuzz example fast.
    """
    picked: list[Path] = []
    for corpus in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(
            p
            for p in (corpus / "files").rglob("*")
            if p.is_file() and p.stat().st_size <= max_bytes and is_mail(p)
        )
        if not files:
            continue
        step = max(1, len(files) // per_corpus)
        picked += files[::step][:per_corpus]
    return picked


def load_corpus(per_corpus: int = 7) -> list[bytes]:
    """The picked fixture mails' bytes."""
    return [p.read_bytes() for p in pick_fixtures(fixtures_root(), per_corpus)]


# --- headers as byte fields -------------------------------------------------------------


def split_mail(raw: bytes) -> tuple[list[bytes], bytes, bytes]:
    """(header fields with their continuation lines, line end, body)."""
    eol = b"\r\n" if b"\r\n" in raw[:2000] else b"\n"
    head, sep, body = raw.partition(eol + eol)
    if not sep:
        head, body = raw, b""
    fields: list[bytes] = []
    for line in head.split(eol):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += eol + line
        else:
            fields.append(line)
    return fields, eol, body


def join_mail(fields: list[bytes], eol: bytes, body: bytes) -> bytes:
    """Inverse of :func:`split_mail`."""
    return eol.join(fields) + eol + eol + body


def _field_name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].strip().lower()


def _pick_field(fields: list[bytes], rng: random.Random, prefer: Sequence[bytes] = ()) -> int:
    """Index of a field, a preferred (decoded) header two times out of three when present."""
    wanted = {p.lower() for p in prefer}
    preferred = [i for i, f in enumerate(fields) if _field_name(f) in wanted]
    if preferred and rng.random() < 0.67:
        return rng.choice(preferred)
    return rng.randrange(len(fields))


# --- the mutations ----------------------------------------------------------------------


def drop_header(raw: bytes, rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    """Remove one header field (Message-ID, From, Content-Type ... included)."""
    fields, eol, body = split_mail(raw)
    if len(fields) > 1:
        del fields[_pick_field(fields, rng, DECODED_HEADERS)]
    return join_mail(fields, eol, body)


def duplicate_header(raw: bytes, rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    """Repeat a header field, the copy sometimes with another value (two From headers)."""
    fields, eol, body = split_mail(raw)
    i = _pick_field(fields, rng, DECODED_HEADERS)
    copy = fields[i]
    if rng.random() < 0.5 and b":" in copy:
        copy = (
            copy.split(b":", 1)[0] + b": other-" + str(rng.randrange(999)).encode() + b"@x.example"
        )
    fields.insert(rng.randrange(len(fields) + 1), copy)
    return join_mail(fields, eol, body)


def reorder_headers(raw: bytes, rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    """Shuffle the header fields."""
    fields, eol, body = split_mail(raw)
    rng.shuffle(fields)
    return join_mail(fields, eol, body)


def random_bytes(rng: random.Random, size: int) -> bytes:
    """Bytes biased towards the ones parsers trip over."""
    return bytes(
        rng.choice(NASTY_BYTES) if rng.random() < 0.5 else rng.randrange(256) for _ in range(size)
    )


def encoded_word(rng: random.Random) -> bytes:
    """One RFC 2047 encoded word: odd charset, Q or B, payload of text or raw bytes."""
    charset = rng.choice(CHARSETS).encode("latin-1")
    payload = random_bytes(rng, rng.randrange(0, 24))
    if rng.random() < 0.2:
        payload += b"\r\nBcc: victim@x.example"
    if rng.random() < 0.5:
        text = base64.b64encode(payload)
        if rng.random() < 0.2:
            text = text[: rng.randrange(len(text) + 1)] + b"!"  # broken base64
        return b"=?" + charset + b"?b?" + text + b"?="
    quoted = b"".join(
        b"=%02X" % c if c < 33 or c > 126 or c in b"=?_" else bytes([c]) for c in payload
    )
    if rng.random() < 0.2:
        quoted += b"=Z"  # broken escape
    return b"=?" + charset + b"?q?" + quoted + b"?="


def insert_encoded_word(raw: bytes, rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    """Put an encoded word (or raw bytes) into a header value a reader decodes."""
    fields, eol, body = split_mail(raw)
    i = _pick_field(fields, rng, DECODED_HEADERS)
    word = encoded_word(rng) if rng.random() < 0.8 else random_bytes(rng, rng.randrange(1, 16))
    name, colon, value = fields[i].partition(b":")
    if not colon:
        fields.insert(i, b"Subject: " + word)
        return join_mail(fields, eol, body)
    cut = rng.randrange(len(value) + 1)
    if name.strip().lower() in (b"content-type", b"content-disposition") and rng.random() < 0.5:
        param = rng.choice([b"filename", b"name", b"charset", b"boundary", b"filename*"])
        fields[i] = fields[i] + b"; " + param + b'="' + word + b'"'
    else:
        fields[i] = name + b":" + value[:cut] + b" " + word + b" " + value[cut:]
    return join_mail(fields, eol, body)


def truncate(raw: bytes, rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    """Cut the mail at a random point (inside headers, a boundary, a base64 line ...)."""
    return raw[: rng.randrange(len(raw) + 1)]


_BOUNDARY = re.compile(rb'boundary\s*=\s*"?([^";\r\n]+)"?', re.IGNORECASE)


def corrupt_boundary(raw: bytes, rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    """Break a MIME boundary: change the parameter, a delimiter line, or the closing one."""
    found = list(_BOUNDARY.finditer(raw))
    if not found:
        return flip_bytes(raw, rng, corpus)
    boundary = rng.choice(found).group(1)
    how = rng.randrange(5)
    if how == 0:  # the parameter no longer matches the delimiters
        return raw.replace(b"boundary=" + boundary, b"boundary=" + boundary[::-1], 1)
    if how == 1:  # the closing delimiter disappears
        return raw.replace(b"--" + boundary + b"--", b"", 1)
    if how == 2:  # an empty boundary
        return raw.replace(boundary, b"", 1)
    if how == 3:  # poisoned bytes inside the boundary, everywhere it is used
        return raw.replace(boundary, boundary + random_bytes(rng, 3))
    return raw.replace(b"--" + boundary, b"--" + boundary[: len(boundary) // 2])


def flip_bytes(raw: bytes, rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    """Overwrite a few bytes with NUL, CR, LF, 8-bit or random values."""
    data = bytearray(raw)
    for _ in range(rng.randrange(1, 9)):
        if data:
            data[rng.randrange(len(data))] = rng.choice(NASTY_BYTES)
    return bytes(data)


def change_transfer_encoding(raw: bytes, rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    """Declare a transfer encoding (or charset) the bytes do not have."""
    fields, eol, body = split_mail(raw)
    fields = [f for f in fields if _field_name(f) != b"content-transfer-encoding"]
    cte = rng.choice([b"base64", b"quoted-printable", b"7bit", b"8bit", b"binary", b"x-bogus"])
    fields.append(b"Content-Transfer-Encoding: " + cte)
    if rng.random() < 0.5:
        fields = [f for f in fields if _field_name(f) != b"content-type"]
        charset = rng.choice(CHARSETS).encode("latin-1")
        fields.append(b'Content-Type: text/plain; charset="' + charset + b'"')
    return join_mail(fields, eol, body)


def splice_bodies(raw: bytes, rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    """This mail's headers over another mail's body (a multipart header over a plain body ...)."""
    if not corpus:
        return raw
    fields, eol, _body = split_mail(raw)
    _other_fields, _eol, other_body = split_mail(rng.choice(corpus))
    return join_mail(fields, eol, other_body)


def nest_rfc822(raw: bytes, rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    """Forward the mail as an attached message/rfc822 (or make it the whole body)."""
    head = [
        b"From: forwarder@example.org",
        b"To: support@example.com",
        b"Subject: Fwd: see below",
        b"Message-ID: <fwd-" + str(rng.randrange(10**9)).encode() + b"@example.org>",
        b"MIME-Version: 1.0",
    ]
    if rng.random() < 0.3:
        return b"\r\n".join([*head, b"Content-Type: message/rfc822", b"", raw])
    parts = [
        b"Content-Type: multipart/mixed; boundary=fwdsep",
        b"",
        b"--fwdsep",
        b"Content-Type: text/plain",
        b"",
        b"Forwarding this, please have a look.",
        b"--fwdsep",
        b"Content-Type: message/rfc822",
        b"",
        raw,
        b"--fwdsep--",
    ]
    return b"\r\n".join([*head, *parts])


MUTATIONS: tuple[Mutation, ...] = (
    drop_header,
    duplicate_header,
    reorder_headers,
    insert_encoded_word,
    insert_encoded_word,  # twice: the richest source of trouble
    truncate,
    corrupt_boundary,
    flip_bytes,
    change_transfer_encoding,
    splice_bodies,
    nest_rfc822,
)


def mutate(raw: bytes, rng: random.Random, corpus: Sequence[bytes], max_steps: int = 3) -> bytes:
    """Apply 1..``max_steps`` random mutations to ``raw``."""
    for _ in range(rng.randint(1, max_steps)):
        raw = rng.choice(MUTATIONS)(raw, rng, corpus)
    return raw


def mutated_mail(rng: random.Random, corpus: Sequence[bytes]) -> bytes:
    """A random fixture, mutated."""
    return mutate(rng.choice(corpus), rng, corpus)
