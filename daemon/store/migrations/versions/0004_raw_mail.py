"""raw mail out of the hot tables: stored once by SHA-256, zlib-compressed, in chunks

The ledger's and the quarantine's ``raw`` columns become ``raw_sha256`` keys into
``raw_mail``; existing rows are moved over one mail at a time (memory stays at
one mail). SQLite keeps the freed pages in its file until ``VACUUM``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 23:00:00
"""

import hashlib
import zlib
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CHUNK = 256 * 1024  # as daemon.store.raw at the time of this revision

raw_mail = sa.table(
    "raw_mail",
    sa.column("sha256", sa.String),
    sa.column("size", sa.Integer),
    sa.column("stored_size", sa.Integer),
    sa.column("created_at", sa.DateTime),
)
chunks = sa.table(
    "raw_mail_chunks",
    sa.column("sha256", sa.String),
    sa.column("seq", sa.Integer),
    sa.column("data", sa.LargeBinary),
)
MAIL_TABLES = ("message_ledger", "quarantine")


def upgrade() -> None:
    op.create_table(
        "raw_mail",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("stored_size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    with op.batch_alter_table("raw_mail", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_raw_mail_created_at"), ["created_at"], unique=False)
    op.create_table(
        "raw_mail_chunks",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["sha256"], ["raw_mail.sha256"]),
        sa.PrimaryKeyConstraint("sha256", "seq"),
    )
    for name in MAIL_TABLES:
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.add_column(sa.Column("raw_sha256", sa.String(length=64), nullable=True))
            batch_op.create_index(batch_op.f(f"ix_{name}_raw_sha256"), ["raw_sha256"])
            batch_op.create_foreign_key(
                f"fk_{name}_raw_sha256", "raw_mail", ["raw_sha256"], ["sha256"]
            )
        _move_raw_out(name)
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_column("raw")


def _move_raw_out(name: str) -> None:
    conn = op.get_bind()
    table = sa.table(
        name, sa.column("id", sa.Integer), sa.column("raw", sa.LargeBinary), sa.column("raw_sha256")
    )
    ids = list(conn.scalars(sa.select(table.c.id).order_by(table.c.id)))
    now = datetime.now(UTC).replace(tzinfo=None)
    for row_id in ids:  # one mail in memory at a time
        raw = conn.scalar(sa.select(table.c.raw).where(table.c.id == row_id))
        raw = bytes(raw or b"")
        sha = hashlib.sha256(raw).hexdigest()
        known = conn.scalar(sa.select(raw_mail.c.sha256).where(raw_mail.c.sha256 == sha))
        if known is None:
            data = zlib.compress(raw)
            conn.execute(
                raw_mail.insert().values(
                    sha256=sha, size=len(raw), stored_size=len(data), created_at=now
                )
            )
            for seq, start in enumerate(range(0, max(len(data), 1), CHUNK)):
                conn.execute(
                    chunks.insert().values(sha256=sha, seq=seq, data=data[start : start + CHUNK])
                )
        conn.execute(sa.update(table).where(table.c.id == row_id).values(raw_sha256=sha))


def downgrade() -> None:
    conn = op.get_bind()
    for name in MAIL_TABLES:
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.add_column(sa.Column("raw", sa.LargeBinary(), nullable=True))
        table = sa.table(
            name,
            sa.column("id", sa.Integer),
            sa.column("raw", sa.LargeBinary),
            sa.column("raw_sha256", sa.String),
        )
        rows = list(conn.execute(sa.select(table.c.id, table.c.raw_sha256)))
        for row_id, sha in rows:
            data = b"".join(
                bytes(c)
                for c in conn.scalars(
                    sa.select(chunks.c.data).where(chunks.c.sha256 == sha).order_by(chunks.c.seq)
                )
            )
            raw = zlib.decompress(data) if data else b""  # pruned mail comes back empty
            conn.execute(sa.update(table).where(table.c.id == row_id).values(raw=raw))
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_constraint(f"fk_{name}_raw_sha256", type_="foreignkey")
            batch_op.drop_index(batch_op.f(f"ix_{name}_raw_sha256"))
            batch_op.drop_column("raw_sha256")
            batch_op.alter_column("raw", existing_type=sa.LargeBinary(), nullable=False)
    op.drop_table("raw_mail_chunks")
    with op.batch_alter_table("raw_mail", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_raw_mail_created_at"))
    op.drop_table("raw_mail")
