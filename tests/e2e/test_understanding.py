"""What the daemon understands of a mail, seen the way an admin sees it: ticket JSON."""

from __future__ import annotations

from tests.e2e.helpers import mailtriage, tickets
from tests.support.mail import make_mail


def _classified(ticket: dict) -> dict:
    return next(h for h in ticket["history"] if h["action"] == "classified")["details"]


def test_spelling_category_priority_and_their_reasons_reach_the_ticket(site, inbox) -> None:
    inbox(
        make_mail(
            subject="Pritner on floor 3",
            body="The pritner will not print and the whole office is waiting, urgent.\n\n"
            "-- \nJane Doe, Finance",
            message_id="<u-1@mail.example.com>",
        ),
        "u1",
    )
    inbox(
        make_mail(
            subject="problem",
            body="Something is wrong, can someone call me?",
            message_id="<u-2@mail.example.com>",
        ),
        "u2",
    )
    done = mailtriage(site, "run", "--once")
    assert done.returncode == 0, done.stderr
    found = {t["source_message_id"]: t for t in tickets(site)}

    printer = found["<u-1@mail.example.com>"]
    assert "pritner will not print" in printer["original_text"]
    assert "printer will not print" in printer["corrected_text"]
    assert printer["category"] == "printing" and printer["priority"] == "high"
    details = _classified(printer)
    assert details["source"] == "model" and details["model_version"]
    assert ["pritner", "printer"] in details["spelling_edits"]
    assert any("many users" in r for r in details["reasons"])

    vague = found["<u-2@mail.example.com>"]
    routed = next(h for h in vague["history"] if h["action"] == "routed")["details"]
    assert vague["team"] == "Service Desk"
    assert "confidence" in " ".join(routed.get("reasons", [])), routed
