"""Draining the outbox: send due rows, retry transient failures with backoff.

Rows are written by :mod:`daemon.notify` inside the ticket's transaction; this
module sends them after the commit. SMTP, Graph and EWS rows are each claimed
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL), sent and marked in one short
transaction, so a crash resends at most the message in flight, with its
Message-ID unchanged. An idempotent transport (Maildir: one file per
Message-ID) is claimed and marked a chunk at a time. A transport's rate cap
(:class:`RateCapped`) leaves the rest for later, uncharged.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from daemon.backends.base import (
    BackendError,
    OutgoingMail,
    PermanentSendError,
    RateCapped,
    Transport,
)
from daemon.clock import Clock
from daemon.store.models import OutboxEntry

log = logging.getLogger(__name__)

BACKOFF_CAP = timedelta(hours=1)
CHUNK = 100  # outbox rows claimed and marked at once when the transport is idempotent


# What sending a row reads (locked against other workers) and writes, as plain
# statements: the ORM's per-row cost was most of sending's CPU.
_CLAIM = select(
    OutboxEntry.message_id,
    OutboxEntry.sender,
    OutboxEntry.recipients,
    OutboxEntry.raw,
    OutboxEntry.status,
    OutboxEntry.kind,
    OutboxEntry.id,
).with_for_update(skip_locked=True)
_SENT = update(OutboxEntry).values(
    status="sent", sent_at=bindparam("at"), attempts=OutboxEntry.attempts + 1
)


class OutboxSender:
    """Drains the outbox: sends due rows, retries transient failures with backoff."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        transport: Transport,
        clock: Clock,
        max_attempts: int = 8,
        crash=None,
        channels=None,
    ) -> None:
        self.factory = factory
        # Webhook/Teams/Slack/Twilio rows drain wherever mail does (daemon.channels).
        self.channels = channels
        self.transport = transport
        self.clock = clock
        self.max_attempts = max_attempts
        self._crash = crash or (lambda point: None)
        self._lock = threading.Lock()
        # When the transport's rate cap lets the next message go (None: not capped).
        self.capped_until: datetime | None = None

    def _due_ids(self, session: Session, limit: int) -> list[int]:
        stmt = select(OutboxEntry.id).where(*_due(self.clock.now()))
        stmt = stmt.order_by(OutboxEntry.id).limit(limit)
        with session.begin():
            return list(session.scalars(stmt))

    def send_due(self, limit: int = 500) -> int:
        """Send every due outbox row over one session and one transport connection.

        The runner and the scheduler thread both drain the outbox; the lock
        keeps them from sending one row twice where the database cannot
        (SQLite has no ``SKIP LOCKED``). Across processes on PostgreSQL the
        row lock does that job. Each row is marked sent in its own short
        transaction right after the transport took it, so a crash resends at
        most the one message in flight (and its Message-ID is the same).
        """
        sent = 0
        with self._lock, self.factory() as session:
            if self.capped_until and self.capped_until > self.clock.now():
                return self._channels(limit)
            self.capped_until = None
            ids = self._due_ids(session, limit)
            if getattr(self.transport, "idempotent", False):
                return self._send_chunks(session, ids) + self._channels(limit)
            for row_id in ids:
                try:
                    sent += self._send_one(session, row_id)
                except RateCapped as exc:  # the rest waits for the cap, nobody is charged
                    self.capped_until = self.clock.now() + timedelta(seconds=exc.wait)
                    log.info("%s; the rest waits until %s", exc, self.capped_until)
                    break
        return sent + self._channels(limit)

    def _send_chunks(self, session: Session, ids: list[int]) -> int:
        """An idempotent transport: each chunk of rows is claimed and marked sent at once."""
        sent = 0
        for at in range(0, len(ids), CHUNK):
            with session.begin():
                rows = session.execute(_CLAIM.where(OutboxEntry.id.in_(ids[at : at + CHUNK])))
                done = [row.id for row in rows.all() if self._transmit(session, row)]
                if done:
                    stmt = _SENT.where(OutboxEntry.id.in_(done))
                    session.execute(stmt, {"at": self.clock.now()})
            sent += len(done)
        return sent

    def _transmit(self, session: Session, row) -> bool:
        """Hand a claimed row to the transport; a failure is recorded on the row."""
        if row.status != "pending":
            return False
        try:
            self.transport.send(OutgoingMail(*row[:4]))
        except RateCapped:
            raise  # not the row's fault: the caller stops sending, nobody is charged
        except BackendError as exc:
            self._not_sent(session.get(OutboxEntry, row.id), exc)
            return False
        self._crash("after_send")
        log.info("sent %s %s to %s", row.kind, row.message_id, ", ".join(row.recipients))
        return True

    def _channels(self, limit: int) -> int:
        return self.channels.send_due(limit) if self.channels else 0

    def drain(self, batch: int = 500) -> int:
        """Send until nothing is due (rows that failed wait for their retry time)."""
        total = 0
        while sent := self.send_due(batch):
            total += sent
        return total

    def _send_one(self, session: Session, row_id: int) -> int:
        with session.begin():
            row = session.execute(_CLAIM.where(OutboxEntry.id == row_id)).first()
            if row is None or not self._transmit(session, row):
                return 0
            session.execute(_SENT.where(OutboxEntry.id == row_id), {"at": self.clock.now()})
        return 1

    def _not_sent(self, row: OutboxEntry, exc: BackendError) -> None:
        if isinstance(exc, PermanentSendError):
            self._fail(row, f"refused: {exc}")
        else:
            self._retry(row, str(exc))

    def _retry(self, row: OutboxEntry, error: str) -> None:
        row.attempts += 1
        row.last_error = error[:2000]
        if row.attempts >= self.max_attempts:
            self._fail(row, f"gave up after {row.attempts} attempts: {error}")
            return
        delay = min(timedelta(seconds=30 * 2 ** (row.attempts - 1)), BACKOFF_CAP)
        row.next_attempt_at = self.clock.now() + delay
        log.warning("send of %s failed (%s); retry in %s", row.message_id, error, delay)

    def _fail(self, row: OutboxEntry, error: str) -> None:
        row.status = "failed"
        row.last_error = error[:2000]
        log.error("outgoing %s to %s failed for good: %s", row.message_id, row.recipients, error)


def pending_count(session: Session, now: datetime) -> int:
    """Return how many outbox rows are due now."""
    return int(session.scalar(select(func.count(OutboxEntry.id)).where(*_due(now))) or 0)


def _due(now: datetime) -> tuple:
    """The rows that are due: pending, and their (next) attempt time has come."""
    return OutboxEntry.status == "pending", OutboxEntry.next_attempt_at <= now
