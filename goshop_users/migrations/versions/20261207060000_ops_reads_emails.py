"""users: the ops assistant reads an account's id and email

Revision ID: 20261207060000
Revises: 20261206230000
Create Date: 2026-12-07 06:00:00

The ops console finds a customer's latest orders by email (goshop_users.read_contract).
A column grant: ops may read ``id`` and ``email`` of users.users and nothing
else there, no password hash and no session.
"""

from alembic import op

from goshop_common.db.roles import OPS

revision = "20261207060000"
down_revision = "20261206230000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(f"GRANT USAGE ON SCHEMA users TO {OPS}")
    op.execute(f"GRANT SELECT (id, email) ON users.users TO {OPS}")


def downgrade() -> None:
    op.execute(f"REVOKE SELECT (id, email) ON users.users FROM {OPS}")
    op.execute(f"REVOKE USAGE ON SCHEMA users FROM {OPS}")
