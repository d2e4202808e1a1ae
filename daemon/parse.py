"""Raw bytes -> :class:`InboundMessage`: the one module that knows mail-parser.

The raw bytes are never modified (the ledger keeps them); everything taken
from headers is decoded and stripped of CR/LF and control characters, so no
value built from mail text can inject a header into mail we send.

Memory: the stdlib parser holds a mail about eight times over while it splits it
into lines, and mail-parser decodes every attachment. Neither needs the bodies of
attachments (only their names), so a big mail is parsed from its *skeleton*
(:func:`skeleton`): the same bytes with large attachment bodies left out and very
long text parts cut at a line end. One 23 MB mail then costs a few MB to parse,
not 180.
"""

from __future__ import annotations

import codecs
import email
import email.errors
import logging
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

import mailparser

from config.errors import MailError
from routing.html_text import html_to_text
from routing.tokens import single_address

log = logging.getLogger(__name__)
# mail-parser logs a warning for every multipart it does not flatten; that is noise here.
logging.getLogger("mailparser").setLevel(logging.ERROR)

# RFC 5322 msg-id: "<" dot-atom-text "@" (dot-atom-text / no-fold-literal) ">", printable
# ASCII only. A looser pattern once let "<a@b=?utf-8?q?=0D=0ABcc:...?=>" through, and the
# header we build from it decoded that encoded word into a Bcc: line.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]"
_MSGID = re.compile(rf"<{_ATEXT}+@(?:{_ATEXT}+|\[[!-Z^-~]*\])>")
_ENCODED_WORD = re.compile(r"=\?[^?\s]*\?[bBqQ]\?[^?\s]*\?=")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]+")
_SPACES = re.compile(r"[ \t]{2,}")
_SURROGATE = re.compile("[\udc80-\udcff]")
_CHARSET_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "ks_c_5601-1987": "cp949"}

BIG_PART = 64 * 1024  # a leaf body above this is not handed to the parsers whole
TEXT_PART_CAP = 1024 * 1024  # a text part is read up to its first MiB (a log dump, not a request)
MAX_HEAD = 1024 * 1024  # a header block longer than this is not looked into
_BLANK_LINE = re.compile(rb"\n\r?\n")


# What the stdlib's RFC 2047 decoding raises on hostile input: UnicodeError (a
# ValueError), LookupError for unknown charsets, HeaderParseError for a bad base64
# tail and CharsetError for a non-ASCII charset name (both MessageError).
_DECODE_ERRORS = (ValueError, LookupError, AssertionError, email.errors.MessageError)


class UnparseableMail(MailError):
    """The mail is too large, too deeply nested or not a mail at all: quarantine it."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that protect the parser from hostile mail."""

    max_bytes: int = 25 * 1024 * 1024
    max_parts: int = 200
    max_depth: int = 10


@dataclass(frozen=True)
class InboundMessage:
    """What the pipeline needs from one inbound mail."""

    message_id: str
    subject: str
    from_header: str
    sender: str | None  # bare address of a single-address From, else None
    sender_header: str | None  # bare address of Sender:, when present
    to: tuple[str, ...]
    cc: tuple[str, ...]
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    text: str
    html: str
    headers: dict[str, tuple[str, ...]]  # lower-case name -> decoded, sanitised values
    attachments: tuple[str, ...] = ()
    defects: tuple[str, ...] = ()
    content_type: str = "text/plain"
    size: int = 0
    report_type: str = ""
    part_types: tuple[str, ...] = ()  # content types of the message's own parts, top first
    # The exact bytes parsed (the same object, not a copy): attachments are read from them.
    raw: bytes = field(default=b"", repr=False, compare=False)

    def header(self, name: str) -> str:
        """Return the first value of header ``name`` ('' when absent)."""
        values = self.headers.get(name.lower())
        return values[0] if values else ""

    def has_header(self, name: str) -> bool:
        """True when header ``name`` is present."""
        return name.lower() in self.headers

    @property
    def body(self) -> str:
        """The plain text, or the HTML converted to text when there is no plain part."""
        return self.text or html_to_text(self.html)


def sanitize_header(value: str, limit: int = 998) -> str:
    """Make ``value`` safe to put in a header we send: one line, no control characters.

    Encoded words are decoded until none is left first: a header value holding
    ``=?utf-8?b?...?=`` text would be decoded once more when we set it, and a
    double-encoded subject could carry CR/LF and a Bcc: line through.
    """
    for _ in range(4):
        if not _ENCODED_WORD.search(value):
            break
        value = decode_value(value)
    # Whatever "=?" is left did not decode here, but the email package's header
    # parser is more lenient (a stray "!" in base64, a space inside the word) and
    # would decode it when we set the header, into CR/LF or NUL: break every one.
    value = value.replace("=?", "= ?")
    # Lone surrogates (undecodable bytes) cannot be encoded in any header we send.
    value = value.encode("utf-8", "replace").decode("utf-8")
    return _SPACES.sub(" ", _CONTROL.sub(" ", value)).strip()[:limit]


def decode_value(raw: str | None) -> str:
    """Decode RFC 2047 encoded words and raw 8-bit (RFC 6532) text; never raises."""
    if not raw:
        return ""
    text = _unescape_8bit(str(raw))
    try:
        return str(make_header(decode_header(text)))
    except _DECODE_ERRORS:
        return _decode_leniently(text)


def _unescape_8bit(value: str) -> str:
    """Turn the stdlib's surrogate-escaped raw header bytes back into text.

    Raw UTF-8 is allowed in headers (RFC 6532); raw Latin-1 still comes from old clients.
    """
    if not _SURROGATE.search(value):
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _decode_leniently(text: str) -> str:
    """Decode encoded words one by one, replacing what a charset cannot decode."""
    try:
        chunks = decode_header(text)
    except _DECODE_ERRORS:
        return text
    out = []
    for data, charset in chunks:
        if isinstance(data, str):
            out.append(data)
        elif charset is None:
            # decode_header turned the unencoded runs into bytes with raw-unicode-escape.
            out.append(data.decode("raw-unicode-escape", "replace"))
        else:
            out.append(_decode_bytes(data, charset))
    return "".join(out)


def _decode_bytes(data: bytes, charset: str) -> str:
    """Decode with the declared charset, else as UTF-8 (often mislabelled), else lossily."""
    codec = _codec(charset)
    for name in (codec, "utf-8"):
        try:
            return data.decode(name)
        except UnicodeError:
            continue
    return data.decode(codec, "replace")


def _codec(charset: str | None) -> str:
    """The Python codec for a declared charset; UTF-8 for anything unknown or hostile.

    A charset name comes from the sender: ``x\\x00`` makes ``bytes.decode`` raise
    ValueError (not LookupError), which once stopped the daemon.
    """
    name = (charset or "").strip().lower()
    # Senders label text with the narrow charset and then use its superset's characters.
    name = _CHARSET_SUPERSETS.get(name, name)
    try:
        return codecs.lookup(name).name if name else "utf-8"
    except (LookupError, ValueError, TypeError):
        return "utf-8"


def message_ids(value: str) -> tuple[str, ...]:
    """Return the ``<...>`` message ids found in a header value, in order."""
    # "=?" is atext, so an encoded word fits the grammar; any header we set from the id
    # would decode it (into NUL, or CR/LF and a header of the sender's choosing).
    return tuple(m for m in _MSGID.findall(value or "") if "=?" not in m)


def _walk_limits(msg: Message, limits: Limits) -> None:
    parts = 0
    stack = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        parts += 1
        if depth > limits.max_depth:
            raise UnparseableMail(f"MIME nesting deeper than {limits.max_depth}")
        if parts > limits.max_parts:
            raise UnparseableMail(f"more than {limits.max_parts} MIME parts")
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend((p, depth + 1) for p in payload if isinstance(p, Message))


def _part_types(msg: Message) -> tuple[str, ...]:
    """Content types of the message's parts; attached messages are not entered."""
    found = []
    stack = [msg]
    while stack:
        part = stack.pop(0)
        ctype = part.get_content_type()
        found.append(ctype)
        # is_multipart() first: get_payload() of an 8-bit leaf decodes it with the
        # sender's charset name, which may raise (``charset="x\\0"``).
        if ctype.startswith("multipart/") and part.is_multipart():
            stack.extend(p for p in part.get_payload() if isinstance(p, Message))
    return tuple(found)


def _raw(msg: Message, name: str) -> str:
    """The first ``name`` header as text (8-bit bytes recovered), '' when absent."""
    values = _raw_all(msg, name)
    return values[0] if values else ""


def _raw_all(msg: Message, name: str) -> list[str]:
    # raw_items(), not get_all(): the stdlib wraps 8-bit values in a Header that loses the bytes.
    lower = name.lower()
    return [_unescape_8bit(str(v)) for k, v in msg.raw_items() if k.lower() == lower]


def _headers(msg: Message) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        out.setdefault(name.lower(), []).append(sanitize_header(decode_value(str(value)), 4000))
    return {k: tuple(v) for k, v in out.items()}


def _addresses(msg: Message, name: str) -> tuple[str, ...]:
    values = _raw_all(msg, name)
    return tuple(a.lower() for _, a in getaddresses(values) if "@" in a)


def _bare(header: str) -> str | None:
    """Lower-cased bare address of a single-address header, else None."""
    addr = single_address(header)
    return addr.lower() if addr else None


def parse_message(raw: bytes, limits: Limits | None = None) -> InboundMessage:
    """Parse ``raw`` into an :class:`InboundMessage` or raise :class:`UnparseableMail`."""
    limits = limits or Limits()
    if len(raw) > limits.max_bytes:
        raise UnparseableMail(f"message of {len(raw)} bytes exceeds {limits.max_bytes}")
    if not raw or raw.isspace():  # not raw.strip(): that copies a 25 MB mail
        raise UnparseableMail("empty message")
    try:
        msg = email.message_from_bytes(skeleton(raw, limits))
    except Exception as exc:  # RecursionError on hostile nesting, odd errors on garbage
        raise UnparseableMail(f"cannot parse MIME: {exc!r}") from exc
    if not msg.keys():
        raise UnparseableMail("no headers: not an RFC 5322 message")
    _walk_limits(msg, limits)
    try:
        return _inbound(msg, raw)
    except (ValueError, LookupError, TypeError, AttributeError, IndexError, KeyError) as exc:
        # The stdlib and mail-parser raise these on mail hostile in ways not met before:
        # quarantine it at once with the reason instead of three failing attempts.
        raise UnparseableMail(f"cannot read the mail: {type(exc).__name__}: {exc}") from exc


def _inbound(msg: Message, raw: bytes) -> InboundMessage:
    """The :class:`InboundMessage` of a parsed, size-checked ``msg``."""
    text, html, attachments, defects = _bodies(msg)
    froms = _raw_all(msg, "From")
    raw_from = froms[0] if froms else ""
    raw_sender = _raw(msg, "Sender")
    return InboundMessage(
        message_id=(message_ids(_raw(msg, "Message-ID")) or ("",))[0],
        subject=sanitize_header(decode_value(_raw(msg, "Subject"))),
        from_header=sanitize_header(decode_value(raw_from)),
        # Two From headers could be read two ways: no sender, so nobody is answered.
        sender=_bare(raw_from) if len(froms) == 1 else None,
        sender_header=_bare(str(raw_sender)) if raw_sender else None,
        to=_addresses(msg, "To"),
        cc=_addresses(msg, "Cc"),
        in_reply_to=message_ids(_raw(msg, "In-Reply-To")),
        references=message_ids(" ".join(_raw_all(msg, "References"))),
        text=text,
        html=html,
        headers=_headers(msg),
        attachments=attachments,
        defects=defects,
        content_type=msg.get_content_type(),
        size=len(raw),
        raw=raw,
        report_type=str(msg.get_param("report-type") or "")
        if msg.get_content_maintype() == "multipart"
        else "",
        part_types=_part_types(msg),
    )


def skeleton(raw: bytes, limits: Limits | None = None) -> bytes:
    """``raw`` with large attachment bodies left out and long text parts cut at a line end.

    Headers, the MIME structure (every part, boundaries, attached messages and
    reports) and the start of every text part stay byte for byte, so parsing the
    skeleton yields the same headers, texts, attachment names and part types as
    parsing ``raw``. ``raw`` itself is returned when nothing is big.
    """
    if len(raw) <= BIG_PART:
        return raw
    edits: list[tuple[int, int]] = []
    _skeleton_edits(raw, 0, len(raw), 0, limits or Limits(), edits)
    if not edits:
        return raw
    view = memoryview(raw)
    pieces, pos = [], 0
    for start, end in sorted(edits):
        pieces.append(view[pos:start])
        pos = end
    pieces.append(view[pos:])
    return b"".join(pieces)


def _skeleton_edits(
    raw: bytes, start: int, end: int, depth: int, limits: Limits, edits: list[tuple[int, int]]
) -> None:
    """Collect (start, end) byte ranges of ``raw[start:end]`` (one entity) to leave out."""
    if depth > limits.max_depth or end - start <= BIG_PART:
        return  # small, or hostile nesting: the parser sees it whole (and the limits apply)
    if raw.startswith((b"\n", b"\r\n"), start):
        head_end = body = start + (1 if raw[start] == 0x0A else 2)
    else:
        found = _BLANK_LINE.search(raw, start, min(end, start + MAX_HEAD))
        if found is None:
            return
        head_end, body = found.start() + 1, found.end()
    head = BytesHeaderParser(policy=compat32).parsebytes(raw[start:head_end])
    ctype = head.get_content_type()
    if head.get_content_maintype() == "multipart":
        _skeleton_multipart(raw, head, body, end, depth, limits, edits)
    elif ctype in ("message/rfc822", "message/global"):
        cte = str(head.get("Content-Transfer-Encoding", "")).strip().lower()
        if cte in ("", "7bit", "8bit", "binary"):
            _skeleton_edits(raw, body, end, depth + 1, limits, edits)
    elif head.get_content_maintype() == "message" or ctype == "text/rfc822-headers":
        return  # reports and returned headers: read whole (the bounce guard needs them)
    elif end - body > BIG_PART:
        # mail-parser reads an inline text part as text even when it has a file name.
        attachment = head.get_content_disposition() == "attachment"
        if attachment or head.get_content_maintype() != "text":
            edits.append((body, end))
        elif end - body > TEXT_PART_CAP:
            cut = raw.rfind(b"\n", body, body + TEXT_PART_CAP)
            edits.append((cut + 1 if cut >= body else body, end))


def _skeleton_multipart(
    raw: bytes,
    head: Message,
    body: int,
    end: int,
    depth: int,
    limits: Limits,
    edits: list[tuple[int, int]],
) -> None:
    for start, stop in part_spans(raw, head, body, end, limits):
        _skeleton_edits(raw, start, stop, depth + 1, limits, edits)


def part_spans(raw: bytes, head: Message, body: int, end: int, limits: Limits):
    """(start, end) of each part between the boundary lines of a multipart body.

    Found in the raw bytes, so a big part is never copied; the epilogue after
    the close delimiter is left out, and without one the last part runs to the end.
    """
    boundary = head.get_boundary()
    if not boundary:
        return
    try:
        delimiter = boundary.encode("ascii", "surrogateescape")
    except UnicodeError:
        return
    line = re.compile(rb"^--" + re.escape(delimiter) + rb"(--)?[ \t]*\r?$", re.MULTILINE)
    part_start: int | None = None
    for count, match in enumerate(line.finditer(raw, body, end)):
        if part_start is not None:
            yield part_start, match.start()
        if match.group(1) or count > limits.max_parts:
            return
        part_start = min(match.end() + 1, end)
    if part_start is not None:
        yield part_start, end


_Bodies = tuple[str, str, tuple[str, ...], tuple[str, ...]]
_ISO2022_ESCAPE = re.compile("\x1b[$(][@A-Z]")


def _bodies(msg: Message) -> _Bodies:
    """(text, html, attachment names, defects) by mail-parser, else by the stdlib alone."""
    try:
        mp = mailparser.MailParser(msg)
    except Exception as exc:  # mail-parser trips over some readable mail (e.g. a bad epilogue)
        log.info("mail-parser failed (%r); reading the parts with the stdlib", exc)
        return _stdlib_bodies(msg)
    text, html = "\n".join(mp.text_plain).strip(), "\n".join(mp.text_html).strip()
    defects = tuple(str(d) for d in (mp.defects_categories or ()))
    # mail-parser leaves 7-bit charsets (ISO-2022-JP) undecoded and falls back to UTF-8 with
    # replacement characters when a narrow charset label is wrong (GB2312 text using GBK):
    # the stdlib reading below decodes both.
    if "CharsetDecodeDefect" in defects or _ISO2022_ESCAPE.search(text + html):
        text, html, _names, _defects = _stdlib_bodies(msg)
    return text, html, tuple(str(a.get("filename") or "") for a in mp.attachments), defects


def _stdlib_bodies(msg: Message) -> _Bodies:
    """The text and HTML parts of ``msg`` itself (attached messages are not entered)."""
    text: list[str] = []
    html: list[str] = []
    names: list[str] = []
    defects = {type(d).__name__ for d in msg.defects}
    stack = [msg]
    while stack:
        part = stack.pop(0)
        defects.update(type(d).__name__ for d in part.defects)
        if part.get_content_maintype() == "multipart" and part.is_multipart():
            stack[:0] = [p for p in part.get_payload() if isinstance(p, Message)]
        elif _filename(part) or part.get_content_disposition() == "attachment":
            names.append(decode_value(_filename(part)))
        elif part.get_content_type() in ("text/plain", "text/html"):
            data = part.get_payload(decode=True) or b""
            decoded = _decode_bytes(data, _charset(part))
            (text if part.get_content_subtype() == "plain" else html).append(decoded)
    return "\n".join(text).strip(), "\n".join(html).strip(), tuple(names), tuple(sorted(defects))


# The stdlib decodes RFC 2231 parameters with the sender's charset name and raises
# ValueError on one like ``x\\0``: read them with a fallback.


def _filename(part: Message) -> str:
    try:
        return part.get_filename() or ""
    except (ValueError, LookupError):
        return str(part.get_param("filename", "", unquote=True) or "")


def _charset(part: Message) -> str:
    try:
        return part.get_content_charset() or "utf-8"
    except (ValueError, LookupError):
        return "utf-8"
