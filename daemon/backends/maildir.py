"""The embedded default: a local Maildir in, a local Maildir out.

Inbound: new mail is read from ``<path>/new``; after its ticket commit it is
renamed into ``<path>/cur`` with the Seen flag (``:2,S``), and poison mail into
the ``.Quarantine`` sub-folder. A rename is atomic, so a crash leaves a mail
either still new (fetched again; the ledger recognises it) or done.

Outbound: every message is written as a complete RFC 5322 file into
``<path>/new``; the file name derives from the Message-ID, so writing the same
outbox row twice (a crash after send, before it was marked sent) leaves one file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

from daemon.backends.base import (
    DEFAULT_BATCH_BYTES,
    AckOutcome,
    BackendError,
    FetchResult,
    OutgoingMail,
    RawMail,
)

log = logging.getLogger(__name__)

SEEN_SUFFIX = ":2,S"


def ensure_maildir(path: Path) -> Path:
    """Create ``path`` with its tmp/new/cur folders when missing."""
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    return path


def deliver(path: Path, raw: bytes, name: str | None = None) -> Path:
    """Write ``raw`` into Maildir ``path`` (tmp, then atomic rename into new)."""
    ensure_maildir(path)
    name = name or f"{time.time_ns()}.P{os.getpid()}.{socket.gethostname().replace('/', '_')}"
    tmp = path / "tmp" / name
    with open(tmp, "wb") as fh:
        fh.write(raw)
        fh.flush()
        os.fsync(fh.fileno())
    final = path / "new" / name
    os.replace(tmp, final)
    return final


class MaildirBackend:
    """Reads ``<path>/new``; acks by moving to ``cur`` or ``.Quarantine``."""

    name = "maildir"

    def __init__(self, path: Path) -> None:
        self.path = ensure_maildir(Path(path))
        self.quarantine = ensure_maildir(self.path / ".Quarantine")

    def _pending(self) -> list[os.DirEntry]:
        try:
            entries = [e for e in os.scandir(self.path / "new") if e.is_file()]
        except OSError as exc:
            raise BackendError(f"cannot read maildir {self.path}: {exc.strerror}") from exc
        return sorted(entries, key=lambda e: (e.stat().st_mtime_ns, e.name))

    def fetch_new(
        self, cursor: str | None, limit: int, max_bytes: int = DEFAULT_BATCH_BYTES
    ) -> FetchResult:
        """Return up to ``limit`` mails (``max_bytes`` in all, at least one) from ``new/``, oldest first.

        Sizes come from ``stat``: only the files that fit are read.
        """
        entries = self._pending()
        mails = []
        total = taken = 0
        for entry in entries[:limit]:
            size = entry.stat().st_size
            if taken and total + size > max_bytes:
                break
            taken += 1
            total += size
            try:
                raw = Path(entry.path).read_bytes()
                mtime = entry.stat().st_mtime
            except FileNotFoundError:
                continue  # acked by a concurrent run
            received = datetime.fromtimestamp(mtime, UTC).replace(tzinfo=None)
            mails.append(RawMail(ref=entry.name, raw=raw, received_at=received))
        return FetchResult(mails=mails, cursor=None, more=len(entries) > taken)

    def ack(self, ref: str, outcome: AckOutcome) -> None:
        """Move ``ref`` out of ``new/``; a ref already moved is fine."""
        target = self.path if outcome is AckOutcome.PROCESSED else self.quarantine
        base = ref.split(":", 1)[0]
        try:
            os.replace(self.path / "new" / ref, target / "cur" / (base + SEEN_SUFFIX))
        except FileNotFoundError:
            log.debug("maildir ack: %s already moved", ref)

    def wait_for_new(self, timeout: float) -> bool:
        """Poll ``new/`` every half second for up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(True for _ in os.scandir(self.path / "new")):
                return True
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        return False

    def check(self) -> str:
        """Say what the maildir holds."""
        return f"maildir {self.path}: {len(self._pending())} new message(s)"

    def close(self) -> None:
        """Nothing to release."""


class MaildirTransport:
    """Writes outgoing mail into a Maildir (one file per Message-ID)."""

    name = "maildir"
    # Sending a Message-ID twice writes nothing the second time: the outbox may
    # mark a whole chunk sent in one transaction (a crash resends nothing twice).
    idempotent = True

    def __init__(self, path: Path) -> None:
        self.path = ensure_maildir(Path(path))

    @staticmethod
    def file_name(message_id: str) -> str:
        """Return the stable file name for ``message_id``."""
        return hashlib.sha256(message_id.encode()).hexdigest()[:32] + ".mailtriage"

    def send(self, mail: OutgoingMail) -> None:
        """Deliver ``mail`` unless a file for its Message-ID already exists."""
        name = self.file_name(mail.message_id)
        if (self.path / "new" / name).exists() or self._in_cur(name):
            log.info("maildir transport: %s already written", mail.message_id)
            return
        try:
            deliver(self.path, mail.raw, name)
        except OSError as exc:
            raise BackendError(f"cannot write to {self.path}: {exc.strerror}") from exc

    def _in_cur(self, name: str) -> bool:
        """A file ``name`` (with any flags) in ``cur/``: a plain scan, no glob pattern to compile."""
        with os.scandir(self.path / "cur") as entries:
            return any(e.name.startswith(name) for e in entries)

    def check(self) -> str:
        """Say where mail goes."""
        return f"maildir {self.path} (writable: {os.access(self.path / 'new', os.W_OK)})"

    def close(self) -> None:
        """Nothing to release."""
