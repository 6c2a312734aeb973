"""payments: the W3C trace context of each outbox and inbox row

Revision ID: 20261201200000
Revises: 20261201191000
Create Date: 2026-12-01 20:00:00

Two nullable columns without defaults: PostgreSQL adds them without
rewriting a row, and the previous release, which never writes them, keeps
working beside this one.
"""

from alembic import op

from goshop_common.messaging.inbox import add_inbox_trace_context_v2, drop_inbox_trace_context_v2
from goshop_common.messaging.outbox import add_outbox_trace_context_v2, drop_outbox_trace_context_v2

revision = "20261201200000"
down_revision = "20261201191000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_outbox_trace_context_v2(op, "payments")
    add_inbox_trace_context_v2(op, "payments")


def downgrade() -> None:
    drop_inbox_trace_context_v2(op, "payments")
    drop_outbox_trace_context_v2(op, "payments")
