"""End to end on the embedded default: the real CLI, SQLite and Maildir folders."""

from __future__ import annotations

import re

from mailtriage.demo import sample_mails
from tests.e2e.helpers import acks, mailtriage, sent_mail, tickets
from tests.support.mail import make_mail

TAG = re.compile(r"\[(TKT-\d{8}-[A-Z0-9]{6})\]")


def _run_once(site) -> str:
    done = mailtriage(site, "run", "--once")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_sample_mail_becomes_routed_acknowledged_tickets(site, inbox) -> None:
    for name, raw in sample_mails():
        inbox(raw, name)
    _run_once(site)
    found = {t["source_message_id"]: t for t in tickets(site)}
    # 8 requests + the vendor newsletter (list mail: a ticket, never answered);
    # the out-of-office reply makes no ticket.
    assert len(found) == 9
    assert "<demo-09@mail.example.com>" not in found
    assert found["<demo-01@mail.example.com>"]["category"] == "network"
    assert found["<demo-02@mail.example.com>"]["category"] == "printing"
    assert found["<demo-03@mail.example.com>"]["category"] == "access"
    assert found["<demo-04@mail.example.com>"]["category"] == "security"
    assert found["<demo-04@mail.example.com>"]["priority"] in ("high", "critical")
    for t in found.values():
        assert t["status"] == "assigned" and t["assignee"] and t["team"]
        assert [h["action"] for h in t["history"]][:3] == ["created", "classified", "routed"]
    # every human request got exactly one acknowledgement; the newsletter none
    ack_to = sorted(str(m["To"]) for m in acks(site))
    assert len(ack_to) == 8 and "news@vendor.example.org" not in ack_to
    assert list((site / "var/mail/inbox/new").iterdir()) == []
    assert len(list((site / "var/mail/inbox/cur").iterdir())) == 10


def test_acknowledgement_headers_follow_the_contract(site, inbox) -> None:
    inbox(make_mail(subject="Pritner jammed", message_id="<req-1@mail.example.com>"))
    _run_once(site)
    [ticket] = tickets(site)
    [ack] = acks(site)
    assert f"[{ticket['id']}]" in ack["Subject"]
    assert ack["Message-ID"] and ack["Auto-Submitted"] == "auto-replied"
    assert ack["X-Auto-Response-Suppress"] == "All" and ack["Precedence"] == "bulk"
    assert ack["In-Reply-To"] == "<req-1@mail.example.com>"
    assert "<req-1@mail.example.com>" in ack["References"]
    assert ack.get_body(("plain",)) is not None and ack.get_body(("html",)) is not None
    assert ticket["original_text"].startswith("The printer")


def test_replies_thread_into_their_ticket_never_a_new_one(site, inbox) -> None:
    inbox(
        make_mail(
            subject="VPN broken",
            message_id="<orig@mail.example.com>",
            body="VPN does not connect since today.\n\nBob",
        )
    )
    _run_once(site)
    [ticket] = tickets(site)
    [ack] = acks(site)
    # 1: subject tag; 2: In-Reply-To our acknowledgement; 3: References the original
    inbox(make_mail(subject=f"Re: [{ticket['id']}] VPN broken", body="Still broken."))
    inbox(make_mail(subject="Re: VPN", body="Any news?", In_Reply_To=str(ack["Message-ID"])))
    inbox(make_mail(subject="more info", body="Error 809.", References="<orig@mail.example.com>"))
    _run_once(site)
    after = tickets(site)
    assert len(after) == 1
    texts = [c["text"] for c in after[0]["comments"]]
    assert texts == ["Still broken.", "Any news?", "Error 809."]
    assert len(acks(site)) == 1  # replies are not acknowledged again


def test_auto_reply_to_our_ack_is_never_answered(site, inbox) -> None:
    inbox(make_mail(subject="Monitor flickers"))
    _run_once(site)
    [ticket] = tickets(site)
    before = len(sent_mail(site))
    [ack] = acks(site)
    inbox(
        make_mail(
            subject=f"Automatic reply: {ack['Subject']}",
            body="I am away.",
            In_Reply_To=str(ack["Message-ID"]),
            Auto_Submitted="auto-replied",
        )
    )
    _run_once(site)
    [after] = tickets(site)
    assert after["id"] == ticket["id"] and after["comments"] == []
    assert after["history"][-1]["action"] == "mail_ignored"
    assert len(sent_mail(site)) == before


def test_same_mail_delivered_twice_is_one_ticket(site, inbox) -> None:
    raw = make_mail(subject="Keyboard broken", message_id="<dup@mail.example.com>")
    inbox(raw, "copy-a")
    inbox(raw, "copy-b")
    _run_once(site)
    assert len(tickets(site)) == 1
    assert len(acks(site)) == 1


def test_unparseable_mail_is_quarantined_and_the_rest_flows(site, inbox) -> None:
    inbox(b"\x00\x01\x02 this is not a mail", "garbage")
    inbox(make_mail(subject="Printer offline"))
    out = _run_once(site)
    assert "quarantined 1" in out
    assert len(tickets(site)) == 1
    assert (site / "var/mail/inbox/.Quarantine/cur/garbage:2,S").exists()


def test_tickets_filters_and_single_ticket_json(site, inbox) -> None:
    inbox(make_mail(subject="Phishing mail received", body="Suspicious link, I clicked it."))
    inbox(make_mail(subject="Printer jam", body="Paper jam in tray 2."))
    _run_once(site)
    printing = mailtriage(site, "tickets", "--format", "json", "--category", "printing")
    assert printing.returncode == 0
    import json

    rows = json.loads(printing.stdout)
    assert [r["category"] for r in rows] == ["printing"]
    one = mailtriage(site, "ticket", rows[0]["id"], "--format", "json")
    obj = json.loads(one.stdout)
    assert set(obj) >= {
        "id",
        "subject",
        "requester",
        "status",
        "category",
        "priority",
        "team",
        "assignee",
        "original_text",
        "corrected_text",
        "created_at",
        "updated_at",
        "resolved_at",
        "sla_due_at",
        "escalated",
        "source_message_id",
        "approvals",
        "history",
        "comments",
    }
    missing = mailtriage(site, "ticket", "TKT-20000101-NOPE00", "--format", "json")
    assert missing.returncode == 1 and "no ticket" in missing.stderr
    table = mailtriage(site, "tickets")
    assert "2 ticket(s)" in table.stdout
