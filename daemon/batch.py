"""A backlog in batches: one attempt charge, one transaction, one ack per batch.

When several mails wait, the runner hands them here together:

1. mails already committed (a crash after commit, another worker) are acked;
2. mails that were attempted before and not finished are *suspects* (a batch
   they were in died): they go one by one, so a poison mail is isolated and
   quarantined after ``guards.max_attempts`` without taking its neighbours along;
3. the rest are charged one attempt in one commit, parsed, understood in one
   vectorised call, and decided in ONE transaction (quarantined mail included);
4. after the commit the batch is acked in one backend call per outcome.

Any failure inside the transaction rolls the whole batch back: the failing mail
keeps its charged attempt and the error, the others are marked uncharged, and
the batch is redone one by one, where the per-mail catch-all applies. An outage
rolls back and is retried (nobody charged); a unique-key collision (another
worker won a mail) is redone one by one, where it is recognised and acked.

A single waiting mail takes the one-by-one path, which is what an idle mailbox
sees: no batch forms from mail that has not arrived yet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from config.errors import MailError
from daemon.backends.base import AckOutcome, BackendError, RawMail, ack_all
from daemon.ledger import Hold
from daemon.parse import InboundMessage, UnparseableMail
from daemon.store.db import StoreUnavailable, insert_new, is_outage
from daemon.store.models import Attempt, LedgerEntry, QuarantineEntry

log = logging.getLogger(__name__)


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


@dataclass
class Settled:
    """What the batch transaction decided, acked once it has committed."""

    processed: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)


class BatchFailed(MailError):
    """One mail's handling failed inside the batch: redo the batch one by one.

    Never escapes :class:`Batches`: one by one, the per-mail catch-all judges it.
    """

    def __init__(self, mail: RawMail, error: Exception) -> None:
        super().__init__(f"{mail.ref}: {error}")
        self.mail = mail
        self.error = error


class Batches:
    """Processes a list of fetched mails for a :class:`~daemon.runner.Runner`.

    ``runner`` lends its factory, clock, pipeline, backend, crash points and its
    per-mail path (``handle``), which every mail that leaves the batch takes.
    """

    def __init__(self, runner) -> None:
        self.runner = runner

    def handle(self, mails: list[RawMail], stats: PassStats) -> None:
        """Finish, retry or quarantine every mail in ``mails``; raise only for an outage."""
        runner = self.runner
        runner.crash("after_fetch")
        fresh, suspects = self._sort(self._ack_known(mails, stats))
        for mail in suspects:
            runner.handle(mail, stats)
        if len(fresh) < 2:
            for mail in fresh:
                runner.handle(mail, stats)
            return
        self._charge(fresh)
        self._in_one_transaction(fresh, stats)

    # -- before the transaction -----------------------------------------------
    def _ack_known(self, mails: list[RawMail], stats: PassStats) -> list[RawMail]:
        """Ack the mails already committed or quarantined; return the others."""
        refs = [m.ref for m in mails]
        with self.runner.factory() as session:
            done = set(session.scalars(select(LedgerEntry.ref).where(LedgerEntry.ref.in_(refs))))
            held = set(
                session.scalars(select(QuarantineEntry.ref).where(QuarantineEntry.ref.in_(refs)))
            )
        self._ack([r for r in refs if r in done], AckOutcome.PROCESSED)
        self._ack([r for r in refs if r in held - done], AckOutcome.QUARANTINED)
        for _ in done | held:
            stats.count("already-done")
        return [m for m in mails if m.ref not in done and m.ref not in held]

    def _sort(self, mails: list[RawMail]) -> tuple[list[RawMail], list[RawMail]]:
        """(fresh, suspects): a suspect was attempted before and is not done."""
        uncharged = self.runner.uncharged
        refs = [m.ref for m in mails]
        with self.runner.factory() as session:
            stmt = select(Attempt.ref).where(Attempt.ref.in_(refs), Attempt.count > 0)
            tried = set(session.scalars(stmt)) - uncharged
        return [m for m in mails if m.ref not in tried], [m for m in mails if m.ref in tried]

    def _charge(self, mails: list[RawMail]) -> None:
        """Count one attempt for each mail, committed before processing (one commit).

        A mail with an attempt row already (its last try met an outage, or
        another worker charged it at the same moment) keeps that row as it is.
        """
        runner, now = self.runner, self.runner.clock.now()
        refs = [m.ref for m in mails]
        rows = [{"ref": r, "count": 1, "last_error": "", "updated_at": now} for r in refs]
        with runner.factory() as session, session.begin():
            insert_new(session, Attempt, rows)
        runner.uncharged.difference_update(refs)

    # -- the transaction ------------------------------------------------------
    def _in_one_transaction(self, mails: list[RawMail], stats: PassStats) -> None:
        try:
            settled = self._decide_all(mails)
        except BatchFailed as exc:
            self._one_by_one(mails, stats, exc)
            return
        except IntegrityError:
            log.info("a batch of %d collided with another worker; one by one", len(mails))
            self._one_by_one(mails, stats)
            return
        except Exception as exc:  # an outage: nobody is charged; re-raised to be waited out
            if is_outage(exc):
                self.runner.uncharged.update(m.ref for m in mails)
            raise
        self._settled(settled, stats)

    def _decide_all(self, mails: list[RawMail]) -> Settled:
        runner, settled = self.runner, Settled()
        parsed = self._parse_all(mails)
        runner.pipeline.understand_all(
            [m for m in parsed.values() if isinstance(m, InboundMessage)]
        )
        with runner.factory() as session, session.begin():
            for mail in mails:
                self._decide_one(session, mail, parsed.get(mail.ref), settled)
            runner.crash("in_transaction")
        return settled

    def _parse_all(self, mails: list[RawMail]) -> dict[str, InboundMessage | UnparseableMail]:
        parsed: dict = {}
        for mail in mails:
            try:
                parsed[mail.ref] = self.runner.pipeline.parse(mail)
            except UnparseableMail as exc:
                parsed[mail.ref] = exc
            except Exception as exc:  # a parser bug on one mail: one by one decides its fate
                raise BatchFailed(mail, exc) from exc
        return parsed

    def _decide_one(self, session, mail: RawMail, msg, settled: Settled) -> None:
        runner = self.runner
        if isinstance(msg, UnparseableMail):
            self._hold(session, mail, str(msg), "unparseable", None, settled)
            return
        try:
            outcome = runner.pipeline.decide(session, mail, msg)
        except Hold as exc:
            self._hold(session, mail, str(exc), exc.rule or "held", exc.arrived, settled)
            return
        except (StoreUnavailable, BackendError):
            raise
        except Exception as exc:  # one mail's bug: the batch is redone one by one
            if is_outage(exc) or isinstance(exc, IntegrityError):
                raise
            raise BatchFailed(mail, exc) from exc
        settled.processed.append(mail.ref)
        settled.kinds.append(outcome.kind)

    def _hold(self, session, mail, reason: str, code: str, arrived, settled: Settled) -> None:
        session.add(self.runner.quarantine_entry(session, mail, reason, code, arrived))
        log.error("quarantined %s: %s", mail.ref, reason)
        settled.quarantined.append(mail.ref)

    # -- after the commit -------------------------------------------------------
    def _settled(self, settled: Settled, stats: PassStats) -> None:
        runner = self.runner
        runner.crash("after_commit")
        self._ack(settled.processed, AckOutcome.PROCESSED)
        self._ack(settled.quarantined, AckOutcome.QUARANTINED)
        runner.processed += len(settled.processed)
        stats.quarantined += len(settled.quarantined)
        for kind in settled.kinds:
            stats.count(kind)

    def _one_by_one(self, mails, stats: PassStats, failed: BatchFailed | None = None) -> None:
        """Redo the batch mail by mail; the mail that failed has had its attempt this pass."""
        runner = self.runner
        culprit = failed.mail.ref if failed else None
        runner.uncharged.update(m.ref for m in mails if m.ref != culprit)
        for mail in mails:
            if mail.ref == culprit:
                runner.failed(mail, 1, failed.error, stats)
            else:
                runner.handle(mail, stats)

    def _ack(self, refs: list[str], outcome: AckOutcome) -> None:
        if refs:
            ack_all(self.runner.backend, refs, outcome)
