"""Reply-to-approve over real servers: mail arrives in Dovecot (IMAP), leaves by SMTP (aiosmtpd).

The approvers' replies are built from the request the SMTP server captured, and
appended to the support INBOX as their mail server would deliver them.
"""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from sqlalchemy import select

from daemon.scheduler import run_due
from daemon.store.models import LedgerEntry, Ticket
from daemon.store.queries import get_ticket
from tests.e2e.test_approvals import (
    BOSS,
    CFO,
    REQUESTER,
    answer,
    history,
    votes,
    with_approval,
)
from tests.support.dovecot import dovecot, make_dovecot  # noqa: F401
from tests.support.mail import make_mail
from tests.support.smtpd import smtp_server  # noqa: F401

pytestmark = [pytest.mark.realserver, pytest.mark.slow]


@pytest.fixture
def served(settings, make_app, dovecot, smtp_server):  # noqa: F811
    """An app reading Dovecot's INBOX and sending through the SMTP server."""

    def build(mode: str):
        s = with_approval(settings, (BOSS, CFO), mode)
        mailbox = dovecot.settings(support_address="support@example.com", idle=False)
        outbound = smtp_server.settings(from_address="support@example.com")
        return make_app(s.model_copy(update={"mailbox": mailbox, "outbound": outbound}))

    return build


def _sent(smtp_server, to: str, kind: str) -> list[EmailMessage]:  # noqa: F811
    return [
        r.message
        for r in smtp_server.received
        if to in r.rcpt_tos and kind in str(r.message["Subject"])
    ]


def _ticket(app) -> dict:
    with app.factory() as s:
        return get_ticket(s, s.scalars(select(Ticket.id)).one())


def test_sequential_approval_over_imap_and_smtp(served, dovecot, smtp_server) -> None:  # noqa: F811
    app = served("sequential")
    dovecot.append(
        make_mail(subject="Need admin rights", body="For the build server.", sender=REQUESTER)
    )
    app.runner.run_pass()
    assert _ticket(app)["status"] == "awaiting_approval"
    assert len(_sent(smtp_server, REQUESTER, "Received")) == 1
    [to_boss] = _sent(smtp_server, BOSS, "Approval needed")
    assert _sent(smtp_server, CFO, "Approval needed") == []

    # the boss's out-of-office answers first: no decision, and nothing goes back to it
    before = len(smtp_server.received)
    dovecot.append(
        make_mail(
            subject=f"Automatic reply: {to_boss['Subject']}",
            body="I am out of the office until Monday.",
            sender=BOSS,
            Auto_Submitted="auto-replied",
        )
    )
    app.runner.run_pass()
    assert len(smtp_server.received) == before
    assert history(_ticket(app), "approval_refused")[0]["details"]["rule"] == "automatic"

    dovecot.append(answer(to_boss, "Approved"))
    app.runner.run_pass()
    [to_cfo] = _sent(smtp_server, CFO, "Approval needed")
    # a spoofed CFO reply with the CFO's token changes nothing
    dovecot.append(answer(to_cfo, "Approve", sender='"cfo@example.com" <evil@attacker.example>'))
    dovecot.append(answer(to_cfo, "Approve - fine by me"))
    app.runner.run_pass()
    t = _ticket(app)
    assert t["status"] == "assigned" and t["assignee"]
    assert votes(t) == [(1, BOSS, "approved"), (2, CFO, "approved")]
    assert len(_sent(smtp_server, t["assignee"], "Assigned to you")) == 1
    [result] = _sent(smtp_server, REQUESTER, "Request approved")
    assert "fine by me" in result.get_body(("plain",)).get_content()
    assert not any("attacker" in rcpt for r in smtp_server.received for rcpt in r.rcpt_tos)
    assert dovecot.uids() == []  # every mail was processed and moved away


def test_any_over_imap_colleague_replay_and_late_answer(served, dovecot, smtp_server) -> None:  # noqa: F811
    app = served("any")
    dovecot.append(make_mail(subject="New laptop", body="Mine is broken.", sender=REQUESTER))
    app.runner.run_pass()
    [to_boss], [to_cfo] = (_sent(smtp_server, a, "Approval needed") for a in (BOSS, CFO))

    # a colleague who is no approver answers with the boss's token: nothing changes
    dovecot.append(answer(to_boss, "Approve", sender="colleague@example.com"))
    app.runner.run_pass()
    t = _ticket(app)
    assert t["status"] == "awaiting_approval"
    assert history(t, "approval_refused")[0]["details"]["reason"] == "not an approver of this step"

    first = answer(to_boss, "Approve - ok")
    dovecot.append(first)
    # same Message-ID from the same sender: the same mail, recorded as a duplicate
    dovecot.append(first.replace(b"Approve - ok", b"Reject", 1))
    app.runner.run_pass()
    t = _ticket(app)
    assert t["status"] == "assigned" and t["assignee"]
    assert votes(t) == [(1, BOSS, "approved"), (1, CFO, "pending")]
    with app.factory() as s:
        outcomes = s.scalars(select(LedgerEntry.outcome).order_by(LedgerEntry.id)).all()
    assert outcomes[-2:] == ["approval", "duplicate"]

    # the CFO's request became moot: the late answer is told so, by SMTP
    dovecot.append(answer(to_cfo, "Reject"))
    app.runner.run_pass()
    assert _ticket(app)["status"] == "assigned"
    assert len(_sent(smtp_server, CFO, "Already decided")) == 1
    assert len(_sent(smtp_server, REQUESTER, "Request approved")) == 1
    assert dovecot.uids() == []


def test_all_over_imap_expires_on_a_moved_clock(served, dovecot, smtp_server, clock) -> None:  # noqa: F811
    app = served("all")
    dovecot.append(make_mail(subject="VPN for a contractor", body="Please.", sender=REQUESTER))
    app.runner.run_pass()
    dovecot.append(answer(_sent(smtp_server, BOSS, "Approval needed")[0], "Approved"))
    app.runner.run_pass()
    assert _ticket(app)["status"] == "awaiting_approval"  # the CFO must approve too

    clock.advance(hours=25)
    assert run_due(app) == 1 and app.sender.send_due() == 1
    assert len(_sent(smtp_server, CFO, "Reminder")) == 1
    clock.advance(hours=48)
    run_due(app)
    app.sender.send_due()
    t = _ticket(app)
    assert t["status"] == "rejected" and t["assignee"] is None
    assert votes(t) == [(1, BOSS, "approved"), (1, CFO, "pending")]
    assert history(t, "approval_expired")[0]["details"]["waiting_on"] == [CFO]
    assert len(_sent(smtp_server, REQUESTER, "not approved in time")) == 1
