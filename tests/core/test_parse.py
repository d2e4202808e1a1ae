"""``daemon.parse``: real fixture mails, hostile limits, header sanitising, charsets."""

from __future__ import annotations

import hashlib
from email.message import EmailMessage
from pathlib import Path

import pytest

from daemon.parse import (
    TEXT_PART_CAP,
    Limits,
    UnparseableMail,
    decode_value,
    html_to_text,
    message_ids,
    parse_message,
    sanitize_header,
    skeleton,
)
from tests.conftest import EMAILS
from tests.support.mail import make_mail

SPAMSCOPE = EMAILS / "spamscope-mail-parser" / "files"  # real mails without a .eml suffix
FIXTURES = sorted(EMAILS.rglob("*.eml")) + sorted(SPAMSCOPE.iterdir())


def raw_mail(*headers: str, body: str = "Hello") -> bytes:
    """A hand-written message: exactly these header lines, then ``body``."""
    return ("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode()


def fixture(path: str) -> bytes:
    return (EMAILS / path).read_bytes()


def nested(depth: int) -> bytes:
    """A message whose multiparts nest ``depth`` levels deep (written by hand: the stdlib's
    generator itself recurses too deeply to write a nesting bomb)."""
    lines = [
        "From: bob@example.com",
        "Subject: nested",
        "Content-Type: multipart/mixed; boundary=b0",
        "",
    ]
    for n in range(1, depth):
        lines += [f"--b{n - 1}", f"Content-Type: multipart/mixed; boundary=b{n}", ""]
    lines += [f"--b{depth - 1}", "Content-Type: text/plain", "", "deep"]
    lines += [f"--b{n}--" for n in reversed(range(depth))]
    return "\r\n".join(lines).encode()


# --- every real fixture: parsed, or refused with UnparseableMail, never another error


def test_there_are_fixtures():
    assert len(FIXTURES) > 700


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: str(p.relative_to(EMAILS)))
def test_fixture_parses_or_is_refused(path: Path):
    try:
        msg = parse_message(path.read_bytes())
    except UnparseableMail:
        return
    assert "\n" not in msg.subject + msg.from_header and "\r" not in msg.subject


def test_obsolete_header_syntax_is_refused_as_headerless():
    with pytest.raises(UnparseableMail, match="no headers"):
        parse_message(fixture("mikel-mail/files/rfc2822/example13.eml"))


def test_mail_parser_crash_falls_back_to_the_stdlib():
    msg = parse_message(fixture("sisimai-set-of-emails/files/bsd/lhost-sendgrid-01.eml"))
    assert "automatically generated message from SendGrid" in msg.text


# --- limits


def test_too_large_is_refused():
    with pytest.raises(UnparseableMail, match="exceeds 100"):
        parse_message(make_mail(), Limits(max_bytes=100))


def test_too_many_parts_is_refused():
    msg = EmailMessage()
    msg["From"] = "bob@example.com"
    msg.set_content("see attached")
    for n in range(5):
        msg.add_attachment(b"x", maintype="application", subtype="octet-stream", filename=f"{n}")
    with pytest.raises(UnparseableMail, match="more than 3 MIME parts"):
        parse_message(bytes(msg), Limits(max_parts=3))


def test_too_deep_is_refused():
    with pytest.raises(UnparseableMail, match="deeper than 2"):
        parse_message(nested(4), Limits(max_depth=2))


def test_nesting_bomb_is_refused_not_crashing():
    with pytest.raises(UnparseableMail):
        parse_message(nested(1500))


@pytest.mark.parametrize("raw", [b"", b" \r\n\r\n"])
def test_empty_is_refused(raw: bytes):
    with pytest.raises(UnparseableMail, match="empty"):
        parse_message(raw)


def test_headerless_text_is_refused():
    with pytest.raises(UnparseableMail, match="no headers"):
        parse_message(b"just some text\nand more text\n")


# --- header values come out as one safe line


def test_encoded_crlf_in_subject_stays_one_line():
    msg = parse_message(
        raw_mail("From: bob@example.com", "Subject: =?utf-8?q?hi=0D=0ABcc:_x@evil.com?=")
    )
    assert msg.subject == "hi Bcc: x@evil.com"


def test_encoded_crlf_in_from_stays_one_line():
    raw = raw_mail("From: =?utf-8?q?Bob=0D=0ABcc:_x@evil.com?= <bob@example.com>", "Subject: hi")
    assert parse_message(raw).from_header == "Bob Bcc: x@evil.com <bob@example.com>"


def test_encoded_crlf_in_other_headers_is_sanitised():
    raw = raw_mail("From: bob@example.com", "Keywords: =?utf-8?q?a=0D=0AX-Evil:_1?=")
    assert parse_message(raw).header("keywords") == "a X-Evil: 1"


def test_sanitize_header_removes_control_characters():
    assert sanitize_header("a\r\n b\x00c\x1b  d\t") == "a b c d"


def test_sanitize_header_caps_length():
    assert len(sanitize_header("x" * 5000)) == 998


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (None, ""),
        ("plain", "plain"),
        ("=?utf-8?q?Gr=C3=BC=C3=9Fe?= aus Wien", "Grüße aus Wien"),
        ("=?x-unknown?q?abc?=", "abc"),
        ("=?NONE?B?VEVTVA=?=", "TEST"),
        ("S\udcc3\udca4ying", "Säying"),  # raw UTF-8 as the stdlib hands it over
    ],
)
def test_decode_value(raw: str | None, text: str):
    assert decode_value(raw) == text


# --- message ids


def test_message_ids_in_order():
    assert message_ids("<a@x> <b@y>") == ("<a@x>", "<b@y>")


def test_message_ids_across_folding():
    assert message_ids("<a@x>\r\n\t<b@y>\r\n <c@z>") == ("<a@x>", "<b@y>", "<c@z>")


def test_message_ids_skip_junk():
    assert message_ids('junk <a@x> "q" <not an id> (c) <> b@y <c@z>') == ("<a@x>", "<c@z>")


def test_message_ids_of_nothing():
    assert message_ids("") == ()


def test_in_reply_to_with_a_comment():
    raw = raw_mail("From: bob@example.com", "In-Reply-To: <a@x> (Ann's mail of Monday)")
    assert parse_message(raw).in_reply_to == ("<a@x>",)


def test_references_folded_and_repeated():
    raw = raw_mail("From: bob@example.com", "References: <a@x>\r\n <b@y>", "References: <c@z>")
    assert parse_message(raw).references == ("<a@x>", "<b@y>", "<c@z>")


def test_message_id_is_the_bracketed_id():
    raw = raw_mail("From: bob@example.com", "Message-ID:\r\n <id-1@mail.example.com> (x)")
    assert parse_message(raw).message_id == "<id-1@mail.example.com>"


# --- bodies


def test_html_only_mail_has_text_body():
    raw = raw_mail(
        "From: bob@example.com",
        "Content-Type: text/html; charset=utf-8",
        body="<p>VPN&nbsp;is <b>down</b></p><script>alert(1)</script>",
    )
    assert parse_message(raw).body == "VPN is down"


def test_html_to_text_drops_tags_and_styles():
    assert html_to_text("<style>p{}</style><div>a</div><div>b &amp; c</div>") == "a\nb & c"


def test_plain_part_is_preferred_to_html():
    msg = parse_message(make_mail(body="plain words", html="<p>html words</p>"))
    assert msg.body == "plain words"


def test_raw_bytes_are_untouched():
    raw = fixture("mikel-mail/files/multi_charset/japanese_iso_2022.eml")
    digest = hashlib.sha256(raw).hexdigest()
    msg = parse_message(raw)
    assert (msg.size, hashlib.sha256(raw).hexdigest()) == (len(raw), digest)


# --- charsets from real mail


@pytest.mark.parametrize(
    ("path", "field", "expected"),
    [
        ("mikel-mail/files/multi_charset/japanese.eml", "subject", "まみむめも"),
        ("mikel-mail/files/multi_charset/japanese.eml", "text", "かきくえこ"),
        ("mikel-mail/files/multi_charset/japanese_iso_2022.eml", "text", "すみません。"),
        ("mikel-mail/files/multi_charset/japanese_shift_jis.eml", "text", "あいうえお"),
        ("mikel-mail/files/multi_charset/ks_c_5601-1987.eml", "text", "스티해"),
        ("mikel-mail/files/multi_charset/japanese_attachment.eml", "attachments", "てすと.txt"),
        ("mikel-mail/files/plain_emails/raw_email.eml", "subject", "NOTE: 한국말로 하는 것"),
        ("mikel-mail/files/rfc6532/utf8_headers.eml", "subject", "Säying Hello"),
        ("mikel-mail/files/error_emails/invalid_subject_characters.eml", "subject", "Formação"),
        ("spamscope-mail-parser/files/mail_test_9", "subject", "我把镜头拉近些"),
        ("spamscope-mail-parser/files/mail_test_9", "body", "我把镜头拉近些"),
        ("sisimai-set-of-emails/files/bsd/lhost-kddi-01.eml", "subject", "メールエラー通知"),
        ("sisimai-set-of-emails/files/bsd/lhost-kddi-01.eml", "text", "送信できませんでした"),
    ],
)
def test_charsets_decode_to_readable_text(path: str, field: str, expected: str):
    value = getattr(parse_message(fixture(path)), field)
    assert expected in (value if isinstance(value, str) else " ".join(value))


# --- hostile charsets and From headers (issue: one 106-byte mail stopped all intake)


@pytest.mark.parametrize(
    "header",
    [
        b"Subject: =?x\x00?q?hi?=",
        b"From: =?x\x00?q?hi?= <ann@example.com>",
        b"Subject: =?utf-8\x00?b?aGk=?=",
        b"Subject: =?\x00?q?hi?=",
        b'Content-Type: text/plain; charset="x\x00"',
        b"Content-Type: text/plain; charset*=x\x00''hi",
    ],
)
def test_nul_in_a_charset_name_parses(header: bytes):
    raw = b"From: ann@example.com\r\n" + header + b"\r\nMessage-ID: <1@x>\r\n\r\nhello \xe9\r\n"
    msg = parse_message(raw)
    assert "\x00" not in msg.subject and "\x00" not in msg.from_header
    assert msg.body.startswith("hello")


def test_a_bogus_charset_decodes_as_utf8():
    assert decode_value("=?no-such-charset?q?caf=C3=A9?=") == "café"


def test_two_from_headers_give_no_sender():
    raw = b"From: ann@example.com\r\nFrom: bob@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
    msg = parse_message(raw)
    assert msg.sender is None and msg.from_header == "ann@example.com"


# --- what the hostile-mail suite found


def test_message_ids_refuse_encoded_words_and_non_atext():
    value = "<a@b=?utf-8?q?=3E=0D=0ABcc:_v@x=0D=0A?=> <a=?utf-8?q?=00?=@x> <ok@x.y> <x@[1.2.3.4]>"
    assert message_ids(value) == ("<ok@x.y>", "<x@[1.2.3.4]>")


def test_a_double_encoded_subject_is_decoded_to_the_end_and_flattened():
    inner = "=?utf-8?b?DQpCY2M6IHZpY3RpbUB4LmV4YW1wbGU=?="  # "\r\nBcc: victim@x.example"
    raw = f"From: m@evil.example\r\nSubject: {inner}\r\n\r\nhelp\r\n".encode()
    assert parse_message(raw).subject == "Bcc: victim@x.example"


@pytest.mark.parametrize("word", ["=?utf-8?b?aGk!?=", "=?\xff?q?hi?="])
def test_header_parse_and_charset_errors_do_not_escape(word: str):
    assert decode_value(word) in (word, "hi")


# -- big mail is parsed from its skeleton ------------------------------------------------


def big_mail(attachment: bytes, text: str = "The build server crashed, dump attached.") -> bytes:
    msg = EmailMessage()
    msg["From"] = "bob@example.com"
    msg["To"] = "support@example.com"
    msg["Subject"] = "Crash dump"
    msg["Message-ID"] = "<big@example.com>"
    msg.set_content(text)
    msg.add_attachment(attachment, maintype="application", subtype="octet-stream", filename="d.bin")
    return bytes(msg)


def test_big_attachment_is_left_out_of_the_parse_but_named() -> None:
    raw = big_mail(bytes(range(256)) * 20000)  # 5 MB
    slim = skeleton(raw)
    assert len(slim) < 2000 and len(raw) > 5_000_000
    msg = parse_message(raw)
    assert msg.attachments == ("d.bin",) and msg.size == len(raw)
    assert msg.text == "The build server crashed, dump attached."
    assert msg.part_types == ("multipart/mixed", "text/plain", "application/octet-stream")


def test_huge_text_part_is_read_up_to_its_first_mebibyte_at_a_line_end() -> None:
    line = "all work and no play makes jack a dull boy\n"
    msg = parse_message(big_mail(b"x", text=line * 100_000))
    assert TEXT_PART_CAP - len(line) < len(msg.text) + 1 <= TEXT_PART_CAP
    assert msg.text.endswith("dull boy") and msg.attachments == ("d.bin",)


def test_skeleton_keeps_small_mail_and_structure_without_close_delimiter() -> None:
    small = make_mail()
    assert skeleton(small) is small
    raw = big_mail(b"\0" * 200_000)
    cut = raw[: raw.rindex(b"--")]  # no close delimiter: a broken client
    assert len(skeleton(cut)) < 2000
    assert parse_message(cut).attachments == ("d.bin",)


@pytest.mark.parametrize("path", FIXTURES[::7], ids=lambda p: p.name)
def test_skeleton_parses_like_the_whole_mail(path: Path, monkeypatch) -> None:
    raw = path.read_bytes()
    whole = parse_message(raw)
    monkeypatch.setattr("daemon.parse.BIG_PART", 64)  # leave out every body over 64 bytes
    slim = parse_message(raw)
    assert (slim.headers, slim.text, slim.html, slim.part_types, len(slim.attachments)) == (
        whole.headers,
        whole.text,
        whole.html,
        whole.part_types,
        len(whole.attachments),
    )


def test_an_undecodable_encoded_word_is_broken_not_left_for_a_lenient_decoder():
    raw = b"From: a@example.com\nSubject: T =??b?fwoNCkJjYzogdmljdGltQHguZXhhbXBsZQ!?= est\n\nx\n"
    subject = parse_message(raw).subject
    assert "=?" not in subject and subject.startswith("T = ?")


@pytest.mark.parametrize(
    "subject", [b"=?UTF-8?B?44G+44G/44KA44 B44KC?=", b"Testing =?utf-16?b?AK0gX!?= 123"]
)
def test_header_text_we_build_holds_no_encoded_word_for_a_lenient_decoder(subject: bytes):
    raw = b"From: a@example.com\r\nSubject: " + subject + b"\r\n\r\nx\r\n"
    value = parse_message(raw).subject
    assert "=?" not in value
    value.encode("utf-8")  # no lone surrogates
