"""Raw inbound mail, stored once by content and compressed, out of the hot tables.

``raw_mail`` has one row per distinct mail: the SHA-256 of its exact bytes, its
size and when it was stored. The zlib stream of the bytes is in
``raw_mail_chunks``, in pieces of at most :data:`CHUNK` bytes, so storing or
reading a 25 MB mail never holds a second whole copy of it in memory (compressed
or not) and no database driver copies a 20 MB parameter. The ledger and the
quarantine name their mail by ``raw_sha256``: the same bytes fetched twice (a
replay, a duplicate) are stored once.

Retention (:func:`prune_raw`) deletes the raw mail that only old ledger rows
name and sets their ``raw_sha256`` to NULL: the row and its metadata stay. Mail
still in quarantine is never pruned.
"""

from __future__ import annotations

import hashlib
import zlib
from datetime import datetime

from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.orm import Session

from daemon.store.db import insert_new
from daemon.store.models import LedgerEntry, QuarantineEntry, RawMailChunk, RawMailRecord

CHUNK = 256 * 1024  # compressed bytes per chunk row (small: no driver copies much)
FEED = 256 * 1024  # raw bytes handed to the compressor at once
LEVEL = 6  # zlib's default: 34 MB/s on base64 attachments, a few % smaller than level 1
SMALL = 64 * 1024  # content up to this size is compressed in one call (one chunk row)
PRUNE_BATCH = 200  # raw mails deleted per statement


def raw_sha256(raw: bytes) -> str:
    """The key of ``raw`` in ``raw_mail``: SHA-256 of the exact bytes, hex."""
    return hashlib.sha256(raw).hexdigest()


def store_raw(session: Session, raw: bytes, now: datetime) -> str:
    """Store ``raw`` (once: known bytes are not written again); return its key."""
    sha = raw_sha256(raw)
    view = memoryview(raw)
    feed = (view[at : at + FEED] for at in range(0, len(raw), FEED))
    store_once(session, RawMailRecord, RawMailChunk, sha, len(raw), feed, now)
    return sha


def store_once(session: Session, record, chunk, sha: str, size: int, pieces, now) -> bool:
    """Store content keyed by ``sha`` once: a ``record`` row and its zlib ``chunk`` rows.

    ``pieces`` yields the content in parts, so no whole copy is held. Runs in the
    caller's transaction; two workers storing the same new content at once: the
    second insert waits for the first and then does nothing. False when the
    content was already there. Shared by raw mail and attachment blobs.
    """
    if size <= SMALL:
        return _store_small(session, record, chunk, sha, size, pieces, now)
    if session.get(record, sha) is not None:
        return False
    if not _claim(session, record, sha, size, 0, now):
        return False  # another transaction stored it
    stored = _write_chunks(session, chunk, sha, pieces)
    session.execute(update(record).where(record.sha256 == sha).values(stored_size=stored))
    return True


def _store_small(session: Session, record, chunk, sha: str, size: int, pieces, now) -> bool:
    """Most mail: compressed at once, two statements (the row is claimed with its size)."""
    data = zlib.compress(b"".join(pieces), LEVEL)
    if not _claim(session, record, sha, size, len(data), now):
        return False  # stored before (a replay, a duplicate) or by another transaction
    session.execute(chunk.__table__.insert().values(sha256=sha, seq=0, data=data))
    return True


def _claim(session: Session, record, sha: str, size: int, stored: int, now) -> bool:
    """Insert the ``record`` row unless one exists (whoever inserts first stores the bytes)."""
    row = {"sha256": sha, "size": size, "stored_size": stored, "created_at": now}
    return insert_new(session, record, [row]) == 1


def _write_chunks(session: Session, chunk, sha: str, pieces) -> int:
    """Compress ``pieces`` into chunk rows of at most :data:`CHUNK`; the compressed size."""
    compressor = zlib.compressobj(LEVEL)
    pending = bytearray()
    seq = stored = 0
    for piece in pieces:
        pending += compressor.compress(piece)
        while len(pending) >= CHUNK:
            seq, stored = _put_chunk(session, chunk, sha, seq, pending, stored)
    pending += compressor.flush()
    while pending or seq == 0:
        seq, stored = _put_chunk(session, chunk, sha, seq, pending, stored)
    return stored


def _put_chunk(
    session: Session, chunk, sha: str, seq: int, pending: bytearray, stored: int
) -> tuple[int, int]:
    data = bytes(pending[:CHUNK])
    del pending[:CHUNK]
    session.execute(chunk.__table__.insert().values(sha256=sha, seq=seq, data=data))
    return seq + 1, stored + len(data)


def _chunks(session: Session, sha: str):
    seq = 0
    while True:
        stmt = select(RawMailChunk.data).where(RawMailChunk.sha256 == sha, RawMailChunk.seq == seq)
        data = session.scalar(stmt)  # one chunk at a time: the driver never buffers them all
        if data is None:
            return
        yield bytes(data)
        seq += 1


def load_raw(session: Session, sha: str | None) -> bytes | None:
    """The exact bytes stored under ``sha``; None when there is none (pruned, or no key)."""
    if sha is None or session.get(RawMailRecord, sha) is None:
        return None
    out = bytearray()
    decompressor = zlib.decompressobj()
    for data in _chunks(session, sha):
        out += decompressor.decompress(data)
    out += decompressor.flush()
    return bytes(out)


def raw_head(session: Session, sha: str | None, n: int) -> bytes:
    """The first ``n`` bytes stored under ``sha`` (b'' when there is none)."""
    if sha is None:
        return b""
    out = bytearray()
    decompressor = zlib.decompressobj()
    for data in _chunks(session, sha):
        out += decompressor.decompress(data, n - len(out))
        if len(out) >= n:
            break
    return bytes(out[:n])


def raw_size(session: Session, sha: str | None) -> int | None:
    """The size in bytes of the mail stored under ``sha``, or None."""
    if sha is None:
        return None
    return session.scalar(select(RawMailRecord.size).where(RawMailRecord.sha256 == sha))


def prune_raw(session: Session, before: datetime) -> int:
    """Delete raw mail that only ledger rows processed before ``before`` name; return how many.

    Raw mail of a quarantine row not yet released (or released since ``before``)
    stays. The ledger rows (and released quarantine rows) keep their metadata,
    with ``raw_sha256`` set to NULL.
    """
    recent = exists().where(
        LedgerEntry.raw_sha256 == RawMailRecord.sha256, LedgerEntry.processed_at >= before
    )
    held = exists().where(
        QuarantineEntry.raw_sha256 == RawMailRecord.sha256,
        or_(QuarantineEntry.released_at.is_(None), QuarantineEntry.released_at >= before),
    )
    stmt = (
        select(RawMailRecord.sha256)
        .where(RawMailRecord.created_at < before, ~recent, ~held)
        .limit(PRUNE_BATCH)
    )
    pruned = 0
    while shas := list(session.scalars(stmt)):
        for model in (LedgerEntry, QuarantineEntry):
            session.execute(update(model).where(model.raw_sha256.in_(shas)).values(raw_sha256=None))
        session.execute(delete(RawMailChunk).where(RawMailChunk.sha256.in_(shas)))
        session.execute(delete(RawMailRecord).where(RawMailRecord.sha256.in_(shas)))
        pruned += len(shas)
    return pruned
