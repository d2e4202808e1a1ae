"""The runner: fetch, process, ack after commit, send the outbox, beat the heart.

One catch-all per message (Mailman ``Runner._one_iteration``): a mail is
finished, retried, or quarantined after ``guards.max_attempts`` — never lost.
The attempt is counted and committed *before* processing, so even a mail that
kills the process ends in quarantine instead of looping forever.

A database outage (locked, full, read-only, connection lost) is nobody's mail's
fault: the runner backs off and retries the same step, charging no attempt, and
records the condition on its heartbeat when it can. Another worker that
committed or quarantined a mail first is not an error either: the mail is acked
and the pass moves on.

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
from datetime import datetime
from typing import TypeVar

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from daemon import memory
from daemon.backends.base import (
    DEFAULT_BATCH_BYTES,
    AckOutcome,
    BackendError,
    MailboxBackend,
    RawMail,
)
from daemon.batch import Batches, PassStats
from daemon.clock import Clock
from daemon.ledger import Hold
from daemon.outage import Patience, describe_outage
from daemon.outbox import OutboxSender
from daemon.parse import UnparseableMail
from daemon.pipeline import Pipeline
from daemon.quarantine import peek, storable
from daemon.store.db import StoreUnavailable, is_outage
from daemon.store.locks import MailboxLock
from daemon.store.models import Attempt, Heartbeat, LedgerEntry, MailboxCursor, QuarantineEntry
from daemon.store.raw import store_raw

log = logging.getLogger(__name__)

WAIT_SLICE = 2.0
T = TypeVar("T")
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
        self.batches = Batches(self)
        # How long to keep retrying through a database outage (None: for ever, the daemon).
        self.outage_patience: float | None = None
        # Mails whose last attempt ended in a database outage: the next one is not charged.
        self.uncharged: set[str] = set()
        # Mails that could not even be quarantined: left in the mailbox, skipped until restart.
        self._stuck: set[str] = set()

    # -- one pass ---------------------------------------------------------
    def run_pass(self) -> PassStats:
        """Process everything in the mailbox now, sending the outbox between batches.

        On PostgreSQL only the worker holding the mailbox's advisory lock reads
        it (see :mod:`daemon.store.locks`); the others skip the pass.
        """
        stats = PassStats()
        lock = self.patiently(MailboxLock(self.factory.kw["bind"], self.backend.name).take)
        try:
            if lock.held:
                self._drain_mailbox(stats)
            else:
                log.debug("another worker reads %s now; this one waits", self.backend.name)
        finally:
            lock.release()
        memory.release()
        self.patiently(self.beat)
        return stats

    def _drain_mailbox(self, stats: PassStats) -> None:
        seen: set[str] = set()
        batches = 0
        cursor = self.patiently(self._load_cursor)
        while not self.stop_event.is_set():
            result = self.backend.fetch_new(cursor, self.batch, self.max_batch_bytes)
            # Memory: a batch is bounded by bytes (``max_batch_bytes``) and dropped
            # once handled, before the next fetch.
            batch = [m for m in result.mails if m.ref not in seen and m.ref not in self._stuck]
            new_cursor, fresh = result.cursor, bool(batch)
            del result
            seen.update(m.ref for m in batch)
            stats.fetched += len(batch)
            self.patiently(self.batches.handle, batch, stats)
            del batch
            batches += 1
            if batches % memory.RELEASE_EVERY == 0:
                memory.release()
            if new_cursor is not None and new_cursor != cursor:
                cursor = new_cursor
                self.patiently(self._save_cursor, cursor)
            # Requesters hear back while a backlog drains, not after it.
            stats.sent += self.patiently(self.sender.send_due)
            if not fresh:
                break

    def handle(self, mail: RawMail, stats: PassStats) -> None:
        """Finish, retry or quarantine one mail; raise only for an outage."""
        self.crash("after_fetch")
        state = self._known(mail.ref)
        if state is not None:
            # Committed before a crash (or by another worker), but not acked: ack now.
            self._ack_done(mail, state, stats)
            return
        attempt = self._record_attempt(mail.ref)
        if attempt > self.max_attempts:
            reason = f"failed {attempt - 1} times: {self._last_error(mail.ref)}"
            self._quarantine(mail, reason, "failed", stats)
            return
        self._attempt(mail, attempt, stats)

    def _attempt(self, mail: RawMail, attempt: int, stats: PassStats, again=False) -> None:
        try:
            outcome = self.pipeline.process(mail)
        except UnparseableMail as exc:
            self._quarantine(mail, str(exc), "unparseable", stats)
            return
        except Hold as exc:
            self._quarantine(mail, str(exc), exc.rule or "held", stats, exc.arrived)
            return
        except BackendError:
            raise
        except IntegrityError as exc:
            self._claimed_elsewhere(mail, attempt, exc, stats, again)
            return
        except Exception as exc:  # one catch-all per message: the others keep flowing
            self.failed(mail, attempt, exc, stats)
            return
        self.crash("after_commit")
        self.backend.ack(mail.ref, AckOutcome.PROCESSED)
        self.processed += 1
        stats.count(outcome.kind)

    def _ack_done(self, mail: RawMail, state: AckOutcome, stats: PassStats) -> None:
        self.backend.ack(mail.ref, state)
        stats.count("already-done")

    def _claimed_elsewhere(
        self, mail: RawMail, attempt: int, exc: IntegrityError, stats: PassStats, again: bool
    ) -> None:
        """A unique key collided: another worker committed this mail (or its twin) first."""
        state = self._known(mail.ref)
        if state is not None:
            log.info("mail %s was committed by another worker; acking it", mail.ref)
            self._ack_done(mail, state, stats)
        elif not again:
            # Its twin (same Message-ID and From) won the race: processing again finds
            # it in the ledger and records this mail as its duplicate.
            log.info("mail %s collided with a concurrent twin; processing it again", mail.ref)
            self._attempt(mail, attempt, stats, again=True)
        else:
            self.failed(mail, attempt, exc, stats)

    def failed(self, mail: RawMail, attempt: int, exc: Exception, stats: PassStats) -> None:
        if is_outage(exc):
            self.uncharged.add(mail.ref)
            raise StoreUnavailable(describe_outage(exc)) from exc
        log.error(
            "processing %s failed (attempt %d/%d)",
            mail.ref,
            attempt,
            self.max_attempts,
            exc_info=exc,
        )
        error = f"{type(exc).__name__}: {exc}"
        self.record_error(mail.ref, error)
        stats.failed += 1
        if attempt >= self.max_attempts:
            self._quarantine(mail, f"failed {attempt} times: {error}", "failed", stats)

    # -- ledger, attempts, quarantine ---------------------------------------
    def _known(self, ref: str) -> AckOutcome | None:
        with self.factory() as session:
            if session.scalar(select(LedgerEntry.id).where(LedgerEntry.ref == ref)) is not None:
                return AckOutcome.PROCESSED
            if session.scalar(select(QuarantineEntry.id).where(QuarantineEntry.ref == ref)):
                return AckOutcome.QUARANTINED
        return None

    def _record_attempt(self, ref: str) -> int:
        """Count one attempt at ``ref`` (unless the last one hit an outage); return the count."""
        charge = 0 if ref in self.uncharged else 1
        now = self.clock.now()
        with self.factory() as session, session.begin():
            # UPDATE first, INSERT if there was no row; a concurrent worker's INSERT
            # in between makes ours collide, and the UPDATE is then tried again.
            if not self._bump_attempt(session, ref, charge, now):
                try:
                    with session.begin_nested():
                        session.add(Attempt(ref=ref, count=1, last_error="", updated_at=now))
                except IntegrityError:
                    self._bump_attempt(session, ref, charge, now)
            count = session.scalar(select(Attempt.count).where(Attempt.ref == ref)) or 1
        self.uncharged.discard(ref)
        return int(count)

    @staticmethod
    def _bump_attempt(session: Session, ref: str, charge: int, now: datetime) -> bool:
        stmt = (
            update(Attempt)
            .where(Attempt.ref == ref)
            .values(count=Attempt.count + charge, updated_at=now)
        )
        return session.execute(stmt).rowcount == 1

    def record_error(self, ref: str, error: str) -> None:
        with self.factory() as session, session.begin():
            row = session.get(Attempt, ref)
            if row is not None:
                row.last_error = storable(error, 4000)

    def _last_error(self, ref: str) -> str:
        with self.factory() as session:
            row = session.get(Attempt, ref)
            return (row.last_error if row else "") or "the process died while handling it"

    def _quarantine(
        self,
        mail: RawMail,
        reason: str,
        code: str,
        stats: PassStats,
        arrived: datetime | None = None,
    ) -> None:
        """Keep the raw bytes with the reason; never depends on the mail parsing."""
        if not self._store_quarantine(mail, reason, code, arrived):
            return
        log.error("quarantined %s: %s", mail.ref, reason)
        stats.quarantined += 1
        self.backend.ack(mail.ref, AckOutcome.QUARANTINED)

    def quarantine_entry(
        self, session: Session, mail: RawMail, reason: str, code: str, arrived: datetime | None
    ) -> QuarantineEntry:
        """The quarantine row of ``mail``, its raw bytes stored in ``session``."""
        sender, subject = peek(mail.raw)
        return QuarantineEntry(
            ref=mail.ref,
            sender=storable(sender, 320),
            subject=storable(subject, 998),
            reason=storable(reason, 4000) or "unknown",
            reason_code=storable(code, 32),
            created_at=self.clock.now(),
            received_at=arrived or mail.received_at,
            raw_sha256=store_raw(session, mail.raw, self.clock.now()),
        )

    def _store_quarantine(self, mail: RawMail, reason: str, code: str, arrived) -> bool:
        try:
            with self.factory() as session, session.begin():
                session.add(self.quarantine_entry(session, mail, reason, code, arrived))
            return True
        except IntegrityError:
            # Quarantined (or committed) by another worker first: its state is acked.
            state = self._known(mail.ref)
            if state is not None:
                self.backend.ack(mail.ref, state)
            return False
        except Exception as exc:  # a bug here must not stop the daemon: skip the mail
            if is_outage(exc):
                raise StoreUnavailable(describe_outage(exc)) from exc
            log.critical("cannot quarantine %s; left in the mailbox", mail.ref, exc_info=exc)
            self._stuck.add(mail.ref)
            return False

    # -- outages --------------------------------------------------------------
    def patiently(self, step: Callable[..., T], *args) -> T:
        """Run ``step``, riding out database outages (see :class:`daemon.outage.Patience`)."""
        return Patience(self._safe_beat, self.stop_event, self.outage_patience).run(step, *args)

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

    def beat(self, error: str = "", state: str = "running") -> None:
        """Record that this worker is alive, its state, and its last error or condition."""
        now = self.clock.now()
        with self.factory() as session, session.begin():
            row = session.get(Heartbeat, self.worker)
            if row is None:
                row = Heartbeat(
                    worker=self.worker, pid=os.getpid(), started_at=self.started_at, last_beat=now
                )
                session.add(row)
            row.last_beat, row.processed, row.backend = now, self.processed, self.backend.name
            if row.state != state or (state != "running" and row.condition != error):
                row.condition_since = now
            row.state = state
            row.condition = storable(error, 2000) if state != "running" else ""
            if error:
                row.last_error = storable(error, 2000)

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
                self._safe_beat(f"mailbox unavailable: {exc}", state="degraded")
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 300.0)
            except StoreUnavailable:
                pass  # only raised once stopped: the loop ends
        self._safe_beat(state="stopped")

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

    def _safe_beat(self, error: str = "", state: str = "running") -> None:
        try:
            self.beat(error, state)
        except Exception:  # the database may be what is down: the log has the condition
            log.debug("cannot record heartbeat", exc_info=True)

    def stop(self) -> None:
        """Ask :meth:`run_forever` to return after the current mail."""
        self.stop_event.set()
