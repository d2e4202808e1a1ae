"""Hostile mails, as raw bytes, each with a name: what a mailbox on the Internet receives.

Every mail is written byte by byte (not with ``email.message``): the stdlib's
generator refuses or repairs most of what we want to send the daemon. Each case
is a :class:`HostileCase`; :func:`cases` lists them all, :func:`case` finds one.

Families:

* structure: MIME nesting within and beyond ``guards.max_depth``, thousands of
  parts, message/rfc822 nesting, huge headers and subjects, many headers;
* encoded words and RFC 2231 parameters carrying NUL, CR/LF, bogus charsets and
  broken base64, in every header position a mail reader decodes (Subject, From
  display name, attachment filename, boundary, Content-Type parameters,
  Message-ID, In-Reply-To, References);
* header injection: encoded words that decode to ``"\\r\\nBcc: victim@x"``, also inside
  the message ids a reply echoes in In-Reply-To/References;
* addresses: the CVE-2023-27043 forms (``"a@b.com" <evil@x.com>``, two
  addresses, ``<a@b.com>@evil``, quoted commas, comments), two From headers;
* bytes: empty, headers only, no headers, binary garbage, 8-bit headers in
  bad charsets, lone CRs, NUL and control bytes in bodies, broken base64/QP.
"""

from __future__ import annotations

import base64
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

CRLF = b"\r\n"
ATTACKER = b"mallory@evil.example"
VICTIM = "victim@x.example"
# What an injected header would look like once an encoded word is decoded.
INJECTION = b"hi\r\nBcc: " + VICTIM.encode()
_ids = itertools.count(1)


@dataclass(frozen=True)
class HostileCase:
    """One hostile mail: a name for the test id, a builder, and addresses it must not reach.

    ``never_to``: no mail the daemon sends may be addressed to these (the
    address could be read two ways, or the sender asked for injection).
    """

    name: str
    build: Callable[[], bytes]
    never_to: tuple[str, ...] = ()


def mail(*headers: bytes, body: bytes = b"Please help, my laptop will not boot.") -> bytes:
    """Header lines (bytes, as given) + blank line + body, CRLF line ends."""
    return CRLF.join(headers) + CRLF + CRLF + body + CRLF


def basic_headers(subject: bytes = b"Help needed", sender: bytes = ATTACKER) -> list[bytes]:
    """The usual headers of a request, for cases that vary something else."""
    return [
        b"From: " + sender,
        b"To: support@example.com",
        b"Subject: " + subject,
        b"Date: Mon, 05 Jan 2026 09:00:00 +0000",
        b"Message-ID: <hostile-%d@evil.example>" % next(_ids),
    ]


# --- structure ----------------------------------------------------------------


def nested_multipart(depth: int) -> bytes:
    """Multiparts nested ``depth`` levels deep, one text part at the bottom."""
    lines = [*basic_headers(b"nested " + str(depth).encode())]
    lines += [b"MIME-Version: 1.0", b"Content-Type: multipart/mixed; boundary=b0", b""]
    for n in range(1, depth):
        lines += [b"--b%d" % (n - 1), b"Content-Type: multipart/mixed; boundary=b%d" % n, b""]
    lines += [b"--b%d" % (depth - 1), b"Content-Type: text/plain", b"", b"deep down"]
    lines += [b"--b%d--" % n for n in reversed(range(depth))]
    return CRLF.join(lines) + CRLF


def nested_rfc822(depth: int) -> bytes:
    """A mail forwarding a mail forwarding a mail ... ``depth`` times (message/rfc822)."""
    inner = mail(*basic_headers(b"innermost"), body=b"the original request")
    for n in range(depth):
        inner = mail(
            *basic_headers(b"Fwd: level %d" % n),
            b"MIME-Version: 1.0",
            b"Content-Type: message/rfc822",
            body=inner,
        )
    return inner


def many_parts(count: int) -> bytes:
    """One multipart/mixed with ``count`` small text parts."""
    lines = [*basic_headers(b"%d parts" % count)]
    lines += [b"MIME-Version: 1.0", b"Content-Type: multipart/mixed; boundary=sep", b""]
    for n in range(count):
        lines += [b"--sep", b"Content-Type: text/plain", b"", b"part %d" % n]
    lines.append(b"--sep--")
    return CRLF.join(lines) + CRLF


def huge_header(size: int = 1 << 20) -> bytes:
    """One unfolded header line of ``size`` bytes."""
    return mail(*basic_headers(), b"X-Junk: " + b"a" * size)


def huge_subject(size: int = 1 << 20) -> bytes:
    """A subject of ``size`` bytes, words (so a folder could fold it)."""
    return mail(*basic_headers(subject=b"word " * (size // 5)))


def huge_folded_header(lines: int = 50_000) -> bytes:
    """One header folded over ``lines`` continuation lines (about 1 MB)."""
    folded = CRLF.join([b"X-Folded: start"] + [b" continuation %d" % n for n in range(lines)])
    return mail(*basic_headers(), folded)


def many_headers(count: int = 50_000) -> bytes:
    """``count`` separate header fields."""
    return mail(*basic_headers(), *(b"X-H%d: v" % n for n in range(count)))


def huge_encoded_subject(words: int = 20_000) -> bytes:
    """A subject of thousands of adjacent encoded words (each decoded separately)."""
    return mail(*basic_headers(subject=b" ".join([b"=?utf-8?q?ab=C3=A9?="] * words)))


# --- encoded words and RFC 2231 parameters ------------------------------------

# RFC 2047 encoded words with poison inside; the key is the payload name in the case name.
ENCODED_WORDS: dict[str, bytes] = {
    "nul-charset": b"=?x\x00?q?hi?=",  # known defect 2: ValueError from the stdlib
    "crlf-q": b"=?utf-8?q?hi=0D=0ABcc:_" + VICTIM.encode() + b"?=",
    "crlf-b": b"=?utf-8?b?" + base64.b64encode(INJECTION) + b"?=",
    "nul-q": b"=?utf-8?q?a=00b=01c=7F?=",
    "bogus-charset": b"=?x-no-such-charset-9?q?hi?=",
    "broken-b64": b"=?utf-8?b?!!*not=base64?=",
    "b64-bad-tail": b"=?utf-8?b?aGk!?=",  # HeaderParseError, found by the fuzzer
    "8bit-charset": b"=?\xff?q?hi?=",  # CharsetError, found by the fuzzer
    "empty-charset": b"=??q?hi?=",
    "raw-controls": b"hi\x00there\rBcc: " + VICTIM.encode(),
}
# A message id whose encoded word decodes to a complete, well-formed "Bcc:" line: the
# Composer copies the requester's Message-ID and References into In-Reply-To/References.
CLEAN_BCC_MSGID = b"<a@b=?utf-8?q?=3E=0D=0ABcc:_" + VICTIM.encode() + b"=0D=0AX-A:_=3C?=>"
# An encoded word whose decoded text is itself an encoded word for "\r\nBcc: victim": the
# subject we send is decoded once by us, and once more by the stdlib when it is set.
DOUBLE_ENCODED_BCC = (
    b"=?utf-8?b?"
    + base64.b64encode(b"=?utf-8?b?" + base64.b64encode(b"\r\nBcc: " + VICTIM.encode()) + b"?=")
    + b"?="
)
# RFC 2231 extended parameter values (charset'language'percent-encoded).
RFC2231_VALUES: dict[str, bytes] = {
    "nul-charset": b"x\x00''hi",
    "crlf": b"utf-8''hi%0D%0ABcc:%20" + VICTIM.encode(),
    "nul-value": b"utf-8''a%00b%01c",
    "bogus-charset": b"x-no-such-charset-9''hi%FF",
    "bad-percent": b"utf-8''%ZZ%%%",
}


def _multipart_with_attachment(disposition: bytes, ctype: bytes = b"application/pdf") -> bytes:
    """A request with one text part and one attachment whose headers we choose."""
    return mail(
        *basic_headers(),
        b"MIME-Version: 1.0",
        b"Content-Type: multipart/mixed; boundary=outer",
        body=CRLF.join(
            [
                b"--outer",
                b"Content-Type: text/plain; charset=utf-8",
                b"",
                b"See the attached report.",
                b"--outer",
                b"Content-Type: " + ctype,
                b"Content-Disposition: " + disposition,
                b"Content-Transfer-Encoding: base64",
                b"",
                base64.b64encode(b"%PDF-1.4 not really"),
                b"--outer--",
            ]
        ),
    )


def _with_boundary(boundary: bytes) -> bytes:
    """A multipart whose boundary parameter (and delimiter lines) carry ``boundary``."""
    return mail(
        *basic_headers(),
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/alternative; boundary="' + boundary + b'"',
        body=CRLF.join(
            [
                b"--" + boundary,
                b"Content-Type: text/plain",
                b"",
                b"plain text",
                b"--" + boundary + b"--",
            ]
        ),
    )


def _encoded_word_positions(word: bytes) -> dict[str, Callable[[], bytes]]:
    """Every header position a reader decodes, carrying ``word``."""
    return {
        "subject": lambda: mail(*basic_headers(subject=b"Re: " + word + b" printer")),
        "from-name": lambda: mail(*basic_headers(sender=word + b" <" + ATTACKER + b">")),
        "filename": lambda: _multipart_with_attachment(b'attachment; filename="' + word + b'"'),
        "ctype-name": lambda: _multipart_with_attachment(
            b"attachment", b'application/pdf; name="' + word + b'"'
        ),
        "charset-param": lambda: mail(
            *basic_headers(),
            b"MIME-Version: 1.0",
            b'Content-Type: text/plain; charset="' + word + b'"',
        ),
        "boundary": lambda: _with_boundary(word),
        "message-id": lambda: mail(
            *basic_headers()[:4], b"Message-ID: <" + word + b"@evil.example>"
        ),
        "in-reply-to": lambda: mail(*basic_headers(), b"In-Reply-To: <" + word + b"@x> " + word),
        "references": lambda: mail(*basic_headers(), b"References: <a@x> " + word + b" <b@x>"),
    }


def _rfc2231_positions(value: bytes) -> dict[str, Callable[[], bytes]]:
    """RFC 2231 parameters carrying ``value``: filename*, name*, continuations, charset*."""
    return {
        "filename*": lambda: _multipart_with_attachment(b"attachment; filename*=" + value),
        "filename*0*": lambda: _multipart_with_attachment(
            b"attachment; filename*0*=" + value + b"; filename*1=tail.pdf"
        ),
        "name*": lambda: _multipart_with_attachment(
            b"attachment", b"application/pdf; name*=" + value
        ),
        "charset*": lambda: mail(
            *basic_headers(), b"MIME-Version: 1.0", b"Content-Type: text/plain; charset*=" + value
        ),
        "boundary*": lambda: mail(
            *basic_headers(),
            b"MIME-Version: 1.0",
            b"Content-Type: multipart/mixed; boundary*=" + value,
            body=b"--hi\r\nContent-Type: text/plain\r\n\r\nbody\r\n--hi--",
        ),
    }


# --- addresses ------------------------------------------------------------------

# CVE-2023-27043: From values the stdlib's getaddresses/parseaddr read the wrong way.
CVE_2023_27043_FROMS: dict[str, bytes] = {
    "quoted-address-display": b'"a@b.example" <evil@x.example>',
    "two-addresses": b"a@b.example, c@d.example",
    "angle-then-domain": b"<a@b.example>@evil.example",
    "quoted-comma": b'"a@b.example, c@d.example" <evil@x.example>',
    "comment-address": b"a@b.example (c@d.example)",
    "comment-angle": b"a@b.example (<c@d.example>)",
    "paren-angle": b"alice@b.example)<evil@x.example>",
    "group": b"undisclosed: a@b.example, c@d.example;",
    "encoded-address-name": b"=?utf-8?q?a@b.example?= <evil@x.example>",
}
_CVE_ADDRESSES = ("a@b.example", "c@d.example", "evil@x.example", "alice@b.example")


# --- bytes ----------------------------------------------------------------------


def binary_garbage(size: int = 64 * 1024, seed: int = 1) -> bytes:
    """Seeded random bytes: not a mail at all."""
    return random.Random(seed).randbytes(size)


def garbage_with_header(size: int = 64 * 1024) -> bytes:
    """A plausible first header line, then random bytes (a parser keeps reading)."""
    return b"From: " + ATTACKER + CRLF + binary_garbage(size, seed=2)


def lone_cr_mail() -> bytes:
    """Line ends that are bare CRs only (old Mac), and a CR inside a header value."""
    head = b"\r".join(basic_headers(subject=b"lone\rCR\rsubject"))
    return head + b"\r\r" + b"body line 1\rbody line 2\r"


def body_controls(cte: bytes = b"8bit") -> bytes:
    """A text body with NUL, BEL, ESC sequences and DEL (known defect 7 in outgoing mail)."""
    return mail(
        *basic_headers(subject=b"controls in body"),
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Transfer-Encoding: " + cte,
        body=b"My screen shows \x00\x01\x07\x1b[31mred\x1b[0m\x7f and the disk \x00 is full.",
    )


def eight_bit_headers() -> bytes:
    """Raw 8-bit bytes in Subject and From name, invalid in UTF-8 and every charset label."""
    return mail(
        *basic_headers(
            subject=b"\xff\xfe\x80\x81 caf\xe9 \xc3\x28 \xed\xa0\x80",
            sender=b"\xa4\xa2\xa4\xa4\x80 <" + ATTACKER + b">",
        ),
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=iso-2022-jp",
        body=b"\x1b$B\xff\xfe broken iso-2022 \x1b(B",
    )


def broken_transfer(cte: bytes, payload: bytes, charset: bytes = b"utf-8") -> bytes:
    """A single text part whose transfer encoding does not decode."""
    return mail(
        *basic_headers(subject=b"broken " + cte),
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=" + charset,
        b"Content-Transfer-Encoding: " + cte,
        body=payload,
    )


def two_from_headers() -> bytes:
    """Two From headers (known defect 6: acknowledged to one of them)."""
    return mail(
        b"From: alice@b.example",
        b"From: evil@x.example",
        *basic_headers()[1:],
    )


def _structure_cases() -> list[HostileCase]:
    return [
        HostileCase("nesting-within-limit-9", lambda: nested_multipart(9)),
        HostileCase("nesting-beyond-limit-12", lambda: nested_multipart(12)),
        HostileCase("nesting-bomb-3000", lambda: nested_multipart(3000)),
        HostileCase("rfc822-nesting-40", lambda: nested_rfc822(40)),
        HostileCase("parts-within-limit-150", lambda: many_parts(150)),
        HostileCase("parts-5000", lambda: many_parts(5000)),
        HostileCase("header-1mb", huge_header),
        HostileCase("subject-1mb", huge_subject),
        HostileCase("folded-header-50000-lines", huge_folded_header),
        HostileCase("headers-50000", many_headers),
        HostileCase("subject-20000-encoded-words", huge_encoded_subject),
    ]


def _encoding_cases() -> list[HostileCase]:
    found = []
    for payload, word in ENCODED_WORDS.items():
        for position, build in _encoded_word_positions(word).items():
            found.append(HostileCase(f"ew-{payload}-in-{position}", build, (VICTIM,)))
    for payload, value in RFC2231_VALUES.items():
        for position, build in _rfc2231_positions(value).items():
            found.append(HostileCase(f"rfc2231-{payload}-in-{position}", build, (VICTIM,)))
    return found


def _address_cases() -> list[HostileCase]:
    found = [
        HostileCase(
            f"from-{name}", (lambda v=value: mail(*basic_headers(sender=v))), _CVE_ADDRESSES
        )
        for name, value in CVE_2023_27043_FROMS.items()
    ]
    found.append(HostileCase("two-from-headers", two_from_headers, _CVE_ADDRESSES))
    return found


def _injection_cases() -> list[HostileCase]:
    """Header injection through the message ids we echo in replies."""
    return [
        HostileCase(
            "bcc-injection-via-message-id",
            lambda: mail(*basic_headers()[:4], b"Message-ID: " + CLEAN_BCC_MSGID),
            (VICTIM,),
        ),
        HostileCase(
            "bcc-injection-via-double-encoded-subject",
            lambda: mail(*basic_headers(subject=DOUBLE_ENCODED_BCC)),
            (VICTIM,),
        ),
        HostileCase(
            "bcc-injection-via-references",
            lambda: mail(*basic_headers(), b"References: <ok@x> " + CLEAN_BCC_MSGID),
            (VICTIM,),
        ),
    ]


def _byte_cases() -> list[HostileCase]:
    return [
        HostileCase("empty-file", lambda: b""),
        HostileCase("whitespace-only", lambda: b" \r\n\t\r\n\r\n"),
        HostileCase("headers-only-no-body", lambda: CRLF.join(basic_headers())),
        HostileCase("no-headers-body-only", lambda: b"just some text\r\nand more\r\n"),
        HostileCase("no-headers-leading-blank-line", lambda: b"\r\nSubject: late\r\n\r\nbody"),
        HostileCase("binary-garbage", binary_garbage),
        HostileCase("garbage-after-from", garbage_with_header),
        HostileCase("nul-bytes-everywhere", lambda: mail(*basic_headers()).replace(b" ", b"\x00")),
        HostileCase("lone-cr-line-ends", lone_cr_mail),
        HostileCase("body-control-bytes-8bit", body_controls),
        HostileCase("body-control-bytes-7bit-declared", lambda: body_controls(b"7bit")),
        HostileCase("eight-bit-headers-bad-charsets", eight_bit_headers),
        HostileCase("base64-broken", lambda: broken_transfer(b"base64", b"!!!!====abc=\r\n@@@")),
        HostileCase(
            "base64-nul-payload",
            lambda: broken_transfer(b"base64", base64.b64encode(b"a\x00b\x01\x1b[2Jc")),
        ),
        HostileCase("qp-broken", lambda: broken_transfer(b"quoted-printable", b"=ZZ=\r\n=4=0")),
        HostileCase("qp-nul", lambda: broken_transfer(b"quoted-printable", b"a=00b=0D=0Ac")),
        HostileCase("cte-bogus", lambda: broken_transfer(b"x-uuencode-ish", b"begin 644 x")),
        HostileCase("charset-bogus", lambda: broken_transfer(b"8bit", b"\xff\xfe", b"x-bogus")),
        HostileCase("header-no-colon", lambda: mail(*basic_headers(), b"This is not a header")),
        HostileCase("header-name-spaces", lambda: mail(b"From : " + ATTACKER, b"Sub ject: x")),
    ]


def cases() -> list[HostileCase]:
    """Every hostile case, names unique."""
    found = _structure_cases() + _encoding_cases() + _address_cases() + _injection_cases()
    found += _byte_cases()
    names = [c.name for c in found]
    assert len(names) == len(set(names)), "hostile case names must be unique"
    return found


def case(name: str) -> HostileCase:
    """The hostile case called ``name``."""
    return next(c for c in cases() if c.name == name)
