"""The runner: attempts, quarantine after max_attempts, ack only after commit."""

from __future__ import annotations

from sqlalchemy import select

from classifier.base import Classification
from daemon.app import build_text_understanding
from daemon.store.models import QuarantineEntry, Ticket
from daemon.store.raw import load_raw
from tests.support.mail import make_mail


class ExplodingClassifier:
    """A classifier with a bug that only one mail triggers (the rest must flow)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def classify(self, subject: str, body: str, sender: str = "") -> Classification:
        if "EXPLODE" in subject:
            raise RuntimeError("model blew up")
        return self.inner.classify(subject, body, sender)


def test_mail_failing_three_times_is_quarantined_others_flow(
    settings, make_app, inbox, site
) -> None:
    corrector, classifier = build_text_understanding(settings)
    app = make_app(text=(corrector, ExplodingClassifier(classifier)))
    inbox(make_mail(subject="EXPLODE please"), "bad")
    inbox(make_mail(subject="Printer jammed"), "good")
    first = app.runner.run_pass()
    assert first.failed == 1 and first.quarantined == 0
    assert (site / "var/mail/inbox/new/bad").exists()  # not acked: will be retried
    app.runner.run_pass()
    third = app.runner.run_pass()
    assert third.quarantined == 1
    with app.factory() as s:
        [q] = s.scalars(select(QuarantineEntry)).all()
        assert "failed 3 times" in q.reason and "model blew up" in q.reason
        raw = load_raw(s, q.raw_sha256)
        assert raw is not None and b"EXPLODE please" in raw
        assert len(s.scalars(select(Ticket)).all()) == 1
    assert not (site / "var/mail/inbox/new/bad").exists()
    assert (site / "var/mail/inbox/.Quarantine/cur/bad:2,S").exists()


def test_sender_over_rate_limit_is_held_not_lost(settings, make_app, inbox) -> None:
    settings.guards.sender_rate_limit = 2
    app = make_app(settings)
    for i in range(3):
        inbox(make_mail(subject=f"Request {i}", sender="loop@example.com"), f"r{i}")
    stats = app.runner.run_pass()
    assert stats.outcomes.get("ticket") == 2 and stats.quarantined == 1
    with app.factory() as s:
        [q] = s.scalars(select(QuarantineEntry)).all()
        assert q.reason.startswith("sender-rate")
