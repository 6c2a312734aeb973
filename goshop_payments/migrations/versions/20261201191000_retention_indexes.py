"""retention: indexes that find published outbox rows and old inbox rows

Revision ID: 20261201191000
Revises: 20261201180000
Create Date: 2026-12-01 19:10:00
"""

from alembic import op

from goshop_common.messaging.inbox import create_inbox_retention_index_v1, drop_inbox_retention_index_v1
from goshop_common.messaging.outbox import create_outbox_retention_index_v1, drop_outbox_retention_index_v1

revision = "20261201191000"
down_revision = "20261201180000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Concurrently (see the helpers): payments keep being decided meanwhile.
    create_outbox_retention_index_v1(op, "payments")
    create_inbox_retention_index_v1(op, "payments")


def downgrade() -> None:
    drop_inbox_retention_index_v1(op, "payments")
    drop_outbox_retention_index_v1(op, "payments")
