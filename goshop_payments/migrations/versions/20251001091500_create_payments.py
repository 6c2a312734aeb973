"""create payments, outbox and inbox

Revision ID: 20251001091500
Revises:
Create Date: 2025-10-01 09:15:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

from goshop_common.messaging.inbox import create_inbox_v1
from goshop_common.messaging.outbox import create_outbox_v1, drop_outbox_v1

revision = "20251001091500"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("id", UUID(as_uuid=True), nullable=False),
        sa.Column("order_id", UUID(as_uuid=True), nullable=False),
        sa.Column("user_id", UUID(as_uuid=True), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_payments"),
        sa.UniqueConstraint("order_id", name="uq_payments_order_id"),
        sa.CheckConstraint("status IN ('confirmed', 'failed')", name="ck_payments_status_known"),
        schema="payments",
    )
    op.create_index("ix_payments_user_id", "payments", ["user_id"], schema="payments")
    create_outbox_v1(op, "payments")
    create_inbox_v1(op, "payments")


def downgrade() -> None:
    op.drop_table("inbox", schema="payments")
    drop_outbox_v1(op, "payments")
    op.drop_table("payments", schema="payments")
