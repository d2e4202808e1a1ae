"""Periodic jobs: SLA warnings and the escalation ladder (``daemon.sla``), raw mail
retention (and, via extensions, approval expiry).

Jobs are plain functions of ``(app, now)`` so ``run --once`` can run whatever
is due synchronously, and the daemon runs the same functions from an
APScheduler ``BackgroundScheduler``. Times come from the injected clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from daemon.app import App
from daemon.sla import SlaDesk, running_tickets
from daemon.store.models import Ticket
from daemon.store.raw import prune_raw

log = logging.getLogger(__name__)

__all__ = ["check_sla", "jobs", "prune_raw_mail", "run_due", "start_scheduler"]


#: Tickets checked per transaction: a backlog past its due times (a weekend's outage)
#: would otherwise build every warning and escalation mail in one transaction.
SLA_BATCH = 100


def check_sla(app: App, now: datetime) -> int:
    """Warn before a due, breach at it, climb the ladder after; return how many tickets acted."""
    desk = SlaDesk(app.settings, app.composer, now)
    with app.factory() as session:
        ids = list(session.scalars(running_tickets(app.settings).with_only_columns(Ticket.id)))
    changed = sum(
        _check_some(app, desk, ids[at : at + SLA_BATCH]) for at in range(0, len(ids), SLA_BATCH)
    )
    if changed:
        log.info("SLA check: %d ticket(s) warned, breached or escalated", changed)
    return changed


def _check_some(app: App, desk: SlaDesk, ids: list[str]) -> int:
    with app.factory() as session, session.begin():
        stmt = running_tickets(app.settings).where(Ticket.id.in_(ids))
        tickets = session.scalars(stmt.with_for_update(skip_locked=True))
        return sum(desk.check(session, ticket) for ticket in tickets)


def prune_raw_mail(app: App, now: datetime) -> int:
    """Delete raw mail older than ``storage.raw_retention_days`` (0: keep it); 0: nothing to send."""
    days = app.settings.storage.raw_retention_days
    if not days:
        return 0
    with app.factory() as session, session.begin():
        pruned = prune_raw(session, now - timedelta(days=days))
    if pruned:
        log.info("retention: raw bytes of %d mail(s) older than %g days deleted", pruned, days)
    return 0  # nothing to send


def jobs(app: App) -> list[tuple[str, Callable[[App, datetime], int], float]]:
    """The periodic jobs: (name, function, interval seconds)."""
    interval = app.settings.sla.check_interval_seconds
    found = [
        ("sla", check_sla, interval),
        ("raw-retention", prune_raw_mail, app.settings.storage.check_interval_seconds),
    ]
    for ext in app.extensions:
        found += list(getattr(ext, "jobs", lambda: [])())
    return found


def run_due(app: App) -> int:
    """Run every job once now (for ``run --once``); return how many things changed."""
    now = app.clock.now()
    return sum(fn(app, now) for _name, fn, _interval in jobs(app))


def start_scheduler(app: App) -> BackgroundScheduler:
    """Start the jobs in a background scheduler; stop it with ``shutdown()``."""
    scheduler = BackgroundScheduler(timezone="UTC")
    for name, fn, interval in jobs(app):
        scheduler.add_job(
            _guarded(app, name, fn),
            "interval",
            seconds=interval,
            id=name,
            max_instances=1,
            coalesce=True,
        )
    scheduler.start()
    return scheduler


def _guarded(app: App, name: str, fn: Callable[[App, datetime], int]) -> Callable[[], None]:
    def run() -> None:
        try:
            if fn(app, app.clock.now()):
                app.sender.send_due()
        except Exception:  # a failing job must not stop the scheduler
            log.exception("scheduled job %s failed", name)

    return run
