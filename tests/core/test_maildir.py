"""The Maildir backend and transport: exact bytes in, atomic moves, idempotent writes."""

from __future__ import annotations

import os

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


def test_fetch_is_bounded_by_bytes_and_a_big_mail_comes_alone(tmp_path) -> None:
    box = MaildirBackend(tmp_path / "in")
    for name, size in (("a", 400), ("b", 400), ("c", 5000), ("d", 10)):
        deliver(box.path, b"Subject: x\r\n\r\n" + b"y" * size, name)
        os.utime(box.path / "new" / name, ns=(0, {"a": 1, "b": 2, "c": 3, "d": 4}[name]))
    first = box.fetch_new(None, 100, max_bytes=1000)
    assert [m.ref for m in first.mails] == ["a", "b"] and first.more
    for m in first.mails:
        box.ack(m.ref, AckOutcome.PROCESSED)
    second = box.fetch_new(None, 100, max_bytes=1000)
    assert [m.ref for m in second.mails] == ["c"] and second.more  # bigger than the bound: alone
    box.ack("c", AckOutcome.PROCESSED)
    assert [m.ref for m in box.fetch_new(None, 100, max_bytes=1000).mails] == ["d"]
