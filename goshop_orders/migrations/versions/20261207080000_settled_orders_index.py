"""orders: the settled orders by when they settled, for the ops console's health strip

Revision ID: 20261207080000
Revises: 20261207070000
Create Date: 2026-12-07 08:00:00

The strip counts the orders paid or cancelled in the last minutes; without
this index that count reads the whole table on every page. A settling update
already writes a new entry into each of the table's indexes (its status is
in ix_orders_new_by_age's predicate, so it is never a HOT update): this is one
more. Concurrently (see the helper): orders keep coming while it builds.
"""

from alembic import op

from goshop_common.db.migrations import create_index_concurrently

revision = "20261207080000"
down_revision = "20261207070000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_index_concurrently(
        op, "ix_orders_settled_at", "orders", "orders (updated_at) WHERE status IN ('paid', 'cancelled')"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS orders.ix_orders_settled_at")
