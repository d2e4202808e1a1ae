"""The checkers themselves: a robustness suite is only as good as what it can notice."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from daemon.store.models import LedgerEntry, QuarantineEntry
from tests.support import outgoing
from tests.support.accounting import account, audit
from tests.support.drive import drain
from tests.support.mail import make_mail

GOOD = (
    b"From: IT Support <support@example.com>\r\nTo: bob@example.com\r\n"
    b"Subject: [TKT-1] Received\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 7bit\r\n\r\nHello\r\n"
)


@pytest.fixture
def processed(site, inbox, daemon):
    """A site where two mails became tickets."""
    inbox(make_mail(subject="VPN broken"), "a")
    inbox(make_mail(subject="Printer jammed", sender="carol@example.com"), "b")
    app = daemon()
    drain(app)
    return app


def test_accounting_passes_for_processed_mail(processed):
    assert account(processed, ["a", "b"]) == {"ticket": 2}


def test_accounting_notices_missing_unknown_and_double_counted(processed, clock):
    with processed.factory() as session, session.begin():
        session.add(QuarantineEntry(ref="a", reason="x", created_at=clock.now()))
    _counts, problems = audit(processed, ["b", "never-processed"])
    text = "\n".join(problems)
    assert "'never-processed': neither in the ledger nor in quarantine" in text
    assert "'a': a row for a mail that was never delivered" in text
    _counts, problems = audit(processed, ["a", "b"])
    assert any("'a': counted 2 times" in p for p in problems)


def test_accounting_requires_duplicates_to_name_their_original(processed):
    with processed.factory() as session, session.begin():
        session.execute(
            update(LedgerEntry).where(LedgerEntry.ref == "b").values(outcome="duplicate")
        )
    _counts, problems = audit(processed, ["a", "b"])
    assert problems == ["ledger row 2 ('b', duplicate): duplicate_of is not set"]
    with processed.factory() as session, session.begin():
        session.execute(
            update(LedgerEntry)
            .where(LedgerEntry.ref == "b")
            .values(duplicate_of=1, reason="same Message-ID and body as ledger row 1 ('a')")
        )
    assert audit(processed, ["a", "b"])[1] == []


def test_outgoing_check_passes_a_clean_message():
    assert outgoing.problems([("good", GOOD)]) == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (GOOD.replace(b"To:", b"Bcc: victim@x.example\r\nTo:"), "header 'bcc'"),
        (GOOD.replace(b"[TKT-1]", b"[TKT-1]\rX"), "holds CR/LF after unfolding"),
        (GOOD.replace(b"Hello", b"He\x00llo"), "declared 7bit holds"),
        (GOOD.replace(b"[TKT-1]", b"=?utf-8?q?a=0Db?="), "decoded Subject holds"),
    ],
)
def test_outgoing_check_notices(raw, expected):
    assert any(expected in p for p in outgoing.problems([("bad", raw)]))


def test_outgoing_check_notices_forbidden_recipients():
    assert outgoing.problems([("m", GOOD)], never_to=["bob@example.com"]) == [
        "m: mail sent to bob@example.com"
    ]
