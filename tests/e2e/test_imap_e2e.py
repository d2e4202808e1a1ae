"""End to end over real servers: the daemon reads Dovecot (IMAP) and answers through aiosmtpd.

The app is the one ``mailtriage run`` builds (``build_app`` with
``mailbox.backend = "imap"`` and ``outbound.transport = "smtp"``); mail is
APPENDed to the private Dovecot's INBOX as a mail server would deliver it, and
what the daemon sends is captured by the SMTP server.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy import select

from config.schema import Settings
from daemon.app import App
from daemon.backends.smtp import crlf
from daemon.clock import ManualClock
from daemon.store.models import OutboxEntry
from daemon.store.queries import failed_outbox, list_tickets
from tests.support.dovecot import DovecotServer, dovecot, make_dovecot  # noqa: F401
from tests.support.drive import Killed
from tests.support.faultproxy import FaultProxy, fault_proxy  # noqa: F401
from tests.support.mail import make_mail
from tests.support.smtpd import SmtpServer, smtp_server  # noqa: F401

pytestmark = [pytest.mark.realserver, pytest.mark.slow]

SUBJECTS = ("Printer jammed on floor 2", "VPN drops every hour", "Password expired")


@pytest.fixture
def served(
    settings: Settings,
    make_app: Callable[..., App],
    dovecot: DovecotServer,  # noqa: F811
    smtp_server: SmtpServer,  # noqa: F811
) -> Callable[..., App]:
    """Build an app reading Dovecot's INBOX and sending through the SMTP capture."""

    def build(*, crash: Callable[[str], None] | None = None, **mailbox: object) -> App:
        box = dovecot.settings(support_address="support@example.com", **mailbox)
        out = smtp_server.settings(from_address="support@example.com")
        return make_app(settings.model_copy(update={"mailbox": box, "outbound": out}), crash=crash)

    return build


def tickets(app: App) -> list[dict]:
    """Every ticket the app stored."""
    with app.factory() as session:
        return list_tickets(session)


def acks(smtp: SmtpServer) -> list:
    """Acknowledgements the SMTP server captured (parsed messages)."""
    return [r.message for r in smtp.received if "] Received:" in str(r.message["Subject"])]


def deliver(server: DovecotServer, n: int = len(SUBJECTS), body: str = "") -> list[bytes]:
    """APPEND ``n`` requests to INBOX (CRLF, as delivered); return their bytes."""
    mails = [
        crlf(
            make_mail(
                subject=SUBJECTS[i % len(SUBJECTS)],
                body=(body or "It stopped working this morning.") + f"\n\nBob {i}",
                message_id=f"<imap-{i}@mail.example.com>",
            )
        )
        for i in range(n)
    ]
    for raw in mails:
        server.append(raw)
    return mails


def assert_exactly_once(app: App, smtp: SmtpServer, n: int) -> None:
    """n tickets, one per mail, each acknowledged once at the SMTP server."""
    found = tickets(app)
    assert sorted(t["source_message_id"] for t in found) == sorted(
        f"<imap-{i}@mail.example.com>" for i in range(n)
    )
    per_ticket = Counter(str(m["X-Mailtriage-Ticket"]) for m in acks(smtp))
    assert per_ticket == Counter({t["id"]: 1 for t in found})


def test_mail_in_the_inbox_becomes_one_ticket_and_its_ack_reaches_smtp(
    served: Callable[..., App],
    dovecot: DovecotServer,  # noqa: F811
    smtp_server: SmtpServer,  # noqa: F811
) -> None:
    [raw] = deliver(dovecot, 1)
    app = served()
    app.runner.run_pass()
    [ticket] = tickets(app)
    assert dovecot.messages("INBOX") == [] and dovecot.messages("Processed") == [raw]
    [ack] = acks(smtp_server)
    [envelope] = [r for r in smtp_server.received if r.message is ack]
    assert envelope.rcpt_tos == ["bob@example.com"] and envelope.login == smtp_server.user
    assert f"[{ticket['id']}]" in ack["Subject"]
    assert ack["Message-ID"] and ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == "<imap-0@mail.example.com>"
    assert b"\r\n" in envelope.raw and b"\n" not in envelope.raw.replace(b"\r\n", b"")
    app.runner.run_pass()  # nothing new: nothing more
    assert len(tickets(app)) == 1 and len(acks(smtp_server)) == 1


def test_uidvalidity_change_before_the_ack_makes_no_duplicate(
    served: Callable[..., App],
    dovecot: DovecotServer,  # noqa: F811
    smtp_server: SmtpServer,  # noqa: F811
) -> None:
    deliver(dovecot)

    def crash(point: str) -> None:
        if point == "after_commit":
            raise Killed(point)

    with pytest.raises(Killed):
        served(crash=crash).runner.run_pass()  # the batch committed, never moved
    assert len(dovecot.uids("INBOX")) == len(SUBJECTS)
    dovecot.reset_uidvalidity()  # every UID the ledger knows is now meaningless
    app = served()
    stats = app.runner.run_pass()
    # Every committed mail is absorbed by the content key under its new UID.
    assert stats.outcomes.get("duplicate") == len(SUBJECTS)
    assert_exactly_once(app, smtp_server, len(SUBJECTS))
    assert dovecot.uids("INBOX") == [] and len(dovecot.uids("Processed")) == len(SUBJECTS)


def test_connection_dropped_mid_fetch_ends_with_one_ticket_per_mail(
    served: Callable[..., App],
    dovecot: DovecotServer,  # noqa: F811
    smtp_server: SmtpServer,  # noqa: F811
    fault_proxy: Callable[..., FaultProxy],  # noqa: F811
) -> None:
    deliver(dovecot, body="Log attached.\n" + "x" * 70 + "\n" * 1 + ("y" * 76 + "\n") * 2000)
    proxy = fault_proxy(dovecot.port)
    app = served(port=proxy.port)
    proxy.drop_after(60_000)  # inside the first 150 kB literal
    app.runner.run_pass()
    assert proxy.accepted >= 2  # the cut connection was replaced
    assert_exactly_once(app, smtp_server, len(SUBJECTS))
    assert dovecot.uids("INBOX") == []


def test_idle_turns_new_mail_into_an_acknowledged_ticket_within_a_second(
    served: Callable[..., App],
    dovecot: DovecotServer,  # noqa: F811
    smtp_server: SmtpServer,  # noqa: F811
) -> None:
    app = served(idle=True, poll_seconds=60)  # polling would take a minute
    worker = threading.Thread(target=app.runner.run_forever, kwargs={"idle_timeout": 60})
    worker.start()
    latencies = []
    try:
        for i in range(5):
            time.sleep(1.2)  # the pass is done and the runner waits in IDLE
            started = time.monotonic()
            dovecot.append(make_mail(subject=f"Monitor {i} flickers", sender=f"u{i}@example.com"))
            while len(acks(smtp_server)) <= i and time.monotonic() - started < 10:
                time.sleep(0.01)
            latencies.append(time.monotonic() - started)
    finally:
        app.runner.stop()
        worker.join(timeout=10)
    assert not worker.is_alive()
    assert len(acks(smtp_server)) == 5 and len(tickets(app)) == 5
    assert sorted(latencies)[2] < 1.0, latencies  # the median
    assert max(latencies) < 3.0, latencies


def outbox(app: App) -> list[OutboxEntry]:
    """Every outbox row, oldest first (detached copies)."""
    with app.factory() as session:
        rows = list(session.scalars(select(OutboxEntry).order_by(OutboxEntry.id)))
        session.expunge_all()
        return rows


def test_smtp_deferral_is_retried_from_the_outbox_and_a_refusal_is_recorded(
    served: Callable[..., App],
    dovecot: DovecotServer,  # noqa: F811
    smtp_server: SmtpServer,  # noqa: F811
    clock: ManualClock,
) -> None:
    deliver(dovecot, 1)
    app = served()
    smtp_server.fail_next(451, n=50)
    app.runner.run_pass()
    deferred = outbox(app)
    assert deferred and smtp_server.received == []
    for row in deferred:
        assert row.status == "pending" and row.attempts == 1 and "451 4.3.0" in row.last_error
        assert row.next_attempt_at > clock.now()  # backoff: not before its time
    smtp_server.clear_failures()
    assert app.sender.send_due() == 0
    clock.advance(minutes=5)
    assert app.sender.send_due() == len(deferred)
    assert {r.status for r in outbox(app)} == {"sent"} and len(acks(smtp_server)) == 1

    before = len(outbox(app))
    dovecot.append(crlf(make_mail(subject="Scanner offline", sender="gone@example.com")))
    smtp_server.fail_next(550, n=50, stage="RCPT")
    app.runner.run_pass()
    refused = outbox(app)[before:]
    assert refused and all(r.status == "failed" for r in refused)
    assert all("550 5.1.1 Mailbox unavailable" in r.last_error for r in refused)
    with app.factory() as session:  # what the status page lists as failed
        assert {r.id for r in failed_outbox(session)} == {r.id for r in refused}


def test_poison_mail_goes_to_the_quarantine_folder_and_the_others_flow(
    served: Callable[..., App],
    dovecot: DovecotServer,  # noqa: F811
    smtp_server: SmtpServer,  # noqa: F811
) -> None:
    deliver(dovecot, 2)
    poison = b"this is not a mail at all, no headers, just text\r\n"
    dovecot.append(poison)
    app = served()
    stats = app.runner.run_pass()
    assert stats.quarantined == 1
    assert dovecot.messages("Quarantine") == [poison]
    assert dovecot.uids("INBOX") == [] and len(dovecot.uids("Processed")) == 2
    assert_exactly_once(app, smtp_server, 2)
