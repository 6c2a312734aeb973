"""retention: indexes that find expired idempotency keys, published outbox rows and old inbox rows

Revision ID: 20261201190000
Revises: 20261201180000
Create Date: 2026-12-01 19:00:00
"""

from alembic import op

from goshop_common.db.migrations import create_index_concurrently
from goshop_common.messaging.inbox import create_inbox_retention_index_v1, drop_inbox_retention_index_v1
from goshop_common.messaging.outbox import create_outbox_retention_index_v1, drop_outbox_retention_index_v1

revision = "20261201190000"
down_revision = "20261201180000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Concurrently: these tables have grown without bound until now, and a
    # plain CREATE INDEX would hold up every order while it builds.
    create_index_concurrently(op, "ix_idempotency_keys_created_at", "orders", "idempotency_keys (created_at)")
    create_outbox_retention_index_v1(op, "orders")
    create_inbox_retention_index_v1(op, "orders")


def downgrade() -> None:
    drop_inbox_retention_index_v1(op, "orders")
    drop_outbox_retention_index_v1(op, "orders")
    op.execute("DROP INDEX IF EXISTS orders.ix_idempotency_keys_created_at")
