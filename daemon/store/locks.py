"""One reader per mailbox across machines: a PostgreSQL advisory lock around each pass.

Several daemons may share one mailbox and one database (a standby, or workers on
several machines). Correctness never depended on this lock: the ledger's unique
keys make the second committer of a mail recognise it and ack it. The lock
only saves the wasted work: whoever holds it reads the mailbox, the others skip
their pass and stay ready to take over (the lock goes with its connection, so a
worker that dies frees it at once). SQLite serialises writers by itself, and a
desk on SQLite runs on one machine: no lock is taken there.
"""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import Connection, Engine, func, select

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (PostgreSQL's advisory lock space)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class MailboxLock:
    """The advisory lock on one mailbox, taken with :meth:`take` and given back with :meth:`release`."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.key = lock_key(f"mailtriage mailbox {name}")
        self.conn: Connection | None = None
        self.held = False

    def take(self) -> MailboxLock:
        """Try the lock (never waits); ``held`` says whether this worker may read. Returns self."""
        if self.engine.dialect.name != "postgresql":
            self.held = True
            return self
        self.conn = self.engine.connect()
        try:
            self.held = bool(self.conn.scalar(select(func.pg_try_advisory_lock(self.key))))
            self.conn.commit()  # the lock belongs to the session, not to a transaction
        except Exception:  # an outage: the caller waits it out and tries again
            self.release()
            raise
        return self

    def release(self) -> None:
        """Give the lock back (closing the connection would too, even after a failure)."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            if self.held:
                conn.scalar(select(func.pg_advisory_unlock(self.key)))
                conn.commit()
        except Exception:  # the connection died (a restart): the lock went with it
            log.debug("advisory lock connection lost before the unlock", exc_info=True)
        finally:
            self.held = False
            conn.close()
