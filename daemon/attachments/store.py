"""Attachments kept once by content, listed per ticket, offered to the assignee's notice.

``attachment_blobs`` has one row per distinct decoded file (SHA-256, size); its
zlib stream is in ``attachment_chunks`` in pieces of at most 256 KiB, as raw
mail is (``daemon.store.raw``). Each file a mail carried is an ``attachments``
row naming its ticket, the mail, its sanitised name, size, type and blob. All
of it is written in the transaction that writes the ticket or the reply.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.schema import AttachmentSettings, Settings
from daemon.attachments.decode import pieces
from daemon.attachments.locate import Part, locate
from daemon.attachments.names import is_dangerous, raw_name, safe_name
from daemon.parse import Limits
from daemon.store.models import Attachment, AttachmentBlob, AttachmentChunk, Ticket
from daemon.store.queries import attachment_dict
from daemon.store.raw import store_once

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Carrier:
    """The mail that carried the attachments: its ticket and how it relates to it."""

    ticket_id: str
    message_id: str = ""
    from_reply: bool = False


def keep_attachments(
    session: Session, settings: Settings, carrier: Carrier, raw: bytes, now: datetime
) -> list[Attachment]:
    """Store the attachments of ``raw`` for ``carrier``'s ticket; return the rows added."""
    cfg = settings.attachments
    g = settings.guards
    rows: list[Attachment] = []
    kept = 0
    for index, part in enumerate(
        _parts(raw, Limits(g.max_message_bytes, g.max_parts, g.max_depth))
    ):
        row = _row(part, raw, cfg, carrier, index + 1, now)
        kept = _keep_bytes(session, row, part, raw, cfg, kept, now)
        session.add(row)
        rows.append(row)
    return rows


def _parts(raw: bytes, limits: Limits) -> list[Part]:
    """The attachments of a mail that parsed; a structure we cannot walk yields none."""
    try:
        return locate(raw, limits)
    except Exception:  # hostile structure met for the first time: the ticket matters more
        log.warning("cannot locate the attachments of a mail; listed none", exc_info=True)
        return []


def _row(part: Part, raw: bytes, cfg: AttachmentSettings, carrier: Carrier, index: int, now):
    ctype = part.head.get_content_type()
    name = safe_name(raw_name(part.head), ctype, index)
    sha, size = _digest(raw, part)
    return Attachment(
        ticket_id=carrier.ticket_id,
        message_id=carrier.message_id,
        from_reply=carrier.from_reply,
        name=name,
        size=size,
        content_type=ctype[:255],
        sha256=sha,
        dangerous=is_dangerous(name, ctype, cfg.dangerous_extensions),
        note="",
        created_at=now,
    )


def _digest(raw: bytes, part: Part) -> tuple[str, int]:
    """SHA-256 and size of the decoded body, read once in pieces."""
    digest, size = hashlib.sha256(), 0
    for piece in pieces(raw, part.start, part.end, part.encoding):
        digest.update(piece)
        size += len(piece)
    return digest.hexdigest(), size


def _keep_bytes(session, row: Attachment, part: Part, raw: bytes, cfg, kept: int, now) -> int:
    """Store the blob unless a limit says no (then say why); return the mail's kept total."""
    if row.size > cfg.max_bytes:
        row.note = f"not kept: larger than attachments.max_bytes ({cfg.max_bytes})"
    elif kept + row.size > cfg.max_total_bytes:
        row.note = (
            f"not kept: the mail's attachments exceed max_total_bytes ({cfg.max_total_bytes})"
        )
    else:
        _store_blob(session, row.sha256, row.size, raw, part, now)
        return kept + row.size
    row.sha256 = None
    return kept


def _store_blob(session: Session, sha: str, size: int, raw: bytes, part: Part, now) -> None:
    """Write the blob once, decoded part by part (the same mechanism as raw mail)."""
    decoded = pieces(raw, part.start, part.end, part.encoding)
    store_once(session, AttachmentBlob, AttachmentChunk, sha, size, decoded, now)


def load_blob(session: Session, sha: str) -> bytes:
    """The decoded bytes stored under ``sha`` (b'' when there is none)."""
    out = bytearray()
    decompressor = zlib.decompressobj()
    stmt = select(AttachmentChunk.data).where(AttachmentChunk.sha256 == sha)
    for data in session.scalars(stmt.order_by(AttachmentChunk.seq)):
        out += decompressor.decompress(bytes(data))
    return bytes(out + decompressor.flush())


def notice_context(session: Session, settings: Settings, ticket: Ticket) -> dict:
    """Template context and files for the assignee's notice: all listed, safe ones attached.

    Files are attached, in order, while their total stays under
    ``attachments.attach_to_notice_max_bytes``; dangerous ones never are.
    """
    session.flush()
    rows = session.scalars(
        select(Attachment).where(Attachment.ticket_id == ticket.id).order_by(Attachment.id)
    ).all()
    budget = settings.attachments.attach_to_notice_max_bytes
    listed, files = [], []
    for a in rows:
        attach = bool(a.sha256) and not a.dangerous and a.size <= budget
        if attach:
            budget -= a.size
            files.append((a.name, a.content_type, load_blob(session, a.sha256)))
        listed.append({**attachment_dict(a), "attached": attach, "size_text": human_size(a.size)})
    return {"attachments": listed, "files": files}


def human_size(size: int) -> str:
    """``1.2 MB``-style size for people."""
    value = float(size)
    for unit in ("bytes", "KB", "MB"):
        if value < 1024 or unit == "MB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"
