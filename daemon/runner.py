"""The runner: fetch, process, ack after commit, send the outbox, beat the heart.

One catch-all per message (Mailman ``Runner._one_iteration``): a mail is
finished, retried, or quarantined after ``guards.max_attempts`` — never lost.
The attempt is counted and committed *before* processing, so even a mail that
kills the process ends in quarantine instead of looping forever.

Crash points (``MAILTRIAGE_CRASH_AT``) let the crash-safety tests SIGKILL the
process at: ``after_fetch``, ``in_transaction``, ``after_commit``, ``after_send``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from daemon.backends.base import (
    DEFAULT_BATCH_BYTES,
    AckOutcome,
    BackendError,
    MailboxBackend,
    RawMail,
)
from daemon.clock import Clock
from daemon.notify import OutboxSender
from daemon.parse import UnparseableMail, decode_value, parse_message
from daemon.pipeline import Hold, Pipeline
from daemon.store.models import Attempt, Heartbeat, LedgerEntry, MailboxCursor, QuarantineEntry
from daemon.store.raw import store_raw

log = logging.getLogger(__name__)

WAIT_SLICE = 2.0
CRASH_POINTS = ("after_fetch", "in_transaction", "after_commit", "after_send")


def crash_hook(environ=os.environ) -> Callable[[str], None]:
    """Return a function that SIGKILLs this process at the point named in the environment."""
    target = environ.get("MAILTRIAGE_CRASH_AT", "")
    if target and target not in CRASH_POINTS:
        raise ValueError(f"MAILTRIAGE_CRASH_AT must be one of {', '.join(CRASH_POINTS)}")

    def crash(point: str) -> None:
        if point == target:
            log.warning("crash point %s reached: killing the process", point)
            os.kill(os.getpid(), signal.SIGKILL)

    return crash


@dataclass
class PassStats:
    """What one pass over the mailbox did."""

    fetched: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    failed: int = 0
    sent: int = 0

    def count(self, kind: str) -> None:
        """Count one outcome."""
        self.outcomes[kind] = self.outcomes.get(kind, 0) + 1


class Runner:
    """Drives the backend, the pipeline and the outbox."""

    def __init__(
        self,
        backend: MailboxBackend,
        pipeline: Pipeline,
        sender: OutboxSender,
        factory: sessionmaker[Session],
        clock: Clock,
        max_attempts: int = 3,
        batch: int = 100,
        crash: Callable[[str], None] | None = None,
        max_batch_bytes: int = DEFAULT_BATCH_BYTES,
    ) -> None:
        self.backend = backend
        self.pipeline = pipeline
        self.sender = sender
        self.factory = factory
        self.clock = clock
        self.max_attempts = max_attempts
        self.batch = batch
        self.max_batch_bytes = max_batch_bytes
        self.crash = crash or (lambda point: None)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = clock.now()
        self.processed = 0
        self.stop_event = threading.Event()

    # -- one pass ---------------------------------------------------------
    def run_pass(self) -> PassStats:
        """Process everything in the mailbox now, then send the outbox."""
        stats = PassStats()
        seen: set[str] = set()
        cursor = self._load_cursor()
        while not self.stop_event.is_set():
            result = self.backend.fetch_new(cursor, self.batch, self.max_batch_bytes)
            # Memory: a batch is bounded by bytes, each mail is held once (in ``batch``)
            # and dropped as soon as it is handled, before the next fetch.
            batch = [m for m in reversed(result.mails) if m.ref not in seen]
            new_cursor, fresh = result.cursor, bool(batch)
            del result
            while batch:
                seen.add(batch[-1].ref)
                stats.fetched += 1
                self.handle(batch.pop(), stats)
            if new_cursor is not None and new_cursor != cursor:
                cursor = new_cursor
                self._save_cursor(cursor)
            if not fresh:
                break
        stats.sent = self.sender.send_due()
        self.beat()
        return stats

    def handle(self, mail: RawMail, stats: PassStats) -> None:
        """Finish, retry or quarantine one mail."""
        self.crash("after_fetch")
        state = self._known(mail.ref)
        if state is not None:
            # Committed before a crash, but not acked: ack now, process nothing.
            self.backend.ack(mail.ref, state)
            stats.count("already-done")
            return
        attempt = self._record_attempt(mail.ref)
        if attempt > self.max_attempts:
            self._quarantine(mail, f"failed {attempt - 1} times: {self._last_error(mail.ref)}")
            stats.quarantined += 1
            return
        try:
            outcome = self.pipeline.process(mail)
        except (UnparseableMail, Hold) as exc:
            self._quarantine(mail, str(exc))
            stats.quarantined += 1
            return
        except BackendError:
            raise
        except Exception as exc:  # one catch-all per message: the others keep flowing
            log.exception(
                "processing %s failed (attempt %d/%d)", mail.ref, attempt, self.max_attempts
            )
            self._record_error(mail.ref, f"{type(exc).__name__}: {exc}")
            stats.failed += 1
            if attempt >= self.max_attempts:
                self._quarantine(mail, f"failed {attempt} times: {type(exc).__name__}: {exc}")
                stats.quarantined += 1
            return
        self.crash("after_commit")
        self.backend.ack(mail.ref, AckOutcome.PROCESSED)
        self.processed += 1
        stats.count(outcome.kind)

    # -- ledger, attempts, quarantine ---------------------------------------
    def _known(self, ref: str) -> AckOutcome | None:
        with self.factory() as session:
            if session.scalar(select(LedgerEntry.id).where(LedgerEntry.ref == ref)) is not None:
                return AckOutcome.PROCESSED
            if session.scalar(select(QuarantineEntry.id).where(QuarantineEntry.ref == ref)):
                return AckOutcome.QUARANTINED
        return None

    def _record_attempt(self, ref: str) -> int:
        with self.factory() as session, session.begin():
            row = session.get(Attempt, ref)
            if row is None:
                row = Attempt(ref=ref, count=0, last_error="", updated_at=self.clock.now())
                session.add(row)
            row.count += 1
            row.updated_at = self.clock.now()
            return row.count

    def _record_error(self, ref: str, error: str) -> None:
        with self.factory() as session, session.begin():
            row = session.get(Attempt, ref)
            if row is not None:
                row.last_error = error[:4000]

    def _last_error(self, ref: str) -> str:
        with self.factory() as session:
            row = session.get(Attempt, ref)
            return (row.last_error if row else "") or "the process died while handling it"

    def _quarantine(self, mail: RawMail, reason: str) -> None:
        sender, subject = _peek(mail.raw)
        with self.factory() as session, session.begin():
            session.add(
                QuarantineEntry(
                    ref=mail.ref,
                    sender=sender,
                    subject=subject,
                    reason=reason[:4000],
                    raw_sha256=store_raw(session, mail.raw, self.clock.now()),
                    created_at=self.clock.now(),
                )
            )
        log.error("quarantined %s: %s", mail.ref, reason)
        self.backend.ack(mail.ref, AckOutcome.QUARANTINED)

    # -- cursor and heartbeat ---------------------------------------------
    def _load_cursor(self) -> str | None:
        with self.factory() as session:
            row = session.get(MailboxCursor, self.backend.name)
            return row.cursor if row else None

    def _save_cursor(self, cursor: str) -> None:
        with self.factory() as session, session.begin():
            row = session.get(MailboxCursor, self.backend.name)
            if row is None:
                session.add(
                    MailboxCursor(
                        mailbox=self.backend.name, cursor=cursor, updated_at=self.clock.now()
                    )
                )
            else:
                row.cursor, row.updated_at = cursor, self.clock.now()

    def beat(self, error: str = "") -> None:
        """Record that this worker is alive (and its last error, if any)."""
        now = self.clock.now()
        with self.factory() as session, session.begin():
            row = session.get(Heartbeat, self.worker)
            if row is None:
                row = Heartbeat(
                    worker=self.worker, pid=os.getpid(), started_at=self.started_at, last_beat=now
                )
                session.add(row)
            row.last_beat, row.processed, row.backend = now, self.processed, self.backend.name
            if error:
                row.last_error = error[:2000]

    # -- forever ----------------------------------------------------------
    def run_forever(self, idle_timeout: float = 30.0) -> None:
        """Process mail until :meth:`stop`; back off while the backend is down."""
        backoff = 1.0
        while not self.stop_event.is_set():
            try:
                self.run_pass()
                backoff = 1.0
                self._wait(idle_timeout)
            except BackendError as exc:
                log.warning("mailbox unavailable: %s; retrying in %.0fs", exc, backoff)
                self._safe_beat(str(exc))
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 300.0)

    def _wait(self, timeout: float) -> None:
        waiter = getattr(self.backend, "wait_for_new", None)
        if waiter is None:
            self.stop_event.wait(timeout)
            return
        # Wait in slices so SIGTERM is honoured within a couple of seconds;
        # IDLE and polling backends return at once when mail arrives.
        remaining = timeout
        while remaining > 0 and not self.stop_event.is_set():
            if waiter(min(remaining, WAIT_SLICE)):
                return
            remaining -= WAIT_SLICE

    def _safe_beat(self, error: str) -> None:
        try:
            self.beat(error)
        except Exception:  # the database may be what is down
            log.warning("cannot record heartbeat", exc_info=True)

    def stop(self) -> None:
        """Ask :meth:`run_forever` to return after the current mail."""
        self.stop_event.set()


def _peek(raw: bytes) -> tuple[str, str]:
    """Best-effort sender and subject of a mail that may not parse."""
    try:
        msg = parse_message(raw)
        return msg.from_header[:320], msg.subject
    except Exception:
        head = raw[:8192].decode("latin-1", "replace")
        fields = {}
        for line in head.splitlines():
            name, _, value = line.partition(":")
            if name.lower() in ("from", "subject") and name.lower() not in fields:
                fields[name.lower()] = decode_value(value.strip())
        return fields.get("from", "")[:320], fields.get("subject", "")[:998]
