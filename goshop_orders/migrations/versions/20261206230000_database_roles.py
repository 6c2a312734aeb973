"""orders: what each database role may do in the orders schema

Revision ID: 20261206230000
Revises: 20261201200000
Create Date: 2026-12-06 23:00:00

Orders (its API and its consumer) reads and writes its tables (and those
later revisions add); the outboxer claims and marks the outbox's rows; the
ops assistant reads what goshop_orders.read_contract names; the maintenance
worker deletes what goshop_orders.retention declares. The roles themselves
are made by ``python -m goshop_common.db.roles``, before the migrations.
"""

from alembic import op

from goshop_common.db.roles import OPS, ORDERS, grant_own_schema, grant_read, grant_relay, grant_retention, revoke_all

revision = "20261206230000"
down_revision = "20261201200000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    grant_own_schema(op, "orders", ORDERS)
    grant_relay(op, "orders.outbox")
    grant_read(op, OPS, "orders.orders", "orders.outbox", "orders.inbox")
    grant_retention(op, "orders.idempotency_keys", "key")
    grant_retention(op, "orders.outbox", "id")
    grant_retention(op, "orders.inbox", "event_id")


def downgrade() -> None:
    revoke_all(op, "orders")
