"""orders: the outbox's rows by key, for the ops timeline

Revision ID: 20261207070000
Revises: 20261206230000
Create Date: 2026-12-07 07:00:00

Concurrently (see the helper): events keep being queued while it builds.
"""

from alembic import op

from goshop_common.messaging.outbox import create_outbox_key_index_v1, drop_outbox_key_index_v1

revision = "20261207070000"
down_revision = "20261206230000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_outbox_key_index_v1(op, "orders")


def downgrade() -> None:
    drop_outbox_key_index_v1(op, "orders")
