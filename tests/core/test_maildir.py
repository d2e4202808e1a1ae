"""The Maildir backend and transport: exact bytes in, atomic moves, idempotent writes."""

from __future__ import annotations

from daemon.backends.base import AckOutcome, OutgoingMail
from daemon.backends.maildir import MaildirBackend, MaildirTransport, deliver


def test_fetch_returns_exact_bytes_oldest_first_and_ack_moves(tmp_path) -> None:
    box = MaildirBackend(tmp_path / "in")
    deliver(box.path, b"Subject: one\r\n\r\nbody\r\n", "a")
    deliver(box.path, b"Subject: two\r\n\r\nbody\r\n", "b")
    got = box.fetch_new(None, 10)
    assert [m.raw for m in got.mails] == [
        b"Subject: one\r\n\r\nbody\r\n",
        b"Subject: two\r\n\r\nbody\r\n",
    ]
    assert box.fetch_new(None, 1).more is True
    box.ack("a", AckOutcome.PROCESSED)
    box.ack("b", AckOutcome.QUARANTINED)
    box.ack("a", AckOutcome.PROCESSED)  # idempotent
    assert (box.path / "cur" / "a:2,S").exists()
    assert (box.path / ".Quarantine" / "cur" / "b:2,S").exists()
    assert box.fetch_new(None, 10).mails == []


def test_transport_writes_one_file_per_message_id(tmp_path) -> None:
    out = MaildirTransport(tmp_path / "sent")
    mail = OutgoingMail("<x@y>", "support@example.com", ("a@example.com",), b"Subject: hi\r\n\r\nx")
    out.send(mail)
    out.send(mail)  # a resend after a crash
    files = list((tmp_path / "sent" / "new").iterdir())
    assert len(files) == 1 and files[0].read_bytes() == mail.raw
