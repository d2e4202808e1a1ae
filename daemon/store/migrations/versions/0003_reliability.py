"""reliability: duplicates name their original, quarantine release, worker state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 22:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("message_ledger", schema=None) as batch_op:
        batch_op.add_column(sa.Column("duplicate_of", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_message_ledger_duplicate_of", "message_ledger", ["duplicate_of"], ["id"]
        )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reason_code", sa.String(length=32), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("received_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("released_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("released_by", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("release_outcome", sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f("ix_quarantine_reason_code"), ["reason_code"])
    with op.batch_alter_table("heartbeats", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("state", sa.String(length=16), nullable=False, server_default="running")
        )
        batch_op.add_column(sa.Column("condition", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("condition_since", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("heartbeats", schema=None) as batch_op:
        batch_op.drop_column("condition_since")
        batch_op.drop_column("condition")
        batch_op.drop_column("state")
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantine_reason_code"))
        for name in ("release_outcome", "released_by", "released_at", "received_at"):
            batch_op.drop_column(name)
        batch_op.drop_column("reason_code")
    with op.batch_alter_table("message_ledger", schema=None) as batch_op:
        batch_op.drop_constraint("fk_message_ledger_duplicate_of", type_="foreignkey")
        batch_op.drop_column("duplicate_of")
