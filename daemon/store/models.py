"""SQLAlchemy 2 models: the whole persistent state of mailtriage.

Schema changes go through Alembic (``daemon/store/migrations``); the models
here and the newest migration must agree (a test compares them).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Declarative base; every datetime is stored as naive UTC."""


class Ticket(Base):
    """A support ticket opened from one inbound mail."""

    __tablename__ = "tickets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject: Mapped[str] = mapped_column(Text)
    requester: Mapped[str] = mapped_column(String(320), index=True)
    status: Mapped[str] = mapped_column(String(24), index=True)
    category: Mapped[str] = mapped_column(String(64), index=True)
    priority: Mapped[str] = mapped_column(String(16), index=True)
    team: Mapped[str | None] = mapped_column(String(128))
    assignee: Mapped[str | None] = mapped_column(String(320), index=True)
    original_text: Mapped[str] = mapped_column(Text)
    corrected_text: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    classification_source: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime)
    sla_due_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    sla_reminded: Mapped[bool] = mapped_column(Boolean, default=False)
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    # The SLA clocks (business time, see routing/sla.py); sla_due_at is the resolution due.
    first_response_due: Mapped[datetime | None] = mapped_column(DateTime)
    first_response_at: Mapped[datetime | None] = mapped_column(DateTime)  # an agent answered
    next_update_due: Mapped[datetime | None] = mapped_column(DateTime)
    # waiting / awaiting_approval stop the clocks: since when, and how long so far (business).
    paused_since: Mapped[datetime | None] = mapped_column(DateTime)
    paused_seconds: Mapped[int] = mapped_column(Integer, default=0)
    breached_at: Mapped[datetime | None] = mapped_column(DateTime)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    breach_explained_at: Mapped[datetime | None] = mapped_column(DateTime)
    breach_explanation: Mapped[str | None] = mapped_column(Text)
    source_message_id: Mapped[str] = mapped_column(String(998), default="")
    # Addresses added with #cc: copied on every answer relayed to the requester.
    watchers: Mapped[list | None] = mapped_column(JSON, default=list)

    events: Mapped[list[Event]] = relationship(order_by="Event.id", back_populates="ticket")
    comments: Mapped[list[Comment]] = relationship(order_by="Comment.id", back_populates="ticket")
    approvals: Mapped[list[Approval]] = relationship(
        order_by="(Approval.step, Approval.id)", back_populates="ticket"
    )
    attachments: Mapped[list[Attachment]] = relationship(
        order_by="Attachment.id", back_populates="ticket"
    )


class Event(Base):
    """One line of a ticket's audit trail; rows are only ever appended."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict] = mapped_column(JSON, default=dict)

    ticket: Mapped[Ticket] = relationship(back_populates="events")


class Comment(Base):
    """A reply or note on a ticket."""

    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    author: Mapped[str] = mapped_column(String(320))
    text: Mapped[str] = mapped_column(Text)
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    message_id: Mapped[str | None] = mapped_column(String(998))

    ticket: Mapped[Ticket] = relationship(back_populates="comments")


class RawMailRecord(Base):
    """One distinct inbound mail's exact bytes, stored once (see ``daemon.store.raw``)."""

    __tablename__ = "raw_mail"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)  # bytes of the mail
    stored_size: Mapped[int] = mapped_column(Integer, default=0)  # bytes after zlib
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class RawMailChunk(Base):
    """A piece (at most 256 KiB) of a raw mail's zlib stream, in ``seq`` order."""

    __tablename__ = "raw_mail_chunks"

    sha256: Mapped[str] = mapped_column(ForeignKey("raw_mail.sha256"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class LedgerEntry(Base):
    """Every inbound mail ever committed, what became of it, and the key of its raw bytes.

    Unique on the backend reference and on the content key, so a mail fetched
    twice (crash before ack, IMAP UIDVALIDITY change, Graph delta replay) is
    recognised instead of becoming a second ticket.
    """

    __tablename__ = "message_ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(512), unique=True)
    content_key: Mapped[str] = mapped_column(String(128), unique=True)
    message_id: Mapped[str] = mapped_column(String(998), index=True, default="")
    sender: Mapped[str] = mapped_column(String(320), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(24), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    rule_hits: Mapped[list] = mapped_column(JSON, default=list)
    ticket_id: Mapped[str | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    # The mail's bytes in raw_mail; NULL once retention (storage.raw_retention_days) pruned them.
    raw_sha256: Mapped[str | None] = mapped_column(ForeignKey("raw_mail.sha256"), index=True)
    received_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    processed_at: Mapped[datetime] = mapped_column(DateTime)
    # A duplicate names the ledger row of the mail it repeats (never silently swallowed).
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("message_ledger.id"))

    __table_args__ = (Index("ix_ledger_sender_received", "sender", "received_at"),)


class Attempt(Base):
    """How often processing a mail was tried; written before each try.

    Committed *before* the pipeline runs, so even a mail that kills the
    process is counted and ends in quarantine after ``guards.max_attempts``.
    """

    __tablename__ = "attempts"

    ref: Mapped[str] = mapped_column(String(512), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class QuarantineEntry(Base):
    """Mail that could not be processed, kept whole (in raw_mail) with the reason."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(512), unique=True)
    sender: Mapped[str] = mapped_column(String(320), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(Text)
    # The guard rule or failure kind ("sender-rate", "unparseable", "failed"): what
    # ``quarantine release --reason`` selects on.
    reason_code: Mapped[str] = mapped_column(String(32), default="", index=True)
    # The mail's bytes in raw_mail: never pruned while the mail is held here.
    raw_sha256: Mapped[str | None] = mapped_column(ForeignKey("raw_mail.sha256"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    # When the mail arrived in the mailbox (as the ledger's received_at).
    received_at: Mapped[datetime | None] = mapped_column(DateTime)
    released_at: Mapped[datetime | None] = mapped_column(DateTime)
    released_by: Mapped[str | None] = mapped_column(String(320))
    release_outcome: Mapped[str | None] = mapped_column(Text)


class OutboxEntry(Base):
    """An outgoing mail; its Message-ID is fixed when the row is written."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    ticket_id: Mapped[str | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(48))
    sender: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list] = mapped_column(JSON)
    subject: Mapped[str] = mapped_column(Text, default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), index=True, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)


class Approval(Base):
    """One approver's part in one step of a ticket's approval."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(16))
    approver: Mapped[str] = mapped_column(String(320))
    decision: Mapped[str] = mapped_column(String(16), default="pending")
    comment: Mapped[str] = mapped_column(Text, default="")
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    # A reminder carries a fresh token; the request's stays valid too (same expiry).
    reminder_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, index=True)
    token_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    requested_at: Mapped[datetime | None] = mapped_column(DateTime)
    reminded_at: Mapped[datetime | None] = mapped_column(DateTime)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)
    decision_message_id: Mapped[str | None] = mapped_column(String(998))

    ticket: Mapped[Ticket] = relationship(back_populates="approvals")

    __table_args__ = (UniqueConstraint("ticket_id", "step", "approver"),)


class CategoryCorrection(Base):
    """An agent changed a ticket's category: kept to retrain the classifier."""

    __tablename__ = "category_corrections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    old_category: Mapped[str] = mapped_column(String(64))
    new_category: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(320))
    at: Mapped[datetime] = mapped_column(DateTime)


class MailboxCursor(Base):
    """Where a backend left off (e.g. a Graph delta link)."""

    __tablename__ = "mailbox_cursors"

    mailbox: Mapped[str] = mapped_column(String(255), primary_key=True)
    cursor: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class Heartbeat(Base):
    """A worker's sign of life, shown on the status page."""

    __tablename__ = "heartbeats"

    worker: Mapped[str] = mapped_column(String(255), primary_key=True)
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    last_beat: Mapped[datetime] = mapped_column(DateTime)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    backend: Mapped[str] = mapped_column(String(32), default="")
    # running | degraded (backing off: database or mailbox unavailable) | stopped
    state: Mapped[str] = mapped_column(String(16), default="running")
    condition: Mapped[str] = mapped_column(Text, default="")
    condition_since: Mapped[datetime | None] = mapped_column(DateTime)


class ReplyToken(Base):
    """A token carried by one mail sent to one agent about one ticket, stored hashed.

    It rides in that mail's Message-ID, so an ordinary reply (In-Reply-To,
    References) brings it back; commands count only with a live token bound to
    the sender and the ticket.
    """

    __tablename__ = "reply_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id"), index=True)
    agent: Mapped[str] = mapped_column(String(320))
    issued_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class AttachmentBlob(Base):
    """One distinct attachment's decoded bytes, stored once (see ``daemon.attachments``)."""

    __tablename__ = "attachment_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)  # decoded bytes
    stored_size: Mapped[int] = mapped_column(Integer, default=0)  # bytes after zlib
    created_at: Mapped[datetime] = mapped_column(DateTime)


class AttachmentChunk(Base):
    """A piece (at most 256 KiB) of an attachment's zlib stream, in ``seq`` order."""

    __tablename__ = "attachment_chunks"

    sha256: Mapped[str] = mapped_column(ForeignKey("attachment_blobs.sha256"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Attachment(Base):
    """A file a mail of the ticket carried: its sanitised name, size, type and blob.

    ``sha256`` is NULL when the bytes were not kept (over a size limit);
    ``message_id`` names the mail (the request or a reply) that carried it.
    """

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id"), index=True)
    message_id: Mapped[str] = mapped_column(String(998), default="")
    from_reply: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str | None] = mapped_column(ForeignKey("attachment_blobs.sha256"), index=True)
    dangerous: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(Text, default="")  # why the bytes were not kept
    created_at: Mapped[datetime] = mapped_column(DateTime)

    ticket: Mapped[Ticket] = relationship(back_populates="attachments")


class ChannelMessage(Base):
    """A notification for a webhook, Teams, Slack or Twilio channel, sent after commit.

    The request body is fixed when the row is written; credentials are not stored
    (the sender adds them from the settings of the channel named ``channel``).
    """

    __tablename__ = "channel_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    event: Mapped[str] = mapped_column(String(48))
    ticket_id: Mapped[str | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(128))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
