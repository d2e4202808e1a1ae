"""approval reminder token

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reminder_token_hash", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_approvals_reminder_token_hash"), ["reminder_token_hash"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_approvals_reminder_token_hash"))
        batch_op.drop_column("reminder_token_hash")
