"""The HTML pages: dashboard, tickets, mail, quarantine, outbox. GET only, nothing writes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, abort, current_app, render_template, request

from config import CLOSED_STATUSES, DEFAULT_CATEGORIES, PRIORITIES, STATUSES
from daemon.store import queries as q
from web_status.present import preview_mail, word_diff
from web_status.store import get_session, now

bp = Blueprint("status", __name__)

#: A worker whose last beat is older than this is shown as stale.
STALE_AFTER_SECONDS = 120
RECENT_TICKETS = 20
OUTBOX_VIEWS = {"unsent": q.UNSENT_STATUSES, "failed": ("failed",), "pending": ("pending",)}


@dataclass(frozen=True)
class Pager:
    """Where one page sits in a list of ``total`` rows."""

    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        """Return the number of pages (at least 1)."""
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def offset(self) -> int:
        """Return the index of this page's first row."""
        return (self.page - 1) * self.per_page

    @property
    def has_prev(self) -> bool:
        """True when there is a page before this one."""
        return self.page > 1

    @property
    def has_next(self) -> bool:
        """True when there is a page after this one."""
        return self.page < self.pages


def _requested_page() -> Pager:
    """Return the page asked for by ``?page=`` (total still unknown)."""
    page = max(1, request.args.get("page", 1, type=int) or 1)
    return Pager(page, current_app.config["STATUS_PER_PAGE"], 0)


def worker_status(beat: Any, at: datetime) -> dict[str, Any]:
    """Describe one heartbeat row: its age in seconds and whether it is stale."""
    age = (at - beat.last_beat).total_seconds()
    return {
        "worker": beat.worker,
        "pid": beat.pid,
        "backend": beat.backend,
        "processed": beat.processed,
        "started_at": beat.started_at,
        "last_beat": beat.last_beat,
        "age": age,
        "stale": age > STALE_AFTER_SECONDS and beat.state != "stopped",
        "last_error": beat.last_error,
        "state": beat.state,
        "condition": beat.condition,
        "condition_since": beat.condition_since,
    }


def _ordered(counts: dict[str, int], order: tuple[str, ...]) -> list[tuple[str, int]]:
    known = [(k, counts.get(k, 0)) for k in order]
    extra = sorted((k, n) for k, n in counts.items() if k not in order)
    return known + extra


@bp.get("/")
def dashboard():
    """Show counts, mail flow, daemon health, recent and overdue tickets."""
    session, at = get_session(), now()
    counts = q.ticket_counts(session)
    outbox = q.outbox_counts(session)
    return render_template(
        "dashboard.html",
        total=sum(counts["status"].values()),
        open_count=sum(n for s, n in counts["status"].items() if s not in CLOSED_STATUSES),
        by_status=_ordered(counts["status"], STATUSES),
        by_priority=_ordered(counts["priority"], PRIORITIES),
        by_category=sorted(counts["category"].items(), key=lambda kv: (-kv[1], kv[0])),
        inbound=sorted(q.ledger_counts(session).items(), key=lambda kv: (-kv[1], kv[0])),
        outbox=_ordered(outbox, ("pending", "failed", "sent")),
        outbox_failed=outbox.get("failed", 0),
        outbox_pending=outbox.get("pending", 0),
        quarantined=q.quarantine_count(session),
        workers=[worker_status(b, at) for b in q.heartbeats(session)],
        recent=q.recent_tickets(session, RECENT_TICKETS),
        overdue=q.overdue_tickets(session, at),
        now=at,
        stale_after=STALE_AFTER_SECONDS,
    )


def _filter_options(current: dict[str, str]) -> dict[str, list[str]]:
    settings = current_app.config["MAILTRIAGE_SETTINGS"]
    categories = {c.name for c in settings.categories} | set(DEFAULT_CATEGORIES)
    options = {"status": list(STATUSES), "category": sorted(categories), "priority": [*PRIORITIES]}
    for key, value in current.items():
        if value not in options[key]:
            options[key].append(value)
    return options


@bp.get("/tickets")
def tickets():
    """List tickets, filtered by status/category/priority, one page at a time."""
    filters = {
        key: value
        for key in ("status", "category", "priority")
        if (value := request.args.get(key, "").strip())
    }
    pager = _requested_page()
    rows, total = q.ticket_page(
        get_session(), q.TicketFilter(**filters), pager.offset, pager.per_page
    )
    return render_template(
        "tickets.html",
        tickets=rows,
        pager=Pager(pager.page, pager.per_page, total),
        filters=filters,
        options=_filter_options(filters),
        now=now(),
    )


def _is_overdue(ticket: dict[str, Any], at: datetime) -> bool:
    due = ticket["sla_due_at"]
    if not due or ticket["status"] in CLOSED_STATUSES:
        return False
    return datetime.fromisoformat(due.removesuffix("Z")) < at


@bp.get("/tickets/<ticket_id>")
def ticket(ticket_id: str):
    """Show one ticket: contract fields, text before/after correction, approvals, history."""
    found = q.get_ticket(get_session(), ticket_id)
    if found is None:
        abort(404, description=f"No ticket {ticket_id}.")
    at = now()
    return render_template(
        "ticket.html",
        t=found,
        diff=word_diff(found["original_text"], found["corrected_text"]),
        corrected=found["original_text"] != found["corrected_text"],
        overdue=_is_overdue(found, at),
        now=at,
    )


@bp.get("/mail")
def mail():
    """The message ledger: what became of every inbound mail; ``?outcome=duplicate``."""
    outcome = request.args.get("outcome") or None
    known = current_app.config["MAIL_OUTCOMES"]
    if outcome is not None and outcome not in known:
        abort(400, description=f"Unknown outcome {outcome!r}; one of: {', '.join(known)}.")
    pager = _requested_page()
    rows, total = q.mail_page(get_session(), outcome, pager.offset, pager.per_page)
    return render_template(
        "mail.html",
        rows=rows,
        outcome=outcome,
        outcomes=known,
        pager=Pager(pager.page, pager.per_page, total),
    )


@bp.get("/quarantine")
def quarantine():
    """List quarantined mail with the reason, newest first."""
    pager = _requested_page()
    rows, total = q.quarantine_page(get_session(), pager.offset, pager.per_page)
    return render_template(
        "quarantine.html", entries=rows, pager=Pager(pager.page, pager.per_page, total), now=now()
    )


@bp.get("/quarantine/<int:entry_id>")
def quarantine_entry(entry_id: int):
    """Show one quarantined mail: reason, headers and the start of the raw text (escaped)."""
    entry = q.quarantine_entry(get_session(), entry_id, current_app.config["STATUS_RAW_BYTES"])
    if entry is None:
        abort(404, description=f"No quarantined mail #{entry_id}.")
    return render_template(
        "quarantine_entry.html",
        entry=entry,
        mail=preview_mail(entry.raw_head, entry.size or 0),
        now=now(),
    )


@bp.get("/outbox")
def outbox():
    """List outgoing mail not yet delivered: failed first, then pending."""
    view = request.args.get("status", "unsent")
    if view not in OUTBOX_VIEWS:
        abort(400, description=f"Unknown outbox view {view!r}.")
    session, pager = get_session(), _requested_page()
    rows, total = q.outbox_page(session, OUTBOX_VIEWS[view], pager.offset, pager.per_page)
    return render_template(
        "outbox.html",
        entries=rows,
        view=view,
        counts=q.outbox_counts(session),
        pager=Pager(pager.page, pager.per_page, total),
        now=now(),
    )
