"""Read-only queries: the only part of ``daemon`` the status page may import.

Nothing here writes. Tickets are rendered as the CONTRACT.md ticket JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from config.schema import CLOSED_STATUSES
from daemon.store.models import (
    Approval,
    Attachment,
    CategoryCorrection,
    Heartbeat,
    LedgerEntry,
    OutboxEntry,
    QuarantineEntry,
    RawMailRecord,
    Ticket,
)
from daemon.store.raw import raw_head


def iso(value: datetime | None) -> str | None:
    """Format a naive-UTC datetime as ISO 8601 with ``Z``."""
    return None if value is None else value.replace(microsecond=0).isoformat() + "Z"


def ticket_to_dict(t: Ticket) -> dict[str, Any]:
    """Render a ticket (with its relations loaded) as the contract's ticket JSON."""
    return {
        "id": t.id,
        "subject": t.subject,
        "requester": t.requester,
        "status": t.status,
        "category": t.category,
        "priority": t.priority,
        "team": t.team,
        "assignee": t.assignee,
        "original_text": t.original_text,
        "corrected_text": t.corrected_text,
        "created_at": iso(t.created_at),
        "updated_at": iso(t.updated_at),
        "resolved_at": iso(t.resolved_at),
        "sla_due_at": iso(t.sla_due_at),
        "escalated": bool(t.escalated),
        **_sla_dict(t),
        "source_message_id": t.source_message_id,
        "watchers": list(t.watchers or []),
        "approvals": [_approval_dict(a) for a in t.approvals],
        "history": [
            {"at": iso(e.at), "actor": e.actor, "action": e.action, "details": e.details}
            for e in t.events
        ],
        "comments": [
            {"at": iso(c.at), "author": c.author, "text": c.text, "internal": bool(c.internal)}
            for c in t.comments
        ],
        "attachments": [attachment_dict(a) for a in t.attachments],
    }


def attachment_dict(a: Attachment) -> dict[str, Any]:
    """An attachment as the ticket JSON lists it (``stored``: its bytes were kept)."""
    return {
        "name": a.name,
        "size": a.size,
        "content_type": a.content_type,
        "sha256": a.sha256,
        "dangerous": bool(a.dangerous),
        "stored": a.sha256 is not None,
        "note": a.note,
        "message_id": a.message_id,
        "from_reply": bool(a.from_reply),
    }


def _sla_dict(t: Ticket) -> dict[str, Any]:
    """The SLA clocks of a ticket (``resolution_due`` is ``sla_due_at`` by its SLA name)."""
    breached = t.breached_at is not None
    return {
        "first_response_due": iso(t.first_response_due),
        "first_response_at": iso(t.first_response_at),
        "next_update_due": iso(t.next_update_due),
        "resolution_due": iso(t.sla_due_at),
        "paused_since": iso(t.paused_since),
        "paused_seconds": int(t.paused_seconds or 0),
        "breached": breached,
        "breached_at": iso(t.breached_at),
        "escalation_level": int(t.escalation_level or 0),
        "explanation_missing": breached and t.breach_explained_at is None,
        "breach_explanation": t.breach_explanation,
    }


def _approval_dict(a: Approval) -> dict[str, Any]:
    return {
        "step": a.step,
        "approver": a.approver,
        "decision": a.decision,
        "decided_at": iso(a.decided_at),
    }


def _with_relations(stmt):
    return stmt.options(
        selectinload(Ticket.events),
        selectinload(Ticket.comments),
        selectinload(Ticket.approvals),
        selectinload(Ticket.attachments),
    )


def get_ticket(session: Session, ticket_id: str) -> dict[str, Any] | None:
    """Return one ticket as contract JSON, or None when unknown."""
    t = session.scalars(_with_relations(select(Ticket).where(Ticket.id == ticket_id))).first()
    return ticket_to_dict(t) if t else None


@dataclass(frozen=True)
class TicketFilter:
    """Filters of ``mailtriage tickets`` and the status page list."""

    status: str | None = None
    category: str | None = None
    priority: str | None = None
    since: datetime | None = None
    limit: int | None = None


def list_tickets(session: Session, flt: TicketFilter | None = None) -> list[dict[str, Any]]:
    """Return tickets (newest first) as contract JSON, filtered."""
    flt = flt or TicketFilter()
    stmt = _with_relations(select(Ticket)).order_by(Ticket.created_at.desc(), Ticket.id.desc())
    if flt.status:
        stmt = stmt.where(Ticket.status == flt.status)
    if flt.category:
        stmt = stmt.where(Ticket.category == flt.category)
    if flt.priority:
        stmt = stmt.where(Ticket.priority == flt.priority)
    if flt.since:
        stmt = stmt.where(Ticket.created_at >= flt.since)
    if flt.limit:
        stmt = stmt.limit(flt.limit)
    return [ticket_to_dict(t) for t in session.scalars(stmt)]


def recent_tickets(session: Session, limit: int = 20) -> list[Ticket]:
    """Return the newest tickets (without relations) for list views."""
    stmt = select(Ticket).order_by(Ticket.created_at.desc(), Ticket.id.desc()).limit(limit)
    return list(session.scalars(stmt))


def _count_by(session: Session, column) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).group_by(column)).all()
    return {str(k): int(n) for k, n in rows}


def ticket_counts(session: Session) -> dict[str, dict[str, int]]:
    """Return ticket counts by status, category and priority."""
    return {
        "status": _count_by(session, Ticket.status),
        "category": _count_by(session, Ticket.category),
        "priority": _count_by(session, Ticket.priority),
    }


def ledger_counts(session: Session) -> dict[str, int]:
    """Return inbound mail counts by outcome (ticket, comment, ignored, ...)."""
    return _count_by(session, LedgerEntry.outcome)


def quarantine_count(session: Session) -> int:
    """Return how many mails are in quarantine."""
    return int(session.scalar(select(func.count()).select_from(QuarantineEntry)) or 0)


def quarantine_entries(session: Session, limit: int = 50) -> list[QuarantineEntry]:
    """Return the newest quarantined mails."""
    stmt = select(QuarantineEntry).order_by(QuarantineEntry.created_at.desc()).limit(limit)
    return list(session.scalars(stmt))


def outbox_counts(session: Session) -> dict[str, int]:
    """Return outbox counts by status (pending, sent, failed)."""
    return _count_by(session, OutboxEntry.status)


def failed_outbox(session: Session, limit: int = 50) -> list[OutboxEntry]:
    """Return outgoing mail that could not be delivered."""
    stmt = (
        select(OutboxEntry)
        .where(OutboxEntry.status == "failed")
        .order_by(OutboxEntry.created_at.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def heartbeats(session: Session) -> list[Heartbeat]:
    """Return every worker's heartbeat."""
    return list(session.scalars(select(Heartbeat).order_by(Heartbeat.worker)))


def overdue_tickets(session: Session, now: datetime, limit: int = 50) -> list[Ticket]:
    """Return open tickets past their SLA due time, most overdue first."""
    stmt = (
        select(Ticket)
        .where(Ticket.sla_due_at < now, Ticket.status.not_in(CLOSED_STATUSES))
        .order_by(Ticket.sla_due_at)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def category_corrections(session: Session) -> list[tuple[str, str]]:
    """Return (text, new_category) pairs agents corrected, for retraining."""
    rows = session.execute(select(CategoryCorrection.text, CategoryCorrection.new_category)).all()
    return [(str(t), str(c)) for t, c in rows]


# --- Status page (web_status) ------------------------------------------------
# Appended for the read-only status page, which may import nothing else from
# ``daemon``: a read-only session factory, paginated list queries that leave
# the (possibly large) raw mail bytes in the database, and a connectivity probe.

from sqlalchemy import event  # noqa: E402
from sqlalchemy.exc import SQLAlchemyError  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from daemon.store.db import make_engine  # noqa: E402

#: What the store raises when the database is unreachable or refuses a query.
StoreError = SQLAlchemyError
UNSENT_STATUSES = ("failed", "pending")


def _sqlite_query_only(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA query_only=ON")
    cur.close()


def open_readonly(url: str) -> sessionmaker[Session]:
    """Return a session factory for ``url`` whose sessions cannot write.

    SQLite connections get ``PRAGMA query_only=ON`` (after the engine's own
    pragmas, so WAL still lets the daemon write meanwhile); PostgreSQL
    connections run every transaction READ ONLY. Any write raises StoreError.
    """
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_query_only)
        return sessionmaker(engine, expire_on_commit=False)
    if engine.dialect.name == "postgresql":
        return sessionmaker(
            engine.execution_options(postgresql_readonly=True), expire_on_commit=False
        )
    return sessionmaker(engine, expire_on_commit=False)


def ping(session: Session) -> None:
    """Run a trivial query; raises StoreError when the database is unreachable."""
    session.execute(select(1)).scalar_one()


def _filter_tickets(stmt, flt: TicketFilter):
    if flt.status:
        stmt = stmt.where(Ticket.status == flt.status)
    if flt.category:
        stmt = stmt.where(Ticket.category == flt.category)
    if flt.priority:
        stmt = stmt.where(Ticket.priority == flt.priority)
    if flt.since:
        stmt = stmt.where(Ticket.created_at >= flt.since)
    return stmt


def ticket_page(
    session: Session, flt: TicketFilter, offset: int = 0, limit: int = 50
) -> tuple[list[Ticket], int]:
    """Return one page of filtered tickets (newest first, no relations) and the total."""
    total = session.scalar(_filter_tickets(select(func.count()).select_from(Ticket), flt))
    stmt = _filter_tickets(select(Ticket), flt).order_by(Ticket.created_at.desc(), Ticket.id.desc())
    rows = list(session.scalars(stmt.offset(offset).limit(limit)))
    return rows, int(total or 0)


def quarantine_page(session: Session, offset: int = 0, limit: int = 50) -> tuple[list[Any], int]:
    """Return one page of quarantined mail (newest first, without raw bytes) and the total.

    Each row has ``id, ref, sender, subject, reason, created_at, size``.
    """
    stmt = (
        select(
            QuarantineEntry.id,
            QuarantineEntry.ref,
            QuarantineEntry.sender,
            QuarantineEntry.subject,
            QuarantineEntry.reason,
            QuarantineEntry.created_at,
            RawMailRecord.size.label("size"),
        )
        .outerjoin(RawMailRecord, RawMailRecord.sha256 == QuarantineEntry.raw_sha256)
        .order_by(QuarantineEntry.created_at.desc(), QuarantineEntry.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list(session.execute(stmt).all()), quarantine_count(session)


@dataclass(frozen=True)
class QuarantinedMail:
    """One quarantined mail with only the start of its raw bytes."""

    id: int
    ref: str
    sender: str
    subject: str
    reason: str
    created_at: datetime
    size: int
    raw_head: bytes


def quarantine_entry(
    session: Session, entry_id: int, head_bytes: int = 65536
) -> QuarantinedMail | None:
    """Return one quarantined mail with its first ``head_bytes`` raw bytes, or None."""
    stmt = select(
        QuarantineEntry.id,
        QuarantineEntry.ref,
        QuarantineEntry.sender,
        QuarantineEntry.subject,
        QuarantineEntry.reason,
        QuarantineEntry.created_at,
        RawMailRecord.size.label("size"),
        QuarantineEntry.raw_sha256,
    ).outerjoin(RawMailRecord, RawMailRecord.sha256 == QuarantineEntry.raw_sha256)
    row = session.execute(stmt.where(QuarantineEntry.id == entry_id)).first()
    if row is None:
        return None
    fields = row._asdict()
    head = raw_head(session, fields.pop("raw_sha256"), head_bytes)
    return QuarantinedMail(**fields | {"size": int(fields["size"] or 0), "raw_head": head})


def outbox_page(
    session: Session,
    statuses: tuple[str, ...] = UNSENT_STATUSES,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[Any], int]:
    """Return one page of outgoing mail in ``statuses`` (without raw bytes) and the total.

    Failed mail comes first, then by next attempt. Each row has ``id, message_id,
    ticket_id, kind, recipients, subject, status, attempts, last_error,
    created_at, next_attempt_at, sent_at``.
    """
    where = OutboxEntry.status.in_(statuses)
    total = session.scalar(select(func.count()).select_from(OutboxEntry).where(where))
    stmt = (
        select(
            OutboxEntry.id,
            OutboxEntry.message_id,
            OutboxEntry.ticket_id,
            OutboxEntry.kind,
            OutboxEntry.recipients,
            OutboxEntry.subject,
            OutboxEntry.status,
            OutboxEntry.attempts,
            OutboxEntry.last_error,
            OutboxEntry.created_at,
            OutboxEntry.next_attempt_at,
            OutboxEntry.sent_at,
        )
        .where(where)
        .order_by(OutboxEntry.status != "failed", OutboxEntry.next_attempt_at, OutboxEntry.id)
        .offset(offset)
        .limit(limit)
    )
    return list(session.execute(stmt).all()), int(total or 0)


def mail_page(
    session: Session, outcome: str | None = None, offset: int = 0, limit: int = 50
) -> tuple[list[Any], int]:
    """One page of the message ledger (newest first, without raw bytes) and the total.

    Each row has ``id, ref, message_id, sender, subject, outcome, reason,
    ticket_id, duplicate_of, received_at, processed_at``.
    """
    columns = (
        LedgerEntry.id,
        LedgerEntry.ref,
        LedgerEntry.message_id,
        LedgerEntry.sender,
        LedgerEntry.subject,
        LedgerEntry.outcome,
        LedgerEntry.reason,
        LedgerEntry.ticket_id,
        LedgerEntry.duplicate_of,
        LedgerEntry.received_at,
        LedgerEntry.processed_at,
    )
    stmt, count = select(*columns), select(func.count(LedgerEntry.id))
    if outcome:
        stmt = stmt.where(LedgerEntry.outcome == outcome)
        count = count.where(LedgerEntry.outcome == outcome)
    stmt = stmt.order_by(LedgerEntry.id.desc()).offset(offset).limit(limit)
    return list(session.execute(stmt).all()), int(session.scalar(count) or 0)
