"""Attachments end to end on the Maildir daemon: stored once, listed, flagged, attached."""

from __future__ import annotations

import base64
import hashlib
import re
import sqlite3
from email import message_from_bytes
from pathlib import Path

from tests.e2e.helpers import mailtriage, sent_mail, tickets
from tests.support.mail import make_mail

FIXTURES = Path(__file__).resolve().parents[1] / "data/emails"
PDF_MAIL = FIXTURES / "flanker/files/attached-pdf.eml"
HEAD = (
    "From: Bob Example <bob@example.com>\r\nTo: support@example.com\r\n"
    "Message-ID: <{mid}@mail.example.com>\r\n"
)


def _pdf_mail(mid: str) -> bytes:
    """The flanker fixture (a PDF attached), with the From and Message-ID it lacks."""
    return HEAD.format(mid=mid).encode() + PDF_MAIL.read_bytes()


def _fixture_pdf() -> bytes:
    part = next(p for p in message_from_bytes(PDF_MAIL.read_bytes()).walk() if p.get_filename())
    return part.get_payload(decode=True)


def _hostile_mail(pdf: bytes) -> bytes:
    """A request with the same PDF again, an .exe and a filename that tries everything."""
    b64 = base64.encodebytes(pdf).decode().replace("\n", "\r\n")
    exe = base64.encodebytes(b"MZ\x90\x00 not really a program").decode()
    parts = [
        "Content-Type: text/plain; charset=utf-8\r\n\r\nPlease look at these files.\r\n",
        'Content-Type: application/pdf; name="copy.pdf"\r\nContent-Transfer-Encoding: base64'
        f'\r\nContent-Disposition: attachment; filename="copy.pdf"\r\n\r\n{b64}',
        "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        f'Content-Disposition: attachment; filename="setup.exe"\r\n\r\n{exe}',
        "Content-Type: text/plain\r\nContent-Disposition: attachment;\r\n"
        " filename*=utf-8''..%2F..%2Fetc%2F%1B%5B31mpasswd%E2%80%AEtxt.sh\r\n\r\nroot:x:0:0\r\n",
    ]
    body = "".join(f"--b\r\n{p}\r\n" for p in parts) + "--b--\r\n"
    head = HEAD.format(mid="hostile") + (
        "Subject: Laptop shows odd files\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    )
    return (head + body).encode()


def _notices(site: Path) -> list:
    return [m for m in sent_mail(site) if "Assigned to you" in str(m["Subject"])]


def _run(site: Path) -> None:
    done = mailtriage(site, "run", "--once")
    assert done.returncode == 0, done.stderr


def test_a_pdf_is_listed_stored_and_carried_by_the_notice(site, inbox) -> None:
    inbox(_pdf_mail("pdf"))
    _run(site)
    [ticket] = tickets(site)
    pdf = _fixture_pdf()
    [a] = ticket["attachments"]
    assert (a["name"], a["size"], a["content_type"]) == ("test.pdf", len(pdf), "application/pdf")
    assert a["sha256"] == hashlib.sha256(pdf).hexdigest() and a["stored"] and not a["dangerous"]
    [notice] = _notices(site)
    [carried] = list(notice.iter_attachments())
    assert carried.get_filename() == "test.pdf" and carried.get_content() == pdf
    assert "test.pdf" in notice.get_body(("plain",)).get_content()
    shown = mailtriage(site, "ticket", ticket["id"])
    assert shown.returncode == 0 and re.search(rf"test\.pdf\s+{len(pdf)} bytes", shown.stdout)


def test_danger_is_flagged_names_sanitised_and_bytes_stored_once(site, inbox) -> None:
    pdf = _fixture_pdf()
    inbox(_pdf_mail("pdf"))
    inbox(_hostile_mail(pdf))
    _run(site)
    hostile = next(t for t in tickets(site) if t["subject"].startswith("Laptop"))
    by_name = {a["name"]: a for a in hostile["attachments"]}
    assert set(by_name) == {"copy.pdf", "setup.exe", "[31mpasswdtxt.sh"}
    assert by_name["setup.exe"]["dangerous"] and by_name["[31mpasswdtxt.sh"]["dangerous"]
    assert not by_name["copy.pdf"]["dangerous"]
    notice = next(m for m in _notices(site) if hostile["id"] in str(m["Subject"]))
    assert [p.get_filename() for p in notice.iter_attachments()] == ["copy.pdf"]
    text = notice.get_body(("plain",)).get_content()
    assert "setup.exe" in text and "DANGEROUS" in text
    with sqlite3.connect(site / "var/mailtriage.db") as conn:
        blobs = conn.execute("SELECT count(*) FROM attachment_blobs").fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM attachments").fetchone()[0]
    conn.close()
    assert (rows, blobs) == (4, 3)  # the PDF twice, its bytes once


def test_a_replys_attachments_join_the_ticket(site, inbox) -> None:
    inbox(make_mail(subject="VPN broken", message_id="<vpn@mail.example.com>"))
    _run(site)
    [ticket] = tickets(site)
    reply = _pdf_mail("reply").replace(
        b"Subject: test message via curl", f"Subject: Re: [{ticket['id']}] VPN".encode()
    )
    inbox(reply)
    _run(site)
    [after] = tickets(site)
    [a] = after["attachments"]
    assert a["name"] == "test.pdf" and a["from_reply"]
    assert a["message_id"] == "<reply@mail.example.com>"
