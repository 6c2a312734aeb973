"""orders: a partial index of the new orders by age, for the payment-timeout sweep

Revision ID: 20261201180000
Revises: 20251001090000
Create Date: 2026-12-01 18:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261201180000"
down_revision = "20251001090000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_orders_new_by_age",
        "orders",
        ["created_at"],
        schema="orders",
        postgresql_where=sa.text("status = 'new'"),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_new_by_age", table_name="orders", schema="orders")
