"""Working a ticket by e-mail over a real Dovecot (IMAP) and a real SMTP server (aiosmtpd).

The same life as on the Maildir desk, through the network backends: the agent's
notice and the requester's answer travel over SMTP, replies come back over IMAP,
and the reply token rides in the Message-ID both ways.
"""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from sqlalchemy import select

from daemon.scheduler import run_due
from daemon.store.models import Ticket
from daemon.store.queries import get_ticket
from tests.e2e.test_approvals import answer
from tests.support.dovecot import dovecot, make_dovecot  # noqa: F401
from tests.support.mail import make_mail
from tests.support.smtpd import smtp_server  # noqa: F401

pytestmark = [pytest.mark.realserver, pytest.mark.slow]
REQUESTER = "bob@example.com"


@pytest.fixture
def app(settings, make_app, dovecot, smtp_server):  # noqa: F811
    mailbox = dovecot.settings(support_address="support@example.com", idle=False)
    outbound = smtp_server.settings(from_address="support@example.com")
    return make_app(settings.model_copy(update={"mailbox": mailbox, "outbound": outbound}))


def _last(smtp_server, to: str, kind: str = "") -> EmailMessage:  # noqa: F811
    found = [
        r.message
        for r in smtp_server.received
        if to in r.rcpt_tos and kind in str(r.message["Subject"])
    ]
    assert found, f"nothing sent to {to} ({kind!r})"
    return found[-1]


def _ticket(app) -> dict:
    with app.factory() as s:
        return get_ticket(s, s.scalars(select(Ticket.id)).one())


def _deliver(app, dovecot, raw: bytes) -> None:  # noqa: F811
    dovecot.append(raw)
    app.runner.run_pass()


def test_an_agent_works_a_ticket_over_imap_and_smtp(app, dovecot, smtp_server, clock) -> None:  # noqa: F811
    body = "My VPN disconnects every hour."
    _deliver(app, dovecot, make_mail(subject="VPN drops", body=body, sender=REQUESTER))
    agent = _ticket(app)["assignee"]

    notice = _last(smtp_server, agent, "Assigned")
    _deliver(app, dovecot, answer(notice, "#status waiting\n\nWhich client?", sender=agent))
    reply = _last(smtp_server, REQUESTER, "Re: VPN")
    assert "Which client?" in reply.get_body(("plain",)).get_content()
    assert _ticket(app)["status"] == "waiting"

    _deliver(app, dovecot, answer(reply, "AnyConnect", sender=REQUESTER))
    assert _ticket(app)["status"] == "in_progress"
    relayed = _last(smtp_server, agent, "New reply")
    _deliver(app, dovecot, answer(relayed, "#status resolved", sender=agent))
    assert _ticket(app)["status"] == "resolved"
    assert "reopen" in _last(smtp_server, REQUESTER, "Resolved").get_body(("plain",)).get_content()

    forged = make_mail(subject=f"[{_ticket(app)['id']}] x", body="#status closed", sender=agent)
    _deliver(app, dovecot, forged)
    assert _ticket(app)["status"] == "resolved"

    clock.advance(days=8)
    run_due(app)
    assert _ticket(app)["status"] == "closed"
    assert dovecot.uids() == []  # every mail was processed and moved away
