"""Store helpers of reply-to-approve: locks, approval rows, tokens.

Used inside the pipeline's transaction (replies, requests) and by the scheduled
jobs; nothing here commits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from daemon.store.models import Approval, OutboxEntry, Ticket
from routing.approval import ApprovalProgress, VoteState, steps_from_rows
from routing.tokens import hash_token, single_address

_TOKEN = re.compile(r"APR-[A-Z2-7]{16}", re.IGNORECASE)


def lock_ticket(session: Session, ticket_id: str, skip_locked: bool = False) -> Ticket | None:
    """The ticket, locked for this transaction and read fresh (what another worker committed)."""
    stmt = (
        select(Ticket)
        .where(Ticket.id == ticket_id)
        .with_for_update(skip_locked=skip_locked)
        .execution_options(populate_existing=True)
    )
    return session.scalars(stmt).first()


def approval_rows(session: Session, ticket_id: str) -> list[Approval]:
    """The ticket's approval rows by step, read fresh."""
    stmt = (
        select(Approval)
        .where(Approval.ticket_id == ticket_id)
        .order_by(Approval.step, Approval.id)
        .execution_options(populate_existing=True)
    )
    return list(session.scalars(stmt))


def progress_of(rows: Sequence[Approval]) -> ApprovalProgress:
    """The state machine's view of ``rows``."""
    data = [(r.step, r.approver, r.decision, r.decided_at) for r in rows]
    modes = {r.step: r.mode for r in rows}
    return ApprovalProgress.from_rows(steps_from_rows(data, modes), data)


def clear_tokens(
    session: Session, ticket_id: str, step: int | None = None, approvers: Sequence[str] = ()
) -> None:
    """Withdraw pending requests: their tokens stop working."""
    stmt = update(Approval).where(
        Approval.ticket_id == ticket_id, Approval.decision == VoteState.PENDING.value
    )
    if step is not None:
        stmt = stmt.where(Approval.step == step)
    if approvers:
        stmt = stmt.where(Approval.approver.in_([bare_address(a) for a in approvers]))
    session.execute(stmt.values(token_hash=None, reminder_token_hash=None))


def names_token(token: str) -> ColumnElement[bool]:
    """The condition: a row whose request or reminder token is ``token``."""
    digest = hash_token(token)
    return or_(Approval.token_hash == digest, Approval.reminder_token_hash == digest)


def request_message_id(session: Session, ticket_id: str, approver: str) -> str | None:
    """The Message-ID of the latest approval request mailed to ``approver``."""
    stmt = (
        select(OutboxEntry.message_id, OutboxEntry.recipients)
        .where(OutboxEntry.ticket_id == ticket_id, OutboxEntry.kind == "approval_request")
        .order_by(OutboxEntry.id.desc())
    )
    return next((m for m, to in session.execute(stmt) if approver in to), None)


def is_pending(row: Approval) -> bool:
    """True while nobody has decided ``row``."""
    return row.decision == VoteState.PENDING.value


def is_live(row: Approval, now: datetime) -> bool:
    """A pending request whose token still works."""
    expiry = row.token_expires_at
    return is_pending(row) and bool(row.token_hash) and (expiry is None or expiry > now)


def holds_token(row: Approval, token: str | None) -> bool:
    """True if ``token`` is one of the row's live tokens (request or reminder)."""
    if not token or not is_pending(row):
        return False
    digest = hash_token(token)
    return digest in (row.token_hash, row.reminder_token_hash)


def bare_address(address: str) -> str:
    """The lower-case bare address of ``address`` (as approvers are stored)."""
    return (single_address(address) or address).strip().lower()


def redact_tokens(text: str) -> str:
    """History is shown on the status page: tokens are bearer secrets, keep them out."""
    return _TOKEN.sub("APR-[redacted]", text)
