"""SLA clocks: first response and next update dues, pauses, breach, ladder, explanation

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NULLABLE = (
    ("first_response_due", sa.DateTime()),
    ("first_response_at", sa.DateTime()),
    ("next_update_due", sa.DateTime()),
    ("paused_since", sa.DateTime()),
    ("breached_at", sa.DateTime()),
    ("breach_explained_at", sa.DateTime()),
    ("breach_explanation", sa.Text()),
)
COUNTERS = ("paused_seconds", "escalation_level")
tickets = sa.table(
    "tickets",
    sa.column("escalated", sa.Boolean),
    sa.column("sla_due_at", sa.DateTime),
    sa.column("breached_at", sa.DateTime),
    sa.column("escalation_level", sa.Integer),
)


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        for name, type_ in NULLABLE:
            batch.add_column(sa.Column(name, type_, nullable=True))
        for name in COUNTERS:
            # Existing tickets start at zero; the model sets the value for new rows.
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    # An escalated ticket of before this revision has breached (its due time is when).
    op.execute(
        tickets.update()
        .where(tickets.c.escalated.is_(True))
        .values(breached_at=tickets.c.sla_due_at, escalation_level=1)
    )


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        for name in (*COUNTERS, *(n for n, _ in reversed(NULLABLE))):
            batch.drop_column(name)
