"""What the ledger knows of a mail: when it arrived, whether it was seen, what became of it.

A duplicate is the *same* mail (the same Message-ID from the same From, or the
same bytes) and names the mail it repeats; the sender rate counts mail by when
it arrived. ``Outcome`` is what the pipeline and its extensions report for the
ledger; ``Hold`` and ``Release`` are the quarantine's two directions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from config.errors import MailError, UserError
from daemon.backends.base import RawMail
from daemon.guards import RULES
from daemon.parse import InboundMessage
from daemon.store.models import LedgerEntry

DATE_TRUST = timedelta(days=7)


class Hold(MailError):
    """The mail must be held in quarantine (e.g. sender over the rate limit)."""

    def __init__(self, message: str, rule: str = "", arrived: datetime | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.arrived = arrived


class AlreadyReleased(UserError):
    """A quarantined mail was released by someone else first."""


@dataclass(frozen=True)
class Release:
    """An admin's release of quarantined mail #``entry_id``: skip the rules that held it."""

    entry_id: int
    actor: str
    reason: str = ""
    skip: frozenset[str] = frozenset({"sender-rate"})

    @property
    def rules(self) -> tuple:
        """The guard rules that still apply."""
        return tuple(r for r in RULES if r.name not in self.skip)


def dup_key(ref: str) -> str:
    """A unique content key for a duplicate's own ledger row (refs can be long)."""
    return f"dup:{hashlib.sha256(ref.encode('utf-8', 'replace')).hexdigest()}"


def duplicate_outcome(original: LedgerEntry) -> Outcome:
    received = original.received_at.strftime("%Y-%m-%d %H:%M") if original.received_at else "?"
    reason = (
        f"duplicate of mail #{original.id} (Message-ID {original.message_id or '-'}, "
        f"from {original.sender or '-'}, received {received}, "
        f"{original.outcome} {original.ticket_id or ''})"
    )
    return Outcome("duplicate", original.ticket_id, reason.replace(" )", ")"), ("duplicate",))


@dataclass(frozen=True)
class Outcome:
    """What became of one mail."""

    kind: str  # ticket | comment | ignored | duplicate
    ticket_id: str | None = None
    reason: str = ""
    hits: tuple[str, ...] = ()


def content_keys(msg: InboundMessage, raw: bytes) -> tuple[str, ...]:
    """What makes two fetched mails the *same* mail; the first is stored, all are looked up.

    The same Message-ID from the same From (a mail delivered twice, or fetched
    again after a crash or a UIDVALIDITY change), else the same bytes. Two
    different mails that lack a Message-ID and share a short body ("Thanks")
    are different mails. The second key is the one used before schema 0003
    (Message-ID + body hash), kept so mail stored then is still recognised;
    without a Message-ID it would be too loose, so it is only used with one.
    """
    if not msg.message_id:
        return (f"r:{hashlib.sha256(raw).hexdigest()}",)
    who = (msg.sender or msg.from_header).lower()
    mine = hashlib.sha256(f"{msg.message_id}\0{who}".encode("utf-8", "replace")).hexdigest()
    return (f"m:{mine}", _legacy_key(msg, raw))


def _legacy_key(msg: InboundMessage, raw: bytes) -> str:
    cut = raw.find(b"\r\n\r\n")
    start = cut + 4 if cut >= 0 else (raw.find(b"\n\n") + 2 if b"\n\n" in raw else 0)
    digest = hashlib.sha256(msg.message_id.encode() + b"\0")
    digest.update(memoryview(raw)[start:])  # no copy of a 25 MB body
    return f"c:{digest.hexdigest()}"


def arrival_time(mail: RawMail, msg: InboundMessage, now: datetime) -> datetime:
    """When the mail reached the mailbox: the backend's time, else a plausible Date header.

    The sender rate counts by arrival, so a backlog drained at once is judged as
    it arrived. A Date header is the sender's claim: it is used only within
    DATE_TRUST of now and never in the future.
    """
    if mail.received_at is not None:
        return mail.received_at
    try:
        stated = parsedate_to_datetime(msg.header("date"))
    except (TypeError, ValueError, IndexError, OverflowError):
        return now
    if stated.tzinfo is not None:
        stated = stated.astimezone(UTC).replace(tzinfo=None)
    return stated if now - DATE_TRUST <= stated <= now else now
