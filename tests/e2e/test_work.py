"""Working a ticket by e-mail, end to end on the embedded default (SQLite + Maildir).

An agent takes a ticket, answers (the requester receives it, threaded), sets it
waiting; the requester answers (back in progress, relayed to the agent); the
agent resolves (the requester is told how to reopen); it closes by itself. A
forged From, a forwarded command mail, an auto-reply with a command and a stale
token change nothing but leave an event.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from daemon.scheduler import run_due
from daemon.store.models import CategoryCorrection, Ticket
from daemon.store.queries import category_corrections, get_ticket
from tests.e2e.helpers import mailtriage
from tests.e2e.test_approvals import answer
from tests.support.mail import make_mail

REQUESTER = "bob@example.com"
VPN = dict(subject="VPN drops every hour", body="My VPN disconnects every hour.", sender=REQUESTER)


class Desk:
    """A site with one daemon, a clock, and the mail it has sent so far."""

    def __init__(self, app, inbox, site, clock) -> None:
        self.app, self.inbox, self.site, self.clock = app, inbox, site, clock
        self.count = 0

    def run(self, *raws: bytes) -> None:
        for raw in raws:
            self.count += 1
            self.inbox(raw, f"{self.count:04d}.eml")
        self.app.runner.run_pass()

    def tick(self, **delta) -> None:
        self.clock.advance(**delta)
        run_due(self.app)
        self.app.sender.drain()

    def sent(self, to: str, kind: str = "") -> list[EmailMessage]:
        folder = self.site / "var/mail/sent/new"
        found = []
        for path in sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime_ns):
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if to in str(msg["To"]) and kind in str(msg["Subject"]):
                found.append(msg)
        return found

    def ticket(self) -> dict:
        with self.app.factory() as s:
            tid = s.scalars(select(Ticket.id).order_by(Ticket.created_at)).first()
            return get_ticket(s, tid)

    def notice(self, agent: str) -> EmailMessage:
        """The newest mail to ``agent`` (it carries that agent's reply token)."""
        return self.sent(agent)[-1]


@pytest.fixture
def desk(make_app, inbox, site, clock) -> Desk:
    d = Desk(make_app(), inbox, site, clock)
    d.run(make_mail(**VPN))
    return d


def history(ticket: dict, action: str) -> list[dict]:
    return [h for h in ticket["history"] if h["action"] == action]


def test_take_answer_wait_requester_answers_resolve_and_auto_close(desk: Desk) -> None:
    t = desk.ticket()
    agent = t["assignee"]
    other = "sarah.net@example.com" if agent != "sarah.net@example.com" else "john.tech@example.com"
    assert agent and t["team"] == "Network Support"

    # the colleague takes it and answers in the same reply
    desk.run(answer(desk.notice(agent), f"#assign {other}", sender=agent))
    desk.run(
        answer(desk.notice(other), "#status waiting\n\nHi Bob, which VPN client?", sender=other)
    )
    t = desk.ticket()
    assert (t["assignee"], t["status"]) == (other, "waiting")
    [reply] = desk.sent(REQUESTER, "Re: VPN")
    assert "which VPN client?" in reply.get_body(("plain",)).get_content()
    assert "#status" not in reply.get_body(("plain",)).get_content()
    assert reply["In-Reply-To"] == t["source_message_id"] and t["first_response_at"]

    # the requester answers the relayed mail: back in progress, relayed to the agent
    desk.run(answer(reply, "Cisco AnyConnect 5.1", sender=REQUESTER))
    t = desk.ticket()
    assert t["status"] == "in_progress"
    assert "Cisco AnyConnect" in desk.notice(other).get_body(("plain",)).get_content()

    # the agent resolves; the requester hears how to reopen; resolved closes by itself
    desk.run(
        answer(desk.notice(other), "#status resolved\n#note reinstalled profile", sender=other)
    )
    t = desk.ticket()
    assert t["status"] == "resolved" and t["resolved_at"]
    assert (
        "reply to this e-mail"
        in desk.sent(REQUESTER, "Resolved")[0].get_body(("plain",)).get_content()
    )
    assert [c["text"] for c in t["comments"] if c["internal"]] == ["reinstalled profile"]
    desk.tick(days=8)
    assert desk.ticket()["status"] == "closed"
    assert len(desk.sent(other, "Commands")) == 2  # one per reply that held commands


def _refusals(desk: Desk) -> list[str]:
    return [h["details"]["reason"] for h in history(desk.ticket(), "command_refused")]


def test_a_forged_agent_from_without_a_token_changes_nothing(desk: Desk) -> None:
    t = desk.ticket()
    forged = make_mail(
        subject=f"[{t['id']}] hello", body="#status closed\n\nclosing", sender=t["assignee"]
    )
    desk.run(forged)
    assert desk.ticket()["status"] == t["status"]
    assert _refusals(desk) == [
        "no reply token: answer a mail mailtriage sent you about this ticket"
    ]
    assert desk.sent(REQUESTER, "Re:") == []


def test_a_token_answers_only_for_the_agent_it_was_issued_to(desk: Desk) -> None:
    t = desk.ticket()
    stolen = answer(desk.notice(t["assignee"]), "#status closed", sender="lisa.hw@example.com")
    desk.run(stolen)
    assert desk.ticket()["status"] == t["status"]
    assert _refusals(desk) == ["the reply token was not issued to you for this ticket"]


def test_a_forwarded_command_mail_and_an_auto_reply_change_nothing(desk: Desk) -> None:
    t = desk.ticket()
    notice = desk.notice(t["assignee"])
    fwd = make_mail(
        subject=f"Fwd: {notice['Subject']}",
        body="#status closed",
        sender=t["assignee"],
        In_Reply_To=str(notice["Message-ID"]),
    )
    auto = answer(notice, "#status closed", sender=t["assignee"], Auto_Submitted="auto-replied")
    desk.run(fwd, auto)
    assert desk.ticket()["status"] == t["status"]
    reasons = _refusals(desk)
    assert len(reasons) == 2 and reasons[0].startswith("forward")
    assert reasons[1].startswith("automatic")


def test_a_stale_token_changes_nothing(desk: Desk) -> None:
    t = desk.ticket()
    notice = desk.notice(t["assignee"])
    desk.clock.advance(days=31)
    desk.run(answer(notice, "#priority critical", sender=t["assignee"]))
    assert desk.ticket()["priority"] == t["priority"]
    assert _refusals(desk)[0].startswith("the reply token has expired")


def test_unknown_commands_and_bad_values_are_refused_with_the_reason(desk: Desk) -> None:
    t = desk.ticket()
    body = "#frobnicate\n#priority urgent\n#category network\n#team Nowhere\n#take"
    desk.run(answer(desk.notice(t["assignee"]), body, sender=t["assignee"]))
    assert _refusals(desk) == [
        "unknown command #frobnicate",
        "priority must be one of critical, high, medium, low",
        "the category is already network",
        "team must be one of Service Desk, Network Support, Desktop Support, "
        "Identity and Access, Security",
    ]
    [confirmation] = desk.sent(t["assignee"], "Commands: 1 applied, 4 refused")
    assert "#frobnicate" in confirmation.get_body(("plain",)).get_content()
    assert desk.sent(REQUESTER, "Re:") == []  # only commands: nothing relayed


def test_category_command_is_kept_as_a_correction_to_learn_from(desk: Desk) -> None:
    t = desk.ticket()
    desk.run(answer(desk.notice(t["assignee"]), "#category access", sender=t["assignee"]))
    assert desk.ticket()["category"] == "access"
    with desk.app.factory() as s:
        assert s.scalars(select(CategoryCorrection.new_category)).all() == ["access"]
        assert category_corrections(s)[0][1] == "access"


def test_the_requester_may_close_but_not_command(desk: Desk) -> None:
    [ack] = desk.sent(REQUESTER, "Received")
    desk.run(answer(ack, "#priority critical\n#close\n\nthanks, solved", sender=REQUESTER))
    t = desk.ticket()
    assert t["status"] == "closed" and t["priority"] != "critical"
    assert _refusals(desk) == ["a requester may only use #close"]


def test_thanks_solved_is_relayed_never_guessed_into_a_status(desk: Desk) -> None:
    [ack] = desk.sent(REQUESTER, "Received")
    before = desk.ticket()["status"]
    desk.run(answer(ack, "thanks, solved", sender=REQUESTER))
    t = desk.ticket()
    assert t["status"] == before
    assert "thanks, solved" in desk.notice(t["assignee"]).get_body(("plain",)).get_content()


def test_a_late_reply_to_a_resolved_ticket_opens_a_linked_one(desk: Desk) -> None:
    t = desk.ticket()
    desk.run(answer(desk.notice(t["assignee"]), "#status resolved", sender=t["assignee"]))
    resolved = desk.sent(REQUESTER, "Resolved")[0]
    desk.clock.advance(days=2)
    desk.run(answer(resolved, "it is back again", sender=REQUESTER))
    assert desk.ticket()["status"] == "assigned"  # within reopen_days: reopened
    desk.run(answer(desk.notice(t["assignee"]), "#status resolved", sender=t["assignee"]))
    desk.clock.advance(days=9)
    desk.run(answer(resolved, "and again", sender=REQUESTER))
    with desk.app.factory() as s:
        ids = s.scalars(select(Ticket.id).order_by(Ticket.created_at)).all()
        later = get_ticket(s, ids[-1])
    assert len(ids) == 2 and history(later, "linked")[0]["details"]["earlier"] == t["id"]


def test_an_admin_works_a_ticket_from_the_command_line(desk: Desk) -> None:
    t = desk.ticket()
    done = mailtriage(
        desk.site,
        "ticket",
        t["id"],
        "--status",
        "resolved",
        "--note",
        "fixed on site",
        "--by",
        "it.admin@example.com",
    )
    assert done.returncode == 0, done.stderr
    assert "applied: #status resolved" in done.stdout
    t = desk.ticket()
    assert t["status"] == "resolved"
    assert {h["actor"] for h in history(t, "command_applied")} == {"it.admin@example.com"}
    bad = mailtriage(desk.site, "ticket", t["id"], "--priority", "urgent")
    assert bad.returncode == 1 and "refused: #priority urgent" in bad.stdout
