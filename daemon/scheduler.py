"""Periodic jobs: SLA reminders and escalation, raw mail retention (and, via extensions,
approval expiry).

Jobs are plain functions of ``(app, now)`` so ``run --once`` can run whatever
is due synchronously, and the daemon runs the same functions from an
APScheduler ``BackgroundScheduler``. Times come from the injected clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select

from daemon.app import App
from daemon.notify import Threading
from daemon.store.models import Ticket
from daemon.store.raw import prune_raw
from daemon.tickets import CLOSED_STATUSES, SYSTEM_ACTOR, add_event, who_is_told

log = logging.getLogger(__name__)


def check_sla(app: App, now: datetime) -> int:
    """Remind at the configured fraction of the SLA, escalate when it is breached."""
    fraction = app.settings.sla.remind_at_fraction
    changed = 0
    with app.factory() as session, session.begin():
        stmt = select(Ticket).where(
            Ticket.status.not_in(CLOSED_STATUSES),
            Ticket.sla_due_at.is_not(None),
            Ticket.escalated.is_(False),
        )
        for ticket in session.scalars(stmt.with_for_update(skip_locked=True)):
            due = ticket.sla_due_at
            if now >= due:
                ticket.escalated = True
                add_event(
                    session,
                    ticket.id,
                    SYSTEM_ACTOR,
                    "escalated",
                    now,
                    reason="SLA breached",
                    due=due.isoformat(),
                )
                to = who_is_told(app.settings, ticket, with_team=True)
                app.composer.compose(
                    session, "sla_escalation", ticket, to, Threading(), "auto-generated"
                )
                changed += 1
            elif (
                not ticket.sla_reminded
                and now >= ticket.created_at + (due - ticket.created_at) * fraction
            ):
                ticket.sla_reminded = True
                add_event(
                    session, ticket.id, SYSTEM_ACTOR, "sla_reminder", now, due=due.isoformat()
                )
                to = who_is_told(app.settings, ticket, with_team=False)
                app.composer.compose(
                    session, "sla_reminder", ticket, to, Threading(), "auto-generated"
                )
                changed += 1
    if changed:
        log.info("SLA check: %d ticket(s) reminded or escalated", changed)
    return changed


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
