"""The defects a hostile-mail and fault probe found, each through the real daemon.

Every test here failed before its fix: genuine mail swallowed as a duplicate,
one mail stopping intake, the sender rate counted at processing time, the
outbox left undrained by ``run --once``, two From headers acknowledged, control
bytes copied into outgoing bodies.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta

from sqlalchemy import func, select

from daemon.backends.base import RawMail
from daemon.ledger import arrival_time
from daemon.parse import parse_message
from daemon.store.models import Attempt, LedgerEntry, OutboxEntry, QuarantineEntry
from tests.e2e.helpers import acks, mailtriage, sent_mail, tickets
from tests.support.mail import make_mail
from web_status import create_app

NUL_SUBJECT = b"From: eve@example.com\r\nSubject: =?x\x00?q?hi?=\r\n\r\nhello\r\n"


def bare(sender: str, subject: str, body: str) -> bytes:
    """A mail with no Message-ID at all, as some scripts and old clients send."""
    return f"From: {sender}\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode()


def ledger(app) -> list[LedgerEntry]:
    with app.factory() as s:
        return list(s.scalars(select(LedgerEntry).order_by(LedgerEntry.id)))


# -- 1. a duplicate is the same mail, and names it


def test_different_mails_without_message_id_and_same_body_are_two_tickets(make_app, inbox):
    inbox(bare("ann@example.com", "VPN", "Thanks"), "a")
    inbox(bare("bob@example.com", "Printer", "Thanks"), "b")
    inbox(bare("cy@example.com", "", ""), "c")
    inbox(bare("dee@example.com", "", ""), "d")
    app = make_app()
    app.runner.run_pass()
    assert [row.outcome for row in ledger(app)] == ["ticket"] * 4


def test_the_same_bytes_twice_are_one_ticket_and_a_named_duplicate(make_app, inbox, settings):
    raw = bare("ann@example.com", "VPN", "Thanks")
    inbox(raw, "first")
    app = make_app()
    app.runner.run_pass()
    inbox(raw, "again")
    app.runner.run_pass()
    first, again = ledger(app)
    assert (first.outcome, again.outcome) == ("ticket", "duplicate")
    assert again.duplicate_of == first.id and again.ticket_id == first.ticket_id
    assert f"duplicate of mail #{first.id}" in again.reason
    page = create_app(settings).test_client().get("/mail?outcome=duplicate").get_data(True)
    assert f'duplicate of <a href="#mail-{first.id}"' in page and first.ticket_id in page


def test_same_message_id_same_sender_is_a_duplicate_even_with_other_trace_headers(make_app, inbox):
    raw = make_mail(message_id="<same@mail.example.com>")
    inbox(raw, "one")
    inbox(b"Received: from relay2 by mx\r\n" + raw, "two")
    app = make_app()
    app.runner.run_pass()
    assert [row.outcome for row in ledger(app)] == ["ticket", "duplicate"]


def test_same_message_id_from_another_sender_is_another_mail(make_app, inbox):
    inbox(make_mail(message_id="<x@mail.example.com>", sender="ann@example.com"), "one")
    inbox(make_mail(message_id="<x@mail.example.com>", sender="bob@example.com"), "two")
    app = make_app()
    app.runner.run_pass()
    assert [row.outcome for row in ledger(app)] == ["ticket", "ticket"]


# -- 2. no mail stops intake


def test_nul_charset_mail_does_not_stop_run_once(site, inbox):
    inbox(NUL_SUBJECT, "0-hostile")
    inbox(make_mail(subject="VPN drops"), "1-good")
    done = mailtriage(site, "run", "--once")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(t["subject"] for t in tickets(site)) == ["VPN drops", "hi"]
    assert list((site / "var/mail/inbox/new").iterdir()) == []


def test_unparseable_mail_with_hostile_headers_is_quarantined_with_its_reason(make_app, inbox):
    huge = b"From: =?x\x00?q?eve?= <eve@example.com>\r\nSubject: =?x\x00?q?hi?=\r\n\r\n"
    inbox(huge + b"x" * 2048, "big")
    inbox(make_mail(subject="Printer"), "good")
    app = make_app()
    app.pipeline.limits = type(app.pipeline.limits)(max_bytes=1024)
    app.runner.run_pass()
    with app.factory() as s:
        held = s.scalars(select(QuarantineEntry)).one()
    assert held.reason_code == "unparseable" and "exceeds" in held.reason
    assert "\x00" not in held.sender + held.subject and held.subject == "hi"
    assert [row.outcome for row in ledger(app)] == ["ticket"]


def test_a_bug_in_one_mail_quarantines_it_after_max_attempts_and_others_flow(
    make_app, inbox, monkeypatch
):
    app = make_app()
    real = app.pipeline.decide

    def poisoned(session, mail, msg, release=None):
        if mail.ref == "poison":
            raise RuntimeError("a bug")
        return real(session, mail, msg, release)

    monkeypatch.setattr(app.pipeline, "decide", poisoned)
    inbox(make_mail(subject="poison"), "poison")
    for i in range(3):
        inbox(make_mail(subject=f"good {i}"), f"good{i}")
        app.runner.run_pass()
    with app.factory() as s:
        held = s.scalars(select(QuarantineEntry)).one()
    assert held.ref == "poison" and held.reason_code == "failed" and "a bug" in held.reason
    assert [row.outcome for row in ledger(app)] == ["ticket"] * 3


# -- 4. the sender rate counts arrival time; held mail can be released


def _deliver_at(inbox, raw: bytes, name: str, when: float) -> None:
    os.utime(inbox(raw, name), (when, when))


def test_a_backlog_is_judged_by_arrival_not_by_processing_time(make_app, inbox):
    start = time.time() - 3 * 86400
    for i in range(30):  # one mail every 10 minutes: at most 6 in any hour
        mail = make_mail(subject=f"Question {i}", sender="ann@example.com")
        _deliver_at(inbox, mail, f"m{i:02d}", start + i * 600)
    app = make_app()
    stats = app.runner.run_pass()
    assert stats.quarantined == 0 and stats.outcomes == {"ticket": 30}


def test_a_real_flood_is_held_and_released_once_by_reason(site, make_app, inbox):
    start = time.time() - 3600
    for i in range(23):
        raw = make_mail(subject=f"Flood {i}", sender="loop@example.com")
        _deliver_at(inbox, raw, f"f{i:02d}", start + i)
    app = make_app()
    assert app.runner.run_pass().quarantined == 3
    listed = mailtriage(site, "quarantine", "list", "--reason", "sender-rate")
    assert listed.returncode == 0 and "3 quarantined mail(s)" in listed.stdout
    released = mailtriage(site, "quarantine", "release", "--reason", "sender-rate", "--by", "it")
    assert released.returncode == 0, released.stderr
    assert released.stdout.count(": ticket TKT-") == 3
    found = tickets(site)
    assert len(found) == 23
    events = [e for t in found for e in t["history"] if e["action"] == "released_from_quarantine"]
    assert len(events) == 3 and {e["actor"] for e in events} == {"it"}
    again = mailtriage(site, "quarantine", "release", "1")
    assert again.returncode == 2 and "already released" in again.stderr
    assert mailtriage(site, "quarantine", "list").stdout.strip().endswith("0 quarantined mail(s)")


def test_arrival_time_prefers_the_mailbox_then_a_plausible_date_header():
    now = datetime(2026, 1, 6, 12, 0)
    msg = parse_message(make_mail())  # Date: 2026-01-05 09:00 UTC
    backend_time = datetime(2026, 1, 6, 11, 0)
    assert arrival_time(RawMail("r", b"", backend_time), msg, now) == backend_time
    assert arrival_time(RawMail("r", b""), msg, now) == datetime(2026, 1, 5, 9, 0)
    assert arrival_time(RawMail("r", b""), msg, now + timedelta(days=30)) == now + timedelta(
        days=30
    )
    assert arrival_time(RawMail("r", b""), msg, datetime(2026, 1, 1)) == datetime(2026, 1, 1)


# -- 5. run --once drains the outbox; acknowledgements flow during a backlog


def test_run_once_sends_every_due_mail(site, inbox):
    for i in range(280):  # 560 outgoing mails: more than one sending round of 500
        inbox(make_mail(subject=f"Request {i}", sender=f"user{i}@example.com"), f"m{i:03d}")
    done = mailtriage(site, "run", "--once")
    assert done.returncode == 0, done.stderr
    assert len(acks(site)) == 280
    assert len(sent_mail(site)) == 560


def test_acknowledgements_go_out_between_batches(make_app, inbox):
    for i in range(30):
        inbox(make_mail(subject=f"Request {i}", sender=f"user{i}@example.com"), f"m{i:02d}")
    app = make_app()
    app.runner.batch = 10
    processed_at_send: list[int] = []
    real = app.sender.send_due

    def send_due(limit: int = 500) -> int:
        sent = real(limit)
        if sent:
            processed_at_send.append(app.runner.processed)
        return sent

    app.sender.send_due = send_due
    app.runner.run_pass()
    assert processed_at_send[:3] == [10, 20, 30]


# -- 6, 7. two From headers; control bytes


def test_two_from_headers_make_a_ticket_but_no_acknowledgement(site, make_app, inbox):
    raw = b"From: ann@example.com\r\nFrom: eve@evil.example\r\nSubject: VPN\r\n\r\nDown\r\n"
    inbox(raw, "two-from")
    make_app().runner.run_pass()
    assert len(tickets(site)) == 1 and acks(site) == []


def test_nul_bytes_of_a_request_never_reach_outgoing_mail(site, make_app, inbox):
    inbox(make_mail(subject="Printer", body="jam\x00med \x1b[1m tray\x07 2"), "ctl")
    make_app().runner.run_pass()
    for path in (site / "var/mail/sent/new").iterdir():
        raw = path.read_bytes()
        assert b"\x00" not in raw and b"\x1b" not in raw and max(raw) < 0x80


# -- attempts are charged only for the mail's own failures


def test_a_clean_pass_charges_one_attempt_per_mail(make_app, inbox):
    for i in range(3):
        inbox(make_mail(subject=f"Request {i}"), f"m{i}")
    app = make_app()
    app.runner.run_pass()
    with app.factory() as s:
        assert s.scalar(select(func.max(Attempt.count))) == 1
        assert s.scalar(select(func.count(OutboxEntry.id))) == 6
