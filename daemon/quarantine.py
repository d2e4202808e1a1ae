"""Quarantine: mail kept whole with its reason; listed, shown and released by an admin.

Quarantining never depends on the mail parsing: sender and subject are read
best-effort from the raw header lines, and every text stored is made safe for
any database first. A release re-processes the raw bytes through the pipeline,
skipping the rule that held the mail, and marks the row released in the same
transaction: a mail is released exactly once.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.errors import UserError
from daemon.backends.base import RawMail
from daemon.ledger import AlreadyReleased, Outcome, Release
from daemon.parse import decode_value, parse_message, sanitize_header
from daemon.pipeline import Pipeline
from daemon.store.models import QuarantineEntry
from daemon.store.raw import load_raw

log = logging.getLogger(__name__)


def peek(raw: bytes) -> tuple[str, str]:
    """Best-effort sender and subject of a mail that may not parse; never raises."""
    try:
        msg = parse_message(raw)
        return msg.from_header[:320], msg.subject
    except Exception:  # the mail is broken: read the raw header lines instead
        log.debug("quarantined mail does not parse; reading raw header lines", exc_info=True)
    fields: dict[str, str] = {}
    for line in raw[:8192].decode("latin-1", "replace").splitlines():
        name, _, value = line.partition(":")
        if name.lower() in ("from", "subject") and name.lower() not in fields:
            fields[name.lower()] = _decoded(value.strip())
    return fields.get("from", "")[:320], fields.get("subject", "")[:998]


def _decoded(value: str) -> str:
    try:
        return decode_value(value)
    except Exception:  # the quarantine must not depend on decoding: keep the raw text
        return value


def storable(text: str, limit: int) -> str:
    """Text any database stores: one line, no NUL (PostgreSQL refuses it), valid UTF-8."""
    cleaned = sanitize_header(text.replace("\x00", " "), limit)
    return cleaned.encode("utf-8", "replace").decode("utf-8")


def entries(
    session: Session, reason: str | None = None, released: bool = False
) -> list[QuarantineEntry]:
    """Quarantined mail in arrival order, optionally by reason code; held ones only by default."""
    stmt = select(QuarantineEntry).order_by(QuarantineEntry.id)
    if reason:
        stmt = stmt.where(QuarantineEntry.reason_code == reason)
    if not released:
        stmt = stmt.where(QuarantineEntry.released_at.is_(None))
    return list(session.scalars(stmt))


def release(
    pipeline: Pipeline, factory: sessionmaker[Session], entry_id: int, actor: str
) -> Outcome:
    """Re-process quarantined mail #``entry_id`` for ``actor``; return what became of it."""
    with factory() as session:
        entry = session.get(QuarantineEntry, entry_id)
        if entry is None:
            raise UserError(f"no quarantined mail #{entry_id}")
        if entry.released_at is not None:
            raise UserError(
                f"quarantined mail #{entry_id} was already released "
                f"({entry.released_at:%Y-%m-%d %H:%M} by {entry.released_by})"
            )
        raw = load_raw(session, entry.raw_sha256)
        if raw is None:
            raise UserError(f"quarantined mail #{entry_id} has no raw bytes left to process")
        mail = RawMail(ref=entry.ref, raw=raw, received_at=entry.received_at)
        code = entry.reason_code
    try:
        return pipeline.process(mail, Release(entry_id, actor, code))
    except AlreadyReleased as exc:
        raise UserError(str(exc)) from None
