"""create orders, idempotency keys, outbox and inbox

Revision ID: 20251001090000
Revises:
Create Date: 2025-10-01 09:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from goshop_common.messaging.inbox import create_inbox_v1
from goshop_common.messaging.outbox import create_outbox_v1, drop_outbox_v1

revision = "20251001090000"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", UUID(as_uuid=True), nullable=False),
        sa.Column("user_id", UUID(as_uuid=True), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.CheckConstraint("amount_cents > 0", name="ck_orders_amount_positive"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_orders_currency_iso"),
        sa.CheckConstraint("status IN ('new', 'paid', 'cancelled')", name="ck_orders_status_known"),
        schema="orders",
    )
    # "My orders, newest first" walks this index and nothing else.
    op.execute("CREATE INDEX ix_orders_user_newest ON orders.orders (user_id, created_at DESC, id DESC)")
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", UUID(as_uuid=True), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("request_hash", sa.Text(), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=False),
        sa.Column("response_body", JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "key", name="pk_idempotency_keys"),
        schema="orders",
    )
    create_outbox_v1(op, "orders")
    create_inbox_v1(op, "orders")


def downgrade() -> None:
    op.drop_table("inbox", schema="orders")
    drop_outbox_v1(op, "orders")
    op.drop_table("idempotency_keys", schema="orders")
    op.drop_table("orders", schema="orders")
