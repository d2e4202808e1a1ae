"""No hostile mail stops the daemon, every mail is accounted for, what we send stays clean.

Each case of ``tests/support/hostile.py`` is delivered with two ordinary
requests. ``run_pass`` must return, pass after pass until the mailbox is empty
(a mail that fails is retried, then quarantined: that path must not kill the
daemon either); the two requests must become tickets in the first pass; each
of the three mails must be in the ledger or in quarantine exactly once; every
message the daemon sent must be one the Composer could have built; and no
exception may have needed the runner's per-mail catch-all (hostile input is
refused as ``UnparseableMail`` or handled, never a crash in the pipeline).
"""

from __future__ import annotations

import os

import pytest

from daemon.parse import parse_message
from tests.conftest import REPO
from tests.e2e.helpers import mailtriage, tickets
from tests.support import hostile, mutate, outgoing
from tests.support.accounting import account, outcome_of
from tests.support.drive import caught_failures, drain
from tests.support.mail import make_mail

CASES = hostile.cases()
UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def ordinary_mails() -> list[tuple[str, bytes]]:
    """Two plain requests from different people (they must always become tickets)."""
    return [
        (
            "ordinary-1",
            make_mail(
                subject="VPN drops every hour",
                body="Since Monday my VPN disconnects every hour.\n\nAlice",
                sender="Alice Example <alice@example.com>",
            ),
        ),
        (
            "ordinary-2",
            make_mail(
                subject="Printer on floor 3 jammed",
                body="The printer next to the kitchen shows a paper jam.\n\nBob",
                sender="Bob Example <bob@example.com>",
            ),
        ),
    ]


def deliver_all(inbox, raw: bytes) -> list[str]:
    """Deliver the hostile mail between the two ordinary ones; return the refs in order."""
    (first, good1), (second, good2) = ordinary_mails()
    inbox(good1, first)
    inbox(raw, "hostile")
    inbox(good2, second)
    return [first, "hostile", second]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_mail_is_accounted_for_and_replies_stay_clean(case, site, inbox, daemon):
    refs = deliver_all(inbox, case.build())
    app = daemon()
    passes = drain(app)  # must return: an exception here is the daemon dying
    assert passes[0].outcomes.get("ticket", 0) >= 2, passes[0]
    account(app, refs)
    for ref in ("ordinary-1", "ordinary-2"):
        row = outcome_of(app, ref)
        assert row is not None and row.outcome == "ticket", f"{ref}: {row}"
    outgoing.assert_clean(outgoing.site_problems(site, case.never_to))
    hostile_row = outcome_of(app, "hostile")
    assert caught_failures(passes) == 0, f"processing raised; it ended as {hostile_row}"


def test_every_hostile_case_builds_distinct_bytes():
    """Guard against a builder silently producing the same mail as another."""
    built = {c.name: c.build() for c in CASES}
    assert len(set(built.values())) == len(built)


@pytest.mark.slow
def test_run_once_cli_survives_nul_charset_subject(site, inbox, make_app):
    """The real ``mailtriage run --once`` exits 0, tickets the good mail delivered with the
    poison one and accounts for both (known defect 2 killed it while quarantining).

    ``max_attempts = 1`` makes one run both fail the poison mail and quarantine it, the
    path where the defect killed the process; with the default 3 it takes three runs.
    """
    inbox(hostile.case("ew-nul-charset-in-subject").build(), "poison")
    inbox(ordinary_mails()[0][1], "good")
    env = {"PYTHONPATH": str(REPO), "MAILTRIAGE_GUARDS_MAX_ATTEMPTS": "1"}
    done = mailtriage(site, "run", "--once", env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    # The poison mail may become a ticket or be quarantined; the good one is a ticket.
    assert "VPN drops every hour" in [t["subject"] for t in tickets(site)]
    app = make_app()
    account(app, ["poison", "good"])
    assert outcome_of(app, "good").outcome == "ticket"


def test_different_mails_without_message_id_and_same_body_are_not_duplicates(site, inbox, daemon):
    """Two people each send "help" with no Message-ID: two tickets (known defect 1: the
    content key is Message-ID + body, so the second was swallowed as a duplicate)."""
    for n, sender in enumerate(("carol@example.com", "dave@example.com")):
        raw = mail_without_message_id(sender, f"Laptop broken ({sender})")
        inbox(raw, f"no-id-{n}")
    app = daemon()
    drain(app)
    assert [outcome_of(app, f"no-id-{n}").outcome for n in (0, 1)] == ["ticket", "ticket"]
    account(app, ["no-id-0", "no-id-1"])


def mail_without_message_id(sender: str, subject: str) -> bytes:
    """A short request with no Message-ID header at all."""
    return hostile.mail(
        b"From: " + sender.encode(),
        b"To: support@example.com",
        b"Subject: " + subject.encode(),
        b"Date: Mon, 05 Jan 2026 09:00:00 +0000",
        body=b"help",
    )


# Automatic mail from the fixture corpora that must never be answered (known defect 8):
# an SES bounce as SNS JSON, fml list-server notices (no ticket either: they are about
# our own mail, not requests), a gmail-noreply@ notice (machine mail: a ticket is fine).
AUTOMATIC = {
    "ses-bounce-json": "sisimai-set-of-emails/files/bsd/lhost-amazonses-09.eml",
    "fml-not-member": "sisimai-set-of-emails/files/bsd/lhost-fml-02.eml",
    "fml-loop-alert": "sisimai-set-of-emails/files/bsd/lhost-fml-03.eml",
    "gmail-noreply": "mikel-mail/files/mime_emails/raw_email_encoded_stack_level_too_deep.eml",
}


@pytest.mark.parametrize("name", sorted(AUTOMATIC))
def test_automatic_mail_is_accounted_for_and_never_answered(name, site, inbox, daemon):
    raw = (mutate.fixtures_root() / AUTOMATIC[name]).read_bytes()
    sender = parse_message(raw).sender or ""
    refs = deliver_all(inbox, raw)
    app = daemon()
    drain(app)
    account(app, refs)
    assert sender, "the fixture names its sender"
    outgoing.assert_clean(outgoing.site_problems(site, never_to=(sender,)))
    if name != "gmail-noreply":  # bounces and list-server notices are no requests
        assert outcome_of(app, "hostile").outcome != "ticket"
