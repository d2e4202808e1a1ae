"""Raw mail retention: old raw bytes go, ledger metadata and quarantined mail stay."""

from __future__ import annotations

from sqlalchemy import func, select

from daemon.scheduler import jobs, prune_raw_mail, run_due
from daemon.store.models import LedgerEntry, QuarantineEntry, RawMailRecord
from daemon.store.queries import quarantine_entry
from daemon.store.raw import load_raw
from tests.support.mail import make_mail


def _raw_count(app) -> int:
    with app.factory() as s:
        return int(s.scalar(select(func.count()).select_from(RawMailRecord)) or 0)


def test_old_raw_is_pruned_quarantined_and_recent_raw_stay(
    settings, make_app, inbox, clock
) -> None:
    settings.guards.sender_rate_limit = 1
    app = make_app(settings)
    assert "raw-retention" in [name for name, _fn, _interval in jobs(app)]
    inbox(make_mail(subject="Printer jammed", sender="a@example.com"), "old")
    inbox(make_mail(subject="Printer jammed again", sender="a@example.com"), "held")
    stats = app.runner.run_pass()
    assert stats.outcomes == {"ticket": 1} and stats.quarantined == 1
    clock.advance(days=89)
    inbox(make_mail(subject="VPN down", sender="b@example.com"), "recent")
    app.runner.run_pass()
    assert _raw_count(app) == 3
    clock.advance(days=2)  # "old" is 91 days old now, "recent" 2
    assert run_due(app) == 0 and _raw_count(app) == 2
    with app.factory() as s:
        rows = {r.ref: r for r in s.scalars(select(LedgerEntry))}
        assert rows["old"].raw_sha256 is None and rows["old"].subject == "Printer jammed"
        assert b"VPN down" in (load_raw(s, rows["recent"].raw_sha256) or b"")
        [held] = s.scalars(select(QuarantineEntry)).all()
        entry = quarantine_entry(s, held.id)
        assert entry is not None and b"Printer jammed again" in entry.raw_head
    clock.advance(days=400)
    prune_raw_mail(app, clock.now())
    assert _raw_count(app) == 1  # the quarantined mail, whatever its age


def test_retention_zero_keeps_raw_forever(settings, make_app, inbox, clock) -> None:
    settings.storage.raw_retention_days = 0
    app = make_app(settings)
    inbox(make_mail(), "m1")
    app.runner.run_pass()
    clock.advance(days=10_000)
    prune_raw_mail(app, clock.now())
    assert _raw_count(app) == 1
