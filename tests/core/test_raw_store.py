"""``daemon.store.raw``: raw mail stored once, compressed in chunks; migration 0004 moves it."""

from __future__ import annotations

import os
from datetime import datetime

import pytest
from alembic import command
from sqlalchemy import func, select, text

from daemon.store.db import alembic_config, make_engine, migrate, session_factory, transaction
from daemon.store.models import LedgerEntry, QuarantineEntry, RawMailChunk, RawMailRecord
from daemon.store.raw import CHUNK, load_raw, raw_head, raw_sha256, raw_size, store_raw

NOW = datetime(2026, 1, 5, 9, 0)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.realserver)])
def db_url(request, tmp_path) -> str:
    """A fresh database on SQLite, and on a private PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'r.db'}"
    return request.getfixturevalue("postgres_server").new_database()


def test_same_bytes_are_stored_once_and_read_back_exactly(db_url) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    factory = session_factory(engine)
    big = b"Subject: dump\r\n\r\n" + os.urandom(3 * CHUNK)  # incompressible: 4 chunks
    with transaction(factory) as s:
        sha = store_raw(s, big, NOW)
        assert store_raw(s, big, NOW) == sha == raw_sha256(big)
        small = store_raw(s, b"From: a@example.com\r\n\r\nhi\r\n", NOW)
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(RawMailRecord)) == 2
        assert s.scalar(select(func.count()).where(RawMailChunk.sha256 == sha)) == 4
        assert load_raw(s, sha) == big and raw_size(s, sha) == len(big)
        assert raw_head(s, sha, 10) == big[:10] and raw_head(s, small, 1000).endswith(b"hi\r\n")
        assert load_raw(s, None) is None and load_raw(s, "0" * 64) is None
        assert raw_head(s, None, 10) == b"" and raw_size(s, None) is None
        record = s.get(RawMailRecord, small)
        assert record is not None and record.stored_size > 0
    engine.dispose()


def test_empty_mail_is_stored_as_one_chunk(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    migrate(engine)
    with transaction(session_factory(engine)) as s:
        sha = store_raw(s, b"", NOW)
        assert load_raw(s, sha) == b""


def test_migration_0004_moves_raw_out_of_ledger_and_quarantine(db_url) -> None:
    engine = make_engine(db_url)
    cfg = alembic_config(engine)
    command.upgrade(cfg, "0003")
    mail = b"From: bob@example.com\r\nSubject: printer\r\n\r\njammed\r\n"
    with engine.begin() as conn:
        for i, raw in enumerate((mail, mail, b"other")):
            conn.execute(
                text(
                    "INSERT INTO message_ledger (ref, content_key, message_id, sender, subject,"
                    " outcome, reason, rule_hits, raw, received_at, processed_at)"
                    " VALUES (:ref, :key, '', '', '', 'ticket', '', '[]', :raw, :at, :at)"
                ),
                {"ref": f"r{i}", "key": f"k{i}", "raw": raw, "at": NOW},
            )
        conn.execute(
            text(
                "INSERT INTO quarantine (ref, sender, subject, reason, reason_code, raw, created_at)"
                " VALUES ('q1', '', '', 'bad', '', :raw, :at)"
            ),
            {"raw": mail, "at": NOW},
        )
    migrate(engine)
    factory = session_factory(engine)
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(RawMailRecord)) == 2
        rows = s.scalars(select(LedgerEntry).order_by(LedgerEntry.id)).all()
        assert [load_raw(s, r.raw_sha256) for r in rows] == [mail, mail, b"other"]
        [held] = s.scalars(select(QuarantineEntry)).all()
        assert held.raw_sha256 == raw_sha256(mail)
    command.downgrade(cfg, "0003")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT raw FROM message_ledger ORDER BY id")).scalars().all() == [
            mail,
            mail,
            b"other",
        ]
    engine.dispose()
