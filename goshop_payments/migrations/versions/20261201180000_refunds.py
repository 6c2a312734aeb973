"""payments: refunded and voided payments, and when the refund happened

Revision ID: 20261201180000
Revises: 20251001091500
Create Date: 2026-12-01 18:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261201180000"
down_revision = "20251001091500"
branch_labels = None
depends_on = None

_OLD = "status IN ('confirmed', 'failed')"
_NEW = "status IN ('confirmed', 'failed', 'refunded', 'voided')"
# The first revision's check went through the naming convention twice (its
# name already had the ck_payments_ prefix); op.f() names these exactly.
_OLD_NAME = "ck_payments_ck_payments_status_known"
_NEW_NAME = "ck_payments_status_known"


def upgrade() -> None:
    # Nullable: only a refunded payment has a refund time.
    op.add_column("payments", sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True), schema="payments")
    op.drop_constraint(op.f(_OLD_NAME), "payments", schema="payments", type_="check")
    op.create_check_constraint(op.f(_NEW_NAME), "payments", _NEW, schema="payments")


def downgrade() -> None:
    # A refunded payment was confirmed once; a voided one never charged.
    op.execute("UPDATE payments.payments SET status = 'confirmed' WHERE status = 'refunded'")
    op.execute("DELETE FROM payments.payments WHERE status = 'voided'")
    op.drop_constraint(op.f(_NEW_NAME), "payments", schema="payments", type_="check")
    op.create_check_constraint(op.f(_OLD_NAME), "payments", _OLD, schema="payments")
    op.drop_column("payments", "refunded_at", schema="payments")
