"""Reply-to-approve end to end on the embedded default (SQLite + Maildir).

Every category gets the approvers under test, so whatever the classifier picks,
the request needs approval. Approvers answer the request mails the maildir
transport wrote, exactly as a mail client would.
"""

from __future__ import annotations

import email
import json
import re
from datetime import timedelta
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sqlalchemy import select

from daemon.approvals import trusts_authentication_results
from daemon.scheduler import run_due, start_scheduler
from daemon.store.models import Approval, LedgerEntry, Ticket
from daemon.store.queries import get_ticket
from tests.e2e.helpers import acks, mailtriage, sent_mail, tickets
from tests.support.mail import make_mail

BOSS, CFO, CTO = "boss@example.com", "cfo@example.com", "cto@example.com"
REQUESTER = "alice@example.com"
TOKEN = re.compile(r"\[(APR-[A-Z2-7]{16})\]")
HREF = re.compile(r'href="(mailto:[^"]+)"')


# -- helpers ------------------------------------------------------------------------------------


def with_approval(settings, approvers, mode="any", **approval):
    """``settings`` with every category needing ``approvers`` under ``mode``."""
    cats = [
        c.model_copy(update={"approvers": list(approvers), "approval": mode})
        for c in settings.categories
    ]
    return settings.model_copy(
        update={"categories": cats, "approval": settings.approval.model_copy(update=approval)}
    )


@pytest.fixture
def desk(settings, make_app, inbox, site):
    """Build an app whose categories need the given approvers; return a small driver."""

    def build(approvers=(BOSS, CFO), mode="any", **approval):
        return Driver(make_app(with_approval(settings, approvers, mode, **approval)), inbox, site)

    return build


class Driver:
    """Deliver mail, run passes and jobs, read the outbox and the ticket."""

    def __init__(self, app, inbox, site) -> None:
        self.app, self.inbox, self.site = app, inbox, site

    def run(self, *raws: bytes) -> None:
        for raw in raws:
            self.inbox(raw)
        self.app.runner.run_pass()

    def jobs(self) -> int:
        changed = run_due(self.app)
        self.app.sender.send_due()
        return changed

    def open_request(self, subject="New laptop for the design team") -> str:
        body = "We need a new laptop for Carol, the current one is 6 years old.\n\nAlice"
        self.run(make_mail(subject=subject, body=body, sender=f"Alice <{REQUESTER}>"))
        with self.app.factory() as s:
            return s.scalars(select(Ticket.id).order_by(Ticket.created_at.desc())).first()

    def ticket(self, ticket_id: str) -> dict:
        with self.app.factory() as s:
            return get_ticket(s, ticket_id)

    def sent(self, to: str | None = None, kind: str = "") -> list[EmailMessage]:
        mails = sent_mail(self.site) if (self.site / "var/mail/sent/new").exists() else []
        return [
            m for m in mails if (to is None or to in str(m["To"])) and kind in str(m["Subject"])
        ]

    def requests(self, to: str) -> list[EmailMessage]:
        return self.sent(to, "Approval needed")


def token(mail: EmailMessage) -> str:
    return TOKEN.search(str(mail["Subject"]))[1]


def answer(request: EmailMessage, body: str = "Approved, go ahead", sender=None, **headers):
    """A reply to ``request`` as a mail client writes it (the request quoted below)."""
    quoted = "\n".join(
        "> " + line for line in request.get_body(("plain",)).get_content().split("\n")
    )
    return make_mail(
        subject=f"Re: {request['Subject']}",
        body=f"{body}\n\nOn Mon, 5 Jan 2026 at 09:00, IT Support <support@example.com> wrote:\n{quoted}\n",
        sender=sender or str(request["To"]),
        In_Reply_To=str(request["Message-ID"]),
        References=str(request["Message-ID"]),
        **headers,
    )


def actions(ticket: dict) -> list[str]:
    return [h["action"] for h in ticket["history"]]


def history(ticket: dict, action: str) -> list[dict]:
    return [h for h in ticket["history"] if h["action"] == action]


def votes(ticket: dict) -> list[tuple]:
    return [(a["step"], a["approver"], a["decision"]) for a in ticket["approvals"]]


# -- the three policies -------------------------------------------------------------------------


def test_any_first_approval_assigns_and_everyone_is_told(desk) -> None:
    d = desk(mode="any")
    tid = d.open_request()
    t = d.ticket(tid)
    assert t["status"] == "awaiting_approval" and t["assignee"] is None
    assert t["sla_due_at"] is None  # the SLA clock starts at assignment
    [ack] = acks(d.site)
    assert "needs approval" in ack.get_body(("plain",)).get_content()
    [to_boss], [to_cfo] = d.requests(BOSS), d.requests(CFO)
    subject = str(to_boss["Subject"])
    assert subject.startswith(f"[{tid}] [APR-") and token(to_boss) != token(to_cfo)
    assert not re.match(r"(?i)\W*(approve|reject)", re.sub(r"\[[^\]]*\]", "", subject))
    assert to_boss["Auto-Submitted"] == "auto-generated"
    text = to_boss.get_body(("plain",)).get_content()
    assert "APPROVE or REJECT as the first word" in text and f"[{token(to_boss)}]" in text
    assert votes(t) == [(1, BOSS, "pending"), (1, CFO, "pending")]
    assert history(t, "approval_requested")[0]["details"]["approvers"] == [BOSS, CFO]

    d.run(answer(to_boss, "Approved, go ahead"))
    t = d.ticket(tid)
    assert t["status"] == "assigned" and t["assignee"] and t["sla_due_at"]
    assert votes(t) == [(1, BOSS, "approved"), (1, CFO, "pending")]
    assert t["approvals"][0]["decided_at"].endswith("Z") and t["approvals"][1]["decided_at"] is None
    assert history(t, "approval_approved")[0]["actor"] == BOSS
    assert history(t, "approval_approved")[0]["details"]["comment"] == "go ahead"
    [notice] = d.sent(t["assignee"], "Assigned to you")
    assert "approved by boss@example.com" in notice.get_body(("plain",)).get_content()
    [result] = d.sent(REQUESTER, "Request approved")
    assert "go ahead" in result.get_body(("plain",)).get_content()

    # the CFO's request became moot: a late answer changes nothing and is told so
    d.run(answer(to_cfo, "Reject"))
    t = d.ticket(tid)
    assert t["status"] == "assigned" and votes(t)[1] == (1, CFO, "pending")
    assert history(t, "approval_refused")[-1]["details"]["reason"] == "already decided"
    assert len(d.sent(CFO, "Already decided")) == 1


def test_all_needs_every_approver(desk) -> None:
    d = desk(mode="all")
    tid = d.open_request()
    [to_boss], [to_cfo] = d.requests(BOSS), d.requests(CFO)
    d.run(answer(to_boss))
    t = d.ticket(tid)
    assert t["status"] == "awaiting_approval" and votes(t)[0] == (1, BOSS, "approved")
    d.run(answer(to_cfo, "APPROVED."))
    t = d.ticket(tid)
    assert t["status"] == "assigned"
    assert votes(t) == [(1, BOSS, "approved"), (1, CFO, "approved")]
    assert len(d.sent(REQUESTER, "Request approved")) == 1


def test_sequential_asks_each_approver_only_on_their_turn(desk) -> None:
    d = desk(approvers=(BOSS, CFO, CTO), mode="sequential")
    tid = d.open_request()
    assert len(d.requests(BOSS)) == 1 and d.requests(CFO) == [] and d.requests(CTO) == []
    d.run(answer(d.requests(BOSS)[0]))
    assert len(d.requests(CFO)) == 1 and d.requests(CTO) == []
    assert "step 2 of 3" in d.requests(CFO)[0].get_body(("plain",)).get_content()
    d.run(answer(d.requests(CFO)[0], "approve"))
    assert d.ticket(tid)["status"] == "awaiting_approval" and len(d.requests(CTO)) == 1
    d.run(answer(d.requests(CTO)[0], "Approve"))
    t = d.ticket(tid)
    assert t["status"] == "assigned"
    assert votes(t) == [(1, BOSS, "approved"), (2, CFO, "approved"), (3, CTO, "approved")]
    assert [h["details"]["step"] for h in history(t, "approval_requested")] == [1, 2, 3]


def test_rejection_closes_the_ticket_and_passes_the_comment_on(desk) -> None:
    d = desk(mode="sequential")
    tid = d.open_request()
    d.run(answer(d.requests(BOSS)[0], "Rejected - too expensive, please use the standard model."))
    t = d.ticket(tid)
    assert t["status"] == "rejected" and t["assignee"] is None
    assert votes(t) == [(1, BOSS, "rejected"), (2, CFO, "pending")]
    assert d.requests(CFO) == []  # never their turn
    [rejected] = history(t, "approval_rejected")
    assert rejected["details"]["comment"] == "too expensive, please use the standard model."
    [result] = d.sent(REQUESTER, "Request rejected")
    assert (
        "too expensive, please use the standard model." in result.get_body(("plain",)).get_content()
    )
    assert d.sent(kind="Assigned to you") == []


# -- who may decide -----------------------------------------------------------------------------


def test_spoofed_senders_are_refused(desk) -> None:
    d = desk(approvers=(BOSS,))
    tid = d.open_request()
    [req] = d.requests(BOSS)
    d.run(
        answer(req, sender='"boss@example.com" <evil@attacker.example>'),
        answer(req, sender="Boss <mallory@example.com>"),
    )
    t = d.ticket(tid)
    assert t["status"] == "awaiting_approval" and votes(t) == [(1, BOSS, "pending")]
    rules = [h["details"]["rule"] for h in history(t, "approval_refused")]
    assert rules == ["from", "sender"]
    assert d.sent("attacker.example") == [] and d.sent("mallory") == []
    # the real approver's token still works afterwards
    d.run(answer(req, sender="The Boss <BOSS@Example.com>"))
    assert d.ticket(tid)["status"] == "assigned"


def test_two_from_headers_are_refused(desk) -> None:
    d = desk(approvers=(BOSS,))
    tid = d.open_request()
    raw = answer(d.requests(BOSS)[0])
    d.run(raw.replace(b"From: boss@example.com", b"From: boss@example.com\nFrom: x@example.com", 1))
    t = d.ticket(tid)
    assert t["status"] == "awaiting_approval"
    assert history(t, "approval_refused")[0]["details"]["rule"] == "from"


def test_a_colleague_who_is_no_approver_cannot_decide(desk) -> None:
    d = desk(approvers=(BOSS, CFO), mode="all")
    tid = d.open_request()
    d.run(answer(d.requests(BOSS)[0], sender="colleague@example.com"))
    d.run(answer(d.requests(BOSS)[0], sender=CFO))  # another approver, someone else's token
    t = d.ticket(tid)
    assert votes(t) == [(1, BOSS, "pending"), (1, CFO, "pending")]
    reasons = [h["details"]["reason"] for h in history(t, "approval_refused")]
    assert reasons == [
        "not an approver of this step",
        "the token was issued to another approver of this step",
    ]


def test_out_of_office_reply_never_decides_and_is_never_answered(desk) -> None:
    d = desk(approvers=(BOSS,))
    tid = d.open_request()
    [req] = d.requests(BOSS)
    before = len(d.sent())
    d.run(
        make_mail(
            subject=f"Automatic reply: {req['Subject']}",
            body="Approved leave: I am out of the office until Monday.",
            sender=BOSS,
            Auto_Submitted="auto-replied",
            In_Reply_To=str(req["Message-ID"]),
        )
    )
    t = d.ticket(tid)
    assert t["status"] == "awaiting_approval" and votes(t) == [(1, BOSS, "pending")]
    [refused] = history(t, "approval_refused")
    assert (
        refused["details"]["rule"] == "automatic" and "auto-reply" in refused["details"]["reason"]
    )
    assert len(d.sent()) == before  # nothing sent to an auto-reply


def test_forwarded_mail_never_decides(desk) -> None:
    d = desk(approvers=(BOSS,))
    tid = d.open_request()
    [req] = d.requests(BOSS)
    fw = make_mail(subject=f"FW: {req['Subject']}", body="Approve", sender=BOSS)
    wg = make_mail(subject=f"Re: WG: {req['Subject']}", body="Approve", sender=BOSS)
    resent = answer(req, Resent_From="boss@example.com", Resent_To="support@example.com")
    d.run(fw, wg, resent)
    t = d.ticket(tid)
    assert t["status"] == "awaiting_approval"
    assert [h["details"]["rule"] for h in history(t, "approval_refused")] == ["forward"] * 3


def _message_id(raw: bytes) -> str:
    return str(email.message_from_bytes(raw)["Message-ID"]).strip()


def test_a_used_token_is_never_counted_again(desk) -> None:
    d = desk(mode="all")
    tid = d.open_request()
    [req] = d.requests(BOSS)
    first = answer(req, "Approve")
    d.run(first)
    d.run(first)  # the identical mail again: the ledger recognises it
    d.run(answer(req, "Reject, changed my mind"))  # a new mail with the used token
    # Same Message-ID from the same sender, other body: the same mail, so the ledger
    # records it as a duplicate of the first reply and no vote is counted.
    replay = first.replace(b"Approve", b"Reject!", 1)
    d.run(replay)
    t = d.ticket(tid)
    assert t["status"] == "awaiting_approval" and votes(t)[0] == (1, BOSS, "approved")
    assert [h["details"]["rule"] for h in history(t, "approval_refused")] == ["decided"]
    assert len(d.sent(BOSS, "Already decided")) == 1
    with d.app.factory() as s:
        rows = s.scalars(
            select(LedgerEntry).where(LedgerEntry.message_id == _message_id(first))
        ).all()
    assert [r.outcome for r in rows] == ["approval", "duplicate", "duplicate"]
    assert {r.duplicate_of for r in rows[1:]} == {rows[0].id}


def test_delegates_are_refused_unless_allowed(desk) -> None:
    d = desk(approvers=(BOSS,))
    tid = d.open_request()
    [req] = d.requests(BOSS)
    d.run(answer(req, Sender="Assistant <assistant@example.com>"))
    t = d.ticket(tid)
    assert t["status"] == "awaiting_approval"
    assert history(t, "approval_refused")[0]["details"]["rule"] == "delegate"


def test_delegates_count_when_allowed(desk) -> None:
    d = desk(approvers=(BOSS,), allow_delegates=True)
    tid = d.open_request()
    d.run(answer(d.requests(BOSS)[0], Sender="assistant@example.com"))
    assert d.ticket(tid)["status"] == "assigned"


def test_failed_dmarc_in_trusted_authentication_results_is_refused(desk) -> None:
    d = desk(approvers=(BOSS,), trust_authentication_results=True, authserv_id="mx.example.com")
    tid = d.open_request()
    [req] = d.requests(BOSS)
    forged = answer(
        req,
        Authentication_Results="mx.example.com; spf=fail smtp.mailfrom=example.com; "
        "dmarc=fail (p=reject) header.from=example.com",
    )
    d.run(forged)
    t = d.ticket(tid)
    assert t["status"] == "awaiting_approval"
    assert history(t, "approval_refused")[0]["details"]["rule"] == "authentication"
    d.run(answer(req, Authentication_Results="mx.example.com; dmarc=pass header.from=example.com"))
    assert d.ticket(tid)["status"] == "assigned"


def test_authentication_results_are_ignored_unless_enabled(desk) -> None:
    d = desk(approvers=(BOSS,))
    tid = d.open_request()
    d.run(answer(d.requests(BOSS)[0], Authentication_Results="mx.example.com; dmarc=fail"))
    assert d.ticket(tid)["status"] == "assigned"


# -- what the reply says ------------------------------------------------------------------------


def test_ambiguous_reply_gets_exactly_one_help_reply(desk) -> None:
    d = desk(approvers=(BOSS,))
    tid = d.open_request()
    [req] = d.requests(BOSS)
    d.run(answer(req, "What does it cost? I would approve if under 2000."))
    [help_mail] = d.sent(BOSS, "How to answer")
    assert f"[{token(req)}]" in str(help_mail["Subject"])
    assert "APPROVE or REJECT" in help_mail.get_body(("plain",)).get_content()
    assert help_mail["In-Reply-To"] and help_mail["Auto-Submitted"] == "auto-replied"
    d.run(answer(req, "Hmm, not sure yet"))
    assert len(d.sent(BOSS, "How to answer")) == 1  # rate-limited
    t = d.ticket(tid)
    assert [h["details"]["help_sent"] for h in history(t, "approval_ignored")] == [True, False]
    assert token(req) not in json.dumps(t) and "APR-[redacted]" in json.dumps(t)
    assert t["status"] == "awaiting_approval"
    # answering the help mail itself works: it carries the same token
    d.run(answer(help_mail, "Approve", sender=BOSS))
    assert d.ticket(tid)["status"] == "assigned"


def test_negated_reply_is_no_decision(desk) -> None:
    d = desk(approvers=(BOSS,))
    tid = d.open_request()
    d.run(answer(d.requests(BOSS)[0], "Not approved until we see a quote."))
    assert d.ticket(tid)["status"] == "awaiting_approval"
    assert len(d.sent(BOSS, "How to answer")) == 1


def test_html_only_reply_is_read(desk) -> None:
    d = desk(approvers=(BOSS,))
    tid = d.open_request()
    [req] = d.requests(BOSS)
    msg = EmailMessage()
    msg["From"] = "Boss <boss@example.com>"
    msg["To"] = "support@example.com"
    msg["Subject"] = f"RE: {req['Subject']}"
    msg["Message-ID"] = "<html-only@mail.example.com>"
    msg["In-Reply-To"] = str(req["Message-ID"])
    msg.set_content(
        "<html><body><div>Approve &ndash; thanks</div><div id='divRplyFwdMsg'><hr>"
        "<b>From:</b> IT Support &lt;support@example.com&gt;<br><b>Sent:</b> Monday<br>"
        f"<b>To:</b> boss@example.com<br><b>Subject:</b> {req['Subject']}</div>"
        "<div>Reply with APPROVE or REJECT as the first word.</div></body></html>",
        subtype="html",
    )
    d.run(bytes(msg))
    t = d.ticket(tid)
    assert t["status"] == "assigned"
    assert history(t, "approval_approved")[0]["details"]["comment"] == "thanks"


def test_the_approve_button_decides_by_subject_alone(desk) -> None:
    d = desk(approvers=(BOSS,))
    tid = d.open_request()
    [req] = d.requests(BOSS)
    html = req.get_body(("html",)).get_content()
    approve, reject = HREF.findall(html)
    link = urlsplit(approve.replace("&amp;", "&"))
    assert link.path == "support@example.com"
    assert "%5BAPR-" in approve and "REJECT" in unquote(reject)
    subject = parse_qs(link.query)["subject"][0]
    assert subject == f"APPROVE [{tid}] [{token(req)}]"
    quoted_only = "> " + "\n> ".join(req.get_body(("plain",)).get_content().split("\n"))
    d.run(make_mail(subject=subject, body=quoted_only, sender=BOSS))
    t = d.ticket(tid)
    assert t["status"] == "assigned"
    assert history(t, "approval_approved")[0]["details"]["read_from"] == "subject"


def test_plus_addressed_reply_to_carries_the_token(desk) -> None:
    d = desk(approvers=(BOSS,), plus_address=True)
    tid = d.open_request()
    [req] = d.requests(BOSS)
    assert req["Reply-To"] == f"support+{token(req)}@example.com"
    assert f"mailto:support+{token(req)}@example.com?" in req.get_body(("html",)).get_content()
    # a client that drops the tags from the subject and the quote from the body
    d.run(make_mail(subject="Re: laptop", body="Approved", sender=BOSS, to=str(req["Reply-To"])))
    assert d.ticket(tid)["status"] == "assigned"


def test_reply_without_token_is_answered_with_how_to(desk) -> None:
    d = desk(approvers=(BOSS,))
    tid = d.open_request()
    [req] = d.requests(BOSS)
    d.run(
        make_mail(
            subject="Re: laptop", body="Approved", sender=BOSS, In_Reply_To=str(req["Message-ID"])
        )
    )
    t = d.ticket(tid)
    assert t["status"] == "awaiting_approval" and t["comments"] == []
    assert (
        history(t, "approval_refused")[0]["details"]["reason"] == "no approval token in the reply"
    )
    [how] = d.sent(BOSS, "How to answer")
    assert "APR-" not in str(how["Subject"])  # never hand a token to an unverified reply


# -- reminders and expiry -----------------------------------------------------------------------


def test_reminder_once_per_period_with_a_working_token(desk, clock) -> None:
    d = desk(mode="all")  # remind after 24 h, expire after 72 h
    tid = d.open_request()
    [first] = d.requests(BOSS)
    clock.advance(hours=23)
    assert d.jobs() == 0
    clock.advance(hours=2)
    assert d.jobs() == 2 and d.jobs() == 0
    [reminder] = d.sent(BOSS, "Reminder")
    assert token(reminder) != token(first) and reminder["In-Reply-To"] == first["Message-ID"]
    assert len(d.sent(CFO, "Reminder")) == 1
    d.run(answer(reminder, "Approve"))
    clock.advance(hours=24)
    assert d.jobs() == 1  # only the CFO is still waited for
    assert len(d.sent(BOSS, "Reminder")) == 1 and len(d.sent(CFO, "Reminder")) == 2
    d.run(answer(d.requests(CFO)[0]))  # the first request's token still works
    assert d.ticket(tid)["status"] == "assigned"
    assert len(history(d.ticket(tid), "approval_reminded")) == 3


def test_expiry_rejects_by_default(desk, clock) -> None:
    d = desk()
    tid = d.open_request()
    [req] = d.requests(BOSS)
    clock.advance(hours=71)
    d.jobs()
    assert d.ticket(tid)["status"] == "awaiting_approval"
    clock.advance(hours=2)
    assert d.jobs() >= 1
    t = d.ticket(tid)
    assert t["status"] == "rejected"
    assert history(t, "approval_expired")[0]["details"]["waiting_on"] == [BOSS, CFO]
    assert len(d.sent(REQUESTER, "not approved in time")) == 1
    with d.app.factory() as s:
        assert s.scalars(select(Approval).where(Approval.token_hash.is_not(None))).all() == []
    d.run(answer(req, "Approve"))  # too late
    assert d.ticket(tid)["status"] == "rejected"
    assert len(d.sent(BOSS, "Already decided")) == 1


def test_expiry_can_escalate_to_the_team(desk, clock) -> None:
    d = desk(on_expiry="escalate", token_ttl_hours=10, remind_after_hours=20)
    tid = d.open_request()
    clock.advance(hours=11)
    d.jobs()
    t = d.ticket(tid)
    assert t["status"] == "assigned" and t["assignee"]
    assert "escalated" in actions(t) and "approval_reminded" not in actions(t)
    assert len(d.sent(t["assignee"], "Assigned to you")) == 1
    assert len(d.sent(REQUESTER, "passed to the team")) == 1


# -- the real command line ----------------------------------------------------------------------


def _configure(site, approvers, mode="any") -> None:
    path = site / "mailtriage.toml"
    text = re.sub(r"(?m)^(approvers|approval) = .*\n", "", path.read_text())
    names = ", ".join(f'"{a}"' for a in approvers)
    text = re.sub(
        r'(\[\[categories\]\]\nname = "[^"]+"\nteam = "[^"]+"\n)',
        rf'\1approvers = [{names}]\napproval = "{mode}"\n',
        text,
    )
    path.write_text(text)


def test_cli_run_once_from_request_to_assignment(site, inbox) -> None:
    _configure(site, [BOSS, CFO], "sequential")
    inbox(
        make_mail(
            subject="Need admin rights", body="Please grant me admin rights.", sender=REQUESTER
        )
    )
    done = mailtriage(site, "run", "--once")
    assert done.returncode == 0, done.stderr
    [t] = tickets(site)
    assert t["status"] == "awaiting_approval"
    assert [(a["step"], a["approver"], a["decision"], a["decided_at"]) for a in t["approvals"]] == [
        (1, BOSS, "pending", None),
        (2, CFO, "pending", None),
    ]
    for approver in (BOSS, CFO):
        [req] = [
            m
            for m in sent_mail(site)
            if "Approval needed" in str(m["Subject"]) and approver in str(m["To"])
        ]
        inbox(answer(req, "Approved"))
        assert mailtriage(site, "run", "--once").returncode == 0
    [t] = tickets(site)
    assert t["status"] == "assigned" and t["assignee"]
    assert [set(a) for a in t["approvals"]] == [{"step", "approver", "decision", "decided_at"}] * 2
    assert [a["decision"] for a in t["approvals"]] == ["approved", "approved"]
    done = mailtriage(site, "ticket", t["id"], "--format", "json")
    assert done.returncode == 0 and '"approval_approved"' in done.stdout


def test_apscheduler_runs_the_approval_jobs_on_the_injected_clock(desk, clock) -> None:
    d = desk(check_interval_seconds=120)
    tid = d.open_request()
    scheduler = start_scheduler(d.app)
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
        for name in ("approval_reminders", "approval_expiry"):
            assert jobs[name].trigger.interval == timedelta(seconds=120)
        clock.advance(hours=73)  # the scheduler's wall time does not matter: the app's clock does
        jobs["approval_expiry"].func()
    finally:
        scheduler.shutdown(wait=False)
    t = d.ticket(tid)
    assert t["status"] == "rejected" and "approval_expired" in actions(t)
    assert len(d.sent(REQUESTER, "not approved in time")) == 1  # the job sent the outbox


@pytest.mark.parametrize(
    ("mailbox", "trusted"),
    [
        ({"backend": "maildir"}, False),
        ({"backend": "imap", "host": "outlook.office365.com", "password": "x"}, True),
        ({"backend": "imap", "host": "imap.example.com", "password": "x"}, False),
        ({"backend": "ews", "ews_url": "https://outlook.office365.com/EWS/Exchange.asmx"}, True),
        ({"backend": "ews", "ews_url": "https://mail.example.com/EWS/Exchange.asmx"}, False),
    ],
)
def test_authentication_results_are_trusted_by_default_only_for_microsoft_365(
    settings, mailbox, trusted
) -> None:
    box = settings.mailbox.model_validate({**settings.mailbox.model_dump(), **mailbox})
    assert trusts_authentication_results(settings.model_copy(update={"mailbox": box})) is trusted
    forced = with_approval(settings, (BOSS,), trust_authentication_results=not trusted)
    assert trusts_authentication_results(forced) is not trusted


def test_a_reply_asking_for_no_auto_response_decides_but_gets_no_help(desk) -> None:
    d = desk(approvers=(BOSS,))
    tid = d.open_request()
    [req] = d.requests(BOSS)
    d.run(answer(req, "Let me think", X_Auto_Response_Suppress="All"))
    t = d.ticket(tid)
    assert history(t, "approval_ignored")[0]["details"]["help_sent"] is False
    assert d.sent(BOSS, "How to answer") == []
    d.run(answer(req, "Approve", X_Auto_Response_Suppress="All"))
    assert d.ticket(tid)["status"] == "assigned"


def test_approval_steps_each_with_its_own_rule(settings, make_app, inbox, site) -> None:
    steps = [{"approvers": [BOSS, CFO], "approval": "any"}, {"approvers": [CTO]}]
    cats = [
        c.model_validate({**c.model_dump(), "approvers": [], "approval_steps": steps})
        for c in settings.categories
    ]
    d = Driver(make_app(settings.model_copy(update={"categories": cats})), inbox, site)
    tid = d.open_request()
    assert len(d.requests(BOSS)) == len(d.requests(CFO)) == 1 and d.requests(CTO) == []
    assert "Any one of the approvers" in d.requests(BOSS)[0].get_body(("plain",)).get_content()
    d.run(answer(d.requests(CFO)[0], "Approve"))
    t = d.ticket(tid)
    assert t["status"] == "awaiting_approval" and len(d.requests(CTO)) == 1
    d.run(answer(d.requests(BOSS)[0], "Reject"))  # step 1 is over: too late
    assert len(d.sent(BOSS, "Already decided")) == 1
    d.run(answer(d.requests(CTO)[0], "Approved"))
    t = d.ticket(tid)
    assert t["status"] == "assigned"
    assert votes(t) == [(1, BOSS, "pending"), (1, CFO, "approved"), (2, CTO, "approved")]


def test_the_approval_wait_is_a_pause_and_the_sla_starts_at_grant(desk, clock) -> None:
    d = desk(mode="any")
    tid = d.open_request()
    assert d.ticket(tid)["paused_since"]
    clock.advance(hours=30)
    d.run(answer(d.requests(BOSS)[0], "Approve"))
    t = d.ticket(tid)
    granted = history(t, "approval_completed")[0]["at"]
    assert history(t, "sla_paused") and history(t, "sla_resumed")
    assert t["paused_seconds"] == 30 * 3600 and t["paused_since"] is None
    assert t["resolution_due"] == t["sla_due_at"] > granted and not t["breached"]
