"""The bytes-out writer: what it writes parses back to the same headers and text."""

from __future__ import annotations

import email
import email.policy

import pytest

from daemon.mime import HeaderInjection, alternative, header_line

HEADERS = [
    ("From", "Help Desk <help@example.com>"),
    ("To", "bob@example.com"),
    ("Subject", "[TKT-1] Drucker über dem Flur \u2013 kaputt ✓"),
    ("Message-ID", "<TKT-1.abc@example.com>"),
    ("Auto-Submitted", "auto-replied"),
]


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_headers_and_both_parts_parse_back_unchanged() -> None:
    text = "Hallo Bob,\n\nwir kümmern uns \u2013 Ticket TKT-1.\n" + "x" * 2000
    msg = parsed(alternative(HEADERS, text, "<p>Grüße</p>"))
    for name, value in HEADERS:
        assert msg[name] == value
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain.get_content().replace("\r\n", "\n").rstrip("\n") == text.rstrip("\n")
    assert html.get_content().strip() == "<p>Grüße</p>"
    assert not msg.defects and not plain.defects


def test_the_message_is_seven_bit_with_short_crlf_lines() -> None:
    raw = alternative(HEADERS, "é" * 3000 + "\nplain", "<b>" + "y" * 1500 + "</b>")
    assert max(raw) < 128
    lines = raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    assert b"\n" not in raw.replace(b"\r\n", b"")


def test_ascii_short_text_goes_out_7bit() -> None:
    raw = alternative(HEADERS[:2], "Hello\nBob", "<p>Hello</p>")
    assert b"Content-Transfer-Encoding: 7bit\r\n\r\nHello\r\nBob\r\n" in raw


@pytest.mark.parametrize("value", ["a\r\nBcc: eve@example.com", "a\nb", "a\x00b"])
def test_line_breaks_and_nul_in_a_header_value_are_refused(value: str) -> None:
    with pytest.raises(HeaderInjection):
        header_line("Subject", value)


def test_a_long_ascii_header_is_folded_not_cut() -> None:
    refs = " ".join(f"<ref-{i}-{'z' * 60}@example.com>" for i in range(20))
    line = header_line("References", refs)
    assert all(len(part) <= 998 for part in line.split("\r\n"))
    assert parsed(f"{line}\r\n\r\n".encode())["References"] == refs
